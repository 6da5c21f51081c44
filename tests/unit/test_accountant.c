/* The accountant's pure parts: billing arithmetic, the usage of an attempt from its two cgroup
 * readings, the REPORT line, query parsing, and the usage aggregation (the rollup trigger and
 * the /v1/usage query) on literal ledger rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "records/accountant.h"
#include "records/store-internal.h"

static void test_billed_ms_rounds_up(void **state)
{
    assert_int_equal(accountant_billed_ms(0), 0);
    assert_int_equal(accountant_billed_ms(1), 1);
    assert_int_equal(accountant_billed_ms(999), 1);
    assert_int_equal(accountant_billed_ms(1000), 1);
    assert_int_equal(accountant_billed_ms(1001), 2);
    assert_int_equal(accountant_billed_ms(200000), 200);
    assert_int_equal(accountant_billed_ms(300001), 301);
}

static void test_gb_s(void **state)
{
    /* 128 MB for 1 s = 0.125 GB-s; 1024 MB for 1 ms = 0.001 GB-s. */
    assert_true(fabs(accountant_gb_s(128, 1000) - 0.125) < 1e-15);
    assert_true(fabs(accountant_gb_s(1024, 1) - 0.001) < 1e-15);
    assert_true(accountant_gb_s(128, 0) == 0);
}

static void test_compute_deltas(void **state)
{
    struct acct_attempt a = {
        .handed_off = true,
        .begin_ok = true,
        .end_ok = true,
        .peak_reset = true,
        .memory_mb = 256,
        .init_us = 1500,
        .begin = {.cpu_usec = 1000000, .oom_kills = 2, .memory_peak_bytes = 5 << 20},
        .end = {.cpu_usec = 1200500, .oom_kills = 3, .memory_peak_bytes = 70 << 20},
    };
    struct acct_usage u;
    accountant_compute(&a, 250001, &u);
    assert_int_equal(u.wall_us, 250001);
    assert_int_equal(u.billed_ms, 251);
    assert_int_equal(u.cpu_us, 200500);
    assert_int_equal(u.oom_kills, 1);
    assert_int_equal(u.mem_peak_bytes, 70 << 20);
    assert_true(fabs(u.gb_s - 256.0 / 1024 * 0.251) < 1e-15);
    assert_int_equal(u.init_us, 1500); /* 1.5 ms */
    assert_true(u.peak_reset);

    /* A counter that went backwards counts as nothing, not as 2^64 - x. */
    a.end.cpu_usec = 10;
    a.end.oom_kills = 0;
    accountant_compute(&a, 1000, &u);
    assert_int_equal(u.cpu_us, 0);
    assert_int_equal(u.oom_kills, 0);

    /* A failed reading: wall time is still billed, the cgroup figures are 0. */
    a.end_ok = false;
    accountant_compute(&a, 1000, &u);
    assert_int_equal(u.billed_ms, 1);
    assert_int_equal(u.cpu_us, 0);
    assert_int_equal(u.mem_peak_bytes, 0);

    /* Never handed off (the container failed to start): nothing is billed. */
    struct acct_attempt none = {0};
    accountant_compute(&none, 123456, &u);
    assert_int_equal(u.wall_us, 0);
    assert_int_equal(u.billed_ms, 0);
    assert_true(u.gb_s == 0);
}

static void test_report_line(void **state)
{
    struct acct_usage u = {.wall_us = 2290,
                           .billed_ms = 3,
                           .cpu_us = 1520,
                           .memory_mb = 128,
                           .mem_peak_bytes = (38u << 20) + 1,
                           .init_us = 120500};
    char buf[512];
    /* The version that ran comes last: the fields before it keep their places. */
    accountant_report_line(buf, sizeof(buf), "abc", 7, &u);
    assert_string_equal(buf, "REPORT RequestId: abc\tDuration: 2.29 ms\tBilled Duration: 3 ms\t"
                             "CPU: 1.52 ms\tMemory Size: 128 MB\tMax Memory Used: 39 MB\t"
                             "Init Duration: 120.50 ms\tVersion: 7");
    /* Warm: no Init Duration, as Lambda prints it. */
    u.init_us = 0;
    u.mem_peak_bytes = 0;
    accountant_report_line(buf, sizeof(buf), "abc", 12, &u);
    assert_string_equal(buf, "REPORT RequestId: abc\tDuration: 2.29 ms\tBilled Duration: 3 ms\t"
                             "CPU: 1.52 ms\tMemory Size: 128 MB\tMax Memory Used: 0 MB\t"
                             "Version: 12");
    /* Truncation is safe. */
    char small[16];
    accountant_report_line(small, sizeof(small), "abc", 1, &u);
    assert_int_equal(strlen(small), 15);
}

static void test_parse_time_and_group(void **state)
{
    int64_t t;
    assert_int_equal(accountant_parse_time("1h", 100000, &t), 0);
    assert_int_equal(t, 100000 - 3600);
    assert_int_equal(accountant_parse_time("30m", 100000, &t), 0);
    assert_int_equal(t, 100000 - 1800);
    assert_int_equal(accountant_parse_time("7d", 1000000, &t), 0);
    assert_int_equal(t, 1000000 - 7 * 86400);
    assert_int_equal(accountant_parse_time("45s", 100, &t), 0);
    assert_int_equal(t, 55);
    assert_int_equal(accountant_parse_time("1764300000", 0, &t), 0);
    assert_int_equal(t, 1764300000);
    assert_int_equal(accountant_parse_time("2026-11-28T05:00:00Z", 0, &t), 0);
    assert_int_equal(t, 1795842000);
    assert_int_equal(accountant_parse_time("", 0, &t), -EINVAL);
    assert_int_equal(accountant_parse_time("1w", 0, &t), -EINVAL);
    assert_int_equal(accountant_parse_time("h", 0, &t), -EINVAL);
    assert_int_equal(accountant_parse_time("-1h", 0, &t), -EINVAL);
    assert_int_equal(accountant_parse_time("2026-11-28", 0, &t), -EINVAL);
    assert_int_equal(accountant_parse_time("1234567890123h", 0, &t), -EINVAL);

    enum acct_group g;
    assert_int_equal(accountant_parse_group("minute", &g), 0);
    assert_int_equal(g, ACCT_GROUP_MINUTE);
    assert_int_equal(accountant_parse_group("hour", &g), 0);
    assert_int_equal(g, ACCT_GROUP_HOUR);
    assert_int_equal(accountant_parse_group("day", &g), 0);
    assert_int_equal(g, ACCT_GROUP_DAY);
    assert_int_equal(accountant_parse_group("week", &g), -EINVAL);
}

/* ---- aggregation on literal rows ---- */

static char dir[64];

static struct db *ledger_with_rows(struct store **ret)
{
    char path[128];
    struct ig_error err = {};
    strcpy(dir, "/tmp/ignis-acct-test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    assert_int_equal(store_open(path, ret, &err), 0);
    struct db *db = (*ret)->db;
    /* Minute 1795842000 = 2026-11-28T05:00:00Z. Times in µs. */
    static const char rows[] =
        "INSERT INTO usage (id, attempt, function, version, start_us, wall_us, cpu_us, "
        "mem_peak_bytes, peak_reset, memory_mb, billed_ms, gb_s, cold, init_us, status, "
        "oom_kills) VALUES "
        /* fa, 05:00: two attempts, one of them cold */
        "('a', 1, 'fa', 1, 1795842000000000, 200500, 200000, 10000000, 1, 128, 201, 0.025125, "
        "1, 80000, 'ok', 0),"
        "('b', 1, 'fa', 1, 1795842059999999, 1000, 500, 12000000, 1, 128, 1, 0.000125, 0, 0, "
        "'error', 0),"
        /* fa, 05:01 and 06:30 */
        "('c', 1, 'fa', 1, 1795842060000000, 3000, 1000, 9000000, 1, 128, 3, 0.000375, 0, 0, "
        "'ok', 0),"
        "('d', 1, 'fa', 2, 1795847400000000, 10000, 9000, 30000000, 1, 256, 10, 0.0025, 0, 0, "
        "'oom', 1),"
        /* fb, 05:00; and an earlier attempt of the same invocation */
        "('e', 1, 'fb', 1, 1795842010000000, 300000, 1000, 50000000, 1, 1024, 300, 0.3, 1, "
        "100000, 'timeout', 0),"
        "('e', 2, 'fb', 1, 1795842020000000, 5000, 4000, 40000000, 1, 1024, 5, 0.005, 0, 0, "
        "'ok', 0),"
        /* the next day: outside the query below */
        "('f', 1, 'fb', 1, 1795928400000000, 1000, 1000, 1000, 1, 1024, 1, 0.001, 0, 0, 'ok', "
        "0);"
        /* The same attempt again is ignored, and so is its rollup. */
        "INSERT OR IGNORE INTO usage (id, attempt, function, version, start_us, wall_us, cpu_us, "
        "mem_peak_bytes, peak_reset, memory_mb, billed_ms, gb_s, cold, init_us, status, "
        "oom_kills) VALUES ('a', 1, 'fa', 1, 1795842000000000, 1, 1, 1, 1, 128, 1, 0.0, 0, 0, "
        "'ok', 0);";
    if (db_exec_script(db, rows, &err) < 0)
        fail_msg("%s", err.message);
    return db;
}

static double fig(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const cJSON *function_at(const cJSON *root, int i, const char *name)
{
    const cJSON *f = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "functions"), i);
    assert_non_null(f);
    assert_string_equal(cJSON_GetObjectItem(f, "function")->valuestring, name);
    return f;
}

static void test_rollup_and_query(void **state)
{
    struct store *s;
    struct db *db = ledger_with_rows(&s);
    cJSON *root;

    /* 05:00 until 07:00, ungrouped: per function and totals. */
    struct acct_query q = {.since_s = 1795842000, .until_s = 1795849200};
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "functions")), 2);
    const cJSON *fa = function_at(root, 0, "fa"), *fb = function_at(root, 1, "fb");
    assert_int_equal(fig(fa, "invocations"), 4);
    assert_int_equal(fig(fa, "errors"), 2);
    assert_int_equal(fig(fa, "cold_starts"), 1);
    assert_int_equal(fig(fa, "oom_kills"), 1);
    assert_int_equal(fig(fa, "billed_ms"), 215);
    assert_true(fabs(fig(fa, "cpu_ms") - 210.5) < 1e-9);
    assert_true(fabs(fig(fa, "wall_ms") - 214.5) < 1e-9);
    assert_true(fabs(fig(fa, "gb_s") - (0.025125 + 0.000125 + 0.000375 + 0.0025)) < 1e-12);
    assert_int_equal(fig(fa, "peak_memory_bytes"), 30000000);
    assert_true(fabs(fig(fa, "init_ms") - 80) < 1e-9);
    assert_null(cJSON_GetObjectItem(fa, "buckets"));
    assert_int_equal(fig(fb, "invocations"), 2);
    assert_int_equal(fig(fb, "errors"), 1);
    assert_int_equal(fig(fb, "billed_ms"), 305);
    assert_true(fabs(fig(fb, "gb_s") - 0.305) < 1e-12);
    assert_int_equal(fig(fb, "peak_memory_bytes"), 50000000);
    const cJSON *t = cJSON_GetObjectItem(root, "totals");
    assert_int_equal(fig(t, "invocations"), 6);
    assert_int_equal(fig(t, "errors"), 3);
    assert_int_equal(fig(t, "billed_ms"), 520);
    assert_int_equal(fig(t, "peak_memory_bytes"), 50000000);
    assert_string_equal(cJSON_GetObjectItem(root, "since")->valuestring, "2026-11-28T05:00:00Z");
    assert_null(cJSON_GetObjectItem(fa, "versions"));
    cJSON_Delete(root);

    /* By version: fa ran 1 (three attempts) and 2 (one); the function's figures are unchanged. */
    q.by_version = true;
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    fa = function_at(root, 0, "fa");
    assert_int_equal(fig(fa, "invocations"), 4);
    const cJSON *v = cJSON_GetObjectItem(fa, "versions");
    assert_int_equal(cJSON_GetArraySize(v), 2);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 0), "version"), 1);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 0), "invocations"), 3);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 0), "billed_ms"), 205);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 0), "peak_memory_bytes"), 12000000);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 1), "version"), 2);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 1), "invocations"), 1);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 1), "oom_kills"), 1);
    v = cJSON_GetObjectItem(function_at(root, 1, "fb"), "versions");
    assert_int_equal(cJSON_GetArraySize(v), 1);
    assert_int_equal(fig(cJSON_GetArrayItem(v, 0), "invocations"), 2);
    assert_int_equal(fig(cJSON_GetObjectItem(root, "totals"), "invocations"), 6);
    cJSON_Delete(root);
    q.by_version = false;

    /* By minute, one function: 05:00, 05:01, 06:30. */
    q.function = "fa";
    q.group = ACCT_GROUP_MINUTE;
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "functions")), 1);
    fa = function_at(root, 0, "fa");
    const cJSON *b = cJSON_GetObjectItem(fa, "buckets");
    assert_int_equal(cJSON_GetArraySize(b), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(b, 0), "start")->valuestring,
                        "2026-11-28T05:00:00Z");
    assert_int_equal(fig(cJSON_GetArrayItem(b, 0), "invocations"), 2);
    assert_int_equal(fig(cJSON_GetArrayItem(b, 0), "billed_ms"), 202);
    assert_int_equal(fig(cJSON_GetArrayItem(b, 0), "peak_memory_bytes"), 12000000);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(b, 1), "start")->valuestring,
                        "2026-11-28T05:01:00Z");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(b, 2), "start")->valuestring,
                        "2026-11-28T06:30:00Z");
    assert_string_equal(cJSON_GetObjectItem(root, "group_by")->valuestring, "minute");
    cJSON_Delete(root);

    /* By hour: 05:00 (3) and 06:00 (1). */
    q.group = ACCT_GROUP_HOUR;
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    b = cJSON_GetObjectItem(function_at(root, 0, "fa"), "buckets");
    assert_int_equal(cJSON_GetArraySize(b), 2);
    assert_int_equal(fig(cJSON_GetArrayItem(b, 0), "invocations"), 3);
    assert_int_equal(fig(cJSON_GetArrayItem(b, 1), "invocations"), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(b, 1), "start")->valuestring,
                        "2026-11-28T06:00:00Z");
    cJSON_Delete(root);

    /* By day over two days, every function: fb has a bucket on each day. */
    q = (struct acct_query){
        .since_s = 1795842000, .until_s = 1795842000 + 2 * 86400, .group = ACCT_GROUP_DAY};
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    b = cJSON_GetObjectItem(function_at(root, 1, "fb"), "buckets");
    assert_int_equal(cJSON_GetArraySize(b), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(b, 0), "start")->valuestring,
                        "2026-11-28T00:00:00Z");
    assert_int_equal(fig(cJSON_GetObjectItem(root, "totals"), "invocations"), 7);
    cJSON_Delete(root);

    /* since is rounded down to its minute; an empty range has zero totals. */
    q = (struct acct_query){.since_s = 1795842059, .until_s = 1795842060};
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    assert_int_equal(fig(cJSON_GetObjectItem(root, "totals"), "invocations"), 4);
    cJSON_Delete(root);
    q = (struct acct_query){.since_s = 0, .until_s = 60};
    assert_int_equal(accountant_query(s, &q, &root, NULL), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "functions")), 0);
    assert_int_equal(fig(cJSON_GetObjectItem(root, "totals"), "invocations"), 0);
    cJSON_Delete(root);

    /* The rollups equal the rows, whatever the grouping. */
    struct db_rows *st;
    assert_int_equal(db_query(db,
                              "SELECT (SELECT sum(billed_ms) FROM usage) = "
                              "(SELECT sum(billed_ms) FROM usage_minute), "
                              "(SELECT sum(cpu_us) FROM usage) = "
                              "(SELECT sum(cpu_us) FROM usage_minute)",
                              NULL, 0, &st, NULL),
                     0);
    assert_int_equal(db_next(st), 1);
    assert_int_equal(db_int(st, 0), 1);
    assert_int_equal(db_int(st, 1), 1);
    db_rows_free(st);

    /* Retention: rows before 05:01 go, rollups before 06:00 go; the rest stays. */
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    char path[128];
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    assert_int_equal(accountant_purge(j, 1795842060000000, 1795845600000000), 0);
    journal_free(j); /* commits what is queued */
    loop_free(l);
    assert_int_equal(db_query(db,
                              "SELECT (SELECT count(*) FROM usage), "
                              "(SELECT count(*) FROM usage_minute)",
                              NULL, 0, &st, NULL),
                     0);
    assert_int_equal(db_next(st), 1);
    assert_int_equal(db_int(st, 0), 3); /* c, d, f */
    assert_int_equal(db_int(st, 1), 2); /* fa 06:30, fb next day */
    db_rows_free(st);

    store_free(s);
    rm_rf(dir);
}

/* The row holds the attempt's figures exactly: the invocation's record and the REPORT line are
 * made from the same acct_usage, so they must not drift from it on the way in. */
static void test_record_writes_usage_exactly(void **state)
{
    char path[128];
    struct store *s;
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    strcpy(dir, "/tmp/ignis-acct-test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    /* 1001 µs: as a double of ms times 1000, this was 1000.9999… and became 1000. */
    struct acct_usage u = {.wall_us = 5000,
                           .billed_ms = 5,
                           .cpu_us = 4321,
                           .mem_peak_bytes = 9003008,
                           .memory_mb = 128,
                           .init_us = 1001};
    assert_int_equal(accountant_record(j, &(struct acct_record){.id = "x",
                                                                .attempt = 1,
                                                                .function = "fa",
                                                                .version = 3,
                                                                .start_wall_us = 1795842000000000,
                                                                .status = "ok",
                                                                .cold = true,
                                                                .usage = &u}),
                     0);
    journal_free(j); /* commits what is queued */
    loop_free(l);
    struct db_rows *st;
    assert_int_equal(db_query(s->db,
                              "SELECT init_us, cpu_us, mem_peak_bytes, version FROM "
                              "usage WHERE id = 'x'",
                              NULL, 0, &st, NULL),
                     0);
    assert_int_equal(db_next(st), 1);
    assert_int_equal(db_int(st, 0), 1001);
    assert_int_equal(db_int(st, 1), 4321);
    assert_int_equal(db_int(st, 2), 9003008);
    assert_int_equal(db_int(st, 3), 3);
    db_rows_free(st);
    store_free(s);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_billed_ms_rounds_up),
        cmocka_unit_test(test_gb_s),
        cmocka_unit_test(test_compute_deltas),
        cmocka_unit_test(test_report_line),
        cmocka_unit_test(test_parse_time_and_group),
        cmocka_unit_test(test_rollup_and_query),
        cmocka_unit_test(test_record_writes_usage_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
