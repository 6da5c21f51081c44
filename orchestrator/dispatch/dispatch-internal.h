/* What dispatch.c shares with the pool (pool.c) and tests that play the pool: the run-time
 * structs of functions, invocations and workers. Not for other modules: they use dispatch.h,
 * whose types are opaque.
 *
 * Ownership: struct dispatch owns the functions' run-time state (struct fn_state), each owns its
 * queue of invocations and its pool of workers (pool.c); an invocation belongs to its function's
 * queue, or to the worker running it, or to a retry timer. */
#pragma once

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "dispatch/dispatch.h"
#include "dispatch/latency.h"
#include "dispatch/pool.h"
#include "dispatch/scaler.h"
#include "records/accountant.h"
#include "records/fnlog.h"

/* What an attempt came to: made by the pool (or by dispatch for what never reached a
 * container), handed to dispatch's complete hook. */
struct dispatch_outcome {
    enum outcome_kind kind;
    char *body; /* result (OK) or NULL; owned */
    size_t body_len;
    char *content_type;
    char *error_type, *error_message, *trace; /* owned */
};

/* Frees what o owns and zeroes it. */
static inline void dispatch_outcome_clear(struct dispatch_outcome *o)
{
    free(o->body);
    free(o->content_type);
    free(o->error_type);
    free(o->error_message);
    free(o->trace);
    memset(o, 0, sizeof(*o));
}

struct inv {
    char id[INV_ID_LEN + 1];
    struct fn_state *fn;           /* the state of the version it runs (inv->version) */
    int64_t version;               /* routed when accepted: every attempt runs this version */
    char alias[INV_ALIAS_MAX + 1]; /* the alias it came through; "" for a version number */
    bool async;
    /* sync: told of the outcome (dispatch_submit_sync); NULL once its caller went away */
    dispatch_sync_done_fn done;
    void *done_userdata;
    char *body;
    size_t body_len;
    char *content_type;
    char *idempotency_key;
    int attempts; /* attempts started, this one included */
    /* Claimed from the shared queue (queue.c): the row's attempts under this host's lease, which
     * fences every write of it (inv_store_finish); 0: no lease (SQLite's in-memory queue). */
    int lease_attempts;
    int64_t lease_until_us; /* that lease's end as claimed (wall clock) */
    int64_t created_wall_us, started_wall_us;
    uint64_t enqueued_us, started_us; /* monotonic */
    bool cold;
    bool alone; /* the running attempt has had its container to itself so far */
    /* events.c: the ignishops of the event this runs for, read from the payload at the first
     * emit (dispatch_inv_parent_hops) so that later emits do not parse it again. */
    long long parent_hops;
    bool parent_hops_read;
    unsigned emitted;         /* events the running attempt emitted (their ids count them) */
    char token_id[17];        /* the caller's token, recorded with the invocation */
    struct acct_attempt acct; /* the running attempt's measurements (accountant.h) */
    struct worker *worker;
    struct loop_timer *timer; /* the running attempt's timeout, or a queued retry's backoff */
    TAILQ_ENTRY(inv) link;    /* in fn->queue, or in the worker's running list */
};

TAILQ_HEAD(inv_list, inv);

enum worker_state { WORKER_SPAWNING, WORKER_READY, WORKER_BUSY, WORKER_DRAINING };

struct container;

/* A container running the function's runtime (pool.c makes and drives it). */
struct worker {
    struct fn_state *fn;
    uint64_t seq;
    /* Containers made again for this worker after a fork failed (fork_failed): each has a name
     * of its own, since the failed one's cgroup may still be on its way out. */
    unsigned remakes;
    int64_t version;    /* the function version it was made for */
    uint32_t memory_mb; /* its container's limit, as when it was made */
    enum worker_state state;
    struct container *c;
    struct cg_group *cgroup; /* the container's, for the accountant's readings; NULL: none */
    int fd;                  /* runtime-protocol socket, non-blocking */
    int out_fd, err_fd;      /* the runtime's stdout and stderr */
    struct proto_decoder dec;
    struct proto_buf out;
    bool want_write;
    struct inv_list running;
    size_t inflight;
    unsigned served;
    /* Monotonic. spawned_us: when the making of its container began (for a worker that waited
     * for its template, when the wait ended: the wait is no part of the container's Init
     * Duration). */
    uint64_t spawned_us, ready_us, idle_since_us;
    uint64_t oom_kills_at_start;
    bool used; /* has been handed at least one invocation */
    /* While it spawns: the deadline for its READY (pool.c on_init_deadline). */
    struct loop_timer *init_timer;
    /* For the operators (telemetry, fnlog.c): when the shim's sync pipe reached EOF (the runtime
     * was exec'd), and the output's per-invocation state. */
    int sync_fd;
    uint64_t exec_us;
    /* A python3 container forking from a template: the fd pool.c watches until the fork is
     * finished (container_fork_fd; -1 otherwise), and which template it forks from (tpl_seq).
     * tpl_wait: it waits for template tpl_seq to start, with no container yet (c NULL); the
     * workers waiting for one template are those marked with its tpl_seq, in whichever state
     * versions.c moved them to (pool.c on_template, template_drop). */
    int fork_fd;
    uint64_t tpl_seq;
    bool tpl_wait;
    struct fnlog_src log;
    struct worker *next;
};

/* A function's run-time state. The function's own (of == NULL) runs its current version and
 * holds the function's counters; each other version that has work gets a version state (of:
 * the function's), with its own queue, workers and scaler state (versions.c). Every state is in
 * the dispatcher's list; dispatch_function and dispatch_functions see the functions' own only.
 * Whatever runs or waits for version v is in the one state running v. */
struct fn_state {
    struct dispatch *d;
    char name[MANIFEST_NAME_MAX + 1];
    int64_t version;
    const struct manifest *manifest; /* the registry's, re-set on every new version */
    char *bundle_dir;
    struct fn_state *of;       /* a version state's function; NULL for the function's own */
    struct fn_state *versions; /* the function's: its version states, through vnext */
    struct fn_state *vnext;
    /* The function's: invocations completed by version, for /metrics (bounded by the kept
     * versions: a version's count goes when it is pruned). */
    struct dispatch_version_count *by_version;
    size_t n_by_version;
    struct inv_list queue;
    size_t queued, inflight;
    size_t queued_sync; /* of queued: sync invocations, held to max_concurrency with inflight */
    size_t submitting;  /* async invocations accepted whose rows are not durable yet */
    size_t taking;      /* of submitting: those taken here as accepted (queue_take_here) */
    /* The function's own state, with a shared queue: its rows queued in the store, as the last
     * claim pass counted them and this host's acceptances since (dispatch_queue_takes). */
    size_t shared_queued;
    /* The function's own state, with a shared queue: rows of it may be due in the store (a claim
     * pass saw some, an acceptance here or a notification came since, and the last claim took
     * all it asked for), so an attempt's end claims; claim_wanted: that claim is posted (or
     * waits for claim_after_us, monotonic: claims for one function are spaced, queue.c). */
    bool claim_due, claim_wanted;
    uint64_t claim_after_us;
    size_t nspawning, nready, nbusy; /* workers by state (draining ones in none) */
    struct worker *workers;          /* list through worker->next */
    /* python3: the template its containers are forked from (pool.c), and how many in a row
     * failed before they were ready (past a few, this state spawns the usual way only).
     * tpl_starting: it has not answered yet (pool.c watches its socket, with this state as the
     * watch's userdata: every retirement of tpl unwatches it first, pool_ops.forget too). */
    struct container_template *tpl;
    unsigned tpl_failures;
    bool tpl_starting;
    uint64_t tpl_seq;          /* tpl's name's number, unique in the dispatcher (worker->tpl_seq) */
    size_t ndraining;          /* workers taking no new work, destroyed once idle */
    struct scaler_fn sc;       /* the scaler's state for this function */
    uint64_t arrivals;         /* enqueued since the scaler last ran */
    uint64_t spawn_latency_us; /* smoothed spawn → ready */
    uint64_t spawn_latency_dev_us; /* its smoothed mean deviation */
    unsigned spawn_failures;       /* consecutive: spawning backs off */
    uint64_t spawn_not_before_us;
    /* Its min_scale and max_scale on this host (dispatch.c min_scale_here), computed from the
     * totals min_of and max_of with the cluster's view numbered epoch (cluster_epoch). */
    struct {
        uint64_t epoch;
        unsigned min_of, max_of, min, max;
    } share;
    /* Its bundle is being fetched from the shared store, or its fetch failed for a reason of this
     * host's (registry.h): nothing spawns until it is here, what is queued here waits for it
     * rather than fail, and this host claims none of the shared queue's rows for it (a peer that
     * has it may run them). */
    bool bundle_pending;
    bool removing;
    /* The function's own state: whether it has a warm, free container (dispatch_warm_note),
     * whether the warm hook was last told so, and its place in the dispatcher's list of those
     * to tell at the next flush. */
    bool warm, warm_told, warm_dirty;
    struct fn_state *warm_next;
    /* A stand-in for a deleted function whose invocation was recovered at start (recover_one):
     * not in the dispatcher's list, it only carries the record's fields. */
    bool ghost;
    size_t recording; /* its invocations' records not yet written (a drain waits for them) */
    void (*removed)(void *userdata);
    void *removed_userdata;
    struct fn_state *next;
    /* counters for the API */
    uint64_t invocations, errors, cold_starts, timeouts, throttles;
    uint64_t billed_ms;     /* summed over every attempt, as Ignis-Billed-Ms reports each */
    struct latency latency; /* enqueue → result of recent attempts, for p50/p99 */
    uint64_t decisions[3][_SCALER_REASON_MAX]; /* by scaler action kind and reason */
};

struct dispatch {
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct cg_manager *cg;
    struct container_stock *stock; /* the pool's containers take from it; may be NULL */
    struct cluster *cluster;       /* the peers, with a shared store; may be NULL */
    struct dispatch_options opts;
    /* What runs the containers (pool_containers; a test's fake), and how it reports back. */
    const struct pool_ops *pool;
    struct pool_hooks pool_hooks;
    struct fn_state *fns;      /* every state: the functions' own and their versions' */
    struct registry *registry; /* routes invocations (dispatch_attach_registry); may be NULL */
    bool stopping;
    void (*stopped)(void *userdata);
    void *stopped_userdata;
    struct loop_timer *tick;
    /* Functions whose warm capacity changed since the warm hook was last told, told together
     * once warm_timer is due (dispatch_warm_note). */
    struct fn_state *warm_dirty;
    struct loop_timer *warm_timer;
    struct loop_timer *grace_timer;
    uint64_t worker_seq;
    size_t live_workers;
    uint64_t memory_committed; /* bytes: memory limits of live containers, draining included */
    struct scaler_state scaler;
    struct scaler_host host;
    bool scale_pending;     /* a scaler run is posted or timed */
    uint64_t last_scale_us; /* monotonic: the last demand-driven run */
    bool removals_pending;  /* finish_removals is posted */
    /* The sync invocation dispatch_submit_sync is queueing; NULL once it completed inside its
     * own submission (then the caller gets no handle to cancel). */
    struct inv *submitting_sync;
    struct dispatch_hooks hooks;
    /* Records on their way to the store (dispatch.c "records"), retried until written. */
    struct pending_record *records;
    size_t records_pending;
    bool records_dropping; /* sync records are being dropped (too many pending): said once */
    bool grace_over;       /* the shutdown's grace is over: a stop waits for records no more */
    bool closed;           /* dispatch_close ran: a record that fails now is given up */
    /* The shared queue (queue.c; opts.shared_queue): this host's liveness lock (NULL until
     * taken: it claims nothing without it), its claim timer, a posted claim and the timer of
     * claims spaced out, and when it last looked for dead peers and expired leases
     * (monotonic). */
    const char *lease_owner; /* opts.host_id when the queue is shared, else NULL */
    struct inv_host_lock *host_lock;
    bool host_lock_said; /* that it could not be taken: said once until it is */
    struct loop_timer *claim_timer, *spacing_timer;
    uint64_t spacing_due_us; /* spacing_timer's (monotonic) */
    bool claim_posted;
    uint64_t liveness_us;
    /* Async invocations whose rows are not yet durable, oldest first (dispatch.c
     * "submissions"). */
    TAILQ_HEAD(, submission) submissions;
};

/* dispatch.c: queues an async invocation read from the store (recovered at start, or claimed
 * under a lease of lease_attempts: 0 for none), or records it dead when its function or
 * version is gone. 1 when queued, 0 when recorded dead, -ENOMEM. */
int dispatch_queue_record(struct dispatch *d, struct inv_record *r, int lease_attempts);

/* queue.c, the queue shared by hosts on PostgreSQL (opts.shared_queue). start: requeues what
 * this host held before (its previous process's rows: their late writes are fenced off), takes
 * its liveness lock and begins claiming; kick: claims for fn (the function's own state) as the
 * loop turn ends (an attempt of it ended, making room); stop:
 * claims no more; release: lets go of the lock (after the last record is written). */
int queue_start(struct dispatch *d, struct ig_error *err);
void queue_kick(struct dispatch *d, struct fn_state *fn);
void queue_stop(struct dispatch *d);
void queue_release(struct dispatch *d);
/* At a graceful stop, before its queues are let go: the async invocations this host holds
 * under its lease and has not started go back to the shared queue (inv_store_hand_back), and
 * its peers are told, so that they run them now rather than once this host is gone. */
void queue_hand_back(struct dispatch *d);
/* Whether this host takes an async invocation of fn (the function's own state) as it accepts
 * it, its row inserted claimed by this host rather than queued for any host to claim: when the
 * queue is shared, this host holds its lock, fn has room for one more (its max_concurrency,
 * counting what it holds and what is being accepted), and its warm containers here have a slot
 * for it soon: what runs and waits here, taken ones not yet durable too, is under twice the
 * attempts they run at once. */
bool queue_take_here(struct dispatch *d, struct fn_state *fn);
/* A claimed row's lease: fn's timeout, and time to wait for a container. */
int64_t queue_lease_us(const struct manifest *m);
/* Whether an attempt of fn starting at start_wall_us could outlast a lease until lease_until_us
 * (its claim's): then its start renews the lease. */
bool queue_lease_short(const struct manifest *m, int64_t lease_until_us, int64_t start_wall_us);

/* dispatch.c: a state for function name, in no list yet, with nothing set but its name (NULL
 * without memory); its release (NULL accepted); putting it in the dispatcher's list. */
struct fn_state *dispatch_state_new(struct dispatch *d, const char *name);
void dispatch_state_free(struct fn_state *fn);
void dispatch_state_link(struct fn_state *fn);
/* fn's ready containers may have gone to or from none: the warm hook hears of it within
 * DISPATCH_WARM_FLUSH_US, when the function's own state's did and stayed so (a flip and back
 * in between is not told). Call after every change of nready or removing. */
#define DISPATCH_WARM_FLUSH_US (50 * 1000)
void dispatch_warm_note(struct fn_state *fn);
/* Adds s's own pool and queue counters to o: ready, busy, spawning, draining, queue_depth,
 * in_flight (GET /v1/functions/{name}'s live, and each of its versions). */
void dispatch_state_counts(const struct fn_state *s, cJSON *o);

/* versions.c: the state that runs version of function fn (fn itself when it is the current
 * one), made from m and bundle_dir (borrowed: the registry's version keeps them until its
 * drain_version hook is done) when there is none: 0 and *ret, or -ENOMEM. */
int versions_state(struct fn_state *fn, int64_t version, const struct manifest *m,
                   const char *bundle_dir, struct fn_state **ret);
/* Takes a version state out of its function's list (before it is freed). */
void versions_unlink(struct fn_state *vs);
/* Function fn's current version becomes version: what waits for or runs the old one moves to
 * that version's state (idle containers of it are retired), and the new one's state, if any,
 * hands its queue and containers over to fn. 0, or -ENOMEM (nothing changed). */
int versions_switch(struct fn_state *fn, int64_t version, const struct manifest *m,
                    const char *bundle_dir);
/* One more invocation of version completed (fn: the function's own state); its count goes
 * with versions_forget once a pruned or deleted version has drained (finish_removals), or at
 * its drain when it had no state. */
void versions_count(struct fn_state *fn, int64_t version);
void versions_forget(struct fn_state *fn, int64_t version);
/* Adds "versions": {"N": {ready, busy, spawning, draining, queue_depth, in_flight}} for the
 * current version and every version state of fn. */
void versions_describe(const struct fn_state *fn, cJSON *live);
