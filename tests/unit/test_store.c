/* The store's migrations, on each engine (SQLite; with the argument `postgresql`, a database of
 * the tests' own PostgreSQL 15 each): fresh databases reach the current version, older ones are
 * migrated in order, newer ones refused, a failing migration leaves the database as it was, hosts
 * migrating one database at once migrate it once, and the usage rollup's trigger sums what it
 * should. On SQLite, the migration that keys the usage rollup by version keeps every figure; on
 * PostgreSQL, the baseline's schema is SQLite's at the same version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <pthread.h>

#include "groups.h"
#include "pgserver.h"
#include "records/accountant.h"
#include "records/invocation.h"
#include "records/journal.h"
#include "records/bundles_store.h"
#include "records/hosts_store.h"
#include "records/store-internal.h"

static char dir[64];
/* The test's database: a SQLite file, or a PostgreSQL conninfo (srv not NULL). */
static char path[256];
static struct pgserver *srv;

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-store-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return 0;
}

static int setup_pg(void **state)
{
    return setup(state) < 0 ? -1 : pgserver_new(&srv);
}

static int teardown(void **state)
{
    int r = pgserver_free(srv);
    return rm_rf(dir) < 0 ? -1 : r;
}

/* Each test's own new database. */
static int fresh(void **state)
{
    if (!srv) {
        snprintf(path, sizeof(path), "%s/ignis.db", dir);
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
    }
    _cleanup_free_ char *conninfo = NULL;
    if (pgserver_new_database(srv, &conninfo) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s", conninfo);
    return 0;
}

static const struct store_migration three[] = {
    {"one", "CREATE TABLE a (x INTEGER);", NULL},
    {"two", "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);", NULL},
    {"three", "ALTER TABLE a ADD COLUMN z TEXT DEFAULT 'three';", NULL},
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
    if (!srv) {
        struct db_rows *st;
        assert_int_equal(db_query(s->db, "PRAGMA journal_mode", NULL, 0, &st, NULL), 0);
        assert_int_equal(db_next(st), 1);
        assert_string_equal(db_text(st, 0), "wal");
        db_rows_free(st);
    }
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
    assert_int_equal(db_exec_script(db, "CREATE TABLE unrelated (q INTEGER);", NULL), 0);
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
    /* Named: the file, or (a conninfo may hold a password) the engine. */
    assert_non_null(strstr(err.message, srv ? "the PostgreSQL store" : path));
    unlink(path);
}

static void test_failing_migration_rolls_back(void **state)
{
    static const struct store_migration broken[] = {
        {"one", "CREATE TABLE a (x INTEGER);", NULL},
        {"broken", "CREATE TABLE c (y INTEGER); INSERT INTO nowhere VALUES (1);", NULL},
    };
    struct db *db = open_db();
    struct ig_error err = {};
    assert_int_equal(store_migrate(db, broken, 2, &err), -EIO);
    assert_non_null(strstr(err.message, "broken"));
    assert_non_null(strstr(err.message, "nowhere"));
    assert_int_equal(version(db), 1);
    assert_int_equal(count(db, srv ? "SELECT count(*) FROM pg_class WHERE relname = 'c'"
                                   : "SELECT count(*) FROM sqlite_master WHERE name = 'c'"),
                     0);
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

/* The rollup's trigger, on either engine: per function, version and minute, a count, errors,
 * cold starts, OOM kills, sums and the highest memory peak. */
static void test_usage_rollup(void **state)
{
    struct store *s;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    exec(s->db, USAGE_ROW("a", 1, 1795842000000000, 100));
    exec(s->db, USAGE_ROW("b", 1, 1795842030000000, 200));
    exec(s->db, USAGE_ROW("c", 2, 1795842059000000, 300));
    exec(s->db, USAGE_ROW("d", 1, 1795842060000000, 400));
    exec(s->db, "INSERT INTO usage (id, attempt, function, version, start_us, wall_us, cpu_us, "
                "mem_peak_bytes, peak_reset, memory_mb, billed_ms, gb_s, cold, init_us, status, "
                "oom_kills) VALUES ('e', 2, 'fb', 1, 1795842001000000, 5000, 50, 999999, 1, 256, "
                "7, 0.00175, 1, 300, 'error', 1);");
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage_minute"), 3);
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage_minute WHERE minute = 1795842000 "
                                  "AND version = 1 AND invocations = 3 AND errors = 1 AND "
                                  "cold_starts = 1 AND oom_kills = 1 AND wall_us = 7000 AND "
                                  "cpu_us = 350 AND billed_ms = 9 AND mb_ms = 2048 AND "
                                  "mem_peak_bytes = 999999 AND init_us = 300"),
                     1);
    assert_int_equal(count(s->db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842000 AND "
                                  "version = 2 AND invocations = 1 AND errors = 0"),
                     300);
    assert_int_equal(count(s->db, "SELECT cpu_us FROM usage_minute WHERE minute = 1795842060"),
                     400);

    /* Two hosts' attempts in one (function, version, minute): a rollup row each, so that hosts
     * never wait for each other's row lock; the usage report sums them. */
    exec(s->db, "INSERT INTO usage (id, attempt, function, version, start_us, wall_us, cpu_us, "
                "mem_peak_bytes, peak_reset, memory_mb, billed_ms, gb_s, cold, init_us, status, "
                "oom_kills, host) VALUES ('h1', 1, 'fh', 1, 1795842000000000, 10, 5, 1, 1, 128, "
                "1, 0.000125, 0, 0, 'ok', 0, 'host-a'), ('h2', 1, 'fh', 1, 1795842001000000, 10, "
                "7, 1, 1, 128, 1, 0.000125, 0, 0, 'ok', 0, 'host-b'), ('h3', 1, 'fh', 1, "
                "1795842002000000, 10, 11, 1, 1, 128, 1, 0.000125, 0, 0, 'ok', 0, 'host-a');");
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage_minute WHERE function = 'fh'"), 2);
    assert_int_equal(count(s->db, "SELECT cpu_us FROM usage_minute WHERE function = 'fh' AND "
                                  "host = 'host-a' AND invocations = 2"),
                     16);
    struct acct_query q = {.since_s = 1795842000, .until_s = 1795842060, .function = "fh"};
    cJSON *report = NULL;
    assert_int_equal(accountant_query(s, &q, &report, &err), 0);
    const cJSON *fn = cJSON_GetArrayItem(cJSON_GetObjectItem(report, "functions"), 0);
    assert_non_null(fn);
    assert_int_equal(cJSON_GetObjectItem(fn, "invocations")->valueint, 3);
    cJSON_Delete(report);
    store_free(s);
}

static void *open_store(void *arg)
{
    struct store *s;
    struct ig_error *err = arg;
    if (store_open(path, &s, err) == 0)
        store_free(s);
    return NULL;
}

/* Hosts starting together on one new database: both open it, and it was migrated once (one
 * created_at; a second run of the first migration would fail on its table). */
static void test_hosts_migrate_together(void **state)
{
    pthread_t threads[2];
    struct ig_error errs[2] = {};
    for (size_t i = 0; i < ARRAY_SIZE(threads); i++)
        assert_int_equal(pthread_create(&threads[i], NULL, open_store, &errs[i]), 0);
    for (size_t i = 0; i < ARRAY_SIZE(threads); i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (size_t i = 0; i < ARRAY_SIZE(errs); i++)
        if (errs[i].code)
            fail_msg("host %zu: %s", i, errs[i].message);
    struct db *db = open_db();
    assert_int_equal(version(db), store_schema_version());
    assert_int_equal(count(db, "SELECT count(*) FROM meta WHERE key = 'created_at'"), 1);
    db_close(db);
}

/* A schema, table by table, one line each: "table: column type notnull pk, ...", then its
 * indexes and triggers by name; types as SQLite declares them (PostgreSQL's mapped back). */
static char *schema(struct db *db)
{
    static const char sqlite_sql[] =
        "SELECT m.name, group_concat(c.name || ' ' || lower(c.type) || ' ' || "
        "(c.\"notnull\" OR c.pk > 0) || ' ' || c.pk, ', ') FROM sqlite_master m, "
        "pragma_table_info(m.name) c "
        "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' GROUP BY m.name "
        "UNION ALL SELECT m.tbl_name, m.type || ' ' || m.name FROM sqlite_master m "
        "WHERE m.type IN ('index', 'trigger') AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2";
    static const char pg_sql[] =
        "SELECT c.table_name, string_agg(c.column_name || ' ' || CASE c.data_type "
        "  WHEN 'bigint' THEN 'integer' WHEN 'bytea' THEN 'blob' WHEN 'double precision' "
        "  THEN 'real' ELSE c.data_type END || ' ' || (c.is_nullable = 'NO')::int || ' ' || "
        "  coalesce(k.ordinal_position, 0), ', ' ORDER BY c.ordinal_position) "
        "FROM information_schema.columns c LEFT JOIN ("
        "  SELECT u.table_name, u.column_name, u.ordinal_position "
        "  FROM information_schema.table_constraints t "
        "  JOIN information_schema.key_column_usage u ON u.constraint_name = t.constraint_name "
        "  WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = 'public') k "
        "  ON k.table_name = c.table_name AND k.column_name = c.column_name "
        "WHERE c.table_schema = 'public' GROUP BY c.table_name "
        "UNION ALL SELECT tablename, 'index ' || indexname FROM pg_indexes "
        "WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' "
        "UNION ALL SELECT event_object_table, 'trigger ' || trigger_name "
        "FROM information_schema.triggers WHERE trigger_schema = 'public' ORDER BY 1, 2";
    struct db_rows *rows;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    assert_int_equal(db_query(db, srv ? pg_sql : sqlite_sql, NULL, 0, &rows, NULL), 0);
    while (db_next(rows) == 1)
        fprintf(f, "%s: %s\n", db_text(rows, 0), db_text(rows, 1));
    db_rows_free(rows);
    fclose(f);
    return out;
}

/* PostgreSQL's baseline is SQLite's schema at the same version: tables, columns in order, their
 * types, NOT NULL and primary keys, indexes and the trigger. A primary key column counts as NOT
 * NULL on SQLite too: its STRICT tables refuse NULL there, and an INTEGER PRIMARY KEY (the
 * AUTOINCREMENT seq, an identity on PostgreSQL) is never NULL. */
static void test_baseline_is_sqlite_schema(void **state)
{
    struct store *pg_store, *lite;
    struct ig_error err = {};
    char lite_path[128];
    snprintf(lite_path, sizeof(lite_path), "%s/sqlite.db", dir);
    assert_int_equal(store_open(path, &pg_store, &err), 0);
    assert_int_equal(store_open(lite_path, &lite, &err), 0);
    _cleanup_free_ char *want = NULL, *got = NULL;
    struct pgserver *keep = TAKE_PTR(srv); /* schema() reads SQLite's */
    want = schema(lite->db);
    srv = keep;
    got = schema(pg_store->db);
    if (!streq(got, want)) {
        /* Printed whole: cmocka cuts its messages short. */
        fprintf(stderr, "---- PostgreSQL\n%s---- SQLite\n%s----\n", got, want);
        fail_msg("the schemas differ");
    }
    store_free(lite);
    store_free(pg_store);
}

/* ---- the async queue shared by hosts (records/invocation.c) ---- */

static int64_t claimed_attempts[8];
static char claimed_ids[8][INV_ID_LEN + 1];
static int nclaimed;

static int on_claimed(struct inv_record *r, void *userdata)
{
    assert_string_equal(r->function, "f");
    assert_int_equal(r->status, INV_RUNNING);
    assert_non_null(r->payload);
    claimed_attempts[nclaimed] = r->attempts;
    strcpy(claimed_ids[nclaimed++], r->id);
    return 0;
}

static int claim(struct store *s, int limit, const char *owner, int64_t now_us)
{
    nclaimed = 0;
    return inv_store_claim(s, "f", limit, owner, now_us, 1000, on_claimed, NULL);
}

static void queued_row(struct db *db, const char *id, int64_t created_us)
{
    const struct db_value v[] = {DV_S(id), DV_I(created_us), DV_B("{}", 2)};
    struct ig_error err = {};
    int r = db_exec(db,
                    "INSERT INTO invocations (id, function, version, async, status, "
                    "payload, attempts, max_retries, created_us, expires_us) VALUES ($1, "
                    "'f', 1, 1, 'queued', $3, 0, 2, $2, 99999999)",
                    v, ARRAY_SIZE(v), &err);
    if (r != 1)
        fail_msg("%s", err.message);
}

/* The store, a loop and a journal on it, as the daemon has them: opened, and closed. */
static void open_writer(struct store **s, struct loop **l, struct journal **j)
{
    struct ig_error err = {};
    if (store_open(path, s, &err) < 0 || loop_new(l) < 0 || journal_new(*l, path, j, &err) < 0)
        fail_msg("opening the store and its journal: %s", err.message);
}

static void close_writer(struct store *s, struct loop *l, struct journal *j)
{
    journal_free(j);
    loop_free(l);
    store_free(s);
}

static int finish_result;

static void on_finished(struct loop *l, int result, const char *message, void *userdata)
{
    finish_result = result;
    loop_quit(l);
}

/* What the tests' attempts used, and an attempt's ledger row: function f, version 1, minute 60,
 * ok, run by host. */
static const struct acct_usage used = {
    .wall_us = 1500, .cpu_us = 700, .billed_ms = 2, .memory_mb = 128};

static struct acct_record bill_of(const char *id, int attempt, const char *host)
{
    return (struct acct_record){.id = id,
                                .attempt = attempt,
                                .function = "f",
                                .version = 1,
                                .start_wall_us = 60 * 1000000,
                                .status = "ok",
                                .host = host,
                                .usage = &used};
}

/* owner's finish of id's attempt under its lease, with the attempt's ledger row when billed:
 * the rows it changed (0: fenced off). */
static int finish_billed(struct journal *j, struct loop *l, const char *id, int attempts,
                         const char *owner, bool billed)
{
    struct inv_record r = {.function = "f",
                           .async = true,
                           .status = INV_SUCCEEDED,
                           .attempts = attempts,
                           .finished_us = 5};
    strcpy(r.id, id);
    const struct acct_record bill = bill_of(id, attempts, owner);
    finish_result = -1;
    assert_int_equal(inv_store_finish(j, &r, 100, owner, billed ? &bill : NULL, on_finished, NULL),
                     0);
    loop_run(l);
    return finish_result;
}

static int finish_as(struct journal *j, struct loop *l, const char *id, int attempts,
                     const char *owner)
{
    return finish_billed(j, l, id, attempts, owner, false);
}

/* owner's hand-back of id's attempt: the rows it changed (0: fenced off). */
static int hand_back(struct journal *j, struct loop *l, const char *id, int attempts,
                     const char *owner)
{
    finish_result = -1;
    assert_int_equal(inv_store_hand_back(j, id, owner, attempts, on_finished, NULL), 0);
    loop_run(l);
    return finish_result;
}

static int64_t col(struct db *db, const char *column, const char *id)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT %s FROM invocations WHERE id = $1", column);
    const struct db_value v[] = {DV_S(id)};
    struct db_rows *rows;
    assert_int_equal(db_query(db, sql, v, 1, &rows, NULL), 0);
    assert_int_equal(db_next(rows), 1);
    int64_t n = db_int(rows, 0);
    db_rows_free(rows);
    return n;
}

/* Claims take the oldest due rows once each, under the claimer's lease, counting the attempt; a
 * finish is written only by the lease's holder for that attempt: once a lease ran out and another
 * host claimed the row, the first host's late result changes nothing, and the second's counts. */
static void test_queue_claims_and_fencing(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    open_writer(&s, &l, &j);
    queued_row(s->db, "inv-1", 1);
    queued_row(s->db, "inv-2", 2);
    queued_row(s->db, "inv-3", 3);

    assert_int_equal(claim(s, 2, "host-a", 100), 2);
    assert_int_equal(claim(s, 2, "host-b", 100), 1);
    assert_string_equal(claimed_ids[0], "inv-3");
    assert_int_equal(claimed_attempts[0], 1);
    assert_int_equal(claim(s, 2, "host-b", 100), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE lease_owner = "
                                  "'host-a' AND status = 'running' AND lease_until = 1100"),
                     2);

    /* host-a's lease on inv-1 runs out; host-b claims it again (attempt 2). */
    assert_int_equal(inv_store_requeue(s, NULL, 1050), 0);
    assert_int_equal(inv_store_requeue(s, NULL, 1101), 3);
    assert_int_equal(claim(s, 1, "host-b", 2000), 1);
    assert_string_equal(claimed_ids[0], "inv-1");
    assert_int_equal(claimed_attempts[0], 2);
    assert_int_equal(finish_as(j, l, "inv-1", 1, "host-a"), 0); /* late: dropped */
    assert_int_equal(col(s->db, "attempts", "inv-1"), 2);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE id = 'inv-1' AND "
                                  "status = 'running' AND lease_owner = 'host-b'"),
                     1);
    assert_int_equal(finish_as(j, l, "inv-1", 2, "host-a"), 0); /* not its lease */
    assert_int_equal(finish_as(j, l, "inv-1", 2, "host-b"), 1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE id = 'inv-1' AND "
                                  "status = 'succeeded' AND lease_owner IS NULL"),
                     1);
    assert_int_equal(finish_as(j, l, "inv-1", 2, "host-b"), 0); /* once */

    /* A host's own rows, requeued at its restart, are claimed afresh. */
    assert_int_equal(claim(s, 2, "host-a", 3000), 2);
    assert_int_equal(inv_store_requeue(s, "host-a", 0), 2);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE status = 'queued' AND "
                                  "lease_owner IS NULL AND attempts = 2"),
                     2);

    /* A stopping host hands back what it claimed and did not start: queued, the attempt undone,
     * fenced like a finish; the next claim counts that attempt again. */
    assert_int_equal(claim(s, 1, "host-a", 4000), 1);
    char held[INV_ID_LEN + 1];
    strcpy(held, claimed_ids[0]);
    assert_int_equal(hand_back(j, l, held, 3, "host-b"), 0); /* not its lease */
    assert_int_equal(hand_back(j, l, held, 2, "host-a"), 0); /* not that attempt */
    assert_int_equal(hand_back(j, l, held, 3, "host-a"), 1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE status = 'queued' AND "
                                  "lease_owner IS NULL AND lease_until IS NULL AND attempts = 2"),
                     2);
    assert_int_equal(hand_back(j, l, held, 3, "host-a"), 0); /* once */
    assert_int_equal(claim(s, 2, "host-b", 5000), 2);
    assert_int_equal(claimed_attempts[0], 3);
    close_writer(s, l, j);
}

/* An attempt's ledger row goes with its outcome (in the same batch), fenced or not: a host whose
 * lease was taken over still bills the attempt it ran, once, and its outcome is dropped; the next
 * holder's attempt has a number, and a row, of its own. The claim is the attempt's start as the
 * store sees it. */
static void test_queue_finish_bills_each_attempt_once(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    open_writer(&s, &l, &j);
    queued_row(s->db, "inv-1", 1);
    assert_int_equal(claim(s, 1, "host-a", 100), 1);
    assert_int_equal(col(s->db, "started_us", "inv-1"), 100);
    assert_int_equal(inv_store_requeue(s, NULL, 1101), 1);
    assert_int_equal(claim(s, 1, "host-b", 2000), 1);

    for (int i = 0; i < 2; i++) /* late, and again (a record retried) */
        assert_int_equal(finish_billed(j, l, "inv-1", 1, "host-a", true), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE id = 'inv-1' AND "
                                  "status = 'running' AND lease_owner = 'host-b' AND attempts = 2"),
                     1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage WHERE id = 'inv-1' AND attempt = 1 "
                                  "AND host = 'host-a' AND cpu_us = 700"),
                     1);

    for (int i = 0; i < 2; i++)
        assert_int_equal(finish_billed(j, l, "inv-1", 2, "host-b", true), i == 0 ? 1 : 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE id = 'inv-1' AND "
                                  "status = 'succeeded' AND lease_owner IS NULL"),
                     1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage WHERE id = 'inv-1'"), 2);
    assert_int_equal(count(s->db, "SELECT sum(invocations) FROM usage_minute"), 2);
    close_writer(s, l, j);
}

static int inserted;

static void on_inserted(struct loop *l, int result, const char *message, void *userdata)
{
    inserted = result;
    loop_quit(l);
}

/* A sync invocation's record with its ledger row (inv_store_insert's bill): both written, the
 * minute's rollup counting it, its result's bytes as they were (on PostgreSQL through an array
 * literal: quotes, backslashes, a NUL, high bytes); the same record submitted again (a write
 * retried) changes neither, and bills nothing twice. */
static void test_sync_record_with_its_bill(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    open_writer(&s, &l, &j);
    struct inv_record r = {.function = "f",
                           .status = INV_SUCCEEDED,
                           .attempts = 1,
                           .created_us = 60 * 1000000,
                           .finished_us = 61 * 1000000};
    strcpy(r.id, "sync-1");
    static const char result[] = "{\"a\": \"\\\"\\\\\"}\0\xff\x01,{}";
    r.result = (char *)result;
    r.result_len = sizeof(result) - 1;
    const struct acct_record bill = bill_of(r.id, 1, "host-a");
    for (int i = 0; i < 2; i++) {
        inserted = -1;
        assert_int_equal(inv_store_insert(j, &r, 100, &bill, on_inserted, NULL), 0);
        loop_run(l);
        assert_int_equal(inserted, 0);
    }
    struct inv_record got = {};
    assert_int_equal(inv_store_get(s, "sync-1", &got), 0);
    assert_int_equal(got.result_len, sizeof(result) - 1);
    assert_memory_equal(got.result, result, sizeof(result) - 1);
    inv_record_clear(&got);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE id = 'sync-1' AND "
                                  "status = 'succeeded' AND async = 0"),
                     1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage WHERE id = 'sync-1' AND "
                                  "attempt = 1 AND cpu_us = 700 AND host = 'host-a'"),
                     1);
    assert_int_equal(count(s->db, "SELECT sum(invocations) FROM usage_minute WHERE function = "
                                  "'f' AND minute = 60"),
                     1);
    close_writer(s, l, j);
}

static int row_results[4], rows_pending;

static void on_row(struct loop *l, int result, const char *message, void *userdata)
{
    row_results[(intptr_t)userdata] = result;
    if (--rows_pending == 0)
        loop_quit(l);
}

static const struct journal_rows t_rows = {
    "INSERT INTO t (k, n, d) VALUES ($1, $2, $3) ON CONFLICT (k) DO NOTHING",
    "INSERT INTO t (k, n, d) SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[]) "
    "ON CONFLICT (k) DO NOTHING",
    3,
};

/* journal_submit_row: a batch's rows of one kind, on PostgreSQL in one statement (a statement
 * trigger counts them there), with text that needs quoting in an array, NULLs and doubles kept
 * exactly, a key met twice written once (blobs: test_sync_record_with_its_bill). Should one row
 * fail, the batch runs statement by statement: that row alone fails, the others are written. */
static void test_rows_of_a_batch(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    open_writer(&s, &l, &j);
    exec(s->db, "CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL, d DOUBLE PRECISION);"
                "CREATE TABLE statements (x BIGINT);");
    if (srv)
        exec(s->db, "CREATE FUNCTION counted() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
                    "INSERT INTO statements VALUES (1); RETURN NULL; END $f$;"
                    "CREATE TRIGGER counted AFTER INSERT ON t FOR EACH STATEMENT "
                    "EXECUTE FUNCTION counted();");
    const char *odd = "a,\"{b}\\ c";
    const struct db_value rows[][3] = {
        {DV_S(odd), DV_I(1), DV_F(0.1)},
        {DV_S("two"), DV_I(-2), DV_NULL_V},
        {DV_S(odd), DV_I(3), DV_F(3)}, /* the key again: not written */
        {DV_S("four"), DV_I(INT64_MAX), DV_F(1e300)},
    };
    rows_pending = 4;
    for (intptr_t i = 0; i < 4; i++) {
        row_results[i] = 1;
        assert_int_equal(journal_submit_row(j, &t_rows, rows[i], on_row, (void *)i), 0);
    }
    loop_run(l);
    for (int i = 0; i < 4; i++)
        assert_int_equal(row_results[i], 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM t"), 3);
    assert_int_equal(count(s->db, "SELECT count(*) FROM t WHERE k = 'a,\"{b}\\ c' AND n = 1 AND "
                                  "d = 0.1"),
                     1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM t WHERE k = 'two' AND n = -2 AND d IS "
                                  "NULL"),
                     1);
    assert_int_equal(count(s->db, "SELECT count(*) FROM t WHERE k = 'four' AND "
                                  "n = 9223372036854775807 AND d = 1e300"),
                     1);
    if (srv)
        assert_int_equal(count(s->db, "SELECT count(*) FROM statements"), 1);

    const struct db_value more[][3] = {
        {DV_S("five"), DV_I(5), DV_NULL_V},
        {DV_S("six"), DV_NULL_V, DV_NULL_V}, /* n is NOT NULL */
        {DV_S("seven"), DV_I(7), DV_NULL_V},
    };
    rows_pending = 3;
    for (intptr_t i = 0; i < 3; i++) {
        row_results[i] = 1;
        assert_int_equal(journal_submit_row(j, &t_rows, more[i], on_row, (void *)i), 0);
    }
    loop_run(l);
    assert_int_equal(row_results[0], 0);
    assert_true(row_results[1] < 0);
    assert_int_equal(row_results[2], 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM t WHERE k IN ('five', 'seven')"), 2);
    assert_int_equal(count(s->db, "SELECT count(*) FROM t"), 5);

    close_writer(s, l, j);
}

/* The ledger's rows of one batch (on PostgreSQL one statement, its trigger once): each attempt
 * billed once, whether its row comes twice in the batch or was written by a batch before, and
 * rolled up per (function, version, minute, host). */
static void test_ledger_rows_of_a_batch(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    open_writer(&s, &l, &j);
    struct acct_record r = bill_of("before", 1, "host-a");
    assert_int_equal(accountant_record(j, &r), 0);
    journal_settle(j);
    static const char *const ids[] = {"a", "before", "b", "a", "c"};
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        r.id = ids[i];
        r.start_wall_us = streq(ids[i], "c") ? 120 * 1000000 : 60 * 1000000;
        r.status = streq(ids[i], "b") ? "error" : "ok";
        assert_int_equal(accountant_record(j, &r), 0);
    }
    journal_settle(j);
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage"), 4);
    assert_int_equal(count(s->db, "SELECT count(*) FROM usage_minute WHERE minute = 60 AND "
                                  "invocations = 3 AND errors = 1 AND cpu_us = 2100 AND "
                                  "billed_ms = 6 AND mb_ms = 768 AND host = 'host-a'"),
                     1);
    assert_int_equal(count(s->db, "SELECT invocations FROM usage_minute WHERE minute = 120"), 1);
    close_writer(s, l, j);
}

/* Two acceptances of one idempotency key make one invocation: the second inserts nothing. */
static void test_queue_one_row_per_key(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    open_writer(&s, &l, &j);
    for (int i = 0; i < 2; i++) {
        struct inv_record r = {.function = "f",
                               .async = true,
                               .status = INV_QUEUED,
                               .idempotency_key = "k",
                               .created_us = 1 + i};
        inv_id_new(r.id);
        assert_int_equal(inv_store_insert(j, &r, 100, NULL, on_inserted, NULL), 0);
        loop_run(l);
        assert_int_equal(inserted, i == 0 ? 1 : 0);
    }
    char id[INV_ID_LEN + 1];
    assert_int_equal(inv_store_find_idempotent(s, "f", "k", 0, id), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations"), 1);
    close_writer(s, l, j);
}

static int requeued_peers;

static int on_holder(const char *owner, void *userdata)
{
    assert_string_equal(owner, "host-a");
    requeued_peers++;
    return 0;
}

/* PostgreSQL: a host's lock is held while it lives; a peer that gets it requeues its rows. A
 * claim skips rows another host's claim holds locked. */
static void test_queue_dead_host(void **state)
{
    struct store *s, *peer;
    struct ig_error err = {};
    struct inv_host_lock *lock, *dup = NULL;
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(store_open(path, &peer, &err), 0);
    queued_row(s->db, "inv-1", 1);
    queued_row(s->db, "inv-2", 2);
    assert_int_equal(inv_host_lock_take(s, "host-a", &lock, &err), 1);
    assert_int_equal(inv_host_lock_take(peer, "host-a", &dup, &err), 0);
    assert_null(dup);

    /* A row locked by another claim's transaction is skipped, not waited for. */
    assert_int_equal(db_begin(peer->db, NULL), 0);
    assert_int_equal(db_exec(peer->db, "SELECT id FROM invocations WHERE id = 'inv-1' FOR UPDATE",
                             NULL, 0, NULL),
                     0);
    assert_int_equal(claim(s, 2, "host-a", 100), 1);
    assert_string_equal(claimed_ids[0], "inv-2");
    assert_int_equal(db_rollback(peer->db), 0);
    assert_int_equal(claim(s, 2, "host-a", 100), 1);

    requeued_peers = 0;
    assert_int_equal(inv_store_lease_holders(peer, "host-b", on_holder, NULL), 0);
    assert_int_equal(requeued_peers, 1);
    assert_int_equal(inv_store_requeue_dead(peer, "host-a"), 0); /* alive */
    inv_host_lock_free(lock);                                    /* its process is gone */
    /* Its server process lets go of the lock as it exits, a moment after the connection closed. */
    int n = 0;
    for (int i = 0; i < 500 && n == 0; i++) {
        n = inv_store_requeue_dead(peer, "host-a");
        if (n == 0)
            usleep(10 * 1000);
    }
    assert_int_equal(n, 2);
    assert_int_equal(count(s->db, "SELECT count(*) FROM invocations WHERE status = 'queued'"), 2);
    /* It let go of the lock: the host may come back. */
    assert_int_equal(inv_host_lock_take(s, "host-a", &lock, &err), 1);
    inv_host_lock_free(lock);
    store_free(peer);
    store_free(s);
}

/* A bundle's bytes in chunks, on either engine: stored once (a second put changes nothing),
 * read back whole and in order, a missing chunk and a missing digest told apart, and forgotten
 * when no version names the digest. */
static void test_bundle_chunks(void **state)
{
    struct store *s;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    size_t len = BUNDLES_STORE_CHUNK * 2 + BUNDLES_STORE_CHUNK / 2;
    char *data = malloc(len), *back = NULL;
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 7 + i / 4096);
    static const char d[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_false(bundles_store_has(s, d));
    assert_int_equal(bundles_store_put(s, d, data, len, &err), 0);
    assert_int_equal(bundles_store_put(s, d, data, len, &err), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM bundle_chunks"), 3);
    assert_true(bundles_store_has(s, d));
    size_t got;
    assert_int_equal(bundles_store_get(s, d, len, &back, &got, &err), 0);
    assert_int_equal(got, len);
    assert_memory_equal(back, data, len);
    free(back);
    assert_int_equal(bundles_store_get(s, d, len - 1, &back, &got, &err), -EFBIG);
    assert_int_equal(bundles_store_get(s, "ab", len, &back, &got, &err), -ENOENT);
    exec(s->db, "DELETE FROM bundle_chunks WHERE n = 1");
    assert_int_equal(bundles_store_get(s, d, len, &back, &got, &err), -EBADMSG);
    assert_int_equal(bundles_store_forget(s, d), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM bundle_chunks"), 0);
    free(data);
    store_free(s);
}

/* The hosts table: a host registered twice is one row (a restart), listed with its heartbeat's
 * age by the reader's clock, and with the figures its last heartbeat wrote. */
static int see_host(void *userdata, const struct host_row *h)
{
    struct host_row *seen = userdata;
    seen[streq(h->host_id, "b")] = *h;
    return 0;
}

static void test_hosts_table(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    open_writer(&s, &l, &j);
    struct host_row h = {
        .host_id = "a", .advertise = "http://a:8080", .version = "0", .started_us = 1000};
    assert_int_equal(hosts_store_register(s, &h, &err), 0);
    h.started_us = 2000;
    assert_int_equal(hosts_store_register(s, &h, &err), 0);
    h.host_id = "b";
    h.started_us = 5000;
    assert_int_equal(hosts_store_register(s, &h, &err), 0);
    assert_int_equal(count(s->db, "SELECT count(*) FROM hosts"), 2);
    struct host_row seen[2] = {};
    assert_int_equal(hosts_store_list(s, 10000, see_host, seen, &err), 0);
    assert_int_equal(seen[0].heartbeat_age_us, 8000);
    assert_int_equal(seen[1].heartbeat_age_us, 5000);
    assert_int_equal(seen[1].figures.containers_ready, 0);

    const struct host_figures f = {.containers_ready = 3,
                                   .containers_busy = 2,
                                   .memory_used = 640 << 20,
                                   .memory_budget = INT64_C(6) << 30,
                                   .invocations_per_s = 12.5};
    assert_int_equal(hosts_store_heartbeat(j, "b", 9000, &f, on_finished, NULL), 0);
    finish_result = -1;
    loop_run(l);
    assert_int_equal(finish_result, 0);
    assert_int_equal(hosts_store_list(s, 10000, see_host, seen, &err), 0);
    assert_int_equal(seen[0].heartbeat_age_us, 8000);
    assert_int_equal(seen[1].heartbeat_age_us, 1000);
    assert_int_equal(seen[1].figures.containers_ready, 3);
    assert_int_equal(seen[1].figures.containers_busy, 2);
    assert_int_equal(seen[1].figures.memory_used, 640 << 20);
    assert_int_equal(seen[1].figures.memory_budget, INT64_C(6) << 30);
    assert_true(seen[1].figures.invocations_per_s == 12.5);
    close_writer(s, l, j);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fresh_database_reaches_current, fresh),
        cmocka_unit_test_setup(test_older_database_is_migrated_in_order, fresh),
        cmocka_unit_test_setup(test_real_migrations_from_version_zero, fresh),
        cmocka_unit_test_setup(test_newer_database_is_refused, fresh),
        cmocka_unit_test_setup(test_failing_migration_rolls_back, fresh),
        cmocka_unit_test_setup(test_usage_rollup, fresh),
        cmocka_unit_test_setup(test_hosts_migrate_together, fresh),
        cmocka_unit_test_setup(test_queue_claims_and_fencing, fresh),
        cmocka_unit_test_setup(test_queue_finish_bills_each_attempt_once, fresh),
        cmocka_unit_test_setup(test_queue_one_row_per_key, fresh),
        cmocka_unit_test_setup(test_sync_record_with_its_bill, fresh),
        cmocka_unit_test_setup(test_rows_of_a_batch, fresh),
        cmocka_unit_test_setup(test_ledger_rows_of_a_batch, fresh),
        cmocka_unit_test_setup(test_bundle_chunks, fresh),
        cmocka_unit_test_setup(test_hosts_table, fresh),
    };
    /* SQLite's alone: the history a PostgreSQL database never went through, and a file. */
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test_setup(test_usage_rollup_gains_versions, fresh),
        cmocka_unit_test_setup(test_garbage_file_is_refused, fresh),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test_setup(test_baseline_is_sqlite_schema, fresh),
        cmocka_unit_test_setup(test_queue_dead_host, fresh),
    };
    if (argc > 1 && streq(argv[1], "postgresql"))
        return cmocka_run_group_tests_name("postgresql", tests, setup_pg, NULL) |
               cmocka_run_group_tests_name("postgresql only", pg_tests, NULL, teardown);
    return cmocka_run_group_tests_name("sqlite", tests, setup, NULL) |
           cmocka_run_group_tests_name("sqlite only", sqlite_tests, NULL, teardown);
}
