/* libignis-child.so: the privileged steps of a container forked from a template, for the runtime
 * that forks it (runtime-images/python3/bootstrap.py loads it with ctypes). Built from the
 * shim's own code (setup.c, security.c): the same mounts, privilege drop and seccomp filter as a
 * container made by the shim, in one implementation. Linked with libc and libcap only.
 *
 * The sequence (docs/architecture.md, "Templates"): in the template, process A calls
 * ignis_child_unshare and forks B, pid 1 of the new pid namespace; B sends its pidfd to the
 * controller, which moves it into the container's cgroups and says go; B then calls
 * ignis_child_setup, forks the runtime's process (which only then imports the function's code)
 * and stays its reaper (ignis_child_reap), as the shim's pid 1 does. */
#include "shim.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "base/container_spec.h"

int shim_sync_fd = -1;
int shim_server_fd = -1;

/* As the shim's: one {errno, message} on the sync pipe, then exit. */
void shim_fail(int code, const char *fmt, ...)
{
    struct container_sync_msg msg = {.code = code < 0 ? -code : code};
    va_list ap;

    if (msg.code == 0)
        msg.code = EIO;
    va_start(ap, fmt);
    vsnprintf(msg.message, sizeof(msg.message), fmt, ap);
    va_end(ap);
    if (shim_sync_fd >= 0) {
        ssize_t n = write(shim_sync_fd, &msg, sizeof(msg));
        (void)n;
    }
    _exit(SHIM_EXIT_SETUP);
}

int ignis_child_unshare(void) __attribute__((visibility("default")));
_Noreturn void ignis_child_reap(pid_t runtime) __attribute__((visibility("default")));
void ignis_child_setup(int sync_fd, const char *hostname, uint64_t tmp_size, uint64_t nofile,
                       uint64_t nproc, uint32_t uid, uint32_t gid)
    __attribute__((visibility("default")));

/* In A: the namespaces every container has of its own, but the user namespace (the template's,
 * where it is root). 0 or -errno. */
int ignis_child_unshare(void)
{
    if (unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        return -errno;
    return 0;
}

/* In B, once it is in its cgroups: a cgroup namespace rooted there, a new /proc and /tmp, lo up,
 * the hostname, rlimits, then uid/gid, every capability set and the bounding set emptied,
 * securebits locked, no_new_privs, and the seccomp filter; last, every fd above 3 closed,
 * sync_fd with them (its EOF tells the controller setup is over, as an exec's does). On failure
 * it reports on sync_fd and exits 125: it returns only when all of it was done. */
void ignis_child_setup(int sync_fd, const char *hostname, uint64_t tmp_size, uint64_t nofile,
                       uint64_t nproc, uint32_t uid, uint32_t gid)
{
    shim_sync_fd = sync_fd;
    if (unshare(CLONE_NEWCGROUP) < 0)
        shim_fail(errno, "creating the cgroup namespace: %s", strerror(errno));
    /* Over the template's: this pid namespace's processes only, and nothing of the template's
     * or a sibling's /tmp. */
    shim_mount_proc("/proc");
    shim_mount_tmp("/tmp", tmp_size);
    shim_loopback_up();
    if (sethostname(hostname, strlen(hostname)) < 0)
        shim_fail(errno, "sethostname: %s", strerror(errno));
    struct container_spec spec = {
        .uid = uid, .gid = gid, .rlimit_nofile = nofile, .rlimit_nproc = nproc};
    shim_set_rlimits(&spec);
    shim_drop_privileges(&spec);
    /* The uid switch made the process non-dumpable, which would hide its own /proc/self/fd
     * from it; an exec'd runtime is dumpable, and so is this one (no other process of its uid
     * is visible in its pid namespace). */
    prctl(PR_SET_DUMPABLE, 1);
    int r = shim_load_seccomp();
    if (r < 0)
        shim_fail(r, "loading the seccomp filter: %s", strerror(-r));
    if (close_range(RUNTIME_FD + 1, ~0u, 0) < 0)
        shim_fail(errno, "close_range: %s", strerror(errno));
    shim_sync_fd = -1;
}

/* In B, after it forked the runtime's process: what the shim's pid 1 does. It holds none of the
 * runtime's fds (their EOFs follow the runtime), is not dumpable, ignores signals from inside
 * its namespace (pid 1 without handlers; the runtime may kill itself, which a runtime that is
 * pid 1 could not), reaps every orphan and exits with the runtime's status (128+N for signal
 * N), which takes the rest of the pid namespace with it. */
void ignis_child_reap(pid_t runtime)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd <= RUNTIME_FD; fd++)
        if (null < 0 || dup2(null, fd) < 0)
            close(fd);
    prctl(PR_SET_DUMPABLE, 0);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, 0);
        if (p < 0 && errno == EINTR)
            continue;
        if (p < 0)
            _exit(SHIM_EXIT_SETUP);
        if (p == runtime)
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
}
