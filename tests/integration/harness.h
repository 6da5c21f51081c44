/* The integration-test harness: a real ignisd on a free loopback port with a temporary state
 * dir, driven over HTTP with the same client the CLI uses, and a check that it left nothing
 * behind (processes, mounts, cgroups, files). */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <sys/types.h>

#include "client.h"

struct ignisd_proc {
    pid_t pid;
    uint16_t port;
    char url[64];
    char state_dir[256];
    char log_path[300];
    struct client *client;
};

/* Exits 77 (skip) with the reason, or 1 when IGNIS_MUST_WORK=1 makes every skip a failure. */
_Noreturn void harness_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Skips unless running as root (containers, cgroups). */
void harness_require_root(void);

/* Path of a built binary or a source file, from the environment meson sets. */
const char *harness_ignisd(void);
const char *harness_cli(void);

/* A free TCP port on 127.0.0.1 (bound, then released). */
uint16_t harness_free_port(void);

/* Starts ignisd with a fresh state dir (extra_args NULL-terminated, may be NULL) and waits until
 * /healthz answers. Returns 0, or -1 after printing the daemon's log. */
int harness_start(struct ignisd_proc *p, const char *const *extra_args);
/* Starts ignisd again on p's state dir and log (after harness_stop, or after the test killed it
 * and reaped it, setting p->pid to 0), on a fresh port. */
int harness_restart(struct ignisd_proc *p, const char *const *extra_args);
/* SIGTERM, then waits up to 15 s. Returns the exit status (or -1 on a signal or timeout, after
 * killing it and printing its log). The state dir is kept. */
int harness_stop(struct ignisd_proc *p);
/* Removes the state dir and frees the client; returns -1 (and says what) if the daemon left a
 * process, mount or cgroup behind. */
int harness_cleanup(struct ignisd_proc *p);
void harness_print_log(const struct ignisd_proc *p);

/* One request to the daemon; the response must be cleared by the caller. */
int harness_request(struct ignisd_proc *p, const char *method, const char *path,
                    const char *const *headers, const void *body, size_t len,
                    struct client_response *ret);

/* Runs a command (argv NULL-terminated), capturing stdout and stderr (each up to 64 KiB).
 * Returns the exit status, or -1. */
int harness_run(char *const argv[], char **ret_out, char **ret_err);
