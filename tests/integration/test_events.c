/* Events end to end through a real ignisd and real containers: CloudEvents in binary, structured
 * and batched mode reaching subscribed functions with every attribute intact, each refusal of a
 * bad event, prefix and source subscriptions, de-duplication (across a restart too), a chain of
 * emitted events (an exec function's event lines too), a loop stopped at the hop limit and
 * dead-lettered, schedules (about once a second; a missed run made up once after a restart), `ignis
 * emit`, and a kill -9 with accepted events outstanding. The function is
 * tests/fixtures/functions/relay: it logs and returns the event it received, and emits $EMIT_TYPE
 * when set. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "base/cloudevents.h"
#include "records/db.h"

/* Small, so the loop test is short; chains in the chain test are 2 hops. */
#define HOP_LIMIT "4"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    const char *args[] = {"--event-hop-limit", HOP_LIMIT, NULL};
    return harness_start(&daemon_proc, args);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* POST /v1/events; the reply's JSON (NULL-terminated headers). */
static cJSON *post(struct ignisd_proc *p, const char *const *headers, const char *body,
                   long expect_status)
{
    struct client_response r;
    assert_int_equal(
        harness_request(p, "POST", "/v1/events", headers, body, body ? strlen(body) : 0, &r), 0);
    if (r.status != expect_status)
        fprintf(stderr, "POST /v1/events: HTTP %ld, expected %ld: %s\n", r.status, expect_status,
                r.body);
    assert_int_equal(r.status, expect_status);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    return j;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The one delivery of an accepted event to fn: its invocation id. */
static const char *delivery_to(const cJSON *accepted, const char *fn)
{
    const cJSON *d;
    cJSON_ArrayForEach(
        d, cJSON_GetObjectItem(accepted, "deliveries")) if (streq(str(d, "function"),
                                                                  fn)) return str(d, "invocation");
    return NULL;
}

static size_t ndeliveries(const cJSON *accepted)
{
    return (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(accepted, "deliveries"));
}

/* What the function received, as it returned it. */
static cJSON *received(struct ignisd_proc *p, const char *invocation)
{
    cJSON *rec = harness_wait_invocation(p, invocation, "succeeded", 60);
    cJSON *result = cJSON_DetachItemFromObject(rec, "result");
    cJSON_Delete(rec);
    assert_true(cJSON_IsObject(result));
    return result;
}

static void expect_attr(const cJSON *event, const char *name, const char *value)
{
    const char *got = str(event, name);
    if (!got || !streq(got, value))
        fprintf(stderr, "attribute %s: expected '%s', got '%s'\n", name, value,
                got ? got : "(absent)");
    assert_non_null(got);
    assert_string_equal(got, value);
}

/* The events the function logged ("EVENT {...}" lines on stdout), oldest first. */
static cJSON *logged_events(struct ignisd_proc *p, const char *fn)
{
    char path[256];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/logs", fn);
    assert_int_equal(harness_request(p, "GET", path, NULL, NULL, 0, &r), 0);
    cJSON *all = cJSON_CreateArray();
    if (r.status == 200) {
        char *save = NULL;
        for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            cJSON *rec = cJSON_Parse(line);
            const char *text = str(rec, "text");
            if (text && startswith(text, "EVENT ") && streq(str(rec, "stream"), "stdout"))
                cJSON_AddItemToArray(all, cJSON_Parse(text + 6));
            cJSON_Delete(rec);
        }
    }
    client_response_clear(&r);
    return all;
}

/* Waits (up to `seconds`) until fn has logged at least n events; returns them. */
static cJSON *wait_logged(struct ignisd_proc *p, const char *fn, int n, int seconds)
{
    uint64_t deadline = now_usec() + (uint64_t)seconds * 1000000;
    for (;;) {
        cJSON *all = logged_events(p, fn);
        if (cJSON_GetArraySize(all) >= n)
            return all;
        if (now_usec() > deadline) {
            fprintf(stderr, "%s logged %d events in %d s, expected %d\n", fn,
                    cJSON_GetArraySize(all), seconds, n);
            fail();
        }
        cJSON_Delete(all);
        usleep(50000);
    }
}

static cJSON *dead_letters(struct ignisd_proc *p)
{
    struct client_response r;
    assert_int_equal(harness_request(p, "GET", "/v1/events/dead-letters", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    return j;
}

/* ---- the three content modes ---- */

static void test_binary_mode(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "rec-binary",
                         "{\"events\": [{\"type\": \"com.example.order.created\"}]}");
    const char *headers[] = {
        "ce-specversion: 1.0",
        "CE-Type: com.example.order.created",
        "ce-source: /shop/eu%2Fwest",
        "ce-id: order-42",
        "ce-time: 2026-11-28T04:00:00Z",
        "ce-subject: order%2042%20%E2%82%AC",
        "ce-dataschema: https://example.com/schemas/order",
        "ce-tenant: acme",
        "ce-priority: 5",
        "Content-Type: application/json",
        NULL,
    };
    cJSON *acc = post(&daemon_proc, headers, "{\"total\": 12.5, \"items\": [1, 2]}", 202);
    expect_attr(acc, "id", "order-42");
    expect_attr(acc, "source", "/shop/eu/west");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(acc, "duplicate")));
    assert_int_equal(ndeliveries(acc), 1);
    const char *inv = delivery_to(acc, "rec-binary");
    assert_non_null(inv);

    cJSON *ev = received(&daemon_proc, inv);
    expect_attr(ev, "specversion", "1.0");
    expect_attr(ev, "type", "com.example.order.created");
    expect_attr(ev, "source", "/shop/eu/west");
    expect_attr(ev, "id", "order-42");
    expect_attr(ev, "time", "2026-11-28T04:00:00Z");
    expect_attr(ev, "subject", "order 42 €"); /* percent-decoded, UTF-8 */
    expect_attr(ev, "dataschema", "https://example.com/schemas/order");
    expect_attr(ev, "datacontenttype", "application/json");
    expect_attr(ev, "tenant", "acme");
    expect_attr(ev, "priority", "5"); /* headers have no types: extensions are strings */
    const cJSON *data = cJSON_GetObjectItem(ev, "data");
    assert_true(cJSON_IsObject(data));
    assert_true(cJSON_GetObjectItem(data, "total")->valuedouble == 12.5);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(data, "items")), 2);
    assert_null(cJSON_GetObjectItem(ev, "data_base64"));
    cJSON_Delete(ev);
    cJSON_Delete(acc);

    /* Bytes that are not text arrive as data_base64; an empty body is an event without data. */
    harness_push_fixture(&daemon_proc, "relay", "rec-bytes",
                         "{\"events\": [{\"type\": \"com.example.blob\"}]}");
    const char *bin[] = {"ce-specversion: 1.0",
                         "ce-type: com.example.blob",
                         "ce-source: /b",
                         "ce-id: b1",
                         "Content-Type: application/octet-stream",
                         NULL};
    acc = post(&daemon_proc, bin, "\x01\x02hi", 202);
    ev = received(&daemon_proc, delivery_to(acc, "rec-bytes"));
    expect_attr(ev, "data_base64", "AQJoaQ==");
    assert_null(cJSON_GetObjectItem(ev, "data"));
    cJSON_Delete(ev);
    cJSON_Delete(acc);
    const char *empty[] = {"ce-specversion: 1.0", "ce-type: com.example.blob",
                           "ce-source: /b",       "ce-id: b2",
                           "Content-Type:",       NULL};
    acc = post(&daemon_proc, empty, "", 202);
    ev = received(&daemon_proc, delivery_to(acc, "rec-bytes"));
    assert_null(cJSON_GetObjectItem(ev, "data"));
    assert_null(cJSON_GetObjectItem(ev, "data_base64"));
    assert_null(cJSON_GetObjectItem(ev, "datacontenttype"));
    cJSON_Delete(ev);
    cJSON_Delete(acc);
}

static void test_structured_mode(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "rec-structured",
                         "{\"events\": [{\"type\": \"com.example.structured\"}]}");
    const char *headers[] = {"Content-Type: application/cloudevents+json; charset=utf-8", NULL};
    cJSON *acc = post(&daemon_proc, headers,
                      "{\"specversion\": \"1.0\", \"type\": \"com.example.structured\","
                      " \"source\": \"urn:example:s\", \"id\": \"s-1\","
                      " \"time\": \"2026-11-28T04:00:00.123456+02:00\", \"subject\": \"sub\","
                      " \"datacontenttype\": \"text/plain\", \"tenant\": \"acme\","
                      " \"count\": 7, \"flag\": true, \"data\": \"plain text \\u00e9\"}",
                      202);
    cJSON *ev = received(&daemon_proc, delivery_to(acc, "rec-structured"));
    expect_attr(ev, "specversion", "1.0");
    expect_attr(ev, "source", "urn:example:s");
    expect_attr(ev, "id", "s-1");
    expect_attr(ev, "time", "2026-11-28T04:00:00.123456+02:00");
    expect_attr(ev, "subject", "sub");
    expect_attr(ev, "datacontenttype", "text/plain");
    expect_attr(ev, "tenant", "acme");
    assert_int_equal(cJSON_GetObjectItem(ev, "count")->valueint, 7); /* types kept */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ev, "flag")));
    expect_attr(ev, "data", "plain text \xc3\xa9");
    cJSON_Delete(ev);
    cJSON_Delete(acc);

    /* data_base64 stays data_base64. */
    acc = post(&daemon_proc, headers,
               "{\"specversion\": \"1.0\", \"type\": \"com.example.structured\","
               " \"source\": \"/s\", \"id\": \"s-2\", \"datacontenttype\": \"image/png\","
               " \"data_base64\": \"iVBORw0KGgo=\"}",
               202);
    ev = received(&daemon_proc, delivery_to(acc, "rec-structured"));
    expect_attr(ev, "data_base64", "iVBORw0KGgo=");
    expect_attr(ev, "datacontenttype", "image/png");
    cJSON_Delete(ev);
    cJSON_Delete(acc);
}

static void test_batch_mode(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "rec-batch",
                         "{\"events\": [{\"type\": \"com.example.batch\"}]}");
    const char *headers[] = {"Content-Type: application/cloudevents-batch+json", NULL};
    cJSON *acc = post(&daemon_proc, headers,
                      "[{\"specversion\": \"1.0\", \"type\": \"com.example.batch\","
                      "  \"source\": \"/batch\", \"id\": \"1\", \"ext\": \"one\","
                      "  \"data\": {\"n\": 1}},"
                      " {\"specversion\": \"1.0\", \"type\": \"com.example.batch\","
                      "  \"source\": \"/batch\", \"id\": \"2\", \"data_base64\": \"AAE=\"},"
                      " {\"specversion\": \"1.0\", \"type\": \"com.example.unheard\","
                      "  \"source\": \"/batch\", \"id\": \"3\"}]",
                      202);
    cJSON *list = cJSON_GetObjectItem(acc, "events");
    assert_int_equal(cJSON_GetArraySize(list), 3);
    cJSON *ev = received(&daemon_proc, delivery_to(cJSON_GetArrayItem(list, 0), "rec-batch"));
    expect_attr(ev, "id", "1");
    expect_attr(ev, "ext", "one");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "data"), "n")->valueint, 1);
    cJSON_Delete(ev);
    ev = received(&daemon_proc, delivery_to(cJSON_GetArrayItem(list, 1), "rec-batch"));
    expect_attr(ev, "id", "2");
    expect_attr(ev, "data_base64", "AAE=");
    cJSON_Delete(ev);
    /* No subscriber: accepted, no deliveries. */
    assert_int_equal(ndeliveries(cJSON_GetArrayItem(list, 2)), 0);
    cJSON_Delete(acc);

    /* An empty batch is valid. */
    acc = post(&daemon_proc, headers, "[]", 202);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(acc, "events")), 0);
    cJSON_Delete(acc);
}

/* ---- refusals ---- */

static void test_bad_events_are_refused(void **state)
{
    static const struct {
        const char *headers[8];
        const char *body;
        long status;
        const char *message; /* a part of the error's message */
    } cases[] = {
        {{"ce-type: t", "ce-source: /s", "ce-id: 1", NULL}, "", 400, "'specversion'"},
        {{"ce-specversion: 1.0", "ce-source: /s", "ce-id: 1", NULL}, "", 400, "'type'"},
        {{"ce-specversion: 1.0", "ce-type: t", "ce-id: 1", NULL}, "", 400, "'source'"},
        {{"ce-specversion: 1.0", "ce-type: t", "ce-source: /s", NULL}, "", 400, "'id'"},
        {{"ce-specversion: 0.3", "ce-type: t", "ce-source: /s", "ce-id: 1", NULL},
         "",
         400,
         "specversion"},
        {{"ce-specversion: 1.0", "ce-type: t", "ce-source: /s", "ce-id: 1", "ce-time: yesterday",
          NULL},
         "",
         400,
         "time"},
        {{"ce-specversion: 1.0", "ce-type: t", "ce-source: /s", "ce-id: 1", "ce-subject: a%00",
          NULL},
         "",
         400,
         "ce-subject"},
        {{"ce-specversion: 1.0", "ce-type: t", "ce-source: /s", "ce-id: ", NULL}, "", 400, "'id'"},
        {{"ce-specversion: 1.0", "ce-type: t", "ce-source: /s", "ce-id: 1",
          "Content-Type: application/json", NULL},
         "{not json",
         400,
         "not valid JSON"},
        {{"Content-Type: text/plain", NULL}, "hello", 400, "not a CloudEvent"},
        {{"Content-Type: application/cloudevents+json", NULL},
         "{\"specversion\": \"1.0\", \"type\": \"t\", \"source\": \"/s\"}",
         400,
         "'id'"},
        {{"Content-Type: application/cloudevents+json", NULL},
         "{\"specversion\": \"1.0\", \"type\": \"t\", \"source\": \"/s\", \"id\": 5}",
         400,
         "'id'"},
        {{"Content-Type: application/cloudevents+json", NULL},
         "{\"specversion\": \"1.0\", \"type\": \"t\", \"source\": \"/s\", \"id\": \"1\","
         " \"data\": 1, \"data_base64\": \"AA==\"}",
         400,
         "data_base64"},
        {{"Content-Type: application/cloudevents+json", NULL}, "[1,", 400, "JSON"},
        {{"Content-Type: application/cloudevents-batch+json", NULL},
         "[{\"specversion\": \"1.0\", \"type\": \"t\", \"source\": \"/s\", \"id\": \"1\"},"
         " {\"specversion\": \"1.0\", \"source\": \"/s\", \"id\": \"2\"}]",
         400,
         "event 1"},
        {{"Content-Type: application/cloudevents+avro", NULL}, "x", 415, "not supported"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        cJSON *j = post(&daemon_proc, cases[i].headers, cases[i].body, cases[i].status);
        const char *msg = str(cJSON_GetObjectItem(j, "error"), "message");
        if (!msg || !strstr(msg, cases[i].message))
            fprintf(stderr, "case %zu: message '%s' does not name '%s'\n", i, msg ? msg : "",
                    cases[i].message);
        assert_non_null(msg);
        assert_non_null(strstr(msg, cases[i].message));
        cJSON_Delete(j);
    }
    /* A refused batch delivered nothing of its valid first event: it is not a duplicate now. */
    harness_push_fixture(&daemon_proc, "relay", "rec-refused", "{\"events\": [{\"type\": \"t\"}]}");
    const char *h[] = {"ce-specversion: 1.0",      "ce-type: t", "ce-source: /s", "ce-id: 1",
                       "Content-Type: text/plain", NULL};
    cJSON *acc = post(&daemon_proc, h, "x", 202);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(acc, "duplicate")));
    assert_int_equal(ndeliveries(acc), 1);
    cJSON_Delete(acc);
}

/* ---- subscriptions and duplicates ---- */

static void test_prefix_and_source_subscriptions(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "sub-prefix",
                         "{\"events\": [{\"type\": \"com.acme.order.*\"}]}");
    harness_push_fixture(
        &daemon_proc, "relay", "sub-source",
        "{\"events\": [{\"type\": \"com.acme.order.created\", \"source\": \"/orders\"}]}");
    const char *a[] = {"ce-specversion: 1.0",      "ce-type: com.acme.order.created",
                       "ce-source: /orders",       "ce-id: p1",
                       "Content-Type: text/plain", NULL};
    cJSON *acc = post(&daemon_proc, a, "x", 202);
    assert_int_equal(ndeliveries(acc), 2);
    assert_non_null(delivery_to(acc, "sub-prefix"));
    assert_non_null(delivery_to(acc, "sub-source"));
    cJSON *ev = received(&daemon_proc, delivery_to(acc, "sub-source"));
    expect_attr(ev, "id", "p1");
    cJSON_Delete(ev);
    cJSON_Delete(acc);

    const char *b[] = {"ce-specversion: 1.0",      "ce-type: com.acme.order.created.v2",
                       "ce-source: /elsewhere",    "ce-id: p2",
                       "Content-Type: text/plain", NULL};
    acc = post(&daemon_proc, b, "x", 202);
    assert_int_equal(ndeliveries(acc), 1);
    assert_non_null(delivery_to(acc, "sub-prefix"));
    cJSON_Delete(acc);

    /* Neither "com.acme.orders" nor the prefix itself matches; 202 with no deliveries. */
    const char *c[] = {"ce-specversion: 1.0", "ce-type: com.acme.order",  "ce-source: /orders",
                       "ce-id: p3",           "Content-Type: text/plain", NULL};
    acc = post(&daemon_proc, c, "x", 202);
    assert_int_equal(ndeliveries(acc), 0);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(acc, "duplicate")));
    cJSON_Delete(acc);
}

static void test_duplicates(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "dedupe",
                         "{\"events\": [{\"type\": \"com.example.dup\"}]}");
    const char *h[] = {"ce-specversion: 1.0", "ce-type: com.example.dup", "ce-source: /dup",
                       "ce-id: d1",           "Content-Type: text/plain", NULL};
    cJSON *first = post(&daemon_proc, h, "x", 202);
    assert_int_equal(ndeliveries(first), 1);
    cJSON *again = post(&daemon_proc, h, "x", 202);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(again, "duplicate")));
    assert_int_equal(ndeliveries(again), 0);
    cJSON_Delete(again);
    /* The same id from another source is another event. */
    const char *other[] = {"ce-specversion: 1.0", "ce-type: com.example.dup", "ce-source: /dup2",
                           "ce-id: d1",           "Content-Type: text/plain", NULL};
    again = post(&daemon_proc, other, "x", 202);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(again, "duplicate")));
    assert_int_equal(ndeliveries(again), 1);
    cJSON_Delete(again);
    /* Within one batch, the second of a pair is the duplicate. */
    const char *bh[] = {"Content-Type: application/cloudevents-batch+json", NULL};
    cJSON *batch = post(&daemon_proc, bh,
                        "[{\"specversion\": \"1.0\", \"type\": \"com.example.dup\","
                        "  \"source\": \"/dup\", \"id\": \"d2\"},"
                        " {\"specversion\": \"1.0\", \"type\": \"com.example.dup\","
                        "  \"source\": \"/dup\", \"id\": \"d2\"}]",
                        202);
    cJSON *list = cJSON_GetObjectItem(batch, "events");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "duplicate")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 1), "duplicate")));
    cJSON_Delete(batch);
    cJSON_Delete(received(&daemon_proc, delivery_to(first, "dedupe")));
    cJSON_Delete(first);
}

/* Writes request on two fresh connections before reading either reply, so that ignisd takes
 * both in one turn of its loop; the statuses into status, the bodies into body. */
static void send_twice_at_once(struct ignisd_proc *p, const char *request, int status[2],
                               char body[2][1024])
{
    int fd[2];
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(p->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 2; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd[i] >= 0);
        assert_int_equal(connect(fd[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(write(fd[i], request, strlen(request)), (ssize_t)strlen(request));
    for (int i = 0; i < 2; i++) {
        char buf[4096];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof(buf) - 1 && (n = read(fd[i], buf + len, sizeof(buf) - 1 - len)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
        close(fd[i]);
        status[i] = startswith(buf, "HTTP/1.1 ") ? atoi(buf + 9) : -1;
        const char *b = strstr(buf, "\r\n\r\n");
        snprintf(body[i], 1024, "%s", b ? b + 4 : "");
    }
}

/* The same event in two requests at once: the one that comes second while the first is still
 * being stored is not told "duplicate" (the first may yet fail, and the event would be lost),
 * but 503 in_progress, to retry; a retry then is the duplicate. */
static void test_duplicate_in_flight(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "racer",
                         "{\"events\": [{\"type\": \"com.example.race\"}]}");
    char request[1024], id[16];
    int status[2] = {0, 0};
    char body[2][1024];
    for (int i = 0; i < 50 && !(status[0] == 503 || status[1] == 503); i++) {
        snprintf(id, sizeof(id), "r%d", i);
        snprintf(request, sizeof(request),
                 "POST /v1/events HTTP/1.1\r\nHost: ignis\r\nConnection: close\r\n"
                 "Authorization: Bearer %s\r\nce-specversion: 1.0\r\n"
                 "ce-type: com.example.race\r\nce-source: /race\r\nce-id: %s\r\n"
                 "Content-Type: text/plain\r\nContent-Length: 1\r\n\r\nx",
                 daemon_proc.token, id);
        send_twice_at_once(&daemon_proc, request, status, body);
        /* Either both were taken in turn (accepted, then its duplicate), or one was in flight. */
        if (!((status[0] == 202 && status[1] == 202) || (status[0] == 202 && status[1] == 503) ||
              (status[0] == 503 && status[1] == 202)))
            fail_msg("%s: %d %s / %d %s", id, status[0], body[0], status[1], body[1]);
        if (status[0] == 202 && status[1] == 202)
            assert_true(strstr(body[0], "\"duplicate\":true") ||
                        strstr(body[1], "\"duplicate\":true"));
    }
    int late = status[0] == 503 ? 0 : 1;
    if (status[late] != 503)
        fail_msg("50 pairs of requests, none of them found the other in flight");
    fprintf(stderr, "the pair with id %s found the other in flight\n", id);
    assert_non_null(strstr(body[late], "in_progress"));
    /* The retry: the other request stored it, so it is a duplicate, delivered once. */
    const char *h[] = {"ce-specversion: 1.0",
                       "ce-type: com.example.race",
                       "ce-source: /race",
                       "Content-Type: text/plain",
                       NULL,
                       NULL};
    char idh[32];
    snprintf(idh, sizeof(idh), "ce-id: %s", id);
    h[4] = idh;
    cJSON *again = post(&daemon_proc, h, "x", 202);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(again, "duplicate")));
    cJSON_Delete(again);
}

/* ---- emitted events ---- */

/* An external event makes A run and emit, B run and emit, and C run: C sees B's event, stamped
 * by the controller, two hops from the external one. */
static void test_chain(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "chain-a",
                         "{\"events\": [{\"type\": \"com.chain.start\"}],"
                         " \"env\": {\"EMIT_TYPE\": \"com.chain.a\"}}");
    harness_push_fixture(
        &daemon_proc, "relay", "chain-b",
        "{\"events\": [{\"type\": \"com.chain.a\", \"source\": \"/ignis/functions/chain-a\"}],"
        " \"env\": {\"EMIT_TYPE\": \"com.chain.b\"}}");
    harness_push_fixture(&daemon_proc, "relay", "chain-c",
                         "{\"events\": [{\"type\": \"com.chain.b\"}]}");
    const char *h[] = {"ce-specversion: 1.0", "ce-type: com.chain.start",       "ce-source: /test",
                       "ce-id: chain-1",      "Content-Type: application/json", NULL};
    cJSON *acc = post(&daemon_proc, h, "{\"step\": 0}", 202);
    const char *a_inv = delivery_to(acc, "chain-a");
    assert_non_null(a_inv);

    cJSON *got = wait_logged(&daemon_proc, "chain-c", 1, 60);
    cJSON *ev = cJSON_GetArrayItem(got, 0);
    expect_attr(ev, "type", "com.chain.b");
    expect_attr(ev, "source", "/ignis/functions/chain-b");
    expect_attr(ev, "specversion", "1.0");
    assert_non_null(str(ev, "time"));
    assert_true(ce_time_parse(str(ev, "time"), NULL));
    assert_int_equal(cJSON_GetObjectItem(ev, "ignishops")->valueint, 2);
    expect_attr(ev, "datacontenttype", "application/json");
    const cJSON *data = cJSON_GetObjectItem(ev, "data");
    expect_attr(data, "from", "chain-b");
    cJSON_Delete(got);

    /* B saw A's event, whose id names A's invocation. */
    got = wait_logged(&daemon_proc, "chain-b", 1, 60);
    ev = cJSON_GetArrayItem(got, 0);
    expect_attr(ev, "source", "/ignis/functions/chain-a");
    assert_int_equal(cJSON_GetObjectItem(ev, "ignishops")->valueint, 1);
    char id[64];
    snprintf(id, sizeof(id), "%s-1", a_inv);
    expect_attr(ev, "id", id);
    expect_attr(cJSON_GetObjectItem(ev, "data"), "cause", "chain-1");
    cJSON_Delete(got);
    cJSON_Delete(acc);
    /* Each ran once. */
    usleep(500000);
    got = logged_events(&daemon_proc, "chain-c");
    assert_int_equal(cJSON_GetArraySize(got), 1);
    cJSON_Delete(got);
}

/* An exec function's event lines (JSON on fd 4), passed by the watchdog as written and read by
 * the controller: each object becomes an event with its data and content type, and a line that
 * is not one is dropped with a line in the function's log. */
static void test_exec_event_lines(void **state)
{
    char src[512];
    snprintf(src, sizeof(src), "%s/tests/fixtures/runtimes/exec-emit", getenv("IGNIS_SOURCE_DIR"));
    harness_push_fixture(&daemon_proc, "relay", "exec-sink",
                         "{\"events\": [{\"type\": \"com.example.exec\"},"
                         " {\"type\": \"com.example.text\"}]}");
    harness_push(&daemon_proc, src, "exec-emit", NULL);
    struct client_response r;
    assert_int_equal(harness_invoke(&daemon_proc, "exec-emit", "{}", NULL, &r), 200);
    assert_non_null(strstr(r.body, "done"));
    client_response_clear(&r);

    cJSON *got = wait_logged(&daemon_proc, "exec-sink", 2, 60);
    const cJSON *json = NULL, *text = NULL, *ev;
    cJSON_ArrayForEach(ev, got)
    {
        if (streq(str(ev, "type"), "com.example.exec"))
            json = ev;
        else if (streq(str(ev, "type"), "com.example.text"))
            text = ev;
    }
    assert_non_null(json);
    expect_attr(json, "source", "/ignis/functions/exec-emit");
    expect_attr(json, "datacontenttype", "application/json");
    expect_attr(cJSON_GetObjectItem(json, "data"), "from", "exec");
    assert_non_null(text);
    expect_attr(text, "datacontenttype", "text/x-greeting");
    expect_attr(text, "data", "hi");
    cJSON_Delete(got);

    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/functions/exec-emit/logs", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    if (!strstr(r.body, "ignoring an event line"))
        fprintf(stderr, "exec-emit's logs:\n%s\n", r.body);
    assert_non_null(strstr(r.body, "ignoring an event line"));
    client_response_clear(&r);
}

/* The example service (runtime-images/examples/greetings) works as its README says: deployed
 * in one step, an external event reaches `greet`, whose emitted greeting reaches `record`. */
static void test_example_service(void **state)
{
    char dir[512], *out = NULL, *err = NULL;
    snprintf(dir, sizeof(dir), "%s/runtime-images/examples/greetings", getenv("IGNIS_SOURCE_DIR"));
    int rc = harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL);
    if (rc != 0)
        fprintf(stderr, "ignis deploy: %s%s\n", out, err);
    assert_int_equal(rc, 0);
    free(out);
    free(err);
    const char *h[] = {"ce-specversion: 1.0", "ce-type: com.example.hello",     "ce-source: /test",
                       "ce-id: greetings-1",  "Content-Type: application/json", NULL};
    cJSON *acc = post(&daemon_proc, h, "{\"name\": \"test\"}", 202);
    assert_non_null(delivery_to(acc, "greet"));
    cJSON_Delete(acc);

    const char *want = "recorded: Hello, test! (from /ignis/functions/greet, 1 hop)";
    bool seen = false;
    for (int i = 0; i < 1200 && !seen; i++) {
        struct client_response r;
        assert_int_equal(
            harness_request(&daemon_proc, "GET", "/v1/functions/record/logs", NULL, NULL, 0, &r),
            0);
        seen = r.status == 200 && strstr(r.body, want);
        client_response_clear(&r);
        if (!seen)
            usleep(50000);
    }
    if (!seen)
        fprintf(stderr, "record never logged '%s'\n", want);
    assert_true(seen);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "service", "rm", "greetings", NULL),
                     0);
    free(out);
    free(err);
}

/* A function that answers its own event type loops; the hop count stops it at the limit and the
 * event past it is dead-lettered with the reason. */
static void test_loop_is_dead_lettered(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "looper",
                         "{\"events\": [{\"type\": \"com.loop.tick\"}],"
                         " \"env\": {\"EMIT_TYPE\": \"com.loop.tick\"}}");
    const char *h[] = {"ce-specversion: 1.0", "ce-type: com.loop.tick",         "ce-source: /test",
                       "ce-id: loop-1",       "Content-Type: application/json", NULL};
    cJSON_Delete(post(&daemon_proc, h, "{}", 202));

    /* The external event and HOP_LIMIT emitted ones run; the next one is dead-lettered. */
    int runs = 1 + atoi(HOP_LIMIT);
    uint64_t deadline = now_usec() + 60 * 1000000ull;
    cJSON *found = NULL;
    while (!found) {
        cJSON *dl = dead_letters(&daemon_proc);
        cJSON *x;
        cJSON_ArrayForEach(
            x, cJSON_GetObjectItem(dl, "dead_letters")) if (streq(str(x, "function"), "looper"))
            found = cJSON_Duplicate(x, true);
        cJSON_Delete(dl);
        if (!found) {
            assert_true(now_usec() < deadline);
            usleep(50000);
        }
    }
    assert_non_null(strstr(str(found, "reason"), "hop limit"));
    assert_non_null(str(found, "invocation"));
    cJSON *ev = cJSON_GetObjectItem(found, "event");
    expect_attr(ev, "type", "com.loop.tick");
    expect_attr(ev, "source", "/ignis/functions/looper");
    assert_int_equal(cJSON_GetObjectItem(ev, "ignishops")->valueint, runs);
    cJSON_Delete(found);

    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/events/dead-letters?limit=0", NULL, NULL, 0, &r),
        0);
    assert_int_equal(r.status, 400);
    client_response_clear(&r);

    /* The loop stopped: exactly `runs` runs, the last at hop HOP_LIMIT. */
    usleep(500000);
    cJSON *got = wait_logged(&daemon_proc, "looper", runs, 30);
    assert_int_equal(cJSON_GetArraySize(got), runs);
    cJSON *last = cJSON_GetArrayItem(got, runs - 1);
    assert_int_equal(cJSON_GetObjectItem(last, "ignishops")->valueint, runs - 1);
    cJSON_Delete(got);
}

/* ---- schedules ---- */

static size_t count_schedule_runs(struct ignisd_proc *p, const char *fn, size_t *ret_makeups)
{
    cJSON *all = logged_events(p, fn), *ev;
    size_t n = 0, makeups = 0;
    cJSON_ArrayForEach(ev, all)
    {
        if (!streq(str(ev, "type"), "dev.ignis.schedule"))
            continue;
        n++;
        makeups += cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "data"), "makeup"));
    }
    cJSON_Delete(all);
    if (ret_makeups)
        *ret_makeups = makeups;
    return n;
}

static void test_every_second(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "ticker", "{\"schedule\": \"@every 1s\"}");
    /* The first run (a cold start) anchors the count. */
    cJSON *first = wait_logged(&daemon_proc, "ticker", 1, 30);
    cJSON *ev = cJSON_GetArrayItem(first, 0);
    expect_attr(ev, "type", "dev.ignis.schedule");
    expect_attr(ev, "source", "/ignis/schedules/ticker");
    expect_attr(ev, "datacontenttype", "application/json");
    expect_attr(cJSON_GetObjectItem(ev, "data"), "schedule", "@every 1s");
    assert_string_equal(str(ev, "id"), str(ev, "time"));
    cJSON_Delete(first);

    size_t n0 = count_schedule_runs(&daemon_proc, "ticker", NULL);
    sleep(5);
    size_t n1 = count_schedule_runs(&daemon_proc, "ticker", NULL);
    /* It keeps running (generous: the machine is shared and runs are logged once they ran), once
     * per slot: every run is a distinct whole second, in order (no timing is asserted). */
    assert_true(n1 - n0 >= 2);
    /* RFC 3339 times of one fixed width (2026-11-28T06:00:01.000000Z) order as text. */
    cJSON *all = logged_events(&daemon_proc, "ticker"), *run;
    char last[40] = "";
    cJSON_ArrayForEach(run, all)
    {
        if (!streq(str(run, "type"), "dev.ignis.schedule"))
            continue;
        const char *t = str(run, "time");
        assert_true(strlen(t) == 27 && streq(t + 19, ".000000Z"));
        assert_true(strcmp(t, last) > 0);
        snprintf(last, sizeof(last), "%s", t);
    }
    cJSON_Delete(all);
    /* GET /metrics counts a run when it is submitted, before it is logged. */
    assert_true(harness_metric(&daemon_proc,
                               "ignis_schedule_runs_total{function=\"ticker\",kind=\"on_time\"}") >=
                (double)n1);

    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "DELETE", "/v1/functions/ticker", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
}

/* The daemon's store, on either engine (harness_store_target). */
static struct db *open_store(struct ignisd_proc *p)
{
    char target[600];
    struct db *db;
    struct ig_error err = {};
    harness_store_target(p, target, sizeof(target));
    if (db_open(target, 0, &db, &err) < 0)
        fail_msg("%s", err.message);
    return db;
}

/* Waits (up to 30 s) until ignisd has stored fn's schedule. */
static void wait_schedule_recorded(struct ignisd_proc *p, const char *fn)
{
    struct db *db = open_store(p);
    const struct db_value v[] = {DV_S(fn)};
    bool found = false;
    for (int i = 0; i < 600 && !found; i++) {
        struct db_rows *st;
        assert_int_equal(
            db_query(db, "SELECT 1 FROM schedules WHERE function = $1", v, 1, &st, NULL), 0);
        found = db_next(st) == 1;
        db_rows_free(st);
        if (!found)
            usleep(50000);
    }
    db_close(db);
    if (!found)
        fail_msg("the schedule of %s was never stored", fn);
}

/* Moves a schedule's last run back, as if ignisd had been down that long. */
static void age_schedule(struct ignisd_proc *p, const char *fn, long seconds)
{
    struct db *db = open_store(p);
    const struct db_value v[] = {DV_I(seconds), DV_S(fn)};
    assert_int_equal(db_exec(db,
                             "UPDATE schedules SET last_run = last_run - $1 WHERE function = $2", v,
                             ARRAY_SIZE(v), NULL),
                     1);
    db_close(db);
}

/* A yearly schedule whose last run was three years ago (ignisd "down" since): one run, marked
 * makeup, for the latest missed slot; not one per missed year, none again at the next restart,
 * and none again when a crash lost the record of the run. */
static void test_makeup_after_restart(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    harness_push_fixture(&p, "relay", "yearly", "{\"schedule\": \"0 0 1 1 *\"}");
    /* The schedule is recorded once the daemon has seen it (within a second). */
    wait_schedule_recorded(&p, "yearly");
    assert_int_equal(harness_stop(&p), 0);
    age_schedule(&p, "yearly", 3 * 366 * 86400L);
    assert_int_equal(harness_restart(&p, NULL), 0);
    cJSON_Delete(wait_logged(&p, "yearly", 1, 60));
    sleep(2);
    size_t makeups;
    assert_int_equal(count_schedule_runs(&p, "yearly", &makeups), 1);
    assert_int_equal(makeups, 1);
    /* GET /metrics counts it as a makeup run; the counters began with this start. */
    assert_true(
        harness_metric(&p, "ignis_schedule_runs_total{function=\"yearly\",kind=\"makeup\"}") == 1);
    assert_true(
        harness_metric(&p, "ignis_schedule_runs_total{function=\"yearly\",kind=\"on_time\"}") == 0);
    cJSON *all = logged_events(&p, "yearly");
    assert_non_null(strstr(str(cJSON_GetArrayItem(all, 0), "time"), "-01-01T00:00:00"));
    cJSON_Delete(all);

    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_restart(&p, NULL), 0);
    sleep(2);
    assert_int_equal(count_schedule_runs(&p, "yearly", NULL), 1);

    /* ignisd killed after the make-up run's invocation was committed but before its last run
     * was: the slot is due again at the next start, and its invocation is found, not made
     * twice. */
    assert_int_equal(harness_stop(&p), 0);
    age_schedule(&p, "yearly", 366 * 86400L);
    assert_int_equal(harness_restart(&p, NULL), 0);
    sleep(2);
    assert_int_equal(count_schedule_runs(&p, "yearly", NULL), 1);
    assert_true(
        harness_metric(&p, "ignis_schedule_runs_total{function=\"yearly\",kind=\"makeup\"}") == 0);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

/* ---- the queue bound ---- */

/* --queue-max bounds what events may queue for a subscriber, counting what a request adds: a
 * batch that would take the queue past it is refused whole (429, nothing delivered), one that
 * fits is accepted, and events a function emits past it are dead-lettered (queue_full). */
static void test_queue_bound(void **state)
{
    struct ignisd_proc p;
    static const char *const args[] = {"--queue-max", "3", NULL};
    assert_int_equal(harness_start(&p, args), 0);
    harness_push_fixture(
        &p, "relay", "slow",
        "{\"max_scale\": 1, \"timeout_ms\": 60000, \"env\": {\"SLEEP_MS\": \"5000\"}, "
        "\"events\": [{\"type\": \"com.bound.tick\"}]}");
    harness_push_fixture(&p, "relay", "emitter",
                         "{\"env\": {\"EMIT_TYPE\": \"com.bound.tick\", \"EMIT_COUNT\": \"3\"}}");
    const char *bh[] = {"Content-Type: application/cloudevents-batch+json", NULL};
    char batch[1024];
    size_t off = 0, three = 0;
    for (int i = 0; i < 4; i++, three = i == 3 ? off : three)
        off += (size_t)snprintf(batch + off, sizeof(batch) - off,
                                "%s{\"specversion\": \"1.0\", \"type\": \"com.bound.tick\", "
                                "\"source\": \"/bound\", \"id\": \"b%d\"}",
                                i ? ", " : "[", i);
    snprintf(batch + off, sizeof(batch) - off, "]");
    cJSON *j = post(&p, bh, batch, 429);
    assert_non_null(strstr(str(cJSON_GetObjectItem(j, "error"), "message"),
                           "4 more from this request, at most 3"));
    cJSON_Delete(j);
    assert_int_equal(harness_live_number(&p, "slow", "queue_depth"), 0);
    assert_int_equal(harness_live_number(&p, "slow", "in_flight"), 0);

    /* Three fit (the batch's fourth event goes). */
    snprintf(batch + three, sizeof(batch) - three, "]");
    cJSON_Delete(post(&p, bh, batch, 202));
    /* slow runs one at a time for 5 s: at most one of the three has left the queue, so at most
     * one of the emitter's three events finds room. */
    assert_int_equal(harness_invoke(&p, "emitter", "{}", NULL, NULL), 200);
    /* Dead letters are written through the journal, a moment after the reply. */
    size_t full = 0;
    for (int tries = 0; tries < 200 && full < 2; tries++) {
        cJSON *dl = dead_letters(&p), *x;
        full = 0;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(dl, "dead_letters"))
        {
            if (streq(str(x, "function"), "emitter") &&
                strstr(str(x, "reason"), "queue full: subscriber 'slow'"))
                full++;
        }
        cJSON_Delete(dl);
        usleep(50000);
    }
    assert_true(full >= 2);
    assert_true(harness_metric(&p, "ignis_event_dead_letters_total{reason=\"queue_full\"}") ==
                (double)full);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

/* ---- durability ---- */

/* kill -9 right after a batch of events was accepted: after a restart every delivery runs, and a
 * sender's retry of the batch is recognised as duplicates. */
static void test_kill9_loses_no_event(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    harness_push_fixture(&p, "relay", "durable",
                         "{\"events\": [{\"type\": \"com.example.durable\"}], \"max_scale\": 1}");
    enum { N = 50 };
    char body[N * 120 + 8], *b = body;
    b += sprintf(b, "[");
    for (int i = 0; i < N; i++)
        b += sprintf(b,
                     "%s{\"specversion\":\"1.0\",\"type\":\"com.example.durable\","
                     "\"source\":\"/durable\",\"id\":\"e%d\",\"data\":{\"i\":%d}}",
                     i ? "," : "", i, i);
    sprintf(b, "]");
    const char *h[] = {"Content-Type: application/cloudevents-batch+json", NULL};
    cJSON *acc = post(&p, h, body, 202);
    kill(p.pid, SIGKILL);
    waitpid(p.pid, NULL, 0);
    p.pid = 0;
    assert_int_equal(harness_restart(&p, NULL), 0);
    cJSON *list = cJSON_GetObjectItem(acc, "events");
    assert_int_equal(cJSON_GetArraySize(list), N);
    for (int i = 0; i < N; i++) {
        cJSON *ev = received(&p, delivery_to(cJSON_GetArrayItem(list, i), "durable"));
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "data"), "i")->valueint, i);
        cJSON_Delete(ev);
    }
    cJSON_Delete(acc);
    /* The ids were remembered across the kill. */
    acc = post(&p, h, body, 202);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(acc, "events")), N);
    cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(acc, "events"))
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(x, "duplicate")));
    cJSON_Delete(acc);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

/* ---- the CLI ---- */

static void test_ignis_emit(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "cli-sink",
                         "{\"events\": [{\"type\": \"com.cli.*\"}]}");
    char *out = NULL, *err = NULL;
    int rc = harness_ignis(&daemon_proc, &out, &err, "emit", "com.cli.hello", "-d", "{\"x\": 1}",
                           "--source", "/cli/caf\xc3\xa9", NULL);
    if (rc != 0)
        fprintf(stderr, "ignis emit: %s%s\n", out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "cli-sink"));
    /* FUNCTION INVOCATION: the id is the second column of the second line. */
    char fn[64], inv[64];
    const char *line = strchr(out, '\n');
    assert_non_null(line);
    assert_int_equal(sscanf(line + 1, "%63s %63s", fn, inv), 2);
    assert_string_equal(fn, "cli-sink");
    cJSON *ev = received(&daemon_proc, inv);
    expect_attr(ev, "type", "com.cli.hello");
    expect_attr(ev, "source", "/cli/caf\xc3\xa9"); /* percent-encoded on the way, decoded here */
    expect_attr(ev, "datacontenttype", "application/json");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "data"), "x")->valueint, 1);
    cJSON_Delete(ev);
    free(out);
    free(err);

    /* No subscriber: said so, exit 0. A server refusal: exit 1 with its message. */
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "emit", "org.nobody", NULL), 0);
    assert_non_null(strstr(out, "no function subscribes"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "emit", "com.cli.x", "--id", "", NULL),
                     1);
    assert_non_null(strstr(err, "'id'"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "emit", NULL), 1);
    assert_non_null(strstr(err, "usage: ignis emit TYPE"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_mode),
        cmocka_unit_test(test_structured_mode),
        cmocka_unit_test(test_batch_mode),
        cmocka_unit_test(test_bad_events_are_refused),
        cmocka_unit_test(test_prefix_and_source_subscriptions),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_duplicate_in_flight),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_exec_event_lines),
        cmocka_unit_test(test_example_service),
        cmocka_unit_test(test_loop_is_dead_lettered),
        cmocka_unit_test(test_every_second),
        cmocka_unit_test(test_ignis_emit),
        cmocka_unit_test(test_makeup_after_restart),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_kill9_loses_no_event),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
