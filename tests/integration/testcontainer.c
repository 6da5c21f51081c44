#include "testcontainer.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>

static int copy_file(const char *from, const char *to, mode_t mode)
{
    _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    char buf[1 << 16];
    ssize_t n;
    if (in < 0 || out < 0)
        return -errno;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            return -EIO;
    return n < 0 ? -errno : 0;
}

int tc_env_setup(struct tc_env *e)
{
    char path[256], hostile[512];
    struct ig_error err = {};
    const char *build = getenv("IGNIS_BUILD_DIR");

    memset(e, 0, sizeof(*e));
    if (!build) {
        fprintf(stderr, "IGNIS_BUILD_DIR is not set: run through meson test or scripts/bench\n");
        return -1;
    }
    snprintf(hostile, sizeof(hostile), "%s/tests/fixtures/hostile", build);
    if (access("/bin/busybox", X_OK) < 0) {
        fprintf(stderr, "/bin/busybox is missing (scripts/deps installs busybox-static)\n");
        return -1;
    }
    snprintf(e->dir, sizeof(e->dir), "/tmp/ignis-ctest.XXXXXX");
    if (!mkdtemp(e->dir))
        return -1;
    /* Traversable by the container's uid (65534). */
    chmod(e->dir, 0755);
    snprintf(e->image, sizeof(e->image), "%s/image", e->dir);
    snprintf(e->bundle, sizeof(e->bundle), "%s/bundle", e->dir);
    snprintf(path, sizeof(path), "%s/bin", e->image);
    if (mkdir_p(path, 0755) < 0 || mkdir_p(e->bundle, 0755) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/bin/busybox", e->image);
    if (copy_file("/bin/busybox", path, 0755) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/bin/hostile", e->image);
    if (copy_file(hostile, path, 0755) < 0) {
        fprintf(stderr, "cannot copy %s\n", hostile);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/bin/sh", e->image);
    if (symlink("busybox", path) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/handler.txt", e->bundle);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "bundle\n", 7) != 7)
        return -1;
    if (instance_id(e->dir, e->id) < 0)
        return -1;
    if (cg_manager_new(NULL, NULL, e->id, &e->m, &err) < 0 ||
        cg_manager_enter_leaf(e->m, &err) < 0) {
        fprintf(stderr, "cgroups: %s\n", err.message);
        return -1;
    }
    return 0;
}

/* Mounts that mention the test's directory, processes in a container cgroup of its subtree. */
static int leftovers(const struct tc_env *e)
{
    int leaks = 0;
    char line[4096], needle[64], *text = NULL;
    size_t len;
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, e->dir)) {
            fprintf(stderr, "leak: mount %s", line);
            leaks++;
        }
    snprintf(needle, sizeof(needle), "ignis-%s/c-", e->id);
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/cgroup", de->d_name);
        if (read_file(path, 1 << 16, &text, &len) < 0)
            continue;
        if (strstr(text, needle)) {
            char *stat = NULL;
            snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
            read_file(path, 4096, &stat, NULL);
            fprintf(stderr, "leak: process %s is still in a container cgroup: %s\n%s", de->d_name,
                    stat ? stat : "?", text);
            free(stat);
            leaks++;
        }
        free(text);
        text = NULL;
    }
    if (d)
        closedir(d);
    return leaks;
}

int tc_env_teardown(struct tc_env *e)
{
    char path[2300];
    int leaks = 0;

    leaks += leftovers(e);
    /* The container server lives in our cgroups (the daemon's leaf): stop it first. */
    container_shutdown();
    cg_manager_free(e->m);
    e->m = NULL;
    /* The subtree must be gone from every hierarchy. */
    static const char *const roots[] = {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu",
                                        "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified",
                                        "/sys/fs/cgroup"};
    for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "find %s -maxdepth 6 -type d -name ignis-%s 2>/dev/null",
                 roots[i], e->id);
        FILE *p = popen(cmd, "r");
        while (p && fgets(path, sizeof(path), p)) {
            fprintf(stderr, "leak: cgroup %s", path);
            leaks++;
        }
        if (p)
            pclose(p);
    }
    rm_rf(e->dir);
    return leaks ? -1 : 0;
}

void tc_spec(const struct tc_env *e, char **args, struct container_spec *ret)
{
    static char *env[] = {"PATH=/bin", NULL};
    container_spec_init(ret);
    ret->image = (char *)e->image;
    ret->bundle = (char *)e->bundle;
    ret->args = args;
    ret->env = env;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    size_t max = 1 << 20;
    if (*len + n > max)
        n = max - *len;
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb)
        return;
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

int tc_collect(struct container *c, char **ret_out, char **ret_err)
{
    char *bufs[2] = {calloc(1, 1), calloc(1, 1)};
    size_t lens[2] = {0, 0};
    struct pollfd p[2] = {{.fd = container_stdout_fd(c), .events = POLLIN},
                          {.fd = container_stderr_fd(c), .events = POLLIN}};
    char chunk[65536];
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            ssize_t n = read(p[i].fd, chunk, sizeof(chunk));
            if (n <= 0)
                p[i].fd = -1;
            else
                append(&bufs[i], &lens[i], chunk, (size_t)n);
        }
    }
    *ret_out = bufs[0];
    *ret_err = bufs[1];
    return 0;
}

int tc_run(struct tc_env *e, const struct container_spec *spec, const struct cg_limits *limits,
           struct tc_result *ret, struct ig_error *err)
{
    struct container *c;
    struct container_options o = {.spec = spec, .stdout_fd = -1, .stderr_fd = -1};
    struct container_exit x;
    if (limits)
        o.limits = *limits;
    memset(ret, 0, sizeof(*ret));
    int r = container_create(e->m, &o, &c, err);
    if (r < 0)
        return r;
    uint64_t start = now_usec();
    tc_collect(c, &ret->out, &ret->err);
    r = container_wait(c, &x);
    ret->wall_usec = now_usec() - start;
    if (r == 0) {
        ret->exit_code = x.exit_code;
        ret->signal = x.signal;
        ret->oom_killed = x.oom_killed;
        ret->stats = x.stats;
    }
    int q = container_destroy(c, err);
    return r < 0 ? r : q;
}

void tc_result_clear(struct tc_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
