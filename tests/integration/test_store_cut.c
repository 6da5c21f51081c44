/* The store lost without a word (issue #16). First the network: ignisd's PostgreSQL server runs in
 * a network namespace of this test's own, reached over a veth pair, and the test takes the link
 * down. No FIN, no RST: packets go nowhere, as when the server's machine is lost, the network
 * between is cut or a failover moves the server's address. The daemon finds out within
 * DB_TCP_USER_TIMEOUT_MS (records/db.h) and answers meanwhile: async invocations 503
 * store_unavailable with Retry-After, sync ones of a function it knows 200; with the link back
 * it is reachable again by itself and every 202 succeeds. Without the connections' TCP timeouts,
 * the first statement sent into the cut held the daemon's event loop for the kernel's
 * retransmissions, about 15 minutes, and every request with it. Then a server that hangs
 * (test_store_hangs_and_goes_on). */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "pgserver.h"

/* The link: the host's end 198.18.0.1, the server's 198.18.0.2 (RFC 2544's range for tests). */
#define HOST_ADDR   "198.18.0.1/30"
#define SERVER_ADDR "198.18.0.2"

/* Each request's bound: longer than the daemon may take to find the store gone, far shorter
 * than the retransmissions it waited for before. A bound on a hang, not a measurement. */
#define REQUEST_MS 30000

static char netns[32], host_end[16], server_end[16];

/* Runs ip with args (NULL-terminated), which must succeed. */
static void ip(const char *const *args)
{
    char *argv[16] = {"/usr/sbin/ip"};
    for (size_t i = 0; args[i] && i + 2 < ARRAY_SIZE(argv); i++)
        argv[i + 1] = (char *)args[i];
    _cleanup_free_ char *out = NULL, *err = NULL;
    if (harness_run(argv, &out, &err) != 0)
        fail_msg("ip %s %s %s: %s%s", args[0], args[1], args[2], out ? out : "", err ? err : "");
}

/* The server's end of the link, up or down. */
static void link_set(const char *state)
{
    ip((const char *[]){"-n", netns, "link", "set", "dev", server_end, state, NULL});
}

static int setup(void **state)
{
    harness_require_root();
    snprintf(netns, sizeof(netns), "ignis-cut-%d", (int)getpid());
    snprintf(host_end, sizeof(host_end), "icut%da", (int)getpid() % 100000);
    snprintf(server_end, sizeof(server_end), "icut%db", (int)getpid() % 100000);
    ip((const char *[]){"netns", "add", netns, NULL});
    ip((const char *[]){"link", "add", host_end, "type", "veth", "peer", "name", server_end,
                        "netns", netns, NULL});
    ip((const char *[]){"addr", "add", HOST_ADDR, "dev", host_end, NULL});
    ip((const char *[]){"link", "set", "dev", host_end, "up", NULL});
    ip((const char *[]){"-n", netns, "addr", "add", SERVER_ADDR "/30", "dev", server_end, NULL});
    link_set("up");
    struct pgserver *srv;
    if (pgserver_new_in(netns, SERVER_ADDR, &srv) < 0)
        return -1;
    *state = srv;
    return 0;
}

static int teardown(void **state)
{
    int r = pgserver_free(*state);
    /* The namespace takes the link with it: both ends go. */
    char *argv[] = {"/usr/sbin/ip", "netns", "delete", netns, NULL};
    if (harness_run(argv, NULL, NULL) != 0)
        r = -1;
    return r;
}

/* An async invocation of "cut" with its key, answered within REQUEST_MS: its status, and its id
 * when 202. A 503 must be store_unavailable with Retry-After. */
static long invoke_async(struct ignisd_proc *p, int n, char id[64])
{
    char key[64];
    snprintf(key, sizeof(key), "Idempotency-Key: cut-%d", n);
    const char *headers[] = {"Ignis-Invocation-Type: async", key, NULL};
    struct harness_call c;
    harness_call_start_with(&c, p, "POST", "/v1/functions/cut/invoke", headers, "{}", REQUEST_MS);
    harness_call_join(&c);
    long status = c.status;
    char buf[16];
    if (status == 202) {
        cJSON *j = harness_json(&c.response);
        snprintf(id, 64, "%s", cJSON_GetObjectItem(j, "id")->valuestring);
        cJSON_Delete(j);
    } else if (status != 503 || !strstr(c.reply, "\"store_unavailable\"") ||
               !client_response_header(&c.response, "Retry-After", buf, sizeof(buf))) {
        harness_print_log(p);
        fail_msg("async invocation %d: %ld %s", n, status, c.reply ? c.reply : "(no answer)");
    }
    harness_call_clear(&c);
    return status;
}

/* A sync invocation of "cut", which must run (200) within REQUEST_MS. */
static void invoke_sync(struct ignisd_proc *p)
{
    const char *headers[] = {"Ignis-Invocation-Type: sync", NULL};
    struct harness_call c;
    harness_call_start_with(&c, p, "POST", "/v1/functions/cut/invoke", headers, "{}", REQUEST_MS);
    harness_call_join(&c);
    if (c.status != 200) {
        harness_print_log(p);
        fail_msg("sync invocation: %ld %s", c.status, c.reply ? c.reply : "(no answer)");
    }
    harness_call_clear(&c);
}

/* The async invocations a test sent, and which of them were accepted. */
enum { MAX_SENT = 256 };
struct sent {
    char ids[MAX_SENT][64];
    bool accepted[MAX_SENT];
    int n;
};

/* An ignisd on the database at conninfo with the function "cut" run once, and one async
 * invocation of it accepted. */
static void start_with_one(struct ignisd_proc *p, const char *conninfo, struct sent *s)
{
    const char *args[] = {"--store", conninfo, NULL};
    assert_int_equal(harness_start(p, args), 0);
    harness_push(p, "hello-exec", "cut", NULL);
    invoke_sync(p);
    s->accepted[s->n] = invoke_async(p, s->n, s->ids[s->n]) == 202;
    assert_true(s->accepted[s->n++]);
}

/* The store gone: async invocations until one is refused (503 store_unavailable: found out, not
 * held; those accepted before were committed first), then the daemon working on: a function it
 * knows runs, its record waiting for the store. what: how the store went. */
static void until_refused(struct ignisd_proc *p, struct sent *s, const char *what)
{
    bool refused = false;
    for (; s->n < MAX_SENT - 1 && !refused; s->n++) {
        long status = invoke_async(p, s->n, s->ids[s->n]);
        s->accepted[s->n] = status == 202;
        refused = status == 503;
        if (!refused)
            usleep(100 * 1000);
    }
    if (!refused) {
        harness_print_log(p);
        fail_msg("%d async invocations accepted with the store %s", s->n, what);
    }
    assert_true(harness_log_has(p, "msg=\"the store is unreachable\""));
    assert_true(harness_metric(p, "ignis_store_up") == 0);
    invoke_sync(p);
}

/* The store back: async invocations until one is accepted, by the daemon alone; then every one
 * accepted succeeds, and the daemon stops cleanly. */
static void until_back(struct ignisd_proc *p, struct sent *s)
{
    bool back = false;
    for (int tries = 0; tries < 300 && !back && s->n < MAX_SENT; tries++, s->n++) {
        back = s->accepted[s->n] = invoke_async(p, s->n, s->ids[s->n]) == 202;
        if (!back)
            usleep(100 * 1000);
    }
    if (!back) {
        harness_print_log(p);
        fail_msg("the store never came back for the daemon");
    }
    assert_true(harness_log_has(p, "msg=\"the store is reachable again\""));
    assert_true(harness_metric(p, "ignis_store_up") == 1);
    for (int i = 0; i < s->n; i++)
        if (s->accepted[i])
            cJSON_Delete(harness_wait_invocation(p, s->ids[i], "succeeded", 60));
    assert_int_equal(harness_finish(p), 0);
}

static void test_store_cut_off_and_back(void **state)
{
    struct pgserver *srv = *state;
    _cleanup_free_ char *local = NULL;
    assert_int_equal(pgserver_database(srv, "cut", &local), 0);
    char conninfo[160];
    snprintf(conninfo, sizeof(conninfo), "host=%s port=%u dbname=cut user=postgres", SERVER_ADDR,
             srv->port);
    struct ignisd_proc p;
    static struct sent s;
    start_with_one(&p, conninfo, &s);
    link_set("down");
    until_refused(&p, &s, "cut off");
    link_set("up");
    until_back(&p, &s);
}

/* The server hangs (every process of it stopped, its sockets open: the kernel still accepts and
 * acknowledges) under a daemon connected through its Unix socket, where no TCP timeout helps:
 * the event loop's connection gives it up after DB_ANSWER_TIMEOUT_MS without an answer, and the
 * daemon answers as when the store is away; once the server goes on, so does the daemon, and
 * every 202 succeeds. */
static void test_store_hangs_and_goes_on(void **state)
{
    struct pgserver *srv = *state;
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_database(srv, "hang", &conninfo), 0);
    struct ignisd_proc p;
    static struct sent s;
    start_with_one(&p, conninfo, &s);
    assert_true(pgserver_signal_all(srv, SIGSTOP) > 1);
    until_refused(&p, &s, "hung");
    assert_true(harness_log_has(&p, "no answer within"));
    assert_true(pgserver_signal_all(srv, SIGCONT) > 1);
    until_back(&p, &s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_cut_off_and_back),
        cmocka_unit_test(test_store_hangs_and_goes_on),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
