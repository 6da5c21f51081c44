/* The tests' private PostgreSQL (pgserver.h), and the two things of libpq that the multi-host
 * store (issue #16) builds on, on that real server: each test's database is its own; a committed
 * row survives an immediate stop and a restart (and a connection from before comes back with
 * PQreset); pgserver_free leaves no process, socket or file behind; a connection made and queried
 * without ever blocking, driven by poll() on its socket as ignisd's event loop would drive it;
 * LISTEN/NOTIFY between two connections, delivered only when the notifying transaction commits. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "base/util.h"
#include "pgserver.h"

/* How long one wait on the socket may last: a bound against a hang, not a measurement. */
#define POLL_BOUND_MS 30000

static struct pgserver *srv;

static int setup(void **state)
{
    return pgserver_new(&srv);
}

static int teardown(void **state)
{
    return pgserver_free(srv);
}

/* A blocking connection to a new database NAME; fails the test unless it is made. */
static PGconn *connect_new_database(const char *name)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_database(srv, name, &conninfo), 0);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("%s: %s", conninfo, PQerrorMessage(c));
    return c;
}

/* Runs SQL, which must end as EXPECT (PGRES_COMMAND_OK, PGRES_TUPLES_OK); the result, to clear. */
static PGresult *exec_ok(PGconn *c, const char *sql, ExecStatusType expect)
{
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != expect)
        fail_msg("%s: %s (%s)", sql, PQresStatus(PQresultStatus(res)), PQerrorMessage(c));
    return res;
}

/* The one value SQL returns, compared with WANT. */
static void assert_value(PGconn *c, const char *sql, const char *want)
{
    PGresult *res = exec_ok(c, sql, PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 0), want);
    PQclear(res);
}

/* Waits (bounded) until fd is ready for EVENTS; what an event loop's epoll_wait would do. */
static void wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;
    while ((n = poll(&p, 1, POLL_BOUND_MS)) < 0 && errno == EINTR)
        ;
    if (n != 1)
        fail_msg("the socket was not ready within %d ms (events %d)", POLL_BOUND_MS, events);
}

static void test_databases_are_separate(void **state)
{
    PGconn *a = connect_new_database("t_separate_a"), *b = connect_new_database("t_separate_b");

    /* The template has nothing in it: a new database has no table of its own. */
    assert_value(b, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                 "0");
    PQclear(exec_ok(a, "CREATE TABLE only_in_a (i int)", PGRES_COMMAND_OK));
    PQclear(exec_ok(a, "INSERT INTO only_in_a VALUES (1)", PGRES_COMMAND_OK));
    assert_value(a, "SELECT count(*) FROM only_in_a", "1");

    PGresult *res = PQexec(b, "SELECT count(*) FROM only_in_a");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42P01"); /* undefined_table */
    PQclear(res);
    assert_value(b, "SELECT to_regclass('only_in_a') IS NULL", "t");

    /* A name is one database: a second CREATE of it fails. */
    char *conninfo = NULL;
    assert_int_equal(pgserver_database(srv, "t_separate_a", &conninfo), -1);
    assert_null(conninfo);
    PQfinish(a);
    PQfinish(b);
}

static void test_commit_survives_immediate_stop(void **state)
{
    PGconn *c = connect_new_database("t_crash");
    PQclear(exec_ok(c, "CREATE TABLE kept (v text)", PGRES_COMMAND_OK));
    PQclear(exec_ok(c, "INSERT INTO kept VALUES ('committed')", PGRES_COMMAND_OK));
    /* Begun, never committed: gone after the crash. */
    PQclear(exec_ok(c, "BEGIN", PGRES_COMMAND_OK));
    PQclear(exec_ok(c, "INSERT INTO kept VALUES ('in flight')", PGRES_COMMAND_OK));

    pid_t old = srv->pid;
    assert_int_equal(pgserver_stop_immediate(srv), 0);
    assert_int_equal(srv->pid, 0);
    assert_int_equal(kill(old, 0), -1);
    assert_int_equal(errno, ESRCH);
    /* The open connection learns that the server went away from the statement's result.
     * (PQstatus may still say CONNECTION_OK then, depending on whether libpq 15 saw the write or
     * the read fail first: a store must go by the result.) */
    PGresult *res = PQexec(c, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);

    assert_int_equal(pgserver_start(srv), 0);
    assert_true(srv->pid > 0 && srv->pid != old);
    /* The same connection string reaches it again. */
    PQreset(c);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("PQreset after the restart: %s", PQerrorMessage(c));
    assert_value(c, "SELECT string_agg(v, ',') FROM kept", "committed");
    PQfinish(c);
}

/* The pids whose parent is PID (the postmaster's backends and helpers). */
static size_t children_of(pid_t pid, pid_t *ret, size_t max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    size_t n = 0;
    while (d && (de = readdir(d)) && n < max) {
        char path[300], *text = NULL;
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        if (read_file(path, 4096, &text, NULL) < 0)
            continue;
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')'
         * ends it. */
        const char *close_paren = strrchr(text, ')');
        int ppid;
        if (close_paren && sscanf(close_paren + 1, " %*c %d", &ppid) == 1 && ppid == pid)
            ret[n++] = (pid_t)atoi(de->d_name);
        free(text);
    }
    if (d)
        closedir(d);
    return n;
}

static void test_free_leaves_nothing(void **state)
{
    struct pgserver *own;
    assert_int_equal(pgserver_new(&own), 0);
    char conninfo[160], dir[64], socket_path[108];
    snprintf(dir, sizeof(dir), "%s", own->dir);
    snprintf(socket_path, sizeof(socket_path), "%s/.s.PGSQL.%u", own->dir, own->port);
    snprintf(conninfo, sizeof(conninfo), "host=%s port=%u dbname=postgres user=postgres", own->dir,
             own->port);
    uint16_t port = own->port;
    pid_t postmaster = own->pid;
    /* A client connected while it is freed: fast shutdown ends its backend too. */
    PGconn *c = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pid_t children[64];
    size_t n = children_of(postmaster, children, ARRAY_SIZE(children));
    assert_true(n >= 2); /* at least the client's backend and the checkpointer */

    assert_int_equal(pgserver_free(own), 0);

    assert_int_equal(kill(postmaster, 0), -1);
    for (size_t i = 0; i < n; i++)
        if (kill(children[i], 0) == 0 || errno != ESRCH)
            fail_msg("postgres's child %d is still there", (int)children[i]);
    assert_int_equal(access(dir, F_OK), -1);
    assert_int_equal(access(socket_path, F_OK), -1);
    /* Nothing answers on its socket or its port. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", socket_path);
    assert_int_equal(connect(fd, (struct sockaddr *)&un, sizeof(un)), -1);
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in in = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof(in)), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);
    PQfinish(c);
}

/* Connects without blocking: PQconnectStart, then PQconnectPoll whenever poll() says the socket
 * is ready for what it asked for (the socket may change while connecting). */
static PGconn *connect_nonblocking(const char *conninfo)
{
    PGconn *c = PQconnectStart(conninfo);
    assert_non_null(c);
    assert_int_not_equal(PQstatus(c), CONNECTION_BAD);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            fail_msg("PQconnectPoll: %s", PQerrorMessage(c));
        wait_fd(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        st = PQconnectPoll(c);
    }
    return c;
}

static void test_nonblocking_connection(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_database(srv, "t_nonblocking", &conninfo), 0);
    PGconn *c = connect_nonblocking(conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    assert_int_equal(PQsetnonblocking(c, 1), 0);
    assert_int_equal(PQisnonblocking(c), 1);
    int fd = PQsocket(c);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK); /* a read or write never stops the loop */

    /* A query that cannot be answered before the server's 0.2 s sleep is over: the send
     * returns at once, and the connection is busy until the result has come in. */
    const char *params[] = {"42"};
    assert_int_equal(
        PQsendQueryParams(c, "SELECT $1::int + 0, pg_sleep(0.2)", 1, NULL, params, NULL, NULL, 0),
        1);
    int flushed;
    while ((flushed = PQflush(c)) == 1)
        wait_fd(fd, POLLOUT);
    assert_int_equal(flushed, 0);
    assert_int_equal(PQisBusy(c), 1);

    while (PQisBusy(c)) {
        wait_fd(fd, POLLIN);
        assert_int_equal(PQconsumeInput(c), 1);
    }
    PGresult *res = PQgetResult(c); /* not busy: this does not block */
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "42");
    PQclear(res);
    assert_null(PQgetResult(c)); /* the end of this query's results */
    PQfinish(c);
}

/* The next notification on c, waiting (bounded) on its socket for it. */
static PGnotify *next_notification(PGconn *c)
{
    PGnotify *n;
    while (!(n = PQnotifies(c))) {
        wait_fd(PQsocket(c), POLLIN);
        assert_int_equal(PQconsumeInput(c), 1);
    }
    return n;
}

static void test_listen_notify(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_database(srv, "t_notify", &conninfo), 0);
    PGconn *listener = connect_nonblocking(conninfo), *writer = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(writer), CONNECTION_OK);
    PQclear(exec_ok(listener, "LISTEN ignis_changes", PGRES_COMMAND_OK));

    /* A rolled back transaction's notification is never sent; a committed one's is, after the
     * commit; one session's arrive in order. */
    PQclear(exec_ok(writer, "BEGIN", PGRES_COMMAND_OK));
    PQclear(exec_ok(writer, "NOTIFY ignis_changes, 'rolled back'", PGRES_COMMAND_OK));
    PQclear(exec_ok(writer, "ROLLBACK", PGRES_COMMAND_OK));
    PQclear(exec_ok(writer, "BEGIN", PGRES_COMMAND_OK));
    PQclear(
        exec_ok(writer, "SELECT pg_notify('ignis_changes', 'function f pushed')", PGRES_TUPLES_OK));
    PQclear(exec_ok(writer, "COMMIT", PGRES_COMMAND_OK));
    PQclear(exec_ok(writer, "NOTIFY ignis_changes, 'token t revoked'", PGRES_COMMAND_OK));

    PGnotify *n = next_notification(listener);
    assert_string_equal(n->relname, "ignis_changes");
    assert_string_equal(n->extra, "function f pushed");
    assert_int_equal(n->be_pid, PQbackendPID(writer));
    PQfreemem(n);
    n = next_notification(listener);
    assert_string_equal(n->extra, "token t revoked");
    PQfreemem(n);
    PQfinish(writer);
    PQfinish(listener);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_databases_are_separate),
        cmocka_unit_test(test_commit_survives_immediate_stop),
        cmocka_unit_test(test_nonblocking_connection),
        cmocka_unit_test(test_listen_notify),
        cmocka_unit_test(test_free_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
