/* The async queue shared by two ignisd hosts on one PostgreSQL store (issue #16), on a private
 * server of this test's own whatever IGNIS_TEST_STORE says: invocations accepted on A run on B
 * when A has no room for them; a host with a warm container and room takes what it accepts
 * itself, while each of its slots has at most one attempt waiting; a replayed idempotency key
 * answers the first id on either host; after kill -9 of A while it runs invocations, B requeues
 * them (A's advisory lock is free) and every accepted invocation succeeds, no attempt billed twice.
 * (A late finish refused by the fencing is shown directly by tests/unit/test_store.c.) */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pgserver.h"

/* A sync invocation of slow answers 200 on p: its bundle is there. */
static bool runs_on(void *arg)
{
    struct client_response r = {};
    long status = harness_invoke(arg, "slow", "{\"ms\": 1}", NULL, &r);
    client_response_clear(&r);
    return status == 200;
}

/* Whether p's log says it took id as it accepted it. */
static bool taken_here(const struct ignisd_proc *p, const char *id)
{
    char line[160];
    snprintf(line, sizeof(line), "taken here as it was accepted\" function=slow id=%s", id);
    return harness_log_has(p, line);
}

static void test_two_hosts_share_the_queue(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    struct ignisd_proc a, b;
    const char *args_a[] = {"--store", conninfo, "--host-id", "host-a", NULL};
    const char *args_b[] = {"--store", conninfo, "--host-id", "host-b", NULL};
    const char *fn = "{\"max_concurrency\": 1, \"max_scale\": 1}";
    assert_int_equal(harness_start(&a, args_a), 0);
    harness_push(&a, "sleep", "slow", fn);
    /* B, started after the push, takes the function and its bundle from the store (a second
     * push on B would make a version 2 that A then fetches meanwhile: 503 bundle_unavailable). */
    assert_int_equal(harness_start(&b, args_b), 0);
    harness_wait_until(runs_on, &b, 60, "B running the function pushed on A", &b, 1);

    /* A runs one at a time: B takes what A has no room for. */
    enum { N = 6 };
    char ids[N][64];
    for (int i = 0; i < N; i++)
        harness_invoke_async(&a, "slow", "{\"ms\": 400}", NULL, ids[i], NULL);
    for (int i = 0; i < N; i++)
        cJSON_Delete(harness_wait_invocation(&b, ids[i], "succeeded", 60));
    if (!harness_log_has(&b, "claimed queued invocations")) {
        harness_print_log(&b);
        fail_msg("B ran none of A's acceptances");
    }

    /* A key accepted on A answers its first id on B too. */
    char first[64], again[64];
    bool dup = false;
    harness_invoke_async(&a, "slow", "{\"ms\": 10}", "order-1", first, &dup);
    assert_false(dup);
    harness_invoke_async(&b, "slow", "{\"ms\": 10}", "order-1", again, &dup);
    assert_true(dup);
    assert_string_equal(first, again);
    cJSON_Delete(harness_wait_invocation(&a, first, "succeeded", 60));

    /* B, warm and idle, takes what it accepts itself: its row is inserted claimed by B (no claim
     * statement, no peer woken), and runs there, one attempt. */
    char mine[64];
    harness_invoke_async(&b, "slow", "{\"ms\": 10}", NULL, mine, NULL);
    cJSON *got = harness_wait_invocation(&b, mine, "succeeded", 60);
    assert_int_equal(cJSON_GetObjectItem(got, "attempts")->valueint, 1);
    cJSON_Delete(got);
    if (!taken_here(&b, mine)) {
        harness_print_log(&b);
        fail_msg("B did not take what it accepted: %s", mine);
    }

    /* kill -9 of A while it runs one of them: B requeues it (A's lock is free) and runs it. Each
     * runs for seconds, so that the row seen running is still A's when the kill comes. */
    char held[N][64];
    for (int i = 0; i < N; i++)
        harness_invoke_async(&a, "slow", "{\"ms\": 4000}", NULL, held[i], NULL);
    int running = 0;
    for (int i = 0; i < 3000 && running == 0; i++) {
        running =
            pgserver_query_int(conninfo, "SELECT count(*) FROM invocations WHERE lease_owner = "
                                         "'host-a' AND status = 'running'");
        if (running == 0)
            usleep(10 * 1000);
    }
    assert_true(running > 0);
    kill(a.pid, SIGKILL);
    waitpid(a.pid, NULL, 0);
    a.pid = 0;
    for (int i = 0; i < N; i++)
        cJSON_Delete(harness_wait_invocation(&b, held[i], "succeeded", 90));
    assert_true(harness_log_has(&b, "a host is gone: its running invocations are queued again"));
    /* Every accepted one succeeded once; no attempt was billed twice. */
    assert_int_equal(pgserver_query_int(conninfo,
                                        "SELECT count(*) FROM invocations WHERE async = 1 AND "
                                        "status <> 'succeeded'"),
                     0);
    assert_int_equal(pgserver_double_billed(conninfo), 0);

    /* A comes back: what it held was requeued already, and it claims again. */
    assert_int_equal(harness_restart(&a, args_a), 0);
    char later[64];
    harness_invoke_async(&a, "slow", "{\"ms\": 10}", NULL, later, NULL);
    cJSON_Delete(harness_wait_invocation(&a, later, "succeeded", 60));
    assert_int_equal(harness_stop(&a), 0);
    assert_int_equal(harness_stop(&b), 0);
    assert_int_equal(harness_cleanup(&a), 0);
    assert_int_equal(harness_cleanup(&b), 0);
}

/* A host takes what it accepts while each slot of its warm containers has at most one attempt
 * waiting behind the one it runs, busy or not; past that the rows are queued for any host to
 * claim (here, itself: it has room under max_concurrency). One container of concurrency 1: two
 * taken, the two after them claimed. */
static void test_takes_while_its_slots_have_room(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    struct ignisd_proc a;
    const char *args[] = {"--store", conninfo, "--host-id", "host-a", NULL};
    assert_int_equal(harness_start(&a, args), 0);
    harness_push(&a, "sleep", "slow", "{\"max_concurrency\": 10, \"max_scale\": 1}");
    assert_true(runs_on(&a)); /* warm */
    enum { N = 4 };
    char ids[N][64];
    for (int i = 0; i < N; i++)
        harness_invoke_async(&a, "slow", "{\"ms\": 1500}", NULL, ids[i], NULL);
    for (int i = 0; i < N; i++)
        cJSON_Delete(harness_wait_invocation(&a, ids[i], "succeeded", 60));
    for (int i = 0; i < N; i++)
        if (taken_here(&a, ids[i]) != (i < 2)) {
            harness_print_log(&a);
            fail_msg("invocation %d (%s) %s as it was accepted", i, ids[i],
                     i < 2 ? "not taken" : "taken");
        }
    assert_true(harness_log_has(&a, "claimed queued invocations"));
    assert_int_equal(harness_stop(&a), 0);
    assert_int_equal(harness_cleanup(&a), 0);
}

/* A host stopped gracefully (SIGTERM) hands back what it claimed or took and had not started:
 * its peer runs those at once, as attempt 1 (a requeue of a dead host's rows would count a
 * second), while the stopping host finishes the one it runs. B, alone at first, holds four
 * invocations of a function it runs one at a time. */
static void test_stopping_host_hands_back(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    struct ignisd_proc a, b;
    const char *args_a[] = {"--store", conninfo, "--host-id", "host-a", NULL};
    const char *args_b[] = {"--store", conninfo, "--host-id", "host-b", NULL};
    assert_int_equal(harness_start(&b, args_b), 0);
    harness_push(&b, "sleep", "slow", "{\"max_concurrency\": 10, \"max_scale\": 1}");
    assert_true(runs_on(&b));
    enum { N = 4 };
    char ids[N][64];
    for (int i = 0; i < N; i++)
        harness_invoke_async(&b, "slow", "{\"ms\": 3000}", NULL, ids[i], NULL);
    assert_int_equal(harness_start(&a, args_a), 0);
    harness_wait_until(runs_on, &a, 60, "A running the function pushed on B", &a, 1);

    assert_int_equal(kill(b.pid, SIGTERM), 0);
    for (int i = 0; i < N; i++) {
        cJSON *got = harness_wait_invocation(&a, ids[i], "succeeded", 60);
        if (cJSON_GetObjectItem(got, "attempts")->valueint != 1) {
            harness_print_log(&b);
            fail_msg("invocation %d (%s) ran %d times", i, ids[i],
                     cJSON_GetObjectItem(got, "attempts")->valueint);
        }
        cJSON_Delete(got);
    }
    assert_true(harness_log_has(&b, "had not started are handed back to the queue"));
    assert_int_equal(pgserver_query_int(conninfo, "SELECT count(*) FROM invocations WHERE "
                                                  "async = 1 AND status <> 'succeeded'"),
                     0);
    assert_int_equal(harness_stop(&b), 0);
    assert_int_equal(harness_stop(&a), 0);
    assert_int_equal(harness_cleanup(&a), 0);
    assert_int_equal(harness_cleanup(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_hosts_share_the_queue),
        cmocka_unit_test(test_takes_while_its_slots_have_room),
        cmocka_unit_test(test_stopping_host_hands_back),
    };
    return cmocka_run_group_tests(tests, pgserver_group_setup, pgserver_group_teardown);
}
