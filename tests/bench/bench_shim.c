/* The shim benchmark (scripts/bench shim): N times create -> exec a trivial static binary ->
 * exit -> teardown, through the same container API the controller uses, then the same work
 * with `runc run` on an equivalent busybox bundle, and the ratio. Also the cost of the parts a
 * pool could take off the invocation path: cgroup create+remove, and namespace creation with and
 * without a network namespace. Prints figures, asserts nothing: the machine is shared. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "testcontainer.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct figures {
    double p50_ms, p99_ms, mean_ms, per_sec;
};

static struct figures summarize(uint64_t *usec, size_t n, uint64_t total_usec)
{
    struct figures f = {};
    uint64_t sum = 0;
    qsort(usec, n, sizeof(usec[0]), cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += usec[i];
    f.p50_ms = (double)usec[n / 2] / 1000.0;
    f.p99_ms = (double)usec[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0;
    f.mean_ms = (double)sum / (double)n / 1000.0;
    f.per_sec = (double)n / ((double)total_usec / 1e6);
    return f;
}

static void print_figures(const char *what, size_t n, struct figures f)
{
    printf("%-34s n=%-4zu p50 %7.3f ms  p99 %7.3f ms  mean %7.3f ms  %8.1f containers/s\n", what, n,
           f.p50_ms, f.p99_ms, f.mean_ms, f.per_sec);
}

static const struct cg_limits limits = {
    .memory_bytes = 128ull << 20, .cpu_millis = 1000, .pids_max = 64};

/* A label for the next bench_shim's line, instead of the one its arguments choose. */
static const char *label_override;

/* netns_fd > 0: every container joins that network namespace instead of making its own;
 * group: every container runs in that cgroup instead of a new one; stock: each takes a
 * namespace and a cgroup made ahead, when one is ready, as ignisd's pool does. */
static int bench_shim(struct tc_env *e, size_t n, int netns_fd, struct cg_group *group,
                      struct container_stock *stock, bool quiet, struct figures *ret)
{
    uint64_t *lat = calloc(n, sizeof(uint64_t)), phase[3] = {0, 0, 0};
    struct container_spec spec;
    tc_spec(e, (char *[]){"/bin/hostile", "true", NULL}, &spec);
    /* Output to /dev/null, as a pool would to its log pipe: no read loop in the figure. */
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct container_options o = {.spec = &spec,
                                  .limits = limits,
                                  .stdout_fd = null,
                                  .stderr_fd = null,
                                  .netns_fd = netns_fd,
                                  .group = group,
                                  .stock = stock,
                                  .stock_owner = "bench"};
    uint64_t start = now_usec();
    for (size_t i = 0; i < n; i++) {
        struct container *c;
        struct container_exit x;
        struct ig_error err = {};
        uint64_t t0 = now_usec();
        if (container_create(e->m, &o, &c, &err) < 0) {
            fprintf(stderr, "bench: %s\n", err.message);
            return -1;
        }
        uint64_t t1 = now_usec();
        if (container_wait(c, &x) < 0 || x.exit_code != 0) {
            fprintf(stderr, "bench: the container exited with %d\n", x.exit_code);
            return -1;
        }
        uint64_t t2 = now_usec();
        if (container_destroy(c, &err) < 0) {
            fprintf(stderr, "bench: %s\n", err.message);
            return -1;
        }
        uint64_t t3 = now_usec();
        lat[i] = t3 - t0;
        phase[0] += t1 - t0;
        phase[1] += t2 - t1;
        phase[2] += t3 - t2;
    }
    *ret = summarize(lat, n, now_usec() - start);
    if (quiet)
        goto out;
    const char *label = stock          ? "ignis-shim, prepared (as the pool)"
                        : group        ? "ignis-shim, netns and cgroup reused"
                        : netns_fd > 0 ? "ignis-shim, network namespace reused"
                                       : "ignis-shim, fresh (made in place)";
    print_figures(label_override ? label_override : label, n, *ret);
    printf("  mean phases: create (cgroup, shim, namespaces, root, exec) %.3f ms, run to exit "
           "%.3f ms, destroy %.3f ms\n",
           (double)phase[0] / (double)n / 1000.0, (double)phase[1] / (double)n / 1000.0,
           (double)phase[2] / (double)n / 1000.0);
out:
    close(null);
    free(lat);
    return 0;
}

/* What a pool could do ahead of time: the cgroup, and the namespaces. */
static void bench_parts(struct tc_env *e, size_t n)
{
    uint64_t *lat = calloc(n, sizeof(uint64_t));
    uint64_t start = now_usec();
    for (size_t i = 0; i < n; i++) {
        struct cg_group *g;
        char name[32];
        snprintf(name, sizeof(name), "part-%zu", i);
        uint64_t t0 = now_usec();
        if (cg_create(e->m, name, &limits, &g, NULL) < 0 || cg_destroy(g, NULL) < 0)
            return;
        lat[i] = now_usec() - t0;
    }
    print_figures("  part: cgroup create+destroy", n, summarize(lat, n, now_usec() - start));
    start = now_usec();
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_usec();
        int fd = container_netns_new(NULL);
        if (fd < 0)
            return;
        lat[i] = now_usec() - t0;
        close(fd); /* the kernel's cleanup_net runs later, in a worker: not in this figure */
    }
    print_figures("  part: network namespace, lo up", n, summarize(lat, n, now_usec() - start));

    static const struct {
        const char *what;
        unsigned long flags;
    } kinds[] = {
        {"  part: clone+exit, no namespaces", 0},
        {"  part: clone+exit, 5 ns (no net)",
         CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP},
        {"  part: clone+exit, 6 ns (with net)",
         CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_NEWNET},
    };
    for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
        start = now_usec();
        for (size_t i = 0; i < n; i++) {
            uint64_t t0 = now_usec();
            pid_t p = (pid_t)syscall(SYS_clone, kinds[k].flags | SIGCHLD, NULL, NULL, NULL, NULL);
            if (p == 0)
                _exit(0);
            if (p < 0 || waitpid(p, NULL, 0) != p)
                return;
            lat[i] = now_usec() - t0;
        }
        print_figures(kinds[k].what, n, summarize(lat, n, now_usec() - start));
    }
    free(lat);
}

static int run_cmd(char *const argv[], bool quiet)
{
    pid_t p = fork();
    if (p == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        if (quiet) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    if (p < 0 || waitpid(p, &status, 0) != p)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* An OCI bundle equivalent to the shim's container: the same image as a read-only rootfs, the
 * same binary, the same limits, the same namespaces (runc's default spec has all but cgroup,
 * which is added). */
static int make_runc_bundle(const struct tc_env *e, char *dir, size_t len)
{
    snprintf(dir, len, "%s/runc", e->dir);
    char path[512], *text = NULL;
    snprintf(path, sizeof(path), "%s/rootfs", dir);
    if (mkdir_p(dir, 0755) < 0 ||
        run_cmd((char *[]){"cp", "-a", (char *)e->image, path, NULL}, false) != 0)
        return -1;
    if (run_cmd((char *[]){"runc", "spec", "--bundle", dir, NULL}, false) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (read_file(path, 1 << 20, &text, NULL) < 0)
        return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root)
        return -1;
    cJSON *proc = cJSON_GetObjectItem(root, "process");
    cJSON_ReplaceItemInObject(proc, "terminal", cJSON_CreateFalse());
    const char *args[] = {"/bin/hostile", "true"};
    cJSON_ReplaceItemInObject(proc, "args", cJSON_CreateStringArray(args, 2));
    cJSON *user = cJSON_GetObjectItem(proc, "user");
    cJSON_ReplaceItemInObject(user, "uid", cJSON_CreateNumber(65534));
    cJSON_ReplaceItemInObject(user, "gid", cJSON_CreateNumber(65534));
    cJSON *linux_ = cJSON_GetObjectItem(root, "linux");
    cJSON *ns = cJSON_GetObjectItem(linux_, "namespaces");
    cJSON *cg = cJSON_CreateObject();
    cJSON_AddStringToObject(cg, "type", "cgroup");
    cJSON_AddItemToArray(ns, cg);
    cJSON *res = cJSON_AddObjectToObject(linux_, "resources");
    cJSON *mem = cJSON_AddObjectToObject(res, "memory");
    cJSON_AddNumberToObject(mem, "limit", (double)limits.memory_bytes);
    cJSON_AddNumberToObject(mem, "swap", (double)limits.memory_bytes);
    cJSON *cpu = cJSON_AddObjectToObject(res, "cpu");
    cJSON_AddNumberToObject(cpu, "quota", 100000);
    cJSON_AddNumberToObject(cpu, "period", 100000);
    cJSON *pids = cJSON_AddObjectToObject(res, "pids");
    cJSON_AddNumberToObject(pids, "limit", limits.pids_max);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    bool ok = fd >= 0 && out && write(fd, out, strlen(out)) == (ssize_t)strlen(out);
    if (fd >= 0)
        close(fd);
    free(out);
    return ok ? 0 : -1;
}

static int bench_runc(const struct tc_env *e, size_t n, struct figures *ret)
{
    char dir[256], id[64];
    if (make_runc_bundle(e, dir, sizeof(dir)) < 0) {
        fprintf(stderr, "bench: could not make the runc bundle\n");
        return -1;
    }
    uint64_t *lat = calloc(n, sizeof(uint64_t));
    uint64_t start = now_usec();
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "ignis-bench-%d-%zu", (int)getpid(), i);
        uint64_t t0 = now_usec();
        /* `runc run` creates, starts, waits and deletes: the same cycle. */
        int r = run_cmd((char *[]){"runc", "run", "--bundle", dir, id, NULL}, true);
        if (r != 0) {
            fprintf(stderr, "bench: runc run exited with %d\n", r);
            run_cmd((char *[]){"runc", "run", "--bundle", dir, id, NULL}, false);
            return -1;
        }
        lat[i] = now_usec() - t0;
    }
    *ret = summarize(lat, n, now_usec() - start);
    print_figures("runc run (create->exit->delete)", n, *ret);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 500;
    size_t n_runc = argc > 2 ? strtoul(argv[2], NULL, 10) : n;
    struct tc_env e;
    struct figures shim, runc;

    if (geteuid() != 0) {
        fprintf(stderr, "bench: needs root\n");
        return 77;
    }
    if (n == 0 || tc_env_setup(&e) < 0)
        return 1;
    printf("ignis shim benchmark: %zu containers, cgroup mode %s, shim %s\n", n,
           cg_mode_name(cg_manager_mode(e.m)), container_shim_path());
    /* A few to warm the page cache and the kernel's caches; not counted. */
    struct figures prepared, reused, reused2, exec_each;
    struct ig_error err = {};
    struct cg_group *group = NULL;
    struct container_stock *stock = NULL;
    int netns = container_netns_new(&err);
    if (netns < 0 || cg_create(e.m, "bench-reused", &limits, &group, &err) < 0 ||
        container_stock_new(e.m, CONTAINER_STOCK_TARGET, &stock, &err) < 0 ||
        bench_shim(&e, 20, -1, NULL, NULL, true, &shim) < 0) {
        fprintf(stderr, "bench: %s\n", err.message);
        tc_env_teardown(&e);
        return 1;
    }
    /* The controller's path: the stock is full when work arrives after idle time (one take
     * teaches it the limits), then refills on idle CPU while the containers run. */
    bench_shim(&e, 1, -1, NULL, stock, true, &prepared);
    struct container_stock_stats st;
    for (int i = 0; i < 1000; i++) {
        container_stock_stats(stock, &st);
        if (st.netns_ready == CONTAINER_STOCK_TARGET &&
            st.cgroups_ready == CONTAINER_STOCK_TARGET / 2 && st.cgroups_returned == 0)
            break;
        usleep(10000);
    }
    struct container_stock_stats before;
    container_stock_stats(stock, &before);
    if (bench_shim(&e, n, -1, NULL, stock, false, &prepared) < 0) {
        tc_env_teardown(&e);
        return 1;
    }
    container_stock_stats(stock, &st);
    printf("  from the stock (target %d): network namespaces %llu taken (%llu handed back and "
           "reused, %llu closed), %llu made in place; cgroups %llu taken (%llu handed back and "
           "reused), %llu made in place; %llu found it busy\n",
           CONTAINER_STOCK_TARGET, (unsigned long long)(st.netns_taken - before.netns_taken),
           (unsigned long long)(st.netns_reused - before.netns_reused),
           (unsigned long long)(st.netns_closed - before.netns_closed),
           (unsigned long long)(st.netns_missed - before.netns_missed),
           (unsigned long long)(st.cgroups_taken - before.cgroups_taken),
           (unsigned long long)(st.cgroups_reused - before.cgroups_reused),
           (unsigned long long)(st.cgroups_missed - before.cgroups_missed),
           (unsigned long long)(st.busy - before.busy));
    container_stock_free(stock);
    if (bench_shim(&e, n, -1, NULL, NULL, false, &shim) < 0 ||
        bench_shim(&e, n, netns, NULL, NULL, false, &reused) < 0 ||
        bench_shim(&e, n, netns, group, NULL, false, &reused2) < 0) {
        tc_env_teardown(&e);
        return 1;
    }
    cg_destroy(group, NULL);
    close(netns);
    /* The same with a one-container ignis-shim exec'd per container instead of the server. */
    container_use_server(false);
    label_override = "ignis-shim exec'd per container";
    if (bench_shim(&e, n, -1, NULL, NULL, false, &exec_each) < 0) {
        tc_env_teardown(&e);
        return 1;
    }
    label_override = NULL;
    container_use_server(true);
    bench_parts(&e, n);
    int status = 0;
    if (n_runc > 0 && run_cmd((char *[]){"runc", "--version", NULL}, true) == 0) {
        if (bench_runc(&e, n_runc, &runc) == 0) {
            printf("ratio: ignis-shim as the pool runs it (prepared) %.1fx runc's rate (p50 %.1fx "
                   "lower)\n",
                   prepared.per_sec / runc.per_sec, runc.p50_ms / prepared.p50_ms);
            printf("ratio, fresh (made in place): %.1fx; network namespace reused: %.1fx; netns "
                   "and cgroup reused: %.1fx; exec'd per container: %.1fx\n",
                   shim.per_sec / runc.per_sec, reused.per_sec / runc.per_sec,
                   reused2.per_sec / runc.per_sec, exec_each.per_sec / runc.per_sec);
        } else {
            status = 1;
        }
    } else if (n_runc > 0) {
        printf("runc: not installed, no comparison\n");
    }
    if (tc_env_teardown(&e) < 0)
        status = 1;
    return status;
}
