/* The journal while PostgreSQL is away (records/journal.h), on the tests' own PostgreSQL 15
 * (skipped, as tests/integration/pgserver.h says, where it is not installed): what is submitted
 * meanwhile waits in memory up to JOURNAL_AWAY_MAX_BYTES, past which a submission fails at once
 * with -ENOBUFS (counted, never written); once the server is back, every statement that was
 * taken is written, each once, in batches of bounded size, and its done says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "groups.h"
#include "pgserver.h"
#include "records/db.h"
#include "records/journal.h"

static struct pgserver *srv;
static char *conninfo;

static int setup(void **state)
{
    if (pgserver_new(&srv) < 0 || pgserver_new_database(srv, &conninfo) < 0)
        return -1;
    struct db *db;
    struct ig_error err = {};
    if (db_open(conninfo, 0, &db, &err) < 0 ||
        db_exec_script(db, "CREATE TABLE t (k BIGINT PRIMARY KEY, b BYTEA)", &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    db_close(db);
    return 0;
}

static int teardown(void **state)
{
    free(conninfo);
    return pgserver_free(srv);
}

struct counts {
    int ok, failed, expected;
};

static void on_done(struct loop *l, int result, const char *message, void *userdata)
{
    struct counts *c = userdata;
    if (result == 0)
        c->ok++;
    else
        c->failed++;
    if (c->ok + c->failed == c->expected)
        loop_quit(l);
}

static const char ins[] = "INSERT INTO t (k, b) VALUES ($1, $2) ON CONFLICT DO NOTHING";

static void test_bounded_while_away(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    assert_int_equal(loop_new(&l), 0);
    if (journal_new(l, conninfo, &j, &err) < 0)
        fail_msg("%s", err.message);
    struct counts c = {.expected = 1};
    const struct db_value first[] = {DV_I(0), DV_B("x", 1)};
    /* Durable: a lazy commit may be lost with the server's crash (synchronous_commit off). */
    assert_int_equal(journal_submit(j, ins, first, 2, on_done, &c), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, 1);

    /* The server stops; a statement finds it gone, and the journal is away. */
    assert_int_equal(pgserver_stop_immediate(srv), 0);
    const struct db_value probe[] = {DV_I(1), DV_B("y", 1)};
    c = (struct counts){.expected = -1};
    assert_int_equal(journal_submit_lazy(j, ins, probe, 2, on_done, &c), 0);
    journal_settle(j);
    struct journal_health h;
    for (int i = 0; i < 500; i++) {
        journal_get_health(j, &h);
        if (h.failing)
            break;
        usleep(10 * 1000);
    }
    assert_true(h.failing);
    assert_int_equal(h.code, ENOTCONN);

    /* 1 MiB a statement: the bound takes about 256 of them, then refuses. */
    enum { BLOB = 1 << 20 };
    char *blob = calloc(1, BLOB);
    assert_non_null(blob);
    int taken = 0, r = 0;
    for (int k = 2; k < 400 && r == 0; k++) {
        const struct db_value v[] = {DV_I(k), DV_B(blob, BLOB)};
        if ((r = journal_submit_lazy(j, ins, v, 2, on_done, &c)) == 0)
            taken++;
    }
    free(blob);
    assert_int_equal(r, -ENOBUFS);
    assert_true(taken >= (int)(JOURNAL_AWAY_MAX_BYTES / BLOB) - 2);
    assert_true(taken <= (int)(JOURNAL_AWAY_MAX_BYTES / BLOB));
    struct journal_stats st;
    journal_get_stats(j, &st);
    assert_int_equal(st.refused, 1);

    /* Back: everything taken is written, once, and done says so; in batches of at most 16 MiB,
     * not in one transaction of all that waited. */
    assert_int_equal(pgserver_start(srv), 0);
    c.expected = taken + 1;
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, taken + 1);
    assert_int_equal(c.failed, 0);
    struct journal_stats after;
    journal_get_stats(j, &after);
    assert_true(after.commits - st.commits >= (uint64_t)taken / 16);
    journal_free(j);
    loop_free(l);
    assert_int_equal(pgserver_query_int(conninfo, "SELECT count(*) FROM t"), taken + 2);
    assert_int_equal(
        pgserver_query_int(conninfo, "SELECT count(*) FROM t WHERE length(b) = 1048576"), taken);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_while_away),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
