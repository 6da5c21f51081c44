/* CloudEvents parsing in the three HTTP content modes, validation, rendering and round trips,
 * subscription matching and the de-duplication window. The examples are the spec's own where it
 * has them (http-protocol-binding.md 3.1.3.2, json-format.md 3.2 and 4.3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "base/cloudevents.h"
#include "events/dedupe.h"

#define SPEC_HEADERS                                                                               \
    "ce-specversion", "1.0", "ce-type", "com.example.someevent", "ce-time",                        \
        "2018-04-05T03:56:24Z", "ce-id", "1234-1234-1234", "ce-source", "/mycontext/subcontext"

/* Parses a request given as a body and NULL-terminated name, value pairs of headers. */
static int parse(struct ce_events **ret, struct ig_error *err, const char *body, ...)
{
    struct ce_header h[80];
    size_t n = 0;
    va_list ap;

    va_start(ap, body);
    for (const char *name; (name = va_arg(ap, const char *));) {
        assert_true(n < ARRAY_SIZE(h));
        h[n].name = name;
        h[n].value = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    ig_error_clear(err);
    *ret = NULL;
    return ce_parse_http(h, n, body, body ? strlen(body) : 0, ret, err);
}

/* Expects a failure with code and a message holding each of the given strings. */
static void expect_error(int r, int code, const struct ig_error *err, const char *part1,
                         const char *part2)
{
    if (r != -code || !strstr(err->message, part1) || (part2 && !strstr(err->message, part2)))
        fail_msg("expected -%d mentioning '%s' '%s', got %d: %s", code, part1, part2 ? part2 : "",
                 r, err->message);
}

static int parse_structured(struct ce_events **ret, struct ig_error *err, const char *json)
{
    return parse(ret, err, json, "Content-Type", "application/cloudevents+json; charset=UTF-8",
                 NULL);
}

/* ---- Binary mode ---- */

static void test_binary_spec_example(void **state)
{
    _cleanup_ce_events_ struct ce_events *ev = NULL;
    struct ig_error err = {};
    const char *body = "{\n    \"appinfoA\" : \"abc\", \"n\": 12345678901234567890\n}";

    assert_int_equal(parse(&ev, &err, body, SPEC_HEADERS, "Content-Type",
                           "application/json; charset=utf-8", "ce-comexampleextension1", "value",
                           "Host", "webhook.example.com", NULL),
                     0);
    assert_int_equal(ev->mode, CE_MODE_BINARY);
    assert_int_equal(ev->n, 1);
    struct ce_event *e = ev->v[0];
    assert_string_equal(e->specversion, "1.0");
    assert_string_equal(e->type, "com.example.someevent");
    assert_string_equal(e->time, "2018-04-05T03:56:24Z");
    assert_string_equal(e->id, "1234-1234-1234");
    assert_string_equal(e->source, "/mycontext/subcontext");
    assert_string_equal(e->datacontenttype, "application/json; charset=utf-8");
    assert_null(e->subject);
    assert_null(e->dataschema);
    assert_int_equal(e->n_extensions, 1);
    assert_string_equal(e->extensions[0].name, "comexampleextension1");
    assert_string_equal(e->extensions[0].value, "value");
    assert_int_equal(e->extensions[0].type, CE_EXT_STRING);
    /* The body is the data, byte for byte (binding 3.1.2). */
    assert_int_equal(e->data_kind, CE_DATA_JSON);
    assert_int_equal(e->data_len, strlen(body));
    assert_memory_equal(e->data, body, strlen(body));
}

static void test_binary_header_case(void **state)
{
    _cleanup_ce_events_ struct ce_events *ev = NULL;
    struct ig_error err = {};

    /* Header names are case-insensitive (binding 3.1.3.1); attribute names are lower case. */
    assert_int_equal(parse(&ev, &err, "hi", "CE-SPECVERSION", "1.0", "Ce-Id", "1", "cE-sOuRcE",
                           "/s", "CE-TYPE", "t", "CE-MyExt", "x", "CONTENT-TYPE", "text/plain",
                           NULL),
                     0);
    struct ce_event *e = ev->v[0];
    assert_string_equal(e->id, "1");
    assert_string_equal(e->source, "/s");
    assert_string_equal(e->datacontenttype, "text/plain");
    assert_string_equal(e->extensions[0].name, "myext");
    assert_int_equal(e->data_kind, CE_DATA_TEXT);
    assert_string_equal(e->data, "hi");
}

static void test_binary_required(void **state)
{
    static const char *names[] = {"specversion", "id", "source", "type"};
    struct ig_error err = {};

    for (size_t skip = 0; skip < 4; skip++) {
        struct ce_header h[4];
        size_t n = 0;
        for (size_t i = 0; i < 4; i++) {
            if (i == skip)
                continue;
            static char hn[4][32];
            snprintf(hn[i], sizeof(hn[i]), "ce-%s", names[i]);
            h[n++] = (struct ce_header){hn[i], i == 0 ? "1.0" : "x"};
        }
        struct ce_events *ev = NULL;
        char want[64];
        snprintf(want, sizeof(want), "(header ce-%s)", names[skip]);
        ig_error_clear(&err);
        int r = ce_parse_http(h, n, NULL, 0, &ev, &err);
        expect_error(r, EINVAL, &err, "missing", want);
        assert_null(ev);

        /* Present but empty is refused as well (spec.md: "MUST be a non-empty string"). */
        for (size_t i = 0; i < 4; i++)
            h[i] = (struct ce_header){
                (const char *[]){"ce-specversion", "ce-id", "ce-source", "ce-type"}[i],
                i == 0 ? "1.0" : "x"};
        h[skip].value = skip == 0 ? "" : "  ";
        ig_error_clear(&err);
        r = ce_parse_http(h, 4, NULL, 0, &ev, &err);
        expect_error(r, EINVAL, &err, "empty", want);
    }
}

static void test_binary_malformed(void **state)
{
    struct ce_events *ev = NULL;
    struct ig_error err = {};
    int r;

    r = parse(&ev, &err, NULL, "ce-specversion", "0.3", "ce-id", "1", "ce-source", "/s", "ce-type",
              "t", NULL);
    expect_error(r, EINVAL, &err, "'specversion' (header ce-specversion)", "1.0");
    /* An event of another version is refused for its version, whatever else it lacks. */
    r = parse(&ev, &err, NULL, "ce-specversion", "0.3", NULL);
    expect_error(r, EINVAL, &err, "'specversion' (header ce-specversion) is '0.3'", NULL);
    r = parse(&ev, &err, NULL, "ce-specversion", "%0A", NULL);
    expect_error(r, EINVAL, &err, "'specversion' (header ce-specversion) is not '1.0'", NULL);
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-time", "2018-04-05", NULL);
    expect_error(r, EINVAL, &err, "ce-time", "more than once");
    r = parse(&ev, &err, NULL, "ce-specversion", "1.0", "ce-id", "1", "ce-source", "/s", "ce-type",
              "t", "ce-time", "2018-02-30T00:00:00Z", NULL);
    expect_error(r, EINVAL, &err, "(header ce-time)", "RFC 3339");
    r = parse(&ev, &err, NULL, "ce-specversion", "1.0", "ce-id", "1", "ce-source", "a%20b",
              "ce-type", "t", NULL);
    expect_error(r, EINVAL, &err, "(header ce-source)", "URI-reference");
    r = parse(&ev, &err, NULL, "ce-specversion", "1.0", "ce-id", "1", "ce-source", "/a%5Cb",
              "ce-type", "t", NULL);
    expect_error(r, EINVAL, &err, "(header ce-source)", "URI-reference");
    r = parse(&ev, &err, NULL, "ce-specversion", "1.0", "ce-id", "1", "ce-source", "/100%25",
              "ce-type", "t", NULL);
    expect_error(r, EINVAL, &err, "(header ce-source)", "URI-reference");
    /* Beyond ASCII, a source is taken as an IRI (RFC 3987), encoded or raw. */
    r = parse(&ev, &err, NULL, "ce-specversion", "1.0", "ce-id", "1", "ce-source", "/caf%C3%A9",
              "ce-type", "t", NULL);
    assert_int_equal(r, 0);
    assert_string_equal(ev->v[0]->source, "/caf\xc3\xa9");
    ce_events_free(TAKE_PTR(ev));
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-dataschema", "schema.json", NULL);
    expect_error(r, EINVAL, &err, "(header ce-dataschema)", "absolute URI");
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-subject", "", NULL);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "empty");
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "Content-Type", "json", NULL);
    expect_error(r, EINVAL, &err, "(header Content-Type)", "media type");
    /* Binding 3.1.1: Content-Type carries datacontenttype; the ce- header must not appear. */
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-datacontenttype", "text/plain", NULL);
    expect_error(r, EINVAL, &err, "ce-datacontenttype", "3.1.1");
    /* Names are a-z and 0-9 only; "data" is reserved (spec.md Naming Conventions). */
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-my-extension", "v", NULL);
    expect_error(r, EINVAL, &err, "header ce-my-extension", "lower-case letters");
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-data", "v", NULL);
    expect_error(r, EINVAL, &err, "header ce-data", "reserved");
    r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-", "v", NULL);
    expect_error(r, EINVAL, &err, "header ce-", "empty");
    r = parse(&ev, &err, NULL, SPEC_HEADERS,
              "ce-abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde", "v", NULL);
    expect_error(r, EINVAL, &err, "longer than 64", NULL);
    /* A request without any ce- header is not a CloudEvent at all. */
    r = parse(&ev, &err, "{}", "Content-Type", "application/json", NULL);
    expect_error(r, EINVAL, &err, "not a CloudEvent", NULL);
    r = parse(&ev, &err, NULL, NULL);
    expect_error(r, EINVAL, &err, "not a CloudEvent", NULL);
    /* Data declared as JSON must be JSON (json-format.md 3.2, the "I'm just a string" note). */
    r = parse(&ev, &err, "I'm just a string", SPEC_HEADERS, "Content-Type", "application/json",
              NULL);
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    r = parse(&ev, &err, "{} {}", SPEC_HEADERS, "Content-Type", "application/json", NULL);
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    /* JSON data is passed on verbatim, so it must be strict JSON, not what cJSON tolerates. */
    const char *lenient[] = {
        "01",      "+1",        "1.",  ".5",    "[1,]",      "{\"a\":1,}", "\"tab\there\"",
        "\"\\x\"", "\"\\u12\"", "tru", "[1 2]", "{\"a\" 1}", "{1:2}",      "\f1",
        "1e",      "-",         "[",   "\"open"};
    for (size_t i = 0; i < ARRAY_SIZE(lenient); i++) {
        r = parse(&ev, &err, lenient[i], SPEC_HEADERS, "Content-Type", "application/json", NULL);
        if (r != -EINVAL || !strstr(err.message, "not valid JSON"))
            fail_msg("accepted '%s' as JSON: %d %s", lenient[i], r, err.message);
    }
    char deep[3000];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    r = parse(&ev, &err, deep, SPEC_HEADERS, "Content-Type", "application/json", NULL);
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    const char *strict[] = {"-0.5e+10",
                            "0",
                            "1E3",
                            "\"\\u00e9\\n\\/\"",
                            " [ {} , [ ] , null ] ",
                            "{\"a\":{\"b\":[true,false]}}",
                            "\"caf\xc3\xa9\""};
    for (size_t i = 0; i < ARRAY_SIZE(strict); i++) {
        r = parse(&ev, &err, strict[i], SPEC_HEADERS, "Content-Type", "application/json", NULL);
        if (r != 0)
            fail_msg("refused '%s': %s", strict[i], err.message);
        ce_events_free(TAKE_PTR(ev));
    }
    assert_null(ev);
}

static void test_binary_data_kinds(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;

    /* JSON-formatted data: any subtype ending in +json. */
    assert_int_equal(parse(&ev, &err, "\"I'm just a string\"", SPEC_HEADERS, "Content-Type",
                           "application/vnd.example+json", NULL),
                     0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_JSON);
    assert_string_equal(ev->v[0]->data, "\"I'm just a string\"");
    ce_events_free(ev);

    assert_int_equal(parse(&ev, &err, "<much wow=\"xml\"/>", SPEC_HEADERS, "Content-Type",
                           "application/xml", NULL),
                     0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_TEXT);
    ce_events_free(ev);

    /* Bytes that are not text, or an undeclared type, stay bytes: base64 when rendered. */
    struct ce_header h[] = {{"ce-specversion", "1.0"},
                            {"ce-id", "1"},
                            {"ce-source", "/s"},
                            {"ce-type", "t"},
                            {"content-type", "application/octet-stream"}};
    const char bytes[] = {'a', 0, (char)0xff, 'b'};
    assert_int_equal(ce_parse_http(h, 5, bytes, sizeof(bytes), &ev, &err), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_BINARY);
    assert_int_equal(ev->v[0]->data_len, 4);
    assert_memory_equal(ev->v[0]->data, bytes, 4);
    ce_events_free(ev);
    assert_int_equal(ce_parse_http(h, 4, "hello", 5, &ev, &err), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_BINARY);
    assert_null(ev->v[0]->datacontenttype);
    ce_events_free(ev);
    /* text/plain that is not UTF-8 is bytes too. */
    h[4].value = "text/plain; charset=latin1";
    assert_int_equal(ce_parse_http(h, 5, "caf\xe9", 4, &ev, &err), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_BINARY);
    ce_events_free(ev);
    /* No body: no data. */
    assert_int_equal(ce_parse_http(h, 5, NULL, 0, &ev, &err), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_NONE);
    assert_int_equal(ev->v[0]->data_len, 0);
    ce_events_free(ev);
}

/* ---- Percent-decoding (binding 3.1.3.2) ---- */

static const char *decode_subject(const char *raw, int *ret_r, struct ig_error *err)
{
    static char out[256];
    struct ce_events *ev = NULL;
    *ret_r = parse(&ev, err, NULL, SPEC_HEADERS, "ce-subject", raw, NULL);
    out[0] = '\0';
    if (*ret_r == 0)
        snprintf(out, sizeof(out), "%s", ev->v[0]->subject);
    ce_events_free(ev);
    return out;
}

static void test_percent_decoding(void **state)
{
    struct ig_error err = {};
    int r;

    /* The binding's example. */
    assert_string_equal(decode_subject("Euro%20%E2%82%AC%20%F0%9F%98%80", &r, &err),
                        "Euro \xE2\x82\xAC \xF0\x9F\x98\x80");
    assert_int_equal(r, 0);
    /* "decoding MUST accept lower-case values"; unnecessary encodings MUST be accepted. */
    assert_string_equal(decode_subject("Euro%20%e2%82%ac%41", &r, &err), "Euro \xE2\x82\xAC"
                                                                         "A");
    /* Raw UTF-8, as some clients send it, is kept. */
    assert_string_equal(decode_subject("Euro \xE2\x82\xAC \xF0\x9F\x98\x80", &r, &err),
                        "Euro \xE2\x82\xAC \xF0\x9F\x98\x80");
    assert_int_equal(r, 0);
    /* Surrounding whitespace is not part of a header value (RFC 7230 3.2). */
    assert_string_equal(decode_subject("  a%20b \t", &r, &err), "a b");
    /* Double-quoted values of earlier versions are unquoted first, then percent-decoded. */
    assert_string_equal(decode_subject("\"hello world\"", &r, &err), "hello world");
    assert_string_equal(decode_subject("\"say \\\"hi\\\" %21\"", &r, &err), "say \"hi\" !");
    assert_string_equal(decode_subject("100%25", &r, &err), "100%");

    /* A '%' that begins no escape was not encoded by its sender (the JavaScript SDK sends
     * `v%1` as it is): it is kept. */
    assert_string_equal(decode_subject("50%", &r, &err), "50%");
    assert_int_equal(r, 0);
    assert_string_equal(decode_subject("a%4", &r, &err), "a%4");
    assert_string_equal(decode_subject("%zz%41", &r, &err), "%zzA");
    /* A value that only begins with a quote is not a quoted-string: it is taken as it is, as
     * clients that do not encode (the JavaScript SDK) send it. */
    assert_string_equal(decode_subject("\"unterminated", &r, &err), "\"unterminated");
    assert_string_equal(decode_subject("\"a\" b", &r, &err), "\"a\" b");
    assert_string_equal(decode_subject("order \"42\"", &r, &err), "order \"42\"");
    assert_string_equal(decode_subject("\"\\\"\"", &r, &err), "\"");
    /* Byte sequences invalid in UTF-8 MUST be rejected: the overlong %C0%A0, a lone
     * continuation byte, a surrogate, a truncated sequence. */
    decode_subject("%C0%A0", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "UTF-8");
    decode_subject("%80", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "UTF-8");
    decode_subject("%ED%A0%80", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "UTF-8");
    decode_subject("%E2%82", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "UTF-8");
    decode_subject("caf\xe9", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "UTF-8");
    /* Control characters are not allowed in Strings (spec.md Type System). */
    decode_subject("a%0Ab", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "control");
    decode_subject("a%C2%85b", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "control");
    decode_subject("%00", &r, &err);
    expect_error(r, EINVAL, &err, "header ce-subject", "%00");
    decode_subject("%EF%BF%BE", &r, &err);
    expect_error(r, EINVAL, &err, "(header ce-subject)", "noncharacter");
}

/* What the JavaScript SDK (npm cloudevents 10.0.0) sends for one event, captured from
 * HTTP.binary() and HTTP.structured(): binary header values go out unencoded (spaces, "€", raw
 * quotes) and the source it was given, "/shop/caf%C3%A9", is decoded once as the binding says. */
static void test_real_client_javascript(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;

    assert_int_equal(parse(&ev, &err, "{\"total\":12.5,\"big\":1}", "content-type",
                           "application/json", "ce-id", "A 1\xe2\x82\xac", "ce-time",
                           "2026-11-28T04:00:00.123Z", "ce-type", "com.example.order.created",
                           "ce-source", "/shop/caf%C3%A9", "ce-specversion", "1.0", "ce-subject",
                           "order \"42\"", "ce-myext", "v 1", "ce-num", "5", "ce-flag", "true",
                           NULL),
                     0);
    struct ce_event *b = ev->v[0];
    assert_string_equal(b->id, "A 1\xe2\x82\xac");
    assert_string_equal(b->source, "/shop/caf\xc3\xa9");
    assert_string_equal(b->subject, "order \"42\"");
    assert_int_equal(b->n_extensions, 3);
    assert_string_equal(ce_event_extension(b, "num")->value, "5");
    assert_int_equal(b->data_kind, CE_DATA_JSON);

    struct ce_events *ev2 = NULL;
    assert_int_equal(
        parse(&ev2, &err,
              "{\"id\":\"A 1\xe2\x82\xac\",\"time\":\"2026-11-28T04:00:00.123Z\",\"type\":\"com."
              "example.order.created\",\"source\":\"/shop/caf%C3%A9\",\"specversion\":\"1.0\","
              "\"datacontenttype\":\"application/json\",\"subject\":\"order \\\"42\\\"\",\"data\":{"
              "\"total\":12.5},\"myext\":\"v 1\",\"num\":5,\"flag\":true}",
              "content-type", "application/cloudevents+json; charset=utf-8", NULL),
        0);
    struct ce_event *s = ev2->v[0];
    assert_string_equal(s->id, b->id);
    assert_string_equal(s->subject, b->subject);
    assert_string_equal(s->source, "/shop/caf%C3%A9"); /* JSON strings are not percent-decoded */
    assert_int_equal(ce_event_extension(s, "num")->type, CE_EXT_INTEGER);
    assert_int_equal(ce_event_extension(s, "flag")->type, CE_EXT_BOOLEAN);
    assert_string_equal(s->data, "{\"total\":12.5}");
    ce_events_free(ev);
    ce_events_free(ev2);

    /* With no data it still sends a JSON Content-Type and an empty body: no data. */
    assert_int_equal(parse(&ev, &err, "", "content-type", "application/json; charset=utf-8",
                           "ce-id", "1", "ce-time", "2026-11-28T04:25:39.240Z", "ce-type", "t",
                           "ce-source", "/s", "ce-specversion", "1.0", NULL),
                     0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_NONE);
    ce_events_free(ev);
}

/* ---- Structured mode ---- */

static const char spec_structured[] = "{\n"
                                      "    \"specversion\" : \"1.0\",\n"
                                      "    \"type\" : \"com.example.someevent\",\n"
                                      "    \"source\" : \"/mycontext\",\n"
                                      "    \"subject\": null,\n"
                                      "    \"id\" : \"C234-1234-1234\",\n"
                                      "    \"time\" : \"2018-04-05T17:31:00Z\",\n"
                                      "    \"comexampleextension1\" : \"value\",\n"
                                      "    \"comexampleothervalue\" : 5,\n"
                                      "    \"flag\" : true,\n"
                                      "    \"unsetextension\": null,\n"
                                      "    \"datacontenttype\" : \"application/json\",\n"
                                      "    \"data\" : {\n"
                                      "        \"appinfoA\" : \"abc\",\n"
                                      "        \"appinfoB\" : 123,\n"
                                      "        \"appinfoC\" : true\n"
                                      "    }\n"
                                      "}";

static void test_structured_spec_example(void **state)
{
    _cleanup_ce_events_ struct ce_events *ev = NULL;
    struct ig_error err = {};

    /* The media type compares case-insensitively; parameters do not matter. */
    assert_int_equal(parse(&ev, &err, spec_structured, "content-type",
                           " Application/CloudEvents+JSON ;charset=utf-8", NULL),
                     0);
    assert_int_equal(ev->mode, CE_MODE_STRUCTURED);
    assert_int_equal(ev->n, 1);
    struct ce_event *e = ev->v[0];
    assert_string_equal(e->id, "C234-1234-1234");
    assert_string_equal(e->source, "/mycontext");
    assert_string_equal(e->type, "com.example.someevent");
    assert_string_equal(e->time, "2018-04-05T17:31:00Z");
    assert_string_equal(e->datacontenttype, "application/json");
    assert_null(e->subject); /* null is unset (json-format.md 2.2) */
    assert_int_equal(e->n_extensions, 3);
    assert_string_equal(e->extensions[0].name, "comexampleextension1");
    assert_int_equal(e->extensions[0].type, CE_EXT_STRING);
    assert_string_equal(e->extensions[1].name, "comexampleothervalue");
    assert_string_equal(e->extensions[1].value, "5");
    assert_int_equal(e->extensions[1].type, CE_EXT_INTEGER);
    assert_string_equal(e->extensions[2].value, "true");
    assert_int_equal(e->extensions[2].type, CE_EXT_BOOLEAN);
    assert_int_equal(e->data_kind, CE_DATA_JSON);
    /* The data is the sender's text, exactly. */
    const char *d = strstr(spec_structured, "{\n        \"appinfoA\"");
    assert_int_equal(e->data_len, strlen(d) - 2);
    assert_memory_equal(e->data, d, e->data_len);
    /* Binary-mode ce- headers sent alongside are ignored: the body has it all (binding 3.2.3). */
}

static void test_structured_required(void **state)
{
    static const char *names[] = {"specversion", "id", "source", "type"};
    struct ig_error err = {};
    struct ce_events *ev = NULL;
    char json[256], want[64];
    int r;

    for (size_t skip = 0; skip < 4; skip++) {
        snprintf(want, sizeof(want), "attribute '%s'", names[skip]);
        for (int variant = 0; variant < 4; variant++) {
            static const char *values[] = {NULL, "null", "\"\"", "7"};
            size_t n = (size_t)snprintf(json, sizeof(json), "{");
            for (size_t i = 0; i < 4; i++) {
                const char *v = i == 0 ? "\"1.0\"" : "\"x\"";
                if (i == skip && !values[variant])
                    continue;
                if (i == skip)
                    v = values[variant];
                n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"%s\": %s", n > 1 ? ", " : "",
                                      names[i], v);
            }
            snprintf(json + n, sizeof(json) - n, "}");
            r = parse_structured(&ev, &err, json);
            expect_error(r, EINVAL, &err, want,
                         variant <= 1   ? "missing"
                         : variant == 2 ? "empty"
                                        : "JSON string");
        }
    }
}

static void test_structured_malformed(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;
    int r;

#define BASE "\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\""
    r = parse_structured(&ev, &err, "{" BASE ",\"specversion\":\"1.0\"}");
    expect_error(r, EINVAL, &err, "'specversion'", "more than once");
    r = parse_structured(&ev, &err,
                         "{\"specversion\":\"0.3\",\"id\":\"1\",\"source\":\"/s\","
                         "\"type\":\"t\"}");
    expect_error(r, EINVAL, &err, "'specversion'", "0.3");
    r = parse_structured(&ev, &err, "{" BASE ",\"time\":\"2018-04-05T17:31:00\"}");
    expect_error(r, EINVAL, &err, "'time'", "RFC 3339");
    r = parse_structured(&ev, &err, "{" BASE ",\"time\":5}");
    expect_error(r, EINVAL, &err, "'time'", "JSON string");
    r = parse_structured(&ev, &err, "{" BASE ",\"myExt\":\"v\"}");
    expect_error(r, EINVAL, &err, "'myExt'", "lower-case");
    r = parse_structured(&ev, &err, "{" BASE ",\"my_ext\":\"v\"}");
    expect_error(r, EINVAL, &err, "'my_ext'", "lower-case");
    r = parse_structured(&ev, &err, "{" BASE ",\"ext\":{\"a\":1}}");
    expect_error(r, EINVAL, &err, "'ext'", "string, an integer or a boolean");
    r = parse_structured(&ev, &err, "{" BASE ",\"ext\":1.5}");
    expect_error(r, EINVAL, &err, "'ext'", "Integer");
    r = parse_structured(&ev, &err, "{" BASE ",\"ext\":2147483648}");
    expect_error(r, EINVAL, &err, "'ext'", "Integer");
    r = parse_structured(&ev, &err, "{" BASE ",\"id\":\"a\\u0001b\"}");
    expect_error(r, EINVAL, &err, "'id'", "more than once");
    r = parse_structured(&ev, &err,
                         "{\"specversion\":\"1.0\",\"id\":\"a\\u0001\",\"source\":"
                         "\"/s\",\"type\":\"t\"}");
    expect_error(r, EINVAL, &err, "'id'", "control");
    r = parse_structured(&ev, &err, "{" BASE ",\"datacontenttype\":\"\"}");
    expect_error(r, EINVAL, &err, "'datacontenttype'", "empty");
    r = parse_structured(&ev, &err, "{" BASE ",\"dataschema\":\"urn\"}");
    expect_error(r, EINVAL, &err, "'dataschema'", "absolute URI");
    r = parse_structured(&ev, &err, "[{" BASE "}]");
    expect_error(r, EINVAL, &err, "one JSON object", NULL);
    r = parse_structured(&ev, &err, "{" BASE ",}");
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    r = parse_structured(&ev, &err, "");
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    r = parse_structured(&ev, &err, "{" BASE "} trailing");
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    r = parse_structured(&ev, &err, "{" BASE ",\"data\":{\"n\":01}}");
    expect_error(r, EINVAL, &err, "not valid JSON", NULL);
    struct ce_header h = {"Content-Type", "application/cloudevents+json"};
    ig_error_clear(&err);
    r = ce_parse_http(&h, 1, "{}\0{}", 5, &ev, &err);
    expect_error(r, EINVAL, &err, "NUL", NULL);
    /* Only the JSON format is spoken; another format is a 415, not a 400. */
    ig_error_clear(&err);
    r = parse(&ev, &err, "x", "Content-Type", "application/cloudevents+avro", NULL);
    expect_error(r, EOPNOTSUPP, &err, "application/cloudevents+avro", "not supported");
    ig_error_clear(&err);
    r = parse(&ev, &err, "x", "Content-Type", "application/cloudevents-batch+protobuf", NULL);
    expect_error(r, EOPNOTSUPP, &err, "cloudevents-batch+protobuf", NULL);
    assert_null(ev);
}

static void test_structured_data(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;
    int r;

    /* data and data_base64 are mutually exclusive (json-format.md 3.1.1). */
    r = parse_structured(&ev, &err, "{" BASE ",\"data\":1,\"data_base64\":\"AAEC\"}");
    expect_error(r, EINVAL, &err, "both 'data' and 'data_base64'", NULL);
    r = parse_structured(&ev, &err, "{" BASE ",\"data_base64\":\"A*EC\"}");
    expect_error(r, EINVAL, &err, "'data_base64'", "base64");
    r = parse_structured(&ev, &err, "{" BASE ",\"data_base64\":\"AAECA\"}");
    expect_error(r, EINVAL, &err, "'data_base64'", "base64");
    r = parse_structured(&ev, &err, "{" BASE ",\"data_base64\":\"AA-_\"}");
    expect_error(r, EINVAL, &err, "'data_base64'", "base64");
    r = parse_structured(&ev, &err, "{" BASE ",\"data_base64\":7}");
    expect_error(r, EINVAL, &err, "'data_base64'", "string");

    /* data_base64 decodes to bytes, padded or not. */
    const char *b64[] = {"AAEC/w==", "AAEC/w"};
    for (int i = 0; i < 2; i++) {
        char json[200];
        snprintf(json, sizeof(json), "{" BASE ",\"data_base64\":\"%s\",\"data\":null}", b64[i]);
        assert_int_equal(parse_structured(&ev, &err, json), 0);
        assert_int_equal(ev->v[0]->data_kind, CE_DATA_BINARY);
        assert_int_equal(ev->v[0]->data_len, 4);
        assert_memory_equal(ev->v[0]->data, "\x00\x01\x02\xff", 4);
        ce_events_free(ev);
    }

    /* Without a datacontenttype data is JSON, and a string stays a JSON string (3.1.2). */
    assert_int_equal(parse_structured(&ev, &err, "{" BASE ",\"data\":\"I'm just a string\"}"), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_JSON);
    assert_string_equal(ev->v[0]->data, "\"I'm just a string\"");
    ce_events_free(ev);
    /* Another type: the data member is the content as a string. */
    assert_int_equal(parse_structured(&ev, &err,
                                      "{" BASE ",\"datacontenttype\":\"text/xml\","
                                      "\"data\":\"<much wow=\\\"xml\\\"/>\"}"),
                     0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_TEXT);
    assert_string_equal(ev->v[0]->data, "<much wow=\"xml\"/>");
    ce_events_free(ev);
    /* An explicit null payload is data, distinct from none (3.1.1). */
    assert_int_equal(parse_structured(&ev, &err, "{" BASE ",\"data\":null}"), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_JSON);
    assert_string_equal(ev->v[0]->data, "null");
    ce_events_free(ev);
    assert_int_equal(parse_structured(&ev, &err, "{" BASE "}"), 0);
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_NONE);
    ce_events_free(ev);
    /* Numbers keep their exact text, even where a double would not. An escaped member name is
     * still "data". */
    assert_int_equal(parse_structured(&ev, &err,
                                      "{\"d\\u0061ta\" : [12345678901234567891, 1.10, "
                                      "\"}]\\\"\"] , " BASE "}"),
                     0);
    assert_string_equal(ev->v[0]->data, "[12345678901234567891, 1.10, \"}]\\\"\"]");
    ce_events_free(ev);
}

/* ---- Batched mode ---- */

static void test_batch(void **state)
{
    _cleanup_ce_events_ struct ce_events *ev = NULL;
    struct ig_error err = {};
    const char *batch =
        "[\n"
        "  {\"specversion\" : \"1.0\", \"type\" : \"com.example.someevent\",\n"
        "   \"source\" : \"/mycontext/4\", \"id\" : \"B234-1234-1234\",\n"
        "   \"time\" : \"2018-04-05T17:31:00Z\", \"comexampleextension1\" : \"value\",\n"
        "   \"comexampleothervalue\" : 5,\n"
        "   \"datacontenttype\" : \"application/vnd.apache.thrift.binary\",\n"
        "   \"data_base64\" : \"AAECAw==\"},\n"
        "  {\"specversion\" : \"1.0\", \"type\" : \"com.example.someotherevent\",\n"
        "   \"source\" : \"/mycontext/9\", \"id\" : \"C234-1234-1234\",\n"
        "   \"datacontenttype\" : \"application/json\",\n"
        "   \"data\" : {\"appinfoA\" : \"abc\", \"appinfoB\" : 123}}\n"
        "]";

    assert_int_equal(parse(&ev, &err, batch, "Content-Type",
                           "application/cloudevents-batch+json; charset=UTF-8", NULL),
                     0);
    assert_int_equal(ev->mode, CE_MODE_BATCH);
    assert_int_equal(ev->n, 2);
    assert_string_equal(ev->v[0]->source, "/mycontext/4");
    assert_int_equal(ev->v[0]->data_kind, CE_DATA_BINARY);
    assert_int_equal(ev->v[0]->data_len, 4);
    assert_int_equal(ev->v[0]->n_extensions, 2);
    assert_string_equal(ev->v[1]->id, "C234-1234-1234");
    assert_int_equal(ev->v[1]->data_kind, CE_DATA_JSON);
    assert_string_equal(ev->v[1]->data, "{\"appinfoA\" : \"abc\", \"appinfoB\" : 123}");
    ce_events_free(TAKE_PTR(ev));

    /* "The batch MAY be empty" (binding 3.3.2). */
    assert_int_equal(
        parse(&ev, &err, " [ ] ", "Content-Type", "APPLICATION/CLOUDEVENTS-BATCH+JSON", NULL), 0);
    assert_int_equal(ev->mode, CE_MODE_BATCH);
    assert_int_equal(ev->n, 0);
    ce_events_free(TAKE_PTR(ev));

    int r =
        parse(&ev, &err, "{" BASE "}", "Content-Type", "application/cloudevents-batch+json", NULL);
    expect_error(r, EINVAL, &err, "JSON array", NULL);
    r = parse(&ev, &err, "[{" BASE "}, 5]", "Content-Type", "application/cloudevents-batch+json",
              NULL);
    expect_error(r, EINVAL, &err, "event 1: ", "JSON object");
    r = parse(&ev, &err,
              "[{" BASE "}, {" BASE
              "}, {\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"t\"}]",
              "Content-Type", "application/cloudevents-batch+json", NULL);
    expect_error(r, EINVAL, &err, "event 2: ", "'id' is missing");
    assert_null(ev);

    /* At most CE_BATCH_MAX events. */
    size_t one = strlen("{" BASE "},");
    char *big = malloc(one * (CE_BATCH_MAX + 1) + 3), *p = big;
    *p++ = '[';
    for (int i = 0; i <= CE_BATCH_MAX; i++)
        p += sprintf(p, "{" BASE "},");
    p[-1] = ']';
    *p = '\0';
    r = parse(&ev, &err, big, "Content-Type", "application/cloudevents-batch+json", NULL);
    expect_error(r, E2BIG, &err, "1001 events", "1000");
    p[-1] = ',';
    strcpy(p - one - 1, "]"); /* drop the last: exactly the limit */
    assert_int_equal(
        parse(&ev, &err, big, "Content-Type", "application/cloudevents-batch+json", NULL), 0);
    assert_int_equal(ev->n, CE_BATCH_MAX);
    free(big);
}

static void test_batch_required(void **state)
{
    static const char *names[] = {"specversion", "id", "source", "type"};
    static const char *values[] = {"\"1.0\"", "\"x\"", "\"/s\"", "\"t\""};
    struct ig_error err = {};
    struct ce_events *ev = NULL;
    char json[512], want[64];

    /* Each required attribute missing, null, empty or not a string, in the second event. */
    for (size_t skip = 0; skip < 4; skip++)
        for (int variant = 0; variant < 4; variant++) {
            static const char *bad[] = {NULL, "null", "\"\"", "[]"};
            size_t n = (size_t)snprintf(json, sizeof(json), "[{" BASE "}, {");
            bool first = true;
            for (size_t i = 0; i < 4; i++) {
                if (i == skip && !bad[variant])
                    continue;
                n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"%s\": %s", first ? "" : ", ",
                                      names[i], i == skip ? bad[variant] : values[i]);
                first = false;
            }
            snprintf(json + n, sizeof(json) - n, "}]");
            int r =
                parse(&ev, &err, json, "Content-Type", "application/cloudevents-batch+json", NULL);
            snprintf(want, sizeof(want), "event 1: required attribute '%s'", names[skip]);
            if (variant == 3)
                snprintf(want, sizeof(want), "event 1: attribute '%s' must be", names[skip]);
            expect_error(r, EINVAL, &err, want,
                         variant <= 1   ? "missing"
                         : variant == 2 ? "empty"
                                        : "JSON string");
        }
}

static void round_trip(const struct ce_event *e);

/* Mutated bodies: whatever is accepted renders and parses back; nothing else breaks (run under
 * the sanitizers by ./scripts/test --sanitize). */
static void test_mutations(void **state)
{
    static const char *seeds[] = {
        "{" BASE ",\"data\":{\"a\":[1,2,{\"b\":\"c\\\"}\"}]},\"x\":5}",
        "[{" BASE ",\"data_base64\":\"AAEC\"},{" BASE ",\"d\\u0061ta\":\"x\","
        "\"datacontenttype\":\"text/plain\"}]",
        "{\"a\": [1, 2.5e3, -0, true, null, \"\\u00e9\"]}",
    };
    static const char *types[] = {"application/cloudevents+json",
                                  "application/cloudevents-batch+json", "application/json"};
    static const char alphabet[] = "{}[],:\"\\0123456789.eE+-tfnul \tabcx\x80\xc3\xa9";
    uint64_t rnd = 88172645463325252ull;
    char buf[512];

#define NEXT() (rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17, rnd)
    for (int i = 0; i < 3000; i++) {
        int k = (int)(NEXT() % 3);
        size_t n = strlen(seeds[k]);
        memcpy(buf, seeds[k], n);
        for (int m = 0, muts = 1 + (int)(NEXT() % 4); m < muts; m++) {
            size_t pos = NEXT() % (n + 1);
            char c = alphabet[NEXT() % (sizeof(alphabet) - 1)];
            switch (NEXT() % 3) {
            case 0:
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = c;
                n++;
                break;
            case 1:
                if (pos < n) {
                    memmove(buf + pos, buf + pos + 1, n - pos - 1);
                    n--;
                }
                break;
            default:
                if (pos < n)
                    buf[pos] = c;
            }
        }
        struct ce_header h[] = {{"content-type", types[k]},
                                {"ce-specversion", "1.0"},
                                {"ce-id", "1"},
                                {"ce-source", "/s"},
                                {"ce-type", "t"}};
        struct ce_events *ev = NULL;
        struct ig_error err = {};
        if (ce_parse_http(h, 5, buf, n, &ev, &err) < 0) {
            assert_null(ev);
            assert_true(err.code != 0 && err.message[0]);
            continue;
        }
        for (size_t j = 0; j < ev->n; j++)
            round_trip(ev->v[j]);
        ce_events_free(ev);
    }
#undef NEXT
}

static void test_limits(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;
    char *long_value = malloc(CE_VALUE_MAX + 2);
    memset(long_value, 'a', CE_VALUE_MAX + 1);
    long_value[CE_VALUE_MAX + 1] = '\0';

    int r = parse(&ev, &err, NULL, SPEC_HEADERS, "ce-subject", long_value, NULL);
    expect_error(r, E2BIG, &err, "ce-subject", "4096");
    long_value[CE_VALUE_MAX] = '\0';
    assert_int_equal(parse(&ev, &err, NULL, SPEC_HEADERS, "ce-subject", long_value, NULL), 0);
    ce_events_free(ev);
    free(long_value);

    /* CE_EXTENSIONS_MAX extensions are fine, one more is not. */
    char json[8192];
    size_t n = (size_t)snprintf(json, sizeof(json), "{" BASE);
    for (int i = 0; i < CE_EXTENSIONS_MAX; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, ",\"x%d\":%d", i, i);
    snprintf(json + n, sizeof(json) - n, "}");
    assert_int_equal(parse_structured(&ev, &err, json), 0);
    assert_int_equal(ev->v[0]->n_extensions, CE_EXTENSIONS_MAX);
    ce_events_free(ev);
    snprintf(json + n, sizeof(json) - n, ",\"one\":1,\"two\":2,\"three\":3}");
    r = parse_structured(&ev, &err, json);
    expect_error(r, E2BIG, &err, "extension", "64");

    struct ce_header h[CE_EXTENSIONS_MAX + 5];
    static char names[CE_EXTENSIONS_MAX + 1][16];
    size_t k = 0;
    h[k++] = (struct ce_header){"ce-specversion", "1.0"};
    h[k++] = (struct ce_header){"ce-id", "1"};
    h[k++] = (struct ce_header){"ce-source", "/s"};
    h[k++] = (struct ce_header){"ce-type", "t"};
    for (int i = 0; i <= CE_EXTENSIONS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "ce-x%d", i);
        h[k++] = (struct ce_header){names[i], "v"};
    }
    ig_error_clear(&err);
    r = ce_parse_http(h, k, NULL, 0, &ev, &err);
    expect_error(r, E2BIG, &err, "extension", "64");
}

/* ---- Rendering and round trips ---- */

static void assert_events_equal(const struct ce_event *a, const struct ce_event *b)
{
#define SAME(f) (a->f == b->f || (a->f && b->f && strcmp(a->f, b->f) == 0))
    assert_true(SAME(id) && SAME(source) && SAME(specversion) && SAME(type));
    assert_true(SAME(datacontenttype) && SAME(dataschema) && SAME(subject) && SAME(time));
#undef SAME
    assert_int_equal(a->n_extensions, b->n_extensions);
    for (size_t i = 0; i < a->n_extensions; i++) {
        assert_string_equal(a->extensions[i].name, b->extensions[i].name);
        assert_string_equal(a->extensions[i].value, b->extensions[i].value);
        assert_int_equal(a->extensions[i].type, b->extensions[i].type);
    }
    assert_int_equal(a->data_kind, b->data_kind);
    assert_int_equal(a->data_len, b->data_len);
    if (a->data_len)
        assert_memory_equal(a->data, b->data, a->data_len);
}

static void round_trip(const struct ce_event *e)
{
    _cleanup_free_ char *json = NULL;
    _cleanup_ce_event_ struct ce_event *back = NULL;
    struct ig_error err = {};
    size_t len;

    assert_int_equal(ce_event_to_json(e, &json, &len), 0);
    assert_int_equal(len, strlen(json));
    if (ce_parse_json(json, len, &back, &err) < 0)
        fail_msg("%s: %s", json, err.message);
    assert_events_equal(e, back);
}

static void test_render_and_round_trip(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;
    _cleanup_free_ char *json = NULL;

    /* Binary mode, JSON data: what the function receives. */
    assert_int_equal(parse(&ev, &err, "{\"n\": 12345678901234567891}", SPEC_HEADERS, "Content-Type",
                           "application/json", "ce-subject", "a%20b", "ce-traceparent", "00-abc",
                           "ce-hops", "3", NULL),
                     0);
    assert_int_equal(ce_event_to_json(ev->v[0], &json, NULL), 0);
    assert_string_equal(json, "{\"specversion\":\"1.0\",\"id\":\"1234-1234-1234\","
                              "\"source\":\"/mycontext/subcontext\","
                              "\"type\":\"com.example.someevent\","
                              "\"datacontenttype\":\"application/json\",\"subject\":\"a b\","
                              "\"time\":\"2018-04-05T03:56:24Z\",\"traceparent\":\"00-abc\","
                              "\"hops\":\"3\",\"data\":{\"n\": 12345678901234567891}}");
    round_trip(ev->v[0]);
    ce_events_free(ev);
    free(TAKE_PTR(json));

    /* Bytes become data_base64; text stays a string. */
    struct ce_header h[] = {{"ce-specversion", "1.0"},
                            {"ce-id", "1"},
                            {"ce-source", "urn:x"},
                            {"ce-type", "t"},
                            {"content-type", "image/png"}};
    assert_int_equal(ce_parse_http(h, 5, "\x89PNG\0\x01", 6, &ev, &err), 0);
    assert_int_equal(ce_event_to_json(ev->v[0], &json, NULL), 0);
    assert_non_null(strstr(json, "\"datacontenttype\":\"image/png\",\"data_base64\":\"iVBORwAB\""));
    assert_null(strstr(json, "\"data\""));
    round_trip(ev->v[0]);
    ce_events_free(ev);
    free(TAKE_PTR(json));

    h[4].value = "text/plain; charset=utf-8";
    assert_int_equal(ce_parse_http(h, 5, "line 1\nline \"2\"", 15, &ev, &err), 0);
    assert_int_equal(ce_event_to_json(ev->v[0], &json, NULL), 0);
    assert_non_null(strstr(json, "\"data\":\"line 1\\nline \\\"2\\\"\""));
    round_trip(ev->v[0]);
    ce_events_free(ev);
    free(TAKE_PTR(json));

    /* Structured events of every data kind, with typed extensions, come back the same. */
    const char *docs[] = {
        spec_structured,
        "{" BASE ",\"datacontenttype\":\"text/xml\",\"data\":\"<a/>\",\"n\":-5,\"b\":false}",
        "{" BASE ",\"data_base64\":\"AAEC\",\"dataschema\":\"https://x/s.json\",\"subject\":\"s\"}",
        "{" BASE ",\"data\":null}",
        "{" BASE ",\"data\":\"\\u00e9\\ud83d\\ude00\"}",
        "{" BASE "}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
        assert_int_equal(parse_structured(&ev, &err, docs[i]), 0);
        round_trip(ev->v[0]);
        ce_events_free(ev);
    }
}

static void test_extensions_api(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;

    assert_int_equal(parse_structured(&ev, &err, "{" BASE ",\"hops\":1}"), 0);
    struct ce_event *e = ev->v[0];
    assert_string_equal(ce_event_extension(e, "hops")->value, "1");
    assert_null(ce_event_extension(e, "nope"));
    assert_int_equal(ce_event_set_extension(e, "hops", "2", CE_EXT_INTEGER, &err), 0);
    assert_int_equal(e->n_extensions, 1);
    assert_string_equal(ce_event_extension(e, "hops")->value, "2");
    assert_int_equal(ce_event_set_extension(e, "ignisfn", "f", CE_EXT_STRING, &err), 0);
    assert_int_equal(e->n_extensions, 2);
    ig_error_clear(&err);
    expect_error(ce_event_set_extension(e, "Bad", "x", CE_EXT_STRING, &err), EINVAL, &err, "'Bad'",
                 NULL);
    ig_error_clear(&err);
    expect_error(ce_event_set_extension(e, "id", "x", CE_EXT_STRING, &err), EINVAL, &err,
                 "core attribute", NULL);
    ig_error_clear(&err);
    expect_error(ce_event_set_extension(e, "hops", "x", CE_EXT_INTEGER, &err), EINVAL, &err, "type",
                 NULL);
    ig_error_clear(&err);
    expect_error(ce_event_set_extension(e, "hops", "99999999999", CE_EXT_INTEGER, &err), EINVAL,
                 &err, "type", NULL);
    assert_int_equal(ce_event_validate(e, &err), 0);
    ce_events_free(ev);
}

/* ce_event_set_data, as the controller uses it for emitted events: the kind follows the content
 * type as in binary mode. */
static void test_set_data(void **state)
{
    struct ig_error err = {};
    struct ce_events *ev = NULL;

    assert_int_equal(parse_structured(&ev, &err, "{" BASE "}"), 0);
    struct ce_event *e = ev->v[0];
    e->datacontenttype = strdup("application/json");
    assert_int_equal(ce_event_set_data(e, "{\"a\": 1.10}", 11, &err), 0);
    assert_int_equal(e->data_kind, CE_DATA_JSON);
    expect_error(ce_event_set_data(e, "{nope", 5, &err), EINVAL, &err, "not valid JSON", NULL);
    ig_error_clear(&err);
    free(e->datacontenttype);
    e->datacontenttype = strdup("text/plain; charset=utf-8");
    assert_int_equal(ce_event_set_data(e, "h\xc3\xa9", 3, &err), 0);
    assert_int_equal(e->data_kind, CE_DATA_TEXT);
    assert_int_equal(ce_event_set_data(e, "\xff\x00", 2, &err), 0); /* not UTF-8: bytes */
    assert_int_equal(e->data_kind, CE_DATA_BINARY);
    assert_int_equal(ce_event_set_data(e, "", 0, &err), 0);
    assert_int_equal(e->data_kind, CE_DATA_NONE);
    assert_null(e->data);
    assert_int_equal(ce_event_validate(e, &err), 0);
    ce_events_free(ev);
}

static void test_time(void **state)
{
    int64_t us;

    assert_true(ce_time_parse("2018-04-05T17:31:00Z", &us));
    assert_int_equal(us, 1522949460ll * 1000000);
    assert_true(ce_time_parse("1970-01-01T00:00:00Z", &us));
    assert_int_equal(us, 0);
    assert_true(ce_time_parse("1970-01-01t01:00:00+01:00", &us));
    assert_int_equal(us, 0);
    assert_true(ce_time_parse("1969-12-31T23:59:59.5z", &us));
    assert_int_equal(us, -500000);
    assert_true(ce_time_parse("2024-02-29T12:00:00.123456789-08:30", &us));
    assert_int_equal(us, (1709208000ll + 8 * 3600 + 1800) * 1000000 + 123456);
    assert_true(ce_time_parse("2016-12-31T23:59:60Z", NULL)); /* leap second */

    const char *bad[] = {"",
                         "2018-04-05",
                         "2018-04-05T17:31:00",
                         "2018-04-05 17:31:00Z",
                         "2018-04-05T17:31Z",
                         "2018-13-05T17:31:00Z",
                         "2018-00-05T17:31:00Z",
                         "2023-02-29T00:00:00Z",
                         "2100-02-29T00:00:00Z",
                         "2018-04-31T00:00:00Z",
                         "2018-04-05T24:00:00Z",
                         "2018-04-05T17:60:00Z",
                         "2018-04-05T17:31:61Z",
                         "2018-04-05T17:31:00.Z",
                         "2018-04-05T17:31:00+0100",
                         "2018-04-05T17:31:00+24:00",
                         "2018-04-05T17:31:00Zjunk",
                         "18-04-05T17:31:00Z"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (ce_time_parse(bad[i], NULL))
            fail_msg("accepted '%s'", bad[i]);

    char buf[32];
    ce_time_format(1522949460ll * 1000000 + 7, buf);
    assert_string_equal(buf, "2018-04-05T17:31:00.000007Z");
    ce_time_format(-500000, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.500000Z");
    assert_true(ce_time_parse(buf, &us));
    assert_int_equal(us, -500000);
}

static void test_content_types(void **state)
{
    assert_true(ce_content_type_is_json(NULL));
    assert_true(ce_content_type_is_json("application/json"));
    assert_true(ce_content_type_is_json("APPLICATION/JSON; charset=utf-8"));
    assert_true(ce_content_type_is_json("text/json"));
    assert_true(ce_content_type_is_json("application/vnd.api+json"));
    assert_true(ce_content_type_is_json("application/cloudevents+json"));
    assert_false(ce_content_type_is_json("application/jsonx"));
    assert_false(ce_content_type_is_json("application/json-seq"));
    assert_false(ce_content_type_is_json("text/plain"));
    assert_false(ce_content_type_is_json("json"));
}

/* ---- Subscriptions ---- */

static void test_matching(void **state)
{
    struct ce_event e = {.type = "com.example.order.created", .source = "/shop"};

    assert_true(ce_subscription_matches("com.example.order.created", NULL, &e));
    assert_false(ce_subscription_matches("com.example.order.create", NULL, &e));
    assert_false(ce_subscription_matches("com.example.order.created.v2", NULL, &e));
    assert_true(ce_subscription_matches("com.example.order.*", NULL, &e));
    assert_true(ce_subscription_matches("com.example.*", NULL, &e));
    assert_true(ce_subscription_matches("com.*", NULL, &e));
    assert_true(ce_subscription_matches("*", NULL, &e));
    assert_false(ce_subscription_matches("com.example.orders.*", NULL, &e));
    assert_false(ce_subscription_matches("org.example.*", NULL, &e));
    assert_true(ce_subscription_matches("com.example.order.*", "/shop", &e));
    assert_false(ce_subscription_matches("com.example.order.*", "/shop/", &e));
    assert_false(ce_subscription_matches("com.example.order.created", "/other", &e));

    /* The prefix keeps its dot. */
    e.type = "com.example.orders";
    assert_false(ce_subscription_matches("com.example.order.*", NULL, &e));
    e.type = "com.example.order";
    assert_false(ce_subscription_matches("com.example.order.*", NULL, &e));
    e.type = "com.example.order.";
    assert_false(ce_subscription_matches("com.example.order.*", NULL, &e));
    e.type = "com.example.order.created.v2";
    assert_true(ce_subscription_matches("com.example.order.*", NULL, &e));
    /* A '*' elsewhere is literal, never a wildcard. */
    e.type = "com.example.order*";
    assert_false(ce_subscription_matches("com.example.order*", NULL,
                                         &(struct ce_event){.type = "com.example.orderX"}));
    assert_true(ce_subscription_matches("com.example.order*", NULL, &e));

    assert_true(ce_type_pattern_valid("com.example.order.created"));
    assert_true(ce_type_pattern_valid("com.example.order.*"));
    assert_true(ce_type_pattern_valid("*"));
    assert_false(ce_type_pattern_valid(""));
    assert_false(ce_type_pattern_valid(NULL));
    assert_false(ce_type_pattern_valid(".*"));
    assert_false(ce_type_pattern_valid("com.example.order*"));
    assert_false(ce_type_pattern_valid("com.*.created"));
    assert_false(ce_type_pattern_valid("com.**"));
    assert_false(ce_type_pattern_valid("a\nb"));
}

/* ---- De-duplication ---- */

static const uint8_t key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void test_dedupe_window(void **state)
{
    struct ce_dedupe *d;

    assert_int_equal(ce_dedupe_new(0, 1, key, &d), -EINVAL);
    assert_int_equal(ce_dedupe_new(10, 0, key, &d), -EINVAL);
    assert_int_equal(ce_dedupe_new(10, 1000, key, &d), 0);

    assert_false(ce_dedupe_contains(d, "/s", "1", 0));
    assert_int_equal(ce_dedupe_insert(d, "/s", "1", 0), 0);
    assert_true(ce_dedupe_contains(d, "/s", "1", 1));
    assert_int_equal(ce_dedupe_insert(d, "/s", "1", 500), 1);
    /* The pair is the key: same id from another source, or the other way round, is new. */
    assert_false(ce_dedupe_contains(d, "/t", "1", 2));
    assert_false(ce_dedupe_contains(d, "/s", "2", 2));
    assert_int_equal(ce_dedupe_insert(d, "/s1", "", 2), 0);
    assert_false(ce_dedupe_contains(d, "/s", "1/", 2));
    assert_false(ce_dedupe_contains(d, "/s", "11", 2));
    /* A retry does not extend the window: the entry expires window_us after its first time. */
    assert_true(ce_dedupe_contains(d, "/s", "1", 999));
    assert_false(ce_dedupe_contains(d, "/s", "1", 1000));
    assert_int_equal(ce_dedupe_size(d), 1);
    assert_int_equal(ce_dedupe_insert(d, "/s", "1", 1000), 0);
    assert_false(ce_dedupe_contains(d, "/s1", "", 1002));
    assert_true(ce_dedupe_contains(d, "/s", "1", 1002));
    /* A clock stepping back neither expires nor breaks the order. */
    assert_int_equal(ce_dedupe_insert(d, "/s", "2", 10), 0);
    assert_true(ce_dedupe_contains(d, "/s", "2", 5));
    assert_true(ce_dedupe_contains(d, "/s", "2", 1999));
    assert_false(ce_dedupe_contains(d, "/s", "2", 2000));
    assert_int_equal(ce_dedupe_size(d), 0);
    ce_dedupe_free(d);
    ce_dedupe_free(NULL);
}

static void test_dedupe_eviction(void **state)
{
    struct ce_dedupe *d;
    char id[32];

    assert_int_equal(ce_dedupe_new(3, 1000000, key, &d), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "%d", i);
        assert_int_equal(ce_dedupe_insert(d, "/s", id, (uint64_t)i), 0);
    }
    /* Full: the oldest ("0") goes first. */
    assert_int_equal(ce_dedupe_insert(d, "/s", "3", 3), 0);
    assert_int_equal(ce_dedupe_size(d), 3);
    assert_false(ce_dedupe_contains(d, "/s", "0", 4));
    assert_true(ce_dedupe_contains(d, "/s", "1", 4));
    assert_true(ce_dedupe_contains(d, "/s", "2", 4));
    assert_true(ce_dedupe_contains(d, "/s", "3", 4));
    assert_int_equal(ce_dedupe_insert(d, "/s", "4", 5), 0);
    assert_false(ce_dedupe_contains(d, "/s", "1", 6));
    ce_dedupe_free(d);

    /* Many keys through a small table, against a plain list of what should be there: exercises
     * probe runs and backward-shift deletion across the table's wrap-around. */
    enum { CAP = 97, N = 20000, WINDOW = 500 };
    static uint64_t inserted_at[N];
    assert_int_equal(ce_dedupe_new(CAP, WINDOW, key, &d), 0);
    uint64_t now = 0;
    int first_live = 0; /* ids below this have been evicted or expired */
    for (int i = 0; i < N; i++) {
        now += (uint64_t)(i % 7);
        snprintf(id, sizeof(id), "id-%d", i);
        assert_int_equal(ce_dedupe_insert(d, "/src", id, now), 0);
        inserted_at[i] = now;
        while (first_live < i - CAP + 1 || now - inserted_at[first_live] >= WINDOW)
            first_live++;
        if (i % 13 == 0) {
            for (int j = i > 300 ? i - 300 : 0; j <= i; j++) {
                snprintf(id, sizeof(id), "id-%d", j);
                if (ce_dedupe_contains(d, "/src", id, now) != (j >= first_live))
                    fail_msg("id %d at step %d: expected %s", j, i,
                             j >= first_live ? "present" : "absent");
            }
        }
    }
    ce_dedupe_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_spec_example),
        cmocka_unit_test(test_binary_header_case),
        cmocka_unit_test(test_binary_required),
        cmocka_unit_test(test_binary_malformed),
        cmocka_unit_test(test_binary_data_kinds),
        cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_real_client_javascript),
        cmocka_unit_test(test_structured_spec_example),
        cmocka_unit_test(test_structured_required),
        cmocka_unit_test(test_structured_malformed),
        cmocka_unit_test(test_structured_data),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_required),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_render_and_round_trip),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_extensions_api),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_set_data),
        cmocka_unit_test(test_dedupe_window),
        cmocka_unit_test(test_dedupe_eviction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
