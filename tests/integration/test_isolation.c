/* Isolation: each test is an attempt a hostile function would make from inside a container
 * (tests/fixtures/hostile.c), and asserts that it fails or sees nothing of the host. The
 * resource tests check the kernel's own measurements (OOM counter, pids, CPU usage against wall
 * time), never timings. Teardown checks that no process, mount or cgroup was left. */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "testcontainer.h"

static struct tc_env env;

static int setup(void **state)
{
    harness_require_root();
    return tc_env_setup(&env) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    return tc_env_teardown(&env);
}

/* Runs args (a NULL-terminated list) in a fresh container with limits (may be NULL). */
static void run_limits(const struct cg_limits *limits, uint64_t tmp_size, struct tc_result *r,
                       char **args)
{
    struct container_spec spec;
    struct ig_error err = {};
    tc_spec(&env, args, &spec);
    if (tmp_size)
        spec.tmp_size = tmp_size;
    if (tc_run(&env, &spec, limits, r, &err) < 0)
        fail_msg("tc_run: %s", err.message);
}

#define ARGS(...) ((char *[]){__VA_ARGS__, NULL})

/* The one line `hostile ACTION [ARG]` printed. */
static void expect(const char *action, const char *arg, const char *want)
{
    struct tc_result r;
    run_limits(NULL, 0, &r,
               arg ? ARGS("/bin/hostile", (char *)action, (char *)arg)
                   : ARGS("/bin/hostile", (char *)action));
    char line[256];
    snprintf(line, sizeof(line), "%s\n", want);
    if (r.exit_code != 0 || strcmp(r.out, line) != 0)
        fail_msg("hostile %s %s: exit %d, printed \"%s\" (stderr \"%s\"), expected \"%s\"", action,
                 arg ? arg : "", r.exit_code, r.out, r.err, want);
    tc_result_clear(&r);
}

/* As expect, accepting either of two outcomes (where the kernel's check order decides). */
static void expect_either(const char *action, const char *arg, const char *a, const char *b)
{
    struct tc_result r;
    run_limits(NULL, 0, &r, ARGS("/bin/hostile", (char *)action, (char *)arg));
    char la[64], lb[64];
    snprintf(la, sizeof(la), "%s\n", a);
    snprintf(lb, sizeof(lb), "%s\n", b);
    if (r.exit_code != 0 || (strcmp(r.out, la) != 0 && strcmp(r.out, lb) != 0))
        fail_msg("hostile %s %s: exit %d, printed \"%s\", expected %s or %s", action, arg,
                 r.exit_code, r.out, a, b);
    tc_result_clear(&r);
}

/* 1. Only the container's own pid 1 and the function itself are visible. */
static void test_sees_no_host_process(void **state)
{
    expect("ps", NULL, "pids: 1 2");
}

/* 2. The network namespace has loopback only. */
static void test_sees_no_host_interface(void **state)
{
    expect("netdevs", NULL, "ifaces: lo");
}

/* 3. A port listening on the host's 127.0.0.1 is unreachable; the container's own loopback
 * works (runtimes listen there). */
static void test_cannot_reach_host_loopback(void **state)
{
    char port[16];
    int fd = harness_listen_loopback(port);
    expect("connect", port, "ECONNREFUSED");
    expect("loopback", NULL, "ok");
    close(fd);
}

/* 4. The root is read-only, even where the file mode would allow the write: the image's own
 * directory is made world-writable on the host for this test. */
static void test_cannot_write_root_or_image(void **state)
{
    char bin[128];
    snprintf(bin, sizeof(bin), "%s/bin", env.image);
    assert_int_equal(chmod(bin, 0777), 0);
    assert_int_equal(chmod(env.image, 0777), 0);
    expect("write", "/bin/planted", "EROFS");
    expect_either("write", "/planted", "EROFS", "EACCES");
    expect_either("mkdir", "/etc", "EROFS", "EACCES");
    chmod(bin, 0755);
    chmod(env.image, 0755);
    char planted[160];
    snprintf(planted, sizeof(planted), "%s/bin/planted", env.image);
    assert_int_equal(access(planted, F_OK), -1);
}

/* 5. /var/task (the bundle) is read-only, also where the host's modes would allow writing. */
static void test_cannot_write_bundle(void **state)
{
    char file[160];
    snprintf(file, sizeof(file), "%s/handler.txt", env.bundle);
    assert_int_equal(chmod(env.bundle, 0777), 0);
    assert_int_equal(chmod(file, 0666), 0);
    expect("write", "/var/task/handler.txt", "EROFS");
    expect("write", "/var/task/new", "EROFS");
    chmod(env.bundle, 0755);
    chmod(file, 0644);
    char *text = NULL;
    assert_int_equal(read_file(file, 100, &text, NULL), 0);
    assert_string_equal(text, "bundle\n");
    free(text);
}

/* 6. /proc/sys cannot be written (the uid switch and the read-only bind). */
static void test_cannot_write_proc_sys(void **state)
{
    char *before = NULL, *after = NULL;
    assert_int_equal(read_file("/proc/sys/kernel/hostname", 256, &before, NULL), 0);
    expect_either("write", "/proc/sys/kernel/hostname", "EROFS", "EACCES");
    expect_either("write", "/proc/sys/vm/drop_caches", "EROFS", "EACCES");
    expect_either("write", "/proc/sys/kernel/core_pattern", "EROFS", "EACCES");
    assert_int_equal(read_file("/proc/sys/kernel/hostname", 256, &after, NULL), 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* 7. No host file is reachable: /etc/shadow, a daemon's state dir, through /proc/1/root. */
static void test_cannot_read_host_files(void **state)
{
    char dir[] = "/tmp/ignis-state.XXXXXX", secret[64];
    assert_non_null(mkdtemp(dir));
    chmod(dir, 0755);
    snprintf(secret, sizeof(secret), "%s/ignis.db", dir);
    int fd = open(secret, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
    expect("read", "/etc/shadow", "ENOENT");
    expect("read", "/etc/passwd", "ENOENT");
    expect("read", secret, "ENOENT");
    expect("read", env.image, "ENOENT");
    expect_either("read", "/proc/1/root/etc/shadow", "EACCES", "ENOENT");
    expect_either("read", "/proc/1/environ", "EACCES", "EPERM");
    /* The root holds the image's entries and ours, nothing else. */
    expect("ls", "/", "entries: bin dev proc tmp var");
    rm_rf(dir);
}

/* 8. Mounting anything, by every API, is refused. */
static void test_cannot_mount(void **state)
{
    expect("mount", NULL, "EPERM");
    expect("mount-proc", NULL, "EPERM");
    expect("remount-rw", NULL, "EPERM");
    expect("umount", NULL, "EPERM");
    expect("fsopen", NULL, "EPERM");
    expect("chroot", NULL, "EPERM");
}

/* 9. No new namespaces, no joining one; clone3 says ENOSYS (so libcs fall back to clone, whose
 * flags the filter sees), plain fork still works. */
static void test_cannot_unshare_or_setns(void **state)
{
    char flag[32];
    static const int flags[] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID};
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
        snprintf(flag, sizeof(flag), "%d", flags[i]);
        expect("unshare", flag, "EPERM");
        expect("clone-ns", flag, "EPERM");
    }
    expect("setns", NULL, "EPERM");
    expect("clone3", NULL, "ENOSYS");
    expect("fork", NULL, "ok");
}

/* 10. Kernel modules cannot be loaded. */
static void test_cannot_load_module(void **state)
{
    expect("module", NULL, "EPERM");
}

/* 11. A process outside the container cannot be traced or signalled (it is not even
 * visible); pid 1 cannot be traced or killed either. */
static void test_cannot_ptrace_or_kill_outside(void **state)
{
    pid_t victim = fork();
    if (victim == 0) {
        pause();
        _exit(0);
    }
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)victim);
    expect("ptrace", pid, "EPERM");
    expect("ptrace", "1", "EPERM");
    expect("kill", pid, "ESRCH");
    assert_int_equal(kill(victim, 0), 0); /* still alive */
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    struct tc_result r;
    run_limits(NULL, 0, &r, ARGS("/bin/sh", "-c", "kill -9 1; echo alive"));
    assert_string_equal(r.out, "alive\n");
    tc_result_clear(&r);
}

/* 12. Every capability set is empty, no_new_privs and the seccomp filter are on, the ids are
 * the unprivileged ones. */
static void test_no_capability_kept(void **state)
{
    struct tc_result r;
    run_limits(NULL, 0, &r, ARGS("/bin/hostile", "status"));
    assert_int_equal(r.exit_code, 0);
    static const char *const want[] = {
        "CapInh:\t0000000000000000\n",
        "CapPrm:\t0000000000000000\n",
        "CapEff:\t0000000000000000\n",
        "CapBnd:\t0000000000000000\n",
        "CapAmb:\t0000000000000000\n",
        "NoNewPrivs:\t1\n",
        "Seccomp:\t2\n",
        "Uid:\t65534\t65534\t65534\t65534\n",
        "Gid:\t65534\t65534\t65534\t65534\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        if (!strstr(r.out, want[i]))
            fail_msg("missing \"%s\" in:\n%s", want[i], r.out);
    tc_result_clear(&r);
    expect("setuid0", NULL, "EPERM");
    expect("mknod", NULL, "EPERM");
    expect("sethostname", NULL, "EPERM");
}

/* 13. The other syscalls Docker's profile refuses. */
static void test_refused_syscalls(void **state)
{
    static const char *const actions[] = {"bpf",      "perf",   "keyctl", "userfaultfd",
                                          "io_uring", "reboot", "kexec",  "settime"};
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
        expect(actions[i], NULL, "EPERM");
}

/* 13b. A syscall through the i386 ABI (int 0x80) kills the process: a filter must not be
 * bypassed by changing ABI. */
static void test_other_abi_killed(void **state)
{
    struct tc_result r;
    run_limits(NULL, 0, &r, ARGS("/bin/hostile", "int80"));
    assert_int_equal(r.signal, SIGSYS);
    assert_null(strstr(r.out, "survived"));
    tc_result_clear(&r);
}

/* 14. Twice the memory limit: the OOM killer ends it, and the exit says so. */
static void test_memory_limit_oom_reported(void **state)
{
    struct cg_limits limits = {.memory_bytes = 32ull << 20};
    struct tc_result r;
    run_limits(&limits, 0, &r, ARGS("/bin/hostile", "alloc", "64"));
    assert_int_equal(r.signal, SIGKILL);
    assert_true(r.oom_killed);
    assert_true(r.stats.oom_kills >= 1);
    print_message("oom: exit %d, oom_kills %llu, peak %llu bytes\n", r.exit_code,
                  (unsigned long long)r.stats.oom_kills,
                  (unsigned long long)r.stats.memory_peak_bytes);
    assert_null(strstr(r.out, "allocated"));
    tc_result_clear(&r);
    /* Under the limit: no OOM. */
    run_limits(&limits, 0, &r, ARGS("/bin/hostile", "alloc", "8"));
    assert_int_equal(r.exit_code, 0);
    assert_false(r.oom_killed);
    tc_result_clear(&r);
}

/* 15. A fork bomb stops at the pids limit, and the host can still fork. */
static void test_fork_bomb_held(void **state)
{
    struct cg_limits limits = {.pids_max = 32};
    struct tc_result r;
    run_limits(&limits, 0, &r, ARGS("/bin/hostile", "forkbomb", "100000"));
    assert_int_equal(r.exit_code, 0);
    long n = -1;
    char why[32] = "";
    assert_int_equal(sscanf(r.out, "forked %ld, then %31s", &n, why), 2);
    print_message("fork bomb: %s", r.out);
    assert_true(n >= 1 && n < 32);
    assert_string_equal(why, "EAGAIN");
    tc_result_clear(&r);
    pid_t p = fork();
    if (p == 0)
        _exit(7);
    assert_true(p > 0);
    int status;
    assert_int_equal(waitpid(p, &status, 0), p);
    assert_int_equal(WEXITSTATUS(status), 7);
}

/* 16. /tmp holds no more than its size. */
static void test_tmp_size_held(void **state)
{
    struct tc_result r;
    run_limits(NULL, 1 << 20, &r, ARGS("/bin/hostile", "filltmp"));
    long long n = -1;
    char why[32] = "";
    assert_int_equal(sscanf(r.out, "wrote %lld then %31s", &n, why), 2);
    print_message("/tmp: %s", r.out);
    assert_true(n > 0 && n <= (1 << 20));
    assert_string_equal(why, "ENOSPC");
    tc_result_clear(&r);
}

/* 17. Two processes spinning on a 2-core machine get no more than the quota (200 millicores):
 * the cgroup's measured CPU time against the wall time it ran. The bound allows one extra CFS
 * period of burst and 50% measurement slack; it is never a timing assertion, since on a busy
 * machine the usage can only come out lower. */
static void test_cpu_quota_held(void **state)
{
    struct cg_limits limits = {.cpu_millis = 200};
    struct tc_result r;
    run_limits(&limits, 0, &r,
               ARGS("/bin/sh", "-c", "/bin/hostile spin 1 & /bin/hostile spin 1; wait"));
    assert_int_equal(r.exit_code, 0);
    double allowed = (double)r.wall_usec * 0.2 * 1.5 + 100000.0;
    if ((double)r.stats.cpu_usec > allowed)
        fail_msg("used %llu us of CPU in %llu us of wall time with a 20%% quota",
                 (unsigned long long)r.stats.cpu_usec, (unsigned long long)r.wall_usec);
    assert_true(r.stats.cpu_usec > 0);
    print_message("cpu quota: %llu us of CPU in %llu us of wall time (quota 20%%)\n",
                  (unsigned long long)r.stats.cpu_usec, (unsigned long long)r.wall_usec);
    tc_result_clear(&r);
}

/* 18. Only fds 0-3 reach the function; limits are the spec's; the hostname is its own. */
static void test_fds_rlimits_hostname(void **state)
{
    struct container_spec spec;
    struct container *c;
    struct container_exit x;
    struct ig_error err = {};
    /* An fd the controller holds must not leak in (all of ours are close-on-exec, but a
     * stray inheritable one must not pass either). */
    int stray = open("/dev/null", O_RDONLY);
    tc_spec(&env, ARGS("/bin/hostile", "fds"), &spec);
    struct container_options o = {.spec = &spec, .stdout_fd = -1, .stderr_fd = -1};
    assert_int_equal(container_create(env.m, &o, &c, &err), 0);
    char *out, *errs;
    tc_collect(c, &out, &errs);
    assert_int_equal(container_wait(c, &x), 0);
    assert_string_equal(out, "fds: 0 1 2 3\n");
    free(out);
    free(errs);
    assert_int_equal(container_destroy(c, &err), 0);
    close(stray);
    expect("rlimits", NULL, "nofile 1024 nproc 1024 core 0");
    expect("hostname", NULL, "ignis");
}

/* 19. /dev holds the five devices and the fd links, and they work. */
static void test_minimal_dev(void **state)
{
    expect("ls", "/dev", "entries: fd full null random stderr stdin stdout urandom zero");
    struct tc_result r;
    run_limits(NULL, 0, &r,
               ARGS("/bin/sh", "-c",
                    "echo x >/dev/null && head -c 4 /dev/zero | wc -c && "
                    "head -c 4 /dev/urandom | wc -c && (echo x >/dev/full || echo full)"));
    assert_string_equal(r.out, "4\n4\nfull\n");
    tc_result_clear(&r);
}

/* 20. After destroy, nothing of a container is left: not its processes (including ones it
 * started in the background), its cgroup directories, or its mount namespace. */
static void test_nothing_left_after_destroy(void **state)
{
    struct container_spec spec;
    struct container *c;
    struct ig_error err = {};
    struct cg_limits limits = {.memory_bytes = 64 << 20, .cpu_millis = 500, .pids_max = 16};
    tc_spec(&env,
            ARGS("/bin/sh", "-c",
                 "/bin/hostile sleep & /bin/hostile sleep & /bin/hostile sleep & echo up; wait"),
            &spec);
    struct container_options o = {
        .spec = &spec, .limits = limits, .stdout_fd = -1, .stderr_fd = -1};
    assert_int_equal(container_create(env.m, &o, &c, &err), 0);
    char buf[8] = "";
    assert_int_equal(read(container_stdout_fd(c), buf, 3), 3);
    assert_string_equal(buf, "up\n");

    /* Its cgroups, its processes, its mount namespace. */
    char dirs[8][512], procs[600], *text = NULL, mntns[64] = "";
    size_t ndirs = 0;
    pid_t pids[64];
    size_t npids = 0;
    for (const char *const *p = cg_group_paths(container_cgroup(c)); *p && ndirs < 8; p++)
        snprintf(dirs[ndirs++], sizeof(dirs[0]), "%s", *p);
    assert_true(ndirs >= 1);
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", dirs[0]);
    assert_int_equal(read_file(procs, 4096, &text, NULL), 0);
    for (char *s = text, *e; *s && npids < 64; s = e) {
        pids[npids++] = (pid_t)strtol(s, &e, 10);
        if (*e)
            e++;
    }
    free(text);
    assert_true(npids >= 5); /* pid 1, sh, three sleepers */
    char nspath[64];
    snprintf(nspath, sizeof(nspath), "/proc/%d/ns/mnt", (int)pids[npids - 1]);
    assert_true(readlink(nspath, mntns, sizeof(mntns) - 1) > 0);

    assert_int_equal(container_destroy(c, &err), 0);
    for (size_t i = 0; i < npids; i++)
        if (kill(pids[i], 0) == 0 || errno != ESRCH)
            fail_msg("process %d of the container is still there", (int)pids[i]);
    for (size_t i = 0; i < ndirs; i++)
        if (access(dirs[i], F_OK) == 0)
            fail_msg("cgroup %s is still there", dirs[i]);
    /* No process anywhere is in the container's mount namespace any more. */
    DIR *d = opendir("/proc");
    struct dirent *de;
    while ((de = readdir(d))) {
        char link[64] = "";
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(nspath, sizeof(nspath), "/proc/%s/ns/mnt", de->d_name);
        if (readlink(nspath, link, sizeof(link) - 1) > 0 && streq(link, mntns))
            fail_msg("process %s is in the container's mount namespace", de->d_name);
    }
    closedir(d);
}

/* 22. The cgroup namespace's root is the container's own cgroup: no host cgroup path shows. */
static void test_sees_no_host_cgroup_path(void **state)
{
    struct tc_result r;
    run_limits(NULL, 0, &r, ARGS("/bin/hostile", "cat", "/proc/self/cgroup"));
    assert_int_equal(r.exit_code, 0);
    assert_null(strstr(r.out, "ignis-"));
    assert_null(strstr(r.out, "process_api"));
    /* Every line ends in ":/" (the namespace's root) for the hierarchies it is in. */
    assert_non_null(strstr(r.out, "memory:/\n"));
    assert_non_null(strstr(r.out, "0::/\n"));
    tc_result_clear(&r);
}

/* 21. The hostile function cannot read pid 1's memory or environment, nor change what pid 1
 * runs as: its /proc entries are root's (not dumpable). */
static void test_pid1_protected(void **state)
{
    expect_either("read", "/proc/1/mem", "EACCES", "EPERM");
    expect_either("ls", "/proc/1/fd", "EACCES", "EPERM");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sees_no_host_process),
        cmocka_unit_test(test_sees_no_host_interface),
        cmocka_unit_test(test_cannot_reach_host_loopback),
        cmocka_unit_test(test_cannot_write_root_or_image),
        cmocka_unit_test(test_cannot_write_bundle),
        cmocka_unit_test(test_cannot_write_proc_sys),
        cmocka_unit_test(test_cannot_read_host_files),
        cmocka_unit_test(test_cannot_mount),
        cmocka_unit_test(test_cannot_unshare_or_setns),
        cmocka_unit_test(test_cannot_load_module),
        cmocka_unit_test(test_cannot_ptrace_or_kill_outside),
        cmocka_unit_test(test_no_capability_kept),
        cmocka_unit_test(test_refused_syscalls),
        cmocka_unit_test(test_other_abi_killed),
        cmocka_unit_test(test_memory_limit_oom_reported),
        cmocka_unit_test(test_fork_bomb_held),
        cmocka_unit_test(test_tmp_size_held),
        cmocka_unit_test(test_cpu_quota_held),
        cmocka_unit_test(test_fds_rlimits_hostname),
        cmocka_unit_test(test_minimal_dev),
        cmocka_unit_test(test_nothing_left_after_destroy),
        cmocka_unit_test(test_pid1_protected),
        cmocka_unit_test(test_sees_no_host_cgroup_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
