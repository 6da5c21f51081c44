/* The statement API, on each engine: SQLite, and with the argument `postgresql` a database of the
 * tests' own PostgreSQL 15 (skipped, as tests/integration/pgserver.h says, where it is not
 * installed). Values of every type (and NULL) go in and come back as they were, a `$n` parameter
 * may be used twice, cached statements stay right when a query on the same text is open and when
 * more texts run than the cache holds, transactions and savepoints undo what they should, a read
 * transaction sees one snapshot, a unique violation is EEXIST, and a read-only connection's write
 * fails with its reason; a batch commits whole or not at all, saying which statement failed. On
 * PostgreSQL besides: a lost server is ENOTCONN, a row lock not had in
 * time is EAGAIN, and a lost connection connects again by itself (never inside the transaction
 * the loss cut), also after a loss in the middle of a batch's pipeline, and an open gives up on a
 * server that never answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pgserver.h"
#include "records/db.h"

static char dir[64], path[128];
/* NULL: the tests run on SQLite, at path. */
static struct pgserver *srv;
/* The current test's database: the path, or the PostgreSQL conninfo. */
static char target[256];

/* What each engine says where the tests look for its words. */
static const char *unique_message, *readonly_message;

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-db-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/t.db", dir);
    unique_message = "UNIQUE constraint failed";
    readonly_message = "readonly";
    return 0;
}

static int setup_pg(void **state)
{
    if (setup(state) < 0)
        return -1;
    unique_message = "duplicate key value violates unique constraint";
    readonly_message = "read-only transaction";
    return pgserver_new(&srv);
}

static int teardown(void **state)
{
    int r = pgserver_free(srv);
    return rm_rf(dir) < 0 ? -1 : r;
}

/* A new, empty database for the test: target names it. */
static void new_database(void)
{
    if (!srv) {
        unlink(path);
        snprintf(target, sizeof(target), "%s", path);
        return;
    }
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_new_database(srv, &conninfo), 0);
    snprintf(target, sizeof(target), "%s", conninfo);
}

static struct db *open_target(int flags)
{
    struct db *db;
    struct ig_error err = {};
    if (db_open(target, flags, &db, &err) < 0)
        fail_msg("opening %s: %s", target, err.message);
    return db;
}

/* A fresh database with table t. Its types are each engine's own (as the migrations' are):
 * PostgreSQL's INTEGER is 32 bits, REAL 32-bit floating point, and it has no BLOB. */
static struct db *open_t(void)
{
    struct ig_error err = {};
    new_database();
    struct db *db = open_target(DB_CREATE);
    assert_int_equal(db_exec_script(db,
                                    srv ? "CREATE TABLE t (k BIGINT PRIMARY KEY, s TEXT, b BYTEA, "
                                          "f DOUBLE PRECISION, n BIGINT);"
                                        : "CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, b BLOB, "
                                          "f REAL, n INTEGER);",
                                    &err),
                     0);
    return db;
}

static int64_t count(struct db *db, const char *sql, const struct db_value *v, size_t n)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    struct ig_error err = {};
    assert_int_equal(db_query(db, sql, v, n, &rows, &err), 0);
    assert_int_equal(db_next(rows), 1);
    return db_int(rows, 0);
}

static void test_values_round_trip(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    const struct db_value v[] = {DV_I(INT64_C(1) << 40), DV_S("text"), DV_B("\0\1\2", 3),
                                 DV_F(0.12345678901234567), DV_NULL_V};
    assert_int_equal(db_exec(db, "INSERT INTO t (k, s, b, f, n) VALUES ($1, $2, $3, $4, $5)", v,
                             ARRAY_SIZE(v), &err),
                     1);
    const struct db_value nulls[] = {DV_I(INT64_C(1) << 41), DV_S(NULL)};
    assert_int_equal(db_exec(db, "INSERT INTO t (k, s) VALUES ($1, $2)", nulls, 2, &err), 1);

    struct db_rows *rows;
    assert_int_equal(db_query(db, "SELECT k, s, b, f, n FROM t ORDER BY k", NULL, 0, &rows, &err),
                     0);
    assert_int_equal(db_next(rows), 1);
    assert_true(db_int(rows, 0) == INT64_C(1) << 40);
    assert_string_equal(db_text(rows, 1), "text");
    size_t len;
    const void *b = db_blob(rows, 2, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(b, "\0\1\2", 3);
    assert_true(db_double(rows, 3) == 0.12345678901234567);
    assert_true(db_is_null(rows, 4));
    assert_int_equal(db_int(rows, 4), 0);
    assert_false(db_is_null(rows, 0));
    assert_int_equal(db_next(rows), 1);
    assert_null(db_text(rows, 1));
    assert_null(db_blob(rows, 2, &len));
    assert_int_equal(len, 0);
    assert_int_equal(db_next(rows), 0);
    db_rows_free(rows);
    db_close(db);
}

static void test_parameter_used_twice(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    /* $2 twice, and the parameters out of order: bound by number, not by place. */
    const struct db_value v[] = {DV_I(7), DV_S("same")};
    assert_int_equal(db_exec(db, "INSERT INTO t (s, k, n) VALUES ($2, $1, length($2))", v, 2, &err),
                     1);
    assert_int_equal(
        count(db, "SELECT count(*) FROM t WHERE k = 7 AND s = 'same' AND n = 4", NULL, 0), 1);
    /* A `$` inside quotes is text. */
    assert_int_equal(db_exec(db, "UPDATE t SET s = '$1' WHERE k = $1", v, 1, &err), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM t WHERE s = '$1'", NULL, 0), 1);
    /* The portable form of an optional parameter. */
    const struct db_value none[] = {DV_NULL_V};
    assert_int_equal(
        count(db, "SELECT count(*) FROM t WHERE CAST($1 AS TEXT) IS NULL OR s = $1", none, 1), 1);
    db_close(db);
}

static void test_cache_survives_open_queries(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    for (int i = 1; i <= 5; i++) {
        const struct db_value v[] = {DV_I(i)};
        assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES ($1)", v, 1, &err), 1);
    }
    static const char sql[] = "SELECT k FROM t WHERE k >= $1 ORDER BY k";
    const struct db_value from2[] = {DV_I(2)}, from4[] = {DV_I(4)};
    struct db_rows *outer, *inner;
    assert_int_equal(db_query(db, sql, from2, 1, &outer, &err), 0);
    assert_int_equal(db_next(outer), 1);
    assert_int_equal(db_int(outer, 0), 2);
    /* The same text while the first is open: its own statement, not the first's reset. */
    assert_int_equal(db_query(db, sql, from4, 1, &inner, &err), 0);
    assert_int_equal(db_next(inner), 1);
    assert_int_equal(db_int(inner, 0), 4);
    /* More distinct texts than the cache holds: the open queries' statements are not evicted. */
    for (int i = 0; i < 100; i++) {
        char other[64];
        snprintf(other, sizeof(other), "SELECT count(*) + %d FROM t", i);
        assert_int_equal(count(db, other, NULL, 0), 5 + i);
    }
    assert_int_equal(db_next(outer), 1);
    assert_int_equal(db_int(outer, 0), 3);
    assert_int_equal(db_next(inner), 1);
    assert_int_equal(db_int(inner, 0), 5);
    assert_int_equal(db_next(inner), 0);
    db_rows_free(inner);
    db_rows_free(outer);
    /* And the text runs again from its start, with new values. */
    assert_int_equal(count(db, sql, from4, 1), 4);
    db_rows_free(NULL);
    db_close(db);
}

static void test_transactions_and_savepoints(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    const struct db_value one[] = {DV_I(1)}, two[] = {DV_I(2)}, three[] = {DV_I(3)};
    static const char ins[] = "INSERT INTO t (k) VALUES ($1)";
    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, ins, one, 1, &err), 1);
    assert_int_equal(db_rollback(db), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 0);
    /* No transaction open: nothing to do. */
    assert_int_equal(db_rollback(db), 0);

    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, ins, one, 1, &err), 1);
    assert_int_equal(db_savepoint(db, "op"), 0);
    assert_int_equal(db_exec(db, ins, two, 1, &err), 1);
    assert_int_equal(db_rollback_to(db, "op"), 0);
    assert_int_equal(db_release(db, "op"), 0);
    assert_int_equal(db_savepoint(db, "op"), 0);
    assert_int_equal(db_exec(db, ins, three, 1, &err), 1);
    assert_int_equal(db_release(db, "op"), 0);
    assert_int_equal(db_commit(db, &err), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t WHERE k IN (1, 3)", NULL, 0), 2);
    assert_int_equal(count(db, "SELECT count(*) FROM t WHERE k = 2", NULL, 0), 0);

    /* A read transaction, and durability switched between transactions. */
    assert_int_equal(db_set_durable(db, true, &err), 0);
    assert_int_equal(db_begin_read(db, &err), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 2);
    assert_int_equal(db_commit(db, &err), 0);
    assert_int_equal(db_set_durable(db, false, &err), 0);

    int v = -1;
    assert_int_equal(db_user_version(db, &v, &err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(db_set_user_version(db, 7, &err), 0);
    assert_int_equal(db_user_version(db, &v, &err), 0);
    assert_int_equal(v, 7);
    db_close(db);
}

static void test_failures(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    const struct db_value v[] = {DV_I(1)};
    static const char ins[] = "INSERT INTO t (k) VALUES ($1)";
    assert_int_equal(db_exec(db, ins, v, 1, &err), 1);
    /* A unique violation is EEXIST, in err and from db_fail, which names what failed. */
    assert_int_equal(db_exec(db, ins, v, 1, &err), -EEXIST);
    assert_non_null(strstr(err.message, unique_message));
    ig_error_clear(&err);
    assert_int_equal(db_exec(db, ins, v, 1, NULL), -EEXIST);
    assert_int_equal(db_fail(db, &err, "adding row %d", 1), -EEXIST);
    assert_non_null(strstr(err.message, "adding row 1: "));
    assert_non_null(strstr(err.message, unique_message));
    /* SQL that does not prepare: EIO, the engine's reason. */
    ig_error_clear(&err);
    assert_int_equal(db_exec(db, "INSERT INTO nowhere VALUES (1)", NULL, 0, &err), -EIO);
    assert_non_null(strstr(err.message, "nowhere"));
    ig_error_clear(&err);
    assert_int_equal(
        db_exec_script(db, "CREATE TABLE u (x BIGINT); INSERT INTO nowhere VALUES (1);", &err),
        -EIO);
    assert_non_null(strstr(err.message, "nowhere"));
    db_close(db);

    /* A read-only connection reads, and its write fails with the engine's reason. */
    ig_error_clear(&err);
    db = open_target(DB_READONLY);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 1);
    assert_int_equal(db_exec(db, ins, (const struct db_value[]){DV_I(2)}, 1, &err), -EIO);
    assert_non_null(strstr(err.message, readonly_message));
    db_close(db);

    /* A database that is not there is not made without DB_CREATE (PostgreSQL's never is: it is
     * made beforehand); the error names it. */
    ig_error_clear(&err);
    char missing[256];
    if (srv)
        snprintf(missing, sizeof(missing), "host=%s port=%u dbname=t_missing user=postgres",
                 srv->dir, srv->port);
    else
        snprintf(missing, sizeof(missing), "%s/missing.db", dir);
    assert_int_equal(db_open(missing, DB_WRITER, &db, &err), srv ? -ENOTCONN : -EIO);
    assert_non_null(strstr(err.message, srv ? "t_missing" : missing));
    if (srv) {
        /* Named so: t_missing can be made, so it was not. */
        _cleanup_free_ char *conninfo = NULL;
        assert_int_equal(pgserver_database(srv, "t_missing", &conninfo), 0);
    } else {
        assert_int_equal(access(missing, F_OK), -1);
    }
}

/* A database another connection holds locked past the wait (5 s for the loop's connection) is
 * EAGAIN: the store is busy, which the API answers 503, not a conflict of the request's. */
static void test_locked_is_busy(void **state)
{
    if (srv)
        skip(); /* SQLite's file lock; PostgreSQL's row locks are test_lock_timeout's */
    struct db *a = open_t(), *b = NULL;
    struct ig_error err = {};
    assert_int_equal(db_begin(a, &err), 0);
    assert_int_equal(
        db_exec(a, "INSERT INTO t (k) VALUES ($1)", (const struct db_value[]){DV_I(9)}, 1, &err),
        1);
    assert_int_equal(db_open(path, DB_CREATE, &b, &err), 0);
    assert_int_equal(db_begin(b, &err), -EAGAIN);
    assert_non_null(strstr(err.message, "locked"));
    assert_int_equal(db_rollback(a), 0);
    ig_error_clear(&err);
    assert_int_equal(db_begin(b, &err), 0);
    assert_int_equal(db_commit(b, &err), 0);
    db_close(b);
    db_close(a);
}

/* A read transaction's reads see the database as it was at its first read, whatever another
 * connection commits meanwhile. */
static void test_read_snapshot(void **state)
{
    struct db *db = open_t(), *other = open_target(0);
    struct ig_error err = {};
    static const char ins[] = "INSERT INTO t (k) VALUES ($1)";
    assert_int_equal(db_exec(db, ins, (const struct db_value[]){DV_I(1)}, 1, &err), 1);
    assert_int_equal(db_begin_read(db, &err), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 1);
    assert_int_equal(db_exec(other, ins, (const struct db_value[]){DV_I(2)}, 1, &err), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 1);
    assert_int_equal(db_commit(db, &err), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 2);
    db_close(other);
    db_close(db);
}

/* Where the engines differ: a statement that fails inside a transaction. SQLite undoes that
 * statement alone and the transaction goes on; PostgreSQL aborts the whole transaction, and its
 * COMMIT rolls back, which db_commit reports. So a caller that goes on past a failure puts the
 * statement in a savepoint (the journal does): then both keep the rest. */
static void test_failure_inside_transaction(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    static const char ins[] = "INSERT INTO t (k) VALUES ($1)";
    const struct db_value one[] = {DV_I(1)}, two[] = {DV_I(2)};
    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, ins, one, 1, &err), 1);
    assert_int_equal(db_exec(db, ins, one, 1, &err), -EEXIST);
    ig_error_clear(&err);
    if (srv) {
        assert_int_equal(db_commit(db, &err), -EIO);
        assert_non_null(strstr(err.message, "rolled back"));
        assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 0);
    } else {
        assert_int_equal(db_commit(db, &err), 0);
        assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 1);
        assert_int_equal(db_exec(db, "DELETE FROM t", NULL, 0, &err), 1);
    }

    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, ins, one, 1, &err), 1);
    assert_int_equal(db_savepoint(db, "op"), 0);
    assert_int_equal(db_exec(db, ins, one, 1, &err), -EEXIST);
    assert_int_equal(db_rollback_to(db, "op"), 0);
    assert_int_equal(db_release(db, "op"), 0);
    assert_int_equal(db_exec(db, ins, two, 1, &err), 1);
    assert_int_equal(db_commit(db, &err), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 2);
    db_close(db);
}

/* A batch: every statement in one transaction, each one's rows changed reported; on PostgreSQL in
 * one pipeline. Long enough that its results must be read while the rest is sent, and with more
 * distinct texts than the statement cache holds, so statements are prepared, evicted and
 * deallocated inside the pipeline. A statement that fails (a duplicate key; a text that does not
 * parse, prepared inside the pipeline) or a value that cannot be bound fails the batch at its
 * index and leaves nothing of it; the connection goes on, and the text that did not parse fails
 * the same way again (its statement was never kept). */
static void test_batch(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    enum { N = 20000, TEXTS = 100 };
    static struct db_stmt stmts[N];
    static struct db_value values[N][2];
    static char texts[TEXTS][96];
    static int rows[N];
    for (int t = 0; t < TEXTS; t++)
        snprintf(texts[t], sizeof(texts[t]), "INSERT INTO t (k, s, n) VALUES ($1, $2, %d)", t);
    for (int i = 0; i < N; i++) {
        values[i][0] = DV_I(i);
        values[i][1] = DV_S("a text of some length, so that the pipeline is many kilobytes long");
        stmts[i] = (struct db_stmt){texts[i % TEXTS], values[i], 2};
    }
    size_t failed = 99;
    assert_int_equal(db_exec_batch(db, stmts, N - 2, rows, &failed, &err), 0);
    for (int i = 0; i < N - 2; i++)
        assert_int_equal(rows[i], 1);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), N - 2);
    assert_int_equal(count(db, "SELECT count(*) FROM t WHERE n = 42", NULL, 0), N / TEXTS);

    /* Rows changed by an update, none by a query. */
    const struct db_value low[] = {DV_I(10)};
    struct db_stmt two[] = {{"UPDATE t SET n = -1 WHERE k < $1", low, 1},
                            {"SELECT count(*) FROM t", NULL, 0}};
    assert_int_equal(db_exec_batch(db, two, 2, rows, &failed, &err), 0);
    assert_int_equal(rows[0], 10);
    assert_int_equal(rows[1], 0);

    /* A duplicate key at index 2: nothing of the batch stays. */
    struct db_stmt dup[] = {{texts[0], values[N - 2], 2},
                            {texts[1], values[N - 1], 2},
                            {texts[2], values[5], 2},
                            {texts[3], values[N - 1], 2}};
    assert_int_equal(db_exec_batch(db, dup, ARRAY_SIZE(dup), rows, &failed, &err), -EEXIST);
    assert_int_equal(failed, 2);
    assert_non_null(strstr(err.message, unique_message));
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), N - 2);

    /* A text that does not parse, new to the connection, at index 1. */
    struct db_stmt bad[] = {{texts[0], values[N - 2], 2},
                            {"INSERT INTO nowhere VALUES ($1)", low, 1}};
    for (int round = 0; round < 2; round++) {
        ig_error_clear(&err);
        assert_int_equal(db_exec_batch(db, bad, 2, rows, &failed, &err), -EIO);
        assert_int_equal(failed, 1);
        assert_non_null(strstr(err.message, "nowhere"));
    }
    /* A value that cannot be bound (PostgreSQL: more parameters than a statement may have). */
    if (srv) {
        static struct db_value many[100];
        for (size_t i = 0; i < ARRAY_SIZE(many); i++)
            many[i] = DV_I(1);
        struct db_stmt wide[] = {{texts[0], values[N - 2], 2},
                                 {"SELECT 1", many, ARRAY_SIZE(many)}};
        assert_int_equal(db_exec_batch(db, wide, 2, rows, &failed, &err), -EINVAL);
        assert_int_equal(failed, 1);
    }
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), N - 2);

    /* The connection goes on. */
    assert_int_equal(db_exec_batch(db, stmts + N - 2, 2, rows, &failed, &err), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), N);
    db_close(db);
}

/* PostgreSQL: the server stopped under an open connection (a crash of the database, as clients
 * see it). The next statement fails with ENOTCONN, saying the store is unreachable, and so does
 * every one after it on that connection while the server is down (test_reconnects: and after);
 * opening fails the same way while the server is down; once it is back, a new connection works
 * and finds what was committed. */
static void test_lost_server(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (1)", NULL, 0, &err), 1);
    assert_int_equal(pgserver_stop_immediate(srv), 0);

    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (2)", NULL, 0, &err), -ENOTCONN);
    assert_non_null(strstr(err.message, "the store is unreachable"));
    ig_error_clear(&err);
    struct db_rows *rows = NULL;
    assert_int_equal(db_query(db, "SELECT count(*) FROM t", NULL, 0, &rows, &err), -ENOTCONN);
    assert_null(rows);
    ig_error_clear(&err);
    assert_int_equal(db_fail(db, &err, "counting"), -ENOTCONN);
    assert_non_null(strstr(err.message, "counting: the store is unreachable"));
    assert_int_equal(db_rollback(db), -ENOTCONN);
    db_close(db);

    ig_error_clear(&err);
    assert_int_equal(db_open(target, 0, &db, &err), -ENOTCONN);
    assert_non_null(strstr(err.message, "the store is unreachable"));

    assert_int_equal(pgserver_start(srv), 0);
    db = open_target(0);
    assert_int_equal(count(db, "SELECT count(*) FROM t WHERE k = 1", NULL, 0), 1);
    db_close(db);
}

/* The first column of the one row sql returns, as text (copied into buf). */
static const char *text_of(struct db *db, const char *sql, char *buf, size_t size)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    struct ig_error err = {};
    assert_int_equal(db_query(db, sql, NULL, 0, &rows, &err), 0);
    assert_int_equal(db_next(rows), 1);
    snprintf(buf, size, "%s", db_text(rows, 0));
    return buf;
}

/* Runs sql on db until it succeeds: a lost connection connects again by itself, at its backoff's
 * pace. Fails the test past a bound far beyond that pace (2 s a step). */
static int exec_until_back(struct db *db, const char *sql, const struct db_value *v, size_t n)
{
    struct ig_error err = {};
    int r;
    for (int i = 0; (r = db_exec(db, sql, v, n, &err)) == -ENOTCONN; i++) {
        if (i > 3000)
            fail_msg("never connected again: %s", err.message);
        ig_error_clear(&err);
        usleep(10 * 1000);
    }
    if (r < 0)
        fail_msg("%s: %s", sql, err.message);
    return r;
}

/* PostgreSQL: a connection whose server went away (stopped immediately, then started again)
 * connects again by itself, with no new db_open: a statement it prepared before runs again
 * (prepared on the new connection), its db_set_durable setting is made again, and what was
 * committed is there. The process's reachability says down with the reason while it is away and
 * counts one disconnect, up once the connection is back. */
static void test_reconnects(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    char buf[64];
    const char *insert = "INSERT INTO t (k, s) VALUES ($1, $2)";
    const struct db_value one[] = {DV_I(1), DV_S("before")}, two[] = {DV_I(2), DV_S("after")};
    assert_int_equal(db_exec(db, insert, one, 2, &err), 1);
    /* After the commit: an immediate stop may lose commits made with synchronous_commit off. */
    assert_int_equal(db_set_durable(db, false, &err), 0);
    struct db_reachability before, away, back;
    db_get_reachability(&before);
    assert_true(before.up);

    assert_int_equal(pgserver_stop_immediate(srv), 0);
    assert_int_equal(db_exec(db, insert, two, 2, &err), -ENOTCONN);
    /* At once, without trying the server again: the backoff's first step has not passed. */
    assert_int_equal(db_exec(db, insert, two, 2, &err), -ENOTCONN);
    db_get_reachability(&away);
    assert_false(away.up);
    assert_true(away.disconnects == before.disconnects + 1);
    assert_non_null(strstr(away.reason, "the store is unreachable"));

    assert_int_equal(pgserver_start(srv), 0);
    assert_int_equal(exec_until_back(db, insert, two, 2), 1);
    db_get_reachability(&back);
    assert_true(back.up);
    assert_true(back.disconnects == away.disconnects);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 2);
    assert_string_equal(text_of(db, "SHOW synchronous_commit", buf, sizeof(buf)), "off");
    db_close(db);
}

/* PostgreSQL: a connection lost inside a transaction does not go on with the transaction's later
 * statements on a new connection (each would commit alone): they fail with ENOTCONN even once the
 * server is back, until db_rollback gives the transaction up; nothing of it was committed. */
static void test_no_reconnect_inside_transaction(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (1)", NULL, 0, &err), 1);
    assert_int_equal(pgserver_stop_immediate(srv), 0);
    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (2)", NULL, 0, &err), -ENOTCONN);
    assert_int_equal(pgserver_start(srv), 0);
    /* Another connection made says the store is back: a lost one may try at once. */
    db_close(open_target(0));

    ig_error_clear(&err);
    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (3)", NULL, 0, &err), -ENOTCONN);
    assert_int_equal(db_commit(db, &err), -ENOTCONN);
    assert_int_equal(db_rollback(db), -ENOTCONN);
    assert_int_equal(exec_until_back(db, "INSERT INTO t (k) VALUES (4)", NULL, 0), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 1);
    assert_int_equal(count(db, "SELECT k FROM t", NULL, 0), 4);
    db_close(db);
}

/* PostgreSQL: a connection idle through the whole outage, used after another connection found
 * the store back, connects again before its statement (its server restarted under it), which
 * works, and no second disconnect is counted. */
static void test_stale_connection(void **state)
{
    struct db *db = open_t(), *idle = open_target(0);
    struct ig_error err = {};
    assert_int_equal(count(idle, "SELECT count(*) FROM t", NULL, 0), 0);
    assert_int_equal(pgserver_stop_immediate(srv), 0);
    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (1)", NULL, 0, &err), -ENOTCONN);
    assert_int_equal(pgserver_start(srv), 0);
    assert_int_equal(exec_until_back(db, "INSERT INTO t (k) VALUES (1)", NULL, 0), 1);
    struct db_reachability back, after;
    db_get_reachability(&back);

    assert_int_equal(db_exec(idle, "INSERT INTO t (k) VALUES (2)", NULL, 0, &err), 1);
    db_get_reachability(&after);
    assert_true(after.up);
    assert_true(after.disconnects == back.disconnects);
    assert_int_equal(count(idle, "SELECT count(*) FROM t", NULL, 0), 2);
    db_close(idle);
    db_close(db);
}

/* PostgreSQL: a row another transaction holds, not had within lock_timeout, is EAGAIN (as SQLite's
 * write lock past its busy wait): the work may run again later. */
static void test_lock_timeout(void **state)
{
    struct db *db = open_t(), *other = open_target(0);
    struct ig_error err = {};
    assert_int_equal(db_exec(db, "INSERT INTO t (k) VALUES (1)", NULL, 0, &err), 1);
    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, "UPDATE t SET n = 1 WHERE k = 1", NULL, 0, &err), 1);
    /* The wait shortened: the default is SQLite's busy wait, seconds. */
    assert_int_equal(db_exec(other, "SET lock_timeout = '50ms'", NULL, 0, &err), 0);
    assert_int_equal(db_exec(other, "UPDATE t SET n = 2 WHERE k = 1", NULL, 0, &err), -EAGAIN);
    assert_non_null(strstr(err.message, "lock"));
    assert_int_equal(db_commit(db, &err), 0);
    assert_int_equal(db_exec(other, "UPDATE t SET n = 2 WHERE k = 1", NULL, 0, &err), 1);
    db_close(other);
    db_close(db);
}

/* PostgreSQL: the connection lost in the middle of a pipeline (its backend ends itself at the
 * batch's second statement): ENOTCONN, nothing of the batch committed, and the connection
 * connects again for the next batch. */
static void test_batch_cut(void **state)
{
    struct db *db = open_t();
    struct ig_error err = {};
    const struct db_value one[] = {DV_I(1)}, two[] = {DV_I(2)};
    static const char ins[] = "INSERT INTO t (k) VALUES ($1)";
    struct db_stmt cut[] = {
        {ins, one, 1}, {"SELECT pg_terminate_backend(pg_backend_pid())", NULL, 0}, {ins, two, 1}};
    int rows[3];
    size_t failed = 99;
    assert_int_equal(db_exec_batch(db, cut, 3, rows, &failed, &err), -ENOTCONN);
    assert_int_equal(failed, 1);
    assert_non_null(strstr(err.message, "the store is unreachable"));
    struct db_stmt again[] = {{ins, one, 1}, {ins, two, 1}};
    int r;
    for (int i = 0; i < 100 && (r = db_exec_batch(db, again, 2, rows, &failed, &err)) == -ENOTCONN;
         i++)
        usleep(20 * 1000);
    assert_int_equal(r, 0);
    assert_int_equal(count(db, "SELECT count(*) FROM t", NULL, 0), 2);
    db_close(db);
}

/* PostgreSQL: a server that takes the connection and never answers (a listening socket that
 * accepts nothing: the kernel completes the handshake, libpq sends its startup packet and waits)
 * fails the open with ENOTCONN once the open's bound passes, whatever libpq's connect_timeout
 * (unset here) would wait: without the bound, this test waits until meson's timeout. */
static void test_open_gives_up(void **state)
{
    char port[16], silent[128];
    int fd = harness_listen_loopback(port);
    snprintf(silent, sizeof(silent), "host=127.0.0.1 port=%s dbname=nothing user=nobody", port);
    struct db *db = NULL;
    struct ig_error err = {};
    assert_int_equal(db_open(silent, 0, &db, &err), -ENOTCONN);
    assert_null(db);
    assert_non_null(strstr(err.message, "the store is unreachable: connecting timed out"));
    assert_null(strstr(err.message, "password"));
    close(fd);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_round_trip),
        cmocka_unit_test(test_parameter_used_twice),
        cmocka_unit_test(test_cache_survives_open_queries),
        cmocka_unit_test(test_transactions_and_savepoints),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_locked_is_busy),
        cmocka_unit_test(test_read_snapshot),
        cmocka_unit_test(test_failure_inside_transaction),
        cmocka_unit_test(test_batch),
        /* PostgreSQL's alone (below). */
        cmocka_unit_test(test_lost_server),
        cmocka_unit_test(test_lock_timeout),
        cmocka_unit_test(test_reconnects),
        cmocka_unit_test(test_no_reconnect_inside_transaction),
        cmocka_unit_test(test_stale_connection),
        cmocka_unit_test(test_batch_cut),
        cmocka_unit_test(test_open_gives_up),
    };
    if (argc > 1 && streq(argv[1], "postgresql"))
        return cmocka_run_group_tests_name("postgresql", tests, setup_pg, teardown);
    return test_run_group("sqlite", tests, ARRAY_SIZE(tests) - 7, setup, teardown);
}
