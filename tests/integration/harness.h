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
#include <cjson/cJSON.h>
#include <pthread.h>
#include <sys/types.h>

#include "base/client.h"
#include "groups.h"

struct ignisd_proc {
    pid_t pid;
    uint16_t port;
    char url[64];
    char state_dir[256];
    char log_path[300];
    char fixtures[300]; /* functions the test pushes are copied here (harness_fixtures) */
    struct client *client;
    /* The daemon's first admin token (STATE_DIR/admin.token), which p->client and harness_push
     * use. The first daemon a test process meets also exports it as $IGNIS_TOKEN, for CLI
     * children and clients the test makes itself; later ones started by harness_start are given
     * the same token (a provisioned admin.token, auth.h), so one $IGNIS_TOKEN serves them all. */
    char token[128];
    /* IGNIS_TEST_STORE=postgresql: the libpq conninfo of this daemon's own database (made by
     * harness_start, kept by harness_restart), passed as --store; empty: SQLite's ignis.db. */
    char store[512];
};

/* Exits 77 (skip) with the reason, or 1 when IGNIS_MUST_WORK=1 makes every skip a failure. */
_Noreturn void harness_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Skips unless running as root (containers, cgroups). */
void harness_require_root(void);

/* Whether the daemons harness_start starts keep their store in PostgreSQL: IGNIS_TEST_STORE=
 * postgresql. The test process then runs one private server (pgserver.h), started with its first
 * daemon and stopped when the process exits, and each harness_start makes a fresh database on it.
 * Unset (or sqlite): SQLite's STATE_DIR/ignis.db, as always. A test that reads or writes
 * ignis.db itself skips that check on PostgreSQL, saying why. */
bool harness_on_postgresql(void);
/* What p's daemon opens as its store: p->store, or STATE_DIR/ignis.db (db.h's db_open reads
 * either). */
void harness_store_target(const struct ignisd_proc *p, char *buf, size_t size);

/* Path of a built binary or a source file, from the environment meson sets. */
const char *harness_ignisd(void);
const char *harness_cli(void);

/* A free TCP port on 127.0.0.1 (bound, then released). */
uint16_t harness_free_port(void);

/* Starts ignisd with a fresh state dir (extra_args NULL-terminated, may be NULL) and waits until
 * /healthz answers (over HTTPS when extra_args has --tls-cert: set $IGNIS_CACERT first). Returns 0,
 * or -1 after printing the daemon's log. */
int harness_start(struct ignisd_proc *p, const char *const *extra_args);
/* harness_start on a state dir the test made (a small tmpfs it mounted, say): the daemon's log
 * and the fixtures go to a temporary dir under /tmp instead, so that they do not share its
 * space. harness_cleanup removes state_dir, the log and the fixtures (the test unmounts). */
int harness_start_in(struct ignisd_proc *p, const char *state_dir, const char *const *extra_args);
/* The RLIMIT_NOFILE (soft, hard) that daemons started from now on run under (set in the child
 * before exec); 0, 0: the test's own, the default. */
void harness_set_nofile(unsigned long soft, unsigned long hard);
/* Starts ignisd again on p's state dir and log (after harness_stop, or after the test killed it
 * and reaped it, setting p->pid to 0), on a fresh port. */
int harness_restart(struct ignisd_proc *p, const char *const *extra_args);
/* Waits (10 s at most) until the daemon at p->url answers /healthz; creates p->client if
 * needed and gives it the daemon's admin token (p->token, from p->state_dir). Returns 0, or -1
 * if it never did or its process p->pid exited. */
int harness_wait_healthy(struct ignisd_proc *p);
/* SIGTERM, then waits up to 15 s. Returns the exit status (or -1 on a signal or timeout, after
 * killing it and printing its log). The state dir is kept. */
int harness_stop(struct ignisd_proc *p);
/* Removes the state dir and frees the client; returns -1 (and says what) if the daemon left a
 * process, mount or cgroup behind. */
int harness_cleanup(struct ignisd_proc *p);
void harness_print_log(const struct ignisd_proc *p);
/* Whether the file at path holds needle anywhere (bytes, grep-style; false when unreadable). */
bool harness_file_contains(const char *path, const char *needle);
/* Whether the daemon's log holds text; the first line that does (free it), or NULL. */
bool harness_log_has(const struct ignisd_proc *p, const char *text);
/* Waits up to seconds for the daemon to exit of itself (a drain, a stop it was asked for
 * through its API): its exit status (-1: a signal), or fails the test showing its log. */
int harness_wait_exit(struct ignisd_proc *p, unsigned seconds);
/* How many lines of the daemon's log hold text. */
int harness_log_count(const struct ignisd_proc *p, const char *text);
char *harness_log_line(const struct ignisd_proc *p, const char *text);
/* How many cgroup directories named PREFIX... the daemon's cgroup subtree holds, summed over
 * every hierarchy (a v1 host counts each controller's). */
int harness_count_cgroups(const struct ignisd_proc *p, const char *prefix);

/* One request to the daemon; the response must be cleared by the caller. */
int harness_request(struct ignisd_proc *p, const char *method, const char *path,
                    const char *const *headers, const void *body, size_t len,
                    struct client_response *ret);

/* POST /v1/functions/FN/invoke with body (NULL: none) and headers (NULL-terminated, may be
 * NULL). Returns the HTTP status; the response goes to *ret (clear it), or is cleared when ret is
 * NULL. Fails the test when the request cannot be made. */
long harness_invoke(struct ignisd_proc *p, const char *fn, const char *body,
                    const char *const *headers, struct client_response *ret);

/* Polls fn(arg) every 50 ms until it is true, for seconds at most; else prints the logs of the
 * n daemons in procs that run (pid set) and fails the test saying what never came. */
void harness_wait_until(bool (*fn)(void *arg), void *arg, unsigned seconds, const char *what,
                        struct ignisd_proc *procs, size_t n);

/* An async invocation of fn on p (with an Idempotency-Key unless key is NULL), which must be
 * accepted (202, else the test fails with the reply): its id into ret_id, and whether the key
 * answered an earlier acceptance (*ret_duplicate, unless NULL). */
void harness_invoke_async(struct ignisd_proc *p, const char *fn, const char *body, const char *key,
                          char ret_id[64], bool *ret_duplicate);

/* A request made on a thread of its own (a client of its own), while the test goes on:
 * harness_call_start, then harness_call_join, which waits for it and sets status (-1: no answer,
 * the client's timeout or a refused connection), reply (the body, or NULL without one) and
 * response (with the headers); harness_call_clear frees them. */
struct harness_call {
    long status;
    char *reply; /* response.body */
    struct client_response response;
    /* The request, kept while it runs. */
    struct ignisd_proc *p;
    const char *method, *body;
    const char *const *headers; /* NULL-terminated, may be NULL; the caller's while it runs */
    char path[256];
    long timeout_ms; /* 0: the client's default */
    pthread_t thread;
};
void harness_call_start(struct harness_call *c, struct ignisd_proc *p, const char *method,
                        const char *path, const char *body, long timeout_ms);
/* harness_call_start with these request headers. */
void harness_call_start_with(struct harness_call *c, struct ignisd_proc *p, const char *method,
                             const char *path, const char *const *headers, const char *body,
                             long timeout_ms);
/* harness_call_start of POST /v1/functions/FN/invoke. */
void harness_invoke_start(struct harness_call *c, struct ignisd_proc *p, const char *fn,
                          const char *body, long timeout_ms);
void harness_call_join(struct harness_call *c);
void harness_call_clear(struct harness_call *c);

/* A TCP socket listening on the test's own 127.0.0.1 (a free port, its number in port): what a
 * container must not reach. */
int harness_listen_loopback(char port[16]);

/* The dir beside the state dir where this daemon's test functions are prepared; made on first
 * use, removed by harness_cleanup. */
const char *harness_fixtures(struct ignisd_proc *p);
/* Stops the daemon (SIGTERM, expecting exit 0) and cleans up; 0, or -1 after saying what went
 * wrong. What a group teardown returns. */
int harness_finish(struct ignisd_proc *p);

/* Copies runtime-images/examples/EXAMPLE (or the directory EXAMPLE, when it is an absolute
 * path) into harness_fixtures(p)/NAME with function.json's name set to
 * NAME and its fields overridden by OVERRIDES (a JSON object, may be NULL), and pushes it with
 * the CLI, as a developer would. Fails the test if the push fails. */
void harness_push(struct ignisd_proc *p, const char *example, const char *name,
                  const char *overrides);
/* harness_push of tests/fixtures/functions/FIXTURE (the tests' own functions). */
void harness_push_fixture(struct ignisd_proc *p, const char *fixture, const char *name,
                          const char *overrides);
/* GET /v1/functions/NAME, which must answer 200 with JSON (free it with cJSON_Delete). */
cJSON *harness_function(struct ignisd_proc *p, const char *name);
/* A number from the function's live state ("ready", "queue_depth", ...); fails if absent. */
double harness_live_number(struct ignisd_proc *p, const char *name, const char *key);

/* The value of one series (name and labels as written, e.g. `x_total{status="401"}`) in a
 * GET /metrics scrape; 0 when the scrape has no such series (a counter that counted nothing).
 * Fails the test if the scrape fails. */
double harness_metric(struct ignisd_proc *p, const char *series);

/* promtool's check of a GET /metrics scrape of p's (its text): fails the test when promtool
 * finds fault with it (or, with IGNIS_MUST_WORK=1, when promtool is missing). */
void harness_promtool_check(struct ignisd_proc *p, const char *text);

/* The response's body as JSON (free it with cJSON_Delete); fails the test, showing it, if not. */
cJSON *harness_json(const struct client_response *r);
/* Polls GET /v1/invocations/ID (every 20 ms, up to `seconds`) until its status is `status`;
 * returns the record (free it with cJSON_Delete), or fails the test showing the last one. */
cJSON *harness_wait_invocation(struct ignisd_proc *p, const char *id, const char *status,
                               int seconds);

/* Runs a command (argv NULL-terminated), capturing stdout and stderr (each up to 64 KiB).
 * Returns the exit status, or -1. */
int harness_run(char *const argv[], char **ret_out, char **ret_err);
/* Runs `ignis --server URL --token TOKEN ARGS...` against p (ARGS NULL-terminated, at most
 * 26), capturing its output as harness_run does. Returns its exit status, or -1. */
int harness_ignis(struct ignisd_proc *p, char **ret_out, char **ret_err, ...)
    __attribute__((sentinel));
