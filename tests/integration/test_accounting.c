/* The accountant end to end, with functions whose cost is known: a CPU burn is billed its CPU, a
 * sleep its wall time and almost no CPU, an allocation its memory, an idle warm container
 * nothing, an OOM kill is recorded as one, an invocation's record and REPORT line show its
 * ledger row's figures, /v1/usage sums the ledger rows (per version too), and a restart keeps
 * the ledger. Figures come from the ledger (ignis.db's `usage` rows) and the API. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "records/db.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    const char *args[] = {"--log-level", "debug", NULL};
    return harness_start(&daemon_proc, args);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

struct row {
    int64_t wall_us, cpu_us, mem_peak_bytes, billed_ms, cold, init_us, oom_kills, memory_mb;
    double gb_s;
    char status[16];
};

/* The daemon's store, on either engine (harness_store_target). */
static struct db *open_db(void)
{
    char target[600];
    struct db *db;
    struct ig_error err = {};
    harness_store_target(&daemon_proc, target, sizeof(target));
    if (db_open(target, DB_READONLY, &db, &err) < 0)
        fail_msg("%s", err.message);
    return db;
}

/* The ledger row of (id, attempt). The journal writes it off the loop, after the reply: poll
 * (a bound on how long, not an assertion on speed). */
static void ledger_attempt(const char *id, int attempt, struct row *ret)
{
    struct db *db = open_db();
    const struct db_value v[] = {DV_S(id), DV_I(attempt)};
    bool found = false;
    for (int i = 0; i < 300 && !found; i++) {
        _cleanup_db_rows_ struct db_rows *st = NULL;
        assert_int_equal(db_query(db,
                                  "SELECT wall_us, cpu_us, mem_peak_bytes, billed_ms, cold, "
                                  "init_us, oom_kills, memory_mb, gb_s, status FROM usage "
                                  "WHERE id = $1 AND attempt = $2",
                                  v, ARRAY_SIZE(v), &st, NULL),
                         0);
        if (db_next(st) == 1) {
            found = true;
            *ret = (struct row){
                .wall_us = db_int(st, 0),
                .cpu_us = db_int(st, 1),
                .mem_peak_bytes = db_int(st, 2),
                .billed_ms = db_int(st, 3),
                .cold = db_int(st, 4),
                .init_us = db_int(st, 5),
                .oom_kills = db_int(st, 6),
                .memory_mb = db_int(st, 7),
                .gb_s = db_double(st, 8),
            };
            snprintf(ret->status, sizeof(ret->status), "%s", db_text(st, 9));
        } else
            usleep(50000);
    }
    db_close(db);
    if (!found)
        fprintf(stderr, "no ledger row for %s\n", id);
    assert_true(found);
    /* What holds for every row: billed is wall rounded up; GB-s from it. */
    assert_int_equal(ret->billed_ms, (ret->wall_us + 999) / 1000);
    assert_true(fabs(ret->gb_s - ret->memory_mb / 1024.0 * ret->billed_ms / 1000.0) < 1e-12);
}

static void ledger_row(const char *id, struct row *ret)
{
    ledger_attempt(id, 1, ret);
}

/* Invokes fn with body; returns the status and the invocation's id and Ignis-Billed-Ms. */
static long invoke(const char *fn, const char *body, char id[64], long *ret_billed, bool *ret_cold)
{
    char h[64];
    struct client_response r;
    long status = harness_invoke(&daemon_proc, fn, body, NULL, &r);
    if (status != 200) {
        fprintf(stderr, "%s %s: %ld %s\n", fn, body, status, r.body);
        harness_print_log(&daemon_proc);
    }
    assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, 64));
    assert_non_null(client_response_header(&r, "Ignis-Billed-Ms", h, sizeof(h)));
    if (ret_billed)
        *ret_billed = atol(h);
    if (ret_cold) {
        assert_non_null(client_response_header(&r, "Ignis-Cold-Start", h, sizeof(h)));
        *ret_cold = streq(h, "true");
    }
    client_response_clear(&r);
    return status;
}

static void test_cpu_burn_is_billed_its_cpu(void **state)
{
    harness_push(&daemon_proc, "burn-cpu", "acct-burn", "{\"reuse\": true}");
    for (int i = 0; i < 3; i++) {
        char id[64];
        long billed;
        struct row row;
        /* Burns 200 ms of its own CPU time (not wall time, which a loaded host stretches). */
        assert_int_equal(
            invoke("acct-burn", "{\"ms\": 200, \"clock\": \"cpu\"}", id, &billed, NULL), 200);
        ledger_row(id, &row);
        fprintf(stderr, "burn 200 ms: cpu_us=%lld wall_us=%lld billed_ms=%lld cold=%lld\n",
                (long long)row.cpu_us, (long long)row.wall_us, (long long)row.billed_ms,
                (long long)row.cold);
        /* ± max(2 ms, 2%) */
        assert_true(llabs(row.cpu_us - 200000) <= 4000);
        assert_int_equal(billed, row.billed_ms);
        assert_true(row.wall_us >= row.cpu_us);
        assert_string_equal(row.status, "ok");
        if (row.cold)
            assert_true(row.init_us > 0);
        else
            assert_int_equal(row.init_us, 0);
    }
}

static void test_sleep_is_billed_wall_not_cpu(void **state)
{
    harness_push(&daemon_proc, "sleep", "acct-sleep", "{\"reuse\": true}");
    char id[64];
    struct row row;
    /* A first call warms the runtime up (its JIT and module loading are not the sleep's). */
    assert_int_equal(invoke("acct-sleep", "{\"ms\": 1}", id, NULL, NULL), 200);
    long billed;
    assert_int_equal(invoke("acct-sleep", "{\"ms\": 300}", id, &billed, NULL), 200);
    ledger_row(id, &row);
    fprintf(stderr, "sleep 300 ms: cpu_us=%lld wall_us=%lld billed_ms=%lld\n",
            (long long)row.cpu_us, (long long)row.wall_us, (long long)row.billed_ms);
    assert_true(row.wall_us >= 300000);
    assert_true(row.billed_ms >= 300);
    assert_int_equal(billed, row.billed_ms);
    assert_true(row.cpu_us < 10000);
}

static void test_allocation_is_its_peak(void **state)
{
    harness_push(&daemon_proc, "alloc-memory", "acct-alloc", NULL);
    char id[64];
    struct row base, row;
    /* The runtime's baseline: the same function allocating nothing. */
    assert_int_equal(invoke("acct-alloc", "{\"mb\": 0}", id, NULL, NULL), 200);
    ledger_row(id, &base);
    assert_int_equal(invoke("acct-alloc", "{\"mb\": 64}", id, NULL, NULL), 200);
    ledger_row(id, &row);
    fprintf(stderr, "alloc 64 MB: peak=%lld baseline=%lld\n", (long long)row.mem_peak_bytes,
            (long long)base.mem_peak_bytes);
    assert_true(base.mem_peak_bytes > 0);
    assert_true(row.mem_peak_bytes >= 64ll << 20);
    assert_true(row.mem_peak_bytes < (64ll << 20) + base.mem_peak_bytes + (16ll << 20));
}

static void test_idle_warm_container_costs_nothing(void **state)
{
    harness_push(&daemon_proc, "burn-cpu", "acct-idle",
                 "{\"reuse\": true, \"idle_timeout_s\": 60, \"max_scale\": 1}");
    char id1[64], id2[64];
    struct row a, b;
    bool cold;
    assert_int_equal(invoke("acct-idle", "{\"ms\": 50, \"clock\": \"cpu\"}", id1, NULL, NULL), 200);
    sleep(5);
    assert_int_equal(invoke("acct-idle", "{\"ms\": 50, \"clock\": \"cpu\"}", id2, NULL, &cold),
                     200);
    assert_false(cold); /* the same warm container, idle for 5 s in between */
    ledger_row(id1, &a);
    ledger_row(id2, &b);
    fprintf(stderr, "idle 5 s: billed %lld + %lld ms, cpu %lld + %lld us\n", (long long)a.billed_ms,
            (long long)b.billed_ms, (long long)a.cpu_us, (long long)b.cpu_us);
    /* Each is billed its own run: none of the 5 s in between, in wall or CPU time. */
    assert_true(a.billed_ms < 5000 && b.billed_ms < 5000);
    assert_true(llabs(b.cpu_us - 50000) <= 2000);
    assert_int_equal(b.init_us, 0);

    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/usage?function=acct-idle&since=1h",
                                     NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    client_response_clear(&r);
    cJSON *t = cJSON_GetObjectItem(j, "totals");
    assert_int_equal(cJSON_GetObjectItem(t, "invocations")->valueint, 2);
    assert_int_equal((int64_t)cJSON_GetObjectItem(t, "billed_ms")->valuedouble,
                     a.billed_ms + b.billed_ms);
    cJSON_Delete(j);
}

static void test_oom_kill_is_recorded(void **state)
{
    harness_push(&daemon_proc, "alloc-memory", "acct-oom",
                 "{\"memory_mb\": 128, \"max_retries\": 0}");
    char id[64];
    struct row row;
    assert_int_equal(invoke("acct-oom", "{\"mb\": 256}", id, NULL, NULL), 502);
    ledger_row(id, &row);
    assert_string_equal(row.status, "oom");
    assert_true(row.oom_kills >= 1);
}

static void test_async_retries_are_rows_per_attempt(void **state)
{
    harness_push(&daemon_proc, "crash", "acct-retry", "{\"max_retries\": 1}");
    const char *headers[] = {"Ignis-Invocation-Type: async", NULL};
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "POST", "/v1/functions/acct-retry/invoke",
                                     headers, "{}", 2, &r),
                     0);
    assert_int_equal(r.status, 202);
    char id[64];
    assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
    client_response_clear(&r);
    /* The first attempt and its retry: a row each, both billed. */
    struct row first, second;
    ledger_attempt(id, 1, &first);
    ledger_attempt(id, 2, &second);
    assert_string_equal(first.status, "crash");
    assert_string_equal(second.status, "crash");
    assert_true(first.billed_ms >= 1 && second.billed_ms >= 1);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        fprintf(stderr, "no number '%s'\n", key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* The last REPORT line of fn's invocation id (its last attempt's), from its logs (written before
 * the reply left). */
static char *report_line(const char *fn, const char *id)
{
    char path[256];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/logs?invocation=%s", fn, id);
    assert_int_equal(harness_request(&daemon_proc, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char *found = NULL, *save = NULL;
    for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *rec = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItem(rec, "text");
        if (cJSON_IsString(text) && strncmp(text->valuestring, "REPORT ", 7) == 0) {
            free(found);
            found = strdup(text->valuestring);
        }
        cJSON_Delete(rec);
    }
    client_response_clear(&r);
    if (!found)
        fprintf(stderr, "no REPORT line for %s\n", id);
    assert_non_null(found);
    return found;
}

/* The record of invocation id (final: `status`) has what its last attempt's ledger row has, in
 * ms with µs precision; the REPORT line shows the same, rounded as Lambda prints it, with the
 * version the record names. */
static void check_record_is_ledger(const char *fn, const char *id, int attempt, const char *status,
                                   struct row *ret_row)
{
    struct row row;
    ledger_attempt(id, attempt, &row);
    cJSON *rec = harness_wait_invocation(&daemon_proc, id, status, 30);
    fprintf(stderr,
            "%s: record cpu_ms=%g peak=%g init_ms=%g; ledger cpu_us=%lld peak=%lld "
            "init_us=%lld cold=%lld\n",
            id, num(rec, "cpu_ms"), num(rec, "peak_memory_bytes"), num(rec, "init_ms"),
            (long long)row.cpu_us, (long long)row.mem_peak_bytes, (long long)row.init_us,
            (long long)row.cold);
    assert_true(num(rec, "cpu_ms") == (double)row.cpu_us / 1e3);
    assert_true(num(rec, "peak_memory_bytes") == (double)row.mem_peak_bytes);
    assert_true(num(rec, "init_ms") == (double)row.init_us / 1e3);
    assert_true(num(rec, "billed_ms") == (double)row.billed_ms);
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(rec, "cold_start")), row.cold);

    char *line = report_line(fn, id), want[128];
    snprintf(want, sizeof(want), "\tCPU: %.2f ms\t", (double)row.cpu_us / 1e3);
    assert_non_null(strstr(line, want));
    snprintf(want, sizeof(want), "\tMax Memory Used: %lld MB",
             (long long)((row.mem_peak_bytes + (1 << 20) - 1) >> 20));
    assert_non_null(strstr(line, want));
    snprintf(want, sizeof(want), "\tInit Duration: %.2f ms", (double)row.init_us / 1e3);
    assert_true(row.cold ? strstr(line, want) != NULL : strstr(line, "Init Duration") == NULL);
    snprintf(want, sizeof(want), "\tVersion: %.0f", num(rec, "version"));
    assert_non_null(strstr(line, want));
    free(line);
    cJSON_Delete(rec);
    *ret_row = row;
}

static void test_record_shows_what_the_attempt_used(void **state)
{
    /* Touching 64 MiB page by page costs CPU as well as memory. */
    harness_push(&daemon_proc, "alloc-memory", "acct-record",
                 "{\"reuse\": true, \"idle_timeout_s\": 60}");
    char id[64];
    bool cold;
    struct row row;
    assert_int_equal(invoke("acct-record", "{\"mb\": 64}", id, NULL, &cold), 200);
    assert_true(cold); /* the function's first invocation */
    check_record_is_ledger("acct-record", id, 1, "succeeded", &row);
    assert_true(row.cpu_us > 0);
    assert_true(row.mem_peak_bytes >= 64ll << 20);
    assert_true(row.init_us > 0);

    /* Async, the same: its record is written at acceptance and again at the outcome. */
    const char *headers[] = {"Ignis-Invocation-Type: async", NULL};
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "POST", "/v1/functions/acct-record/invoke",
                                     headers, "{\"mb\": 32}", 10, &r),
                     0);
    assert_int_equal(r.status, 202);
    assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
    client_response_clear(&r);
    check_record_is_ledger("acct-record", id, 1, "succeeded", &row);
    assert_true(row.cpu_us > 0);
    assert_true(row.mem_peak_bytes >= 32ll << 20);

    /* And a failed async invocation retried: the record has its last attempt's figures. */
    harness_push(&daemon_proc, "crash", "acct-record-crash", "{\"max_retries\": 1}");
    assert_int_equal(harness_request(&daemon_proc, "POST", "/v1/functions/acct-record-crash/invoke",
                                     headers, "{}", 2, &r),
                     0);
    assert_int_equal(r.status, 202);
    assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
    client_response_clear(&r);
    check_record_is_ledger("acct-record-crash", id, 2, "dead", &row);

    /* ignis result prints them. */
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "result", id, NULL), 1); /* dead */
    assert_non_null(strstr(out, "cpu_ms"));
    assert_non_null(strstr(out, "peak_memory_bytes"));
    assert_non_null(strstr(out, "init_ms"));
    free(out);
    free(err);
}

static void test_usage_by_version(void **state)
{
    harness_push(&daemon_proc, "burn-cpu", "acct-ver", NULL);
    cJSON *f = harness_function(&daemon_proc, "acct-ver");
    int v1 = (int)num(f, "version");
    cJSON_Delete(f);
    char id[64];
    struct row row;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(invoke("acct-ver", "{\"ms\": 5}", id, NULL, NULL), 200);
        ledger_row(id, &row);
    }
    /* New content: a new version. */
    harness_push(&daemon_proc, "burn-cpu", "acct-ver", "{\"timeout_ms\": 9000}");
    f = harness_function(&daemon_proc, "acct-ver");
    int v2 = (int)num(f, "version");
    cJSON_Delete(f);
    assert_int_equal(v2, v1 + 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(invoke("acct-ver", "{\"ms\": 5}", id, NULL, NULL), 200);
        ledger_row(id, &row);
    }
    cJSON *rec = harness_wait_invocation(&daemon_proc, id, "succeeded", 30);
    assert_int_equal((int)num(rec, "version"), v2);
    cJSON_Delete(rec);

    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "GET",
                                     "/v1/usage?function=acct-ver&since=1h&by_version=1", NULL,
                                     NULL, 0, &r),
                     0);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    const cJSON *fn = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "functions"), 0);
    assert_int_equal((int)num(fn, "invocations"), 5);
    const cJSON *versions = cJSON_GetObjectItem(fn, "versions");
    assert_int_equal(cJSON_GetArraySize(versions), 2);
    const cJSON *a = cJSON_GetArrayItem(versions, 0), *b = cJSON_GetArrayItem(versions, 1);
    assert_int_equal((int)num(a, "version"), v1);
    assert_int_equal((int)num(a, "invocations"), 2);
    assert_int_equal((int)num(b, "version"), v2);
    assert_int_equal((int)num(b, "invocations"), 3);
    assert_true(num(a, "billed_ms") + num(b, "billed_ms") == num(fn, "billed_ms"));
    cJSON_Delete(j);

    /* Without by_version the reply is as it was. */
    assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/usage?function=acct-ver&since=1h",
                                     NULL, NULL, 0, &r),
                     0);
    j = harness_json(&r);
    client_response_clear(&r);
    fn = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "functions"), 0);
    assert_null(cJSON_GetObjectItem(fn, "versions"));
    cJSON_Delete(j);
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/usage?by_version=maybe", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    client_response_clear(&r);

    /* The CLI: a line per version. */
    char *out = NULL, *err = NULL, want[64];
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "usage", "acct-ver", "--since", "1h",
                                   "--by-version", NULL),
                     0);
    fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "VERSION"));
    snprintf(want, sizeof(want), "%-24s %-20d %11d", "acct-ver", v1, 2);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof(want), "%-24s %-20d %11d", "acct-ver", v2, 3);
    assert_non_null(strstr(out, want));
    free(out);
    free(err);
}

/* The API's totals against sums over the ledger rows. */
static void check_usage_matches_ledger(void)
{
    struct db *db = open_db();
    struct db_rows *st;
    /* CASE, not a sum of comparisons: PostgreSQL sums no booleans (db.h). */
    assert_int_equal(db_query(db,
                              "SELECT count(*), sum(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), "
                              "sum(billed_ms), sum(cpu_us), sum(gb_s), max(mem_peak_bytes), "
                              "sum(CASE WHEN oom_kills > 0 THEN 1 ELSE 0 END) FROM usage",
                              NULL, 0, &st, NULL),
                     0);
    assert_int_equal(db_next(st), 1);
    int64_t n = db_int(st, 0), errors = db_int(st, 1), billed = db_int(st, 2), cpu = db_int(st, 3),
            peak = db_int(st, 5), ooms = db_int(st, 6);
    double gbs = db_double(st, 4);
    db_rows_free(st);
    db_close(db);
    assert_true(n >= 9);

    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/usage?since=1d", NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    client_response_clear(&r);
    cJSON *t = cJSON_GetObjectItem(j, "totals");
    assert_int_equal((int64_t)cJSON_GetObjectItem(t, "invocations")->valuedouble, n);
    assert_int_equal((int64_t)cJSON_GetObjectItem(t, "errors")->valuedouble, errors);
    assert_int_equal((int64_t)cJSON_GetObjectItem(t, "billed_ms")->valuedouble, billed);
    assert_int_equal((int64_t)cJSON_GetObjectItem(t, "oom_kills")->valuedouble, ooms);
    assert_int_equal((int64_t)cJSON_GetObjectItem(t, "peak_memory_bytes")->valuedouble, peak);
    assert_true(fabs(cJSON_GetObjectItem(t, "cpu_ms")->valuedouble - (double)cpu / 1e3) < 1e-6);
    assert_true(fabs(cJSON_GetObjectItem(t, "gb_s")->valuedouble - gbs) < 1e-9);
    /* The same totals grouped by hour: the buckets sum to them. */
    double bucket_billed = 0;
    cJSON_Delete(j);
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/usage?since=1d&group_by=hour", NULL, NULL, 0, &r),
        0);
    assert_int_equal(r.status, 200);
    j = cJSON_Parse(r.body);
    client_response_clear(&r);
    cJSON *f, *b;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(j, "functions"))
        cJSON_ArrayForEach(b, cJSON_GetObjectItem(f, "buckets")) bucket_billed +=
        cJSON_GetObjectItem(b, "billed_ms")->valuedouble;
    assert_int_equal((int64_t)bucket_billed, billed);
    cJSON_Delete(j);
}

static void test_usage_totals_equal_ledger(void **state)
{
    check_usage_matches_ledger();
    /* And the CLI prints it. */
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "usage", "--since", "1h", NULL), 0);
    assert_non_null(strstr(out, "acct-burn"));
    assert_non_null(strstr(out, "TOTAL"));
    free(out);
    free(err);
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/usage?group_by=week", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 400);
    client_response_clear(&r);
}

static void test_restart_keeps_ledger(void **state)
{
    assert_int_equal(harness_stop(&daemon_proc), 0);
    const char *args[] = {"--log-level", "debug", NULL};
    assert_int_equal(harness_restart(&daemon_proc, args), 0);
    check_usage_matches_ledger();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_burn_is_billed_its_cpu),
        cmocka_unit_test(test_sleep_is_billed_wall_not_cpu),
        cmocka_unit_test(test_allocation_is_its_peak),
        cmocka_unit_test(test_idle_warm_container_costs_nothing),
        cmocka_unit_test(test_oom_kill_is_recorded),
        cmocka_unit_test(test_async_retries_are_rows_per_attempt),
        cmocka_unit_test(test_record_shows_what_the_attempt_used),
        cmocka_unit_test(test_usage_by_version),
        cmocka_unit_test(test_usage_totals_equal_ledger),
        cmocka_unit_test(test_restart_keeps_ledger),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
