/* function.json validation: the defaults, every field's accepted forms, every refusal (each
 * naming its field), and the round trip through manifest_to_json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "functions/manifest.h"

#define MINIMAL "\"name\":\"hello\",\"runtime\":\"python3\",\"handler\":\"app.handler\""

static struct manifest *parse_ok(const char *json)
{
    struct manifest *m = NULL;
    struct ig_error err = {};
    int r = manifest_parse(json, strlen(json), &m, &err);
    if (r < 0)
        fail_msg("expected %s to be valid, got: %s", json, err.message);
    assert_non_null(m);
    return m;
}

/* The manifest {MINIMAL, extra} must be refused with a message starting with field. */
static void refused(const char *extra, const char *field)
{
    size_t size = strlen(extra) + 256;
    _cleanup_free_ char *json = malloc(size);
    struct manifest *m = NULL;
    struct ig_error err = {};
    snprintf(json, size, "{" MINIMAL "%s%s}", *extra ? "," : "", extra);
    int r = manifest_parse(json, strlen(json), &m, &err);
    if (r != -EINVAL)
        fail_msg("expected %s to be refused (field %s), got %d", json, field, r);
    assert_null(m);
    if (!startswith(err.message, field) || err.message[strlen(field)] != ':')
        fail_msg("message for %s should start with \"%s:\", got \"%s\"", json, field, err.message);
}

/* A whole document refused, the message naming field. */
static void refused_doc(const char *json, const char *field)
{
    struct manifest *m = NULL;
    struct ig_error err = {};
    int r = manifest_parse(json, strlen(json), &m, &err);
    if (r != -EINVAL)
        fail_msg("expected %s to be refused, got %d", json, r);
    if (!strstr(err.message, field))
        fail_msg("message for %s should name \"%s\", got \"%s\"", json, field, err.message);
}

static void test_defaults(void **state)
{
    struct manifest *m = parse_ok("{" MINIMAL "}");
    assert_string_equal(m->name, "hello");
    assert_int_equal(m->runtime, MANIFEST_RUNTIME_PYTHON3);
    assert_string_equal(m->handler, "app.handler");
    assert_int_equal(m->memory_mb, 128);
    assert_int_equal(m->cpu_millis, 1000);
    assert_int_equal(m->timeout_ms, 30000);
    assert_false(m->reuse);
    assert_int_equal(m->concurrency, 1);
    assert_int_equal(m->min_scale, 0);
    assert_int_equal(m->max_scale, 100);
    assert_int_equal(m->idle_timeout_s, 60);
    assert_int_equal(m->n_env, 0);
    assert_int_equal(m->n_events, 0);
    assert_null(m->schedule);
    assert_int_equal(m->max_retries, 2);
    assert_int_equal(m->max_concurrency, 0);
    assert_int_equal(manifest_max_concurrency(m), 100);
    assert_int_equal(m->n_secrets, 0);
    manifest_free(m);
}

static void test_full(void **state)
{
    const char *json =
        "{\"name\":\"a-1\",\"runtime\":\"exec\",\"handler\":\"bin/run\",\"memory_mb\":10240,"
        "\"cpu_millis\":250,\"timeout_ms\":900000,\"reuse\":true,\"concurrency\":8,"
        "\"min_scale\":2,\"max_scale\":2,\"idle_timeout_s\":1,\"env\":{\"A\":\"1\",\"_b2\":\"\"},"
        "\"events\":[{\"type\":\"com.example.*\"},{\"type\":\"x.y\",\"source\":\"/src a\"}],"
        "\"schedule\":\"*/5 * * * *\",\"max_retries\":0,\"max_concurrency\":3,"
        "\"secrets\":[\"db.password\",\"API_KEY\"]}";
    struct manifest *m = parse_ok(json);
    assert_int_equal(m->runtime, MANIFEST_RUNTIME_EXEC);
    assert_int_equal(m->memory_mb, 10240);
    assert_int_equal(m->cpu_millis, 250);
    assert_int_equal(m->timeout_ms, 900000);
    assert_true(m->reuse);
    assert_int_equal(m->concurrency, 8);
    assert_int_equal(m->min_scale, 2);
    assert_int_equal(m->max_scale, 2);
    assert_int_equal(m->idle_timeout_s, 1);
    assert_int_equal(m->n_env, 2);
    assert_string_equal(manifest_env_get(m, "A"), "1");
    assert_string_equal(manifest_env_get(m, "_b2"), "");
    assert_null(manifest_env_get(m, "B"));
    assert_int_equal(m->n_events, 2);
    assert_string_equal(m->events[0].type, "com.example.*");
    assert_null(m->events[0].source);
    assert_string_equal(m->events[1].source, "/src a");
    assert_string_equal(m->schedule, "*/5 * * * *");
    assert_int_equal(m->max_retries, 0);
    assert_int_equal(manifest_max_concurrency(m), 3);
    assert_int_equal(m->n_secrets, 2);
    assert_string_equal(m->secrets[1], "API_KEY");

    /* Round trip: what the store keeps parses back to the same manifest. */
    cJSON *j = manifest_to_json(m);
    char *text = cJSON_PrintUnformatted(j);
    struct manifest *m2 = parse_ok(text);
    cJSON *j2 = manifest_to_json(m2);
    char *text2 = cJSON_PrintUnformatted(j2);
    assert_string_equal(text, text2);
    free(text);
    free(text2);
    cJSON_Delete(j);
    cJSON_Delete(j2);
    manifest_free(m2);
    manifest_free(m);
}

static void test_runtimes_and_handler(void **state)
{
    const char *runtimes[] = {"exec", "python3", "node", "provided"};
    for (size_t i = 0; i < ARRAY_SIZE(runtimes); i++) {
        char json[256];
        snprintf(json, sizeof(json), "{\"name\":\"f\",\"runtime\":\"%s\",\"handler\":\"h\"}",
                 runtimes[i]);
        struct manifest *m = parse_ok(json);
        assert_string_equal(manifest_runtime_name(m->runtime), runtimes[i]);
        manifest_free(m);
    }
    /* provided needs no handler (bootstrap is the entry point); the round trip keeps that. */
    struct manifest *m = parse_ok("{\"name\":\"f\",\"runtime\":\"provided\"}");
    assert_string_equal(m->handler, "");
    cJSON *j = manifest_to_json(m);
    assert_null(cJSON_GetObjectItem(j, "handler"));
    cJSON_Delete(j);
    manifest_free(m);
    refused_doc("{\"name\":\"f\",\"runtime\":\"exec\"}", "handler");
    refused_doc("{\"name\":\"f\",\"runtime\":\"node\"}", "handler");
}

static void test_names(void **state)
{
    const char *good[] = {"a", "a-b", "a0", "z123-456",
                          "abcdefghijabcdefghijabcdefghijabcdefghij"
                          "abcdefghijabcdefghijabc"};
    const char *bad[] = {"",    "A",
                         "0a",  "-a",
                         "a_b", "a.b",
                         "a b", "é",
                         "a/b", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd"};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++)
        assert_true(manifest_name_valid(good[i]));
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_false(manifest_name_valid(bad[i]));
        char json[256];
        snprintf(json, sizeof(json), "{\"name\":\"%s\",\"runtime\":\"exec\",\"handler\":\"h\"}",
                 bad[i]);
        refused_doc(json, "name:");
    }
    assert_false(manifest_name_valid(NULL));
    refused_doc("{\"runtime\":\"exec\",\"handler\":\"h\"}", "name: is required");
    refused_doc("{\"name\":5,\"runtime\":\"exec\",\"handler\":\"h\"}", "name: must be a string");
    refused_doc("{\"name\":\"f\",\"handler\":\"h\"}", "runtime: is required");
}

static void test_not_an_object(void **state)
{
    refused_doc("[]", "function.json");
    refused_doc("\"x\"", "function.json");
    refused_doc("null", "function.json");
    refused_doc("{", "function.json: not valid JSON");
    refused_doc("", "function.json: not valid JSON");
    refused_doc("{" MINIMAL "} {}", "function.json: unexpected data");
    /* Over the size limit. */
    size_t big = MANIFEST_FILE_MAX + 1;
    char *text = malloc(big);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    struct manifest *m = NULL;
    struct ig_error err = {};
    assert_int_equal(manifest_parse(text, big, &m, &err), -EINVAL);
    assert_non_null(strstr(err.message, "function.json"));
    free(text);
}

static void test_unknown_and_duplicate_fields(void **state)
{
    refused("\"memory\":512", "memory");
    refused("\"Name\":\"x\"", "Name");
    refused("\"\":1", "");
    refused("\"memory_mb\":256,\"memory_mb\":512", "memory_mb");
    refused("\"name\":\"hello\"", "name");
}

static void test_numbers(void **state)
{
    static const struct {
        const char *field;
        long long min, max;
    } ranges[] = {
        {"memory_mb", 64, 10240},     {"cpu_millis", 10, 64000}, {"timeout_ms", 1, 900000},
        {"concurrency", 1, 1000},     {"min_scale", 0, 1000},    {"max_scale", 1, 1000},
        {"idle_timeout_s", 1, 86400}, {"max_retries", 0, 20},    {"max_concurrency", 0, 1000000},
    };
    char extra[256];
    for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
        const char *f = ranges[i].field;
        /* The bounds themselves are accepted (with reuse so concurrency may exceed 1, and
         * max_scale high enough for min_scale). */
        long long ends[] = {ranges[i].min, ranges[i].max};
        for (size_t e = 0; e < 2; e++) {
            char json[512];
            snprintf(json, sizeof(json), "{" MINIMAL ",\"reuse\":true%s,\"%s\":%lld}",
                     streq(f, "min_scale") || streq(f, "max_scale") ? "" : ",\"max_scale\":1000", f,
                     ends[e]);
            if (streq(f, "min_scale"))
                snprintf(json, sizeof(json), "{" MINIMAL ",\"max_scale\":1000,\"min_scale\":%lld}",
                         ends[e]);
            manifest_free(parse_ok(json));
        }
        snprintf(extra, sizeof(extra), "\"%s\":%lld", f, ranges[i].min - 1);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":%lld", f, ranges[i].max + 1);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":1.5", f);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":\"128\"", f);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":null", f);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":true", f);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":1e300", f);
        refused(extra, f);
        snprintf(extra, sizeof(extra), "\"%s\":-1e300", f);
        refused(extra, f);
    }
    /* An integer written as 256.0 is still the integer 256. */
    struct manifest *m = parse_ok("{" MINIMAL ",\"memory_mb\":256.0}");
    assert_int_equal(m->memory_mb, 256);
    manifest_free(m);
}

static void test_cross_field(void **state)
{
    refused("\"min_scale\":5,\"max_scale\":3", "min_scale");
    refused("\"concurrency\":2", "concurrency");
    refused("\"concurrency\":2,\"reuse\":false", "concurrency");
    manifest_free(parse_ok("{" MINIMAL ",\"min_scale\":3,\"max_scale\":3}"));
}

static void test_types(void **state)
{
    refused("\"runtime\":\"java\"", "runtime");
    refused("\"runtime\":1", "runtime");
    refused("\"handler\":\"\"", "handler");
    refused("\"handler\":\"/abs/path\"", "handler");
    refused("\"handler\":\"../x\"", "handler");
    refused("\"handler\":\"a/../../x\"", "handler");
    refused("\"handler\":\"has space\"", "handler");
    refused("\"handler\":\"tab\\there\"", "handler");
    refused("\"handler\":7", "handler");
    char big[400], extra[512];
    memset(big, 'h', 256);
    big[256] = '\0';
    snprintf(extra, sizeof(extra), "\"handler\":\"%s\"", big);
    refused(extra, "handler");
    /* "..x" is a name, not the parent directory. */
    manifest_free(parse_ok("{\"name\":\"f\",\"runtime\":\"exec\",\"handler\":\"..x/y..\"}"));
    refused("\"reuse\":1", "reuse");
    refused("\"reuse\":\"true\"", "reuse");
    refused("\"reuse\":null", "reuse");
}

static void test_env(void **state)
{
    refused("\"env\":[]", "env");
    refused("\"env\":\"A=1\"", "env");
    refused("\"env\":{\"A\":1}", "env");
    refused("\"env\":{\"A\":null}", "env");
    refused("\"env\":{\"A\":{}}", "env");
    refused("\"env\":{\"1A\":\"x\"}", "env");
    refused("\"env\":{\"A-B\":\"x\"}", "env");
    refused("\"env\":{\"A B\":\"x\"}", "env");
    refused("\"env\":{\"\":\"x\"}", "env");
    refused("\"env\":{\"A=B\":\"x\"}", "env");
    refused("\"env\":{\"A\":\"1\",\"A\":\"2\"}", "env");
    refused("\"env\":{\"IGNIS_X\":\"1\"}", "env");
    refused("\"env\":{\"AWS_LAMBDA_RUNTIME_API\":\"x\"}", "env");
    refused("\"env\":{\"_HANDLER\":\"x\"}", "env");
    refused("\"env\":{\"LAMBDA_TASK_ROOT\":\"x\"}", "env");
    /* Too many variables, a value too long, too much in total. */
    size_t cap = 64 * 1024 + 8192;
    char *extra = malloc(cap);
    size_t n = (size_t)snprintf(extra, cap, "\"env\":{");
    for (int i = 0; i <= MANIFEST_ENV_MAX; i++)
        n += (size_t)snprintf(extra + n, cap - n, "%s\"V%d\":\"x\"", i ? "," : "", i);
    snprintf(extra + n, cap - n, "}");
    refused(extra, "env");
    free(extra);
    char *value = malloc(MANIFEST_ENV_VALUE_MAX + 2);
    memset(value, 'v', MANIFEST_ENV_VALUE_MAX + 1);
    value[MANIFEST_ENV_VALUE_MAX + 1] = '\0';
    extra = malloc(MANIFEST_ENV_VALUE_MAX + 64);
    snprintf(extra, MANIFEST_ENV_VALUE_MAX + 64, "\"env\":{\"A\":\"%s\"}", value);
    refused(extra, "env");
    value[MANIFEST_ENV_VALUE_MAX] = '\0';
    snprintf(extra, MANIFEST_ENV_VALUE_MAX + 64, "\"env\":{\"A\":\"%s\"}", value);
    char *json = malloc(MANIFEST_ENV_VALUE_MAX + 256);
    snprintf(json, MANIFEST_ENV_VALUE_MAX + 256, "{" MINIMAL ",%s}", extra);
    manifest_free(parse_ok(json));
    free(json);
    /* Two values at the per-value limit pass it but not the total. */
    char *two = malloc(2 * MANIFEST_ENV_VALUE_MAX + 64);
    snprintf(two, 2 * MANIFEST_ENV_VALUE_MAX + 64, "\"env\":{\"A\":\"%s\",\"B\":\"%s\"}", value,
             value);
    refused(two, "env");
    free(two);
    free(extra);
    free(value);
}

static void test_events(void **state)
{
    refused("\"events\":{}", "events");
    refused("\"events\":\"x\"", "events");
    refused("\"events\":[\"x\"]", "events[0]");
    refused("\"events\":[{}]", "events[0].type");
    refused("\"events\":[{\"type\":1}]", "events[0].type");
    refused("\"events\":[{\"type\":\"\"}]", "events[0].type");
    refused("\"events\":[{\"type\":\"a b\"}]", "events[0].type");
    manifest_free(parse_ok("{" MINIMAL ",\"events\":[{\"type\":\"*\"}]}")); /* every type */
    refused("\"events\":[{\"type\":\"a*\"}]", "events[0].type");
    refused("\"events\":[{\"type\":\"a.*.b\"}]", "events[0].type");
    refused("\"events\":[{\"type\":\"a\"},{\"type\":\"b\",\"source\":5}]", "events[1].source");
    refused("\"events\":[{\"type\":\"a\",\"source\":\"\"}]", "events[0].source");
    refused("\"events\":[{\"type\":\"a\",\"src\":\"x\"}]", "events[0]");
    char extra[8192];
    size_t n = (size_t)snprintf(extra, sizeof(extra), "\"events\":[");
    for (int i = 0; i <= MANIFEST_EVENTS_MAX; i++)
        n +=
            (size_t)snprintf(extra + n, sizeof(extra) - n, "%s{\"type\":\"t%d\"}", i ? "," : "", i);
    snprintf(extra + n, sizeof(extra) - n, "]");
    refused(extra, "events");
}

static void test_schedule_and_secrets(void **state)
{
    refused("\"schedule\":5", "schedule");
    refused("\"schedule\":\"\"", "schedule");
    refused("\"schedule\":\"   \"", "schedule");
    refused("\"schedule\":\"* * *\\n* *\"", "schedule");
    refused("\"schedule\":\"every day\"", "schedule");
    refused("\"schedule\":\"* * * *\"", "schedule");
    refused("\"schedule\":\"61 * * * *\"", "schedule");
    refused("\"schedule\":\"0 0 30 2 *\"", "schedule");
    const char *good[] = {"*/5 * * * *", "@daily", "@every 1h30m", "0 9 * * MON-FRI"};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        char json[256];
        snprintf(json, sizeof(json), "{" MINIMAL ",\"schedule\":\"%s\"}", good[i]);
        struct manifest *m = parse_ok(json);
        assert_string_equal(m->schedule, good[i]);
        manifest_free(m);
    }
    char big[300], extra[400];
    memset(big, '*', 257);
    big[257] = '\0';
    snprintf(extra, sizeof(extra), "\"schedule\":\"%s\"", big);
    refused(extra, "schedule");

    refused("\"secrets\":\"a\"", "secrets");
    refused("\"secrets\":[1]", "secrets[0]");
    refused("\"secrets\":[\"\"]", "secrets[0]");
    refused("\"secrets\":[\"a\",\"a b\"]", "secrets[1]");
    refused("\"secrets\":[\"../x\"]", "secrets[0]");
    refused("\"secrets\":[\"a/b\"]", "secrets[0]");
    refused("\"secrets\":[\"a\",\"a\"]", "secrets[1]");
    char many[2048];
    size_t n = (size_t)snprintf(many, sizeof(many), "\"secrets\":[");
    for (int i = 0; i <= MANIFEST_SECRETS_MAX; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s\"s%d\"", i ? "," : "", i);
    snprintf(many + n, sizeof(many) - n, "]");
    refused(many, "secrets");
}

static void test_sink(void **state)
{
    struct manifest *m = parse_ok("{" MINIMAL "}");
    assert_null(m->sink.url);
    cJSON *plain = manifest_to_json(m);
    assert_null(cJSON_GetObjectItem(plain, "sink"));
    cJSON_Delete(plain);
    manifest_free(m);

    /* A string is the URL with the defaults. */
    m = parse_ok("{" MINIMAL ",\"sink\":\"http://127.0.0.1:9000/hook?x=1\"}");
    assert_string_equal(m->sink.url, "http://127.0.0.1:9000/hook?x=1");
    assert_int_equal(m->sink.on, MANIFEST_SINK_ALWAYS);
    assert_int_equal(m->sink.retries, MANIFEST_SINK_RETRIES_DEF);
    manifest_free(m);

    m = parse_ok("{" MINIMAL ",\"sink\":{\"url\":\"HTTPS://hooks.example.com\",\"on\":\"failure\","
                 "\"retries\":0}}");
    assert_int_equal(m->sink.on, MANIFEST_SINK_FAILURE);
    assert_int_equal(m->sink.retries, 0);
    /* The round trip writes the object form, defaults included. */
    cJSON *j = manifest_to_json(m);
    char *text = cJSON_PrintUnformatted(j);
    struct manifest *m2 = parse_ok(text);
    assert_string_equal(m2->sink.url, "HTTPS://hooks.example.com");
    assert_int_equal(m2->sink.on, MANIFEST_SINK_FAILURE);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "sink"), "on")->valuestring,
                        "failure");
    free(text);
    cJSON_Delete(j);
    manifest_free(m2);
    manifest_free(m);

    m = parse_ok("{" MINIMAL ",\"sink\":{\"url\":\"http://h/\",\"on\":\"success\"}}");
    assert_int_equal(m->sink.on, MANIFEST_SINK_SUCCESS);
    manifest_free(m);
    m = parse_ok("{" MINIMAL ",\"sink\":null}");
    assert_null(m->sink.url);
    manifest_free(m);

    refused("\"sink\":42", "sink");
    refused("\"sink\":[]", "sink");
    refused("\"sink\":\"\"", "sink.url");
    refused("\"sink\":\"not a url\"", "sink.url");
    refused("\"sink\":\"/relative/path\"", "sink.url");
    refused("\"sink\":\"ftp://example.com/x\"", "sink.url");
    refused("\"sink\":\"file:///etc/passwd\"", "sink.url");
    refused("\"sink\":\"http://\"", "sink.url");
    refused("\"sink\":{}", "sink.url");
    refused("\"sink\":{\"url\":7}", "sink.url");
    refused("\"sink\":{\"url\":\"http://h/\",\"on\":\"sometimes\"}", "sink.on");
    refused("\"sink\":{\"url\":\"http://h/\",\"on\":1}", "sink.on");
    refused("\"sink\":{\"url\":\"http://h/\",\"retries\":11}", "sink.retries");
    refused("\"sink\":{\"url\":\"http://h/\",\"retries\":-1}", "sink.retries");
    refused("\"sink\":{\"url\":\"http://h/\",\"to\":\"x\"}", "sink.to");
    refused("\"sink\":{\"url\":\"http://h/\",\"url\":\"http://i/\"}", "sink.url");
    char big[MANIFEST_SINK_URL_MAX + 64];
    int n = snprintf(big, sizeof(big), "\"sink\":\"http://h/");
    memset(big + n, 'a', MANIFEST_SINK_URL_MAX);
    snprintf(big + n + MANIFEST_SINK_URL_MAX, sizeof(big) - (size_t)n - MANIFEST_SINK_URL_MAX,
             "\"");
    refused(big, "sink.url");
}

static void test_from_json_direct(void **state)
{
    struct manifest *m = NULL;
    struct ig_error err = {};
    assert_int_equal(manifest_from_json(NULL, &m, &err), -EINVAL);
    assert_null(m);
    enum manifest_runtime rt;
    assert_int_equal(manifest_runtime_from_name("node", &rt), 0);
    assert_int_equal(rt, MANIFEST_RUNTIME_NODE);
    assert_int_equal(manifest_runtime_from_name("Node", &rt), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_runtimes_and_handler),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_unknown_and_duplicate_fields),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_cross_field),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_schedule_and_secrets),
        cmocka_unit_test(test_sink),
        cmocka_unit_test(test_from_json_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
