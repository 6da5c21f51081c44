/* Invoking a version or an alias through a real ignisd and real containers (#21): two versions of
 * one function, each invocation run by the version it named (NAME@N, ?version=N, unqualified:
 * the default alias), with the version and alias in the reply's headers and the record; both
 * versions warm at once, the old one's pool scaling to zero while the current keeps min_scale;
 * an async invocation of @1 running version 1; an event's delivery and a schedule's run coming
 * through the default alias; bad selectors refused; a 90/10 alias routing exactly 900/100 of
 * 1,000 invocations and a rollback moving all at once. The function is the hello-python example:
 * it returns context.function_version, the version its container was made for, so the body says
 * which version's container ran it, not only the header. */
#include "harness.h"

#include <string.h>
#include <unistd.h>

#include "records/db.h"

static struct ignisd_proc daemon_proc;

/* The daemon's store, on either engine (harness_store_target), read only. */
static struct db *open_store(void)
{
    char target[600];
    struct db *db;
    struct ig_error err = {};
    harness_store_target(&daemon_proc, target, sizeof(target));
    if (db_open(target, DB_READONLY, &db, &err) < 0)
        fail_msg("%s", err.message);
    return db;
}

/* Two versions differing in their manifest (a new manifest is a new version). Version 1 asks for
 * min_scale 1: as a version other than the current one it must still scale to zero. */
#define V1 "{\"timeout_ms\": 5000, \"min_scale\": 1, \"idle_timeout_s\": 1}"
#define V2 "{\"timeout_ms\": 6000, \"min_scale\": 1, \"idle_timeout_s\": 1}"
/* Two versions whose containers stay warm for the length of a test, however slow the host: a
 * second invocation of each finds its container warm. */
#define V1_WARM "{\"timeout_ms\": 5000, \"idle_timeout_s\": 600}"
#define V2_WARM "{\"timeout_ms\": 6000, \"idle_timeout_s\": 600}"

static int setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* What one sync invocation came to. */
struct ran {
    long status;
    char version[24], alias[80], cold[8], id[80];
    char body_version[24]; /* the function_version the function returned */
    char error[64];        /* error.code when it failed */
};

static void copy_header(const struct client_response *r, const char *name, char *buf, size_t size)
{
    buf[0] = '\0';
    client_response_header(r, name, buf, size);
}

static struct ran ran_of(struct client_response *r)
{
    struct ran x = {.status = r->status};
    copy_header(r, "Ignis-Version", x.version, sizeof(x.version));
    copy_header(r, "Ignis-Alias", x.alias, sizeof(x.alias));
    copy_header(r, "Ignis-Cold-Start", x.cold, sizeof(x.cold));
    copy_header(r, "Ignis-Invocation-Id", x.id, sizeof(x.id));
    cJSON *j = r->body ? cJSON_Parse(r->body) : NULL;
    const cJSON *v = cJSON_GetObjectItem(j, "function_version");
    if (cJSON_IsString(v))
        snprintf(x.body_version, sizeof(x.body_version), "%s", v->valuestring);
    const cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    if (cJSON_IsString(code))
        snprintf(x.error, sizeof(x.error), "%s", code->valuestring);
    cJSON_Delete(j);
    return x;
}

/* POST PATH (the whole path: /v1/functions/...) with headers (may be NULL). */
static struct ran post(const char *path, const char *const *headers)
{
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "POST", path, headers, "{}", 2, &r), 0);
    struct ran x = ran_of(&r);
    client_response_clear(&r);
    return x;
}

/* Invokes TARGET (NAME or NAME@SELECTOR) synchronously. */
static struct ran invoke(const char *target)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", target);
    return post(path, NULL);
}

static void expect_ran(const struct ran *x, const char *version, const char *alias)
{
    if (x->status != 200)
        fprintf(stderr, "invocation: HTTP %ld (%s)\n", x->status, x->error);
    assert_int_equal(x->status, 200);
    assert_string_equal(x->version, version);
    assert_string_equal(x->body_version, version);
    assert_string_equal(x->alias, alias);
}

/* The record's alias: "" for null. */
static void expect_record(const char *id, const char *status, int version, const char *alias)
{
    cJSON *rec = harness_wait_invocation(&daemon_proc, id, status, 60);
    assert_int_equal(cJSON_GetObjectItem(rec, "version")->valueint, version);
    const cJSON *a = cJSON_GetObjectItem(rec, "alias");
    if (alias[0])
        assert_string_equal(cJSON_GetStringValue(a), alias);
    else
        assert_true(cJSON_IsNull(a));
    cJSON_Delete(rec);
}

static void push_two_versions(const char *name, const char *v1, const char *v2)
{
    harness_push(&daemon_proc, "hello-python", name, v1);
    harness_push(&daemon_proc, "hello-python", name, v2);
}

/* GET /v1/functions/NAME's live.versions.VERSION.KEY; -1 when that version has no state. */
static double version_live(const char *name, const char *version, const char *key)
{
    cJSON *f = harness_function(&daemon_proc, name);
    const cJSON *v = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(f, "live"), "versions"), version);
    double n = v ? cJSON_GetNumberValue(cJSON_GetObjectItem(v, key)) : -1;
    cJSON_Delete(f);
    return n;
}

static void test_each_form_runs_its_version(void **state)
{
    push_two_versions("rt", V1_WARM, V2_WARM);
    struct ran x = invoke("rt@1");
    expect_ran(&x, "1", "");
    expect_record(x.id, "succeeded", 1, "");
    x = post("/v1/functions/rt/invoke?version=1", NULL);
    expect_ran(&x, "1", "");
    x = invoke("rt@2");
    expect_ran(&x, "2", "");
    x = invoke("rt");
    expect_ran(&x, "2", "default");
    expect_record(x.id, "succeeded", 2, "default");
    x = invoke("rt@default");
    expect_ran(&x, "2", "default");

    /* Both versions are warm at once: a second invocation of each is no cold start, and the
     * live state shows a ready container for each. */
    x = invoke("rt@1");
    expect_ran(&x, "1", "");
    assert_string_equal(x.cold, "false");
    x = invoke("rt");
    expect_ran(&x, "2", "default");
    assert_string_equal(x.cold, "false");
    assert_true(version_live("rt", "1", "ready") >= 1);
    assert_true(version_live("rt", "2", "ready") >= 1);

    /* The CLI: NAME@N, --json showing the version and alias, `ignis result` the version. */
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "invoke", "rt@1", "--json", NULL), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "version")->valueint, 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "alias")));
    char id[80];
    snprintf(id, sizeof(id), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "id")));
    cJSON_Delete(j);
    free(out);
    free(err);
    cJSON_Delete(harness_wait_invocation(&daemon_proc, id, "succeeded", 60));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "result", id, NULL), 0);
    char line[64];
    snprintf(line, sizeof(line), "\n%-17s 1\n", "version"); /* as `ignis result` aligns keys */
    assert_non_null(strstr(out, line));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "invoke", "rt", "--json", NULL), 0);
    assert_non_null(strstr(out, "\"version\":2,\"alias\":\"default\""));
    free(out);
    free(err);
}

/* Version 1's state scales to zero after its idle timeout (whatever its manifest's min_scale)
 * and goes; version 2, the current one, keeps its min_scale of 1. Polled, not timed. */
static void test_old_version_scales_to_zero(void **state)
{
    push_two_versions("rt-idle", V1, V2);
    struct ran x = invoke("rt-idle@1");
    expect_ran(&x, "1", "");
    assert_true(version_live("rt-idle", "1", "ready") >= 1);
    bool gone = false;
    for (int i = 0; i < 600 && !gone; i++) {
        gone = version_live("rt-idle", "1", "ready") < 0;
        if (!gone)
            usleep(100 * 1000);
    }
    assert_true(gone);
    bool kept = false;
    for (int i = 0; i < 600 && !kept; i++) {
        kept = version_live("rt-idle", "2", "ready") == 1;
        if (!kept)
            usleep(100 * 1000);
    }
    assert_true(kept);
}

static void test_async_runs_the_routed_version(void **state)
{
    push_two_versions("rt-async", V1, V2);
    const char *headers[] = {"Ignis-Invocation-Type: async", NULL};
    struct ran x = post("/v1/functions/rt-async@1/invoke", headers);
    assert_int_equal(x.status, 202);
    assert_string_equal(x.version, "1");
    assert_string_equal(x.alias, "");
    cJSON *rec = harness_wait_invocation(&daemon_proc, x.id, "succeeded", 60);
    assert_int_equal(cJSON_GetObjectItem(rec, "version")->valueint, 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(rec, "alias")));
    const cJSON *result = cJSON_GetObjectItem(rec, "result");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(result, "function_version")), "1");
    cJSON_Delete(rec);

    x = post("/v1/functions/rt-async/invoke", headers);
    assert_int_equal(x.status, 202);
    assert_string_equal(x.version, "2");
    assert_string_equal(x.alias, "default");
    expect_record(x.id, "succeeded", 2, "default");
}

/* The id of a run of fn's schedule (its idempotency key is ignisd's own), polled from the store
 * for up to 60 s. */
static void schedule_run_id(const char *fn, char id[static 64])
{
    struct db *db = open_store();
    const struct db_value v[] = {DV_S(fn)};
    id[0] = '\0';
    for (int i = 0; i < 600 && !id[0]; i++) {
        _cleanup_db_rows_ struct db_rows *st = NULL;
        assert_int_equal(db_query(db,
                                  "SELECT id FROM invocations WHERE function = $1 AND "
                                  "idempotency_key LIKE '/ignis/%' LIMIT 1",
                                  v, ARRAY_SIZE(v), &st, NULL),
                         0);
        if (db_next(st) == 1)
            snprintf(id, 64, "%s", db_text(st, 0));
        else
            usleep(100 * 1000);
    }
    db_close(db);
    assert_true(id[0] != '\0');
}

static void test_events_and_schedules_use_default(void **state)
{
    harness_push(&daemon_proc, "hello-python", "rt-sub",
                 "{\"events\": [{\"type\": \"com.example.routing\"}]}");
    harness_push(&daemon_proc, "hello-python", "rt-sub",
                 "{\"events\": [{\"type\": \"com.example.routing\"}], \"timeout_ms\": 6000}");
    const char *headers[] = {
        "ce-specversion: 1.0", "ce-type: com.example.routing",   "ce-source: /test",
        "ce-id: routing-1",    "Content-Type: application/json", NULL};
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "POST", "/v1/events", headers, "{}", 2, &r), 0);
    assert_int_equal(r.status, 202);
    cJSON *acc = harness_json(&r);
    client_response_clear(&r);
    const cJSON *d = cJSON_GetArrayItem(cJSON_GetObjectItem(acc, "deliveries"), 0);
    assert_non_null(d);
    expect_record(cJSON_GetStringValue(cJSON_GetObjectItem(d, "invocation")), "succeeded", 2,
                  "default");
    cJSON_Delete(acc);

    harness_push(&daemon_proc, "hello-python", "rt-tick", "{\"schedule\": \"@every 1s\"}");
    char id[64];
    schedule_run_id("rt-tick", id);
    expect_record(id, "succeeded", 1, "default");
}

static void expect_refused(const char *path, long status, const char *code)
{
    struct ran x = post(path, NULL);
    if (x.status != status)
        fprintf(stderr, "POST %s: HTTP %ld (%s)\n", path, x.status, x.error);
    assert_int_equal(x.status, status);
    assert_string_equal(x.error, code);
}

static void test_bad_selectors(void **state)
{
    push_two_versions("rt-bad", V1, V2);
    expect_refused("/v1/functions/rt-bad@9/invoke", 404, "version_not_found");
    expect_refused("/v1/functions/rt-bad/invoke?version=9", 404, "version_not_found");
    expect_refused("/v1/functions/rt-bad@nope/invoke", 404, "alias_not_found");
    expect_refused("/v1/functions/rt-bad@01/invoke", 400, "invalid_alias");
    expect_refused("/v1/functions/rt-bad@Bad!/invoke", 400, "invalid_alias");
    expect_refused("/v1/functions/rt-bad@/invoke", 400, "invalid_alias");
    expect_refused("/v1/functions/rt-bad@1/invoke?version=1", 400, "bad_request");
    expect_refused("/v1/functions/nobody@1/invoke", 404, "not_found");
    /* The request's own errors come before its route (which would take an alias's pick): a bad
     * invocation type or idempotency key is a 400 whatever the selector names. */
    const char *bad_type[] = {"Ignis-Invocation-Type: maybe", NULL};
    struct ran x = post("/v1/functions/rt-bad@nope/invoke", bad_type);
    assert_int_equal(x.status, 400);
    assert_string_equal(x.error, "bad_request");
    const char *bad_key[] = {"Ignis-Invocation-Type: async", "Idempotency-Key: /ignis/x", NULL};
    x = post("/v1/functions/rt-bad@9/invoke", bad_key);
    assert_int_equal(x.status, 400);
    assert_string_equal(x.error, "bad_request");
    /* Only the invoke route reads a selector: elsewhere NAME@N is no function's name. */
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/functions/rt-bad@1", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    client_response_clear(&r);
}

/* PUT /v1/functions/NAME/aliases/ALIAS (the aliases' routes, branch i21-aliases): its status. */
static long put_alias(const char *name, const char *alias, const char *body)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/functions/%s/aliases/%s", name, alias);
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "PUT", path, headers, body, strlen(body), &r),
                     0);
    long status = r.status;
    if (status != 200)
        fprintf(stderr, "PUT %s: HTTP %ld: %s\n", path, status, r.body);
    client_response_clear(&r);
    return status;
}

/* The smooth weighted round-robin is exact: any 100 consecutive routes of a 90/10 alias give 90
 * and 10, so 1,000 give 900 and 100 (not a statistical test). Each record names its version.
 * Then a rollback points the default alias back at version 1 at once. */
/* The invocations table's rows of fn through alias run by version, once the table has total
 * such rows (sync records are written after their reply: polled for up to 60 s). */
static int rows_by_version(const char *fn, const char *alias, int version, int total)
{
    struct db *db = open_store();
    const struct db_value v[] = {DV_I(version), DV_S(fn), DV_S(alias)};
    int64_t all = 0, n = 0;
    for (int i = 0; i < 600; i++) {
        _cleanup_db_rows_ struct db_rows *st = NULL;
        assert_int_equal(db_query(db,
                                  "SELECT count(*), "
                                  "coalesce(sum(CASE WHEN version = $1 THEN 1 ELSE 0 END), 0) "
                                  "FROM invocations WHERE function = $2 AND alias = $3",
                                  v, ARRAY_SIZE(v), &st, NULL),
                         0);
        assert_int_equal(db_next(st), 1);
        all = db_int(st, 0);
        n = db_int(st, 1);
        if (all >= total)
            break;
        usleep(100 * 1000);
    }
    db_close(db);
    assert_int_equal(all, total);
    return (int)n;
}

static void test_weighted_alias_and_rollback(void **state)
{
    push_two_versions("rt-canary", V1, V2);
    assert_int_equal(put_alias("rt-canary", "canary", "{\"versions\": {\"1\": 90, \"2\": 10}}"),
                     200);
    unsigned n1 = 0, n2 = 0;
    for (int i = 0; i < 1000; i++) {
        struct ran x = invoke("rt-canary@canary");
        assert_int_equal(x.status, 200);
        assert_string_equal(x.alias, "canary");
        assert_string_equal(x.version, x.body_version);
        n1 += streq(x.version, "1");
        n2 += streq(x.version, "2");
    }
    assert_int_equal(n1, 900);
    assert_int_equal(n2, 100);
    /* /metrics counts them by version too. */
    assert_true(harness_metric(&daemon_proc,
                               "ignis_version_invocations_total{function=\"rt-canary\","
                               "version=\"2\"}") >= 100);
    assert_true(harness_metric(&daemon_proc,
                               "ignis_version_invocations_total{function=\"rt-canary\","
                               "version=\"1\"}") >= 900);
    /* Every record names the version that ran it. */
    assert_int_equal(rows_by_version("rt-canary", "canary", 1, 1000), 900);
    assert_int_equal(rows_by_version("rt-canary", "canary", 2, 1000), 100);

    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "rollback", "rt-canary", NULL), 0);
    free(out);
    free(err);
    for (int i = 0; i < 100; i++) {
        struct ran x = invoke("rt-canary");
        expect_ran(&x, "1", "default");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_form_runs_its_version),
        cmocka_unit_test(test_old_version_scales_to_zero),
        cmocka_unit_test(test_async_runs_the_routed_version),
        cmocka_unit_test(test_events_and_schedules_use_default),
        cmocka_unit_test(test_bad_selectors),
        cmocka_unit_test(test_weighted_alias_and_rollback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
