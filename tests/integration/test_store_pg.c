/* ignisd on a PostgreSQL store (issue #16) from the outside, on a private server of this test's
 * own (pgserver.h), whatever IGNIS_TEST_STORE says: --check-config reports engine=postgresql and
 * schema 0 before the first start, the current schema after it; the start-up log names the store
 * as a URL without secrets; a store holding a schema newer than this ignisd's is refused; a
 * target with a password, or a server that cannot be reached, fails the start (and the check)
 * with an exit status and a one-line reason, never a crash and never the password. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgserver.h"
#include "records/db.h"
#include "records/store-internal.h"

/* Runs `ignisd --check-config --state-dir DIR --store TARGET`; returns its exit status, its
 * stdout and stderr in ret_out and ret_err (free them). */
static int check_config(const char *dir, const char *target, char **ret_out, char **ret_err)
{
    char *argv[] = {(char *)harness_ignisd(),
                    "--check-config",
                    "--state-dir",
                    (char *)dir,
                    "--store",
                    (char *)target,
                    NULL};
    return harness_run(argv, ret_out, ret_err);
}

/* Runs ignisd on TARGET expecting it to fail at start with status expect_status; returns its
 * stderr (free it), whose last line must be the one-line reason. */
static char *start_fails(const char *dir, const char *target, int expect_status)
{
    char listen[64], *out = NULL, *err = NULL;
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    char *argv[] = {
        (char *)harness_ignisd(), "--listen", listen, "--state-dir", (char *)dir, "--store",
        (char *)target,           NULL};
    assert_int_equal(harness_run(argv, &out, &err), expect_status);
    free(out);
    assert_non_null(err);
    char *last = strrchr(err, '\n');
    assert_non_null(last);
    *last = '\0';
    last = strrchr(err, '\n');
    assert_true(startswith(last ? last + 1 : err, "ignisd: "));
    return err;
}

/* The line of the daemon's log holding needle; fails the test, showing the log, without one. */
static char *log_line(const struct ignisd_proc *p, const char *needle)
{
    char *found = harness_log_line(p, needle);
    if (!found) {
        harness_print_log(p);
        fail_msg("no line of the log holds \"%s\"", needle);
    }
    return found;
}

static void test_check_config_and_start_up(void **state)
{
    char *conninfo, *out = NULL, *err = NULL, name[600], expect[700];
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    db_target_name(conninfo, name, sizeof(name));
    assert_true(startswith(name, "postgresql://postgres@"));

    char dir[] = "/tmp/ignis-test-pgcheck.XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* Before the first start: reachable, nothing created. */
    assert_int_equal(check_config(dir, conninfo, &out, &err), 0);
    snprintf(expect, sizeof(expect), "store=%s engine=postgresql schema=0 (this ignisd: %d)", name,
             store_schema_version());
    if (!strstr(out, expect))
        fail_msg("expected \"%s\" in: %s%s", expect, out, err);
    free(out);
    free(err);
    rm_rf(dir);

    /* The first start migrates it and says so, naming the store without its conninfo. */
    struct ignisd_proc p;
    const char *args[] = {"--store", conninfo, NULL};
    assert_int_equal(harness_start(&p, args), 0);
    char *started = log_line(&p, "ignisd started");
    snprintf(expect, sizeof(expect), "store=%s schema=%d ", name, store_schema_version());
    if (!strstr(started, expect))
        fail_msg("expected \"%s\" in: %s", expect, started);
    assert_null(strstr(started, "host="));
    free(started);
    assert_int_equal(harness_stop(&p), 0);

    assert_int_equal(check_config(p.state_dir, conninfo, &out, &err), 0);
    snprintf(expect, sizeof(expect), "engine=postgresql schema=%d (this ignisd: %d)",
             store_schema_version(), store_schema_version());
    if (!strstr(out, expect))
        fail_msg("expected \"%s\" in: %s%s", expect, out, err);
    free(out);
    free(err);

    /* A store from a newer ignisd: refused at start, its version named. */
    struct db *db;
    struct ig_error e = {};
    assert_int_equal(db_open(conninfo, 0, &db, &e), 0);
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(db_set_user_version(db, 999, &e), 0);
    assert_int_equal(db_commit(db, &e), 0);
    db_close(db);
    char *refused = start_fails(p.state_dir, conninfo, 1);
    assert_non_null(strstr(refused, "newer"));
    assert_non_null(strstr(refused, "999"));
    free(refused);

    assert_int_equal(harness_cleanup(&p), 0);
    free(conninfo);
}

/* A password in the target is refused before anything connects, and never echoed. */
static void test_password_refused(void **state)
{
    char *conninfo, target[700], *out = NULL, *err = NULL;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    snprintf(target, sizeof(target), "%s password=hunter2-secret", conninfo);
    char dir[] = "/tmp/ignis-test-pgpass.XXXXXX";
    assert_non_null(mkdtemp(dir));

    int status = check_config(dir, target, &out, &err);
    assert_true(status > 0);
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "password"));
    free(out);
    free(err);

    err = start_fails(dir, target, status);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "password"));
    free(err);
    rm_rf(dir);
    free(conninfo);
}

/* A server that is not there (a free loopback port): the check and the start fail with status
 * 1 and a reason naming the store, after libpq's own refusal. */
static void test_unreachable_store(void **state)
{
    char target[200], name[300], *out = NULL, *err = NULL;
    snprintf(target, sizeof(target), "host=127.0.0.1 port=%u dbname=nowhere user=postgres",
             harness_free_port());
    db_target_name(target, name, sizeof(name));
    char dir[] = "/tmp/ignis-test-pgdown.XXXXXX";
    assert_non_null(mkdtemp(dir));

    assert_int_equal(check_config(dir, target, &out, &err), 1);
    assert_non_null(strstr(err, name));
    free(out);
    free(err);

    err = start_fails(dir, target, 1);
    const char *last = strrchr(err, '\n');
    last = last ? last + 1 : err;
    if (!strstr(last, "nowhere") || !strstr(last, "unreachable"))
        fail_msg("expected the store named unreachable in: %s", last);
    free(err);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_config_and_start_up),
        cmocka_unit_test(test_password_refused),
        cmocka_unit_test(test_unreachable_store),
    };
    return cmocka_run_group_tests(tests, pgserver_group_setup, pgserver_group_teardown);
}
