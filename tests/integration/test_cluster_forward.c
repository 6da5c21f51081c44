/* Sync invocations placed across the hosts of one PostgreSQL store (issue #17, api/forward.h):
 * three hosts with one cluster_key. A function warm only on host B, invoked on host A, runs on B
 * (Ignis-Host says so) without a cold start, and keeps the caller's token (an invoker reads its
 * record on B; a forged Ignis-Forwarded is refused); with B's only container busy, A's
 * invocation cold starts on the function's home host C (rendezvous hashing, the same pure code
 * as ignisd's), and with C's busy too (max_scale is the cluster's, one container a host here),
 * C refuses it and A runs it itself; /metrics counts the forwards and their hop; B killed with
 * kill -9 while A forwards to it: every caller of A gets its result (placed again) or a clear
 * 502/503 within its deadline, never a hang. A min_scale of 1 keeps one container, on the home
 * host; a drained host's queued sync invocations run on the others. On a private server of this
 * test's own. */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dispatch/cluster.h"
#include "dispatch/placement.h"
#include "pgserver.h"

#define HOSTS 3
#define A     0
#define B     1
#define C     2

static struct ignisd_proc host[HOSTS];
static const char *const ids[HOSTS] = {"host-a", "host-b", "host-c"};

/* A name whose home host (all three live) is host. */
static void name_homed_on(size_t want, const char *prefix, char ret[16])
{
    struct placement_host v[HOSTS];
    for (int i = 0; i < HOSTS; i++)
        v[i] = (struct placement_host){.id = ids[i], .live = true, .memory_free = 1ll << 40};
    for (int n = 0;; n++) {
        snprintf(ret, 16, "%s%d", prefix, n);
        if (placement_home(ret, v, HOSTS, 128ll << 20) == (ssize_t)want)
            return;
    }
}

/* A database of the test server's for three hosts, a cluster key they share, and their
 * arguments. */
struct three {
    char *conninfo;
    char key[40];
    const char *args[HOSTS][7];
};

static void three_prepare(struct three *t)
{
    assert_int_equal(pgserver_new_database(pgserver_shared, &t->conninfo), 0);
    snprintf(t->key, sizeof(t->key), "/tmp/ignis-cluster-key.XXXXXX");
    int fd = mkstemp(t->key);
    assert_true(fd >= 0);
    uint8_t key[32];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(random() & 0xff);
    assert_int_equal(write(fd, key, sizeof(key)), (ssize_t)sizeof(key));
    close(fd);
    for (int i = 0; i < HOSTS; i++) {
        const char *a[] = {"--store",       t->conninfo, "--host-id", ids[i],
                           "--cluster-key", t->key,      NULL};
        memcpy(t->args[i], a, sizeof(a));
    }
}

/* Stops the hosts still running (each must exit 0) and removes the key. */
static void three_finish(struct three *t)
{
    for (int i = 0; i < HOSTS; i++)
        assert_int_equal(host[i].pid > 0 ? harness_finish(&host[i]) : harness_cleanup(&host[i]), 0);
    unlink(t->key);
    free(t->conninfo);
}

/* A sync invocation of fn on p with body, as token (NULL: p's admin token): its status, and the
 * values of Ignis-Host and Ignis-Cold-Start (and the invocation's id, unless NULL). */
static long invoke_as(struct ignisd_proc *p, const char *token, const char *fn, const char *body,
                      char ret_host[64], char ret_cold[16], char ret_id[64])
{
    struct client *c;
    assert_int_equal(client_new(p->url, &c), 0);
    assert_int_equal(client_set_token(c, token ? token : p->token), 0);
    client_set_timeout(c, 30000);
    char path[128];
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", fn);
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct client_response r;
    struct ig_error err = {};
    assert_int_equal(client_request(c, "POST", path, headers, body, strlen(body), &r, &err), 0);
    if (!client_response_header(&r, "Ignis-Host", ret_host, 64))
        ret_host[0] = '\0';
    if (!client_response_header(&r, "Ignis-Cold-Start", ret_cold, 16))
        ret_cold[0] = '\0';
    if (ret_id && !client_response_header(&r, "Ignis-Invocation-Id", ret_id, 64))
        ret_id[0] = '\0';
    long status = r.status;
    if (status != 200)
        fprintf(stderr, "invoke %s on %s: %ld %s\n", fn, p->url, status, r.body);
    client_response_clear(&r);
    client_free(c);
    return status;
}

/* POST /v1/tokens on p for an invoker: its text (malloc'd). */
static char *invoker_token(struct ignisd_proc *p)
{
    const char *body = "{\"role\": \"invoker\"}";
    struct client_response r;
    assert_int_equal(harness_request(p, "POST", "/v1/tokens", NULL, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 201);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    char *t = strdup(cJSON_GetObjectItem(j, "token")->valuestring);
    cJSON_Delete(j);
    return t;
}

/* GET path on p as token: the status. */
static long get_as(struct ignisd_proc *p, const char *token, const char *path)
{
    struct client *c;
    assert_int_equal(client_new(p->url, &c), 0);
    assert_int_equal(client_set_token(c, token), 0);
    struct client_response r;
    struct ig_error err = {};
    assert_int_equal(client_request(c, "GET", path, NULL, NULL, 0, &r, &err), 0);
    long s = r.status;
    client_response_clear(&r);
    client_free(c);
    return s;
}

static void test_forwarded_to_warm_then_home_then_peer_killed(void **state)
{
    struct three t;
    three_prepare(&t);
    /* A function whose home host is C: a run on B can only be a forward to its warm container,
     * and A, where the calls arrive, is the third host. */
    char fn[16], hosted[64], cold[16], id[64];
    const size_t home = C, third = A;
    name_homed_on(home, "fw", fn);

    /* B alone: it is the function's only host, so it runs it itself and keeps it warm. */
    assert_int_equal(harness_start(&host[B], t.args[B]), 0);
    harness_push(&host[B], "sleep", fn, "{\"max_scale\": 3}");
    assert_int_equal(invoke_as(&host[B], NULL, fn, "{\"ms\": 1}", hosted, cold, NULL), 200);
    assert_string_equal(hosted, "host-b");
    char *invoker = invoker_token(&host[B]);
    usleep(500 * 1000); /* B's warm capacity is published (50 ms, then its journal) */
    assert_int_equal(harness_start(&host[A], t.args[A]), 0);
    assert_int_equal(harness_start(&host[C], t.args[C]), 0);

    /* A has no container of it: the invocation goes to B's warm one, as the invoker. */
    assert_int_equal(invoke_as(&host[A], invoker, fn, "{\"ms\": 1}", hosted, cold, id), 200);
    assert_string_equal(hosted, "host-b");
    assert_string_equal(cold, "false");
    assert_int_equal((int)harness_live_number(&host[A], fn, "ready"), 0);
    char *out = NULL, *errout = NULL;
    int rc =
        harness_ignis(&host[A], &out, &errout, "invoke", fn, "-d", "{\"ms\": 1}", "--json", NULL);
    if (rc != 0 || !strstr(out, "\"host\":\"host-b\""))
        fail_msg("ignis invoke --json on host-a: exit %d: %s%s", rc, out, errout);
    free(out);
    free(errout);
    char path[160];
    snprintf(path, sizeof(path), "/v1/invocations/%s", id);
    long s = 404;
    for (int i = 0; i < 100 && s == 404; i++, usleep(20000))
        s = get_as(&host[B], invoker, path); /* recorded on B as the invoker's own */
    assert_int_equal(s, 200);

    /* A forged forward is refused: B acts on no Ignis-Forwarded that its key does not sign. */
    const char *forged[] = {"Ignis-Forwarded: from=host-a;to=host-b;mode=home;version=1;"
                            "exp=99999999999999;sig=00000000000000000000000000000000000000000"
                            "00000000000000000000000",
                            NULL};
    struct client_response r;
    assert_int_equal(harness_invoke(&host[B], fn, "{}", forged, &r), 403);
    assert_non_null(strstr(r.body, "forward_refused"));
    client_response_clear(&r);

    /* B's only container busy: A's invocation cold starts on the home host C, once A's
     * view of the hosts, read every second (CLUSTER_REFRESH_US), has C. */
    usleep(CLUSTER_REFRESH_US + 200 * 1000);
    struct harness_call busy;
    harness_invoke_start(&busy, &host[B], fn, "{\"ms\": 3000}", 30000);
    usleep(500 * 1000);
    assert_int_equal(invoke_as(&host[A], NULL, fn, "{\"ms\": 1}", hosted, cold, NULL), 200);
    assert_string_equal(hosted, ids[home]);
    assert_string_equal(cold, "true");
    harness_call_join(&busy);
    assert_int_equal(busy.status, 200);
    harness_call_clear(&busy);

    /* max_scale 3 is the cluster's: one container a host. With B's and the home host's both
     * busy, the third host's invocation is refused by the home host at once (no room) and runs
     * where it arrived. */
    struct harness_call busy2[2];
    harness_invoke_start(&busy2[0], &host[B], fn, "{\"ms\": 3000}", 30000);
    harness_invoke_start(&busy2[1], &host[home], fn, "{\"ms\": 3000}", 30000);
    usleep(500 * 1000);
    assert_int_equal(harness_live_number(&host[home], fn, "busy"), 1);
    assert_int_equal(invoke_as(&host[third], NULL, fn, "{\"ms\": 1}", hosted, cold, NULL), 200);
    assert_string_equal(hosted, ids[third]);
    assert_string_equal(cold, "true");
    assert_true(
        harness_metric(&host[third], "ignis_forwards_total{to=\"home\",outcome=\"refused\"}") >= 1);
    for (int i = 0; i < 2; i++) {
        harness_call_join(&busy2[i]);
        assert_int_equal(busy2[i].status, 200);
        harness_call_clear(&busy2[i]);
    }

    /* What A's /metrics says of it: forwards that ran, and their hops, in a scrape promtool
     * approves. */
    struct client_response scrape;
    assert_int_equal(harness_request(&host[A], "GET", "/metrics", NULL, NULL, 0, &scrape), 0);
    assert_int_equal(scrape.status, 200);
    harness_promtool_check(&host[A], scrape.body);
    client_response_clear(&scrape);
    assert_true(harness_metric(&host[A], "ignis_forwards_total{to=\"warm\",outcome=\"ran\"}") >= 1);
    assert_true(harness_metric(&host[A], "ignis_forward_hop_seconds_count") >= 1);

    /* B killed while A forwards to it. First one of A's calls running on B (B busy, with nothing
     * sent to it directly): until then, a call A ran itself or sent to C keeps running, so
     * the next one goes to B. */
    usleep(500 * 1000); /* B's container is free again, and said so */
    struct harness_call tries[4];
    size_t ntries = 0;
    bool on_b = false;
    while (!on_b && ntries < ARRAY_SIZE(tries)) {
        harness_invoke_start(&tries[ntries++], &host[A], fn, "{\"ms\": 3000}", 30000);
        usleep(400 * 1000);
        on_b = harness_live_number(&host[B], fn, "busy") == 1;
    }
    assert_true(on_b);
    /* More callers of A meanwhile; then B dies. The call running there gets 502 peer_lost, the
     * others of the long ones 200; the short ones their results (placed again) or 502/503, none
     * past its deadline. */
    struct harness_call around[4];
    for (size_t i = 0; i < ARRAY_SIZE(around); i++)
        harness_invoke_start(&around[i], &host[A], fn, "{\"ms\": 300}", 20000);
    kill(host[B].pid, SIGKILL);
    waitpid(host[B].pid, NULL, 0);
    host[B].pid = 0;
    /* The one running on B: 502 peer_lost, or, when its connection to B was one kept alive
     * (libcurl then sends the request again on a new one, which B's death refuses), placed
     * again and 200; each of the others 200. */
    for (size_t i = 0; i < ntries; i++) {
        harness_call_join(&tries[i]);
        if (tries[i].status != 200 &&
            !(tries[i].status == 502 && strstr(tries[i].reply, "peer_lost")))
            fail_msg("a long call of A's: %ld %s", tries[i].status,
                     tries[i].reply ? tries[i].reply : "(no reply)");
        harness_call_clear(&tries[i]);
    }
    assert_true(
        harness_metric(&host[A], "ignis_forwards_total{to=\"warm\",outcome=\"lost\"}") +
            harness_metric(&host[A], "ignis_forwards_total{to=\"warm\",outcome=\"unreachable\"}") >=
        1);
    int ok = 0, failed = 0;
    for (size_t i = 0; i < ARRAY_SIZE(around); i++) {
        harness_call_join(&around[i]);
        if (around[i].status != 200 && around[i].status != 502 && around[i].status != 503)
            fail_msg("a call around the kill: %ld %s", around[i].status,
                     around[i].reply ? around[i].reply : "(no reply)");
        ok += around[i].status == 200;
        failed += around[i].status != 200;
        harness_call_clear(&around[i]);
    }
    fprintf(stderr, "around B's kill: %d answered 200, %d 502/503\n", ok, failed);
    /* B gone (its heartbeat not yet old): A's calls are placed again, each answered 200. */
    for (int round = 0; round < 3; round++) {
        struct harness_call after[4];
        for (size_t i = 0; i < ARRAY_SIZE(after); i++)
            harness_invoke_start(&after[i], &host[A], fn, "{\"ms\": 100}", 20000);
        for (size_t i = 0; i < ARRAY_SIZE(after); i++) {
            harness_call_join(&after[i]);
            if (after[i].status != 200)
                fail_msg("round %d after the kill: %ld %s", round, after[i].status,
                         after[i].reply ? after[i].reply : "(no reply)");
            harness_call_clear(&after[i]);
        }
    }
    assert_true(harness_metric(&host[A], "ignis_forwards_total{to=\"warm\",outcome=\"ran\"}") >= 2);
    free(invoker);
    /* B's restart clears what its kill left (its containers), and it stops cleanly. */
    assert_int_equal(harness_restart(&host[B], t.args[B]), 0);
    three_finish(&t);
}

/* min_scale is the cluster's too: a min_scale of 1 keeps one container, on the home host (B
 * here, the function named for it). */
static char kept[16];

/* Whether the host arg knows the function kept: a push on another host reaches it by
 * LISTEN/NOTIFY (or the periodic re-read), so for a moment it answers 404. */
static bool known_on(void *arg)
{
    struct client_response r;
    char path[64];
    snprintf(path, sizeof(path), "/v1/functions/%s", kept);
    assert_int_equal(harness_request(arg, "GET", path, NULL, NULL, 0, &r), 0);
    long status = r.status;
    client_response_clear(&r);
    if (status != 404)
        assert_int_equal(status, 200);
    return status == 200;
}

static bool ready_on(void *arg)
{
    return harness_live_number(arg, kept, "ready") >= 1;
}

static void test_min_scale_kept_on_the_home_host(void **state)
{
    struct three t;
    three_prepare(&t);
    for (int i = 0; i < HOSTS; i++)
        assert_int_equal(harness_start(&host[i], t.args[i]), 0);
    name_homed_on(B, "kept", kept);
    usleep(CLUSTER_REFRESH_US + 200 * 1000); /* every host's view has the three */
    harness_push(&host[A], "hello-exec", kept, "{\"min_scale\": 1, \"reuse\": true}");
    for (int i = 0; i < HOSTS; i++)
        harness_wait_until(known_on, &host[i], 10, "the function pushed on A known", host, HOSTS);
    harness_wait_until(ready_on, &host[B], 30, "the home host's min_scale container", host, HOSTS);
    sleep(2); /* the other hosts' scalers had their turns */
    for (int i = 0; i < HOSTS; i++)
        assert_int_equal(harness_live_number(&host[i], kept, "ready") +
                             harness_live_number(&host[i], kept, "spawning"),
                         i == B);
    three_finish(&t);
}

/* A drained host's sync invocations still queued when it stops are run by the other hosts
 * (forwarded, mode move): their callers get 200, not 503; the one it was running finishes there
 * within the grace period. */
static void test_drain_moves_queued_sync_calls(void **state)
{
    struct three t;
    three_prepare(&t);
    for (int i = 0; i < HOSTS; i++)
        assert_int_equal(harness_start(&host[i], t.args[i]), 0);
    char fn[16];
    name_homed_on(A, "dr", fn);
    usleep(CLUSTER_REFRESH_US + 200 * 1000); /* every host's view has the three */
    /* One container a host: A, its home, runs the first call and queues the others. */
    harness_push(&host[A], "sleep", fn, "{\"max_scale\": 3}");
    struct harness_call first, queued[3];
    harness_invoke_start(&first, &host[A], fn, "{\"ms\": 2000}", 30000);
    usleep(300 * 1000);
    for (size_t i = 0; i < ARRAY_SIZE(queued); i++)
        harness_invoke_start(&queued[i], &host[A], fn, "{\"ms\": 100}", 30000);
    usleep(500 * 1000);
    assert_true(harness_live_number(&host[A], fn, "queue_depth") >= 1);

    struct client_response r;
    assert_int_equal(harness_request(&host[B], "POST", "/v1/hosts/host-a/drain", NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 202);
    client_response_clear(&r);
    for (size_t i = 0; i < ARRAY_SIZE(queued); i++) {
        harness_call_join(&queued[i]);
        char hosted[64] = "";
        client_response_header(&queued[i].response, "Ignis-Host", hosted, sizeof(hosted));
        if (queued[i].status != 200 || streq(hosted, "host-a"))
            fail_msg("queued call %zu: %ld on %s: %s", i, queued[i].status, hosted,
                     queued[i].reply ? queued[i].reply : "");
        harness_call_clear(&queued[i]);
    }
    harness_call_join(&first);
    assert_int_equal(first.status, 200);
    harness_call_clear(&first);
    assert_int_equal(harness_wait_exit(&host[A], 30), 0);
    three_finish(&t); /* A stopped already */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forwarded_to_warm_then_home_then_peer_killed),
        cmocka_unit_test(test_min_scale_kept_on_the_home_host),
        cmocka_unit_test(test_drain_moves_queued_sync_calls),
    };
    return cmocka_run_group_tests(tests, pgserver_group_setup, pgserver_group_teardown);
}
