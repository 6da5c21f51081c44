/* The container's pid 1: assembles the root filesystem, brings up loopback, drops privileges,
 * starts the runtime and reaps orphans until the runtime exits (bubblewrap's do_init). */
#include "shim.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

/* Where the new root is assembled, inside our own mount namespace. Source directories are
 * reached through fds opened before, so it does not matter what this hides. */
#define STAGE "/tmp"

/* Binds dir_fd/name (an image or bundle entry) read-only at dst. */
static void bind_readonly(int dir_fd, const char *name, const char *dst)
{
    char src[64 + 256];
    if (name)
        snprintf(src, sizeof(src), "/proc/self/fd/%d/%s", dir_fd, name);
    else
        snprintf(src, sizeof(src), "/proc/self/fd/%d", dir_fd);
    shim_mount(src, dst, NULL, MS_BIND | MS_REC, NULL);
    shim_make_readonly(dst, AT_RECURSIVE, MOUNT_ATTR_NODEV);
}

static bool is_dir_at(int dir_fd, const char *name)
{
    struct stat st;
    return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Recreates the image's top level in the new root: directories and files are bound read-only,
 * symlinks copied (merged-/usr images are mostly symlinks there). /proc, /dev and /tmp are ours,
 * and /run when own_run (the secrets); /var is rebuilt one level down so that /var/task can be
 * mounted whatever the image holds. */
static void populate(int src_fd, const char *dst_dir, bool top, bool own_run)
{
    int fd = openat(src_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        shim_fail(errno, "reading the image: %s", strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d)
        shim_fail(errno, "reading the image: %s", strerror(errno));
    struct dirent *de;
    char dst[4200];
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (streq(n, ".") || streq(n, ".."))
            continue;
        if (top && (streq(n, "proc") || streq(n, "dev") || streq(n, "tmp") || streq(n, "var") ||
                    (own_run && streq(n, "run"))))
            continue;
        if (!top && streq(n, "task"))
            continue;
        snprintf(dst, sizeof(dst), "%s/%s", dst_dir, n);
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
                shim_fail(errno, "image entry %s: %s", n, strerror(errno));
            type = S_ISDIR(st.st_mode)   ? DT_DIR
                   : S_ISLNK(st.st_mode) ? DT_LNK
                   : S_ISREG(st.st_mode) ? DT_REG
                                         : DT_UNKNOWN;
        }
        if (type == DT_LNK) {
            char target[4096];
            ssize_t len = readlinkat(dirfd(d), n, target, sizeof(target) - 1);
            if (len < 0)
                shim_fail(errno, "image entry %s: %s", n, strerror(errno));
            target[len] = '\0';
            if (symlink(target, dst) < 0)
                shim_fail(errno, "symlink %s: %s", dst, strerror(errno));
            continue;
        }
        if (type == DT_DIR) {
            if (mkdir(dst, 0755) < 0)
                shim_fail(errno, "mkdir %s: %s", dst, strerror(errno));
        } else if (type == DT_REG) {
            int f = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (f < 0)
                shim_fail(errno, "creating %s: %s", dst, strerror(errno));
            close(f);
        } else {
            continue; /* sockets, fifos, devices: nothing a runtime image should carry */
        }
        bind_readonly(src_fd, n, dst);
    }
    closedir(d);
}

/* The five devices a runtime needs. mknod is cheaper than five bind mounts, but a user
 * namespace may not create device nodes (the kernel refuses it), so there they are bound from
 * the host's /dev. */
static void make_dev(bool userns)
{
    static const struct {
        const char *name;
        unsigned int major, minor;
    } devs[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}};
    char path[64];

    if (mkdir(STAGE "/dev", 0755) < 0)
        shim_fail(errno, "mkdir /dev: %s", strerror(errno));
    for (size_t i = 0; i < ARRAY_SIZE(devs); i++) {
        snprintf(path, sizeof(path), STAGE "/dev/%s", devs[i].name);
        if (!userns) {
            /* build_root runs with umask 0, so the modes are as written. */
            if (mknod(path, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor)) < 0)
                shim_fail(errno, "mknod %s: %s", path, strerror(errno));
            continue;
        }
        char src[64];
        int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f < 0)
            shim_fail(errno, "creating %s: %s", path, strerror(errno));
        close(f);
        snprintf(src, sizeof(src), "/dev/%s", devs[i].name);
        shim_mount(src, path, NULL, MS_BIND, NULL);
    }
    static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                           {"stdin", "/proc/self/fd/0"},
                                           {"stdout", "/proc/self/fd/1"},
                                           {"stderr", "/proc/self/fd/2"}};
    for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
        snprintf(path, sizeof(path), STAGE "/dev/%s", links[i][0]);
        if (symlink(links[i][1], path) < 0)
            shim_fail(errno, "symlink %s: %s", path, strerror(errno));
    }
}

/* /run/secrets: the function's listed secrets, read from secrets_fd (shim_make_secrets). A
 * template's is only the directory: each container forked from it mounts its own there, with
 * the values of its start (child.c), and the template holds none. */
static void make_secrets(const struct container_spec *spec, int secrets_fd)
{
    if (mkdir(STAGE "/run/secrets", 0500) < 0)
        shim_fail(errno, "mkdir /run/secrets: %s", strerror(errno));
    if (spec->template_mode)
        return;
    int fds[CONTAINER_SPEC_MAX_SECRETS];
    size_t n = 0;
    for (; n < CONTAINER_SPEC_MAX_SECRETS && spec->secrets[n]; n++) {
        fds[n] = openat(secrets_fd, spec->secrets[n], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fds[n] < 0 && errno != ENOENT)
            shim_fail(errno, "secret %s: %s", spec->secrets[n], strerror(errno));
    }
    shim_make_secrets(STAGE "/run/secrets", spec->uid, spec->gid, spec->secrets, fds, n);
}

static void build_root(const struct container_spec *spec, int image_fd, int bundle_fd,
                       int secrets_fd)
{
    /* Nothing we mount may propagate back to the host (Debian's / is shared). */
    shim_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    /* The root: a small tmpfs that holds only mount points, symlinks and device nodes; made
     * read-only once everything is in place. Not nodev: /dev's nodes live in it. */
    shim_mount("tmpfs", STAGE, "tmpfs", MS_NOSUID, "mode=0755,size=256k,nr_inodes=1024");
    /* With secrets to show (or, in a template, a place for its containers'), /run is ours,
     * empty but for them, whatever the image holds there. */
    bool own_run = secrets_fd >= 0 || (spec->template_mode && spec->secrets);
    populate(image_fd, STAGE, true, own_run);

    /* /var: the image's own entries, then the bundle at /var/task. */
    if (mkdir(STAGE "/var", 0755) < 0)
        shim_fail(errno, "mkdir /var: %s", strerror(errno));
    if (is_dir_at(image_fd, "var")) {
        int var_fd = openat(image_fd, "var", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (var_fd < 0)
            shim_fail(errno, "image /var: %s", strerror(errno));
        populate(var_fd, STAGE "/var", false, false);
        close(var_fd);
    }
    if (mkdir(STAGE "/var/task", 0755) < 0)
        shim_fail(errno, "mkdir /var/task: %s", strerror(errno));
    if (bundle_fd >= 0)
        bind_readonly(bundle_fd, NULL, STAGE "/var/task");

    if (own_run) {
        if (mkdir(STAGE "/run", 0755) < 0)
            shim_fail(errno, "mkdir /run: %s", strerror(errno));
        make_secrets(spec, secrets_fd);
    }

    if (mkdir(STAGE "/tmp", 01777) < 0)
        shim_fail(errno, "mkdir /tmp: %s", strerror(errno));
    shim_mount_tmp(STAGE "/tmp", spec->tmp_size);
    if (mkdir(STAGE "/proc", 0555) < 0)
        shim_fail(errno, "mkdir /proc: %s", strerror(errno));
    /* A template's proc has no /proc/sys bind: the containers forked from it mount a proc of
     * their own, which the kernel allows in a user namespace only while an existing proc is
     * fully visible (no locked mount over a non-empty directory: mount_too_revealing). Theirs
     * gets the read-only /proc/sys. */
    if (spec->template_mode)
        shim_mount("proc", STAGE "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    else
        shim_mount_proc(STAGE "/proc");

    make_dev(spec->user_namespace && !spec->template_mode);

    /* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves no host path
     * reachable (pivot_root(2), "new_root and put_old may be the same directory", 3.17+). */
    if (chdir(STAGE) < 0)
        shim_fail(errno, "chdir to the new root: %s", strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        shim_fail(errno, "pivot_root: %s", strerror(errno));
    if (umount2(".", MNT_DETACH) < 0)
        shim_fail(errno, "detaching the old root: %s", strerror(errno));
    if (chdir("/") < 0)
        shim_fail(errno, "chdir /: %s", strerror(errno));
    /* Not nodev: /dev's nodes live in the root tmpfs. */
    shim_make_readonly("/", 0, 0);
}

/* The runtime's environment: the spec's, then IGNIS_RUNTIME_FD when there is a socket. */
static char **runtime_env(const struct shim_ctx *ctx)
{
    size_t n = 0;
    while (ctx->spec->env && ctx->spec->env[n])
        n++;
    char **env = calloc(n + 2, sizeof(char *));
    if (!env)
        shim_fail(ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        env[i] = ctx->spec->env[i];
    if (ctx->runtime_fd >= 0)
        env[n++] = "IGNIS_RUNTIME_FD=3";
    return env;
}

/* In the runtime's process: the fd layout (0 /dev/null, 1 and 2 the controller's pipes, 3 the
 * runtime socket, the sync pipe close-on-exec), default signals, seccomp, exec. */
_Noreturn static void exec_runtime(const struct shim_ctx *ctx, int null_fd, char **env)
{
    const struct container_spec *spec = ctx->spec;
    sigset_t all;

    if (dup2(null_fd, STDIN_FILENO) < 0)
        shim_fail(errno, "dup2: %s", strerror(errno));
    if (ctx->runtime_fd >= 0) {
        if (dup2(ctx->runtime_fd, RUNTIME_FD) < 0)
            shim_fail(errno, "dup2: %s", strerror(errno));
    }
    /* Only 0-3 and the sync pipe survive until the exec, which closes the sync pipe. The sync
     * fd is 4 or above in every mode (received while fd 3 was taken, or fixed at 4). */
    unsigned int first = ctx->runtime_fd >= 0 ? RUNTIME_FD + 1 : RUNTIME_FD;
    unsigned int sync = (unsigned int)shim_sync_fd;
    if ((sync > first && close_range(first, sync - 1, 0) < 0) ||
        close_range(sync + 1 > first ? sync + 1 : first, ~0u, 0) < 0)
        shim_fail(errno, "close_range: %s", strerror(errno));

    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);

    if (chdir(spec->cwd ? spec->cwd : "/var/task") < 0)
        shim_fail(errno, "chdir %s: %s", spec->cwd ? spec->cwd : "/var/task", strerror(errno));
    /* A template keeps root of its user namespace and no filter: it runs no user code, and the
     * containers it forks drop both themselves (child.c) before they import any. */
    int r = spec->template_mode ? 0 : shim_load_seccomp();
    if (r < 0)
        shim_fail(r, "loading the seccomp filter: %s", strerror(-r));
    execve(spec->args[0], spec->args, env);
    struct container_sync_msg msg = {.code = errno};
    snprintf(msg.message, sizeof(msg.message), "exec %s: %s", spec->args[0], strerror(errno));
    ssize_t n = write(shim_sync_fd, &msg, sizeof(msg));
    (void)n;
    _exit(SHIM_EXIT_EXEC);
}

/* Forks a template's runtime into a user namespace of its own, where it is root (its host ids
 * from the spec's user_namespace), and execs it there without a seccomp filter: its mount,
 * network, IPC and UTS namespaces stay pid 1's, owned by the host's user namespace, where it
 * has no capability; the containers it forks make their own, owned by its user namespace. The
 * maps are written from here, as host root (CAP_SETUID over the parent namespace). */
static pid_t start_template(const struct shim_ctx *ctx, int null_fd, char **env)
{
    const struct container_spec *spec = ctx->spec;
    int up[2], down[2];
    char c = 0;
    if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0)
        shim_fail(errno, "pipe: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0)
        shim_fail(errno, "fork: %s", strerror(errno));
    if (child == 0) {
        if (unshare(CLONE_NEWUSER) < 0)
            shim_fail(errno, "creating the template's user namespace: %s", strerror(errno));
        if (write(up[1], "u", 1) != 1 || read(down[0], &c, 1) != 1 || c != 'g')
            shim_fail(ECANCELED, "the template's user namespace was not mapped");
        if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0)
            shim_fail(errno, "becoming root of the user namespace: %s", strerror(errno));
        close(up[1]);
        close(down[0]);
        exec_runtime(ctx, null_fd, env);
    }
    close(up[1]);
    close(down[0]);
    char path[64], map[64];
    snprintf(map, sizeof(map), "0 %u %u\n", spec->userns_uid_base, spec->userns_count);
    if (read(up[0], &c, 1) != 1)
        shim_fail(ECANCELED, "the template's runtime did not start");
    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)child);
    int r = write_file(path, map);
    snprintf(map, sizeof(map), "0 %u %u\n", spec->userns_gid_base, spec->userns_count);
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)child);
    if (r == 0)
        r = write_file(path, map);
    if (r < 0)
        shim_fail(r, "writing %s: %s", path, strerror(-r));
    if (write(down[1], "g", 1) != 1)
        shim_fail(errno, "starting the template: %s", strerror(errno));
    close(up[0]);
    close(down[1]);
    return child;
}

void shim_init(const struct shim_ctx *ctx)
{
    const struct container_spec *spec = ctx->spec;

    /* Whoever cloned us (the controller through the server, or the one-container shim)
     * takes us down if it dies. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (shim_server_fd >= 0)
        close(shim_server_fd);
    if (shim_pid_slots)
        munmap(shim_pid_slots, SHIM_PID_SLOTS * sizeof(int32_t));
    /* pid 1 needs none of these (the answer socket least of all: while a copy of it is open
     * here, a server that died before its answer would not be seen to have gone); the
     * runtime's process would close them anyway. */
    for (size_t i = 0; i < ARRAY_SIZE(ctx->extra_fds); i++)
        if (ctx->extra_fds[i] >= 0)
            close(ctx->extra_fds[i]);
    /* Pid 1 has no handlers, so nothing inside its namespace can signal it. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    if (ctx->stdout_fd != STDOUT_FILENO) {
        if (dup2(ctx->stdout_fd, STDOUT_FILENO) < 0)
            shim_fail(errno, "dup2: %s", strerror(errno));
        close(ctx->stdout_fd);
    }
    if (ctx->stderr_fd != STDERR_FILENO) {
        if (dup2(ctx->stderr_fd, STDERR_FILENO) < 0)
            shim_fail(errno, "dup2: %s", strerror(errno));
        close(ctx->stderr_fd);
    }
    /* One byte means go; EOF without it means whoever cloned us died before our cgroups and id
     * maps were in place, and we must not run without them. */
    char c = 0;
    ssize_t n;
    while ((n = read(ctx->go_fd, &c, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1 || c != 'g')
        shim_fail(ECANCELED, "setting up the container's cgroups was not finished");
    close(ctx->go_fd);
    /* Now in the container's cgroups: make them the root of its cgroup namespace. */
    if (unshare(CLONE_NEWCGROUP) < 0)
        shim_fail(errno, "creating the cgroup namespace: %s", strerror(errno));
    if (spec->user_namespace && !spec->template_mode) {
        /* Until now we ran as host root, which the namespace does not map: files we create
         * would have no owner there (EOVERFLOW). Become its root; the capabilities stay. */
        if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0)
            shim_fail(errno, "becoming root of the user namespace: %s", strerror(errno));
    }

    /* Opened here, in the new mount namespace (a bind from a mount of another namespace is
     * EINVAL), and before the stage tmpfs may hide them. */
    int image_fd = open(spec->image, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (image_fd < 0)
        shim_fail(errno, "image %s: %s", spec->image, strerror(errno));
    int bundle_fd = -1;
    if (spec->bundle && (bundle_fd = open(spec->bundle, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        shim_fail(errno, "bundle %s: %s", spec->bundle, strerror(errno));
    int secrets_fd = -1;
    if (spec->secrets && !spec->template_mode &&
        (secrets_fd = open(spec->secrets_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 &&
        errno != ENOENT)
        shim_fail(errno, "secrets %s: %s", spec->secrets_dir, strerror(errno));
    mode_t umask_before = umask(0);
    build_root(spec, image_fd, bundle_fd, secrets_fd);
    umask(umask_before);
    close(image_fd);
    if (bundle_fd >= 0)
        close(bundle_fd);
    if (secrets_fd >= 0)
        close(secrets_fd);
    if (!spec->netns)
        shim_loopback_up();
    const char *hostname = spec->hostname ? spec->hostname : "ignis";
    if (sethostname(hostname, strlen(hostname)) < 0)
        shim_fail(errno, "sethostname: %s", strerror(errno));
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0)
        shim_fail(errno, "opening /dev/null: %s", strerror(errno));
    char **env = runtime_env(ctx);

    shim_set_rlimits(spec);
    /* A template's runtime is started before pid 1 drops, as root of a user namespace of its
     * own. */
    pid_t child = spec->template_mode ? start_template(ctx, null_fd, env) : 0;
    /* pid 1 drops everything too, so nothing in the container is more privileged than the
     * runtime; pid 1 also ignores signals sent from inside its namespace (it installs no
     * handlers), and is not dumpable, so the runtime cannot ptrace or read it. */
    shim_drop_privileges(spec);
    prctl(PR_SET_DUMPABLE, 0);
    /* The uid switch cleared the parent-death signal. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);

    /* vfork: the runtime's process only sets up fds, signals and seccomp, then execs, so it
     * need not copy pid 1's page tables; it shares no fd table, fs or signal handlers with
     * pid 1 (no CLONE_FILES, CLONE_FS, CLONE_SIGHAND), so what it changes is its own. */
    if (!spec->template_mode && (child = vfork()) < 0)
        shim_fail(errno, "fork: %s", strerror(errno));
    if (child == 0)
        exec_runtime(ctx, null_fd, env);

    /* Only the runtime's copies of the sync pipe, socket and outputs remain, so EOF on each
     * follows the runtime (and its children), not pid 1. */
    close(shim_sync_fd);
    shim_sync_fd = -1;
    if (ctx->runtime_fd >= 0)
        close(ctx->runtime_fd);
    dup2(null_fd, STDIN_FILENO);
    dup2(null_fd, STDOUT_FILENO);
    dup2(null_fd, STDERR_FILENO);
    close(null_fd);

    /* Reap everything; exit with the runtime's status when it exits. Pid 1 leaving kills the
     * rest of the namespace, so a template's pid 1 waits for the last process instead: the
     * containers forked from the template live in this namespace's descendants and must outlive
     * a template that died or was retired (docs/architecture.md, "Templates"). */
    int code = SHIM_EXIT_SETUP;
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, 0);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            _exit(spec->template_mode && errno == ECHILD ? code : SHIM_EXIT_SETUP);
        }
        if (p == child) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (!spec->template_mode)
                _exit(code);
        }
    }
}
