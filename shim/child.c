/* libignis-child.so: the privileged steps of a container forked from a template, for the runtime
 * that forks it (runtime-images/python3/bootstrap.py loads it with ctypes). Built from the
 * shim's own code (setup.c, security.c): the same mounts, privilege drop and seccomp filter as a
 * container made by the shim, in one implementation. Linked with libc and libcap only.
 *
 * The sequence (docs/architecture.md, "Templates"): the template calls ignis_child_fork, which
 * clones B in the container's own pid, mount, network, IPC and UTS namespaces (pid 1 of the new
 * pid namespace); B sends its pidfd to the controller, which moves it into the container's
 * cgroups and says go; B does the rest of a container's setup, forks the runtime's process
 * (which only then imports the function's code) and stays its reaper, as the shim's pid 1 does,
 * and reports the runtime's end on the control socket. B runs only this file's code: it touches
 * none of the interpreter's objects, so it copies none of their pages (a forked process that
 * ran Python did, on every object it touched) and spends no time interpreting. */
#include "shim.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <linux/sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "base/container_spec.h"
#include "base/util.h"

/* In B, from layout_fds on: the sync pipe until setup is over, and the control socket, on which
 * B reports the runtime's end (reap). */
#define SYNC_FD (RUNTIME_FD + 1)
#define CTL_FD  (RUNTIME_FD + 2)

int shim_sync_fd = -1;
int shim_server_fd = -1;
int32_t *shim_pid_slots;
/* B's control socket is on CTL_FD, where its end is reported (reap, shim_fail). */
static bool reports;

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
    if (reports) {
        int status = W_EXITCODE(SHIM_EXIT_SETUP, 0);
        ssize_t n = send(CTL_FD, &status, sizeof(status), MSG_NOSIGNAL);
        (void)n;
    }
    _exit(SHIM_EXIT_SETUP);
}

pid_t ignis_child_fork(const int fds[5], const char *hostname, uint64_t tmp_size, uint64_t nofile,
                       uint64_t nproc, uint32_t uid, uint32_t gid)
    __attribute__((visibility("default")));

/* What a fork request passes (bootstrap.py's TEMPLATE_REQUEST): fds in this order. */
enum { FORK_RUNTIME, FORK_STDOUT, FORK_STDERR, FORK_SYNC, FORK_CTL, FORK_FDS };

/* What the controller sends with go (template.c, send_go): 'g', or 's' and the names of the
 * function's secrets that are set, each NUL-terminated, with an fd of each (SCM_RIGHTS). */
struct go {
    bool secrets;
    size_t n;
    char *names[CONTAINER_SPEC_MAX_SECRETS + 1];
    int fds[CONTAINER_SPEC_MAX_SECRETS];
    char text[1 + CONTAINER_SPEC_MAX_SECRETS * 256];
};

/* In B: its pidfd to the controller (on the control socket, with a 'P'), then the controller's
 * go, sent once B is in the container's cgroups. */
static void handshake(int ctl, struct go *go)
{
    int pidfd = pidfd_open(getpid(), 0);
    if (pidfd < 0)
        shim_fail(errno, "pidfd_open: %s", strerror(errno));
    char p = 'P';
    union {
        char buf[CMSG_SPACE(sizeof(int) * CONTAINER_SPEC_MAX_SECRETS)];
        struct cmsghdr align;
    } control = {};
    struct iovec iov = {.iov_base = &p, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = &control,
                         .msg_controllen = CMSG_SPACE(sizeof(int))};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pidfd, sizeof(int));
    if (sendmsg(ctl, &msg, MSG_NOSIGNAL) < 0)
        shim_fail(errno, "sending the pidfd: %s", strerror(errno));
    close(pidfd);

    iov = (struct iovec){.iov_base = go->text, .iov_len = sizeof(go->text) - 1};
    msg = (struct msghdr){.msg_iov = &iov,
                          .msg_iovlen = 1,
                          .msg_control = &control,
                          .msg_controllen = sizeof(control)};
    ssize_t n;
    while ((n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n < 1 || (go->text[0] != 'g' && go->text[0] != 's') ||
        (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
        shim_fail(ECANCELED, "setting up the container's cgroups was not finished");
    go->text[n] = '\0';
    go->secrets = go->text[0] == 's';
    cm = CMSG_FIRSTHDR(&msg);
    size_t nfds =
        cm && cm->cmsg_type == SCM_RIGHTS ? (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;
    if (nfds)
        memcpy(go->fds, CMSG_DATA(cm), nfds * sizeof(int));
    /* Above the runtime's layout (layout_fds), which the template's closed socket may have
     * freed a place in. */
    for (size_t i = 0; i < nfds; i++) {
        if (go->fds[i] > CTL_FD)
            continue;
        int high = fcntl(go->fds[i], F_DUPFD_CLOEXEC, CTL_FD + 1);
        if (high < 0)
            shim_fail(errno, "dup: %s", strerror(errno));
        close(go->fds[i]);
        go->fds[i] = high;
    }
    for (char *name = go->text + 1; name < go->text + n && go->n < nfds; name += strlen(name) + 1)
        go->names[go->n++] = name;
    if (go->n != nfds)
        shim_fail(EPROTO, "the secrets sent with go do not match their names");
}

/* In B: the fd layout of an exec'd runtime (0 /dev/null, 1 and 2 the controller's pipes, 3 the
 * runtime socket), the sync pipe on SYNC_FD until setup closes it, the control socket on
 * CTL_FD. */
static void layout_fds(const int fds[FORK_FDS])
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        shim_fail(errno, "opening /dev/null: %s", strerror(errno));
    int from[] = {null,           fds[FORK_STDOUT], fds[FORK_STDERR], fds[FORK_RUNTIME],
                  fds[FORK_SYNC], fds[FORK_CTL]};
    int high[ARRAY_SIZE(from)];
    /* Copies above the targets first, so that no target overwrites a source. */
    for (size_t i = 0; i < ARRAY_SIZE(from); i++)
        if ((high[i] = fcntl(from[i], F_DUPFD_CLOEXEC, (int)ARRAY_SIZE(from))) < 0)
            shim_fail(errno, "dup: %s", strerror(errno));
    for (size_t i = 0; i < ARRAY_SIZE(from); i++)
        if (dup2(high[i], (int)i) < 0)
            shim_fail(errno, "dup2: %s", strerror(errno));
    shim_sync_fd = SYNC_FD;
    reports = true;
}

/* In B, once it is in its cgroups: a cgroup namespace rooted there, a new /proc and /tmp, lo up,
 * the hostname, rlimits, then uid/gid, every capability set and the bounding set emptied,
 * securebits locked, no_new_privs, and the seccomp filter; last, every fd above 3 closed but the
 * control socket, the sync pipe with them (its EOF tells the controller setup is over, as an
 * exec's does). On failure it reports on the sync pipe and exits 125: it returns only when all
 * of it was done. */
static void setup(const struct go *go, const char *hostname, uint64_t tmp_size, uint64_t nofile,
                  uint64_t nproc, uint32_t uid, uint32_t gid)
{
    if (unshare(CLONE_NEWCGROUP) < 0)
        shim_fail(errno, "creating the cgroup namespace: %s", strerror(errno));
    /* Over the template's: this pid namespace's processes only, and nothing of the template's
     * or a sibling's /tmp. */
    shim_mount_proc("/proc");
    shim_mount_tmp("/tmp", tmp_size);
    /* Over the template's empty /run/secrets: the values of now, not of the template's start. */
    if (go->secrets)
        shim_make_secrets("/run/secrets", uid, gid, go->names, go->fds, go->n);
    shim_loopback_up();
    if (sethostname(hostname, strlen(hostname)) < 0)
        shim_fail(errno, "sethostname: %s", strerror(errno));
    struct container_spec spec = {
        .uid = uid, .gid = gid, .rlimit_nofile = nofile, .rlimit_nproc = nproc};
    shim_set_rlimits(&spec);
    shim_drop_privileges(&spec);
    /* B stays non-dumpable (the uid switch made it so; said again, since it is what keeps the
     * runtime, of the same uid, out of B's /proc/1/mem and environ): the runtime's process
     * makes itself dumpable after the fork. */
    prctl(PR_SET_DUMPABLE, 0);
    int r = shim_load_seccomp();
    if (r < 0)
        shim_fail(r, "loading the seccomp filter: %s", strerror(-r));
    if (close_range(CTL_FD + 1, ~0u, 0) < 0)
        shim_fail(errno, "close_range: %s", strerror(errno));
    shim_sync_fd = -1;
    close(SYNC_FD);
}

/* In B, after it forked the runtime's process: what the shim's pid 1 does. It holds none of the
 * runtime's fds (their EOFs follow the runtime), is not dumpable (since setup), ignores signals
 * from inside its namespace (pid 1 without handlers; the runtime may kill itself, which a runtime
 * that is pid 1 could not), reaps every orphan and exits with the runtime's status (128+N for
 * signal N), which takes the rest of the pid namespace with it. That status goes first to the
 * controller, as a wait status (int32) on the control socket: B is not the controller's child.
 * A B that dies without it (killed) leaves the socket's EOF, which says so. */
static _Noreturn void reap(pid_t runtime)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd <= RUNTIME_FD; fd++)
        if (null < 0 || dup2(null, fd) < 0)
            close(fd);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    int code = SHIM_EXIT_SETUP;
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, 0);
        if (p < 0 && errno == EINTR)
            continue;
        if (p == runtime)
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (p < 0 || p == runtime)
            break;
    }
    int status = W_EXITCODE(code, 0);
    ssize_t n = send(CTL_FD, &status, sizeof(status), MSG_NOSIGNAL);
    (void)n; /* the controller has gone: nobody to tell */
    _exit(code);
}

/* In the template: one container from one fork request (fds: runtime socket, stdout, stderr, sync
 * pipe, control socket). Returns in the template with B's pid, or -errno when B could not be
 * made; in the runtime's process with 0, its setup done and every privilege dropped. B never
 * returns. The template must be single-threaded, and its caller does for the interpreter what a
 * fork needs around it (PyOS_BeforeFork and the AfterFork of each side). */
pid_t ignis_child_fork(const int fds[FORK_FDS], const char *hostname, uint64_t tmp_size,
                       uint64_t nofile, uint64_t nproc, uint32_t uid, uint32_t gid)
{
    /* clone3 as fork does (a copy of the caller, on a copy of its stack), into new namespaces
     * but the user namespace (the template's, where the caller is root). B runs only C from
     * here: glibc's fork bookkeeping, which the raw call skips, is for code that B does not
     * run (threads, the caller's thread id); the runtime's process is made by fork(). */
    struct clone_args args = {
        .flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS,
        .exit_signal = SIGCHLD,
    };
    long b = syscall(SYS_clone3, &args, sizeof(args));
    if (b != 0)
        return b < 0 ? -errno : (pid_t)b;
    shim_sync_fd = fds[FORK_SYNC];
    /* The template ignores SIGCHLD (the kernel reaps its B processes); B reaps its own. */
    signal(SIGCHLD, SIG_DFL);
    struct go go = {};
    handshake(fds[FORK_CTL], &go);
    layout_fds(fds);
    setup(&go, hostname, tmp_size, nofile, nproc, uid, gid);
    /* B stays pid 1, a reaper as the shim's is; the runtime is its child, so it can signal
     * itself (pid 1 ignores what its own namespace sends it). */
    pid_t runtime = fork();
    if (runtime < 0)
        shim_fail(errno, "fork: %s", strerror(errno));
    if (runtime > 0)
        reap(runtime);
    /* Dumpable, as an exec'd runtime is, so that its own /proc/self/fd is readable to it; B,
     * of the same uid, is not (set before the fork: when B set it after, the runtime could
     * become ready and read B's /proc/1/environ in between, as a CI run once did). */
    prctl(PR_SET_DUMPABLE, 1);
    reports = false;
    close(CTL_FD);
    return 0;
}
