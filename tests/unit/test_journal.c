/* The journal: statements become durable in group commits off the loop (a loop turn's in one),
 * each outcome comes back on the loop thread, one failure does not undo the rest, a read after
 * journal_settle sees what was submitted, and nothing queued is lost at free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

#include "groups.h"
#include "records/journal.h"

static char dir[64], path[128];
static pthread_t loop_thread;

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-journal-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/j.db", dir);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, "
                     "b BLOB, n);",
                     NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    sqlite3_close(db);
    loop_thread = pthread_self();
    return 0;
}

static int teardown(void **state)
{
    return rm_rf(dir);
}

struct counts {
    int ok, failed, expected;
    bool wrong_thread;
};

static void on_done(struct loop *l, int result, const char *message, void *userdata)
{
    struct counts *c = userdata;
    if (!pthread_equal(pthread_self(), loop_thread))
        c->wrong_thread = true;
    if (result == 0)
        c->ok++;
    else {
        c->failed++;
        assert_non_null(message);
    }
    if (l && c->ok + c->failed == c->expected)
        loop_quit(l);
}

static int count_rows(const char *where)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char sql[256];
    int n = -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE %s", where);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_group_commit(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = 1000};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    for (int i = 0; i < 1000; i++) {
        struct db_value v[] = {DV_I(i), DV_S("text"), DV_B("\0\1\2", 3), DV_NULL_V};
        assert_int_equal(
            journal_submit(j, "INSERT INTO t (k, s, b, n) VALUES (?, ?, ?, ?)", v, 4, on_done, &c),
            0);
    }
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, 1000);
    assert_false(c.wrong_thread);
    struct journal_stats st;
    journal_get_stats(j, &st);
    assert_int_equal(st.statements, 1000);
    /* 1000 statements queued in microseconds while the first fsync runs: a handful of commits. */
    assert_true(st.commits < 100);
    journal_free(j);
    loop_free(l);
    assert_int_equal(count_rows("s = 'text' AND length(b) = 3 AND n IS NULL"), 1000);
}

static void test_failure_is_isolated(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = 3};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    struct db_value a[] = {DV_I(5001), DV_S("a")};
    struct db_value dup[] = {DV_I(5001), DV_S("dup")}; /* primary key clash */
    struct db_value b[] = {DV_I(5002), DV_S("b")};
    assert_int_equal(journal_submit(j, "INSERT INTO t (k, s) VALUES (?, ?)", a, 2, on_done, &c), 0);
    assert_int_equal(journal_submit(j, "INSERT INTO t (k, s) VALUES (?, ?)", dup, 2, on_done, &c),
                     0);
    assert_int_equal(journal_submit(j, "INSERT INTO t (k, s) VALUES (?, ?)", b, 2, on_done, &c), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, 2);
    assert_int_equal(c.failed, 1);
    journal_free(j);
    loop_free(l);
    assert_int_equal(count_rows("k IN (5001, 5002)"), 2);
    assert_int_equal(count_rows("s = 'dup'"), 0);
}

static void test_free_delivers_everything(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = -1}; /* never quit: the loop does not run at all */
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    for (int i = 0; i < 50; i++) {
        struct db_value v[] = {DV_I(6000 + i)};
        assert_int_equal(journal_submit(j, "INSERT INTO t (k) VALUES (?)", v, 1, on_done, &c), 0);
    }
    journal_free(j);
    assert_int_equal(c.ok, 50);
    loop_free(l);
    assert_int_equal(count_rows("k >= 6000 AND k < 6050"), 50);
}

/* Crash-safe (lazy) statements commit like durable ones, alone or mixed in one batch. */
static void test_lazy_and_durable(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = 300};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    for (int i = 0; i < 300; i++) {
        struct db_value v[] = {DV_I(7000 + i)};
        int (*submit)(struct journal *, const char *, const struct db_value *, size_t,
                      journal_done_fn, void *) = i % 3 ? journal_submit_lazy : journal_submit;
        assert_int_equal(submit(j, "INSERT INTO t (k) VALUES (?)", v, 1, on_done, &c), 0);
    }
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, 300);
    /* Batches of lazy statements alone commit without an fsync, one with a durable one with. */
    struct journal_stats before, after;
    journal_get_stats(j, &before);
    assert_true(before.full_commits >= 1);
    struct counts lazy = {.expected = 50};
    for (int i = 0; i < 50; i++) {
        struct db_value v[] = {DV_I(7300 + i)};
        assert_int_equal(
            journal_submit_lazy(j, "INSERT INTO t (k) VALUES (?)", v, 1, on_done, &lazy), 0);
    }
    assert_int_equal(loop_run(l), 0);
    journal_get_stats(j, &after);
    assert_int_equal(lazy.ok, 50);
    assert_true(after.commits > before.commits);
    assert_int_equal(after.full_commits, before.full_commits);
    journal_free(j);
    loop_free(l);
    assert_int_equal(count_rows("k >= 7000 AND k < 7350"), 350);
}

/* Statements are handed to the writer when the loop's turn ends, all of a turn in one commit;
 * journal_settle commits what was submitted before it at once, lingering or not, so a read after
 * it sees its own writes. */
static void test_turns_and_settle(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = 40};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    for (int i = 0; i < 40; i++) {
        struct db_value v[] = {DV_I(8000 + i)};
        assert_int_equal(journal_submit_lazy(j, "INSERT INTO t (k) VALUES (?)", v, 1, on_done, &c),
                         0);
    }
    assert_int_equal(loop_run(l), 0);
    struct journal_stats st;
    journal_get_stats(j, &st);
    assert_int_equal(st.statements, 40);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.full_commits, 0);

    /* Right after that commit a crash-safe statement would linger: settle does not wait for it.
     * Before settle, nothing was handed over (the loop has not turned): the row is not there. */
    struct counts one = {.expected = 1};
    struct db_value v[] = {DV_I(8040)};
    assert_int_equal(journal_submit_lazy(j, "INSERT INTO t (k) VALUES (?)", v, 1, on_done, &one),
                     0);
    assert_int_equal(count_rows("k = 8040"), 0);
    journal_settle(j);
    assert_int_equal(count_rows("k = 8040"), 1);
    journal_settle(j);                /* nothing pending: returns at once */
    assert_int_equal(loop_run(l), 0); /* the outcome still comes back on the loop */
    assert_int_equal(one.ok, 1);
    journal_free(j);
    loop_free(l);
}

static void test_bad_sql_and_limits(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = 1};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    struct db_value many[JOURNAL_MAX_VALUES + 1] = {};
    assert_int_equal(journal_submit(j, "SELECT 1", many, JOURNAL_MAX_VALUES + 1, NULL, NULL),
                     -E2BIG);
    assert_int_equal(journal_submit(j, "INSERT INTO nowhere VALUES (1)", NULL, 0, on_done, &c), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.failed, 1);
    journal_free(j);
    loop_free(l);
    ig_error_clear(&err);
    assert_true(journal_new(l, "/nonexistent/dir/x.db", &j, &err) < 0);
    assert_non_null(strstr(err.message, "/nonexistent/dir/x.db"));
}

/* journal_submit_once: in one batch a repeat (same SQL and values) is not run, and is told 0;
 * other values run; a later batch runs it again. */
static void test_once_per_batch(void **state)
{
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    struct counts c = {.expected = 6};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    const char *sql = "INSERT INTO t (s, n) VALUES (?, ?)";
    const int ns[] = {1, 2, 1, 1, 2};
    for (size_t i = 0; i < ARRAY_SIZE(ns); i++) {
        struct db_value v[] = {DV_S("once"), DV_I(ns[i])};
        assert_int_equal(journal_submit_once(j, sql, v, 2, on_done, &c), 0);
    }
    /* Submitted in one turn: one batch. */
    struct db_value other[] = {DV_S("once"), DV_I(3)};
    assert_int_equal(journal_submit(j, sql, other, 2, on_done, &c), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, 6);
    assert_int_equal(count_rows("s = 'once' AND n = 1"), 1);
    assert_int_equal(count_rows("s = 'once' AND n = 2"), 1);
    assert_int_equal(count_rows("s = 'once' AND n = 3"), 1);

    c = (struct counts){.expected = 1};
    struct db_value again[] = {DV_S("once"), DV_I(1)};
    assert_int_equal(journal_submit_once(j, sql, again, 2, on_done, &c), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.ok, 1);
    journal_free(j);
    loop_free(l);
    assert_int_equal(count_rows("s = 'once' AND n = 1"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_failure_is_isolated),
        cmocka_unit_test(test_free_delivers_everything),
        cmocka_unit_test(test_lazy_and_durable),
        cmocka_unit_test(test_turns_and_settle),
        cmocka_unit_test(test_bad_sql_and_limits),
        cmocka_unit_test(test_once_per_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
