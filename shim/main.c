/* ignis-shim: makes containers and runs a runtime in each.
 *
 *   ignis-shim --server        the controller's container factory: on the SOCK_SEQPACKET socket
 *                              on fd 3, each request carries a spec, the container's fds and a
 *                              socket for the answer: the pid of the container's pid 1, cloned
 *                              with CLONE_PARENT so that it is the controller's own child
 *   ignis-shim                 one container, started by the controller with the spec on fd 3,
 *                              the sync pipe on fd 4, the runtime socket on fd 5 (and a network
 *                              namespace on fd 6); waits for it and exits with its status
 *   ignis-shim --debug SPEC    the same for the JSON file SPEC with this terminal's stdout and
 *                              stderr; prints a setup failure (for tests and people)
 *
 * The server exists because exec'ing the shim for every container cost more than half a
 * millisecond here (docs/performance.md): it is exec'd once, and each container costs one
 * clone of this small, single-threaded process. */
#include "shim.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "config.h"

int shim_sync_fd = -1;
int shim_server_fd = -1;

static volatile sig_atomic_t terminating;
static volatile pid_t container_init;
int32_t *shim_pid_slots;

/* In the one-container modes, SIGTERM (container_kill) ends the container by killing its pid 1,
 * which takes the pid namespace with it; this process then reaps pid 1 and exits. Killing this
 * process instead would orphan pid 1 to the host's init. */
static void on_terminate(int signo)
{
    terminating = 1;
    if (container_init > 0)
        kill(container_init, SIGKILL);
}

static void format_msg(struct container_sync_msg *msg, int code, const char *fmt, va_list ap)
{
    memset(msg, 0, sizeof(*msg));
    msg->code = code < 0 ? -code : code;
    if (msg->code == 0)
        msg->code = EIO;
    vsnprintf(msg->message, sizeof(msg->message), fmt, ap);
}

void shim_fail(int code, const char *fmt, ...)
{
    struct container_sync_msg msg;
    va_list ap;

    va_start(ap, fmt);
    format_msg(&msg, code, fmt, ap);
    va_end(ap);
    if (shim_sync_fd >= 0) {
        ssize_t n = write(shim_sync_fd, &msg, sizeof(msg));
        (void)n;
    }
    _exit(SHIM_EXIT_SETUP);
}

/* As shim_fail, for the server, which must survive a request's failure: reports on the
 * request's sync pipe and returns -code. */
static int request_fail(int sync_fd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int request_fail(int sync_fd, int code, const char *fmt, ...)
{
    struct container_sync_msg msg;
    va_list ap;

    va_start(ap, fmt);
    format_msg(&msg, code, fmt, ap);
    va_end(ap);
    ssize_t n = write(sync_fd, &msg, sizeof(msg));
    (void)n;
    return -msg.code;
}

static int read_spec(int fd, int sync_fd, char **ret)
{
    size_t len = 0, max = CONTAINER_SPEC_MAX;
    char *buf = malloc(max + 1);
    if (!buf)
        return request_fail(sync_fd, ENOMEM, "reading the spec: out of memory");
    for (;;) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || len + (size_t)(n > 0 ? n : 0) > max) {
            int e = n < 0 ? errno : EFBIG;
            free(buf);
            return request_fail(sync_fd, e, "reading the spec: %s", strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret = buf;
    return 0;
}

static int write_id_map(int sync_fd, pid_t pid, const char *file, uint32_t base, uint32_t count)
{
    char path[64], map[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    snprintf(map, sizeof(map), "0 %u %u\n", base, count);
    int r = write_file(path, map);
    return r < 0 ? request_fail(sync_fd, r, "writing %s: %s", path, strerror(-r)) : 0;
}

/* Puts pid (waiting on its go pipe, so single threaded and running nothing) into each cgroup
 * through cgroup.procs: v1 hierarchies have no CLONE_INTO_CGROUP. Done from here, as host root,
 * because a pid 1 in a user namespace may not write the host's cgroup files. The directory it
 * was cloned into (`cloned_into`, -1: none) is skipped: each migration costs tens of µs. */
static int join_cgroups(int sync_fd, pid_t pid, char *const *paths, int cloned_into)
{
    char path[4200], text[32];
    struct stat into = {}, st;
    if (cloned_into >= 0 && fstat(cloned_into, &into) < 0)
        cloned_into = -1;
    snprintf(text, sizeof(text), "%d", (int)pid);
    for (size_t i = 0; paths && paths[i]; i++) {
        if (cloned_into >= 0 && stat(paths[i], &st) == 0 && st.st_dev == into.st_dev &&
            st.st_ino == into.st_ino)
            continue;
        snprintf(path, sizeof(path), "%s/cgroup.procs", paths[i]);
        int r = write_file(path, text);
        if (r < 0)
            return request_fail(sync_fd, r, "joining cgroup %s: %s", paths[i], strerror(-r));
    }
    return 0;
}

/* Makes one container: parses the spec, clones pid 1 into new namespaces (into the cgroup2
 * directory req->cgroup_fd where the kernel allows, 5.7+; as a sibling of this process with
 * CLONE_PARENT when `parent`), joins its cgroups, writes its id maps, and lets it go. Returns its
 * pid (in the child, never returns), or -errno after reporting on the sync pipe. The spec is
 * freed only in this process; the child keeps its copy. */
static pid_t start_container(const struct shim_request *req, bool parent,
                             struct container_spec *spec)
{
    struct ig_error err = {};
    char *text = NULL;
    int r, go[2] = {-1, -1}, own_netns = -1;
    pid_t pid = -1;

    if ((r = read_spec(req->spec_fd, req->sync_fd, &text)) < 0)
        return r;
    r = container_spec_parse(text, spec, &err);
    free(text);
    if (r < 0)
        return request_fail(req->sync_fd, err.code, "%s", err.message);

    uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
    int netns = req->netns_fd;
    if (netns < 0 && spec->netns && (netns = open(spec->netns, O_RDONLY | O_CLOEXEC)) < 0) {
        r = request_fail(req->sync_fd, errno, "network namespace %s: %s", spec->netns,
                         strerror(errno));
        goto out;
    }
    if (netns >= 0) {
        /* Joined here, as host root (a pid 1 in a new user namespace could not: the network
         * namespace belongs to the initial one), for the clone only. */
        if ((own_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0 ||
            setns(netns, CLONE_NEWNET) < 0) {
            r = request_fail(req->sync_fd, errno, "joining the network namespace: %s",
                             strerror(errno));
            goto out;
        }
        flags &= ~(uint64_t)CLONE_NEWNET;
    }
    /* A template's user namespace is its runtime's only (init.c): pid 1 builds the root as host
     * root, so it reads bundles only root may. */
    bool userns = spec->user_namespace && !spec->template_mode;
    if (userns)
        flags |= CLONE_NEWUSER;
    if (parent)
        flags |= CLONE_PARENT;
    /* pid 1 waits on this pipe until its cgroups and id maps are in place. */
    if (pipe2(go, O_CLOEXEC) < 0) {
        r = request_fail(req->sync_fd, errno, "pipe: %s", strerror(errno));
        goto out;
    }

    /* A fork-like clone (no new stack): the child continues here. clone3 refuses an exit
     * signal with CLONE_PARENT; the child then gets ours (SIGCHLD) for the controller. */
    struct clone_args args = {.flags = flags, .exit_signal = parent ? 0 : SIGCHLD};
    if (req->pid_slot) {
        args.flags |= CLONE_PARENT_SETTID;
        args.parent_tid = (uint64_t)(uintptr_t)req->pid_slot;
    }
    if (req->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)req->cgroup_fd;
    }
    pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0 && req->cgroup_fd >= 0 && errno != ENOMEM && errno != EAGAIN && errno != ENOSPC) {
        /* The cgroup refused (or clone3 is missing): cgroup.procs below does it. */
        args.flags &= ~(uint64_t)CLONE_INTO_CGROUP;
        args.cgroup = 0;
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    }
    if (pid < 0 && errno == ENOSYS) /* before 5.3 (and without the pid slot) */
        pid = (pid_t)syscall(SYS_clone,
                             (unsigned long)(flags & ~(uint64_t)CLONE_PARENT) |
                                 (parent ? CLONE_PARENT : SIGCHLD),
                             NULL, NULL, NULL, NULL);
    if (pid < 0) {
        r = request_fail(req->sync_fd, errno, "creating namespaces (clone): %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        close(go[1]);
        struct shim_ctx ctx = {
            .spec = spec,
            .runtime_fd = req->runtime_fd,
            .stdout_fd = req->stdout_fd,
            .stderr_fd = req->stderr_fd,
            .go_fd = go[0],
            .extra_fds = {req->spec_fd, req->netns_fd, req->cgroup_fd, req->reply_fd},
        };
        shim_sync_fd = req->sync_fd;
        shim_init(&ctx);
    }
    container_init = pid;
    if (terminating)
        kill(pid, SIGKILL);

    /* From here on the container exists: whatever fails, the caller gets its pid to reap (the
     * failure is on the sync pipe, and pid 1 is killed). */
    r = join_cgroups(req->sync_fd, pid, spec->cgroups,
                     (args.flags & CLONE_INTO_CGROUP) ? req->cgroup_fd : -1);
    if (r == 0 && userns) {
        /* We are root in the parent namespace, so we may map a whole range; no need to deny
         * setgroups (that is for unprivileged writers, 3.19+). */
        r = write_id_map(req->sync_fd, pid, "uid_map", spec->userns_uid_base, spec->userns_count);
        if (r == 0)
            r = write_id_map(req->sync_fd, pid, "gid_map", spec->userns_gid_base,
                             spec->userns_count);
    }
    if (r < 0)
        kill(pid, SIGKILL);
    else if (write(go[1], "g", 1) != 1)
        kill(pid, SIGKILL);
    r = pid;
out:
    if (go[1] >= 0)
        close(go[1]);
    if (go[0] >= 0)
        close(go[0]);
    if (own_netns >= 0) {
        if (setns(own_netns, CLONE_NEWNET) < 0)
            _exit(SHIM_EXIT_SETUP); /* never serve a request from the wrong namespace */
        close(own_netns);
    }
    if (netns >= 0 && netns != req->netns_fd)
        close(netns);
    return r;
}

static void request_close(struct shim_request *req)
{
    int *fds[] = {&req->spec_fd,    &req->sync_fd,  &req->stdout_fd, &req->stderr_fd,
                  &req->runtime_fd, &req->netns_fd, &req->cgroup_fd};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}

/* One request: a header (which optional fds follow) and SCM_RIGHTS fds in the order of
 * struct shim_request, the last one the request's answer socket; the answer is an int32 on it,
 * the pid or -errno. A request that is not one is dropped, its fds closed (the requester reads
 * EOF on its answer socket). */
static int serve_one(int sock)
{
    struct shim_request_header hdr;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SHIM_REQUEST_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = &hdr, .iov_len = sizeof(hdr)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control)};
    struct shim_request req = {-1, -1, -1, -1, -1, -1, -1, -1, NULL};

    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR)
        return 0;
    if (n <= 0)
        return -1; /* the controller is gone */
    int fds[SHIM_REQUEST_MAX_FDS], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
        }
    int want = 6 + (hdr.has_netns ? 1 : 0) + (hdr.has_cgroup ? 1 : 0);
    if (n != (ssize_t)sizeof(hdr) || (mh.msg_flags & MSG_CTRUNC) || nfds != want ||
        hdr.version != SHIM_REQUEST_VERSION) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return 0;
    }
    int reply_fd = fds[--nfds];
    {
        int i = 0;
        req.spec_fd = fds[i++];
        req.sync_fd = fds[i++];
        req.stdout_fd = fds[i++];
        req.stderr_fd = fds[i++];
        req.runtime_fd = fds[i++];
        if (hdr.has_netns)
            req.netns_fd = fds[i++];
        if (hdr.has_cgroup)
            req.cgroup_fd = fds[i++];
        req.reply_fd = reply_fd;
        if (shim_pid_slots && hdr.pid_slot < SHIM_PID_SLOTS)
            req.pid_slot = &shim_pid_slots[hdr.pid_slot];
        struct container_spec spec;
        container_spec_init(&spec);
        int32_t answer = start_container(&req, true, &spec);
        container_spec_clear(&spec);
        request_close(&req);
        /* A requester whose end is closed gets nothing: EPIPE, ignored (the controller reads
         * every answer before it lets a container go, so its pid 1 is killed and reaped). */
        (void)!send(reply_fd, &answer, sizeof(answer), MSG_NOSIGNAL);
    }
    close(reply_fd);
    return 0;
}

static int run_server(void)
{
    shim_server_fd = SHIM_FD_SERVER;
    /* The controller's pid slots, mapped before the fd is closed: pid 1 inherits the mapping
     * until its execve drops it. */
    void *slots = mmap(NULL, SHIM_PID_SLOTS * sizeof(int32_t), PROT_READ | PROT_WRITE, MAP_SHARED,
                       SHIM_FD_SERVER_PIDS, 0);
    shim_pid_slots = slots == MAP_FAILED ? NULL : slots;
    close(SHIM_FD_SERVER_PIDS);
    /* A request's sync pipe may have lost its reader (the controller gave up on it): that must
     * cost the server an EPIPE, not its life. pid 1 inherits this; the runtime does not. */
    signal(SIGPIPE, SIG_IGN);
    /* Our children are the controller's (CLONE_PARENT); nothing of ours to reap. */
    while (serve_one(shim_server_fd) == 0)
        ;
    return 0;
}

static int exit_code_of(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    return 128 + WTERMSIG(wstatus);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ignis-shim --server        (started by ignisd: requests on fd %d)\n"
            "       ignis-shim                 (started by ignisd: spec on fd %d)\n"
            "       ignis-shim --debug SPEC.json\n"
            "       ignis-shim --version\n",
            SHIM_FD_SERVER, SHIM_FD_SPEC);
}

int main(int argc, char **argv)
{
    struct shim_request req = {-1, -1, STDOUT_FILENO, STDERR_FILENO, -1, -1, -1, -1, NULL};
    int debug_sync[2] = {-1, -1};
    bool debug = false;

    if (argc == 2 && streq(argv[1], "--version")) {
        printf("ignis-shim %s\n", IGNIS_VERSION);
        return 0;
    }
    if (argc == 2 && streq(argv[1], "--server"))
        return run_server();

    struct sigaction sa = {.sa_handler = on_terminate};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (argc == 3 && streq(argv[1], "--debug")) {
        debug = true;
        if (pipe2(debug_sync, O_CLOEXEC) < 0) {
            perror("ignis-shim: pipe");
            return SHIM_EXIT_SETUP;
        }
        req.sync_fd = debug_sync[1];
        req.spec_fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (req.spec_fd < 0) {
            fprintf(stderr, "ignis-shim: %s: %s\n", argv[2], strerror(errno));
            return SHIM_EXIT_SETUP;
        }
    } else if (argc == 1) {
        /* The controller's layout; the sync fd is close-on-exec so that only the runtime's
         * exec closes its last copy. */
        if (fcntl(SHIM_FD_SYNC, F_SETFD, FD_CLOEXEC) < 0) {
            fprintf(stderr,
                    "ignis-shim: no sync pipe on fd %d; not meant to be run by hand "
                    "(see --debug)\n",
                    SHIM_FD_SYNC);
            return SHIM_EXIT_SETUP;
        }
        req.sync_fd = SHIM_FD_SYNC;
        req.spec_fd = SHIM_FD_SPEC;
        req.runtime_fd = SHIM_FD_RUNTIME;
        if (fcntl(SHIM_FD_NETNS, F_GETFD) >= 0)
            req.netns_fd = SHIM_FD_NETNS;
    } else {
        usage(stderr);
        return 2;
    }

    struct container_spec spec;
    container_spec_init(&spec);
    pid_t pid = start_container(&req, false, &spec);
    /* Only the container's copies of the sync pipe, the runtime socket and the output pipes
     * may remain, so that their EOFs follow the runtime, not this process. */
    if (req.runtime_fd >= 0)
        close(req.runtime_fd);
    close(req.sync_fd);
    close(req.spec_fd);
    if (req.netns_fd >= 0)
        close(req.netns_fd);

    int status = 0;
    if (debug) {
        struct container_sync_msg msg;
        ssize_t n;
        while ((n = read(debug_sync[0], &msg, sizeof(msg))) < 0 && errno == EINTR)
            ;
        if (n == (ssize_t)sizeof(msg)) {
            msg.message[sizeof(msg.message) - 1] = '\0';
            fprintf(stderr, "ignis-shim: %s (%s)\n", msg.message, strerrorname_np(msg.code));
        }
    }
    if (pid < 0) {
        container_spec_clear(&spec);
        return SHIM_EXIT_SETUP;
    }
    if (!debug) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return SHIM_EXIT_SETUP;
    container_spec_clear(&spec);
    return exit_code_of(status);
}
