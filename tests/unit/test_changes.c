/* The change listener (records/changes.h) on the tests' own PostgreSQL 15 (skipped, as
 * tests/integration/pgserver.h says, where it is not installed): a notification another
 * connection commits is heard on the loop; a listening connection the server ends is opened
 * again by itself, which re-reads everything once and hears what comes after. The loss happens
 * while a forked child holds the process's files, as bundle_unpack's sandbox does while a bundle
 * is unpacked: libpq closes its socket when it finds the connection lost, and an epoll
 * registration outlives that close while another process holds the socket (epoll(7)), so the
 * loop must never have watched libpq's own descriptor (its watch freed, its events still
 * coming: a crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "groups.h"
#include "pgserver.h"
#include "records/changes.h"

static struct pgserver *srv;
static char *conninfo;

static int setup(void **state)
{
    if (pgserver_new(&srv) < 0 || pgserver_new_database(srv, &conninfo) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    free(conninfo);
    return pgserver_free(srv);
}

struct heard {
    int rereads, rereads_at_loss, changes;
    char last[160];
    bool terminated, notified;
    uint64_t deadline_us;
};

static void on_change(void *userdata, const char *kind, const char *name)
{
    struct heard *h = userdata;
    if (!kind) {
        h->rereads++;
        return;
    }
    h->changes++;
    snprintf(h->last, sizeof(h->last), "%s:%s", kind, name);
}

static const char listeners[] =
    "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN " CHANGES_CHANNEL "'";

/* Every 20 ms: ends the listener's backend once (after the re-read that follows the start, since
 * what was read before listening may have changed unannounced), then (after the reconnection's
 * re-read) sends a notification, and stops the loop once it is heard, or at the deadline. */
static void on_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct heard *h = userdata;
    if (!h->terminated) {
        assert_int_equal(h->rereads, 1);
        assert_int_equal(pgserver_query_int(conninfo, listeners), 1);
        assert_int_equal(
            pgserver_query_int(conninfo,
                               "SELECT count(pg_terminate_backend(pid)) FROM "
                               "pg_stat_activity WHERE query = 'LISTEN " CHANGES_CHANNEL "'"),
            1);
        h->terminated = true;
        h->rereads_at_loss = h->rereads;
    } else if (h->rereads > h->rereads_at_loss && !h->notified) {
        assert_int_equal(pgserver_query_int(conninfo, "SELECT count(pg_notify('" CHANGES_CHANNEL
                                                      "', 'function:after'))"),
                         1);
        h->notified = true;
    }
    if (h->changes > 0 || now_usec() > h->deadline_us) {
        loop_quit(l);
        return;
    }
    assert_int_equal(loop_add_timer(l, now_usec() + 20000, on_tick, h, NULL), 0);
}

static void test_heard_after_loss(void **state)
{
    struct loop *l;
    struct changes *c;
    struct ig_error err = {};
    struct heard h = {.deadline_us = now_usec() + 10 * 1000000ull};
    assert_int_equal(loop_new(&l), 0);
    if (changes_new(l, conninfo, on_change, &h, &c, &err) < 0)
        fail_msg("%s", err.message);
    /* Holds every file of the process, the listener's socket among them, until killed. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* and not past a crash of the test */
        pause();
        _exit(0);
    }
    assert_int_equal(loop_add_timer(l, now_usec() + 20000, on_tick, &h, NULL), 0);
    assert_int_equal(loop_run(l), 0);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_true(h.terminated);
    assert_int_equal(h.rereads, 2);
    assert_int_equal(h.changes, 1);
    assert_string_equal(h.last, "function:after");
    changes_free(c);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heard_after_loss),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
