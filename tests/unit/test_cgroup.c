/* The cgroup layer without privileges: mode detection, and each backend (v1, v2, hybrid, null)
 * against a fake cgroupfs tree built in a temp dir, fed a literal /proc/self/cgroup. The tree
 * plays the kernel: the test writes the files the kernel would (counters, cgroup.controllers of
 * a delegated cgroup) and reads back what the layer wrote. cg_manager_new_mode's fake_fs flag
 * gives a new cgroup empty files named as its parent's and lets it be removed with its files
 * (cgroup-internal.h), which is all that differs from cgroupfs for these tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "container/cgroup-internal.h"

static char root[256];

/* Writes a file below root (creating directories), replacing what was there. */
static void put(const char *rel, const char *content)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    assert_int_equal(mkdir_p(path, 0755), 0);
    *slash = '/';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

/* The content of a file below root; "" when it is empty, NULL when it does not exist. The
 * buffer is static: one result at a time. */
static const char *get(const char *rel)
{
    static char *last;
    char path[1024];
    free(last);
    last = NULL;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (read_file(path, 65536, &last, NULL) < 0)
        return NULL;
    return last;
}

static bool exists(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    return access(path, F_OK) == 0;
}

static char *abs_path(const char *rel)
{
    char *p;
    assert_true(asprintf(&p, "%s/%s", root, rel) > 0);
    return p;
}

static char self_pid[32];

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/ignis-cgtest.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root))
        return -1;
    snprintf(self_pid, sizeof(self_pid), "%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    return rm_rf(root);
}

/* A child that sleeps until killed; the fake cgroup.procs files list it, so kills are real and
 * can only ever reach this test's own child. */
static pid_t sleeper(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

static void assert_killed(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
}

static size_t count_paths(const struct cg_group *g)
{
    size_t n = 0;
    for (const char *const *p = cg_group_paths(g); *p; p++)
        n++;
    return n;
}

/* ---- pure parts ---- */

static void test_mode_detect(void **state)
{
    /* Pure v2: cgroup2 at the root, whatever else. */
    assert_int_equal(cg_mode_detect(CGROUP2_SUPER_MAGIC, 0, false), CG_MODE_V2);
    assert_int_equal(cg_mode_detect(CGROUP2_SUPER_MAGIC, 0, true), CG_MODE_V2);
    /* Hybrid: tmpfs root, cgroup2 at unified (this host). */
    assert_int_equal(cg_mode_detect(TMPFS_MAGIC, CGROUP2_SUPER_MAGIC, true), CG_MODE_HYBRID);
    /* Legacy: tmpfs root with v1 hierarchies, no cgroup2 (statfs of unified failed, or it is a
     * plain directory of the tmpfs). */
    assert_int_equal(cg_mode_detect(TMPFS_MAGIC, 0, true), CG_MODE_V1);
    assert_int_equal(cg_mode_detect(TMPFS_MAGIC, TMPFS_MAGIC, true), CG_MODE_V1);
    assert_int_equal(cg_mode_detect(CGROUP_SUPER_MAGIC, 0, true), CG_MODE_V1);
    /* Nothing usable: no cgroup fs, or tmpfs without any v1 hierarchy listed. */
    assert_int_equal(cg_mode_detect(0, 0, false), CG_MODE_NONE);
    assert_int_equal(cg_mode_detect(TMPFS_MAGIC, 0, false), CG_MODE_NONE);
    assert_int_equal(cg_mode_detect(0x58465342 /* xfs */, 0, true), CG_MODE_NONE);

    assert_string_equal(cg_mode_name(CG_MODE_HYBRID), "hybrid");
    assert_string_equal(cg_mode_name(CG_MODE_NONE), "none");
}

static void test_parse_keyed(void **state)
{
    uint64_t v = 0;
    const char *events = "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 9\n";
    assert_int_equal(cg_parse_keyed(events, "oom_kill", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(cg_parse_keyed(events, "oom", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(cg_parse_keyed(events, "kill", &v), -ENOENT);
    assert_int_equal(cg_parse_keyed("usage_usec 18446744073709551615\n", "usage_usec", &v), 0);
    assert_int_equal(v, UINT64_MAX);
    assert_int_equal(cg_parse_keyed("usage_usec x\n", "usage_usec", &v), -EINVAL);
    assert_int_equal(cg_parse_keyed("", "usage_usec", &v), -ENOENT);
}

static void test_features_degraded(void **state)
{
    char buf[256];
    struct cg_features all = {true, true, true, true, true, true, true};
    cg_features_degraded(&all, buf, sizeof(buf));
    assert_string_equal(buf, "none");
    struct cg_features some = {.memory_limit = true, .kill = true, .memory_peak = true};
    cg_features_degraded(&some, buf, sizeof(buf));
    assert_string_equal(buf, "cpu_quota,pids_limit,peak_reset,clone_into_cgroup");
    char tiny[12];
    cg_features_degraded(&some, tiny, sizeof(tiny));
    assert_string_equal(tiny, "cpu_quota"); /* truncated at a whole name */
}

/* ---- the fake directory semantics ---- */

static void test_fake_fs_dirs(void **state)
{
    struct cg_manager *m;
    assert_int_equal(cg_manager_new_null(&m), 0);
    m->fake_fs = true;
    put("fs/cgroup.procs", "");
    put("fs/memory.max", "max\n");
    char *a = abs_path("fs/a"), *b = abs_path("fs/a/b");
    assert_int_equal(cg_fs_mkdir(m, a), 0);
    assert_int_equal(cg_fs_mkdir(m, a), 0); /* EEXIST is success */
    assert_string_equal(get("fs/a/memory.max"), "");
    assert_int_equal(cg_fs_mkdir(m, b), 0);
    assert_int_equal(cg_fs_rmdir(m, a), -EBUSY); /* a child cgroup, as on cgroupfs */
    assert_int_equal(cg_fs_rmdir(m, b), 0);
    assert_int_equal(cg_fs_rmdir(m, a), 0);
    assert_int_equal(cg_fs_rmdir(m, a), 0); /* ENOENT is success */
    assert_false(exists("fs/a"));
    free(a);
    free(b);
    cg_manager_free(m);
}

/* ---- hybrid: this host's layout ---- */

static const char hybrid_proc[] = "9:name=systemd:/\n"
                                  "8:pids:/\n"
                                  "6:freezer:/\n"
                                  "4:memory:/process_api/abc\n"
                                  "3:cpuset:/\n"
                                  "2:cpuacct:/\n"
                                  "1:cpu:/\n"
                                  "0::/\n";

static void build_v1_tree(const char *cpu_dir, const char *cpuacct_dir, bool memsw)
{
    char p[256];
    put("memory/process_api/abc/cgroup.procs", "");
    put("memory/process_api/abc/memory.limit_in_bytes", "9223372036854771712\n");
    put("memory/process_api/abc/memory.max_usage_in_bytes", "0\n");
    put("memory/process_api/abc/memory.usage_in_bytes", "0\n");
    put("memory/process_api/abc/memory.oom_control", "oom_kill_disable 0\n");
    put("memory/process_api/abc/memory.swappiness", "60\n");
    if (memsw) {
        put("memory/process_api/abc/memory.memsw.limit_in_bytes", "9223372036854771712\n");
        put("memory/process_api/abc/memory.memsw.max_usage_in_bytes", "0\n");
    }
    snprintf(p, sizeof(p), "%s/cgroup.procs", cpu_dir);
    put(p, "");
    snprintf(p, sizeof(p), "%s/cpu.cfs_quota_us", cpu_dir);
    put(p, "-1\n");
    snprintf(p, sizeof(p), "%s/cpu.cfs_period_us", cpu_dir);
    put(p, "100000\n");
    snprintf(p, sizeof(p), "%s/cgroup.procs", cpuacct_dir);
    put(p, "");
    snprintf(p, sizeof(p), "%s/cpuacct.usage", cpuacct_dir);
    put(p, "0\n");
    /* pids.max and freezer.state exist only below a hierarchy's root on cgroupfs; the fake
     * root has them so that the children's copies do. */
    put("pids/cgroup.procs", "");
    put("pids/pids.max", "max\n");
    put("freezer/cgroup.procs", "");
    put("freezer/freezer.state", "THAWED\n");
    put("cpuset/cgroup.procs", "");
}

static void build_hybrid_tree(void)
{
    build_v1_tree("cpu", "cpuacct", true);
    /* The controller-less cgroup2 mount: no memory.*, pids.*, cpu.max. */
    put("unified/cgroup.procs", "");
    put("unified/cgroup.controllers", "");
    put("unified/cgroup.subtree_control", "");
    put("unified/cgroup.kill", "");
    put("unified/cgroup.events", "populated 1\nfrozen 0\n");
    put("unified/cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
}

static struct cg_manager *fake_manager(enum cg_mode mode, const char *fs_root, const char *proc,
                                       const char *id)
{
    struct cg_manager *m = NULL;
    struct ig_error err = {};
    char *r = abs_path(fs_root);
    if (cg_manager_new_mode(mode, true, r, proc, id, &m, &err) < 0)
        fail_msg("cg_manager_new_mode: %s", err.message);
    free(r);
    return m;
}

static void test_hybrid_layout_and_leaf(void **state)
{
    build_hybrid_tree();
    struct cg_manager *m = fake_manager(CG_MODE_HYBRID, ".", hybrid_proc, "h1");
    struct ig_error err = {};

    assert_int_equal(cg_manager_mode(m), CG_MODE_HYBRID);
    /* The subtree beneath the daemon's own cgroup in each used hierarchy, never elsewhere. */
    assert_true(exists("memory/process_api/abc/ignis-h1/daemon"));
    assert_true(exists("cpu/ignis-h1/daemon"));
    assert_true(exists("cpuacct/ignis-h1/daemon"));
    assert_true(exists("pids/ignis-h1/daemon"));
    assert_true(exists("freezer/ignis-h1/daemon"));
    assert_true(exists("unified/ignis-h1/daemon"));
    assert_false(exists("memory/ignis-h1"));
    assert_false(exists("cpuset/ignis-h1"));

    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    assert_string_equal(get("memory/process_api/abc/ignis-h1/daemon/cgroup.procs"), self_pid);
    assert_string_equal(get("unified/ignis-h1/daemon/cgroup.procs"), self_pid);
    assert_string_equal(get("freezer/ignis-h1/daemon/cgroup.procs"), self_pid);

    const struct cg_features *f = cg_manager_features(m);
    assert_true(f->memory_limit && f->cpu_quota && f->pids_limit && f->kill && f->memory_peak &&
                f->peak_reset);
    assert_false(f->clone_into_cgroup); /* probed only on a real cgroupfs */

    cg_manager_free(m);
    /* Moved back to where it started, the subtree gone everywhere. */
    assert_string_equal(get("memory/process_api/abc/cgroup.procs"), self_pid);
    assert_string_equal(get("unified/cgroup.procs"), self_pid);
    assert_false(exists("memory/process_api/abc/ignis-h1"));
    assert_false(exists("cpu/ignis-h1"));
    assert_false(exists("unified/ignis-h1"));
}

static void test_hybrid_group(void **state)
{
    build_hybrid_tree();
    struct cg_manager *m = fake_manager(CG_MODE_HYBRID, ".", hybrid_proc, "h2");
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_limits lim = {.memory_bytes = 64 << 20, .cpu_millis = 250, .pids_max = 50};
    struct cg_stats st;

    assert_int_equal(cg_create(m, "fn-1", &lim, &g, &err), 0);
    assert_string_equal(get("memory/process_api/abc/ignis-h2/c-fn-1/memory.limit_in_bytes"),
                        "67108864");
    assert_string_equal(get("memory/process_api/abc/ignis-h2/c-fn-1/memory.memsw.limit_in_bytes"),
                        "67108864");
    /* With memsw there, swappiness is left alone. */
    assert_string_equal(get("memory/process_api/abc/ignis-h2/c-fn-1/memory.swappiness"), "");
    assert_string_equal(get("cpu/ignis-h2/c-fn-1/cpu.cfs_period_us"), "100000");
    assert_string_equal(get("cpu/ignis-h2/c-fn-1/cpu.cfs_quota_us"), "25000");
    assert_string_equal(get("pids/ignis-h2/c-fn-1/pids.max"), "50");
    assert_true(exists("unified/ignis-h2/c-fn-1"));
    assert_false(exists("cpuset/ignis-h2"));
    /* memory, cpu, cpuacct, pids, freezer, and the cgroup2 directory last. */
    assert_int_equal(count_paths(g), 6);
    assert_non_null(strstr(cg_group_paths(g)[5], "/unified/ignis-h2/c-fn-1"));
    assert_true(cg_group_v2_fd(g) >= 0);

    pid_t pid = sleeper();
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
    assert_int_equal(cg_attach(g, pid, &err), 0);
    for (const char *const *p = cg_group_paths(g); *p; p++) {
        char *procs = NULL;
        char *path = cg_path(*p, "cgroup.procs");
        assert_int_equal(read_file(path, 4096, &procs, NULL), 0);
        assert_string_equal(procs, pidtext);
        free(procs);
        free(path);
    }

    /* CPU from the cgroup2 side's cpu.stat, not from cpuacct; memory from v1. */
    put("unified/ignis-h2/c-fn-1/cpu.stat",
        "usage_usec 100077\nuser_usec 99000\nsystem_usec 1077\nnr_periods 0\n");
    put("cpuacct/ignis-h2/c-fn-1/cpuacct.usage", "999000000000\n");
    put("memory/process_api/abc/ignis-h2/c-fn-1/memory.max_usage_in_bytes", "33816576\n");
    put("memory/process_api/abc/ignis-h2/c-fn-1/memory.usage_in_bytes", "1048576\n");
    put("memory/process_api/abc/ignis-h2/c-fn-1/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_int_equal(st.cpu_usec, 100077);
    assert_int_equal(st.memory_peak_bytes, 33816576);
    assert_int_equal(st.memory_current_bytes, 1048576);
    assert_int_equal(st.oom_kills, 2);

    /* A fake file keeps what was written over it: empty it to see just the write. */
    put("memory/process_api/abc/ignis-h2/c-fn-1/memory.max_usage_in_bytes", "");
    assert_int_equal(cg_reset_peak(g), 0);
    assert_string_equal(get("memory/process_api/abc/ignis-h2/c-fn-1/memory.max_usage_in_bytes"),
                        "0");
    /* A reading reads only the fields asked for: the hand-off's (CPU, OOM kills) does not touch
     * the peak, here unreadable. */
    put("memory/process_api/abc/ignis-h2/c-fn-1/memory.max_usage_in_bytes", "garbage\n");
    assert_int_equal(cg_read_stats(g, CG_STAT_CPU | CG_STAT_OOM, &st), 0);
    assert_int_equal(st.cpu_usec, 100077);
    assert_int_equal(st.oom_kills, 2);
    assert_int_equal(st.memory_peak_bytes, 0);
    assert_int_not_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);

    /* cgroup.kill on the cgroup2 side; the freezer is not touched. */
    assert_int_equal(cg_kill(g, &err), 0);
    assert_string_equal(get("unified/ignis-h2/c-fn-1/cgroup.kill"), "1");
    assert_string_equal(get("freezer/ignis-h2/c-fn-1/freezer.state"), "");
    /* A fake cgroup.kill kills nothing: the test does it. */
    kill(pid, SIGKILL);
    assert_killed(pid);

    assert_int_equal(cg_destroy(g, &err), 0);
    assert_false(exists("memory/process_api/abc/ignis-h2/c-fn-1"));
    assert_false(exists("cpu/ignis-h2/c-fn-1"));
    assert_false(exists("unified/ignis-h2/c-fn-1"));
    assert_true(exists("cpu/ignis-h2/daemon"));
    cg_manager_free(m);
    assert_false(exists("cpu/ignis-h2"));
}

static void test_bad_names(void **state)
{
    build_hybrid_tree();
    struct cg_manager *m = NULL;
    struct cg_group *g = NULL;
    struct ig_error err = {};
    char *r = abs_path(".");

    assert_int_equal(cg_manager_new_mode(CG_MODE_HYBRID, true, r, hybrid_proc, "../x", &m, &err),
                     -EINVAL);
    assert_non_null(strstr(err.message, "../x"));
    m = fake_manager(CG_MODE_HYBRID, ".", hybrid_proc, "h3");
    const char *bad[] = {"", "..", "a/b", "a b", "x\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ig_error_clear(&err);
        assert_int_equal(cg_create(m, bad[i], NULL, &g, &err), -EINVAL);
    }
    free(r);
    cg_manager_free(m);
}

/* Stale cleanup: a new manager with the same id removes what the earlier one left, and only
 * the c-* groups; the leaf is reused. */
static void test_hybrid_stale_cleanup(void **state)
{
    build_hybrid_tree();
    struct cg_manager *m1 = fake_manager(CG_MODE_HYBRID, ".", hybrid_proc, "h4");
    struct cg_group *a = NULL, *b = NULL;
    struct ig_error err = {};

    assert_int_equal(cg_create(m1, "a", NULL, &a, &err), 0);
    assert_int_equal(cg_create(m1, "b", NULL, &b, &err), 0);
    /* A name in use is refused, and the group that has it is left alone. */
    struct cg_group *again = NULL;
    assert_int_equal(cg_create(m1, "a", NULL, &again, &err), -EEXIST);
    assert_null(again);
    assert_true(exists("unified/ignis-h4/c-a"));
    /* A half-made group from a crash: only in the memory hierarchy (no cgroup.kill, no
     * freezer), with a live process that must still be killed. */
    pid_t pid = sleeper();
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "%d\n", (int)pid);
    put("memory/process_api/abc/ignis-h4/c-half/cgroup.procs", pidtext);

    struct cg_manager *m2 = fake_manager(CG_MODE_HYBRID, ".", hybrid_proc, "h4");
    assert_int_equal(cg_manager_cleanup_stale(m2, &err), 3);
    assert_killed(pid);
    assert_false(exists("memory/process_api/abc/ignis-h4/c-a"));
    assert_false(exists("unified/ignis-h4/c-b"));
    assert_false(exists("memory/process_api/abc/ignis-h4/c-half"));
    assert_true(exists("unified/ignis-h4/daemon"));
    assert_int_equal(cg_manager_cleanup_stale(m2, &err), 0);

    assert_int_equal(cg_destroy(a, &err), 0); /* already gone: frees */
    assert_int_equal(cg_destroy(b, &err), 0);
    assert_int_equal(cg_destroy(NULL, &err), 0);
    cg_manager_free(m2);
    cg_manager_free(m1);
    assert_false(exists("unified/ignis-h4"));
}

/* ---- v1: cpu and cpuacct comounted, no swap accounting ---- */

static const char v1_proc[] = "7:pids:/\n"
                              "6:freezer:/\n"
                              "4:memory:/process_api/abc\n"
                              "2:cpu,cpuacct:/\n"
                              "1:name=systemd:/\n";

static void test_v1_group(void **state)
{
    build_v1_tree("cpu,cpuacct", "cpu,cpuacct", false);
    struct cg_manager *m = fake_manager(CG_MODE_V1, ".", v1_proc, "v1");
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_limits lim = {.memory_bytes = 128 << 20, .cpu_millis = 1, .pids_max = 10};
    struct cg_stats st;

    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    const struct cg_features *f = cg_manager_features(m);
    assert_true(f->memory_limit && f->cpu_quota && f->pids_limit && f->kill && f->memory_peak &&
                f->peak_reset);
    assert_false(f->clone_into_cgroup);
    assert_string_equal(get("cpu,cpuacct/ignis-v1/daemon/cgroup.procs"), self_pid);

    assert_int_equal(cg_create(m, "one", &lim, &g, &err), 0);
    assert_int_equal(cg_group_v2_fd(g), -1);
    /* memory, cpu+cpuacct once, pids, freezer. */
    assert_int_equal(count_paths(g), 4);
    assert_string_equal(get("memory/process_api/abc/ignis-v1/c-one/memory.limit_in_bytes"),
                        "134217728");
    /* No memsw: swappiness 0 keeps it out of swap. */
    assert_string_equal(get("memory/process_api/abc/ignis-v1/c-one/memory.swappiness"), "0");
    /* 1 milli-CPU is under the kernel's 1 ms minimum quota: clamped. */
    assert_string_equal(get("cpu,cpuacct/ignis-v1/c-one/cpu.cfs_quota_us"), "1000");
    assert_string_equal(get("pids/ignis-v1/c-one/pids.max"), "10");

    put("cpu,cpuacct/ignis-v1/c-one/cpuacct.usage", "123456789\n");
    put("memory/process_api/abc/ignis-v1/c-one/memory.max_usage_in_bytes", "4096\n");
    put("memory/process_api/abc/ignis-v1/c-one/memory.usage_in_bytes", "2048\n");
    put("memory/process_api/abc/ignis-v1/c-one/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_int_equal(st.cpu_usec, 123456); /* ns to µs */
    assert_int_equal(st.memory_peak_bytes, 4096);
    assert_int_equal(st.memory_current_bytes, 2048);
    assert_int_equal(st.oom_kills, 1);
    /* Before 4.13 memory.oom_control had no oom_kill line: zero, not an error. */
    put("memory/process_api/abc/ignis-v1/c-one/memory.oom_control", "oom_kill_disable 0\n");
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_int_equal(st.oom_kills, 0);

    put("memory/process_api/abc/ignis-v1/c-one/memory.max_usage_in_bytes", "");
    assert_int_equal(cg_reset_peak(g), 0);
    assert_string_equal(get("memory/process_api/abc/ignis-v1/c-one/memory.max_usage_in_bytes"),
                        "0");

    /* Freeze, kill what cgroup.procs lists, thaw. */
    pid_t pid = sleeper();
    assert_int_equal(cg_attach(g, pid, &err), 0);
    assert_int_equal(cg_kill(g, &err), 0);
    assert_killed(pid);
    /* The last write was the thaw (one file: "FROZEN" was overwritten by "THAWED"). */
    assert_string_equal(get("freezer/ignis-v1/c-one/freezer.state"), "THAWED");

    /* The fake cgroup.procs still lists the dead pid; nothing else is signalled. */
    put("freezer/ignis-v1/c-one/cgroup.procs", "");
    put("memory/process_api/abc/ignis-v1/c-one/cgroup.procs", "");
    put("pids/ignis-v1/c-one/cgroup.procs", "");
    put("cpu,cpuacct/ignis-v1/c-one/cgroup.procs", "");
    assert_int_equal(cg_destroy(g, &err), 0);
    assert_false(exists("cpu,cpuacct/ignis-v1/c-one"));
    cg_manager_free(m);
    assert_false(exists("memory/process_api/abc/ignis-v1"));
    assert_string_equal(get("cpu,cpuacct/cgroup.procs"), self_pid);
}

/* Without a freezer: kill what is listed (no freeze), and report kill as degraded. */
static void test_v1_without_freezer(void **state)
{
    build_v1_tree("cpu", "cpuacct", true);
    /* The freezer is listed, but not where it is mounted here (as in a cgroup namespace):
     * done without, not a failure. */
    const char proc[] = "6:freezer:/elsewhere\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n";
    struct cg_manager *m = fake_manager(CG_MODE_V1, ".", proc, "nf");
    struct cg_group *g = NULL;
    struct ig_error err = {};

    assert_false(cg_manager_features(m)->kill);
    assert_false(cg_manager_features(m)->pids_limit);
    assert_int_equal(cg_create(m, "x", &(struct cg_limits){.pids_max = 5}, &g, &err), 0);
    assert_false(exists("pids/ignis-nf"));
    pid_t pid = sleeper();
    assert_int_equal(cg_attach(g, pid, &err), 0);
    assert_int_equal(cg_kill(g, &err), 0);
    assert_killed(pid);
    for (const char *const *p = cg_group_paths(g); *p; p++) {
        char *path = cg_path(*p, "cgroup.procs");
        assert_int_equal(write_file(path, ""), 0);
        free(path);
    }
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
}

/* ---- v2: a delegated service cgroup offering memory and pids, not cpu ---- */

static const char v2_proc[] = "0::/system.slice/ignis.service\n";

static void build_v2_tree(void)
{
    const char *d = "v2/system.slice/ignis.service/";
    char p[256];
    const char *files[][2] = {
        {"cgroup.procs", ""},
        {"cgroup.controllers", "memory pids\n"},
        {"cgroup.subtree_control", ""},
        {"cgroup.kill", ""},
        {"cgroup.events", "populated 1\nfrozen 0\n"},
        {"cpu.stat", "usage_usec 0\n"},
        {"memory.max", "max\n"},
        {"memory.swap.max", "max\n"},
        {"memory.current", "0\n"},
        {"memory.peak", "0\n"},
        {"memory.events", "oom_kill 0\n"},
        {"pids.max", "max\n"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        snprintf(p, sizeof(p), "%s%s", d, files[i][0]);
        put(p, files[i][1]);
    }
}

static void test_v2_delegation_and_group(void **state)
{
    build_v2_tree();
    struct cg_manager *m = fake_manager(CG_MODE_V2, "v2", v2_proc, "v2");
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;
    const char *svc = "v2/system.slice/ignis.service";
    char p[256], deg[128];

    assert_true(exists("v2/system.slice/ignis.service/ignis-v2/daemon"));
    /* The kernel makes the service's enabled controllers available to its child; here the
     * test does, as the fake cannot. */
    put("v2/system.slice/ignis.service/ignis-v2/cgroup.controllers", "memory pids\n");
    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    snprintf(p, sizeof(p), "%s/ignis-v2/daemon/cgroup.procs", svc);
    assert_string_equal(get(p), self_pid);
    /* Only what was delegated, enabled at the service cgroup (now empty) and at the base. */
    snprintf(p, sizeof(p), "%s/cgroup.subtree_control", svc);
    assert_string_equal(get(p), "+memory +pids");
    snprintf(p, sizeof(p), "%s/ignis-v2/cgroup.subtree_control", svc);
    assert_string_equal(get(p), "+memory +pids");
    cg_features_degraded(cg_manager_features(m), deg, sizeof(deg));
    assert_string_equal(deg, "cpu_quota,clone_into_cgroup");

    struct cg_limits lim = {.memory_bytes = 128 << 20, .cpu_millis = 1500, .pids_max = 64};
    assert_int_equal(cg_create(m, "f", &lim, &g, &err), 0);
    snprintf(p, sizeof(p), "%s/ignis-v2/c-f", svc);
    char *dir = abs_path(p);
    assert_int_equal(count_paths(g), 1);
    assert_string_equal(cg_group_paths(g)[0], dir);
    assert_true(cg_group_v2_fd(g) >= 0);
    char q[300];
    snprintf(q, sizeof(q), "%s/memory.max", p);
    assert_string_equal(get(q), "134217728");
    snprintf(q, sizeof(q), "%s/memory.swap.max", p);
    assert_string_equal(get(q), "0");
    snprintf(q, sizeof(q), "%s/pids.max", p);
    assert_string_equal(get(q), "64");
    snprintf(q, sizeof(q), "%s/cpu.max", p);
    assert_false(exists(q)); /* cpu not delegated: no quota, reported as degraded */

    snprintf(q, sizeof(q), "%s/cpu.stat", p);
    put(q, "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n");
    snprintf(q, sizeof(q), "%s/memory.current", p);
    put(q, "4096\n");
    snprintf(q, sizeof(q), "%s/memory.peak", p);
    put(q, "8192\n");
    snprintf(q, sizeof(q), "%s/memory.events", p);
    put(q, "low 0\nhigh 0\nmax 12\noom 4\noom_kill 3\noom_group_kill 0\n");
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_int_equal(st.cpu_usec, 5000);
    assert_int_equal(st.memory_current_bytes, 4096);
    assert_int_equal(st.memory_peak_bytes, 8192);
    assert_int_equal(st.oom_kills, 3);

    /* The reset goes through the group's own memory.peak fd (per-fd since 6.12). */
    assert_int_equal(cg_reset_peak(g), 0);
    snprintf(q, sizeof(q), "%s/memory.peak", p);
    assert_true(startswith(get(q), "reset"));

    assert_int_equal(cg_kill(g, &err), 0);
    snprintf(q, sizeof(q), "%s/cgroup.kill", p);
    assert_string_equal(get(q), "1");

    pid_t pid = sleeper();
    assert_int_equal(cg_attach(g, pid, &err), 0);
    snprintf(q, sizeof(q), "%s/cgroup.procs", p);
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
    assert_string_equal(get(q), pidtext);
    kill(pid, SIGKILL);
    assert_killed(pid);

    assert_int_equal(cg_destroy(g, &err), 0);
    assert_false(exists(p));
    cg_manager_free(m);
    /* Controllers disabled again before moving back (no-internal-process rule), then gone. */
    snprintf(p, sizeof(p), "%s/cgroup.subtree_control", svc);
    assert_string_equal(get(p), "-memory -pids");
    snprintf(p, sizeof(p), "%s/cgroup.procs", svc);
    assert_string_equal(get(p), self_pid);
    assert_false(exists("v2/system.slice/ignis.service/ignis-v2"));
    free(dir);
}

/* Nothing delegated at all: everything that needs a controller is degraded, nothing fails. */
static void test_v2_nothing_delegated(void **state)
{
    build_v2_tree();
    put("v2/system.slice/ignis.service/cgroup.controllers", "");
    struct cg_manager *m = fake_manager(CG_MODE_V2, "v2", v2_proc, "nd");
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st;
    char deg[128];

    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    assert_string_equal(get("v2/system.slice/ignis.service/cgroup.subtree_control"), "");
    cg_features_degraded(cg_manager_features(m), deg, sizeof(deg));
    assert_string_equal(deg, "memory_limit,cpu_quota,pids_limit,memory_peak,peak_reset,"
                             "clone_into_cgroup");
    struct cg_limits lim = {.memory_bytes = 1 << 20, .cpu_millis = 100, .pids_max = 1};
    assert_int_equal(cg_create(m, "g", &lim, &g, &err), 0);
    assert_string_equal(get("v2/system.slice/ignis.service/ignis-nd/c-g/memory.max"), "");
    put("v2/system.slice/ignis.service/ignis-nd/c-g/cpu.stat", "usage_usec 42\n");
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_int_equal(st.cpu_usec, 42);
    assert_int_equal(st.memory_peak_bytes, 0);
    assert_int_equal(cg_reset_peak(g), -EOPNOTSUPP);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
    assert_false(exists("v2/system.slice/ignis.service/ignis-nd"));
}

/* Started at the cgroup2 root: what was enabled there is left enabled at shutdown, since
 * others may rely on it by then. */
static void test_v2_at_root(void **state)
{
    put("v2root/cgroup.procs", "");
    put("v2root/cgroup.controllers", "memory\n");
    put("v2root/cgroup.subtree_control", "");
    put("v2root/cgroup.kill", "");
    put("v2root/cpu.stat", "usage_usec 0\n");
    struct cg_manager *m = fake_manager(CG_MODE_V2, "v2root", "0::/\n", "rt");
    struct ig_error err = {};
    put("v2root/ignis-rt/cgroup.controllers", "memory\n");
    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    assert_string_equal(get("v2root/cgroup.subtree_control"), "+memory");
    assert_string_equal(get("v2root/ignis-rt/cgroup.subtree_control"), "+memory");
    cg_manager_free(m);
    assert_string_equal(get("v2root/cgroup.subtree_control"), "+memory");
    assert_false(exists("v2root/ignis-rt"));
}

static void test_null_backend(void **state)
{
    struct cg_manager *m;
    struct cg_group *g = NULL;
    struct ig_error err = {};
    struct cg_stats st = {.cpu_usec = 1};

    assert_int_equal(cg_manager_new_null(&m), 0);
    assert_int_equal(cg_manager_mode(m), CG_MODE_NONE);
    assert_int_equal(cg_manager_enter_leaf(m, &err), 0);
    assert_int_equal(cg_manager_cleanup_stale(m, &err), 0);
    assert_int_equal(cg_create(m, "n", &(struct cg_limits){.memory_bytes = 1}, &g, &err), 0);
    assert_int_equal(count_paths(g), 0);
    assert_int_equal(cg_group_v2_fd(g), -1);
    assert_int_equal(cg_attach(g, getpid(), &err), 0);
    assert_int_equal(cg_read_stats(g, CG_STAT_ALL, &st), 0);
    assert_int_equal(st.cpu_usec, 0);
    assert_int_equal(cg_reset_peak(g), -EOPNOTSUPP);
    assert_int_equal(cg_kill(g, &err), 0);
    assert_int_equal(cg_destroy(g, &err), 0);
    cg_manager_free(m);
    cg_manager_free(NULL);
}

/* A fs_root with no cgroup file system and no v1 hierarchy listed: cg_manager_new says so
 * instead of making anything. (With a v1 line, a tmpfs root reads as legacy and the missing
 * hierarchy directories fail the creation instead; either way nothing is made.) */
static void test_detect_on_plain_dir(void **state)
{
    struct cg_manager *m = NULL;
    struct ig_error err = {};
    char *r = abs_path("plain");
    assert_int_equal(mkdir_p(r, 0755), 0);
    assert_int_equal(cg_manager_new(r, "0::/\n", "pd", &m, &err), -ENOTSUP);
    assert_non_null(strstr(err.message, r));
    assert_null(m);
    ig_error_clear(&err);
    assert_true(cg_manager_new(r, "4:memory:/\n", "pd", &m, &err) < 0);
    assert_null(m);
    assert_int_equal(rmdir(r), 0); /* still empty */
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mode_detect),
        cmocka_unit_test(test_parse_keyed),
        cmocka_unit_test(test_features_degraded),
        cmocka_unit_test_setup_teardown(test_fake_fs_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hybrid_layout_and_leaf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hybrid_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hybrid_stale_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_without_freezer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_delegation_and_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_nothing_delegated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_at_root, setup, teardown),
        cmocka_unit_test(test_null_backend),
        cmocka_unit_test_setup_teardown(test_detect_on_plain_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
