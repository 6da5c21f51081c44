/* The store's migrations: fresh databases, older ones migrated in order, newer ones refused,
 * a failing migration leaves the database as it was, and the migration that keys the usage
 * rollup by version keeps every figure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "records/store-internal.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-store-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    return 0;
}

static int teardown(void **state)
{
    return rm_rf(dir);
}

static const struct store_migration three[] = {
    {"one", "CREATE TABLE a (x INTEGER);"},
    {"two", "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);"},
    {"three", "ALTER TABLE a ADD COLUMN z TEXT DEFAULT 'three';"},
};

static int count(struct db *db, const char *sql)
{
    struct db_rows *st;
    int n = -1;
    assert_int_equal(db_query(db, sql, NULL, 0, &st, NULL), 0);
    if (db_next(st) > 0)
        n = (int)db_int(st, 0);
    db_rows_free(st);
    return n;
}

/* The database at path, as the store opens it (without migrating it). */
static struct db *open_db(void)
{
    struct db *db;
    struct ig_error err = {};
    assert_int_equal(db_open(path, DB_CREATE, &db, &err), 0);
    return db;
}

static int version(struct db *db)
{
    int v = -1;
    assert_int_equal(db_user_version(db, &v, NULL), 0);
    return v;
}

static void test_fresh_database_reaches_current(void **state)
{
    struct store *s;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(version(s->db), store_schema_version());
    assert_int_equal(count(s->db, "SELECT count(*) FROM meta WHERE key = 'created_at'"), 1);
    struct db_rows *st;
    assert_int_equal(db_query(s->db, "PRAGMA journal_mode", NULL, 0, &st, NULL), 0);
    assert_int_equal(db_next(st), 1);
    assert_string_equal(db_text(st, 0), "wal");
    db_rows_free(st);
    store_free(s);
    /* Opening again changes nothing. */
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM meta WHERE key = 'created_at'"), 1);
    store_free(s);
    unlink(path);
}

static void test_older_database_is_migrated_in_order(void **state)
{
    struct db *db = open_db();
    struct ig_error err = {};
    assert_int_equal(store_migrate(db, three, 1, &err), 0);
    assert_int_equal(version(db), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM a"), 0);
    /* A newer build with three migrations runs two and three, not one again. */
    assert_int_equal(store_migrate(db, three, 3, &err), 0);
    assert_int_equal(version(db), 3);
    assert_int_equal(count(db, "SELECT count(*) FROM a WHERE x = 2 AND z = 'three'"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM b"), 0);
    db_close(db);
    unlink(path);
}

static void test_real_migrations_from_version_zero(void **state)
{
    /* A database some earlier tool created, with data but no schema version. */
    struct db *db = open_db();
    assert_int_equal(db_exec_script(db, "CREATE TABLE unrelated (q);", NULL), 0);
    db_close(db);
    struct store *s;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM unrelated"), 0);
    store_free(s);
    unlink(path);
}

static void test_newer_database_is_refused(void **state)
{
    struct db *db = open_db();
    struct ig_error err = {};
    assert_int_equal(store_migrate(db, three, 3, &err), 0);
    assert_int_equal(store_migrate(db, three, 2, &err), -EPROTO);
    assert_non_null(strstr(err.message, "newer"));
    assert_non_null(strstr(err.message, "3"));
    db_close(db);

    db = open_db();
    assert_int_equal(db_set_user_version(db, 42, NULL), 0);
    db_close(db);
    struct store *s = NULL;
    ig_error_clear(&err);
    assert_int_equal(store_open(path, &s, &err), -EPROTO);
    assert_null(s);
    assert_non_null(strstr(err.message, "42"));
    assert_non_null(strstr(err.message, path));
    unlink(path);
}

static void test_failing_migration_rolls_back(void **state)
{
    static const struct store_migration broken[] = {
        {"one", "CREATE TABLE a (x INTEGER);"},
        {"broken", "CREATE TABLE c (y INTEGER); INSERT INTO nowhere VALUES (1);"},
    };
    struct db *db = open_db();
    struct ig_error err = {};
    assert_int_equal(store_migrate(db, broken, 2, &err), -EIO);
    assert_non_null(strstr(err.message, "broken"));
    assert_non_null(strstr(err.message, "nowhere"));
    assert_int_equal(version(db), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM sqlite_master WHERE name = 'c'"), 0);
    db_close(db);
    unlink(path);
}

static void exec(struct db *db, const char *sql)
{
    struct ig_error err = {};
    if (db_exec_script(db, sql, &err) < 0)
        fail_msg("%s", err.message);
}

/* A usage row of function fb at start_us, in version v, as the accountant writes it. */
#define USAGE_ROW(id, v, start_us, cpu_us)                                                         \
    "INSERT INTO usage (id, attempt, function, version, start_us, wall_us, cpu_us, "               \
    "mem_peak_bytes, peak_reset, memory_mb, billed_ms, gb_s, cold, init_us, status, oom_kills) "   \
    "VALUES ('" id "', 1, 'fb', " #v ", " #start_us ", 1000, " #cpu_us                             \
    ", 4096, 1, 128, 1, 0.000125, 0, 0, 'ok', 0);"

static void test_usage_rollup_gains_versions(void **state)
{
    size_t n, at = SIZE_MAX;
    const struct store_migration *list = store_migrations(&n);
    for (size_t i = 0; i < n; i++)
        if (streq(list[i].name, "usage_versions"))
            at = i;
    assert_true(at < n);
    struct db *db = open_db();
    struct ig_error err = {};
    assert_int_equal(store_migrate(db, list, at, &err), 0);
    /* Before: the trigger rolls rows up per function and minute. Minute 1795842000 (05:00) has
     * every row still (versions 1 and 2); minute 1795842060 (05:01) lost one of its two rows to
     * the rows' retention; minute 1795842120 (05:02) is a rollup whose rows are all gone. And
     * an invocation record as it was. */
    exec(db, USAGE_ROW("a", 1, 1795842000000000, 100));
    exec(db, USAGE_ROW("b", 2, 1795842001000000, 200));
    exec(db, USAGE_ROW("c", 2, 1795842002000000, 300));
    exec(db, USAGE_ROW("d", 2, 1795842060000000, 400));
    exec(db, USAGE_ROW("e", 2, 1795842061000000, 500));
    exec(db, USAGE_ROW("f", 3, 1795842120000000, 600));
    exec(db, "DELETE FROM usage WHERE id IN ('d', 'f');"
             "INSERT INTO invocations (id, function, version, async, status, max_retries, "
             "created_us, finished_us, billed_ms, cold, expires_us) VALUES ('old', 'fb', 1, 0, "
             "'succeeded', 0, 1, 2, 1, 0, 3);");
    assert_int_equal(store_migrate(db, list, at + 1, &err), 0);

    /* 05:00 split by version, exactly as the rows add up. */
    assert_int_equal(count(db, "SELECT count(*) FROM usage_minute WHERE minute = 1795842000"), 2);
    assert_int_equal(count(db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842000 AND "
                               "version = 1 AND invocations = 1"),
                     100);
    assert_int_equal(count(db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842000 AND "
                               "version = 2 AND invocations = 2"),
                     500);
    /* 05:01 and 05:02: whole, as version 0, with the figures they had (both rows of 05:01). */
    assert_int_equal(count(db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842060 AND "
                               "version = 0 AND invocations = 2"),
                     900);
    assert_int_equal(count(db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842120 AND "
                               "version = 0 AND invocations = 1"),
                     600);
    assert_int_equal(count(db, "SELECT count(*) FROM usage_minute"), 4);
    /* The trigger now keys by version too. */
    exec(db, USAGE_ROW("g", 2, 1795842003000000, 1000));
    exec(db, USAGE_ROW("h", 4, 1795842004000000, 2000));
    assert_int_equal(count(db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842000 AND "
                               "version = 2 AND invocations = 3"),
                     1500);
    assert_int_equal(count(db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842000 AND "
                               "version = 4"),
                     2000);
    /* A record from before has no usage figures: NULL, not 0. */
    assert_int_equal(count(db, "SELECT count(*) FROM invocations WHERE id = 'old' AND cpu_us IS "
                               "NULL AND mem_peak_bytes IS NULL AND init_us IS NULL"),
                     1);
    db_close(db);
    unlink(path);
}

static void test_garbage_file_is_refused(void **state)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a database, just text that is long enough to have a header......", f);
    fclose(f);
    struct store *s = NULL;
    struct ig_error err = {};
    assert_true(store_open(path, &s, &err) < 0);
    assert_null(s);
    assert_non_null(strstr(err.message, path));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_database_reaches_current),
        cmocka_unit_test(test_older_database_is_migrated_in_order),
        cmocka_unit_test(test_real_migrations_from_version_zero),
        cmocka_unit_test(test_newer_database_is_refused),
        cmocka_unit_test(test_failing_migration_rolls_back),
        cmocka_unit_test(test_usage_rollup_gains_versions),
        cmocka_unit_test(test_garbage_file_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
