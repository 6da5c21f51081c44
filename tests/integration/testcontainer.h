/* Containers for tests, without ignisd: a test image (busybox-static and the static `hostile`
 * fixture), a bundle, a cgroup manager of the test's own, and a one-call run that collects the
 * container's output and exit and destroys it. Used by the isolation tests and the shim bench. */
#pragma once

#include <stdbool.h>

#include "container/cgroup.h"
#include "container/container.h"

struct tc_env {
    char dir[64];    /* /tmp/ignis-ctest.XXXXXX, holding image/ and bundle/ */
    char image[96];  /* bin/busybox, bin/sh, bin/hostile */
    char bundle[96]; /* handler.txt */
    char id[17];     /* the cgroup subtree's id (from dir) */
    struct cg_manager *m;
};

/* Makes the image, the bundle and the cgroup manager (the calling process enters its leaf, as
 * ignisd does). Returns 0, or -1 after printing why. */
int tc_env_setup(struct tc_env *e);
/* Frees the manager (its subtree goes) and removes the files. Returns -1 if a cgroup of the
 * subtree, a mount or a process of the test's containers was left. */
int tc_env_teardown(struct tc_env *e);

/* A spec running args in the test image, defaults otherwise (static storage for args). */
void tc_spec(const struct tc_env *e, char **args, struct container_spec *ret);

struct tc_result {
    int exit_code, signal;
    bool oom_killed;
    struct cg_stats stats;
    uint64_t wall_usec; /* from the end of setup to the exit */
    char *out, *err;    /* what the runtime wrote (up to 1 MiB each), NUL-terminated */
};

/* Creates a container from spec with limits, collects stdout and stderr until it exits, then
 * destroys it. Returns 0, or -errno with err set when the container could not be created. */
int tc_run(struct tc_env *e, const struct container_spec *spec, const struct cg_limits *limits,
           struct tc_result *ret, struct ig_error *err);
void tc_result_clear(struct tc_result *r);
/* Reads both pipes of c until EOF. */
int tc_collect(struct container *c, char **ret_out, char **ret_err);
