/* The cgroup layer against the host's real cgroups (as root): limits land in the kernel's
 * files, CPU and memory are measured, OOM kills counted, teardown leaves no process and no
 * cgroup; the v2 backend against the real cgroup2 mount for what it offers here; and ignisd's
 * own subtree, including the stale cleanup after a SIGKILL. Every cgroup made here is named
 * ignis-<id> with an id of this test's own. */
#include "harness.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "container/cgroup.h"

static char test_id[32];

static uint64_t cpu_usec_self(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct cg_manager *manager(void)
{
    struct cg_manager *m = NULL;
    struct ig_error err = {};
    if (cg_manager_new(NULL, NULL, test_id, &m, &err) < 0)
        fail_msg("cg_manager_new: %s", err.message);
    return m;
}

static void assert_file_u64(const char *dir, const char *file, uint64_t want)
{
    char path[4096], *text = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    assert_int_equal(read_file(path, 4096, &text, NULL), 0);
    assert_int_equal(strtoull(text, NULL, 10), want);
    free(text);
}

static const char *path_with(const struct cg_group *g, const char *needle)
{
    for (const char *const *p = cg_group_paths(g); *p; p++)
        if (strstr(*p, needle))
            return *p;
    return NULL;
}

/* A child that waits for a byte on `go`, then runs fn, then waits for another byte before it
 * exits (so the parent can read stats while it is still in the group). */
struct child {
    pid_t pid;
    int go, done; /* parent ends: write to go, read from done */
};

static pid_t clone_into(int cgroup_fd)
{
    struct clone_args args = {.exit_signal = SIGCHLD};
    if (cgroup_fd >= 0) {
        args.flags = CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static struct child spawn(int cgroup_fd, void (*fn)(void))
{
    int go[2], done[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    assert_int_equal(pipe2(done, O_CLOEXEC), 0);
    pid_t pid = clone_into(cgroup_fd);
    assert_true(pid >= 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        close(done[0]);
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        fn();
        if (write(done[1], "x", 1) != 1 || read(go[0], &c, 1) < 0)
            _exit(3);
        _exit(0);
    }
    close(go[0]);
    close(done[1]);
    return (struct child){.pid = pid, .go = go[1], .done = done[0]};
}

static void child_step(struct child *c)
{
    char x;
    assert_int_equal(write(c->go, "x", 1), 1);
    assert_int_equal(read(c->done, &x, 1), 1);
}

static int child_finish(struct child *c, struct rusage *ru)
{
    int status;
    close(c->go);
    close(c->done);
    assert_int_equal(wait4(c->pid, &status, 0, ru), c->pid);
    return status;
}

static void burn_100ms(void)
{
    uint64_t start = cpu_usec_self();
    while (cpu_usec_self() - start < 100000)
        ;
}

static void *touched;
static void touch_32mb(void)
{
    touched = mmap(NULL, 32 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (touched == MAP_FAILED)
        _exit(4);
    memset(touched, 1, 32 << 20);
}

static void touch_64mb(void)
{
    void *p = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(4);
    memset(p, 1, 64 << 20);
}

static void nothing(void)
{
}

static void test_limits_in_kernel_files(void **state)
{
    struct cg_manager *m = manager();
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_limits lim = {.memory_bytes = 64 << 20, .cpu_millis = 500, .pids_max = 32};

    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    assert_int_equal(cg_create(m, "limits", &lim, &g, &err), 0);
    const struct cg_features *f = cg_manager_features(m);
    if (cg_manager_mode(m) == CG_MODE_V1 || cg_manager_mode(m) == CG_MODE_HYBRID) {
        const char *mem = path_with(g, "/memory/"), *cpu = path_with(g, "/cpu/");
        const char *pids = path_with(g, "/pids/");
        assert_non_null(mem);
        assert_true(f->memory_limit && f->cpu_quota && f->pids_limit && f->kill);
        assert_file_u64(mem, "memory.limit_in_bytes", 64 << 20);
        if (access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0)
            assert_file_u64(mem, "memory.memsw.limit_in_bytes", 64 << 20);
        assert_file_u64(cpu, "cpu.cfs_period_us", 100000);
        assert_file_u64(cpu, "cpu.cfs_quota_us", 50000);
        assert_file_u64(pids, "pids.max", 32);
    }
    if (cg_manager_mode(m) == CG_MODE_HYBRID) {
        assert_true(cg_group_v2_fd(g) >= 0);
        assert_non_null(path_with(g, "/unified/"));
        assert_true(f->clone_into_cgroup);
    }
    char expect[256];
    snprintf(expect, sizeof(expect), "/ignis-%s/c-limits", test_id);
    for (const char *const *p = cg_group_paths(g); *p; p++) {
        assert_non_null(strstr(*p, expect));
        assert_int_equal(access(*p, F_OK), 0);
    }
    /* The caller sits in the daemon leaf of every hierarchy used. */
    char *self = NULL;
    assert_int_equal(read_file("/proc/self/cgroup", 65536, &self, NULL), 0);
    snprintf(expect, sizeof(expect), "/ignis-%s/daemon\n", test_id);
    assert_non_null(strstr(self, expect));
    free(self);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
}

static void test_cpu_usage(void **state)
{
    struct cg_manager *m = manager();
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;
    struct rusage ru;

    assert_int_equal(cg_create(m, "cpu", NULL, &g, &err), 0);
    struct child c = spawn(cg_group_v2_fd(g), burn_100ms);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);
    child_step(&c);
    assert_int_equal(child_finish(&c, &ru), 0);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    /* The kernel's own account of the child (utime + stime sum to its runtime) against the
     * cgroup's: both scheduler-precise, so a few ms apart at most. */
    uint64_t rusage_usec = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    print_message("cpu: cgroup %llu us, rusage %llu us\n", (unsigned long long)st.cpu_usec,
                  (unsigned long long)rusage_usec);
    assert_true(st.cpu_usec >= 100000);
    assert_true(st.cpu_usec + 5000 >= rusage_usec && st.cpu_usec <= rusage_usec + 5000);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
}

static void test_memory_peak_and_reset(void **state)
{
    struct cg_manager *m = manager();
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;

    if (!cg_manager_features(m)->memory_peak)
        skip();
    assert_int_equal(cg_create(m, "mem", NULL, &g, &err), 0);
    struct child c = spawn(cg_group_v2_fd(g), touch_32mb);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);
    child_step(&c);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    print_message("memory: peak %llu, current %llu\n", (unsigned long long)st.memory_peak_bytes,
                  (unsigned long long)st.memory_current_bytes);
    assert_true(st.memory_peak_bytes >= 32 << 20);
    assert_true(st.memory_peak_bytes < 48 << 20);
    assert_true(st.memory_current_bytes >= 32 << 20);
    assert_int_equal(st.oom_kills, 0);
    assert_int_equal(child_finish(&c, NULL), 0);
    /* With the child gone the usage falls; a reset brings the peak down to it. */
    assert_int_equal(cg_reset_peak(g), 0);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_true(st.memory_peak_bytes < 16 << 20);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
}

static void test_oom_kill_counted(void **state)
{
    struct cg_manager *m = manager();
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;
    struct cg_limits lim = {.memory_bytes = 16 << 20};

    if (!cg_manager_features(m)->memory_limit)
        skip();
    assert_int_equal(cg_create(m, "oom", &lim, &g, &err), 0);
    struct child c = spawn(cg_group_v2_fd(g), touch_64mb);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);
    char x;
    assert_int_equal(write(c.go, "x", 1), 1);
    (void)!read(c.done, &x, 1); /* EOF: the OOM killer got it */
    int status = child_finish(&c, NULL);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_true(st.oom_kills >= 1);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
}

/* A child that forks two more; all three sleep. */
static void fork_sleepers(void)
{
    for (int i = 0; i < 2; i++)
        if (fork() == 0) {
            for (;;)
                pause();
        }
}

static void test_kill_and_destroy(void **state)
{
    struct cg_manager *m = manager();
    struct cg_group *g = NULL;
    struct ig_error err = {};

    /* Orphaned grandchildren come back to this process, so they can be reaped and counted. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    assert_int_equal(cg_create(m, "kill", NULL, &g, &err), 0);
    struct child c = spawn(-1, fork_sleepers);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);
    child_step(&c);
    char *paths[8] = {0};
    size_t n = 0;
    for (const char *const *p = cg_group_paths(g); *p && n < 8; p++)
        paths[n++] = strdup(*p);
    assert_int_equal(cg_destroy(g, &err), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(access(paths[i], F_OK), -1);
        free(paths[i]);
    }
    /* All three were killed: each reaps as SIGKILLed, then there is nobody left. */
    int killed = 0, status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, 0)) > 0)
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
    assert_int_equal(killed, 3);
    close(c.go);
    close(c.done);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    cg_manager_free(m);
}

/* The v2 backend on the real cgroup2 mount. On this hybrid host it has no controllers: no
 * limits (degraded), but cgroup.kill, cpu.stat and clone3 into it work. */
static void test_v2_backend_on_real_mount(void **state)
{
    struct cg_manager *m = NULL;
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;
    struct rusage ru;
    const char *root = "/sys/fs/cgroup";
    struct stat sb;

    if (stat("/sys/fs/cgroup/unified/cgroup.procs", &sb) == 0)
        root = "/sys/fs/cgroup/unified";
    else if (stat("/sys/fs/cgroup/cgroup.procs", &sb) < 0)
        skip();
    /* Where the test runs in the cgroup2 hierarchy, from its own 0:: line. */
    if (cg_manager_new_mode(CG_MODE_V2, false, root, NULL, test_id, &m, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    const struct cg_features *f = cg_manager_features(m);
    assert_true(f->kill);
    assert_true(f->clone_into_cgroup);
    char deg[256];
    cg_features_degraded(f, deg, sizeof(deg));
    print_message("v2 on %s: degraded %s\n", root, deg);
    struct cg_limits lim = {.memory_bytes = 64 << 20, .cpu_millis = 1000, .pids_max = 16};
    assert_int_equal(cg_create(m, "v2", &lim, &g, &err), 0);
    assert_true(cg_group_v2_fd(g) >= 0);
    struct child c = spawn(cg_group_v2_fd(g), burn_100ms);
    child_step(&c);
    assert_int_equal(child_finish(&c, &ru), 0);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_true(st.cpu_usec >= 100000);
    /* cgroup.kill on a live child, then nothing is left. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct child c2 = spawn(cg_group_v2_fd(g), fork_sleepers);
    child_step(&c2);
    assert_int_equal(cg_kill(g, &err), 0);
    int killed = 0, status;
    while (waitpid(-1, &status, 0) > 0)
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
    assert_int_equal(killed, 3);
    close(c2.go);
    close(c2.done);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", cg_group_paths(g)[0]);
    assert_int_equal(cg_destroy(g, &err), 0);
    assert_int_equal(access(dir, F_OK), -1);
    cg_manager_free(m);
}

/* The v1 backend on this host's v1 hierarchies (mode forced: hybrid would use cgroup.kill and
 * cpu.stat on the cgroup2 side): cpuacct.usage, and freeze-kill-thaw with the freezer. */
static void test_v1_backend_on_real_hierarchies(void **state)
{
    struct cg_manager *m = NULL;
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;
    struct rusage ru;

    if (access("/sys/fs/cgroup/freezer/cgroup.procs", F_OK) < 0 ||
        access("/sys/fs/cgroup/cpuacct/cpuacct.usage", F_OK) < 0)
        skip();
    if (cg_manager_new_mode(CG_MODE_V1, false, "/sys/fs/cgroup", NULL, test_id, &m, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    const struct cg_features *f = cg_manager_features(m);
    assert_true(f->memory_limit && f->cpu_quota && f->pids_limit && f->kill && f->peak_reset);
    assert_false(f->clone_into_cgroup);
    struct cg_limits lim = {.memory_bytes = 64 << 20, .cpu_millis = 2000, .pids_max = 16};
    assert_int_equal(cg_create(m, "v1", &lim, &g, &err), 0);
    assert_int_equal(cg_group_v2_fd(g), -1);
    assert_null(path_with(g, "/unified/"));
    assert_file_u64(path_with(g, "/cpu/"), "cpu.cfs_quota_us", 200000);

    struct child c = spawn(-1, burn_100ms);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);
    child_step(&c);
    assert_int_equal(child_finish(&c, &ru), 0);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    uint64_t rusage_usec = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    print_message("v1 cpu: cpuacct %llu us, rusage %llu us\n", (unsigned long long)st.cpu_usec,
                  (unsigned long long)rusage_usec);
    assert_true(st.cpu_usec >= 100000);
    assert_true(st.cpu_usec + 5000 >= rusage_usec && st.cpu_usec <= rusage_usec + 5000);

    /* Freeze, kill, thaw: the child and both its children die. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct child c2 = spawn(-1, fork_sleepers);
    assert_int_equal(cg_attach(g, c2.pid, &err), 0);
    child_step(&c2);
    assert_int_equal(cg_kill(g, &err), 0);
    int killed = 0, status;
    while (waitpid(-1, &status, 0) > 0)
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
    assert_int_equal(killed, 3);
    close(c2.go);
    close(c2.done);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    char *fstate = NULL, path[4096];
    snprintf(path, sizeof(path), "%s/freezer.state", path_with(g, "/freezer/"));
    assert_int_equal(read_file(path, 64, &fstate, NULL), 0);
    assert_string_equal(fstate, "THAWED\n");
    free(fstate);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
}

static void test_stale_cleanup(void **state)
{
    struct cg_manager *m1 = manager(), *m2;
    struct cg_group *g = NULL;
    struct ig_error err = {};

    assert_int_equal(cg_create(m1, "stale", NULL, &g, &err), 0);
    struct child c = spawn(-1, nothing);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);
    /* A second manager with the same id: what a restarted daemon sees. */
    m2 = manager();
    assert_int_equal(cg_manager_cleanup_stale(m2, &err), 1);
    int status = child_finish(&c, NULL);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    for (const char *const *p = cg_group_paths(g); *p; p++)
        assert_int_equal(access(*p, F_OK), -1);
    assert_int_equal(cg_destroy(g, &err), 0); /* already gone: frees the struct */
    cg_manager_free(m2);
    cg_manager_free(m1);
}

/* The memory line of /proc/<pid>/cgroup (the one hierarchy where the daemon does not start at
 * the root here), or the cgroup2 line on a pure v2 host. */
static char *proc_cgroup_of(pid_t pid)
{
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    assert_int_equal(read_file(path, 65536, &text, NULL), 0);
    return text;
}

/* ignisd sits in its leaf while it runs and leaves no subtree when it stops (the harness checks
 * every hierarchy for ignis-<id>). */
static void test_daemon_leaf_and_subtree(void **state)
{
    struct ignisd_proc p;
    char id[17], want[64];

    assert_int_equal(harness_start(&p, NULL), 0);
    assert_int_equal(instance_id(p.state_dir, id), 0);
    char *cg = proc_cgroup_of(p.pid);
    snprintf(want, sizeof(want), "/ignis-%s/daemon\n", id);
    assert_non_null(strstr(cg, want));
    free(cg);
    /* One line with the mode and what is degraded; nothing is on this hybrid host. */
    assert_true(harness_log_has(&p, "msg=\"cgroups ready\" mode="));
    if (access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0)
        assert_true(harness_log_has(&p, "mode=hybrid"));
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

/* A daemon killed with SIGKILL leaves a container cgroup with a live process; the next start
 * with the same state dir kills the process and removes the cgroup. */
static void test_daemon_restart_removes_stale(void **state)
{
    struct ignisd_proc p;
    struct cg_manager *m = NULL;
    struct cg_group *g = NULL;
    struct ig_error err = {};
    char id[17];
    int status;

    assert_int_equal(harness_start(&p, NULL), 0);
    assert_int_equal(instance_id(p.state_dir, id), 0);
    /* The container cgroup, made the way the daemon makes them (same id, same subtree). */
    if (cg_manager_new(NULL, NULL, id, &m, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(cg_create(m, "leftover", NULL, &g, &err), 0);
    struct child c = spawn(cg_group_v2_fd(g), nothing);
    assert_int_equal(cg_attach(g, c.pid, &err), 0);

    assert_int_equal(kill(p.pid, SIGKILL), 0);
    assert_int_equal(waitpid(p.pid, &status, 0), p.pid);
    p.pid = 0;
    for (const char *const *dir = cg_group_paths(g); *dir; dir++)
        assert_int_equal(access(*dir, F_OK), 0);
    assert_int_equal(kill(c.pid, 0), 0);

    assert_int_equal(harness_restart(&p, NULL), 0);
    status = child_finish(&c, NULL);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    for (const char *const *dir = cg_group_paths(g); *dir; dir++)
        assert_int_equal(access(*dir, F_OK), -1);
    assert_true(harness_log_has(&p, "stale_removed=1"));
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(cg_destroy(g, &err), 0); /* gone already: frees the struct */
    cg_manager_free(m);
    assert_int_equal(harness_cleanup(&p), 0);
}

/* An unprivileged ignisd where the cgroups are root's: it starts with the null backend and says
 * so, instead of failing (what lets development and the unit tier run without root). */
static void test_daemon_unprivileged_falls_back(void **state)
{
    char dir[] = "/tmp/ignis-test-nobody.XXXXXX", log[300], listen[64];
    char *text = NULL;
    int status;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(chown(dir, 65534, 65534), 0);
    /* Run a copy that nobody can reach: the checkout may be where only root can (under /root,
     * mode 0700, on a new machine). */
    char exe[300], cmd[700];
    snprintf(exe, sizeof(exe), "%s/ignisd", dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", harness_ignisd(), exe, exe);
    assert_int_equal(system(cmd), 0);
    snprintf(log, sizeof(log), "%s/ignisd.log", dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || fchown(fd, 65534, 65534) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(126);
        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
            _exit(126);
        char state_dir[300];
        snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
        execl(exe, "ignisd", "--listen", listen, "--state-dir", state_dir, NULL);
        _exit(127);
    }
    /* Up within 10 s on a loaded machine; then stopped with SIGTERM. */
    bool started = false;
    for (int i = 0; i < 1000 && !started; i++) {
        free(text);
        text = NULL;
        started = read_file(log, 1 << 20, &text, NULL) == 0 && strstr(text, "ignisd started");
        if (!started)
            usleep(10000);
    }
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!started || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("unprivileged ignisd: status %d, log:\n%s", status, text ? text : "");
    assert_non_null(strstr(text, "no usable cgroups"));
    assert_non_null(strstr(text, "msg=\"cgroups ready\" mode=none"));
    free(text);
    rm_rf(dir);
}

static int subtree_gone(void **state)
{
    /* Whatever a test did, its subtree must be gone from every hierarchy. */
    char *self = NULL;
    int leaks = 0;
    if (read_file("/proc/self/cgroup", 65536, &self, NULL) == 0 && strstr(self, "/ignis-")) {
        fprintf(stderr, "leak: still in an ignis cgroup:\n%s", self);
        leaks++;
    }
    free(self);
    const char *dirs[] = {"memory", "cpu", "cpuacct", "pids", "freezer", "unified", ""};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "find /sys/fs/cgroup/%s -maxdepth 4 -type d -name 'ignis-%s' 2>/dev/null | "
                 "grep -q .",
                 dirs[i], test_id);
        if (system(cmd) == 0) {
            fprintf(stderr, "leak: ignis-%s left under /sys/fs/cgroup/%s\n", test_id, dirs[i]);
            leaks++;
        }
    }
    return leaks ? -1 : 0;
}

int main(void)
{
    harness_require_root();
    snprintf(test_id, sizeof(test_id), "itest-%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_limits_in_kernel_files, subtree_gone),
        cmocka_unit_test_teardown(test_cpu_usage, subtree_gone),
        cmocka_unit_test_teardown(test_memory_peak_and_reset, subtree_gone),
        cmocka_unit_test_teardown(test_oom_kill_counted, subtree_gone),
        cmocka_unit_test_teardown(test_kill_and_destroy, subtree_gone),
        cmocka_unit_test_teardown(test_v2_backend_on_real_mount, subtree_gone),
        cmocka_unit_test_teardown(test_v1_backend_on_real_hierarchies, subtree_gone),
        cmocka_unit_test_teardown(test_stale_cleanup, subtree_gone),
        cmocka_unit_test(test_daemon_leaf_and_subtree),
        cmocka_unit_test(test_daemon_restart_removes_stale),
        cmocka_unit_test(test_daemon_unprivileged_falls_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
