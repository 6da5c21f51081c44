/* Dispatch: per-function FIFO queues, invocations (sync and durable async) to a ready container
 * and back, timeouts, retries and shutdown. Everything here runs on the loop thread. Its structs
 * are its own (dispatch-internal.h): others hold opaque pointers and use the functions below. */
#pragma once

#include "base/loop.h"
#include "base/protocol.h"
#include "container/cgroup.h"
#include "container/container.h"
#include "dispatch/scaler.h"
#include "functions/manifest.h"
#include "records/invocation.h"
#include "records/journal.h"
#include "records/store.h"

struct cluster;
struct container_stock;
struct dispatch;
struct dispatch_route; /* where one invocation goes (below) */
struct fn_state;       /* a function's run-time state: its queue, workers and counters */
struct inv;            /* one invocation, queued or running */
struct registry;

enum outcome_kind {
    OUTCOME_OK,      /* the function returned a result */
    OUTCOME_ERROR,   /* the function reported an error */
    OUTCOME_CRASH,   /* the runtime died, or was OOM-killed */
    OUTCOME_TIMEOUT, /* timeout_ms passed: the container was killed */
    OUTCOME_INIT,    /* the runtime failed to initialise */
};

/* An invocation's final outcome as others see it (the completed hook). Borrowed for the call. */
struct dispatch_result {
    const char *function;
    const struct manifest *manifest; /* the current version's (whose sink applies) */
    const char *id;
    int64_t version;   /* the version that ran */
    const char *alias; /* the alias it came through; NULL for a version number */
    enum outcome_kind kind;
    char *body; /* OUTCOME_OK: the result; a sync invocation's done may take it (set it NULL) */
    size_t body_len;
    const char *content_type;
    const char *error_type, *error_message, *trace; /* otherwise; each may be NULL */
    int64_t billed_ms;
    bool cold;
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
    bool python_templates;      /* fork python3 containers from templates (default true) */
    /* The store is shared by hosts (PostgreSQL): async invocations are claimed from it under
     * leases held by host_id (docs/architecture.md "The queue's leases and fencing") rather
     * than queued in memory by the host that accepted them. */
    bool shared_queue;
    char host_id[64];
};

/* What others plug in (the daemon's sinks and events); every hook optional, called on the loop
 * thread. */
struct dispatch_hooks {
    /* An invocation's outcome is final: a sync one's only attempt, an async one's last. */
    void (*completed)(void *userdata, const struct dispatch_result *r);
    /* Adds to an invocation's record as GET /v1/invocations/{id} shows it. */
    void (*describe)(void *userdata, const char *id, cJSON *record);
    /* A running invocation's function emitted an event (a PROTO_EVENT frame); inv is NULL when
     * the worker runs no such invocation. Read them with the accessors below. Without this hook
     * such events are logged and dropped. */
    void (*emitted)(void *userdata, struct fn_state *fn, struct inv *inv,
                    const struct proto_msg *m);
    /* function's current version went from no ready container (one with a free slot) to some
     * (warm true), or back, and stayed so for DISPATCH_WARM_FLUSH_US (#17: peers forward sync
     * invocations to a host with warm capacity). Called only with a cluster (dispatch_set_cluster).
     */
    void (*warm)(void *userdata, const char *function, bool warm);
    void *userdata;
};

void dispatch_options_defaults(struct dispatch_options *o, const char *state_dir);

int dispatch_new(struct loop *l, struct store *s, struct journal *j, struct cg_manager *cg,
                 const struct dispatch_options *opts, struct dispatch **ret, struct ig_error *err);
/* Replaces the hooks (copied); the hooks set now. */
void dispatch_set_hooks(struct dispatch *d, const struct dispatch_hooks *hooks);
/* The peers (dispatch/cluster.h): min_scale and max_scale are then the cluster's, and this
 * host's scaler works to its part of them (cluster_share). NULL: this host alone. */
void dispatch_set_cluster(struct dispatch *d, struct cluster *c);
/* The stock the pool's containers take namespaces and cgroups from (container.h); NULL: none. */
void dispatch_set_stock(struct dispatch *d, struct container_stock *stock);
/* The options it runs with (images_dir, queue_max, ...). */
const struct dispatch_options *dispatch_get_options(const struct dispatch *d);
/* A graceful stop began (dispatch_shutdown): no new work is taken. */
bool dispatch_stopping(const struct dispatch *d);
/* Kills every worker and fails what is queued (recording outcomes through the journal, which
 * must still be open); after this, journal callbacks find the dispatcher closed. */
void dispatch_close(struct dispatch *d);
/* Frees what is left; call after the journal is freed. Accepts NULL. */
void dispatch_free(struct dispatch *d);

/* Follows the registry: every function now and every version pushed later, drains before a
 * delete, live state in GET /v1/functions/{name}. */
void dispatch_attach_registry(struct dispatch *d, struct registry *r);

/* Registers a function or moves it to a new current version. The manifest is borrowed: the
 * registry keeps it alive until it calls this again or the removal completes. What waits for or
 * runs the old version goes on in that version's own state (its idle containers are retired);
 * the new version's state, if it had one, hands its queue and containers to the function's. */
int dispatch_function_set(struct dispatch *d, const char *name, int64_t version,
                          const struct manifest *m, const char *bundle_dir);
/* Stops accepting invocations for name, lets in-flight ones finish (queued ones fail with 404),
 * destroys its workers, then calls done. Returns -ENOENT if unknown. */
int dispatch_function_remove(struct dispatch *d, const char *name, void (*done)(void *userdata),
                             void *userdata);
/* Version version of function name (not its current one) is going away (the registry's
 * drain_version hook): its state drains as a removed function's does, then done is called
 * (possibly before this returns). Returns -ENOENT (done not called) when nothing runs that
 * version, -EBUSY when it is the current one. */
int dispatch_version_drain(struct dispatch *d, const char *name, int64_t version,
                           void (*done)(void *userdata), void *userdata);
struct fn_state *dispatch_function(struct dispatch *d, const char *name);
/* Live state for GET /v1/functions and GET /v1/functions/{name} (docs/api.md). */
cJSON *dispatch_function_state(const struct fn_state *fn);

/* The functions, newest first: for (fn = dispatch_functions(d); fn; fn = dispatch_next(fn)). */
struct fn_state *dispatch_functions(struct dispatch *d);
struct fn_state *dispatch_next(const struct fn_state *fn);
const char *dispatch_fn_name(const struct fn_state *fn);
/* The manifest of the version it runs now. */
const struct manifest *dispatch_fn_manifest(const struct fn_state *fn);
/* Whether fn (a route's state) has a ready container with a free slot now: an invocation
 * would start at once, without a cold start. */
bool dispatch_fn_has_free(const struct fn_state *fn);
/* fn's containers: ready, busy and starting. */
size_t dispatch_fn_containers(const struct fn_state *fn);
/* Whether fn could start one more invocation without waiting for another to end: a free
 * container, or room for one more under its max_scale here (what a home host takes). */
bool dispatch_fn_has_room(struct fn_state *fn);
/* Whether fn is a function's own state (its current version), not a version's. */
bool dispatch_fn_is_current(const struct fn_state *fn);
/* Being deleted: it takes no new invocations. */
bool dispatch_fn_removing(const struct fn_state *fn);
/* Invocations its queue holds or will hold (queued, and async ones not yet durable): what
 * queue_max bounds. */
size_t dispatch_fn_waiting(const struct fn_state *fn);

/* Invocations of one version completed (attempts, as the function's invocations count). */
struct dispatch_version_count {
    int64_t version;
    uint64_t invocations;
};

/* A function's live state for GET /metrics: its current version's state and its other
 * versions' added up. */
struct dispatch_fn_stats {
    const char *name;
    size_t queued, queued_async, inflight; /* queued: retries in backoff included */
    size_t nready, nbusy, nspawning;       /* workers by state (draining ones in none) */
    unsigned desired;                      /* the scaler's current target */
    uint64_t cold_starts, throttles;
    /* Scaler actions applied, by enum scaler_action_kind and enum scaler_reason (spawns count
     * containers). */
    const uint64_t (*decisions)[_SCALER_REASON_MAX];
    /* by version, for each version kept that ran something */
    const struct dispatch_version_count *by_version;
    size_t n_by_version;
};
void dispatch_fn_stats(const struct fn_state *fn, struct dispatch_fn_stats *ret);

/* The host's, for GET /metrics. */
struct dispatch_host_stats {
    size_t live_workers;       /* containers that exist, every function, draining ones included */
    size_t nready, nbusy;      /* of them: ready, busy (every function's and version's) */
    uint64_t memory_budget;    /* bytes the containers' limits may add up to */
    uint64_t memory_committed; /* the live containers' limits, added up */
    bool has_stock;            /* whether the containers take from a stock (as root) */
    struct container_stock_stats stock;
};
void dispatch_host_stats(const struct dispatch *d, struct dispatch_host_stats *ret);

/* A running invocation, as the emitted hook sees it. */
const char *dispatch_inv_id(const struct inv *inv);
/* Its payload (NUL-terminated after len) and content type (NULL: none). */
const char *dispatch_inv_payload(const struct inv *inv, size_t *ret_len,
                                 const char **ret_content_type);
/* Counts one more event emitted by the running attempt; returns the count, this one included. */
unsigned dispatch_inv_count_emitted(struct inv *inv);
/* The hop count of the event it runs for, as the events module computed it at its first emit:
 * true and *ret once set (dispatch_inv_set_parent_hops), false before. */
bool dispatch_inv_parent_hops(const struct inv *inv, long long *ret);
void dispatch_inv_set_parent_hops(struct inv *inv, long long hops);

/* Re-queues the async invocations the store holds as queued or running (after a restart). */
int dispatch_recover(struct dispatch *d, struct ig_error *err);

/* Whether fn's queue has room for n more invocations: queue_max bounds those queued and those
 * whose rows are still being committed (so requests in one commit window, or a batch, cannot
 * pass it together). When it has not, counts a throttle. Every way in checks it first. */
bool dispatch_queue_takes(struct dispatch *d, struct fn_state *fn, size_t n);

/* Another host (or this one) accepted async invocations of function on the shared queue (its
 * notification, records/changes.h CHANGES_QUEUE): this host claims what it has room for now,
 * rather than at its next poll. Nothing without a shared queue, while stopping, or for a
 * function this host does not know. */
void dispatch_queue_wake(struct dispatch *d, const char *function);

/* Called once an async invocation's row is durable (result 0) and it is queued, or its commit
 * failed (-errno and the message), or its idempotency key was taken meanwhile, by an acceptance
 * on this host or another (-EEXIST, id the first invocation's: nothing was accepted); on the
 * loop thread. */
typedef void (*dispatch_submitted_fn)(int result, const char *message, const char *id,
                                      void *userdata);
/* Accepts an async invocation as routed (route->fn's version, recorded with the alias; every
 * attempt runs that version, also after a restart): its row is committed to the store
 * (synchronous=FULL), then done runs and the invocation is queued (unless the function went away or
 * ignisd is stopping: then it stays queued in the store for the next start). The payload and
 * strings are copied; the id is known at once (ret_id). The one way in for async work: HTTP
 * invokes, CloudEvents and schedules. token_id (NULL: none) is the caller's, recorded so an invoker
 * reads its own results. Returns 0, or -ENOMEM (done is not called then). The caller checks
 * dispatch_queue_takes. */
int dispatch_submit_async(struct dispatch *d, const struct dispatch_route *route,
                          const void *payload, size_t len, const char *content_type,
                          const char *idempotency_key, const char *token_id,
                          char ret_id[INV_ID_LEN + 1], dispatch_submitted_fn done, void *userdata);

/* The id of the async invocation of fn made earlier with this idempotency key, within the
 * idempotency window: 0 and ret_id, or -ENOENT (or -EIO). */
int dispatch_find_idempotent(struct dispatch *d, const struct fn_state *fn, const char *key,
                             char ret_id[INV_ID_LEN + 1]);

/* Where one invocation goes: the run-time state of the version it runs (the function's own when
 * that is the current version, else that version's, made on first use), the version, and the
 * alias it came through. Valid until the loop turns: submit it at once. */
struct dispatch_route {
    struct fn_state *fn;
    int64_t version;
    char alias[INV_ALIAS_MAX + 1]; /* "" when through a version number */
};

/* Routes an invocation of function fn (one of dispatch_functions) by selector (NULL or "": the
 * default alias; decimal digits: that version; else an alias; registry_route says how): 0 and
 * *ret, or -errno with err: ENOENT version_not_found or alias_not_found, EINVAL invalid_alias,
 * EAGAIN bundle_unavailable, ENOMEM. An async invocation on a queue shared with other hosts is
 * not refused for a bundle this host lacks (registry_resolve): a host that has it runs it.
 * Without a registry attached only the current version is known. */
int dispatch_route(struct dispatch *d, struct fn_state *fn, const char *selector, bool async,
                   struct dispatch_route *ret, struct ig_error *err);
/* The function an invocation may be made of, routed by selector (dispatch_route): 0 and *ret,
 * or ESHUTDOWN ("shutting_down") while ignisd stops, ENOENT ("not_found") for an unknown
 * function or one being deleted, or dispatch_route's errors. */
int dispatch_function_accepting(struct dispatch *d, const char *name, const char *selector,
                                bool async, struct dispatch_route *ret, struct ig_error *err);
/* Whether fn (a route's state) takes one more invocation now: 0, or ENOBUFS
 * ("too_many_requests") when its queue is full (dispatch_queue_takes) or, for a sync one, when
 * max_concurrency are running or waiting. Both count per version state: each version's queue
 * holds queue_max, and each runs up to its own manifest's max_concurrency. Each refusal counts
 * a throttle (the function's). */
int dispatch_admit(struct dispatch *d, struct fn_state *fn, bool sync, struct ig_error *err);

/* A sync invocation is over. err is set when it never ran: ENOENT ("not_found") when its function
 * was deleted while it waited, ESHUTDOWN ("shutting_down") when ignisd stops; else r has the
 * outcome (done may take r->body). On the loop thread. */
typedef void (*dispatch_sync_done_fn)(const struct ig_error *err, struct dispatch_result *r,
                                      void *userdata);
/* Queues a sync invocation as routed (after dispatch_admit's checks on route->fn, whose errors it
 * returns) and calls done once with its outcome; nothing is stored before then. The payload and
 * strings are copied. *ret_inv is the handle for dispatch_sync_cancel until done is called, NULL
 * when done already ran before this returned (a worker that failed at once). Returns 0, or -errno
 * with err (done is not called then). */
int dispatch_submit_sync(struct dispatch *d, const struct dispatch_route *route,
                         const void *payload, size_t len, const char *content_type,
                         const char *token_id, dispatch_sync_done_fn done, void *userdata,
                         struct inv **ret_inv, struct ig_error *err);
/* The caller of a sync invocation went away: a queued one is dropped (never runs, nothing is
 * recorded); a running one runs to its end and is recorded, and done is not called. */
void dispatch_sync_cancel(struct inv *inv);

/* An invocation's record as GET /v1/invocations/{id} shows it (with what the describe hook adds):
 * 0 and *ret, or ENOENT ("not_found") when there is none, or when only_token is set and another
 * token made it (the invoker role sees only its own, and not that others exist). */
int dispatch_invocation_get(struct dispatch *d, const char *id, const char *only_token, cJSON **ret,
                            struct ig_error *err);

/* Begins a graceful stop: queued sync invocations get 503, in-flight ones get the grace period,
 * async ones stay in the store; then every worker is destroyed and stopped() is called. */
void dispatch_shutdown(struct dispatch *d, void (*stopped)(void *userdata), void *userdata);
