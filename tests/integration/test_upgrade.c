/* An upgrade keeps data: a database at the previous schema version, holding a function, queued
 * async invocations and whatever other rows that schema has, goes through this build's ignisd,
 * which migrates it in place; every function, queued invocation and row is still there, and the
 * queued invocations run; a bundle the old schema kept only unpacked is stored in the database
 * and runs from there on a host without the cache. (A downgrade is refused: test_daemon and
 * tests/unit/test_store.c.) */
#include "harness.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <string.h>

#include "records/invocation.h"
#include "records/store-internal.h"

static struct ignisd_proc src, p;
static char src_fixture_done;

/* Stops whatever a failed assertion left running. */
static int teardown(void **state)
{
    int r = 0;
    if (src.pid > 0 || src.state_dir[0])
        r |= harness_cleanup(&src);
    if (p.pid > 0 || p.state_dir[0])
        r |= harness_cleanup(&p);
    return r ? -1 : 0;
}

static bool has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    bool yes = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        yes = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    return yes;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, msg);
        fail();
    }
}

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

/* Upgrades a database at schema version k (1 <= k < current). */
static void upgrade_from(size_t k)
{
    size_t n;
    const struct store_migration *list = store_migrations(&n);

    /* A real function (bundle and manifest) from a daemon of this build, made once. */
    if (!src_fixture_done) {
        assert_int_equal(harness_start(&src, NULL), 0);
        char fixture[512], *out = NULL, *err = NULL;
        snprintf(fixture, sizeof(fixture), "%s/runtime-images/examples/hello-exec",
                 getenv("IGNIS_SOURCE_DIR"));
        char *push[] = {(char *)harness_cli(), "--server", src.url, "push", fixture, NULL};
        assert_int_equal(harness_run(push, &out, &err), 0);
        free(out);
        free(err);
        assert_int_equal(harness_stop(&src), 0);
        src_fixture_done = 1;
    }

    /* The previous schema: every migration but the last, in a new state dir that gets the
     * source's bundles; each table that schema has is filled from the source's rows. */
    memset(&p, 0, sizeof(p));
    char dir[] = "/tmp/ignis-upgrade.XXXXXX", db_path[300], cmd[1200], sql[2400];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp -a '%s/bundles' '%s/bundles'", src.state_dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(db_path, sizeof(db_path), "%s/ignis.db", dir);
    struct db *store_db;
    struct ig_error e = {};
    assert_int_equal(db_open(db_path, DB_CREATE, &store_db, &e), 0);
    assert_int_equal(store_migrate(store_db, list, k, &e), 0);
    db_close(store_db);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    bool functions = has_table(db, "functions"), invocations = has_table(db, "invocations");
    snprintf(sql, sizeof(sql), "ATTACH '%s/ignis.db' AS src", src.state_dir);
    exec_sql(db, sql);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM main.sqlite_master WHERE type = "
                                        "'table' AND name NOT LIKE 'sqlite_%' AND name != 'meta'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        /* The old table's columns, taken from the source where they all exist. */
        char cols[1000] = "";
        sqlite3_stmt *ci;
        char q[200];
        snprintf(q, sizeof(q), "SELECT name FROM pragma_table_info('%s')", t);
        assert_int_equal(sqlite3_prepare_v2(db, q, -1, &ci, NULL), SQLITE_OK);
        while (sqlite3_step(ci) == SQLITE_ROW)
            snprintf(cols + strlen(cols), sizeof(cols) - strlen(cols), "%s%s", cols[0] ? ", " : "",
                     (const char *)sqlite3_column_text(ci, 0));
        sqlite3_finalize(ci);
        snprintf(sql, sizeof(sql), "INSERT INTO main.%s (%s) SELECT %s FROM src.%s", t, cols, cols,
                 t);
        exec_sql(db, sql);
    }
    sqlite3_finalize(st);
    exec_sql(db, "DETACH src");
    /* Async invocations the old daemon had accepted and not yet run. */
    char ids[20][INV_ID_LEN + 1];
    int nids = invocations ? 20 : 0;
    for (int i = 0; i < nids; i++) {
        inv_id_new(ids[i]);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO invocations (id, function, version, async, status, payload, "
                 "attempts, max_retries, created_us, expires_us) VALUES ('%s', 'hello-exec', 1, "
                 "1, '%s', CAST('before-%d' AS BLOB), 0, 2, %lld, %lld)",
                 ids[i], i % 2 ? "queued" : "running", i, (long long)wall_usec(),
                 (long long)wall_usec() + 3600000000ll);
        exec_sql(db, sql);
    }
    int before = invocations ? count(db, "SELECT count(*) FROM invocations") : 0;
    assert_int_equal(count(db, "PRAGMA user_version"), (int)k);
    sqlite3_close(db);

    /* This build's daemon on that state dir. */
    snprintf(p.state_dir, sizeof(p.state_dir), "%s", dir);
    assert_int_equal(harness_restart(&p, NULL), 0);
    struct client_response r;
    assert_int_equal(harness_request(&p, "GET", "/v1/functions/hello-exec", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, functions ? 200 : 404);
    client_response_clear(&r);
    /* With the function, the queued invocations run; a schema without functions cannot have
     * had one, and its invocations end dead ("the function no longer exists"), not lost. */
    const char *final = functions ? "succeeded" : "dead";
    for (int i = 0; i < nids; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/invocations/%s", ids[i]);
        uint64_t deadline = now_usec() + 60000000;
        for (;;) {
            assert_int_equal(harness_request(&p, "GET", path, NULL, NULL, 0, &r), 0);
            cJSON *j = cJSON_Parse(r.body);
            client_response_clear(&r);
            const cJSON *s = cJSON_GetObjectItem(j, "status");
            bool done = cJSON_IsString(s) && streq(s->valuestring, final);
            if (done && functions) {
                char want[32];
                snprintf(want, sizeof(want), "Hello, before-%d!", i);
                assert_non_null(strstr(cJSON_GetObjectItem(j, "result")->valuestring, want));
            }
            cJSON_Delete(j);
            if (done)
                break;
            assert_true(now_usec() < deadline);
            usleep(20000);
        }
    }
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(count(db, "PRAGMA user_version"), store_schema_version());
    /* Nothing was lost in the migration (the daemon only adds rows). */
    assert_true(count(db, "SELECT count(*) FROM invocations") >= before);
    assert_int_equal(count(db, "SELECT count(*) FROM functions WHERE name = 'hello-exec'"),
                     functions ? 1 : 0);
    /* The bundle kept only unpacked is in the store now, under the digest its versions name. */
    if (functions)
        assert_true(count(db, "SELECT count(*) FROM bundle_chunks c JOIN function_versions v ON "
                              "v.digest = c.digest WHERE v.name = 'hello-exec'") > 0);
    sqlite3_close(db);
    if (functions) {
        /* Without this host's cache the function still runs, from the store's checked bytes. */
        char bundles[300];
        snprintf(bundles, sizeof(bundles), "%s/bundles", dir);
        rm_rf(bundles);
        assert_int_equal(harness_restart(&p, NULL), 0);
        uint64_t deadline = now_usec() + 60000000;
        long status;
        while ((status = harness_invoke(&p, "hello-exec", "after", NULL, &r)) == 503 &&
               now_usec() < deadline) {
            client_response_clear(&r);
            usleep(20000);
        }
        if (status != 200 || !strstr(r.body, "Hello, after!"))
            fail_msg("hello-exec without the cache: %ld %s", status, r.body);
        client_response_clear(&r);
        assert_int_equal(harness_stop(&p), 0);
    }
    assert_int_equal(harness_cleanup(&p), 0);
    memset(&p, 0, sizeof(p));
}

/* From every earlier schema version this build knows, not only the last: a host may skip
 * releases. */
static void test_previous_schemas_upgrade(void **state)
{
    size_t n;
    /* Each earlier schema is built in an ignis.db file and filled by ATTACHing the source
     * daemon's: SQLite's files. PostgreSQL starts at a baseline; its migrations are test_store's
     * (the unit suite, on a live server). */
    if (harness_on_postgresql()) {
        fprintf(stderr, "# earlier schemas unchecked: they are SQLite files; the store is "
                        "PostgreSQL\n");
        return;
    }
    store_migrations(&n);
    assert_true(n >= 2);
    for (size_t k = n - 1; k >= 1; k--)
        upgrade_from(k);
}

int main(void)
{
    harness_require_root();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_previous_schemas_upgrade),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
