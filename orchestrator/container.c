#include "container.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "config.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* linux/wait.h, 5.4+; glibc 2.36's sys/wait.h lacks it */
#endif

struct container {
    char name[72];
    struct cg_group *group;
    pid_t pid;
    int pidfd;
    int sync_fd;
    int runtime_fd;
    int stdout_fd, stderr_fd;
    int spawn_result; /* after finish_spawn: 0 or -errno */
    struct ig_error spawn_error;
    bool spawn_done;
    bool exited;
    struct container_exit exit;
};

static pthread_once_t shim_once = PTHREAD_ONCE_INIT;
static char shim_path[PATH_MAX];

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

static void find_shim(void)
{
    const char *env = getenv("IGNIS_SHIM");
    char exe[PATH_MAX], candidate[PATH_MAX + 32];

    if (env && *env && executable(env)) {
        snprintf(shim_path, sizeof(shim_path), "%s", env);
        return;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        /* Installed side by side, or run from a meson build tree: the build root (the
         * directory holding build.ninja) has shim/ignis-shim, whichever of its
         * subdirectories the program lives in (orchestrator/, tests/integration/, ...). */
        char *slash = strrchr(exe, '/');
        for (int depth = 0; slash && depth < 4; depth++) {
            *slash = '\0';
            snprintf(candidate, sizeof(candidate), "%s/ignis-shim", exe);
            if (depth == 0 && executable(candidate))
                goto found;
            snprintf(candidate, sizeof(candidate), "%s/build.ninja", exe);
            if (access(candidate, F_OK) == 0) {
                snprintf(candidate, sizeof(candidate), "%s/shim/ignis-shim", exe);
                if (executable(candidate))
                    goto found;
                break;
            }
            slash = strrchr(exe, '/');
        }
    }
    snprintf(candidate, sizeof(candidate), "%s/ignis-shim", IGNIS_LIBEXECDIR);
    if (!executable(candidate))
        return;
found:
    snprintf(shim_path, sizeof(shim_path), "%s", candidate);
}

const char *container_shim_path(void)
{
    pthread_once(&shim_once, find_shim);
    return shim_path[0] ? shim_path : NULL;
}

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 64 || name[0] == '.')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Moves fd above the shim's fixed layout (0-5), so that dup2-ing the sources into place in the
 * child never overwrites one not yet moved. */
static int lift_fd(int *fd)
{
    if (*fd > SHIM_FD_RUNTIME)
        return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
    if (nfd < 0)
        return -errno;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int spec_memfd(const char *text, struct ig_error *err)
{
    /* A memfd, not a pipe: a pipe's buffer shrinks to one page once the user's pipe-buffer
     * quota (fs.pipe-user-pages-soft) is used up, and the spec may be larger. */
    _cleanup_close_ int fd = memfd_create("ignis-spec", MFD_CLOEXEC);
    if (fd < 0)
        return ig_error_set(err, errno, "memfd_create: %s", strerror(errno));
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ig_error_set(err, errno, "writing the spec: %s", strerror(errno));
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0)
        return ig_error_set(err, errno, "lseek: %s", strerror(errno));
    return TAKE_FD(fd);
}

/* The fds the shim gets, in its fixed order (container_spec.h). */
enum { CHILD_STDIN, CHILD_STDOUT, CHILD_STDERR, CHILD_SPEC, CHILD_SYNC, CHILD_RUNTIME, CHILD_N };

/* In the child of clone3: a copy of a possibly multi-threaded controller, so only
 * async-signal-safe calls until execve. */
_Noreturn static void exec_shim(const char *shim, const int fds[CHILD_N])
{
    static char *const envp[] = {NULL};
    char *const argv[] = {(char *)"ignis-shim", NULL};
    sigset_t none;

    /* The event loop blocks the signals it reads through signalfd; a blocked mask survives
     * execve. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < CHILD_N; i++)
        if (dup2(fds[i], i) < 0)
            _exit(SHIM_EXIT_EXEC);
    close_range(CHILD_N, ~0u, 0);
    execve(shim, argv, envp);
    struct container_sync_msg msg = {.code = errno};
    memcpy(msg.message, "exec ignis-shim failed", sizeof("exec ignis-shim failed"));
    ssize_t n = write(CHILD_SYNC, &msg, sizeof(msg));
    (void)n;
    _exit(SHIM_EXIT_EXEC);
}

/* Starts the shim straight inside the container's cgroup2 directory where the kernel can
 * (clone3 CLONE_INTO_CGROUP, 5.7+): no window in which it runs elsewhere, no write to
 * cgroup.procs. Returns the pid and a pidfd. */
static pid_t spawn_child(int cgroup_fd, const char *shim, const int fds[CHILD_N], int *ret_pidfd)
{
    int pidfd = -1;
    struct clone_args args = {
        .flags = CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0 && cgroup_fd >= 0 && errno != ENOSYS && errno != EAGAIN && errno != ENOMEM) {
        /* The cgroup refused (e.g. a threaded or non-leaf domain): the shim still joins it
         * through cgroup.procs, which the spec lists. */
        args.flags &= ~(uint64_t)CLONE_INTO_CGROUP;
        args.cgroup = 0;
        pid = syscall(SYS_clone3, &args, sizeof(args));
    }
    if (pid < 0 && errno == ENOSYS) {
        /* Before 5.3 there is no clone3: fork, then a pidfd (5.3 too; older kernels are out of
         * scope). */
        pid = fork();
        if (pid == 0)
            exec_shim(shim, fds);
        if (pid > 0 && (pidfd = pidfd_open((pid_t)pid, 0)) < 0) {
            int saved = errno;
            kill((pid_t)pid, SIGKILL);
            waitpid((pid_t)pid, NULL, 0);
            errno = saved;
            return -1;
        }
    }
    if (pid == 0)
        exec_shim(shim, fds);
    if (pid < 0)
        return -1;
    *ret_pidfd = pidfd;
    return (pid_t)pid;
}

static atomic_uint_fast32_t name_counter;

int container_spawn(struct cg_manager *m, const struct container_options *o, struct container **ret,
                    struct ig_error *err)
{
    int child[CHILD_N] = {-1, -1, -1, -1, -1, -1};
    int pipe_fds[2], r;
    _cleanup_free_ char *text = NULL;

    const char *shim = container_shim_path();
    if (!shim)
        return ig_error_set(err, ENOENT,
                            "ignis-shim not found (next to the program, in its "
                            "build tree, or in %s)",
                            IGNIS_LIBEXECDIR);
    struct container *c = calloc(1, sizeof(*c));
    if (!c)
        return ig_error_set(err, ENOMEM, "out of memory");
    c->pidfd = c->sync_fd = c->runtime_fd = c->stdout_fd = c->stderr_fd = -1;
    c->pid = -1;
    if (o->name) {
        if (!valid_name(o->name)) {
            r = ig_error_set(err, EINVAL,
                             "container name \"%s\" is not 1 to 64 of "
                             "[A-Za-z0-9_.-]",
                             o->name);
            goto fail;
        }
        snprintf(c->name, sizeof(c->name), "%s", o->name);
    } else {
        snprintf(c->name, sizeof(c->name), "%d-%u", (int)getpid(),
                 (unsigned)atomic_fetch_add(&name_counter, 1));
    }

    r = cg_create(m, c->name, &o->limits, &c->group, err);
    if (r < 0)
        goto fail;

    /* The spec as given, plus the cgroups the shim must join. */
    struct container_spec spec = *o->spec;
    spec.cgroups = (char **)cg_group_paths(c->group);
    if (spec.cgroups && !spec.cgroups[0])
        spec.cgroups = NULL;
    r = container_spec_format(&spec, &text, err);
    if (r < 0)
        goto fail;

    if ((child[CHILD_STDIN] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        r = ig_error_set(err, errno, "/dev/null: %s", strerror(errno));
        goto fail;
    }
    for (int i = CHILD_STDOUT; i <= CHILD_STDERR; i++) {
        int given = i == CHILD_STDOUT ? o->stdout_fd : o->stderr_fd;
        if (given >= 0) {
            child[i] = fcntl(given, F_DUPFD_CLOEXEC, 10);
            if (child[i] < 0) {
                r = ig_error_set(err, errno, "dup: %s", strerror(errno));
                goto fail;
            }
            continue;
        }
        if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
            r = ig_error_set(err, errno, "pipe: %s", strerror(errno));
            goto fail;
        }
        *(i == CHILD_STDOUT ? &c->stdout_fd : &c->stderr_fd) = pipe_fds[0];
        child[i] = pipe_fds[1];
    }
    if ((r = spec_memfd(text, err)) < 0)
        goto fail;
    child[CHILD_SPEC] = r;
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        r = ig_error_set(err, errno, "pipe: %s", strerror(errno));
        goto fail;
    }
    c->sync_fd = pipe_fds[0];
    child[CHILD_SYNC] = pipe_fds[1];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pipe_fds) < 0) {
        r = ig_error_set(err, errno, "socketpair: %s", strerror(errno));
        goto fail;
    }
    c->runtime_fd = pipe_fds[0];
    child[CHILD_RUNTIME] = pipe_fds[1];
    for (int i = 0; i < CHILD_N; i++)
        if ((r = lift_fd(&child[i])) < 0) {
            ig_error_set(err, -r, "dup: %s", strerror(-r));
            goto fail;
        }

    c->pid = spawn_child(cg_group_v2_fd(c->group), shim, child, &c->pidfd);
    if (c->pid < 0) {
        r = ig_error_set(err, errno, "starting %s: %s", shim, strerror(errno));
        goto fail;
    }
    for (int i = 0; i < CHILD_N; i++)
        close_fd(&child[i]);
    *ret = c;
    return 0;
fail:
    for (int i = 0; i < CHILD_N; i++)
        close_fd(&child[i]);
    container_destroy(c, NULL);
    return r;
}

int container_finish_spawn(struct container *c, struct ig_error *err)
{
    if (!c->spawn_done) {
        struct container_sync_msg msg;
        ssize_t n;
        while ((n = read(c->sync_fd, &msg, sizeof(msg))) < 0 && errno == EINTR)
            ;
        if (n == 0) {
            c->spawn_result = 0;
        } else if (n == (ssize_t)sizeof(msg)) {
            msg.message[sizeof(msg.message) - 1] = '\0';
            c->spawn_result =
                ig_error_set(&c->spawn_error, msg.code, "container %s: %s", c->name, msg.message);
        } else {
            c->spawn_result = ig_error_set(&c->spawn_error, n < 0 ? errno : EIO,
                                           "container %s: reading the sync pipe: %s", c->name,
                                           n < 0 ? strerror(errno) : "short message");
        }
        c->spawn_done = true;
        close_fd(&c->sync_fd);
    }
    if (c->spawn_result < 0)
        ig_error_set(err, c->spawn_error.code, "%s", c->spawn_error.message);
    return c->spawn_result;
}

int container_create(struct cg_manager *m, const struct container_options *o,
                     struct container **ret, struct ig_error *err)
{
    struct container *c;
    int r = container_spawn(m, o, &c, err);
    if (r < 0)
        return r;
    r = container_finish_spawn(c, err);
    if (r < 0) {
        container_destroy(c, NULL);
        return r;
    }
    *ret = c;
    return 0;
}

const char *container_name(const struct container *c)
{
    return c->name;
}

pid_t container_pid(const struct container *c)
{
    return c->pid;
}

int container_sync_fd(const struct container *c)
{
    return c->sync_fd;
}

int container_pidfd(const struct container *c)
{
    return c->pidfd;
}

int container_runtime_fd(const struct container *c)
{
    return c->runtime_fd;
}

int container_take_runtime_fd(struct container *c)
{
    return TAKE_FD(c->runtime_fd);
}

int container_stdout_fd(const struct container *c)
{
    return c->stdout_fd;
}

int container_stderr_fd(const struct container *c)
{
    return c->stderr_fd;
}

struct cg_group *container_cgroup(const struct container *c)
{
    return c->group;
}

int container_poll_exit(struct container *c, struct container_exit *ret)
{
    if (!c->exited) {
        siginfo_t info = {};
        if (c->pidfd < 0)
            return -ECHILD;
        if (waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &info, WEXITED | WNOHANG) < 0)
            return -errno;
        if (info.si_pid == 0)
            return -EAGAIN;
        struct container_exit e = {};
        if (info.si_code == CLD_EXITED) {
            e.exit_code = info.si_status;
            /* The shim exits 128+N when signal N killed the runtime, as a shell reports it. */
            if (e.exit_code > 128 && e.exit_code < 128 + NSIG)
                e.signal = e.exit_code - 128;
        } else {
            e.signal = info.si_status;
            e.exit_code = 128 + info.si_status;
        }
        if (cg_read_stats(c->group, &e.stats) == 0)
            e.oom_killed = e.stats.oom_kills > 0;
        c->exit = e;
        c->exited = true;
    }
    *ret = c->exit;
    return 0;
}

int container_wait(struct container *c, struct container_exit *ret)
{
    for (;;) {
        int r = container_poll_exit(c, ret);
        if (r != -EAGAIN)
            return r;
        struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return -errno;
    }
}

int container_kill(struct container *c, struct ig_error *err)
{
    int r = 0;
    if (c->group)
        r = cg_kill(c->group, err);
    /* Also the shim itself, for the null cgroup backend; its pid 1 follows it (parent-death
     * signal) and takes the pid namespace with it. */
    if (c->pidfd >= 0 && !c->exited && pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0) < 0 &&
        errno != ESRCH && r == 0)
        r = ig_error_set(err, errno, "killing container %s: %s", c->name, strerror(errno));
    return r;
}

int container_destroy(struct container *c, struct ig_error *err)
{
    int r = 0, q;

    if (!c)
        return 0;
    if (c->pidfd >= 0) {
        struct container_exit e;
        if (container_poll_exit(c, &e) == -EAGAIN) {
            r = container_kill(c, err);
            q = container_wait(c, &e);
            if (q < 0 && r == 0)
                r = ig_error_set(err, -q, "reaping container %s: %s", c->name, strerror(-q));
        }
    }
    if (c->group) {
        q = cg_destroy(c->group, err);
        if (q < 0 && r == 0)
            r = q;
        c->group = NULL;
    }
    close_fd(&c->pidfd);
    close_fd(&c->sync_fd);
    close_fd(&c->runtime_fd);
    close_fd(&c->stdout_fd);
    close_fd(&c->stderr_fd);
    free(c);
    return r;
}
