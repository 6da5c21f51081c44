/* Containers, seen from the controller: create one from a spec (its cgroup with limits, then
 * ignis-shim, which builds the namespaces and root and execs the runtime), hand it work over the
 * runtime-protocol socket, collect its exit, destroy it.
 *
 * Every step that waits has an fd the event loop can watch instead: the sync pipe becomes
 * readable when setup finished (EOF: the runtime was exec'd; a message: it failed), the pidfd
 * when the container exited. A pool can spawn containers ahead of work: a runtime blocks reading
 * fd 3 until the controller writes an invocation to container_runtime_fd. The blocking calls
 * (container_create, container_wait) are conveniences for tests and tools. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "container/cgroup.h"
#include "base/container_spec.h"
#include "base/util.h"

struct container;
struct container_stock;

struct container_options {
    /* Unique among the daemon's live containers; names the cgroup `c-<name>`. NULL: generated
     * from the pid and a counter. At most 95 characters of [A-Za-z0-9_.-]. */
    const char *name;
    /* What to run; its `cgroups` are filled in from the cgroup the container gets. */
    const struct container_spec *spec;
    struct cg_limits limits;
    /* An existing, empty cgroup (cg_create) to run in instead of a new one with `limits`: the
     * caller keeps it, and destroy leaves it empty, not removed, so a pool can reuse cgroups
     * (docs/performance.md). The exit's CPU and OOM figures are then this container's share. */
    struct cg_group *group;
    /* Where the runtime's stdout and stderr go (dup'd; the caller keeps its fds). -1: a pipe,
     * whose read end container_stdout_fd/container_stderr_fd return. */
    int stdout_fd, stderr_fd;
    /* > 0: a network namespace (from container_netns_new) to join instead of creating one, so a
     * pool can create them off the invocation path or reuse one between containers of the same
     * function (docs/performance.md). <= 0: a new one. The caller keeps its fd. */
    int netns_fd;
    /* Where the network namespace (unless netns_fd) and the cgroup (unless group) come from
     * when one is ready, instead of being made here; the cgroup goes back to the stock's thread
     * after destroy. NULL, or nothing ready: made here, as without. */
    struct container_stock *stock;
    /* Whose container this is (ignisd: the function's name): what it hands back is reused only
     * for the same owner's containers with the same limits. NULL, or longer than 71
     * characters: never reused. */
    const char *stock_owner;
    /* Through the container server (container_use_server), return once the request is sent:
     * the container is then pending, as a fork from a template is (container_fork_fd,
     * container_fork_finish), while the server makes its pid 1, so an event loop does not wait
     * for that (clone, cgroup moves that may wait for an RCU grace period). */
    bool no_wait;
};

/* How a container ended. */
struct container_exit {
    int exit_code;         /* the runtime's exit status; 128+N when signal N killed it */
    int signal;            /* N when a signal killed the runtime (or the shim itself), else 0 */
    bool oom_killed;       /* the kernel's OOM killer acted in the container's cgroup */
    struct cg_stats stats; /* CPU and memory measured at exit */
};

/* The ignis-shim binary: $IGNIS_SHIM when set, else next to the running program's build tree
 * (the build root's shim/ignis-shim, found from /proc/self/exe), else IGNIS_LIBEXECDIR. The
 * result is cached. Returns NULL when none is executable. */
const char *container_shim_path(void);

/* Containers are made by one `ignis-shim --server` per process, started on first use, which
 * clones each container's pid 1 as the caller's child (no exec per container). Call the
 * container functions from one long-lived thread (the event loop's): each container's pid 1
 * has a parent-death signal, and with CLONE_PARENT its parent is the thread that started the
 * server (Linux ties the signal to a thread, not the process). false: exec a
 * one-container ignis-shim each time instead (slower; for comparison and as a fallback). */
void container_use_server(bool use);
/* Stops the server (it is a process in the caller's cgroups: stop it before cg_manager_free
 * removes the daemon's leaf). Containers already made are unaffected. */
void container_shutdown(void);

/* Creates a network namespace with loopback up, without a process in it: an nsfs fd for
 * container_options.netns_fd. Returns the fd (close-on-exec) or -errno. */
int container_netns_new(struct ig_error *err);

/* A stock of prepared resources: a thread that keeps `target` fresh network namespaces (loopback
 * up) ready, and for each of the last few (owner, limits) pairs containers asked for, cgroups
 * (made fresh, or handed back by an ended container of the same owner and checked empty) and
 * namespaces handed back by the owner's ended containers whose state is still that of a fresh
 * namespace; it closes or removes what nobody wants back. All of it off the path of container
 * creation. Nothing goes from one owner to another. Create and free it on the thread that creates
 * containers; target is 1 to 64. */
/* What ignisd keeps ready: half of a burst of spawns at the scaler's default max_spawning (32)
 * at once, the other half made while the first half starts. */
#define CONTAINER_STOCK_TARGET 16
int container_stock_new(struct cg_manager *m, unsigned target, struct container_stock **ret,
                        struct ig_error *err);
/* Stops the thread, then removes what is ready or handed back. Accepts NULL. Free it after the
 * last container that used it was destroyed, before the cgroup manager. */
void container_stock_free(struct container_stock *s);

struct container_stock_stats {
    uint64_t netns_taken, netns_missed;       /* containers that found one ready, or not */
    uint64_t cgroups_taken, cgroups_missed;   /* the same for cgroups */
    uint64_t busy;                            /* found the stock's lock held: made their own */
    uint64_t cgroups_reused, cgroups_removed; /* handed back: kept for the owner, or removed */
    uint64_t netns_reused, netns_closed;      /* the same for namespaces (closed: not pristine,
                                               * no owner, or no room) */
    size_t netns_ready, cgroups_ready;        /* now */
    size_t cgroups_returned; /* now: handed back (with killed containers) and not yet done */
};
void container_stock_stats(struct container_stock *s, struct container_stock_stats *ret);
/* The host is short of fds (a spawn was refused): what the stock holds ready goes (namespaces
 * closed, cgroups removed by its thread), and while fewer than CONTAINER_STOCK_FD_HEADROOM fds
 * are free beyond the reserve it prepares nothing and keeps nothing handed back. Accepts NULL. */
void container_stock_release(struct container_stock *s);
/* Free fds (beyond the daemon's reserve, base/fdlimit.h) below which the stock stops preparing:
 * room for a few containers first. */
#define CONTAINER_STOCK_FD_HEADROOM 64

/* Creates the cgroup and starts the shim; returns at once. Setup goes on in the shim: watch
 * container_sync_fd, then call container_finish_spawn. On failure nothing is left. */
int container_spawn(struct cg_manager *m, const struct container_options *o, struct container **ret,
                    struct ig_error *err);
/* Reads the sync pipe (blocking until setup finished if it is not readable yet). 0: the runtime
 * runs. Otherwise the shim's {errno, message} (the container has exited or is exiting: destroy
 * it). Idempotent after the first answer. */
int container_finish_spawn(struct container *c, struct ig_error *err);
/* The runtime spoke (its READY): its setup succeeded, since a failure is reported before the
 * runtime runs. Ends the spawn as container_finish_spawn would, without waiting for the sync
 * pipe's EOF, which may lag (a forked container's template closes its copy of the pipe after
 * the fork, and may be descheduled, or stopped, before it does). */
void container_spawn_spoke(struct container *c);
/* container_spawn + container_finish_spawn; on failure destroys and returns the shim's error. */
int container_create(struct cg_manager *m, const struct container_options *o,
                     struct container **ret, struct ig_error *err);

/* The shim's pid in the host's pid namespace. */
pid_t container_pid(const struct container *c);
/* Readable when setup finished; -1 after container_finish_spawn. */
int container_sync_fd(const struct container *c);
/* Readable (POLLIN) when the container exited. */
int container_pidfd(const struct container *c);
/* The controller's end of the runtime-protocol socket (a SOCK_STREAM socketpair; the runtime
 * has the other end as fd 3). Owned by the container unless taken. */
int container_runtime_fd(const struct container *c);
int container_take_runtime_fd(struct container *c);
/* Read ends of the output pipes, or -1 when the caller gave fds. Owned by the container. */
int container_stdout_fd(const struct container *c);
int container_stderr_fd(const struct container *c);
struct cg_group *container_cgroup(const struct container *c);
/* The group's OOM-kill count when the container was spawned (0 for a group made for it). */
uint64_t container_oom_kills_at_spawn(const struct container *c);

/* Collects the exit without blocking: 0 and *ret when the container exited (the first call
 * reaps it; later calls return the same), -EAGAIN while it runs. */
int container_poll_exit(struct container *c, struct container_exit *ret);
/* Blocks until the container exited. */
int container_wait(struct container *c, struct container_exit *ret);
/* Ends the container: the shim SIGKILLs its pid 1, which takes every process of the pid
 * namespace with it (it then exits; collect with poll_exit/wait). */
int container_kill(struct container *c, struct ig_error *err);
/* Kills whatever still runs, reaps the shim, removes the cgroups, closes every fd and frees c:
 * nothing of the container is left. The first failure is returned; c is freed regardless.
 * Accepts NULL. */
int container_destroy(struct container *c, struct ig_error *err);

/* ---- Templates (template.c; docs/architecture.md, "Templates") ----
 * A template is a container in template mode (container_spec.template_mode, in a user namespace
 * whose host ids start at CONTAINER_TEMPLATE_ID_BASE) whose runtime has started and forks
 * containers on request; each is a struct container like any other (its own namespaces and
 * cgroup, exit collection, kill through its pidfd, destroy). Call these on the thread that makes
 * containers. */
struct container_template;
/* Host uid/gid of root in a template's user namespace; 65536 ids from there. */
#define CONTAINER_TEMPLATE_ID_BASE 0x50000000u
/* Starts one from o (as container_spawn; the spec must be in template mode) and returns at once.
 * key: what the caller made it for, kept for container_template_key. */
int container_template_new(struct cg_manager *m, const struct container_options *o, const char *key,
                           struct container_template **ret, struct ig_error *err);
const char *container_template_key(const struct container_template *t);
/* The template's own container (tests: its pid). */
struct container *container_template_container(const struct container_template *t);
/* 1: ready to fork; 0: still starting; -errno: its runtime died or failed (retire it). */
int container_template_ready(struct container_template *t);
/* Forks a container from a ready template, in a cgroup of its own made from o (name, limits,
 * group or stock, stdout/stderr) with the spec's tmp_size, rlimits, uid/gid and hostname; the
 * image, bundle and environment are the template's. Sends the request and returns at once: the
 * container is forking (the template forks while the caller goes on; several forks may be under
 * way) until container_fork_finish says 0, then its setup goes on as a spawn's does
 * (container_sync_fd, then container_finish_spawn). The container owns its pending fork:
 * container_destroy of a forking container cancels it (its pid 1 killed, or left to exit on the
 * control socket's EOF), so nothing of it outlives the container. -ECHILD (or another -errno)
 * with nothing left when the template is gone: retire it and spawn the usual way. */
int container_template_spawn(struct container_template *t, struct cg_manager *m,
                             const struct container_options *o, struct container **ret,
                             struct ig_error *err);
/* While c is forking (or its spawn is pending: container_options.no_wait): an fd readable once
 * its pid 1 reported (its pidfd, or EOF: the template or the fork died), or the container server
 * answered; -1 once it is not forking. Owned by c: unwatch it before destroying c. */
int container_fork_fd(const struct container *c);
/* Finishes a fork once container_fork_fd is readable: moves the forked pid 1 into the
 * container's cgroups and tells it to go on. 0: done (also for a container not forking);
 * -EAGAIN: its pidfd has not come yet; another -errno with err (ECHILD: the template or the fork
 * died; ESRCH, a cgroup's error: it was killed): the fork failed; destroy the container (and
 * retire the template) and spawn the usual way. For a pending spawn, the same with the server's
 * answer: 0, its pid 1 known (or refused: the reason on the sync pipe, as for any spawn);
 * another -errno when the server went away: destroy it, the spawn failed. */
int container_fork_finish(struct container *c, struct ig_error *err);
/* Whether c was forked from a template (a failed fork retires it), not spawned. */
bool container_forked(const struct container *c);
/* Stops it forking (its interpreter exits); the containers forked from it go on, and it is
 * destroyed once the last of them exited (container_templates_reap). Accepts NULL. */
void container_template_retire(struct container_template *t);
/* Destroys the retired templates that have nothing left running. */
void container_templates_reap(void);
/* Kills and destroys every retired template, with what still runs from it (at shutdown, before
 * the stock and the cgroup manager go). */
void container_templates_shutdown(void);
