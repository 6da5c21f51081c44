/* The resources ignisd prepares for its containers (container.h, "stock"): network namespaces
 * and cgroups made ahead, and taken back from ended containers for the same function's next one
 * only while a namespace is as pristine as a fresh one. Through a real ignisd: a container's
 * namespace is pristine although the containers before it (of the same function) left traffic
 * and sockets behind; while the daemon runs its stock holds namespaces (as fds) and cgroups;
 * after a stop nothing of them is left; after a kill -9 the next start removes the cgroups the
 * dead one had prepared. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

/* Invokes the netview fixture once: what its container saw of its network namespace. */
static cJSON *netview(struct ignisd_proc *p, const char *fn)
{
    struct client_response r;
    if (harness_invoke(p, fn, "{}", NULL, &r) != 200)
        fail_msg("invoke %s: %ld %s", fn, r.status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    client_response_clear(&r);
    assert_non_null(j);
    return j;
}

/* How many network namespaces pid holds open as fds (the stock's). */
static int netns_fds(pid_t pid)
{
    char dir[64], path[384], link[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) {
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        ssize_t len = readlink(path, link, sizeof(link) - 1);
        if (len > 0) {
            link[len] = '\0';
            n += startswith(link, "net:[");
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Waits (bounded; the stock fills at idle priority on a shared machine) until cond(p, arg)
 * holds. */
static bool wait_for(bool (*cond)(struct ignisd_proc *p, const char *arg), struct ignisd_proc *p,
                     const char *arg)
{
    for (int i = 0; i < 6000; i++) {
        if (cond(p, arg))
            return true;
        usleep(10000);
    }
    return false;
}

static bool stock_has_netns(struct ignisd_proc *p, const char *arg)
{
    return netns_fds(p->pid) > 0;
}

static bool stock_has_cgroups(struct ignisd_proc *p, const char *prefix)
{
    return harness_count_cgroups(p, prefix) > 0;
}

/* Starts a daemon, pushes netview as fn and invokes it once (which teaches the stock the
 * function's limits), then waits until the stock holds cgroups: named prefix, which is set. */
static void start_with_stock(struct ignisd_proc *p, const char *fn, char prefix[64])
{
    assert_int_equal(harness_start(p, NULL), 0);
    snprintf(prefix, 64, "c-_stock-%d-", (int)p->pid);
    harness_push_fixture(p, "netview", fn, NULL);
    cJSON_Delete(netview(p, fn));
    assert_true(wait_for(stock_has_cgroups, p, prefix));
}

/* reuse: false, ten times in a row: each container sees only lo, up and running, nothing counted
 * on it, no socket of any kind, although each one before it, of the same function, connected
 * over TCP (a socket in TIME_WAIT stays for a minute), sent UDP and left a listener open until
 * it ended. The stock takes each namespace back and must find it tainted: had it handed one
 * on, the next container would see all of that. */
static void test_fresh_namespace_pristine(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    harness_push_fixture(&p, "netview", "netview", NULL);
    for (int i = 0; i < 10; i++) {
        cJSON *j = netview(&p, "netview");
        cJSON *ifs = cJSON_GetObjectItem(j, "interfaces");
        assert_int_equal(cJSON_GetArraySize(ifs), 1);
        assert_string_equal(cJSON_GetArrayItem(ifs, 0)->valuestring, "lo");
        /* IFF_UP | IFF_LOOPBACK | IFF_RUNNING, as the shim brings up a namespace it makes. */
        assert_int_equal(cJSON_GetObjectItem(j, "lo_flags")->valueint, 0x1 | 0x8 | 0x40);
        const char *dev = cJSON_GetObjectItem(j, "dev")->valuestring;
        const char *lo = strstr(dev, "lo:");
        assert_non_null(lo);
        /* lo: then 16 counters, all zero. */
        char *end;
        const char *q = lo + 3;
        for (int k = 0; k < 16; k++, q = end) {
            unsigned long long v = strtoull(q, &end, 10);
            assert_ptr_not_equal(end, q);
            if (v != 0)
                fail_msg("invocation %d: lo counter %d is %llu: %s", i, k, v, lo);
        }
        static const char *const tables[] = {"tcp", "tcp6", "udp", "udp6", "raw", "unix"};
        for (size_t t = 0; t < ARRAY_SIZE(tables); t++) {
            cJSON *rows = cJSON_GetObjectItem(j, tables[t]);
            if (cJSON_GetArraySize(rows) != 0)
                fail_msg("invocation %d: /proc/net/%s has %d sockets: %s", i, tables[t],
                         cJSON_GetArraySize(rows), cJSON_GetArrayItem(rows, 0)->valuestring);
        }
        cJSON_Delete(j);
    }
    assert_int_equal(harness_finish(&p), 0);
}

/* While the daemon runs, its stock holds namespaces and, once a function taught it its limits,
 * cgroups; a graceful stop leaves no process, mount or cgroup (harness_finish) and no namespace:
 * they were fds of the daemon's (never bind-mounted: no nsfs mount of the state dir's daemon
 * can remain), and the container server, the only other holder, is gone with it. */
static void test_nothing_left_after_stop(void **state)
{
    struct ignisd_proc p;
    char prefix[64];
    start_with_stock(&p, "left", prefix);
    assert_true(wait_for(stock_has_netns, &p, NULL));
    assert_int_equal(harness_finish(&p), 0);
}

/* A daemon killed with its stock full leaves the stock's cgroups behind (nothing ran its
 * teardown); the next start on the same state dir removes them before it makes its own. */
static void test_restart_removes_stock_left_behind(void **state)
{
    struct ignisd_proc p;
    char prefix[64];
    start_with_stock(&p, "killed", prefix);
    kill(p.pid, SIGKILL);
    waitpid(p.pid, NULL, 0);
    p.pid = 0;
    assert_true(harness_count_cgroups(&p, prefix) > 0);
    assert_int_equal(harness_restart(&p, NULL), 0);
    assert_int_equal(harness_count_cgroups(&p, prefix), 0);
    /* The new daemon prepares its own, and serves from them. */
    cJSON_Delete(netview(&p, "killed"));
    snprintf(prefix, sizeof(prefix), "c-_stock-%d-", (int)p.pid);
    assert_true(wait_for(stock_has_cgroups, &p, prefix));
    assert_int_equal(harness_finish(&p), 0);
}

int main(void)
{
    harness_require_root();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_namespace_pristine),
        cmocka_unit_test(test_nothing_left_after_stop),
        cmocka_unit_test(test_restart_removes_stock_left_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
