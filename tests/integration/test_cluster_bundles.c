/* More than one ignisd on one PostgreSQL database (issue #16), on a private server of this
 * test's own (pgserver.h) whatever IGNIS_TEST_STORE says: a function pushed on host A runs on
 * host B, started afterwards with an empty state dir (B reads the bundle's bytes from the store,
 * checks them against their digest and unpacks them into its own cache); a bundle whose stored
 * bytes were damaged is refused on a host without the cache, with the reason, in the reply and
 * in its log; every host registers in the hosts table and beats there each second, and a
 * stopped host's heartbeat stops while the others' go on; a host starts no container of a
 * version whose bundle it is still fetching; a host that cannot fetch a bundle for a reason of
 * its own (its disk full) claims none of its function's async invocations, which its peer runs.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgserver.h"
#include "records/db.h"
#include "records/hosts_store.h"
#include "records/store.h"

static struct ignisd_proc a, b, c;
/* A small file system mounted over a host's bundle cache (test_fetch_failed_here): taken off by
 * the test, or by the teardown after a failure. */
static char full_cache[320];

static int teardown(void **state)
{
    int r = 0;
    if (full_cache[0])
        umount2(full_cache, MNT_DETACH);
    struct ignisd_proc *ps[] = {&a, &b, &c};
    for (size_t i = 0; i < ARRAY_SIZE(ps); i++)
        if (ps[i]->pid > 0 || ps[i]->state_dir[0])
            r |= harness_cleanup(ps[i]);
    return (pgserver_group_teardown(state) < 0 || r) ? -1 : 0;
}

/* Invokes fn on p until it answers other than 503 bundle_unavailable for a bundle still being
 * fetched (the host fetches it right after its start) or 404 for a function pushed on another
 * host that p has not heard of yet, or until a minute passed; returns the last status with its
 * response in *ret. */
static long invoke_fetched(struct ignisd_proc *p, const char *fn, struct client_response *ret)
{
    uint64_t deadline = now_usec() + 60000000;
    for (;;) {
        long status = harness_invoke(p, fn, "cluster", NULL, ret);
        const char *body = ret->body ? ret->body : "";
        /* A host hears of a push on another within a second (LISTEN/NOTIFY): until then the
         * function is not there (404). */
        bool not_yet = (status == 503 && strstr(body, "being fetched")) ||
                       (status == 404 && strstr(body, "no function named"));
        if (!not_yet || now_usec() > deadline)
            return status;
        client_response_clear(ret);
        usleep(20000);
    }
}

struct hosts_seen {
    size_t n;
    char ids[4][64];
    int64_t beat[4], age[4];
};

static int see_host(void *userdata, const struct host_row *h)
{
    struct hosts_seen *s = userdata;
    if (s->n < ARRAY_SIZE(s->ids)) {
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", h->host_id);
        s->beat[s->n] = h->heartbeat_us;
        s->age[s->n] = h->heartbeat_age_us;
    }
    s->n++;
    return 0;
}

static void list_hosts(struct store *st, struct hosts_seen *ret)
{
    struct ig_error e = {};
    memset(ret, 0, sizeof(*ret));
    if (hosts_store_list(st, (int64_t)wall_usec(), see_host, ret, &e) < 0)
        fail_msg("listing hosts: %s", e.message);
}

/* The index of p's row in s (its host id from STATE_DIR/host-id); fails without one. */
static size_t host_index(const struct ignisd_proc *p, const struct hosts_seen *s)
{
    char path[300], *id = NULL;
    snprintf(path, sizeof(path), "%s/host-id", p->state_dir);
    assert_int_equal(read_file(path, 64, &id, NULL), 0);
    id[strcspn(id, "\r\n")] = '\0';
    for (size_t i = 0; i < s->n && i < ARRAY_SIZE(s->ids); i++)
        if (streq(s->ids[i], id)) {
            free(id);
            return i;
        }
    fail_msg("host %s is not in the hosts table", id);
    return 0;
}

/* Waits until every running host in ps has beaten twice since before (its heartbeat_us two
 * beats on), or fails after a minute. */
static void wait_beats(struct store *st, struct ignisd_proc *const *ps, size_t n,
                       const struct hosts_seen *before, struct hosts_seen *ret)
{
    uint64_t deadline = now_usec() + 60000000;
    for (;;) {
        list_hosts(st, ret);
        bool all = true;
        for (size_t i = 0; i < n; i++) {
            size_t k = host_index(ps[i], ret), k0 = host_index(ps[i], before);
            all = all && ret->beat[k] >= before->beat[k0] + 1500000;
        }
        if (all)
            return;
        assert_true(now_usec() < deadline);
        usleep(100000);
    }
}

static void test_bundles_and_hosts(void **state)
{
    char *conninfo;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    const char *args[] = {"--store", conninfo, NULL};
    struct client_response r;

    assert_int_equal(harness_start(&a, args), 0);
    harness_push(&a, "hello-exec", "hello", NULL);
    harness_push(&a, "hello-exec", "broken", NULL);
    assert_int_equal(harness_invoke(&a, "hello", "cluster", NULL, &r), 200);
    client_response_clear(&r);

    /* Damage the stored bytes of `broken`, whose tree A has unpacked already. */
    struct db *db;
    struct ig_error e = {};
    assert_int_equal(db_open(conninfo, 0, &db, &e), 0);
    static const char junk[] = "not the bytes that were pushed";
    const struct db_value v[] = {DV_B(junk, sizeof(junk))};
    assert_int_equal(db_exec(db,
                             "UPDATE bundle_chunks SET data = $1 WHERE n = 0 AND digest = (SELECT "
                             "digest FROM function_versions WHERE name = 'broken')",
                             v, ARRAY_SIZE(v), &e),
                     1);
    db_close(db);

    /* B, started after the pushes with an empty state dir: runs `hello` from the store's
     * bytes, refuses `broken`'s and says why. */
    assert_int_equal(harness_start(&b, args), 0);
    long status = invoke_fetched(&b, "hello", &r);
    if (status != 200 || !strstr(r.body, "Hello, cluster!"))
        fail_msg("hello on host B: %ld %s", status, r.body);
    client_response_clear(&r);
    status = invoke_fetched(&b, "broken", &r);
    if (status != 503 || !strstr(r.body, "bundle_unavailable") || !strstr(r.body, "hash to"))
        fail_msg("broken on host B: %ld %s", status, r.body);
    client_response_clear(&r);
    char *line = harness_log_line(&b, "could not be taken from the store");
    if (!line || !strstr(line, "hash to")) {
        harness_print_log(&b);
        fail_msg("host B did not log the refused bundle");
    }
    free(line);
    /* A, which unpacked `broken` when it was pushed, still runs it: its cache was checked. */
    assert_int_equal(harness_invoke(&a, "broken", "cluster", NULL, &r), 200);
    client_response_clear(&r);

    /* The hosts table: both hosts, beating; a stopped one's beat stops and ages. */
    struct store *st;
    assert_int_equal(store_open(conninfo, &st, &e), 0);
    struct hosts_seen s0, s1, s2;
    list_hosts(st, &s0);
    assert_int_equal(s0.n, 2);
    struct ignisd_proc *both[] = {&a, &b};
    wait_beats(st, both, 2, &s0, &s1);
    assert_int_equal(harness_stop(&b), 0);
    list_hosts(st, &s1);
    struct ignisd_proc *only_a[] = {&a};
    wait_beats(st, only_a, 1, &s1, &s2);
    size_t kb1 = host_index(&b, &s1), kb2 = host_index(&b, &s2), ka2 = host_index(&a, &s2);
    assert_int_equal(s2.beat[kb2], s1.beat[kb1]);
    assert_true(s2.age[kb2] > s2.age[ka2]);
    store_free(st);

    assert_int_equal(harness_cleanup(&b), 0);
    memset(&b, 0, sizeof(b));
    assert_int_equal(harness_cleanup(&a), 0);
    memset(&a, 0, sizeof(a));
    free(conninfo);
}

/* Pushes on p the function "large": hello-exec with a file of `bytes` random bytes, which do
 * not compress, and the manifest's overrides. */
static void push_padded(struct ignisd_proc *p, long bytes, const char *overrides)
{
    char src[400], cmd[1200];
    snprintf(src, sizeof(src), "%s/large-src", harness_fixtures(p));
    snprintf(cmd, sizeof(cmd),
             "cp -r '%s/runtime-images/examples/hello-exec' '%s' && "
             "head -c %ld /dev/urandom > '%s/padding'",
             getenv("IGNIS_SOURCE_DIR"), src, bytes, src);
    assert_int_equal(system(cmd), 0);
    harness_push(p, src, "large", overrides);
}

/* Invokes function on p once its bundle is fetched, and checks p started no container of it
 * before (one started so failed for the missing bundle: an init error for whatever was queued)
 * and keeps the one min_scale asks for. */
static void check_waited_for_bundle(struct ignisd_proc *p, const char *function)
{
    struct client_response r;
    long status = invoke_fetched(p, function, &r);
    if (status != 200 || !strstr(r.body, "Hello, cluster!"))
        fail_msg("%s on %s: %ld %s", function, p->url, status, r.body);
    client_response_clear(&r);
    assert_true(harness_log_has(p, "bundle unpacked from the store"));
    if (harness_log_has(p, "container failed to start") || harness_log_has(p, "spawn failed")) {
        harness_print_log(p);
        fail_msg("%s started a container before the bundle was here", p->url);
    }
    assert_true(harness_live_number(p, function, "ready") >= 1);
}

/* A function every host keeps a container of (min_scale 1; no cluster key: each host its own),
 * its bundle 40 MB that do not compress, so that a host takes a while to fetch it from the
 * store: B, running when A pushes it (it hears of the push), and C, started afterwards with an
 * empty state dir (it reads every function at start), each start no container before the bundle
 * is in their cache, and the one min_scale asks for once it is. */
static void test_containers_wait_for_their_bundle(void **state)
{
    char *conninfo;
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    const char *args[] = {"--store", conninfo, NULL};

    assert_int_equal(harness_start(&a, args), 0);
    assert_int_equal(harness_start(&b, args), 0);
    push_padded(&a, 40000000, "{\"min_scale\": 1}");
    check_waited_for_bundle(&b, "large");
    assert_int_equal(harness_start(&c, args), 0);
    check_waited_for_bundle(&c, "large");

    struct ignisd_proc *ps[] = {&c, &b, &a};
    for (size_t i = 0; i < ARRAY_SIZE(ps); i++) {
        assert_int_equal(harness_cleanup(ps[i]), 0);
        memset(ps[i], 0, sizeof(*ps[i]));
    }
    free(conninfo);
}

static bool fetch_failed(void *arg)
{
    return harness_log_has(arg, "could not be taken from the store");
}

/* B's bundle cache is a 1 MB file system. Version 1 of the function, small, runs warm on both
 * hosts (min_scale 1, each host its own); version 2's 4 MB cannot be unpacked on B (ENOSPC), a
 * reason of B's own. B then claims none of the function's queued invocations (each would wait
 * for a version 2 container B cannot start, or fail to start one: with max_retries 0, failed),
 * and A runs every one B accepted, version 2, at its first attempt; B never unpacks version 2
 * nor starts a container of it. */
static void test_fetch_failed_here(void **state)
{
    char *conninfo, dir[] = "/tmp/ignis-test.XXXXXX";
    assert_int_equal(pgserver_new_database(pgserver_shared, &conninfo), 0);
    const char *args[] = {"--store", conninfo, NULL};

    assert_int_equal(harness_start(&a, args), 0);
    assert_non_null(mkdtemp(dir));
    snprintf(full_cache, sizeof(full_cache), "%s/bundles", dir);
    assert_int_equal(mkdir(full_cache, 0700), 0);
    assert_int_equal(mount("tmpfs", full_cache, "tmpfs", 0, "size=1m,mode=0700"), 0);
    assert_int_equal(harness_start_in(&b, dir, args), 0);
    static const char manifest[] = "{\"max_retries\": 0, \"min_scale\": 1}";
    push_padded(&a, 1000, manifest);
    check_waited_for_bundle(&b, "large");
    push_padded(&a, 4000000, manifest);
    harness_wait_until(fetch_failed, &b, 60, "B failing to fetch version 2", &b, 1);

    char ids[12][64];
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++)
        harness_invoke_async(&b, "large", "{}", NULL, ids[i], NULL);
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        cJSON *rec = harness_wait_invocation(&a, ids[i], "succeeded", 60);
        assert_int_equal(cJSON_GetObjectItem(rec, "attempts")->valueint, 1);
        assert_int_equal(cJSON_GetObjectItem(rec, "version")->valueint, 2);
        cJSON_Delete(rec);
    }
    if (harness_log_has(&b, "container failed to start") || harness_log_has(&b, "spawn failed")) {
        harness_print_log(&b);
        fail_msg("B started a container of a bundle it could not fetch");
    }
    if (harness_log_count(&b, "bundle unpacked from the store") != 1) {
        harness_print_log(&b);
        fail_msg("B unpacked version 2's bundle after all");
    }

    assert_int_equal(harness_stop(&b), 0);
    assert_int_equal(umount2(full_cache, 0), 0);
    full_cache[0] = '\0';
    struct ignisd_proc *ps[] = {&b, &a};
    for (size_t i = 0; i < ARRAY_SIZE(ps); i++) {
        assert_int_equal(harness_cleanup(ps[i]), 0);
        memset(ps[i], 0, sizeof(*ps[i]));
    }
    free(conninfo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundles_and_hosts),
        cmocka_unit_test(test_containers_wait_for_their_bundle),
        cmocka_unit_test(test_fetch_failed_here),
    };
    return cmocka_run_group_tests(tests, pgserver_group_setup, teardown);
}
