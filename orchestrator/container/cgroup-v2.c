/* The cgroup v2 backend: one directory on the unified hierarchy, written through the cgroup
 * files: libcgroup 2.0.x cannot make a cgroup without controllers (#89, #125, #129) nor read
 * the current one (#335) on v2, and the rest of why is in cgroup.c. Also the cgroup2 half of
 * the hybrid backend, where the mount has no controllers but cgroup.kill and cpu.stat. */
#include "container/cgroup-internal.h"

#include <fcntl.h>
#include <string.h>

#define CG_CPU_PERIOD_USEC    100000ull
#define CG_CPU_MIN_QUOTA_USEC 1000ull

int cg_v2_create_dir(struct cg_group *g, struct ig_error *err)
{
    int r = cg_fs_mkdir(g->m, g->v2_dir);
    if (r < 0)
        return ig_error_set(err, -r, "creating cgroup %s: %s", g->v2_dir, strerror(-r));
    return 0;
}

static int v2_write(const char *dir, const char *file, const char *value, struct ig_error *err)
{
    int r = cg_write(dir, file, value);
    if (r < 0)
        return ig_error_set(err, -r, "writing %s to %s/%s: %s", value, dir, file, strerror(-r));
    return 0;
}

/* Limits go only where the subtree has the controller (cg_manager_enter_leaf enabled what was
 * delegated); what is missing is already reported as a degraded feature. */
static int v2_create(struct cg_group *g, const struct cg_limits *limits, struct ig_error *err)
{
    const struct cg_features *f = &g->m->features;
    const char *dir = g->v2_dir;
    char buf[64];
    int r;

    if ((r = cg_v2_create_dir(g, err)) < 0)
        return r;
    if (limits->memory_bytes && f->memory_limit) {
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)limits->memory_bytes);
        if ((r = v2_write(dir, "memory.max", buf, err)) < 0)
            return r;
        /* memory.swap.max exists only with swap accounting (CONFIG_MEMCG_SWAP, swapaccount). */
        if (cg_file_exists(dir, "memory.swap.max") &&
            (r = v2_write(dir, "memory.swap.max", "0", err)) < 0)
            return r;
    }
    if (limits->cpu_millis && f->cpu_quota) {
        uint64_t quota = (uint64_t)limits->cpu_millis * CG_CPU_PERIOD_USEC / 1000;
        if (quota < CG_CPU_MIN_QUOTA_USEC)
            quota = CG_CPU_MIN_QUOTA_USEC;
        snprintf(buf, sizeof(buf), "%llu %llu", (unsigned long long)quota, CG_CPU_PERIOD_USEC);
        if ((r = v2_write(dir, "cpu.max", buf, err)) < 0)
            return r;
    }
    if (limits->pids_max && f->pids_limit) {
        snprintf(buf, sizeof(buf), "%u", limits->pids_max);
        if ((r = v2_write(dir, "pids.max", buf, err)) < 0)
            return r;
    }
    if (f->memory_peak) {
        _cleanup_free_ char *p = cg_path(dir, "memory.peak");
        g->peak_fd = p ? open(p, (f->peak_reset ? O_RDWR : O_RDONLY) | O_CLOEXEC) : -1;
    }
    return 0;
}

int cg_v2_attach(struct cg_group *g, pid_t pid, struct ig_error *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", (int)pid);
    int r = cg_write(g->v2_dir, "cgroup.procs", buf);
    if (r < 0)
        return ig_error_set(err, -r, "attaching pid %d to %s: %s", (int)pid, g->v2_dir,
                            strerror(-r));
    return 0;
}

/* usage_usec: scheduler-precise, and in every non-root cgroup even without the cpu controller
 * (the user/system split beside it is tick-sampled). */
int cg_v2_read_cpu(struct cg_group *g, struct cg_stats *stats)
{
    return cg_stat_read_keyed(g, CG_F_V2_CPU_STAT, g->v2_dir, "cpu.stat", "usage_usec",
                              &stats->cpu_usec);
}

static int v2_read_stats(struct cg_group *g, unsigned fields, struct cg_stats *ret)
{
    struct cg_stats s = {0};
    int r;

    if (fields & CG_STAT_CPU && (r = cg_v2_read_cpu(g, &s)) < 0)
        return r;
    if (g->m->features.memory_limit) {
        if (fields & CG_STAT_MEMORY_CURRENT &&
            (r = cg_stat_read_u64(g, CG_F_V2_MEMORY_CURRENT, g->v2_dir, "memory.current",
                                  &s.memory_current_bytes)) < 0)
            return r;
        r = fields & CG_STAT_OOM ? cg_stat_read_keyed(g, CG_F_V2_MEMORY_EVENTS, g->v2_dir,
                                                      "memory.events", "oom_kill", &s.oom_kills)
                                 : 0;
        if (r < 0 && r != -ENOENT)
            return r;
    }
    if (fields & CG_STAT_MEMORY_PEAK && g->peak_fd >= 0) {
        /* Through the group's own fd: that is the one a reset applies to. */
        char buf[64];
        ssize_t n = pread(g->peak_fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
            return -errno;
        buf[n] = '\0';
        char *end;
        s.memory_peak_bytes = strtoull(buf, &end, 10);
        if (end == buf)
            return -EINVAL;
    }
    *ret = s;
    return 0;
}

/* Since 6.12 any non-empty write to memory.peak resets the peak seen through that fd. */
static int v2_reset_peak(struct cg_group *g)
{
    if (g->peak_fd < 0 || !g->m->features.peak_reset)
        return -EOPNOTSUPP;
    if (pwrite(g->peak_fd, "reset\n", 6, 0) < 0)
        return errno == EINVAL || errno == EBADF ? -EOPNOTSUPP : -errno;
    return 0;
}

/* cgroup.kill (5.14+) SIGKILLs every process in the group and its descendants at once, forks in
 * flight included. Before 5.14, a bounded kill loop over cgroup.procs. */
int cg_v2_kill(struct cg_group *g, struct ig_error *err)
{
    int r;
    if (cg_file_exists(g->v2_dir, "cgroup.kill")) {
        if ((r = cg_write(g->v2_dir, "cgroup.kill", "1")) < 0)
            return ig_error_set(err, -r, "writing 1 to %s/cgroup.kill: %s", g->v2_dir,
                                strerror(-r));
        return 0;
    }
    for (int pass = 0; pass < 10 && !cg_procs_empty(g->v2_dir); pass++) {
        if ((r = cg_kill_procs(g->v2_dir)) < 0)
            return ig_error_set(err, -r, "reading %s/cgroup.procs: %s", g->v2_dir, strerror(-r));
        usleep(1000);
    }
    return 0;
}

const struct cg_ops cg_v2_ops = {
    .create = v2_create,
    .attach = cg_v2_attach,
    .read_stats = v2_read_stats,
    .reset_peak = v2_reset_peak,
    .kill = cg_v2_kill,
};
