/* What cgroup.c (mode detection, manager, dispatch, null backend) shares with the v1 and v2
 * backends (cgroup-v1.c, cgroup-v2.c). Not for other modules: they use cgroup.h. */
#pragma once

#include "container/cgroup.h"

/* The v1 controllers the layer uses. cpuset, blkio, devices and named hierarchies are left
 * alone: a cpuset child needs its masks copied before it can hold a task, and device isolation
 * is the shim's minimal /dev, so nothing is gained by making cgroups there. */
enum cg_v1_controller {
    CG_V1_MEMORY,
    CG_V1_CPU,
    CG_V1_CPUACCT,
    CG_V1_PIDS,
    CG_V1_FREEZER,
    CG_V1_N,
};

struct cg_group;

/* The interface files cg_read_stats and cg_reset_peak use on every invocation, kept open per
 * group once first used: opening a cgroupfs file by path costs ~8 µs, a pread on an open one
 * ~1 µs (docs/performance.md "Accountant"). */
enum cg_stat_file {
    CG_F_V2_CPU_STAT,
    CG_F_V2_MEMORY_CURRENT,
    CG_F_V2_MEMORY_EVENTS,
    CG_F_V1_CPUACCT_USAGE,
    CG_F_V1_MAX_USAGE,
    CG_F_V1_USAGE,
    CG_F_V1_OOM_CONTROL,
    CG_F_V1_MAX_USAGE_RESET, /* the same file as CG_F_V1_MAX_USAGE, opened for writing */
    CG_F_N,
};

/* One backend: crun's libcrun_cgroup_manager, reduced to what a container needs. The manager
 * (layout, the daemon's leaf, stale cleanup) is shared code in cgroup.c. */
struct cg_ops {
    /* Makes the group's directories (already named in g) and writes its limits. */
    int (*create)(struct cg_group *g, const struct cg_limits *limits, struct ig_error *err);
    int (*attach)(struct cg_group *g, pid_t pid, struct ig_error *err);
    int (*read_stats)(struct cg_group *g, unsigned fields, struct cg_stats *ret);
    int (*reset_peak)(struct cg_group *g);
    int (*kill)(struct cg_group *g, struct ig_error *err);
};

struct cg_manager {
    enum cg_mode mode;
    const struct cg_ops *ops;
    bool fake_fs; /* fs_root is a plain directory tree standing in for cgroupfs (tests) */
    char *id;
    /* Per v1 controller: the daemon's own cgroup directory at start (mount + /proc/self/cgroup
     * path) and the subtree's base `<start>/ignis-<id>`; NULL when the controller is not
     * mounted or not used by this mode. Comounted controllers ("cpu,cpuacct") have equal
     * strings. */
    char *v1_start[CG_V1_N];
    char *v1_base[CG_V1_N];
    /* The cgroup2 directories, the same way (v2 and hybrid). */
    char *v2_start;
    char *v2_base;
    bool v2_start_is_root; /* the daemon started at the cgroup2 root ("0::/") */
    /* v2: the controllers this layer enabled in v2_start's and v2_base's subtree_control, to
     * undo them on free (the daemon cannot move back into a cgroup that has domain controllers
     * enabled for its children: the no-internal-process rule). */
    char v2_enabled_start[64];
    char v2_enabled_base[64];
    bool in_leaf;
    struct cg_features features;
};

struct cg_group {
    struct cg_manager *m;
    char *name;
    char *v1_dir[CG_V1_N]; /* NULL where the controller is unused */
    char *v2_dir;          /* NULL on v1 hosts */
    int v2_fd;             /* O_PATH of v2_dir, for clone3(CLONE_INTO_CGROUP) */
    /* v2 memory.peak, kept open: since 6.12 a write resets the peak only as seen through the
     * same open file (Documentation/admin-guide/cgroup-v2.rst, memory.peak). */
    int peak_fd;
    /* enum cg_stat_file's files: -1 not opened yet, -2 known to be absent (write files only). */
    int stat_fd[CG_F_N];
    const char *paths[CG_V1_N + 2];
};

extern const struct cg_ops cg_v1_ops;
extern const struct cg_ops cg_v2_ops;

/* Backend pieces the hybrid backend (cgroup.c) composes: v1 for limits, memory stats and the
 * freezer; the controller-less cgroup2 mount for cgroup.kill and cpu.stat. */
int cg_v1_create(struct cg_group *g, const struct cg_limits *limits, struct ig_error *err);
int cg_v1_attach(struct cg_group *g, pid_t pid, struct ig_error *err);
int cg_v1_read_memory(struct cg_group *g, unsigned fields, struct cg_stats *stats);
int cg_v1_reset_peak(struct cg_group *g);
int cg_v1_kill(struct cg_group *g, struct ig_error *err);
int cg_v2_create_dir(struct cg_group *g, struct ig_error *err);
int cg_v2_attach(struct cg_group *g, pid_t pid, struct ig_error *err);
int cg_v2_read_cpu(struct cg_group *g, struct cg_stats *stats);
int cg_v2_kill(struct cg_group *g, struct ig_error *err);

/* The directory operations, which differ between cgroupfs and a fake tree:
 * - cg_fs_mkdir: the kernel fills a new cgroup with its interface files; in a fake tree the new
 *   directory gets empty regular files named as its parent's (what v1 does, and what v2 does
 *   once the parent's subtree_control enables the same controllers). EEXIST is success.
 * - cg_fs_rmdir: cgroupfs removes a cgroup that has no children and no live process, interface
 *   files and all, and answers EBUSY otherwise; in a fake tree the regular files are unlinked
 *   first, and a child directory gives EBUSY, as in cgroupfs. ENOENT is success. */
int cg_fs_mkdir(const struct cg_manager *m, const char *dir);
int cg_fs_rmdir(const struct cg_manager *m, const char *dir);

/* "dir/file" into a malloc'ed string, or NULL. */
char *cg_path(const char *dir, const char *file);
int cg_write(const char *dir, const char *file, const char *value);
int cg_write_u64(const char *dir, const char *file, uint64_t value);
/* Finds `key value` in a flat-keyed file's text (cpu.stat, memory.events, memory.oom_control).
 * Returns 0, -ENOENT when the key is missing, -EINVAL when the value is not a number. */
int cg_parse_keyed(const char *text, const char *key, uint64_t *ret);
bool cg_file_exists(const char *dir, const char *file);
/* Reads a file holding one unsigned number ("max" reads as UINT64_MAX), or finds `key value`
 * in a flat-keyed one (cg_parse_keyed), through the group's kept-open fd for the file `which`
 * (dir/file, opened on first use). */
int cg_stat_read_u64(struct cg_group *g, enum cg_stat_file which, const char *dir, const char *file,
                     uint64_t *ret);
int cg_stat_read_keyed(struct cg_group *g, enum cg_stat_file which, const char *dir,
                       const char *file, const char *key, uint64_t *ret);
/* Writes value through the kept-open fd for `which`. -ENOENT when the file does not exist
 * (remembered, so an absent optional file costs nothing the next time). */
int cg_stat_write(struct cg_group *g, enum cg_stat_file which, const char *dir, const char *file,
                  const char *value);
/* Kills every pid listed in dir/cgroup.procs but the caller's with SIGKILL. Returns how many
 * it signalled, or -errno when the list cannot be read. */
int cg_kill_procs(const char *dir);
/* Whether dir/cgroup.procs lists no process (a missing file counts as empty). */
bool cg_procs_empty(const char *dir);
