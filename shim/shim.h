/* ignis-shim's internals: the outer process (spec, cgroups, clone), the container's pid 1 (root
 * filesystem, network, reaper) and the privilege drop. The shim is short-lived and single
 * threaded, so a failed step reports {errno, message} on the sync pipe and exits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/container_spec.h"

/* The fds of one container, in the order a server request carries them (container_spec.h). */
struct shim_request {
    int spec_fd, sync_fd, stdout_fd, stderr_fd;
    int runtime_fd;    /* -1: none (debug mode) */
    int netns_fd;      /* -1: a new network namespace (or the spec's "netns") */
    int cgroup_fd;     /* -1: no cgroup2 directory to clone into */
    int reply_fd;      /* the server's answer socket for this request, or -1 */
    int32_t *pid_slot; /* NULL, or where the kernel stores pid 1's pid as it clones it */
};

/* What pid 1 gets from the process that cloned it. */
struct shim_ctx {
    const struct container_spec *spec;
    int runtime_fd;           /* -1: none (debug mode) */
    int stdout_fd, stderr_fd; /* moved to 1 and 2 */
    int go_fd; /* one byte 'g' once the cgroups and id maps are in place (a pipe's read end) */
    int extra_fds[4]; /* the request's spec, network namespace, cgroup and answer fds, or -1 */
};

/* The sync fd failures are reported on (pid 1's own once cloned). Always above 3. */
extern int shim_sync_fd;
/* The server's socket (closed first thing in pid 1), or -1. */
extern int shim_server_fd;
/* The server's pid slots (SHIM_FD_SERVER_PIDS) mapped, or NULL: pid 1 unmaps them. */
extern int32_t *shim_pid_slots;

/* Reports the failure of a setup step on the sync pipe (errno-style code, message naming the
 * step) and exits with SHIM_EXIT_SETUP. Async-signal-safe enough for a forked child: it formats
 * into a stack buffer and writes once. */
_Noreturn void shim_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The container's pid 1: builds the root, drops privileges, starts the runtime and reaps until it
 * exits, then exits with its status. */
_Noreturn void shim_init(const struct shim_ctx *ctx);

/* Setup steps shared with the containers forked from a template (setup.c): on failure each
 * reports through shim_fail. */
void shim_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                const char *data);
/* Adds read-only, nosuid (and `more`) to a mount and, with AT_RECURSIVE, every mount below. */
void shim_make_readonly(const char *path, unsigned int flags, uint64_t more);
/* A tmpfs of `size` bytes, mode 1777, nosuid, nodev. */
void shim_mount_tmp(const char *dir, uint64_t size);
/* A new proc of the caller's pid namespace at dir, its sys read-only. */
void shim_mount_proc(const char *dir);
void shim_loopback_up(void);
/* /run/secrets at dir (an existing directory): a tmpfs, mode 0500, holding a copy of each secret
 * read from fds[i] (at most CONTAINER_SECRET_MAX bytes; -1: not set, absent) as names[i], 0400
 * and owned by uid/gid, then made read-only. Copies, not binds: the host's files stay root's
 * 0600, and the container sees exactly the names it lists (docs/security.md). Closes the fds. */
void shim_make_secrets(const char *dir, uint32_t uid, uint32_t gid, char *const names[],
                       const int fds[], size_t n);

/* Privileges (security.c). */
void shim_set_rlimits(const struct container_spec *spec);
/* setgroups/setgid/setuid, then every capability set, the bounding set and ambient cleared, the
 * securebits locked and no_new_privs set. */
void shim_drop_privileges(const struct container_spec *spec);
/* Loads the seccomp filter; call last, right before exec. Returns 0 or -errno. */
int shim_load_seccomp(void);
