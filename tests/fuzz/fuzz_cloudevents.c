/* POST /v1/events as ce_parse_http sees it. The input is an HTTP request's header lines ("Name:
 * value", one a line, CRLF or LF) up to the first empty line, then the body, so Content-Type (and
 * with it the content mode), the ce- headers and the body all come from the fuzzer and the seeds
 * stay readable. Names and values end at a NUL, as libmicrohttpd hands them over.
 *
 * Properties: a refusal is one of the documented errors with a reason; every accepted event
 * passes ce_event_validate, renders in the JSON format, and that rendering parses back to an
 * event that renders the same (what a subscribed function receives is what was sent); an event
 * matches a subscription to its own type and source. */
#include <string.h>

#include <cjson/cJSON.h>

#include "base/cloudevents.h"
#include "fuzz.h"

/* More than a request's header memory (libmicrohttpd's 32 KiB by default) would hold. */
#define FUZZ_HEADERS_MAX 256

struct request {
    struct ce_header h[FUZZ_HEADERS_MAX];
    char *strings[2 * FUZZ_HEADERS_MAX];
    size_t n, n_strings;
    const uint8_t *body;
    size_t body_len;
};

static char *keep(struct request *q, const uint8_t *p, size_t n)
{
    char *s = strndup((const char *)p, n);
    fuzz_check(s, "out of memory");
    q->strings[q->n_strings++] = s;
    return s;
}

static void split(const uint8_t *data, size_t size, struct request *q)
{
    const uint8_t *p = data, *end = data + size;
    while (p < end) {
        const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));
        size_t line = eol ? (size_t)(eol - p) : (size_t)(end - p);
        const uint8_t *next = eol ? eol + 1 : end;
        if (line > 0 && p[line - 1] == '\r')
            line--;
        if (line == 0) {
            q->body = next;
            q->body_len = (size_t)(end - next);
            return;
        }
        if (q->n < FUZZ_HEADERS_MAX) {
            const uint8_t *colon = memchr(p, ':', line);
            size_t name_len = colon ? (size_t)(colon - p) : line;
            size_t value_off = colon ? name_len + 1 : line;
            q->h[q->n].name = keep(q, p, name_len);
            q->h[q->n].value = keep(q, p + value_off, line - value_off);
            q->n++;
        }
        p = next;
    }
}

static char *render(const struct ce_event *e, size_t i)
{
    char *json = NULL;
    size_t len = 0;
    fuzz_check(ce_event_to_json(e, &json, &len) == 0, "event %zu does not render", i);
    fuzz_check(strlen(json) == len, "event %zu: rendered length %zu, NUL at %zu", i, len,
               strlen(json));
    return json;
}

/* Parses a rendering as a structured-mode body and renders what came out. */
static char *reparse(const char *json, size_t i)
{
    struct ig_error err = {};
    struct ce_event *back = NULL;
    int r = ce_parse_json(json, strlen(json), &back, &err);
    fuzz_check(r == 0, "event %zu: its rendering is refused: %s\n%s", i, err.message, json);
    char *again = render(back, i);
    ce_event_free(back);
    return again;
}

/* The JSON text as cJSON prints it. */
static char *canonical(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    fuzz_check(j, "a rendering that is not JSON: %s", json);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    fuzz_check(text, "out of memory");
    return text;
}

static void check_event(const struct ce_event *e, size_t i)
{
    struct ig_error err = {};

    fuzz_check(ce_event_validate(e, &err) == 0, "event %zu was accepted but is invalid: %s", i,
               err.message);
    fuzz_check(streq(e->specversion, "1.0"), "event %zu: specversion %s", i, e->specversion);
    _cleanup_free_ char *json = render(e, i);
    _cleanup_free_ char *json2 = reparse(json, i);
    _cleanup_free_ char *json3 = reparse(json2, i);
    /* JSON data is embedded as it came, whitespace included, and the parser takes the data
     * member's text without the whitespace around it: the first round trip gives the same JSON
     * value (compared as cJSON prints it, so 1e400 equals itself), and from then on the same
     * text. */
    _cleanup_free_ char *value = canonical(json), *value2 = canonical(json2);
    fuzz_check(streq(value, value2), "event %zu: the round trip changed it:\n%s\n%s", i, json,
               json2);
    fuzz_check(streq(json2, json3), "event %zu: a second round trip changed it:\n%s\n%s", i, json2,
               json3);
    if (ce_type_pattern_valid(e->type))
        fuzz_check(ce_subscription_matches(e->type, e->source, e),
                   "event %zu does not match a subscription to its own type '%s'", i, e->type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct request q = {};
    struct ce_events *events = NULL;
    struct ig_error err = {};

    split(data, size, &q);
    int r = ce_parse_http(q.h, q.n, q.body, q.body_len, &events, &err);
    if (r < 0) {
        fuzz_check(r == -EINVAL || r == -EOPNOTSUPP || r == -E2BIG, "undocumented error %d", r);
        fuzz_check(err.code == -r && err.message[0], "a refusal without a reason");
    } else {
        fuzz_check(events && events->n <= CE_BATCH_MAX, "%zu events", events ? events->n : 0);
        fuzz_check(events->mode == CE_MODE_BATCH || events->n == 1, "%zu events in mode %d",
                   events->n, events->mode);
        for (size_t i = 0; i < events->n; i++)
            check_event(events->v[i], i);
        ce_events_free(events);
    }
    for (size_t i = 0; i < q.n_strings; i++)
        free(q.strings[i]);
    return 0;
}
