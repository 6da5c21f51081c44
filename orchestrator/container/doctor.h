/* ignis doctor: checks what this host offers Ignis, each line ok, degraded (and what that costs)
 * or failing (and how to fix it). Run by `ignisd --doctor` before a daemon exists, and by the
 * daemon for `GET /v1/doctor` (then with its own cgroup manager, so the cgroup line says what the
 * running daemon really has). */
#pragma once

#include <cjson/cJSON.h>

#include "base/util.h"
#include "container/cgroup.h"

enum doctor_status { DOCTOR_OK, DOCTOR_DEGRADED, DOCTOR_FAILING };

const char *doctor_status_name(enum doctor_status s);

struct doctor_env {
    const char *state_dir;
    const char *images_dir;
    /* The running daemon's manager, or NULL: a short-lived probe subtree is made and removed. */
    struct cg_manager *cg;
};

/* Appends one check to arr ({"check", "status", "detail", "fix" unless ok}) and raises *worst to
 * s: for checks the callers add of what this layer cannot see (the daemon's store). */
void doctor_add(cJSON *arr, enum doctor_status *worst, const char *check, enum doctor_status s,
                const char *fix, const char *fmt, ...) _printf_(6, 7);

/* Runs every check: an array of {"check", "status", "detail", "fix"?}. *ret_worst is the worst
 * status seen. Returns 0 or -ENOMEM. */
int doctor_run(const struct doctor_env *env, cJSON **ret, enum doctor_status *ret_worst);
