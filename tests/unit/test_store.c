/* The store's migrations: fresh databases, older ones migrated in order, newer ones refused,
 * and a failing migration leaves the database as it was. */
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

static int count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int n = -1;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_fresh_database_reaches_current(void **state)
{
    struct store *s;
    struct ig_error err = {};
    int v;
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(store_get_version(s->db, &v), 0);
    assert_int_equal(v, store_schema_version());
    assert_int_equal(count(s->db, "SELECT count(*) FROM meta WHERE key = 'created_at'"), 1);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    store_free(s);
    /* Opening again changes nothing. */
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM meta WHERE key = 'created_at'"), 1);
    store_free(s);
    unlink(path);
}

static void test_older_database_is_migrated_in_order(void **state)
{
    sqlite3 *db;
    struct ig_error err = {};
    int v;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store_migrate(db, three, 1, &err), 0);
    assert_int_equal(store_get_version(db, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(count(db, "SELECT count(*) FROM a"), 0);
    /* A newer build with three migrations runs two and three, not one again. */
    assert_int_equal(store_migrate(db, three, 3, &err), 0);
    assert_int_equal(store_get_version(db, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(count(db, "SELECT count(*) FROM a WHERE x = 2 AND z = 'three'"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM b"), 0);
    sqlite3_close(db);
    unlink(path);
}

static void test_real_migrations_from_version_zero(void **state)
{
    /* A database some earlier tool created, with data but no schema version. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE unrelated (q);", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *s;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM unrelated"), 0);
    store_free(s);
    unlink(path);
}

static void test_newer_database_is_refused(void **state)
{
    sqlite3 *db;
    struct ig_error err = {};
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store_migrate(db, three, 3, &err), 0);
    assert_int_equal(store_migrate(db, three, 2, &err), -EPROTO);
    assert_non_null(strstr(err.message, "newer"));
    assert_non_null(strstr(err.message, "3"));
    sqlite3_close(db);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 42;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
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
    sqlite3 *db;
    struct ig_error err = {};
    int v;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(store_migrate(db, broken, 2, &err), -EIO);
    assert_non_null(strstr(err.message, "broken"));
    assert_non_null(strstr(err.message, "nowhere"));
    assert_int_equal(store_get_version(db, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(count(db, "SELECT count(*) FROM sqlite_master WHERE name = 'c'"), 0);
    sqlite3_close(db);
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
        cmocka_unit_test(test_garbage_file_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
