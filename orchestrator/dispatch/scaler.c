#include "dispatch/scaler.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static const char *const reason_names[_SCALER_REASON_MAX] = {
    [SCALER_REASON_NONE] = "none",
    [SCALER_REASON_MIN_SCALE] = "min_scale",
    [SCALER_REASON_QUEUE] = "queue",
    [SCALER_REASON_PANIC] = "panic",
    [SCALER_REASON_PREWARM] = "prewarm",
    [SCALER_REASON_IDLE] = "idle",
    [SCALER_REASON_OVER_BUDGET] = "over_budget",
    [SCALER_REASON_MAX_SCALE] = "max_scale",
    [SCALER_REASON_SPAWN_RATE] = "spawn_rate",
    [SCALER_REASON_SPAWN_CONCURRENCY] = "spawn_concurrency",
    [SCALER_REASON_CPU] = "cpu",
};

const char *scaler_reason_name(enum scaler_reason r)
{
    if ((unsigned)r >= _SCALER_REASON_MAX)
        return "unknown";
    return reason_names[r];
}

void scaler_config_defaults(struct scaler_config *c)
{
    *c = (struct scaler_config){
        /* A spawn costs about a millisecond of CPU (design brief: six namespaces + exec), so 500
         * a second is at most half of one of two cores, and 32 at once keeps a slow runtime's
         * start-ups from piling up. The burst of 100 lets 0 → 100 start without waiting for
         * tokens, 32 at a time. */
        .max_spawning = 32,
        .spawn_rate = 500,
        .spawn_burst = 100,
        /* Fresh containers: at most 1% of arrivals at a steady rate find none ready, and the
         * load is taken 1.5 times the smoothed rate, which lags a rising load. */
        .prewarm_headroom = 1.5,
        .prewarm_miss = 0.01,
        /* Knative's defaults: panic at 200% of the serving capacity, for a 6 s window. */
        .panic_threshold = 2.0,
        .panic_window_us = 6 * 1000000ull,
        .rate_tau_us = 1000000,
        .default_spawn_latency_us = 10000,
        /* Containers beyond what the CPUs can run only add context switches, but too few
         * leave a CPU idle while an invocation waits on I/O: twice the Little's-law need, as
         * BBR sends twice its bandwidth-delay product while it probes. The least wall per CPU
         * second over 10-20 s, as BBR keeps its round-trip minimum for 10 s. */
        .cpu_headroom = 2.0,
        .cpu_window_us = 10 * 1000000ull,
    };
}

void scaler_init(struct scaler_state *s, const struct scaler_config *c)
{
    memset(s, 0, sizeof(*s));
    if (c)
        s->cfg = *c;
    else
        scaler_config_defaults(&s->cfg);
}

void scaler_fn_init(struct scaler_fn *f)
{
    memset(f, 0, sizeof(*f));
}

void scaler_observe(const struct scaler_config *cfg, struct scaler_fn *f, uint64_t cpu_us,
                    uint64_t wall_us, uint64_t now_us)
{
    if (cpu_us == 0 || wall_us == 0)
        return;
    uint64_t width = cfg->cpu_window_us ? cfg->cpu_window_us : 1;
    uint64_t epoch = now_us / width;
    if (epoch > f->wall_per_cpu_epoch) {
        f->wall_per_cpu[1] = epoch == f->wall_per_cpu_epoch + 1 ? f->wall_per_cpu[0] : 0;
        f->wall_per_cpu[0] = 0;
        f->wall_per_cpu_epoch = epoch;
    }
    double ratio = (double)wall_us / (double)cpu_us;
    if (f->wall_per_cpu[0] == 0 || ratio < f->wall_per_cpu[0])
        f->wall_per_cpu[0] = ratio;
    f->cpu_us = f->cpu_us ? f->cpu_us + ((double)cpu_us - f->cpu_us) / 8 : (double)cpu_us;
}

/* The least wall time per CPU second of the invocations that ended in this window or the one
 * before, or 0 when none did (never measured, or not called for two windows). */
static double wall_per_cpu(const struct scaler_config *cfg, const struct scaler_fn *f, uint64_t now)
{
    uint64_t epoch = now / (cfg->cpu_window_us ? cfg->cpu_window_us : 1);
    double cur = epoch == f->wall_per_cpu_epoch ? f->wall_per_cpu[0] : 0;
    double prev = epoch == f->wall_per_cpu_epoch       ? f->wall_per_cpu[1]
                  : epoch == f->wall_per_cpu_epoch + 1 ? f->wall_per_cpu[0]
                                                       : 0;
    if (cur == 0 || (prev != 0 && prev < cur))
        return prev;
    return cur;
}

static unsigned sat_sub(unsigned a, unsigned b)
{
    return a > b ? a - b : 0;
}

static unsigned umin(unsigned a, unsigned b)
{
    return a < b ? a : b;
}

static unsigned umax(unsigned a, unsigned b)
{
    return a > b ? a : b;
}

static unsigned clamp_count(size_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

/* The three tiers of spawns, served in this order across all functions: a function's floor
 * first, then work that is waiting, then capacity ahead of demand. */
enum { TIER_FLOOR, TIER_URGENT, TIER_SPEC, _TIER_MAX };

/* What one decision computes for one function. Counts are in the function's own unit: live
 * workers (reuse true) or fresh ones, ready or spawning (reuse false), since a reuse-false
 * container that is running its one invocation is spent. */
struct plan {
    unsigned counted;
    unsigned asked[_TIER_MAX]; /* spawns wanted per tier */
    unsigned want[_TIER_MAX];  /* the same, cut short when the host says no */
    unsigned spawned[_TIER_MAX];
    bool mem_blocked; /* a floor or urgent spawn found no memory */
    enum scaler_reason urgent_reason;
    enum scaler_reason held;
    bool grows;        /* wants a spawn this call: not a victim for over-budget reaps */
    unsigned reapable; /* how many of its idle workers may go for another function's memory */
    unsigned reaped, retired;
    size_t next_running; /* the next of its running workers to retire */
    enum scaler_reason reap_reason;
    uint64_t mem;          /* bytes per worker */
    unsigned held_workers; /* live and draining: what holds memory now */
    uint64_t demand;       /* bytes: held plus every spawn asked for */
    uint64_t fair;         /* bytes: its max-min fair share when the wants do not all fit */
    unsigned limit;        /* workers: spawns beyond the floor stop here (the fair share) */
};

/* Arrivals as an exponentially decaying count: each arrival adds 1/tau and the sum decays with
 * e^(-dt/tau). Its expectation under a steady rate λ is λ, it needs no window boundaries, and
 * calls milliseconds apart (every enqueue) are as good as a regular tick. */
static void update_rate(const struct scaler_config *cfg, struct scaler_fn *st, uint64_t arrivals,
                        uint64_t now)
{
    double tau = (double)(cfg->rate_tau_us ? cfg->rate_tau_us : 1000000) / 1e6;
    if (st->rate_us && now > st->rate_us)
        st->rate *= exp(-((double)(now - st->rate_us) / 1e6) / tau);
    if (!st->rate_us || now > st->rate_us)
        st->rate_us = now;
    st->rate += (double)arrivals / tau;
    if (arrivals)
        st->last_arrival_us = now;
}

/* How many fresh containers to keep ready for an offered load a = λ × spawn latency, so that at
 * most `miss` of the arrivals find none. Each arrival takes a ready container and its
 * replacement is ready one spawn latency later: that is a loss system with k servers (the
 * containers being replaced), and an arrival is cold exactly when all k are being replaced, with
 * the probability Erlang B(a, k), whatever the latency's distribution. The recurrence is
 * B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)). At least one while active, at most cap. */
static unsigned fresh_reserve(double a, double miss, unsigned cap)
{
    double b = 1;
    unsigned k = 0;
    while (k < cap && (k == 0 || b > miss)) {
        k++;
        b = a * b / (k + a * b);
    }
    return k;
}

static unsigned hold_max(const struct scaler_fn *st)
{
    unsigned m = 0;
    for (size_t k = 0; k < SCALER_HOLD_BUCKETS; k++)
        m = umax(m, st->hold_bucket[k]);
    return m;
}

/* The held target is the maximum desire over a trailing window of idle_timeout_s, kept in
 * SCALER_HOLD_BUCKETS buckets of a window's fraction each: a bucket is cleared when the window
 * has moved past it, so the held value falls at most window/buckets late. */
static void hold_update(struct scaler_fn *st, uint64_t window, uint64_t now, unsigned desired)
{
    uint64_t width = window / SCALER_HOLD_BUCKETS;
    if (width == 0)
        width = 1;
    uint64_t epoch = now / width;
    if (width != st->hold_width) {
        /* A new idle_timeout_s (a new version): keep what is held, on the new grid. */
        unsigned held = hold_max(st);
        for (size_t k = 0; k < SCALER_HOLD_BUCKETS; k++)
            st->hold_bucket[k] = held;
        st->hold_width = width;
        st->hold_epoch = epoch;
    }
    if (epoch > st->hold_epoch) {
        uint64_t gap = epoch - st->hold_epoch;
        for (uint64_t k = 1; k <= gap && k <= SCALER_HOLD_BUCKETS; k++)
            st->hold_bucket[(st->hold_epoch + k) % SCALER_HOLD_BUCKETS] = 0;
        st->hold_epoch = epoch;
    }
    unsigned *b = &st->hold_bucket[st->hold_epoch % SCALER_HOLD_BUCKETS];
    *b = umax(*b, desired);
}

/* Per-function targets, spawns wanted per tier, and the held target for scale-down. */
static void plan_function(const struct scaler_config *cfg, const struct scaler_input *in,
                          double cpus, uint64_t now, struct plan *p)
{
    struct scaler_fn *st = in->st;
    unsigned c = in->concurrency ? in->concurrency : 1;
    unsigned max_scale = in->max_scale;
    unsigned lo = umin(in->min_scale, max_scale);
    unsigned live = clamp_count(in->nready + in->nbusy + in->nspawning);
    uint64_t window = (uint64_t)in->idle_timeout_s * 1000000;
    unsigned cap, urgent, spec;
    enum scaler_reason cap_reason = SCALER_REASON_MAX_SCALE;

    update_rate(cfg, st, in->arrivals, now);
    st->cpu_cap = 0;
    p->mem = (uint64_t)in->memory_mb << 20;
    p->urgent_reason = SCALER_REASON_QUEUE;

    if (in->reuse) {
        /* Slots for everything queued and running, now. The queue is exact (not a sampled
         * average as in Knative), so this need is already the jump a burst calls for. */
        uint64_t demand = (uint64_t)in->inflight + in->queued;
        unsigned need = clamp_count((demand + c - 1) / c);
        unsigned serving = clamp_count(in->nready + in->nbusy);
        if (need > serving && need >= cfg->panic_threshold * (serving ? serving : 1)) {
            if (!st->panic)
                st->panic_peak = 0;
            st->panic = true;
            st->panic_until_us = now + cfg->panic_window_us;
        } else if (st->panic && (now >= st->panic_until_us || demand == 0)) {
            /* With nothing queued or running the burst is over: the held target (below) keeps
             * the pool for idle_timeout_s from here, not from the panic window's end. */
            st->panic = false;
            st->panic_peak = 0;
        }
        urgent = need;
        if (st->panic) {
            /* As Knative's panic mode: the target never goes down while the burst lasts, so
             * the dips between a closed-loop client's requests do not cost cold starts. */
            st->panic_peak = umax(st->panic_peak, need);
            urgent = st->panic_peak;
            p->urgent_reason = SCALER_REASON_PANIC;
        }
        spec = urgent;
        cap = max_scale;
        /* Little's law on CPU: an invocation that takes c seconds of CPU in w of wall time
         * keeps cpus × w / c of them running at once busy enough to fill the CPUs; more
         * containers only queue for a CPU. w / c is the least seen lately (an invocation that
         * waited for a CPU reports a longer w, and that would argue for ever more containers).
         * Never below the floor, never 0: no scale-from-zero waits for a measurement, and an
         * I/O-bound function's cap is far above any max_scale. Workers above it are retired
         * (scaler_decide), so not what runs now either: they finish what they run. */
        double r = wall_per_cpu(cfg, st, now);
        double slots = cfg->cpu_headroom * cpus * r;
        if (cpus > 0 && r > 0 && slots < (double)UINT32_MAX) {
            unsigned workers = clamp_count(((size_t)ceil(slots) + c - 1) / c);
            unsigned cpu_cap = umax(workers, umax(lo, 1));
            if (cpu_cap < cap) {
                cap = cpu_cap;
                cap_reason = SCALER_REASON_CPU;
                st->cpu_cap = cpu_cap;
            }
        }
        p->counted = live;
    } else {
        /* Fresh containers: one per queued invocation, plus a reserve for the arrivals expected
         * during one spawn latency (fresh_reserve), for as long as the function has been called
         * within its idle_timeout_s. A container running its invocation does not count: it is
         * spent. */
        st->panic = false;
        bool active = st->last_arrival_us && now - st->last_arrival_us < window;
        uint64_t latency =
            in->spawn_latency_us ? in->spawn_latency_us : cfg->default_spawn_latency_us;
        unsigned prewarm = 0;
        if (active)
            prewarm = fresh_reserve(st->rate * ((double)latency / 1e6) * cfg->prewarm_headroom,
                                    cfg->prewarm_miss, max_scale);
        urgent = clamp_count(in->queued);
        spec = urgent + prewarm < urgent ? UINT32_MAX : urgent + prewarm;
        unsigned busy = clamp_count(in->nbusy);
        cap = sat_sub(max_scale, busy);
        p->counted = clamp_count(in->nready + in->nspawning);
    }

    unsigned t_floor = umin(lo, cap);
    unsigned t_urgent = umin(umax(urgent, t_floor), cap);
    unsigned t_spec = umin(umax(spec, t_urgent), cap);
    if (umax(spec, lo) > cap)
        p->held = cap_reason;
    p->want[TIER_FLOOR] = sat_sub(t_floor, p->counted);
    p->want[TIER_URGENT] = sat_sub(t_urgent, umax(p->counted, t_floor));
    p->want[TIER_SPEC] = sat_sub(t_spec, umax(p->counted, t_urgent));
    memcpy(p->asked, p->want, sizeof(p->asked));
    p->grows = p->want[TIER_FLOOR] || p->want[TIER_URGENT] || p->want[TIER_SPEC];

    /* Hysteresis: scale-up is immediate, but the target only comes down to the largest
     * desire of the last idle_timeout_s, so a load flapping around a threshold keeps its pool
     * and a load that stopped is let go after idle_timeout_s. */
    unsigned desired = t_spec;
    hold_update(st, window, now, desired);
    /* Fresh containers need no held target: the reserve is used up by the next arrivals, and
     * one left over goes only once it has sat idle for idle_timeout_s, which is already the
     * hysteresis (the reserve itself is active for idle_timeout_s after the last arrival). */
    st->hold = in->reuse ? hold_max(st) : desired;
    st->desired = umin(st->hold, cap);

    /* Idle workers above the held target may go once idle for idle_timeout_s, and only they
     * may be taken for another function's memory, down to the floor. */
    p->reapable = st->panic ? 0 : sat_sub(p->counted, lo);
    if (in->queued)
        p->reapable = 0;
}

struct candidate {
    uint64_t idle_since_us;
    uint64_t id;
    size_t fn;
    size_t slot; /* index over every function's idle list, for `taken` */
};

static int candidate_cmp(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;
    if (x->idle_since_us != y->idle_since_us)
        return x->idle_since_us < y->idle_since_us ? -1 : 1;
    if (x->fn != y->fn)
        return x->fn < y->fn ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return 0;
}

static uint64_t umin64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static unsigned spawned_total(const struct plan *p)
{
    return p->spawned[TIER_FLOOR] + p->spawned[TIER_URGENT] + p->spawned[TIER_SPEC];
}

/* The memory of the floor and urgent spawns p asked for and did not get. */
static uint64_t unmet_mem(const struct plan *p)
{
    return (uint64_t)(sat_sub(p->asked[TIER_FLOOR], p->spawned[TIER_FLOOR]) +
                      sat_sub(p->asked[TIER_URGENT], p->spawned[TIER_URGENT])) *
           p->mem;
}

/* Where function i's idle workers start in the list over every function's idle workers. */
static size_t idle_offset(const struct scaler_input *in, size_t i)
{
    size_t off = 0;
    for (size_t k = 0; k < i; k++)
        off += in[k].nidle;
    return off;
}

static void reap(struct scaler_action *actions, size_t *nactions, struct plan *p,
                 const struct candidate *c, bool *taken, enum scaler_reason reason)
{
    actions[(*nactions)++] =
        (struct scaler_action){.kind = SCALER_REAP, .fn = c->fn, .worker = c->id, .reason = reason};
    taken[c->slot] = true;
    p->reaped++;
    p->reap_reason = reason;
}

/* Retires function i's next running worker (the caller lists them first to go first). */
static void retire(struct scaler_action *actions, size_t *nactions, struct plan *p,
                   const struct scaler_input *in, size_t i, enum scaler_reason reason)
{
    actions[(*nactions)++] = (struct scaler_action){.kind = SCALER_RETIRE,
                                                    .fn = i,
                                                    .worker = in[i].running[p->next_running++],
                                                    .reason = reason};
    p->retired++;
    p->reap_reason = reason;
}

/* The host's spawn budget for one decision. */
struct budget {
    unsigned tokens; /* whole tokens available */
    unsigned slots;  /* spawns that may still start */
    uint64_t mem_avail, mem_used, mem_reserved;
    unsigned tokens_used;
};

/* One spawn for p if the host allows it; otherwise records what held it back. */
static bool try_spawn(struct budget *b, struct plan *p, int tier)
{
    if (tier != TIER_FLOOR && p->held_workers + spawned_total(p) >= p->limit) {
        p->held = SCALER_REASON_OVER_BUDGET;
        return false;
    }
    if (b->tokens == 0 || b->slots == 0) {
        p->held = b->slots == 0 ? SCALER_REASON_SPAWN_CONCURRENCY : SCALER_REASON_SPAWN_RATE;
        return false;
    }
    uint64_t reserved = tier == TIER_FLOOR ? 0 : b->mem_reserved;
    if (b->mem_used + reserved > b->mem_avail || p->mem > b->mem_avail - b->mem_used - reserved) {
        p->held = SCALER_REASON_OVER_BUDGET;
        if (tier != TIER_SPEC)
            p->mem_blocked = true;
        return false;
    }
    b->tokens--;
    b->slots--;
    b->tokens_used++;
    b->mem_used += p->mem;
    p->spawned[tier]++;
    return true;
}

/* Round-robin, one spawn at a time, from the cursor: a function that wants 200 and one that
 * wants 3 alternate until the second is served, whoever asks first. */
static void serve_tier(struct budget *b, struct plan *plans, size_t n, size_t cursor, int tier)
{
    bool progress = true;
    while (progress) {
        progress = false;
        for (size_t k = 0; k < n; k++) {
            struct plan *p = &plans[(cursor + k) % n];
            if (p->spawned[tier] >= p->want[tier])
                continue;
            if (try_spawn(b, p, tier))
                progress = true;
            else
                p->want[tier] = p->spawned[tier]; /* done for this call */
        }
    }
}

static void record(struct scaler_fn *st, const struct plan *p, uint64_t now)
{
    unsigned spawned = spawned_total(p);
    unsigned reaped = p->reaped + p->retired;
    if (!spawned && !reaped && p->held == SCALER_REASON_NONE)
        return;
    enum scaler_reason reason = p->held;
    unsigned most = 0;
    static const enum scaler_reason tier_reason[_TIER_MAX] = {
        SCALER_REASON_MIN_SCALE, SCALER_REASON_QUEUE, SCALER_REASON_PREWARM};
    for (int t = 0; t < _TIER_MAX; t++)
        if (p->spawned[t] > most) {
            most = p->spawned[t];
            reason = t == TIER_URGENT ? p->urgent_reason : tier_reason[t];
        }
    if (reaped > most)
        reason = p->reap_reason;
    st->last = (struct scaler_decision){
        .at_us = now,
        .desired = st->desired,
        .spawned = spawned,
        .reaped = reaped,
        .reason = reason,
        .held = p->held,
    };
}

struct share {
    uint64_t demand;
    size_t fn;
};

static int share_cmp(const void *a, const void *b)
{
    const struct share *x = a, *y = b;
    if (x->demand != y->demand)
        return x->demand < y->demand ? -1 : 1;
    return x->fn < y->fn ? -1 : x->fn > y->fn;
}

/* Max-min fair shares of `total` bytes (water-filling): smallest demand first, each gets its
 * demand or an equal part of what is left, whichever is less. A function wanting little gets
 * all it wants; the rest split what remains evenly. Returns false (shares unlimited) when every
 * demand fits. */
static bool fair_shares(struct plan *plans, size_t n, uint64_t total, struct share *order)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        order[i] = (struct share){plans[i].demand, i};
        sum = sum + plans[i].demand < sum ? UINT64_MAX : sum + plans[i].demand;
    }
    if (sum <= total)
        return false;
    qsort(order, n, sizeof(*order), share_cmp);
    uint64_t left = total;
    for (size_t k = 0; k < n; k++) {
        uint64_t part = left / (n - k);
        uint64_t give = order[k].demand < part ? order[k].demand : part;
        plans[order[k].fn].fair = give;
        left -= give;
    }
    return true;
}

/* One decision's working state, shared by its phases below. */
struct decision {
    const struct scaler_input *in;
    size_t n;
    uint64_t now_us;
    struct plan *plans;
    struct candidate *cands; /* scratch: reap candidates */
    bool *taken;             /* by idle_offset(): the idle worker is reaped already */
    struct scaler_action *actions;
    size_t nactions;
};

/* The token bucket refills with time; the first call finds it full. */
static void refill_tokens(struct scaler_state *s, uint64_t now_us)
{
    const struct scaler_config *cfg = &s->cfg;
    if (!s->started) {
        s->tokens = cfg->spawn_burst;
        s->started = true;
    } else if (now_us > s->last_us) {
        s->tokens += (double)(now_us - s->last_us) / 1e6 * cfg->spawn_rate;
        if (s->tokens > cfg->spawn_burst)
            s->tokens = cfg->spawn_burst;
    }
    if (now_us > s->last_us)
        s->last_us = now_us;
}

/* Every function's plan (what it wants, tier by tier); returns the spawns in progress and sets
 * *ret_known to the memory the listed functions' workers hold. */
static size_t plan_all(struct decision *x, const struct scaler_config *cfg,
                       const struct scaler_host *host, uint64_t *ret_known)
{
    const struct scaler_input *in = x->in;
    size_t spawning = 0;
    uint64_t known = 0;
    for (size_t i = 0; i < x->n; i++) {
        struct plan *p = &x->plans[i];
        plan_function(cfg, &in[i], host->cpus, x->now_us, p);
        spawning += in[i].nspawning;
        p->held_workers =
            clamp_count(in[i].nready + in[i].nbusy + in[i].nspawning + in[i].ndraining);
        uint64_t asked =
            (uint64_t)p->asked[TIER_FLOOR] + p->asked[TIER_URGENT] + p->asked[TIER_SPEC];
        p->demand = (p->held_workers + asked) * p->mem;
        known += (uint64_t)p->held_workers * p->mem;
    }
    *ret_known = known;
    return spawning;
}

/* When the wants do not all fit, each function's spawns beyond its floor stop at its fair
 * share of the memory the functions can have (the budget less what other containers hold),
 * so a burst cannot take everything; the floors were reserved before any share. Returns
 * whether memory is contended. */
static bool set_limits(struct decision *x, const struct scaler_host *host, uint64_t known,
                       struct share *order)
{
    const struct scaler_input *in = x->in;
    uint64_t other = host->memory_committed > known ? host->memory_committed - known : 0;
    uint64_t total = host->memory_budget > other ? host->memory_budget - other : 0;
    bool contended = fair_shares(x->plans, x->n, total, order);
    for (size_t i = 0; i < x->n; i++) {
        struct plan *p = &x->plans[i];
        uint64_t floor_mem = (uint64_t)umin(in[i].min_scale, in[i].max_scale) * p->mem;
        if (!contended) {
            p->fair = UINT64_MAX;
            p->limit = UINT32_MAX;
            continue;
        }
        if (p->fair < floor_mem)
            p->fair = floor_mem;
        p->limit = p->mem ? clamp_count(p->fair / p->mem) : UINT32_MAX;
    }
    return contended;
}

/* Spends the host's spawn budget, tier by tier, starting at a rotating function; returns what
 * was used. */
static struct budget serve_spawns(struct decision *x, struct scaler_state *s,
                                  const struct scaler_host *host, size_t spawning)
{
    const struct scaler_config *cfg = &s->cfg;
    const struct scaler_input *in = x->in;
    size_t n = x->n;
    struct budget b = {
        .tokens = s->tokens >= 1 ? (unsigned)fmin(s->tokens, (double)UINT32_MAX) : 0,
        .slots = spawning < cfg->max_spawning ? cfg->max_spawning - (unsigned)spawning : 0,
        .mem_avail = host->memory_budget > host->memory_committed
                         ? host->memory_budget - host->memory_committed
                         : 0,
    };
    size_t cursor = n ? s->cursor % n : 0;

    /* Floors first, then the memory of floors still unmet is kept from everyone else, so one
     * function's burst can never take what another's min_scale needs. A floor larger than the
     * whole budget is not reserved: it can never be met and would block every function. */
    serve_tier(&b, x->plans, n, cursor, TIER_FLOOR);
    for (size_t i = 0; i < n; i++) {
        struct plan *p = &x->plans[i];
        unsigned unmet = sat_sub(umin(in[i].min_scale, in[i].max_scale), p->counted);
        unmet = sat_sub(unmet, p->spawned[TIER_FLOOR]);
        uint64_t floor_mem = (uint64_t)umin(in[i].min_scale, in[i].max_scale) * p->mem;
        if (unmet && floor_mem <= host->memory_budget)
            b.mem_reserved += (uint64_t)unmet * p->mem;
    }
    serve_tier(&b, x->plans, n, cursor, TIER_URGENT);
    serve_tier(&b, x->plans, n, cursor, TIER_SPEC);
    s->tokens -= b.tokens_used;
    if (n)
        s->cursor = (cursor + 1) % n;
    return b;
}

/* Spawn actions, one per function and tier. */
static void spawn_actions(struct decision *x)
{
    for (size_t i = 0; i < x->n; i++)
        for (int t = 0; t < _TIER_MAX; t++) {
            const struct plan *p = &x->plans[i];
            if (!p->spawned[t])
                continue;
            enum scaler_reason r = t == TIER_FLOOR    ? SCALER_REASON_MIN_SCALE
                                   : t == TIER_URGENT ? p->urgent_reason
                                                      : SCALER_REASON_PREWARM;
            x->actions[x->nactions++] = (struct scaler_action){
                .kind = SCALER_SPAWN, .fn = i, .count = p->spawned[t], .reason = r};
        }
}

/* Idle reaps: above the held target, idle for idle_timeout_s, oldest first, never below
 * the floor and never in panic. Only workers the caller listed as idle can be named. */
static void reap_idle(struct decision *x)
{
    const struct scaler_input *in = x->in;
    for (size_t i = 0; i < x->n; i++) {
        struct plan *p = &x->plans[i];
        struct scaler_fn *st = in[i].st;
        size_t off = idle_offset(in, i);
        if (p->grows || st->panic || p->counted <= st->desired)
            continue;
        unsigned excess =
            sat_sub(p->counted, umax(st->desired, umin(in[i].min_scale, in[i].max_scale)));
        uint64_t limit = (uint64_t)in[i].idle_timeout_s * 1000000;
        size_t nc = 0;
        for (size_t w = 0; w < in[i].nidle; w++) {
            const struct scaler_worker *wk = &in[i].idle[w];
            if (x->now_us >= wk->idle_since_us && x->now_us - wk->idle_since_us >= limit)
                x->cands[nc++] = (struct candidate){wk->idle_since_us, wk->id, i, off + w};
        }
        qsort(x->cands, nc, sizeof(*x->cands), candidate_cmp);
        for (size_t k = 0; k < nc && p->reaped < excess; k++)
            reap(x->actions, &x->nactions, p, &x->cands[k], x->taken, SCALER_REASON_IDLE);
    }
}

/* Over the CPU cap (a pool that grew before the function was measured, or a cap that came
 * down): the excess goes at once, idle workers oldest first, then running ones retired to
 * go when what they run is done. A queue does not keep them: it is waiting for a CPU, not
 * for a container. */
static void shed_over_cpu(struct decision *x)
{
    const struct scaler_input *in = x->in;
    for (size_t i = 0; i < x->n; i++) {
        struct plan *p = &x->plans[i];
        const struct scaler_fn *st = in[i].st;
        if (!in[i].reuse || !st->cpu_cap || p->grows)
            continue;
        unsigned still = sat_sub(p->counted, p->reaped + p->retired);
        unsigned excess = sat_sub(still, st->cpu_cap);
        size_t off = idle_offset(in, i), nc = 0;
        for (size_t w = 0; w < in[i].nidle; w++)
            if (!x->taken[off + w])
                x->cands[nc++] =
                    (struct candidate){in[i].idle[w].idle_since_us, in[i].idle[w].id, i, off + w};
        qsort(x->cands, nc, sizeof(*x->cands), candidate_cmp);
        for (size_t k = 0; k < nc && excess; k++, excess--)
            reap(x->actions, &x->nactions, p, &x->cands[k], x->taken, SCALER_REASON_CPU);
        for (; excess && p->next_running < in[i].nrunning; excess--)
            retire(x->actions, &x->nactions, p, in, i, SCALER_REASON_CPU);
    }
}

/* Over budget: when a floor or waiting work could not get memory, idle workers of functions
 * with nothing waiting and above their floor make room, oldest idle first. The memory comes
 * back when the caller has destroyed them, for the next decision. Sets *ret_blocked to the
 * memory that was wanted and *ret_freed to what is coming back. */
static void reap_over_budget(struct decision *x, const struct budget *b, uint64_t *ret_blocked,
                             uint64_t *ret_freed)
{
    const struct scaler_input *in = x->in;
    uint64_t blocked = 0, freed = b->mem_avail - b->mem_used;
    for (size_t i = 0; i < x->n; i++) {
        struct plan *p = &x->plans[i];
        if (p->mem_blocked)
            blocked += unmet_mem(p);
        freed += (uint64_t)p->reaped * p->mem;
    }
    if (blocked > freed) {
        size_t nc = 0;
        for (size_t i = 0; i < x->n; i++) {
            size_t off = idle_offset(in, i);
            if (x->plans[i].grows || !x->plans[i].reapable)
                continue;
            for (size_t w = 0; w < in[i].nidle; w++)
                if (!x->taken[off + w])
                    x->cands[nc++] = (struct candidate){in[i].idle[w].idle_since_us,
                                                        in[i].idle[w].id, i, off + w};
        }
        qsort(x->cands, nc, sizeof(*x->cands), candidate_cmp);
        for (size_t k = 0; k < nc && freed < blocked; k++) {
            struct plan *p = &x->plans[x->cands[k].fn];
            if (p->reaped >= p->reapable)
                continue;
            reap(x->actions, &x->nactions, p, &x->cands[k], x->taken, SCALER_REASON_OVER_BUDGET);
            freed += p->mem;
        }
    }
    *ret_blocked = blocked;
    *ret_freed = freed;
}

/* The function furthest over its fair share that can still give a worker (an idle one not
 * taken, or a running one with reuse), above its floor; SIZE_MAX: none. */
static size_t furthest_over_share(const struct decision *x)
{
    const struct scaler_input *in = x->in;
    size_t vi = SIZE_MAX;
    uint64_t most = 0;
    for (size_t i = 0; i < x->n; i++) {
        const struct plan *p = &x->plans[i];
        unsigned keep = umin(in[i].min_scale, in[i].max_scale);
        unsigned still =
            sat_sub(p->held_workers, clamp_count(in[i].ndraining) + p->reaped + p->retired);
        uint64_t holds = (uint64_t)still * p->mem;
        bool can = p->next_running < in[i].nrunning && in[i].reuse;
        for (size_t w = 0, o = idle_offset(in, i); !can && w < in[i].nidle; w++)
            can = !x->taken[o + w];
        if (!can || still <= keep || holds < p->fair + p->mem)
            continue;
        if (holds - p->fair > most) {
            most = holds - p->fair;
            vi = i;
        }
    }
    return vi;
}

/* Fair shares: a function holding more than its share gives the excess back while a
 * function under its share finds no memory, idle workers first, then (reuse true) running
 * ones, retired to go when their invocations end. A retired worker is draining: its memory
 * counts as coming back, so it is retired once, not again on every decision until it is
 * gone, and its function cannot spawn into it meanwhile. */
static void give_back_shares(struct decision *x, uint64_t freed)
{
    const struct scaler_input *in = x->in;
    /* What draining workers hold is on its way back already. */
    for (size_t i = 0; i < x->n; i++)
        freed += (uint64_t)clamp_count(in[i].ndraining) * x->plans[i].mem;
    uint64_t shortfall = 0;
    for (size_t j = 0; j < x->n; j++) {
        struct plan *p = &x->plans[j];
        uint64_t held = (uint64_t)(p->held_workers + spawned_total(p)) * p->mem;
        if (p->mem_blocked && held < p->fair)
            shortfall += umin64(p->fair - held, unmet_mem(p));
    }
    while (freed < shortfall) {
        /* The function furthest over its share gives one worker. */
        size_t vi = furthest_over_share(x);
        if (vi == SIZE_MAX)
            break;
        struct plan *v = &x->plans[vi];
        size_t o = idle_offset(in, vi), pickw = SIZE_MAX;
        for (size_t w = 0; w < in[vi].nidle; w++)
            if (!x->taken[o + w] && (pickw == SIZE_MAX || in[vi].idle[w].idle_since_us <
                                                              in[vi].idle[pickw].idle_since_us))
                pickw = w;
        if (pickw != SIZE_MAX) {
            struct candidate c = {in[vi].idle[pickw].idle_since_us, in[vi].idle[pickw].id, vi,
                                  o + pickw};
            reap(x->actions, &x->nactions, v, &c, x->taken, SCALER_REASON_OVER_BUDGET);
        } else
            retire(x->actions, &x->nactions, v, in, vi, SCALER_REASON_OVER_BUDGET);
        freed += v->mem;
    }
}

int scaler_decide(struct scaler_state *s, const struct scaler_host *host,
                  const struct scaler_input *in, size_t n, uint64_t now_us,
                  struct scaler_action **ret_actions, size_t *ret_n)
{
    if (!s || !host || (n && !in) || !ret_actions || !ret_n)
        return -EINVAL;
    size_t max_actions = 0, nidle = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in[i].st || (in[i].nidle && !in[i].idle) || (in[i].nrunning && !in[i].running))
            return -EINVAL;
        max_actions += _TIER_MAX + in[i].nidle + in[i].nrunning;
        nidle += in[i].nidle;
    }

    _cleanup_free_ struct plan *plans = calloc(n ? n : 1, sizeof(*plans));
    _cleanup_free_ struct candidate *cands = calloc(nidle ? nidle : 1, sizeof(*cands));
    _cleanup_free_ struct share *order = calloc(n ? n : 1, sizeof(*order));
    _cleanup_free_ bool *taken = calloc(nidle ? nidle : 1, sizeof(*taken));
    _cleanup_free_ struct scaler_action *actions =
        max_actions ? calloc(max_actions, sizeof(*actions)) : NULL;
    if (!plans || !cands || !order || !taken || (max_actions && !actions))
        return -ENOMEM;
    struct decision x = {.in = in,
                         .n = n,
                         .now_us = now_us,
                         .plans = plans,
                         .cands = cands,
                         .taken = taken,
                         .actions = actions};

    refill_tokens(s, now_us);
    uint64_t known;
    size_t spawning = plan_all(&x, &s->cfg, host, &known);
    bool contended = set_limits(&x, host, known, order);
    struct budget b = serve_spawns(&x, s, host, spawning);
    spawn_actions(&x);
    reap_idle(&x);
    shed_over_cpu(&x);
    uint64_t blocked, freed;
    reap_over_budget(&x, &b, &blocked, &freed);
    if (contended && blocked > freed)
        give_back_shares(&x, freed);

    for (size_t i = 0; i < n; i++)
        record(in[i].st, &plans[i], now_us);

    *ret_n = x.nactions;
    *ret_actions = x.nactions ? TAKE_PTR(actions) : NULL;
    return 0;
}

int scaler_memory_budget(const char *meminfo, unsigned percent, uint64_t *ret_bytes)
{
    if (!meminfo || percent == 0 || percent > 100 || !ret_bytes)
        return -EINVAL;
    for (const char *line = meminfo; line && *line;) {
        if (startswith(line, "MemTotal:")) {
            const char *p = line + strlen("MemTotal:");
            while (*p == ' ' || *p == '\t')
                p++;
            if (!isdigit((unsigned char)*p))
                return -EINVAL;
            uint64_t kb = 0;
            for (; isdigit((unsigned char)*p); p++) {
                if (kb > (UINT64_MAX - 9) / 10)
                    return -ERANGE;
                kb = kb * 10 + (uint64_t)(*p - '0');
            }
            while (*p == ' ' || *p == '\t')
                p++;
            /* The kernel has always written "kB" here (fs/proc/meminfo.c, show_val_kb). */
            if (!startswith(p, "kB"))
                return -EINVAL;
            p += 2;
            if (*p && *p != '\n' && *p != ' ')
                return -EINVAL;
            if (kb > UINT64_MAX / 1024 / 100)
                return -ERANGE;
            *ret_bytes = kb * 1024 * percent / 100;
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -EINVAL;
}

int scaler_host_cpus(unsigned ncpu, const char *cpu_max, double *ret_cpus)
{
    if (ncpu == 0)
        return -EINVAL;
    double cpus = ncpu;
    if (cpu_max) {
        /* "$MAX $PERIOD" (Documentation/admin-guide/cgroup-v2.rst, "cpu.max"); $MAX is "max"
         * for no limit. */
        const char *p = cpu_max;
        unsigned long long quota = 0, period = 0;
        bool limited = !startswith(p, "max");
        if (limited) {
            char *end;
            errno = 0;
            quota = strtoull(p, &end, 10);
            if (errno || end == p || !isdigit((unsigned char)*p) || *end != ' ')
                return -EINVAL;
            p = end;
        } else
            p += strlen("max");
        if (*p++ != ' ' || !isdigit((unsigned char)*p))
            return -EINVAL;
        char *end;
        errno = 0;
        period = strtoull(p, &end, 10);
        if (errno || period == 0 || (*end && *end != '\n') || (*end && end[1]))
            return -EINVAL;
        if (limited && quota == 0)
            return -EINVAL;
        if (limited && (double)quota / (double)period < cpus)
            cpus = (double)quota / (double)period;
    }
    *ret_cpus = cpus;
    return 0;
}

void scaler_view(const struct scaler_fn *f, struct scaler_view *ret)
{
    *ret = (struct scaler_view){
        .desired = f->desired,
        .arrival_rate = f->rate,
        .panic = f->panic,
        .last_at_us = f->last.at_us,
        .last_spawned = f->last.spawned,
        .last_reaped = f->last.reaped,
        .last_reason = scaler_reason_name(f->last.reason),
        .last_held = scaler_reason_name(f->last.held),
        .cpu_ms = f->cpu_us / 1e3,
        .cpu_cap = f->cpu_cap,
    };
}

int scaler_format(const struct scaler_view *v, char *buf, size_t size)
{
    return snprintf(buf, size, "desired=%u spawned=%u reaped=%u reason=%s held=%s panic=%s",
                    v->desired, v->last_spawned, v->last_reaped, v->last_reason, v->last_held,
                    v->panic ? "yes" : "no");
}
