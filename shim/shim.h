/* ignis-shim's internals: the outer process (spec, cgroups, clone), the container's pid 1 (root
 * filesystem, network, reaper) and the privilege drop. The shim is short-lived and single
 * threaded, so a failed step reports {errno, message} on the sync pipe and exits. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "container_spec.h"

/* What the outer shim hands the container's pid 1. */
struct shim_ctx {
    const struct container_spec *spec;
    int runtime_fd; /* -1: none (debug mode) */
    int userns_fd;  /* read end: the outer wrote the id maps (-1 without a user namespace) */
};

/* The sync fd failures are reported on (set once by main). */
extern int shim_sync_fd;

/* Reports the failure of a setup step on the sync pipe (errno-style code, message naming the
 * step) and exits with SHIM_EXIT_SETUP. Async-signal-safe enough for a forked child: it formats
 * into a stack buffer and writes once. */
_Noreturn void shim_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The container's pid 1: builds the root, drops privileges, starts the runtime and reaps until it
 * exits, then exits with its status. */
_Noreturn void shim_init(const struct shim_ctx *ctx);

/* Privileges (security.c). */
void shim_set_rlimits(const struct container_spec *spec);
/* setgroups/setgid/setuid, then every capability set, the bounding set and ambient cleared, the
 * securebits locked and no_new_privs set. */
void shim_drop_privileges(const struct container_spec *spec);
/* Loads the seccomp filter; call last, right before exec. Returns 0 or -errno. */
int shim_load_seccomp(void);
