/* The cgroup layer: one interface over cgroup v2, v1 and hybrid hosts (crun's
 * libcrun_cgroup_manager split), plus a null backend for tests.
 *
 * Layout. The daemon manages only the subtree it was delegated: in every hierarchy it creates
 * `<its own cgroup>/ignis-<id>/` (id derived from the state dir, so a restart finds what an earlier
 * run left), moves itself into the leaf `ignis-<id>/daemon` (so container cgroups never meet the
 * no-internal-process rule), and makes one cgroup per container, `ignis-<id>/c-<name>`. On
 * shutdown it moves back to where it started and removes the subtree. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/util.h"

enum cg_mode {
    CG_MODE_NONE,   /* null backend: creates nothing (tests, hosts without cgroups) */
    CG_MODE_V1,     /* legacy: only v1 hierarchies */
    CG_MODE_V2,     /* unified: cgroup2 at the fs root */
    CG_MODE_HYBRID, /* v1 controllers, plus a controller-less cgroup2 mount (…/unified) */
};

const char *cg_mode_name(enum cg_mode mode);

/* The mode from what statfs(2) says about the cgroup fs root and about `<root>/unified`
 * (f_type, or 0 where statfs failed) and whether /proc/self/cgroup lists a v1 hierarchy.
 * libcgroup 2.0.x has no cgroup_setup_mode() (it came in 3.0), hence this. Pure. */
enum cg_mode cg_mode_detect(long root_fs_type, long unified_fs_type, bool v1_listed);

struct cg_limits {
    uint64_t memory_bytes; /* 0: no limit. Swap is always off for containers. */
    uint32_t cpu_millis;   /* 1000 = one CPU's worth per period; 0: no quota */
    uint32_t pids_max;     /* 0: no limit */
};

/* What the kernel has measured for one container's cgroup. */
struct cg_stats {
    uint64_t cpu_usec;          /* user + system, scheduler-precise */
    uint64_t memory_peak_bytes; /* since the last cg_reset_peak (or creation) */
    uint64_t memory_current_bytes;
    uint64_t oom_kills; /* cumulative for the cgroup */
};

/* Which of cg_stats a reading fills (each is a file read, a few µs; the others read as 0). */
enum {
    CG_STAT_CPU = 1 << 0,
    CG_STAT_MEMORY_PEAK = 1 << 1,
    CG_STAT_MEMORY_CURRENT = 1 << 2,
    CG_STAT_OOM = 1 << 3,
    CG_STAT_ALL = (1 << 4) - 1,
};

/* What this host lets us do beneath the daemon's cgroup; anything false is reported as
 * degraded by `ignis doctor` and at start-up, never a reason to fail. */
struct cg_features {
    bool memory_limit, cpu_quota, pids_limit;
    bool kill;              /* cgroup.kill (v2, 5.14+) or freezer on v1 */
    bool memory_peak;       /* memory.peak / memory.max_usage_in_bytes */
    bool peak_reset;        /* the peak can be reset per invocation */
    bool clone_into_cgroup; /* clone3(CLONE_INTO_CGROUP) into the v2 cgroup works */
};

struct cg_manager;
struct cg_group;

/* Detects the mode under fs_root ("/sys/fs/cgroup" on a real host, a fake tree in tests),
 * finds the daemon's own cgroup in each hierarchy from proc_self_cgroup (the text of
 * /proc/self/cgroup; NULL reads the real file), and prepares the `ignis-<id>` subtree. */
int cg_manager_new(const char *fs_root, const char *proc_self_cgroup, const char *id,
                   struct cg_manager **ret, struct ig_error *err);
int cg_manager_new_null(struct cg_manager **ret);
/* As cg_manager_new, with the mode given instead of detected. fake_fs says fs_root is a plain
 * directory tree standing in for cgroupfs (unit tests): a new cgroup directory gets empty files
 * named as its parent's, and removing one unlinks its files first (cgroup-internal.h). */
int cg_manager_new_mode(enum cg_mode mode, bool fake_fs, const char *fs_root,
                        const char *proc_self_cgroup, const char *id, struct cg_manager **ret,
                        struct ig_error *err);
/* Moves the daemon back out of its leaf and removes the subtree (after destroying groups). */
void cg_manager_free(struct cg_manager *m);
enum cg_mode cg_manager_mode(const struct cg_manager *m);
const struct cg_features *cg_manager_features(const struct cg_manager *m);
/* Writes the names of the features that are false ("memory_limit,kill"), or "none", into buf.
 * For the start-up log line and `ignis doctor`. */
void cg_features_degraded(const struct cg_features *f, char *buf, size_t len);
/* Moves the calling process into the subtree's `daemon` leaf. On v2 it then enables the
 * delegated controllers for the subtree (which needs the daemon out of its starting cgroup),
 * so call it before cg_create there; the features are final afterwards. */
int cg_manager_enter_leaf(struct cg_manager *m, struct ig_error *err);
/* Kills and removes every container cgroup an earlier run left in the subtree. Returns the
 * number removed, or -errno. */
int cg_manager_cleanup_stale(struct cg_manager *m, struct ig_error *err);

/* Creates the container cgroup `c-<name>` in every hierarchy with its limits. */
int cg_create(struct cg_manager *m, const char *name, const struct cg_limits *limits,
              struct cg_group **ret, struct ig_error *err);
/* An O_PATH|O_DIRECTORY fd of the group's cgroup2 directory for clone3(CLONE_INTO_CGROUP), or -1
 * when there is none (v1 hosts). Owned by the group. */
int cg_group_v2_fd(const struct cg_group *g);
/* Puts pid into the group in every hierarchy (one it is already in, e.g. the cgroup2 directory
 * after clone3(CLONE_INTO_CGROUP), is a no-op for the kernel). It writes cgroup.procs, which
 * moves the whole process on v1 too; still, attach before the process starts threads, so no
 * thread is ever outside the group. */
int cg_attach(struct cg_group *g, pid_t pid, struct ig_error *err);
/* Reads the fields (CG_STAT_*) of the group's stats. */
int cg_read_stats(struct cg_group *g, unsigned fields, struct cg_stats *ret);
/* Resets the memory peak where the kernel allows it; -EOPNOTSUPP otherwise. */
int cg_reset_peak(struct cg_group *g);
/* Kills every process in the group (cgroup.kill, or freeze-kill-thaw on v1). Returns once the
 * signals are sent; the processes may still be exiting (cg_destroy waits for them). */
int cg_kill(struct cg_group *g, struct ig_error *err);
/* Kills, then removes the group's cgroups with a bounded retry on EBUSY, and frees g (also on
 * failure, after logging what was left). Accepts NULL. */
int cg_destroy(struct cg_group *g, struct ig_error *err);
/* The cgroup paths of the group, for the shim's spec: v1 hierarchy directories and the v2
 * directory (NULL-terminated, owned by the group). */
const char *const *cg_group_paths(const struct cg_group *g);
/* Whether no process is left in the group, in any of its hierarchies (one whose process list
 * cannot be read is not known to be empty: false). */
bool cg_group_empty(const struct cg_group *g);
