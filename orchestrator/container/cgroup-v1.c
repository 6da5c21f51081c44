/* The cgroup v1 backend: one directory per used controller hierarchy (memory, cpu, cpuacct,
 * pids, freezer), written through the cgroup files (why not libcgroup: cgroup.c). Also the v1
 * half of the hybrid backend. */
#include "container/cgroup-internal.h"

#include <signal.h>
#include <string.h>

/* The CFS period: 100 ms, the kernel's default; the quota is cpu_millis of it. */
#define CG_CPU_PERIOD_USEC 100000ull
/* The kernel refuses a quota under 1 ms (kernel/sched/core.c, min_cfs_quota_period). */
#define CG_CPU_MIN_QUOTA_USEC 1000ull
/* Freezing is usually instant, but a task in uninterruptible sleep delays it: wait at most
 * about a second, then kill anyway (the rmdir retry waits for the stragglers). */
#define CG_FREEZE_TRIES 100

static int fail_write(struct ig_error *err, int r, const char *dir, const char *file,
                      const char *value)
{
    return ig_error_set(err, -r, "writing %s to %s/%s: %s", value, dir, file, strerror(-r));
}

static int write_u64_or_fail(const char *dir, const char *file, uint64_t v, struct ig_error *err)
{
    int r = cg_write_u64(dir, file, v);
    if (r < 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
        return fail_write(err, r, dir, file, buf);
    }
    return 0;
}

int cg_v1_create(struct cg_group *g, const struct cg_limits *limits, struct ig_error *err)
{
    const char *mem = g->v1_dir[CG_V1_MEMORY], *cpu = g->v1_dir[CG_V1_CPU];
    const char *pids = g->v1_dir[CG_V1_PIDS];
    int r;

    for (const char *const *p = g->paths; *p; p++) {
        if (*p == g->v2_dir)
            continue;
        if ((r = cg_fs_mkdir(g->m, *p)) < 0)
            return ig_error_set(err, -r, "creating cgroup %s: %s", *p, strerror(-r));
    }
    if (mem && limits->memory_bytes && g->m->features.memory_limit) {
        /* memsw (memory + swap) must stay >= the memory limit, so the memory limit goes first;
         * memsw equal to it means no swap. Without swap accounting (no memsw files),
         * swappiness 0 keeps the group's pages out of swap. */
        if ((r = write_u64_or_fail(mem, "memory.limit_in_bytes", limits->memory_bytes, err)) < 0)
            return r;
        if (cg_file_exists(mem, "memory.memsw.limit_in_bytes")) {
            r = write_u64_or_fail(mem, "memory.memsw.limit_in_bytes", limits->memory_bytes, err);
            if (r < 0)
                return r;
        } else if (cg_file_exists(mem, "memory.swappiness") &&
                   (r = write_u64_or_fail(mem, "memory.swappiness", 0, err)) < 0)
            return r;
    }
    if (cpu && limits->cpu_millis && g->m->features.cpu_quota) {
        uint64_t quota = (uint64_t)limits->cpu_millis * CG_CPU_PERIOD_USEC / 1000;
        if (quota < CG_CPU_MIN_QUOTA_USEC)
            quota = CG_CPU_MIN_QUOTA_USEC;
        if ((r = write_u64_or_fail(cpu, "cpu.cfs_period_us", CG_CPU_PERIOD_USEC, err)) < 0 ||
            (r = write_u64_or_fail(cpu, "cpu.cfs_quota_us", quota, err)) < 0)
            return r;
    }
    if (pids && limits->pids_max && g->m->features.pids_limit &&
        (r = write_u64_or_fail(pids, "pids.max", limits->pids_max, err)) < 0)
        return r;
    return 0;
}

/* cgroup.procs, not tasks: writing a pid there moves the whole thread group (3.0+), where
 * `tasks` (what libcgroup's cgroup_attach_task_pid writes) moves one thread. The kernel treats
 * a move into the cgroup a process is already in as a no-op. */
int cg_v1_attach(struct cg_group *g, pid_t pid, struct ig_error *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%d", (int)pid);
    for (const char *const *p = g->paths; *p; p++) {
        if (*p == g->v2_dir)
            continue;
        int r = cg_write(*p, "cgroup.procs", buf);
        if (r < 0)
            return ig_error_set(err, -r, "attaching pid %d to %s: %s", (int)pid, *p, strerror(-r));
    }
    return 0;
}

int cg_v1_read_memory(struct cg_group *g, unsigned fields, struct cg_stats *stats)
{
    const char *mem = g->v1_dir[CG_V1_MEMORY];
    int r;

    if (!mem || !g->m->features.memory_limit)
        return 0;
    if ((fields & CG_STAT_MEMORY_PEAK &&
         (r = cg_stat_read_u64(g, CG_F_V1_MAX_USAGE, mem, "memory.max_usage_in_bytes",
                               &stats->memory_peak_bytes)) < 0) ||
        (fields & CG_STAT_MEMORY_CURRENT &&
         (r = cg_stat_read_u64(g, CG_F_V1_USAGE, mem, "memory.usage_in_bytes",
                               &stats->memory_current_bytes)) < 0))
        return r;
    if (!(fields & CG_STAT_OOM))
        return 0;
    /* oom_kill appeared in memory.oom_control in 4.13; older kernels count nothing here. */
    r = cg_stat_read_keyed(g, CG_F_V1_OOM_CONTROL, mem, "memory.oom_control", "oom_kill",
                           &stats->oom_kills);
    if (r == -ENOENT)
        stats->oom_kills = 0;
    else if (r < 0)
        return r;
    return 0;
}

static int v1_read_stats(struct cg_group *g, unsigned fields, struct cg_stats *ret)
{
    struct cg_stats s = {0};
    const char *acct = g->v1_dir[CG_V1_CPUACCT];
    int r;

    /* cpuacct.usage: nanoseconds from the scheduler (cpuacct.stat is in coarse ticks). */
    if (acct && fields & CG_STAT_CPU) {
        uint64_t ns;
        if ((r = cg_stat_read_u64(g, CG_F_V1_CPUACCT_USAGE, acct, "cpuacct.usage", &ns)) < 0)
            return r;
        s.cpu_usec = ns / 1000;
    }
    if ((r = cg_v1_read_memory(g, fields, &s)) < 0)
        return r;
    *ret = s;
    return 0;
}

/* Writing 0 to memory.max_usage_in_bytes resets it to the current usage. (memsw's peak, memory
 * and swap, is never read: swap is off for containers, so it is not reset either.) */
int cg_v1_reset_peak(struct cg_group *g)
{
    const char *mem = g->v1_dir[CG_V1_MEMORY];
    if (!mem || !g->m->features.memory_peak)
        return -EOPNOTSUPP;
    return cg_stat_write(g, CG_F_V1_MAX_USAGE_RESET, mem, "memory.max_usage_in_bytes", "0");
}

static bool v1_all_empty(struct cg_group *g)
{
    for (const char *const *p = g->paths; *p; p++)
        if (*p != g->v2_dir && !cg_procs_empty(*p))
            return false;
    return true;
}

static void v1_kill_all(struct cg_group *g)
{
    for (const char *const *p = g->paths; *p; p++)
        if (*p != g->v2_dir)
            (void)cg_kill_procs(*p);
}

/* Freeze, kill, thaw (crun cgroup-utils.c): a frozen group cannot fork, so one pass over
 * cgroup.procs reaches every process; SIGKILL takes effect once thawed. Without the freezer,
 * kill repeatedly until the lists are empty or nothing new shows up, bounded, since a fork
 * racing the read could otherwise escape. */
int cg_v1_kill(struct cg_group *g, struct ig_error *err)
{
    const char *fz = g->v1_dir[CG_V1_FREEZER];
    int r;

    if (v1_all_empty(g))
        return 0;
    /* The group's own freezer.state, not just the feature: a group left half-made by a crash
     * may lack its freezer directory and still hold processes elsewhere. */
    if (fz && cg_file_exists(fz, "freezer.state")) {
        if ((r = cg_write(fz, "freezer.state", "FROZEN")) < 0)
            return ig_error_set(err, -r, "freezing %s: %s", fz, strerror(-r));
        for (int i = 0; i < CG_FREEZE_TRIES; i++) {
            _cleanup_free_ char *p = cg_path(fz, "freezer.state"), *state = NULL;
            if (p && read_file(p, 64, &state, NULL) == 0 && startswith(state, "FROZEN"))
                break;
            usleep(10000);
        }
        v1_kill_all(g);
        if ((r = cg_write(fz, "freezer.state", "THAWED")) < 0)
            return ig_error_set(err, -r, "thawing %s: %s", fz, strerror(-r));
        return 0;
    }
    for (int pass = 0; pass < 10 && !v1_all_empty(g); pass++) {
        v1_kill_all(g);
        usleep(1000);
    }
    return 0;
}

const struct cg_ops cg_v1_ops = {
    .create = cg_v1_create,
    .attach = cg_v1_attach,
    .read_stats = v1_read_stats,
    .reset_peak = cg_v1_reset_peak,
    .kill = cg_v1_kill,
};
