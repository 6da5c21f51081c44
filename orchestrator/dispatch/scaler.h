/* The scaler's policy: from what each function is doing now (queue, in flight, workers, arrivals,
 * idle times) and the host's limits (memory budget, spawn rate and concurrency), how many
 * containers to start for which function and which workers to reap or retire, each with a
 * reason.
 *
 * Pure: no I/O, no clock of its own (now_us is an argument), deterministic. The dispatcher calls
 * scaler_decide() on every enqueue, completion and tick, applies the actions through the pool and
 * records each with its reason. docs/architecture.md ("Scaler") explains the formulas. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a spawn or reap was decided, or what held a wanted spawn back. */
enum scaler_reason {
    SCALER_REASON_NONE,              /* nothing to do: the pool is where it should be */
    SCALER_REASON_MIN_SCALE,         /* spawn: below the function's min_scale floor */
    SCALER_REASON_QUEUE,             /* spawn: work is queued or running without a slot */
    SCALER_REASON_PANIC,             /* spawn: a burst; the pool jumps to the peak need */
    SCALER_REASON_PREWARM,           /* spawn: the fresh reserve for the arrivals expected
                                      * during one spawn latency (reuse false) */
    SCALER_REASON_IDLE,              /* reap: idle past idle_timeout_s and above the target */
    SCALER_REASON_OVER_BUDGET,       /* reap, retire: memory for another function's floor or
                                      * its fair share; hold: the budget, or this function's
                                      * fair share of it, is used up */
    SCALER_REASON_MAX_SCALE,         /* hold: the function is at max_scale */
    SCALER_REASON_SPAWN_RATE,        /* hold: the host-wide spawn token bucket is empty */
    SCALER_REASON_SPAWN_CONCURRENCY, /* hold: too many spawns in progress host-wide */
    SCALER_REASON_CPU,               /* reuse true: hold: the function has as many containers
                                      * as the host's CPUs can keep busy (scaler_observe);
                                      * reap, retire: it has more */
    _SCALER_REASON_MAX,
};

/* "queue", "min_scale", ...: stable names for logs, metrics labels and the API. */
const char *scaler_reason_name(enum scaler_reason r);

/* Host-wide knobs. scaler_config_defaults() fills them; docs/architecture.md says why each. */
struct scaler_config {
    unsigned max_spawning;             /* spawns in progress host-wide (32) */
    double spawn_rate;                 /* spawns per second, token bucket refill (500) */
    double spawn_burst;                /* token bucket size (100) */
    double prewarm_headroom;           /* reuse false: × the smoothed arrival rate (1.5) */
    double prewarm_miss;               /* reuse false: arrivals allowed to find none ready (0.01) */
    double panic_threshold;            /* reuse true: need ≥ this × serving workers (2.0) */
    uint64_t panic_window_us;          /* panic lasts this long after the last burst sign (6 s) */
    uint64_t rate_tau_us;              /* arrival rate smoothing time constant (1 s) */
    uint64_t default_spawn_latency_us; /* until one is observed (10 ms) */
    double cpu_headroom;               /* reuse true: × CPUs × wall per CPU second (2.0) */
    uint64_t cpu_window_us;            /* wall per CPU second: the min over 1-2 windows (10 s) */
};

void scaler_config_defaults(struct scaler_config *c);

/* Host-wide state: the configuration, the spawn token bucket and the round-robin cursor. */
struct scaler_state {
    struct scaler_config cfg;
    double tokens;
    uint64_t last_us;
    bool started;
    size_t cursor; /* which function goes first in the next decision's rounds */
};

/* c may be NULL for the defaults. The bucket starts full. */
void scaler_init(struct scaler_state *s, const struct scaler_config *c);

/* The last decision that did something (or was held back), for logs and the API. */
struct scaler_decision {
    uint64_t at_us; /* 0: none yet */
    unsigned desired;
    unsigned spawned, reaped;
    enum scaler_reason reason; /* of the largest action, or what held spawns back */
    enum scaler_reason held;   /* what stopped a wanted spawn, or NONE */
};

#define SCALER_HOLD_BUCKETS 8

/* Per-function state the scaler keeps between calls; the caller embeds one in its function
 * record, zero-initialised (or scaler_fn_init()), and passes it back with every call. */
struct scaler_fn {
    double rate;              /* arrivals/s, exponentially smoothed */
    uint64_t rate_us;         /* when rate was last brought up to date */
    uint64_t last_arrival_us; /* 0: never */
    bool panic;
    uint64_t panic_until_us;
    unsigned panic_peak; /* the largest need seen since panic began */
    unsigned hold;       /* the largest desire of the last idle_timeout_s: scale-down stops there */
    unsigned hold_bucket[SCALER_HOLD_BUCKETS];
    uint64_t hold_epoch, hold_width; /* the newest bucket's index (now / width), in µs */
    unsigned desired;                /* the current target, as reported */
    struct scaler_decision last;
    /* From scaler_observe: the least wall time per CPU second of the invocations that ended in
     * the current window and in the one before it (0: none), and the smoothed CPU time per
     * invocation. */
    double wall_per_cpu[2];
    uint64_t wall_per_cpu_epoch;
    double cpu_us;
    unsigned cpu_cap; /* the last decision's CPU cap in containers; 0: none */
};

void scaler_fn_init(struct scaler_fn *f);

/* One finished invocation that ran alone in its container: cpu_us of CPU in wall_us from
 * hand-off to result. Feeds the CPU cap (docs/architecture.md "Scaler"). A sample with either
 * time 0 says nothing and is ignored. */
void scaler_observe(const struct scaler_config *cfg, struct scaler_fn *f, uint64_t cpu_us,
                    uint64_t wall_us, uint64_t now_us);

/* A ready worker with nothing running, as the caller knows it. */
struct scaler_worker {
    uint64_t id; /* opaque to the scaler; handed back in reap actions */
    uint64_t idle_since_us;
};

/* What one function is doing at now_us. Counts are of live workers of the current version:
 * ready = has a free slot, busy = every slot taken, spawning = started but not ready yet. */
struct scaler_input {
    struct scaler_fn *st; /* the function's scaler state (updated) */
    bool reuse;
    unsigned concurrency; /* slots per worker (1 unless reuse) */
    unsigned min_scale, max_scale;
    unsigned idle_timeout_s;
    unsigned memory_mb; /* each worker's memory limit */
    size_t queued, inflight;
    size_t nready, nbusy, nspawning;
    size_t ndraining; /* finishing their last invocations before they go (retired, old version):
                       * they hold memory but take no work */
    const struct scaler_worker *idle; /* ready workers running nothing, any order */
    size_t nidle;
    const uint64_t *running; /* ids of the other ready and busy workers, the first to be
                              * retired first */
    size_t nrunning;
    uint64_t arrivals;         /* invocations enqueued since the previous call */
    uint64_t spawn_latency_us; /* observed spawn → ready (smoothed by the caller); 0 unknown */
};

/* The host: the memory budget and what live containers already hold. */
struct scaler_host {
    uint64_t memory_budget;    /* bytes; scaler_memory_budget() gives the default */
    uint64_t memory_committed; /* bytes: memory limits of every live container, draining too */
    double cpus; /* CPUs the containers can run on (scaler_host_cpus); 0: unknown, no CPU cap */
};

enum scaler_action_kind {
    SCALER_SPAWN,  /* start `count` containers */
    SCALER_REAP,   /* destroy this idle worker now */
    SCALER_RETIRE, /* give this worker no more work; destroy it once what it runs is done */
};

struct scaler_action {
    enum scaler_action_kind kind;
    size_t fn;       /* index into the inputs */
    unsigned count;  /* SPAWN: how many containers */
    uint64_t worker; /* REAP: an id from scaler_input.idle; RETIRE: from .running */
    enum scaler_reason reason;
};

/* Decides for every function at once (spawn budget and memory are shared, so the inputs must
 * cover every function with live workers or work). A function either grows or shrinks in one
 * decision. Reaps name only workers from the idle lists, retirements only from the running
 * lists (reuse true only: a fresh container goes after its invocation anyway). Updates each
 * input's st and s. On success *ret_actions (free() it; NULL when *ret_n is 0) and *ret_n are
 * set. Returns 0, -EINVAL on a bad argument, -ENOMEM. */
int scaler_decide(struct scaler_state *s, const struct scaler_host *host,
                  const struct scaler_input *in, size_t n, uint64_t now_us,
                  struct scaler_action **ret_actions, size_t *ret_n);

/* The default memory budget, percent (1..100) of MemTotal, from the text of /proc/meminfo.
 * Returns 0, or -EINVAL when MemTotal is missing or malformed, -ERANGE when it overflows. */
int scaler_memory_budget(const char *meminfo, unsigned percent, uint64_t *ret_bytes);

/* The CPUs the daemon's containers can run on: ncpu (the daemon's affinity mask) or, when the
 * text of a cgroup v2 cpu.max ("max 100000", "150000 100000") sets a quota, quota / period if
 * that is less. cpu_max may be NULL (no quota known). Returns 0, or -EINVAL when ncpu is 0 or
 * cpu_max is malformed. */
int scaler_host_cpus(unsigned ncpu, const char *cpu_max, double *ret_cpus);

/* The fields GET /v1/functions/{name} shows about the scaler. */
struct scaler_view {
    unsigned desired;
    double arrival_rate; /* per second */
    bool panic;
    uint64_t last_at_us; /* 0: no decision yet */
    unsigned last_spawned, last_reaped;
    const char *last_reason; /* scaler_reason_name() */
    const char *last_held;   /* scaler_reason_name(); "none" when nothing held spawns back */
    double cpu_ms;           /* smoothed CPU per invocation; 0: not measured */
    unsigned cpu_cap;        /* containers the host's CPUs can keep busy; 0: no cap */
};

void scaler_view(const struct scaler_fn *f, struct scaler_view *ret);
/* One line for logs: "desired=5 spawned=3 reaped=0 reason=queue held=none panic=no". Returns
 * what snprintf returns. */
int scaler_format(const struct scaler_view *v, char *buf, size_t size);
