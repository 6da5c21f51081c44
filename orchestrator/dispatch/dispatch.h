/* Dispatch: per-function FIFO queues, invocations from HTTP (sync and durable async) to a ready
 * container and back, timeouts, retries and shutdown. Everything here runs on the loop thread.
 *
 * Ownership: struct dispatch owns the functions' run-time state (struct fn), each fn owns its
 * queue of invocations and its pool of workers (pool.c); an invocation belongs to its fn's
 * queue, or to the worker running it, or to a retry timer. */
#pragma once

#include <sys/queue.h>

#include "records/accountant.h"
#include "container/cgroup.h"
#include "base/http.h"
#include "records/invocation.h"
#include "records/journal.h"
#include "dispatch/latency.h"
#include "base/loop.h"
#include "functions/manifest.h"
#include "base/protocol.h"
#include "dispatch/scaler.h"
#include "records/store.h"

struct dispatch;
struct fn;
struct worker;

enum outcome_kind {
    OUTCOME_OK,      /* the function returned a result */
    OUTCOME_ERROR,   /* the function reported an error (502) */
    OUTCOME_CRASH,   /* the runtime died, or was OOM-killed (502) */
    OUTCOME_TIMEOUT, /* timeout_ms passed: the container was killed (504) */
    OUTCOME_INIT,    /* the runtime failed to initialise (502) */
};

struct outcome {
    enum outcome_kind kind;
    char *body; /* result (OK) or NULL; owned */
    size_t body_len;
    char *content_type;
    char *error_type, *error_message, *trace; /* owned */
};

void outcome_clear(struct outcome *o);

struct inv {
    char id[INV_ID_LEN + 1];
    struct fn *fn;
    bool async;
    struct http_request *req; /* sync: the waiting client; NULL once it went away */
    char *body;
    size_t body_len;
    char *content_type;
    char *idempotency_key;
    int attempts; /* attempts started, this one included */
    int64_t created_wall_us, started_wall_us;
    uint64_t enqueued_us, started_us; /* monotonic */
    bool cold;
    bool alone; /* the running attempt has had its container to itself so far */
    /* events.c: the ignishops of the event this runs for, read from the payload at the first
     * emit (parent_hops_read) so that later emits do not parse it again. */
    long long parent_hops;
    bool parent_hops_read;
    unsigned emitted;         /* events the running attempt emitted (their ids count them) */
    char token_id[17];        /* the caller's token (http_caller), recorded with the invocation */
    struct acct_attempt acct; /* the running attempt's measurements (accountant.h) */
    struct worker *worker;
    struct loop_timer *timer; /* the running attempt's timeout, or a queued retry's backoff */
    TAILQ_ENTRY(inv) link;    /* in fn->queue, or in the worker's running list */
};

TAILQ_HEAD(inv_list, inv);

enum worker_state { WORKER_SPAWNING, WORKER_READY, WORKER_BUSY, WORKER_DRAINING };

struct fn {
    struct dispatch *d;
    char name[MANIFEST_NAME_MAX + 1];
    int64_t version;
    const struct manifest *manifest; /* the registry's, re-set on every new version */
    char *bundle_dir;
    struct inv_list queue;
    size_t queued, inflight;
    size_t queued_sync; /* of queued: sync invocations, held to max_concurrency with inflight */
    size_t submitting;  /* async invocations accepted whose rows are not durable yet */
    size_t nspawning, nready, nbusy; /* workers by state (draining ones in none) */
    struct worker *workers;          /* list through worker->next */
    size_t ndraining;                /* workers taking no new work, destroyed once idle */
    struct scaler_fn sc;             /* the scaler's state for this function */
    uint64_t arrivals;               /* enqueued since the scaler last ran */
    uint64_t spawn_latency_us;       /* smoothed spawn → ready */
    uint64_t spawn_latency_dev_us;   /* its smoothed mean deviation */
    unsigned spawn_failures;         /* consecutive: spawning backs off */
    uint64_t spawn_not_before_us;
    bool removing;
    void (*removed)(void *userdata);
    void *removed_userdata;
    struct fn *next;
    /* counters for the API */
    uint64_t invocations, errors, cold_starts, timeouts, throttles;
    uint64_t billed_ms;     /* summed over every attempt, as Ignis-Billed-Ms reports each */
    struct latency latency; /* enqueue → result of recent attempts, for p50/p99 */
    uint64_t decisions[3][_SCALER_REASON_MAX]; /* by scaler action kind and reason */
};

struct dispatch_options {
    char state_dir[4096];
    char images_dir[4200];
    size_t queue_max;       /* per function; 429 past it (default 1000) */
    int64_t retention_us;   /* how long records are kept (default 24 h) */
    int64_t idempotency_us; /* window for Idempotency-Key (24 h) */
    uint64_t retry_base_ms, retry_cap_ms;
    uint64_t shutdown_grace_ms; /* in-flight sync invocations get this long at SIGTERM */
    uint64_t memory_budget;     /* bytes for all containers' limits; 0: 80% of MemTotal */
};

/* What others plug in (the daemon's sinks and events); every hook optional, called on the loop
 * thread. */
struct dispatch_hooks {
    /* An invocation's outcome is final: a sync one's only attempt, an async one's last. */
    void (*completed)(void *userdata, const struct inv *inv, const struct outcome *o);
    /* Adds to an invocation's record as GET /v1/invocations/{id} shows it. */
    void (*describe)(void *userdata, const char *id, cJSON *record);
    /* A running invocation's function emitted an event (a PROTO_EVENT frame). Without this
     * hook such events are logged and dropped. */
    void (*emitted)(void *userdata, struct fn *fn, struct inv *inv, const struct proto_msg *m);
    void *userdata;
};

struct dispatch {
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct cg_manager *cg;
    struct container_stock *stock; /* the pool's containers take from it; may be NULL */
    struct dispatch_options opts;
    struct fn *fns;
    bool stopping;
    void (*stopped)(void *userdata);
    void *stopped_userdata;
    struct loop_timer *tick;
    struct loop_timer *grace_timer;
    uint64_t worker_seq;
    size_t live_workers;
    uint64_t memory_committed; /* bytes: memory limits of live containers, draining included */
    struct scaler_state scaler;
    struct scaler_host host;
    bool scale_pending;     /* a scaler run is posted or timed */
    uint64_t last_scale_us; /* monotonic: the last demand-driven run */
    bool removals_pending;  /* finish_removals is posted */
    struct dispatch_hooks hooks;
};

void dispatch_options_defaults(struct dispatch_options *o, const char *state_dir);

struct registry;

int dispatch_new(struct loop *l, struct store *s, struct journal *j, struct cg_manager *cg,
                 const struct dispatch_options *opts, struct dispatch **ret, struct ig_error *err);
/* Kills every worker and fails what is queued (recording outcomes through the journal, which
 * must still be open); after this, journal callbacks find the dispatcher closed. */
void dispatch_close(struct dispatch *d);
/* Frees what is left; call after the journal is freed. Accepts NULL. */
void dispatch_free(struct dispatch *d);

/* Follows the registry: every function now and every version pushed later, drains before a
 * delete, live state in GET /v1/functions/{name}. */
void dispatch_attach_registry(struct dispatch *d, struct registry *r);

/* Registers a function or moves it to a new version. The manifest is borrowed: the registry
 * keeps it alive until it calls this again or the removal completes. Warm workers of the old
 * version finish what they run and are replaced. */
int dispatch_function_set(struct dispatch *d, const char *name, int64_t version,
                          const struct manifest *m, const char *bundle_dir);
/* Stops accepting invocations for name, lets in-flight ones finish (queued ones fail with 404),
 * destroys its workers, then calls done. Returns -ENOENT if unknown. */
int dispatch_function_remove(struct dispatch *d, const char *name, void (*done)(void *userdata),
                             void *userdata);
struct fn *dispatch_function(struct dispatch *d, const char *name);
/* Live state for GET /v1/functions and GET /v1/functions/{name} (docs/api.md). */
cJSON *dispatch_function_state(const struct fn *fn);

/* Re-queues the async invocations the store holds as queued or running (after a restart). */
int dispatch_recover(struct dispatch *d, struct ig_error *err);

/* Whether fn's queue has room for n more invocations: queue_max bounds those queued and those
 * whose rows are still being committed (so requests in one commit window, or a batch, cannot
 * pass it together). When it has not, counts a throttle. Every way in checks it first. */
bool dispatch_queue_takes(struct dispatch *d, struct fn *fn, size_t n);

/* Called once an async invocation's row is durable (result 0) and it is queued, or its commit
 * failed (-errno and the message); on the loop thread. */
typedef void (*dispatch_submitted_fn)(int result, const char *message, const char *id,
                                      void *userdata);
/* Accepts an async invocation of fn: its row is committed to the store (synchronous=FULL), then
 * done runs and the invocation is queued (unless the function went away or ignisd is stopping:
 * then it stays queued in the store for the next start). The payload and strings are copied; the
 * id is known at once (ret_id). The one way in for async work: HTTP invokes, CloudEvents and
 * schedules. token_id (NULL: none) is the caller's, recorded so an invoker reads its own results.
 * Returns 0, or -ENOMEM (done is not called then). The caller checks dispatch_queue_takes. */
int dispatch_submit_async(struct dispatch *d, struct fn *fn, const void *payload, size_t len,
                          const char *content_type, const char *idempotency_key,
                          const char *token_id, char ret_id[INV_ID_LEN + 1],
                          dispatch_submitted_fn done, void *userdata);

/* Route handlers. */
void dispatch_http_invoke(struct http_request *req, struct dispatch *d);
/* only_token: when not NULL, an invocation another token made is answered 404, as if it did not
 * exist (the invoker role sees only its own). */
void dispatch_http_get_invocation(struct http_request *req, struct dispatch *d,
                                  const char *only_token);

/* Begins a graceful stop: queued sync invocations get 503, in-flight ones get the grace period,
 * async ones stay in the store; then every worker is destroyed and stopped() is called. */
void dispatch_shutdown(struct dispatch *d, void (*stopped)(void *userdata), void *userdata);

/* Called by the pool. */
void dispatch_worker_ready(struct fn *fn, struct worker *w);
void dispatch_complete(struct inv *inv, struct outcome *o);
void dispatch_spawn_failed(struct fn *fn, struct outcome *o);
void dispatch_kick(struct fn *fn);
/* A runtime's EVENT frame: handed to the emit hook with the invocation it names (NULL when the
 * worker runs no such invocation). */
void dispatch_emitted(struct fn *fn, struct inv *inv, const struct proto_msg *m);
/* Asks for a scaler run soon (once per loop turn, however many ask). */
void dispatch_request_scale(struct dispatch *d);
