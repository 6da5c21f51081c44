/* ignis-shim: makes one container and runs its runtime in it.
 *
 *   ignis-shim                 started by the controller: spec on fd 3, sync pipe on fd 4,
 *                              runtime-protocol socket on fd 5 (container_spec.h)
 *   ignis-shim --debug SPEC    runs the container described by the JSON file SPEC with this
 *                              terminal's stdout/stderr, prints a setup failure, exits with the
 *                              runtime's status (for tests and people)
 *
 * This outer process stays in the host's namespaces: it reads the spec, joins the container's
 * cgroups, clones the container's pid 1 into new namespaces, writes the user namespace's id maps
 * when there is one, and waits, so the controller's pidfd follows the container's life. */
#include "shim.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "config.h"

int shim_sync_fd = -1;

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

static char *read_all(int fd, size_t max)
{
    size_t len = 0;
    char *buf = malloc(max + 1);
    if (!buf)
        shim_fail(ENOMEM, "reading the spec: out of memory");
    for (;;) {
        ssize_t n = read(fd, buf + len, max + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            shim_fail(errno, "reading the spec: %s", strerror(errno));
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            shim_fail(EFBIG, "reading the spec: longer than %zu bytes", max);
    }
    buf[len] = '\0';
    return buf;
}

/* Joins each cgroup by writing 0 (this process) to its cgroup.procs. The controller already
 * cloned us into the cgroup2 directory where clone3(CLONE_INTO_CGROUP) works (5.7+); v1
 * hierarchies have no such call, so this runs while the shim is still single threaded and
 * before anything in the container exists, which makes it race-free. Writing the cgroup a
 * process is already in is a no-op. */
static void join_cgroups(char *const *paths)
{
    char path[4200];
    for (size_t i = 0; paths && paths[i]; i++) {
        snprintf(path, sizeof(path), "%s/cgroup.procs", paths[i]);
        int r = write_file(path, "0");
        if (r < 0)
            shim_fail(r, "joining cgroup %s: %s", paths[i], strerror(-r));
    }
}

static void write_id_map(pid_t pid, const char *file, uint32_t base, uint32_t count)
{
    char path[64], map[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    snprintf(map, sizeof(map), "0 %u %u\n", base, count);
    int r = write_file(path, map);
    if (r < 0)
        shim_fail(r, "writing %s: %s", path, strerror(-r));
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
            "usage: ignis-shim                (started by ignisd: spec on fd %d)\n"
            "       ignis-shim --debug SPEC.json\n"
            "       ignis-shim --version\n",
            SHIM_FD_SPEC);
}

int main(int argc, char **argv)
{
    struct container_spec spec;
    struct ig_error err = {};
    struct shim_ctx ctx = {.spec = &spec, .runtime_fd = -1, .userns_fd = -1};
    int debug_sync[2] = {-1, -1}, userns_pipe[2] = {-1, -1};
    bool debug = false;
    char *text;

    if (argc == 2 && streq(argv[1], "--version")) {
        printf("ignis-shim %s\n", IGNIS_VERSION);
        return 0;
    }
    if (argc == 3 && streq(argv[1], "--debug")) {
        debug = true;
        if (pipe2(debug_sync, O_CLOEXEC) < 0) {
            perror("ignis-shim: pipe");
            return SHIM_EXIT_SETUP;
        }
        shim_sync_fd = debug_sync[1];
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "ignis-shim: %s: %s\n", argv[2], strerror(errno));
            return SHIM_EXIT_SETUP;
        }
        text = read_all(fd, CONTAINER_SPEC_MAX);
        close(fd);
    } else if (argc == 1) {
        /* The controller's layout; the sync fd is close-on-exec so that only the runtime's exec
         * closes its last copy. */
        shim_sync_fd = SHIM_FD_SYNC;
        if (fcntl(SHIM_FD_SYNC, F_SETFD, FD_CLOEXEC) < 0) {
            fprintf(stderr,
                    "ignis-shim: no sync pipe on fd %d; not meant to be run by hand "
                    "(see --debug)\n",
                    SHIM_FD_SYNC);
            return SHIM_EXIT_SETUP;
        }
        text = read_all(SHIM_FD_SPEC, CONTAINER_SPEC_MAX);
        close(SHIM_FD_SPEC);
        ctx.runtime_fd = SHIM_FD_RUNTIME;
        if (fcntl(ctx.runtime_fd, F_GETFD) < 0)
            shim_fail(EBADF, "no runtime-protocol socket on fd %d", SHIM_FD_RUNTIME);
    } else {
        usage(stderr);
        return 2;
    }

    if (container_spec_parse(text, &spec, &err) < 0)
        shim_fail(err.code, "%s", err.message);
    free(text);

    join_cgroups(spec.cgroups);

    unsigned long flags =
        CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
    if (spec.user_namespace) {
        flags |= CLONE_NEWUSER;
        if (pipe2(userns_pipe, O_CLOEXEC) < 0)
            shim_fail(errno, "pipe: %s", strerror(errno));
        ctx.userns_fd = userns_pipe[0];
    }
    /* A fork-like clone (no new stack): the child continues here as pid 1 of the new pid
     * namespace. The cgroup namespace's root is the cgroup we just joined. */
    pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0)
        shim_fail(errno, "creating namespaces (clone): %s", strerror(errno));
    if (pid == 0) {
        if (userns_pipe[1] >= 0)
            close(userns_pipe[1]);
        if (debug_sync[0] >= 0)
            close(debug_sync[0]);
        shim_init(&ctx);
    }

    if (spec.user_namespace) {
        /* We are root in the parent namespace, so we may map a whole range; no need to deny
         * setgroups (that is for unprivileged writers, 3.19+). */
        write_id_map(pid, "uid_map", spec.userns_uid_base, spec.userns_count);
        write_id_map(pid, "gid_map", spec.userns_gid_base, spec.userns_count);
        close(userns_pipe[0]);
        close(userns_pipe[1]); /* EOF tells pid 1 the maps are written */
    }

    /* Only the container's copies of the sync pipe, the runtime socket and the output pipes may
     * remain, so that their EOFs follow the runtime, not this process. */
    if (ctx.runtime_fd >= 0)
        close(ctx.runtime_fd);
    close(shim_sync_fd);
    shim_sync_fd = -1;

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
    } else {
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
