/* The cgroup layer's shared part: mode detection, the daemon's subtree (cgroup.h), dispatch to
 * the v1 / v2 / hybrid / null backends, and the file helpers the backends use.
 *
 * libcgroup. The backends read and write the cgroup files directly. libcgroup 2.0.2 is used for
 * what it does well on a real host: finding where each v1 controller is mounted
 * (cgroup_get_subsys_mount_point, which knows comounts such as "cpu,cpuacct"). It is not used
 * for creating, attaching or removing, because:
 * - its `struct cgroup` has one path for all controllers, but the daemon's own cgroup differs
 *   between hierarchies (on this host memory:/process_api/<hash>, the others /), so every
 *   hierarchy would need its own struct anyway;
 * - on the cgroup2 mount it cannot handle cgroups without controllers (libcgroup #89, #125,
 *   #129), which is all the hybrid host's cgroup2 mount has: there cgroup_create_cgroup of a
 *   cgroup without controllers returned 0 and created nothing (tried on this host, 2.0.2-2);
 *   nor can it read the current cgroup on v2 (cgroup_get_current_controller_path, #335);
 * - cgroup_init() reads /proc/mounts, so its create/attach could never run against the fake
 *   trees the unit tests build: the tested code would not be the code that runs;
 * - cgroup_attach_task_pid writes `tasks` (one thread) where `cgroup.procs` moves the process.
 */
#include "container/cgroup-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <libcgroup.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "base/log.h"

#define CG_DEFAULT_ROOT "/sys/fs/cgroup"
/* Bounded retry of rmdir on EBUSY: killed processes take a moment to leave. 200 tries with a
 * back-off up to 10 ms is about 2 s, far more than an exit takes even on a loaded host. */
#define CG_RMDIR_TRIES 200

static const char *const v1_names[CG_V1_N] = {
    [CG_V1_MEMORY] = "memory", [CG_V1_CPU] = "cpu",         [CG_V1_CPUACCT] = "cpuacct",
    [CG_V1_PIDS] = "pids",     [CG_V1_FREEZER] = "freezer",
};

const char *cg_mode_name(enum cg_mode mode)
{
    switch (mode) {
    case CG_MODE_NONE:
        return "none";
    case CG_MODE_V1:
        return "v1";
    case CG_MODE_V2:
        return "v2";
    case CG_MODE_HYBRID:
        return "hybrid";
    }
    return "unknown";
}

enum cg_mode cg_mode_detect(long root_fs_type, long unified_fs_type, bool v1_listed)
{
    if (root_fs_type == CGROUP2_SUPER_MAGIC)
        return CG_MODE_V2;
    if (unified_fs_type == CGROUP2_SUPER_MAGIC)
        return CG_MODE_HYBRID;
    /* The root is normally a tmpfs holding one mount per v1 hierarchy; a lone v1 hierarchy
     * mounted at the root itself is legacy too. */
    if (v1_listed && (root_fs_type == TMPFS_MAGIC || root_fs_type == CGROUP_SUPER_MAGIC))
        return CG_MODE_V1;
    return CG_MODE_NONE;
}

void cg_features_degraded(const struct cg_features *f, char *buf, size_t len)
{
    const struct {
        bool on;
        const char *name;
    } all[] = {
        {f->memory_limit, "memory_limit"},
        {f->cpu_quota, "cpu_quota"},
        {f->pids_limit, "pids_limit"},
        {f->kill, "kill"},
        {f->memory_peak, "memory_peak"},
        {f->peak_reset, "peak_reset"},
        {f->clone_into_cgroup, "clone_into_cgroup"},
    };
    size_t used = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        if (all[i].on)
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", all[i].name);
        if (n < 0 || (size_t)n >= len - used) {
            buf[used] = '\0'; /* whole names only */
            break;
        }
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, len, "none");
}

/* ---- file helpers ---- */

char *cg_path(const char *dir, const char *file)
{
    char *p;
    if (asprintf(&p, "%s/%s", dir, file) < 0)
        return NULL;
    return p;
}

int cg_write(const char *dir, const char *file, const char *value)
{
    _cleanup_free_ char *p = cg_path(dir, file);
    if (!p)
        return -ENOMEM;
    return write_file(p, value);
}

int cg_write_u64(const char *dir, const char *file, uint64_t value)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
    return cg_write(dir, file, buf);
}

static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    while (*s == ' ' || *s == '\t')
        s++;
    if (startswith(s, "max")) {
        *ret = UINT64_MAX;
        return 0;
    }
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -errno;
    if (*end && *end != '\n' && *end != ' ')
        return -EINVAL;
    *ret = v;
    return 0;
}

int cg_parse_keyed(const char *text, const char *key, uint64_t *ret)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return parse_u64(line + klen + 1, ret);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -ENOENT;
}

static int stat_fd(struct cg_group *g, enum cg_stat_file which, const char *dir, const char *file,
                   int flags)
{
    if (g->stat_fd[which] >= 0 || g->stat_fd[which] == -2)
        return g->stat_fd[which] >= 0 ? g->stat_fd[which] : -ENOENT;
    _cleanup_free_ char *p = cg_path(dir, file);
    if (!p)
        return -ENOMEM;
    int fd = open(p, flags | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return g->stat_fd[which] = fd;
}

/* Reads the whole (small) file at offset 0: cgroupfs regenerates it on every read. */
static int stat_pread(struct cg_group *g, enum cg_stat_file which, const char *dir,
                      const char *file, char *buf, size_t size)
{
    int fd = stat_fd(g, which, dir, file, O_RDONLY);
    if (fd < 0)
        return fd;
    ssize_t n = pread(fd, buf, size - 1, 0);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

int cg_stat_read_u64(struct cg_group *g, enum cg_stat_file which, const char *dir, const char *file,
                     uint64_t *ret)
{
    char buf[64];
    int r = stat_pread(g, which, dir, file, buf, sizeof(buf));
    return r < 0 ? r : parse_u64(buf, ret);
}

int cg_stat_read_keyed(struct cg_group *g, enum cg_stat_file which, const char *dir,
                       const char *file, const char *key, uint64_t *ret)
{
    char buf[4096];
    int r = stat_pread(g, which, dir, file, buf, sizeof(buf));
    return r < 0 ? r : cg_parse_keyed(buf, key, ret);
}

int cg_stat_write(struct cg_group *g, enum cg_stat_file which, const char *dir, const char *file,
                  const char *value)
{
    int fd = stat_fd(g, which, dir, file, O_WRONLY);
    if (fd == -ENOENT)
        g->stat_fd[which] = -2;
    if (fd < 0)
        return fd;
    size_t len = strlen(value);
    ssize_t n = pwrite(fd, value, len, 0);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

bool cg_file_exists(const char *dir, const char *file)
{
    _cleanup_free_ char *p = dir ? cg_path(dir, file) : NULL;
    return p && access(p, F_OK) == 0;
}

int cg_kill_procs(const char *dir)
{
    _cleanup_free_ char *p = cg_path(dir, "cgroup.procs"), *text = NULL;
    int n = 0;

    if (!p)
        return -ENOMEM;
    int r = read_file(p, 4 << 20, &text, NULL);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    for (char *s = text, *end; *s; s = end) {
        long pid = strtol(s, &end, 10);
        if (end == s)
            break;
        /* Never 0 or negative: kill(0) and kill(-n) signal process groups. Never the caller
         * either: it may have just left the cgroup (and a fake tree still lists it). */
        if (pid > 0 && pid != getpid() && kill((pid_t)pid, SIGKILL) == 0)
            n++;
    }
    return n;
}

/* 1 when dir/cgroup.procs lists no process, 0 when it lists one, -errno when it cannot be
 * read. */
static int procs_empty(const char *dir)
{
    _cleanup_free_ char *p = cg_path(dir, "cgroup.procs"), *text = NULL;
    if (!p)
        return -ENOMEM;
    int r = read_file(p, 4 << 20, &text, NULL);
    return r < 0 ? r : strspn(text, " \n") == strlen(text);
}

bool cg_procs_empty(const char *dir)
{
    return procs_empty(dir) != 0;
}

bool cg_group_empty(const struct cg_group *g)
{
    for (const char *const *p = g->paths; p && *p; p++)
        if (procs_empty(*p) != 1)
            return false;
    return true;
}

/* ---- directory operations (cgroupfs or fake tree) ---- */

static int copy_file_names(const char *parent, const char *dir)
{
    DIR *d = opendir(parent);
    struct dirent *de;
    int r = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        if (de->d_type != DT_REG)
            continue;
        _cleanup_free_ char *p = cg_path(dir, de->d_name);
        int fd = p ? open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
        if (fd < 0 && (!p || errno != EEXIST)) {
            r = p ? -errno : -ENOMEM;
            break;
        }
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
    return r;
}

int cg_fs_mkdir(const struct cg_manager *m, const char *dir)
{
    if (mkdir(dir, 0755) < 0)
        return errno == EEXIST ? 0 : -errno;
    if (!m->fake_fs)
        return 0;
    _cleanup_free_ char *parent = strdup(dir);
    if (!parent)
        return -ENOMEM;
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    return copy_file_names(parent, dir);
}

int cg_fs_rmdir(const struct cg_manager *m, const char *dir)
{
    if (m->fake_fs) {
        DIR *d = opendir(dir);
        struct dirent *de;
        if (!d)
            return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
            if (de->d_type == DT_DIR && !streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                closedir(d);
                return -EBUSY;
            }
        rewinddir(d);
        while ((de = readdir(d)))
            if (de->d_type == DT_REG)
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    if (rmdir(dir) < 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

/* Removes dir, retrying on EBUSY (processes still exiting) with a short back-off; between tries
 * kill_again (may be NULL) signals what is left. */
static int rmdir_retry(const struct cg_manager *m, const char *dir, struct cg_group *kill_again)
{
    int r = 0;
    for (int i = 0; i < CG_RMDIR_TRIES; i++) {
        r = cg_fs_rmdir(m, dir);
        if (r != -EBUSY)
            return r;
        if (kill_again && i % 20 == 19)
            (void)m->ops->kill(kill_again, NULL);
        usleep(i < 10 ? 1000 : 10000);
    }
    return r;
}

/* ---- the null and hybrid backends ---- */

static int null_create(struct cg_group *g, const struct cg_limits *limits, struct ig_error *err)
{
    return 0;
}

static int null_attach(struct cg_group *g, pid_t pid, struct ig_error *err)
{
    return 0;
}

static int null_read_stats(struct cg_group *g, unsigned fields, struct cg_stats *ret)
{
    *ret = (struct cg_stats){0};
    return 0;
}

static int null_reset_peak(struct cg_group *g)
{
    return -EOPNOTSUPP;
}

static int null_kill(struct cg_group *g, struct ig_error *err)
{
    return 0;
}

static const struct cg_ops null_ops = {
    .create = null_create,
    .attach = null_attach,
    .read_stats = null_read_stats,
    .reset_peak = null_reset_peak,
    .kill = null_kill,
};

static int hybrid_create(struct cg_group *g, const struct cg_limits *limits, struct ig_error *err)
{
    int r = cg_v1_create(g, limits, err);
    if (r < 0)
        return r;
    return cg_v2_create_dir(g, err);
}

static int hybrid_attach(struct cg_group *g, pid_t pid, struct ig_error *err)
{
    int r = cg_v1_attach(g, pid, err);
    if (r < 0)
        return r;
    return cg_v2_attach(g, pid, err);
}

/* CPU from the cgroup2 side's cpu.stat (scheduler-precise usage_usec, present without the cpu
 * controller); memory from the v1 memory controller, the only one that has it here. */
static int hybrid_read_stats(struct cg_group *g, unsigned fields, struct cg_stats *ret)
{
    struct cg_stats s = {0};
    int r = fields & CG_STAT_CPU ? cg_v2_read_cpu(g, &s) : 0;
    if (r < 0)
        return r;
    r = cg_v1_read_memory(g, fields, &s);
    if (r < 0)
        return r;
    *ret = s;
    return 0;
}

/* cgroup.kill on the cgroup2 side reaches every process the container has, since cg_attach
 * puts it there as in the v1 hierarchies; without it, freeze-kill-thaw on v1. */
static int hybrid_kill(struct cg_group *g, struct ig_error *err)
{
    if (g->v2_dir && cg_file_exists(g->v2_dir, "cgroup.kill"))
        return cg_v2_kill(g, err);
    return cg_v1_kill(g, err);
}

static const struct cg_ops hybrid_ops = {
    .create = hybrid_create,
    .attach = hybrid_attach,
    .read_stats = hybrid_read_stats,
    .reset_peak = cg_v1_reset_peak,
    .kill = hybrid_kill,
};

/* ---- the manager ---- */

struct proc_cgroup_line {
    char *controllers; /* "memory", "cpu,cpuacct", "name=systemd", "" for cgroup2 */
    char *path;
};

/* Splits /proc/self/cgroup text ("N:controllers:path" lines) in place. */
static size_t parse_proc_cgroup(char *text, struct proc_cgroup_line *lines, size_t max)
{
    size_t n = 0;
    for (char *line = text, *next; line && *line && n < max; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0';
        lines[n++] = (struct proc_cgroup_line){.controllers = c1 + 1, .path = c2 + 1};
    }
    return n;
}

static bool list_has(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0'))
            return true;
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return false;
}

/* "<mount><path>" without a doubled slash for the root cgroup "/". */
static char *join_cgroup(const char *mount, const char *path)
{
    char *p;
    if (asprintf(&p, "%s%s", mount, streq(path, "/") ? "" : path) < 0)
        return NULL;
    return p;
}

/* Where the v1 hierarchy holding `controller` (listed in /proc/self/cgroup as `listed`) is
 * mounted. On the real host libcgroup's mount table answers; under any other root (fake trees)
 * the usual layout does: `<root>/<listed>`, else `<root>/<controller>`. */
static char *v1_mount(const struct cg_manager *m, const char *fs_root, const char *listed,
                      const char *controller)
{
    if (!m->fake_fs && streq(fs_root, CG_DEFAULT_ROOT)) {
        static bool inited;
        char *mp = NULL;
        /* cgroup_init() returns 0 on success; its table is process-global, read once. */
        if (!inited && cgroup_init() == 0)
            inited = true;
        if (inited && cgroup_get_subsys_mount_point(controller, &mp) == 0 && mp)
            return mp;
        free(mp);
    }
    char *p;
    if (asprintf(&p, "%s/%s", fs_root, listed) < 0)
        return NULL;
    struct stat st;
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return p;
    free(p);
    if (asprintf(&p, "%s/%s", fs_root, controller) < 0)
        return NULL;
    return p;
}

/* The distinct directories among dirs[0..n) (comounted controllers share one). */
static size_t unique_dirs(char *const *dirs, size_t n, const char **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!dirs[i])
            continue;
        bool seen = false;
        for (size_t j = 0; j < k; j++)
            seen = seen || streq(out[j], dirs[i]);
        if (!seen)
            out[k++] = dirs[i];
    }
    return k;
}

/* Every hierarchy's subtree base and, in the same order, where the daemon started in it. */
static size_t manager_dirs(const struct cg_manager *m, const char **bases, const char **starts)
{
    size_t n = 0;
    for (size_t i = 0; i < CG_V1_N; i++) {
        if (!m->v1_base[i])
            continue;
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            seen = seen || streq(bases[j], m->v1_base[i]);
        if (seen)
            continue;
        bases[n] = m->v1_base[i];
        starts[n++] = m->v1_start[i];
    }
    if (m->v2_base) {
        bases[n] = m->v2_base;
        starts[n++] = m->v2_start;
    }
    return n;
}

/* Whether a space- or newline-separated list (cgroup.controllers, cgroup.subtree_control)
 * holds word. The kernel shows subtree_control without the '+' that was written; a fake tree
 * shows it as written, hence the '+'. */
static bool has_word(const char *text, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = text; (p = strstr(p, word)); p += len) {
        bool start = p == text || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '+';
        bool end = p[len] == '\0' || p[len] == ' ' || p[len] == '\n';
        if (start && end)
            return true;
    }
    return false;
}

static void compute_features_v1(struct cg_manager *m)
{
    struct cg_features *f = &m->features;
    f->memory_limit = cg_file_exists(m->v1_base[CG_V1_MEMORY], "memory.limit_in_bytes");
    f->memory_peak = cg_file_exists(m->v1_base[CG_V1_MEMORY], "memory.max_usage_in_bytes");
    f->peak_reset = f->memory_peak;
    f->cpu_quota = cg_file_exists(m->v1_base[CG_V1_CPU], "cpu.cfs_quota_us");
    f->pids_limit = cg_file_exists(m->v1_base[CG_V1_PIDS], "pids.max");
    f->kill = cg_file_exists(m->v1_base[CG_V1_FREEZER], "freezer.state");
}

/* v2: what the subtree's children get is what the base enables in its subtree_control. */
static void compute_features_v2(struct cg_manager *m)
{
    struct cg_features *f = &m->features;
    _cleanup_free_ char *p = cg_path(m->v2_base, "cgroup.subtree_control"), *text = NULL;
    if (!p || read_file(p, 4096, &text, NULL) < 0)
        text = NULL;
    bool memory = text && has_word(text, "memory");
    f->memory_limit = memory;
    f->memory_peak = memory && cg_file_exists(m->v2_base, "memory.peak");
    f->cpu_quota = text && has_word(text, "cpu");
    f->pids_limit = text && has_word(text, "pids");
    f->kill = cg_file_exists(m->v2_base, "cgroup.kill");
    /* memory.peak became writable (a per-fd reset) in 6.12; before, it is read-only (0444). */
    struct stat st;
    _cleanup_free_ char *peak = cg_path(m->v2_base, "memory.peak");
    f->peak_reset = f->memory_peak && peak && stat(peak, &st) == 0 && (st.st_mode & S_IWUSR);
}

static int manager_alloc(enum cg_mode mode, bool fake_fs, const char *id, struct cg_manager **ret)
{
    struct cg_manager *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->mode = mode;
    m->fake_fs = fake_fs;
    m->ops = mode == CG_MODE_V1       ? &cg_v1_ops
             : mode == CG_MODE_V2     ? &cg_v2_ops
             : mode == CG_MODE_HYBRID ? &hybrid_ops
                                      : &null_ops;
    m->id = strdup(id ? id : "null");
    if (!m->id) {
        free(m);
        return -ENOMEM;
    }
    *ret = m;
    return 0;
}

int cg_manager_new_null(struct cg_manager **ret)
{
    return manager_alloc(CG_MODE_NONE, false, NULL, ret);
}

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    return n > 0 && n <= 64 && strspn(id, "0123456789abcdefghijklmnopqrstuvwxyz-") == n;
}

int cg_manager_new_mode(enum cg_mode mode, bool fake_fs, const char *fs_root,
                        const char *proc_self_cgroup, const char *id, struct cg_manager **ret,
                        struct ig_error *err)
{
    struct cg_manager *m = NULL;
    _cleanup_free_ char *text = NULL;
    struct proc_cgroup_line lines[64];
    int r;

    if (!id || !valid_id(id))
        return ig_error_set(err, EINVAL, "cgroup subtree id '%s' is not [0-9a-z-]{1,64}",
                            id ? id : "(null)");
    if (mode == CG_MODE_NONE)
        return cg_manager_new_null(ret) < 0 ? ig_error_set(err, ENOMEM, "out of memory") : 0;
    if (proc_self_cgroup)
        text = strdup(proc_self_cgroup);
    else if ((r = read_file("/proc/self/cgroup", 64 * 1024, &text, NULL)) < 0)
        return ig_error_set(err, -r, "reading /proc/self/cgroup: %s", strerror(-r));
    if (!text)
        return ig_error_set(err, ENOMEM, "out of memory");
    size_t n = parse_proc_cgroup(text, lines, ARRAY_SIZE(lines));

    if ((r = manager_alloc(mode, fake_fs, id, &m)) < 0)
        return ig_error_set(err, -r, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct proc_cgroup_line *l = &lines[i];
        if (!*l->controllers) {
            if (mode == CG_MODE_V1)
                continue;
            _cleanup_free_ char *mount = NULL;
            if (mode == CG_MODE_HYBRID && asprintf(&mount, "%s/unified", fs_root) < 0)
                goto oom;
            m->v2_start = join_cgroup(mount ? mount : fs_root, l->path);
            if (!m->v2_start)
                goto oom;
            m->v2_start_is_root = streq(l->path, "/");
            continue;
        }
        if (mode == CG_MODE_V2)
            continue;
        for (size_t c = 0; c < CG_V1_N; c++) {
            if (!list_has(l->controllers, v1_names[c]) || m->v1_start[c])
                continue;
            _cleanup_free_ char *mount = v1_mount(m, fs_root, l->controllers, v1_names[c]);
            if (!mount || !(m->v1_start[c] = join_cgroup(mount, l->path)))
                goto oom;
            /* Listed but not reachable here (not mounted where expected, or a cgroup
             * namespace hides it): do without it, as a degraded feature. */
            struct stat st;
            if (stat(m->v1_start[c], &st) < 0 || !S_ISDIR(st.st_mode)) {
                log_debug("v1 controller not usable", "controller=%s dir=%s", v1_names[c],
                          m->v1_start[c]);
                free(m->v1_start[c]);
                m->v1_start[c] = NULL;
            }
        }
    }
    if (mode == CG_MODE_V2 || mode == CG_MODE_HYBRID) {
        if (!m->v2_start) {
            r = ig_error_set(err, ENOENT, "/proc/self/cgroup has no cgroup2 line (0::/path)");
            goto fail;
        }
        if (asprintf(&m->v2_base, "%s/ignis-%s", m->v2_start, id) < 0)
            goto oom;
    }
    for (size_t c = 0; c < CG_V1_N; c++)
        if (m->v1_start[c] && asprintf(&m->v1_base[c], "%s/ignis-%s", m->v1_start[c], id) < 0)
            goto oom;

    /* The subtree and the daemon's leaf in every hierarchy used. */
    const char *bases[CG_V1_N + 1], *starts[CG_V1_N + 1];
    size_t nd = manager_dirs(m, bases, starts);
    if (nd == 0) {
        r = ig_error_set(err, ENOENT, "no usable cgroup hierarchy under %s", fs_root);
        goto fail;
    }
    for (size_t i = 0; i < nd; i++) {
        _cleanup_free_ char *leaf = cg_path(bases[i], "daemon");
        if (!leaf)
            goto oom;
        const char *dir = bases[i];
        if ((r = cg_fs_mkdir(m, dir)) < 0 || (r = cg_fs_mkdir(m, dir = leaf)) < 0) {
            ig_error_set(err, -r, "creating cgroup %s: %s", dir, strerror(-r));
            goto fail;
        }
    }

    if (mode == CG_MODE_V1 || mode == CG_MODE_HYBRID)
        compute_features_v1(m);
    if (mode == CG_MODE_V2)
        compute_features_v2(m);
    if (mode == CG_MODE_HYBRID && cg_file_exists(m->v2_base, "cgroup.kill"))
        m->features.kill = true;
    *ret = m;
    return 0;
oom:
    r = ig_error_set(err, ENOMEM, "out of memory");
fail:
    cg_manager_free(m);
    return r;
}

int cg_manager_new(const char *fs_root, const char *proc_self_cgroup, const char *id,
                   struct cg_manager **ret, struct ig_error *err)
{
    struct statfs root, unified;
    _cleanup_free_ char *text = NULL, *upath = NULL;
    bool v1_listed = false;
    int r;

    if (!fs_root)
        fs_root = CG_DEFAULT_ROOT;
    if (!proc_self_cgroup) {
        if ((r = read_file("/proc/self/cgroup", 64 * 1024, &text, NULL)) < 0)
            return ig_error_set(err, -r, "reading /proc/self/cgroup: %s", strerror(-r));
        proc_self_cgroup = text;
    }
    /* A v1 line names its controllers ("4:memory:/..."); cgroup2's is "0::/...". */
    for (const char *l = proc_self_cgroup; l && *l;) {
        const char *c1 = strchr(l, ':');
        if (c1 && c1[1] != ':' && c1[1] != '\n' && c1[1] != '\0')
            v1_listed = true;
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    if (asprintf(&upath, "%s/unified", fs_root) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    long root_type = statfs(fs_root, &root) == 0 ? (long)root.f_type : 0;
    long unified_type = statfs(upath, &unified) == 0 ? (long)unified.f_type : 0;
    enum cg_mode mode = cg_mode_detect(root_type, unified_type, v1_listed);
    if (mode == CG_MODE_NONE)
        return ig_error_set(err, ENOTSUP, "no cgroup file system under %s", fs_root);
    return cg_manager_new_mode(mode, false, fs_root, proc_self_cgroup, id, ret, err);
}

enum cg_mode cg_manager_mode(const struct cg_manager *m)
{
    return m->mode;
}

const struct cg_features *cg_manager_features(const struct cg_manager *m)
{
    return &m->features;
}

static int move_self(const char *dir)
{
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    return cg_write(dir, "cgroup.procs", pid);
}

/* Enables the controllers the layer uses (of those dir's cgroup.controllers offers) in dir's
 * subtree_control; records what it enabled in done (to undo on free). One write: the kernel
 * takes a space-separated list. */
static int v2_enable(const char *dir, char *done, size_t done_len)
{
    _cleanup_free_ char *p = cg_path(dir, "cgroup.controllers"), *avail = NULL, *cur = NULL;
    _cleanup_free_ char *sc = cg_path(dir, "cgroup.subtree_control");
    const char *want[] = {"cpu", "memory", "pids"};
    char buf[64] = "";
    int r;

    done[0] = '\0';
    if (!p || !sc)
        return -ENOMEM;
    if ((r = read_file(p, 4096, &avail, NULL)) < 0)
        return r;
    if (read_file(sc, 4096, &cur, NULL) < 0)
        cur = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        if (!has_word(avail, want[i]) || (cur && has_word(cur, want[i])))
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, sizeof(buf) - used, "%s+%s", used ? " " : "", want[i]);
    }
    if (!buf[0])
        return 0;
    if ((r = write_file(sc, buf)) < 0)
        return r;
    snprintf(done, done_len, "%s", buf);
    return 0;
}

/* Undoes v2_enable: "+cpu +memory" becomes "-cpu -memory". */
static int v2_disable(const char *dir, const char *enabled)
{
    char buf[64];
    if (!enabled[0])
        return 0;
    snprintf(buf, sizeof(buf), "%s", enabled);
    for (char *c = buf; *c; c++)
        if (*c == '+')
            *c = '-';
    return cg_write(dir, "cgroup.subtree_control", buf);
}

/* clone3(CLONE_INTO_CGROUP) (5.7+, unified hierarchy only): tried once, for real, into the
 * daemon's leaf; the child exits at once. */
static bool probe_clone_into_cgroup(const char *dir)
{
    _cleanup_close_ int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct clone_args args = {
        .flags = CLONE_INTO_CGROUP,
        .exit_signal = SIGCHLD,
        .cgroup = (uint64_t)fd,
    };
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return false;
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR)
        ;
    return true;
}

int cg_manager_enter_leaf(struct cg_manager *m, struct ig_error *err)
{
    const char *bases[CG_V1_N + 1], *starts[CG_V1_N + 1];
    size_t n = manager_dirs(m, bases, starts);

    if (m->mode == CG_MODE_NONE)
        return 0;
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *leaf = cg_path(bases[i], "daemon");
        int r = leaf ? move_self(leaf) : -ENOMEM;
        if (r < 0)
            return ig_error_set(err, -r, "moving ignisd into %s: %s", leaf ? leaf : "its leaf",
                                strerror(-r));
        m->in_leaf = true;
    }
    if (m->mode == CG_MODE_V2) {
        /* Delegated controllers must be enabled at the daemon's starting cgroup (now empty of
         * the daemon; EBUSY if something else still lives there) and at the base. What cannot
         * be enabled is a degraded feature, not a failure. */
        int r = v2_enable(m->v2_start, m->v2_enabled_start, sizeof(m->v2_enabled_start));
        if (r == 0)
            r = v2_enable(m->v2_base, m->v2_enabled_base, sizeof(m->v2_enabled_base));
        if (r < 0)
            log_warn("cannot enable cgroup controllers for the subtree", "dir=%s error=\"%s\"",
                     m->v2_start, strerror(-r));
        compute_features_v2(m);
    }
    if (m->v2_base && !m->fake_fs) {
        _cleanup_free_ char *leaf = cg_path(m->v2_base, "daemon");
        m->features.clone_into_cgroup = leaf && probe_clone_into_cgroup(leaf);
    }
    return 0;
}

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= 128 && !streq(name, ".") && !streq(name, "..") &&
           strspn(name, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-") == n;
}

static void group_free(struct cg_group *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < CG_V1_N; i++)
        free(g->v1_dir[i]);
    free(g->v2_dir);
    free(g->name);
    if (g->v2_fd >= 0)
        close(g->v2_fd);
    if (g->peak_fd >= 0)
        close(g->peak_fd);
    for (size_t i = 0; i < CG_F_N; i++)
        if (g->stat_fd[i] >= 0)
            close(g->stat_fd[i]);
    free(g);
}

/* A group's struct and paths, without touching the file system. */
static int group_new(struct cg_manager *m, const char *name, struct cg_group **ret)
{
    struct cg_group *g = calloc(1, sizeof(*g));
    size_t np = 0;

    if (!g)
        return -ENOMEM;
    g->m = m;
    g->v2_fd = g->peak_fd = -1;
    for (size_t i = 0; i < CG_F_N; i++)
        g->stat_fd[i] = -1;
    if (!(g->name = strdup(name)))
        goto oom;
    for (size_t i = 0; i < CG_V1_N; i++)
        if (m->v1_base[i] && asprintf(&g->v1_dir[i], "%s/c-%s", m->v1_base[i], name) < 0) {
            g->v1_dir[i] = NULL;
            goto oom;
        }
    if (m->v2_base && asprintf(&g->v2_dir, "%s/c-%s", m->v2_base, name) < 0) {
        g->v2_dir = NULL;
        goto oom;
    }
    np = unique_dirs(g->v1_dir, CG_V1_N, g->paths);
    if (g->v2_dir)
        g->paths[np++] = g->v2_dir;
    g->paths[np] = NULL;
    *ret = g;
    return 0;
oom:
    group_free(g);
    return -ENOMEM;
}

/* Removes the group's directories; the first failure is returned, the rest still tried. */
static int group_remove(struct cg_group *g, struct ig_error *err)
{
    int ret = 0;
    for (const char *const *p = g->paths; *p; p++) {
        int r = rmdir_retry(g->m, *p, g);
        if (r < 0 && ret == 0)
            ret = ig_error_set(err, -r, "removing cgroup %s: %s", *p, strerror(-r));
    }
    return ret;
}

int cg_create(struct cg_manager *m, const char *name, const struct cg_limits *limits,
              struct cg_group **ret, struct ig_error *err)
{
    struct cg_group *g = NULL;
    static const struct cg_limits none = {0};
    int r;

    if (!name || !valid_name(name))
        return ig_error_set(err, EINVAL, "container cgroup name '%s' is not [A-Za-z0-9._-]{1,128}",
                            name ? name : "(null)");
    if ((r = group_new(m, name, &g)) < 0)
        return ig_error_set(err, -r, "out of memory");
    /* Never adopt an existing directory: it could hold another container's processes, and
     * the cleanup below would remove it. */
    for (const char *const *p = g->paths; *p; p++)
        if (access(*p, F_OK) == 0) {
            r = ig_error_set(err, EEXIST, "container cgroup %s already exists", *p);
            group_free(g);
            return r;
        }
    r = m->ops->create(g, limits ? limits : &none, err);
    if (r == 0 && g->v2_dir) {
        g->v2_fd = open(g->v2_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (g->v2_fd < 0)
            r = ig_error_set(err, errno, "opening %s: %s", g->v2_dir, strerror(errno));
    }
    if (r < 0) {
        (void)group_remove(g, NULL); /* the first error stays the one reported */
        group_free(g);
        return r;
    }
    *ret = g;
    return 0;
}

int cg_group_v2_fd(const struct cg_group *g)
{
    return g->v2_fd;
}

const char *const *cg_group_paths(const struct cg_group *g)
{
    return g->paths;
}

int cg_attach(struct cg_group *g, pid_t pid, struct ig_error *err)
{
    if (pid <= 0)
        return ig_error_set(err, EINVAL, "cannot attach pid %d", (int)pid);
    return g->m->ops->attach(g, pid, err);
}

int cg_read_stats(struct cg_group *g, unsigned fields, struct cg_stats *ret)
{
    return g->m->ops->read_stats(g, fields, ret);
}

int cg_reset_peak(struct cg_group *g)
{
    return g->m->ops->reset_peak(g);
}

int cg_kill(struct cg_group *g, struct ig_error *err)
{
    return g->m->ops->kill(g, err);
}

int cg_destroy(struct cg_group *g, struct ig_error *err)
{
    if (!g)
        return 0;
    int r = g->m->ops->kill(g, err);
    int q = group_remove(g, err);
    if (q < 0) {
        log_warn("container cgroup left behind", "name=%s error=\"%s\"", g->name,
                 err ? err->message : strerror(-q));
        if (r == 0)
            r = q;
    }
    group_free(g);
    return r;
}

/* Names of the `c-*` directories in every base, each once. */
static int stale_names(struct cg_manager *m, char ***ret, size_t *ret_n)
{
    const char *bases[CG_V1_N + 1], *starts[CG_V1_N + 1];
    size_t nd = manager_dirs(m, bases, starts), n = 0, cap = 0;
    char **names = NULL;

    for (size_t i = 0; i < nd; i++) {
        DIR *d = opendir(bases[i]);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_type != DT_DIR || !startswith(de->d_name, "c-"))
                continue;
            bool seen = false;
            for (size_t j = 0; j < n; j++)
                seen = seen || streq(names[j], de->d_name + 2);
            if (seen)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nn = realloc(names, cap * sizeof(*nn));
                if (!nn)
                    break;
                names = nn;
            }
            if (!(names[n] = strdup(de->d_name + 2)))
                break;
            n++;
        }
        if (d)
            closedir(d);
    }
    *ret = names;
    *ret_n = n;
    return 0;
}

int cg_manager_cleanup_stale(struct cg_manager *m, struct ig_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int removed = 0, ret = 0;

    if (m->mode == CG_MODE_NONE)
        return 0;
    stale_names(m, &names, &n);
    for (size_t i = 0; i < n; i++) {
        struct cg_group *g;
        /* A directory name that cg_create would not have made is not ours to judge. */
        if (valid_name(names[i]) && group_new(m, names[i], &g) == 0) {
            int r = cg_destroy(g, err);
            if (r == 0)
                removed++;
            else if (ret == 0)
                ret = r;
        }
        free(names[i]);
    }
    free(names);
    return ret < 0 ? ret : removed;
}

void cg_manager_free(struct cg_manager *m)
{
    if (!m)
        return;
    if (m->mode != CG_MODE_NONE) {
        const char *bases[CG_V1_N + 1], *starts[CG_V1_N + 1];
        size_t n = manager_dirs(m, bases, starts);
        int r;

        (void)cg_manager_cleanup_stale(m, NULL);
        if (m->mode == CG_MODE_V2 && m->v2_base) {
            /* At the hierarchy's root others may rely on what was enabled meanwhile, and
             * processes may live there regardless: leave it. */
            if ((r = v2_disable(m->v2_base, m->v2_enabled_base)) < 0 ||
                (!m->v2_start_is_root && (r = v2_disable(m->v2_start, m->v2_enabled_start)) < 0))
                log_warn("cannot disable cgroup controllers", "dir=%s error=\"%s\"", m->v2_start,
                         strerror(-r));
        }
        for (size_t i = 0; i < n; i++) {
            _cleanup_free_ char *leaf = cg_path(bases[i], "daemon");
            if (m->in_leaf && (r = move_self(starts[i])) < 0)
                log_warn("cannot move ignisd back", "dir=%s error=\"%s\"", starts[i], strerror(-r));
            /* What is left in the leaf once the daemon is out was started by it and never
             * made it into a container (a shim mid-setup): it goes with the daemon. */
            if (m->in_leaf && leaf)
                (void)cg_kill_procs(leaf);
            if (leaf &&
                ((r = rmdir_retry(m, leaf, NULL)) < 0 || (r = rmdir_retry(m, bases[i], NULL)) < 0))
                log_warn("cgroup subtree left behind", "dir=%s error=\"%s\"", bases[i],
                         strerror(-r));
        }
    }
    for (size_t i = 0; i < CG_V1_N; i++) {
        free(m->v1_start[i]);
        free(m->v1_base[i]);
    }
    free(m->v2_start);
    free(m->v2_base);
    free(m->id);
    free(m);
}
