/* The hosts sharing one PostgreSQL store as operators see them (issue #17): GET /v1/hosts and
 * `ignis hosts` on any host list every host with its address, version and heartbeat's age, and
 * the figures its heartbeat carries (containers ready and busy, memory used of its budget,
 * invocations per second); `ignis top --cluster` sums every live host's functions (and shows each
 * host's row with --by-host); a host killed with kill -9 is shown gone within 5 s (its heartbeat
 * older than HOSTS_GONE_AFTER_US), the others live, and live again once restarted; `ignis host
 * drain ID` on one host stops another (and POST /v1/hosts/ID/drain on a host, itself), and a drain
 * whose notification the host missed is found when it reads everything again; a gone host can be
 * forgotten (`ignis host forget ID`), a live one not. On a private
 * server of this test's own, whatever IGNIS_TEST_STORE says. */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgserver.h"
#include "records/changes.h"

#define HOSTS 3

static struct ignisd_proc host[HOSTS];

/* GET /v1/hosts on p (free it). */
static cJSON *hosts_of(struct ignisd_proc *p)
{
    struct client_response r;
    assert_int_equal(harness_request(p, "GET", "/v1/hosts", NULL, NULL, 0, &r), 0);
    if (r.status != 200)
        fail_msg("GET /v1/hosts: %ld %s", r.status, r.body);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    return j;
}

/* The host id's entry in a GET /v1/hosts reply; fails if absent. */
static const cJSON *entry(const cJSON *hosts, const char *id)
{
    const cJSON *h;
    cJSON_ArrayForEach(
        h, cJSON_GetObjectItem(hosts,
                               "hosts")) if (streq(cJSON_GetObjectItem(h, "host_id")->valuestring,
                                                   id)) return h;
    fail_msg("host %s is not listed", id);
    return NULL;
}

static double number(const cJSON *o, const char *path1, const char *path2)
{
    const cJSON *v = cJSON_GetObjectItem(o, path1);
    if (path2)
        v = cJSON_GetObjectItem(v, path2);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* A sync invocation of hi answers 200 on p. */
static bool runs_hi(void *arg)
{
    const char *sync[] = {"Ignis-Invocation-Type: sync", NULL};
    return harness_invoke(arg, "hi", "{}", sync, NULL) == 200;
}

/* What A's view of B says, as the poll's condition. */
struct seen {
    const char *id;
    bool (*check)(const cJSON *h);
};

static bool busy_enough(const cJSON *h)
{
    assert_true(runs_hi(&host[1])); /* B keeps running it meanwhile */
    return number(h, "containers", "ready") + number(h, "containers", "busy") >= 1 &&
           number(h, "invocations_per_s", NULL) > 0;
}

static bool gone(const cJSON *h)
{
    return streq(cJSON_GetObjectItem(h, "state")->valuestring, "gone");
}

static bool live(const cJSON *h)
{
    return streq(cJSON_GetObjectItem(h, "state")->valuestring, "live");
}

static bool a_sees(void *arg)
{
    const struct seen *s = arg;
    cJSON *j = hosts_of(&host[0]);
    bool ok = s->check(entry(j, s->id));
    cJSON_Delete(j);
    return ok;
}

/* METHOD /v1/hosts/ID plus suffix on p: the status. */
static long host_call(struct ignisd_proc *p, const char *method, const char *id, const char *suffix)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/hosts/%s%s", id, suffix);
    struct client_response r;
    assert_int_equal(harness_request(p, method, path, NULL, NULL, 0, &r), 0);
    long status = r.status;
    client_response_clear(&r);
    return status;
}

static long drain(struct ignisd_proc *p, const char *id)
{
    return host_call(p, "POST", id, "/drain");
}

static long forget(struct ignisd_proc *p, const char *id)
{
    return host_call(p, "DELETE", id, "");
}

static void test_hosts_listed_live_then_gone(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    static const char *const ids[HOSTS] = {"host-a", "host-b", "host-c"};
    const char *args[HOSTS][5];
    for (int i = 0; i < HOSTS; i++) {
        const char *a[] = {"--store", conninfo, "--host-id", ids[i], NULL};
        memcpy(args[i], a, sizeof(a));
        assert_int_equal(harness_start(&host[i], args[i]), 0);
    }
    harness_push(&host[0], "hello-exec", "hi", "{\"reuse\": true}");

    /* Every host listed, live; A is the one answering. */
    cJSON *j = hosts_of(&host[0]);
    assert_int_equal((int)number(j, "live", NULL), HOSTS);
    for (int i = 0; i < HOSTS; i++) {
        const cJSON *h = entry(j, ids[i]);
        assert_string_equal(cJSON_GetObjectItem(h, "state")->valuestring, "live");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(h, "this")) == (i == 0));
        assert_non_null(strstr(cJSON_GetObjectItem(h, "advertise")->valuestring, "http://"));
        assert_true(number(h, "memory", "budget_bytes") > 0);
    }
    cJSON_Delete(j);

    /* B runs the function (once it has taken it from the store), and goes on running it: A
     * sees B's container and rate once B's heartbeat carries them. */
    harness_wait_until(runs_hi, &host[1], 60, "host-b running the function pushed on host-a", host,
                       HOSTS);
    struct seen b_busy = {.id = "host-b", .check = busy_enough};
    harness_wait_until(a_sees, &b_busy, 20, "host-b's container and rate seen on host-a", host,
                       HOSTS);

    char *out = NULL, *err = NULL;
    int rc = harness_ignis(&host[0], &out, &err, "hosts", NULL);
    if (rc != 0 || !strstr(out, "host-a *") || !strstr(out, "host-b") || !strstr(out, "host-c") ||
        !strstr(out, "3 live"))
        fail_msg("ignis hosts: exit %d: %s%s", rc, out, err);
    free(out);
    free(err);

    /* ignis top --cluster sums the hosts' functions; --by-host shows B's row. */
    rc = harness_ignis(&host[0], &out, &err, "top", "--cluster", "--by-host", "--interval", "0.5",
                       NULL);
    if (rc != 0 || !strstr(out, "(3 of 3 live hosts answered)") || !strstr(out, "\nhi ") ||
        !strstr(out, "\nhi@host-b "))
        fail_msg("ignis top --cluster --by-host: exit %d: %s%s", rc, out, err);
    free(out);
    free(err);

    /* C killed: shown gone within 5 s, the others live. */
    kill(host[2].pid, SIGKILL);
    waitpid(host[2].pid, NULL, 0);
    host[2].pid = 0;
    struct seen c_gone = {.id = "host-c", .check = gone};
    harness_wait_until(a_sees, &c_gone, 5, "host-c shown gone within 5 s of its kill", host, 2);
    j = hosts_of(&host[1]);
    assert_int_equal((int)number(j, "live", NULL), HOSTS - 1);
    assert_string_equal(cJSON_GetObjectItem(entry(j, "host-c"), "state")->valuestring, "gone");
    cJSON_Delete(j);

    /* C back: live again (its start clears what the kill left). */
    assert_int_equal(harness_restart(&host[2], args[2]), 0);
    struct seen c_live = {.id = "host-c", .check = live};
    harness_wait_until(a_sees, &c_live, 20, "host-c shown live once restarted", host, HOSTS);

    /* Drains: of a host unknown, 404; of C through A (the notification), C stops by itself and
     * exits 0, then shows gone, and a second drain of it is 409; of B through B itself. */
    assert_int_equal(drain(&host[0], "host-zzz"), 404);
    rc = harness_ignis(&host[0], &out, &err, "host", "drain", "host-c", NULL);
    if (rc != 0 || !strstr(out, "host host-c is draining"))
        fail_msg("ignis host drain host-c: exit %d: %s%s", rc, out, err);
    free(out);
    free(err);
    assert_int_equal(harness_wait_exit(&host[2], 30), 0);
    harness_wait_until(a_sees, &c_gone, 10, "host-c shown gone once drained", host, 2);
    assert_int_equal(drain(&host[0], "host-c"), 409);
    /* C, retired: forgotten, no longer listed; a live host, or one unknown, cannot be. */
    rc = harness_ignis(&host[0], &out, &err, "host", "forget", "host-c", NULL);
    if (rc != 0 || !strstr(out, "host host-c is forgotten"))
        fail_msg("ignis host forget host-c: exit %d: %s%s", rc, out, err);
    free(out);
    free(err);
    j = hosts_of(&host[1]);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "hosts")), HOSTS - 1);
    cJSON_Delete(j);
    assert_int_equal(forget(&host[0], "host-b"), 409);
    assert_int_equal(forget(&host[0], "host-a"), 409);
    assert_int_equal(forget(&host[0], "host-c"), 404);
    assert_int_equal(drain(&host[1], "host-b"), 202);
    assert_int_equal(harness_wait_exit(&host[1], 30), 0);
    assert_int_equal(harness_finish(&host[0]), 0);
    for (int i = 1; i < HOSTS; i++) /* stopped already */
        assert_int_equal(harness_cleanup(&host[i]), 0);
}

/* A drain asked for while a host's listener is away (the notification never reaches it) is kept
 * in its row: the host finds it when it reads everything again (at once after it listens, again
 * once it listens anew, every 30 s), and stops. The request is written here as the API writes it
 * but with no notification, then B's listening connection is cut: without the row, nothing would
 * ever tell B. */
static void test_drain_found_after_a_missed_notification(void **state)
{
    _cleanup_free_ char *conninfo = NULL;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    const char *args[] = {"--store", conninfo, "--host-id", "host-b", NULL};
    struct ignisd_proc b;
    assert_int_equal(harness_start(&b, args), 0);
    assert_int_equal(pgserver_query_int(conninfo, "WITH u AS (UPDATE hosts SET drain_requested = 1 "
                                                  "WHERE host_id = 'host-b' RETURNING 1) "
                                                  "SELECT count(*) FROM u"),
                     1);
    pgserver_query_int(conninfo, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE query = 'LISTEN " CHANGES_CHANNEL
                                 "' AND datname = current_database()");
    assert_int_equal(harness_wait_exit(&b, 30), 0);
    assert_true(harness_log_has(&b, "reason=drain"));
    assert_int_equal(harness_cleanup(&b), 0);
}

/* One host alone (the default store unless IGNIS_TEST_STORE says otherwise): itself, live. */
static void test_one_host(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    cJSON *j = hosts_of(&p);
    assert_int_equal((int)number(j, "live", NULL), 1);
    const cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "hosts"), 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(h, "this")));
    assert_string_equal(cJSON_GetObjectItem(h, "state")->valuestring, "live");
    cJSON_Delete(j);
    assert_int_equal(harness_finish(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_listed_live_then_gone),
        cmocka_unit_test(test_drain_found_after_a_missed_notification),
        cmocka_unit_test(test_one_host),
    };
    return cmocka_run_group_tests(tests, pgserver_group_setup, pgserver_group_teardown);
}
