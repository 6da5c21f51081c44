/* The scaler's policy, driven through scenarios by a small simulator with a simulated clock:
 * containers become ready one spawn latency after the scaler asks for them, invocations take
 * their duration, the dispatcher gives queued work to the most recently idle worker, and the
 * scaler is asked once per simulated millisecond. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "dispatch/scaler.h"
#include "base/util.h"

#define MS          1000ull
#define SEC         1000000ull
#define MB          (1ull << 20)
#define MAX_WORKERS 1024
#define MAX_QUEUE   4096
#define MAX_RUN     4096

enum wstate { W_SPAWNING, W_READY, W_BUSY, W_DRAINING };

struct sim_worker {
    uint64_t id;
    enum wstate state;
    uint64_t ready_at, idle_since;
    unsigned inflight;
    unsigned served;
};

struct sim_run {
    uint64_t worker;
    uint64_t done_at;
};

struct sim_fn {
    const char *name;
    struct scaler_fn st;
    /* the manifest */
    bool reuse;
    unsigned concurrency, min_scale, max_scale, idle_timeout_s, memory_mb;
    uint64_t spawn_latency, duration;
    uint64_t cpu; /* CPU per invocation, reported to scaler_observe; 0: none reported */
    /* the load: an open Poisson rate (per second) and/or closed-loop clients */
    double rate;
    unsigned clients;
    /* state */
    struct sim_worker w[MAX_WORKERS];
    size_t nw;
    uint64_t queue[MAX_QUEUE]; /* arrival times, FIFO */
    size_t qhead, qlen;
    struct sim_run run[MAX_RUN];
    size_t nrun;
    uint64_t arrivals;
    /* what happened */
    unsigned spawns, reaps, retires;
    unsigned by_reason[_SCALER_REASON_MAX];
    unsigned arrived, served, waited; /* waited: found no free slot on arrival */
    uint64_t max_wait;
};

struct sim {
    struct scaler_state s;
    uint64_t now;
    uint64_t budget, other_committed; /* memory held by containers the scaler does not see */
    double cpus;                      /* the host's CPUs; 0: unknown, no CPU cap */
    struct sim_fn *fns[4];
    size_t n;
    uint64_t next_id;
    uint64_t rng;
    /* host-wide observations */
    unsigned max_spawning;
    uint64_t max_committed;
    uint64_t spawn_times[8192];
    size_t nspawn_times;
};

static uint64_t rng_next(struct sim *sim)
{
    /* xorshift64*: deterministic, so a scenario is the same on every run. */
    sim->rng ^= sim->rng >> 12;
    sim->rng ^= sim->rng << 25;
    sim->rng ^= sim->rng >> 27;
    return sim->rng * 0x2545F4914F6CDD1Dull;
}

static unsigned poisson(struct sim *sim, double mean)
{
    double l = exp(-mean), p = 1;
    unsigned k = 0;
    do {
        k++;
        p *= (double)(rng_next(sim) >> 11) / 9007199254740992.0;
    } while (p > l);
    return k - 1;
}

static void sim_init(struct sim *sim, const struct scaler_config *cfg, uint64_t budget)
{
    memset(sim, 0, sizeof(*sim));
    scaler_init(&sim->s, cfg);
    sim->now = 1 * SEC;
    sim->budget = budget;
    sim->rng = 0x9E3779B97F4A7C15ull;
}

static struct sim_fn *fn_new(const char *name, bool reuse)
{
    struct sim_fn *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->name = name;
    scaler_fn_init(&f->st);
    f->reuse = reuse;
    f->concurrency = 1;
    f->min_scale = 0;
    f->max_scale = 1000;
    f->idle_timeout_s = 10;
    f->memory_mb = 128;
    f->spawn_latency = 2 * MS;
    f->duration = 50 * MS;
    return f;
}

static void sim_add(struct sim *sim, struct sim_fn *f)
{
    assert_true(sim->n < ARRAY_SIZE(sim->fns));
    sim->fns[sim->n++] = f;
}

static size_t count(const struct sim_fn *f, enum wstate s)
{
    size_t c = 0;
    for (size_t i = 0; i < f->nw; i++)
        c += f->w[i].state == s;
    return c;
}

static size_t live(const struct sim_fn *f)
{
    return f->nw;
}

static uint64_t committed(const struct sim *sim)
{
    uint64_t c = sim->other_committed;
    for (size_t i = 0; i < sim->n; i++)
        c += (uint64_t)sim->fns[i]->nw * sim->fns[i]->memory_mb * MB;
    return c;
}

static struct sim_worker *find_worker(struct sim_fn *f, uint64_t id, size_t *ret_index)
{
    for (size_t i = 0; i < f->nw; i++)
        if (f->w[i].id == id) {
            if (ret_index)
                *ret_index = i;
            return &f->w[i];
        }
    return NULL;
}

static void remove_worker(struct sim_fn *f, size_t i)
{
    f->w[i] = f->w[--f->nw];
}

static void enqueue(struct sim_fn *f, uint64_t now)
{
    assert_true(f->qlen < MAX_QUEUE);
    f->queue[(f->qhead + f->qlen++) % MAX_QUEUE] = now;
    f->arrivals++;
    f->arrived++;
}

/* As the dispatcher: a warm pool gives work to the most recently idle worker, so the others age
 * out; fresh containers are used oldest first, so none sits in the reserve until it is reaped. */
static struct sim_worker *pick(struct sim_fn *f)
{
    struct sim_worker *best = NULL;
    for (size_t i = 0; i < f->nw; i++) {
        struct sim_worker *w = &f->w[i];
        if (w->state != W_READY || w->inflight >= f->concurrency)
            continue;
        if (!best ||
            (f->reuse ? w->idle_since > best->idle_since : w->idle_since < best->idle_since))
            best = w;
    }
    return best;
}

static void dispatch(struct sim *sim, struct sim_fn *f)
{
    while (f->qlen) {
        struct sim_worker *w = pick(f);
        if (!w)
            return;
        uint64_t arrived = f->queue[f->qhead];
        f->qhead = (f->qhead + 1) % MAX_QUEUE;
        f->qlen--;
        uint64_t wait = sim->now - arrived;
        if (wait > 0)
            f->waited++;
        if (wait > f->max_wait)
            f->max_wait = wait;
        /* A fresh container serves exactly one invocation. */
        if (!f->reuse)
            assert_int_equal(w->served, 0);
        w->served++;
        w->inflight++;
        if (w->inflight >= f->concurrency)
            w->state = W_BUSY;
        assert_true(f->nrun < MAX_RUN);
        f->run[f->nrun++] = (struct sim_run){w->id, sim->now + f->duration};
    }
}

static void advance(struct sim *sim, struct sim_fn *f)
{
    for (size_t r = 0; r < f->nrun;) {
        if (f->run[r].done_at > sim->now) {
            r++;
            continue;
        }
        size_t wi = 0;
        struct sim_worker *w = find_worker(f, f->run[r].worker, &wi);
        assert_non_null(w);
        f->run[r] = f->run[--f->nrun];
        f->served++;
        /* The simulated host never makes an invocation wait for a CPU: wall is its duration
         * (to the step), and the samples are those of an unloaded host. */
        if (f->cpu)
            scaler_observe(&sim->s.cfg, &f->st, f->cpu, f->duration, sim->now);
        w->inflight--;
        if (!f->reuse || (w->state == W_DRAINING && w->inflight == 0)) {
            remove_worker(f, wi); /* a used fresh container, or a retired one, is done */
            continue;
        }
        if (w->state == W_DRAINING)
            continue;
        w->state = W_READY;
        if (w->inflight == 0)
            w->idle_since = sim->now;
    }
    for (size_t i = 0; i < f->nw; i++) {
        struct sim_worker *w = &f->w[i];
        if (w->state == W_SPAWNING && w->ready_at <= sim->now) {
            w->state = W_READY;
            w->idle_since = sim->now;
        }
    }
    /* The load. */
    unsigned n = f->rate > 0 ? poisson(sim, f->rate / 1000.0) : 0;
    for (unsigned i = 0; i < n; i++)
        enqueue(f, sim->now);
    while (f->qlen + f->nrun < f->clients)
        enqueue(f, sim->now);
    dispatch(sim, f);
}

static void decide(struct sim *sim)
{
    struct scaler_input in[ARRAY_SIZE(sim->fns)] = {};
    struct scaler_worker idle[ARRAY_SIZE(sim->fns)][MAX_WORKERS];
    uint64_t running[ARRAY_SIZE(sim->fns)][MAX_WORKERS];
    for (size_t i = 0; i < sim->n; i++) {
        struct sim_fn *f = sim->fns[i];
        size_t nidle = 0, nrunning = 0;
        for (size_t k = 0; k < f->nw; k++) {
            if (f->w[k].state == W_READY && f->w[k].inflight == 0)
                idle[i][nidle++] = (struct scaler_worker){f->w[k].id, f->w[k].idle_since};
            else if (f->w[k].state == W_READY || f->w[k].state == W_BUSY)
                running[i][nrunning++] = f->w[k].id;
        }
        in[i] = (struct scaler_input){
            .st = &f->st,
            .reuse = f->reuse,
            .concurrency = f->concurrency,
            .min_scale = f->min_scale,
            .max_scale = f->max_scale,
            .idle_timeout_s = f->idle_timeout_s,
            .memory_mb = f->memory_mb,
            .queued = f->qlen,
            .inflight = f->nrun,
            .nready = count(f, W_READY),
            .nbusy = count(f, W_BUSY),
            .nspawning = count(f, W_SPAWNING),
            .ndraining = count(f, W_DRAINING),
            .idle = idle[i],
            .nidle = nidle,
            .running = running[i],
            .nrunning = nrunning,
            .arrivals = f->arrivals,
            .spawn_latency_us = f->spawn_latency,
        };
        f->arrivals = 0;
    }
    struct scaler_host host = {
        .memory_budget = sim->budget, .memory_committed = committed(sim), .cpus = sim->cpus};
    struct scaler_action *a = NULL;
    size_t na = 0;
    assert_int_equal(scaler_decide(&sim->s, &host, in, sim->n, sim->now, &a, &na), 0);
    for (size_t k = 0; k < na; k++) {
        assert_true(a[k].fn < sim->n);
        struct sim_fn *f = sim->fns[a[k].fn];
        f->by_reason[a[k].reason]++;
        if (a[k].kind == SCALER_SPAWN) {
            assert_true(a[k].count > 0);
            for (unsigned c = 0; c < a[k].count; c++) {
                assert_true(f->nw < MAX_WORKERS);
                f->w[f->nw++] = (struct sim_worker){.id = ++sim->next_id,
                                                    .state = W_SPAWNING,
                                                    .ready_at = sim->now + f->spawn_latency};
                f->spawns++;
                if (sim->nspawn_times < ARRAY_SIZE(sim->spawn_times))
                    sim->spawn_times[sim->nspawn_times++] = sim->now;
            }
        } else if (a[k].kind == SCALER_RETIRE) {
            /* Only running workers of a warm pool are retired; they finish, then go. */
            struct sim_worker *w = find_worker(f, a[k].worker, NULL);
            assert_non_null(w);
            assert_true(f->reuse);
            assert_true(w->state == W_READY || w->state == W_BUSY);
            assert_true(w->inflight > 0);
            w->state = W_DRAINING;
            f->retires++;
        } else {
            size_t wi;
            struct sim_worker *w = find_worker(f, a[k].worker, &wi);
            /* Only idle workers are ever reaped. */
            assert_non_null(w);
            assert_int_equal(w->state, W_READY);
            assert_int_equal(w->inflight, 0);
            remove_worker(f, wi);
            f->reaps++;
        }
    }
    free(a);
    /* The budget holds after every decision, and so does the host's spawn concurrency. */
    uint64_t c = committed(sim);
    if (c > sim->max_committed)
        sim->max_committed = c;
    unsigned spawning = 0;
    for (size_t i = 0; i < sim->n; i++)
        spawning += count(sim->fns[i], W_SPAWNING);
    if (spawning > sim->max_spawning)
        sim->max_spawning = spawning;
}

static void sim_step(struct sim *sim)
{
    sim->now += MS;
    for (size_t i = 0; i < sim->n; i++)
        advance(sim, sim->fns[i]);
    decide(sim);
    /* Containers the scaler just asked for may be ready at once in no time; work waits. */
}

static void sim_run(struct sim *sim, uint64_t duration)
{
    uint64_t end = sim->now + duration;
    while (sim->now < end)
        sim_step(sim);
}

static void sim_free(struct sim *sim)
{
    for (size_t i = 0; i < sim->n; i++)
        free(sim->fns[i]);
}

/* Spawns and reaps of f during a run, for the oscillation and steadiness checks. */
struct delta {
    unsigned spawns, reaps, arrived, waited;
};

static struct delta since(const struct sim_fn *f, const struct delta *before)
{
    return (struct delta){f->spawns - before->spawns, f->reaps - before->reaps,
                          f->arrived - before->arrived, f->waited - before->waited};
}

static struct delta mark(const struct sim_fn *f)
{
    return (struct delta){f->spawns, f->reaps, f->arrived, f->waited};
}

static void dump(const struct sim *sim, const struct sim_fn *f)
{
    char line[256];
    struct scaler_view v;
    scaler_view(&f->st, &v);
    scaler_format(&v, line, sizeof(line));
    print_message("  t=%.3fs %s live=%zu ready=%zu busy=%zu spawning=%zu queued=%zu spawns=%u "
                  "reaps=%u arrived=%u waited=%u max_wait=%.1fms rate=%.1f %s\n",
                  (double)sim->now / SEC, f->name, live(f), count(f, W_READY), count(f, W_BUSY),
                  count(f, W_SPAWNING), f->qlen, f->spawns, f->reaps, f->arrived, f->waited,
                  (double)f->max_wait / MS, v.arrival_rate, line);
}

#define BIG_BUDGET (1024ull * 1024 * MB) /* a terabyte: memory is not the question */

/* ---- scenarios ---- */

static void test_steady_reuse(void **state)
{
    /* 100/s of 50 ms: about 5 running at once. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("steady", true);
    f->rate = 100;
    sim_add(&sim, f);
    sim_run(&sim, 1 * SEC);
    struct delta d0 = mark(f);
    sim_run(&sim, 20 * SEC);
    struct delta d = since(f, &d0);
    dump(&sim, f);
    /* After the first second, the warm pool absorbs the load: under 5% wait, and the pool
     * neither grows nor shrinks more than a little around λ × d. */
    assert_true(d.arrived > 1800);
    assert_true(d.waited * 20 < d.arrived);
    /* A Poisson load's peaks move the held target a little: a handful of changes in 20 s and
     * 2000 invocations, not one per peak. */
    assert_true(d.spawns + d.reaps <= 10);
    assert_true(live(f) >= 5 && live(f) <= 20);
    sim_free(&sim);
}

static void test_steady_fresh(void **state)
{
    /* reuse false at half the spawn capacity (500/s): 250/s, each container used once. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("fresh", false);
    f->rate = 250;
    f->duration = 20 * MS;
    sim_add(&sim, f);
    sim_run(&sim, 1 * SEC);
    struct delta d0 = mark(f);
    sim_run(&sim, 10 * SEC);
    struct delta d = since(f, &d0);
    dump(&sim, f);
    assert_true(d.arrived > 2000);
    /* Under 5% cold starts after the first second (the integration test's criterion). */
    assert_true(d.waited * 20 < d.arrived);
    /* About one spawn per invocation, and a small reserve, not a pile of idle containers. */
    assert_true(d.spawns >= d.arrived - 10 && d.spawns <= d.arrived + 20);
    assert_true(count(f, W_READY) <= 10);
    assert_int_equal(f->by_reason[SCALER_REASON_IDLE], 0);
    sim_free(&sim);
}

static void test_step_reuse_panic(void **state)
{
    /* 0 → 200 concurrent clients against a function at zero. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("step", true);
    f->duration = 100 * MS;
    f->spawn_latency = 5 * MS;
    sim_add(&sim, f);
    sim_run(&sim, 100 * MS);
    assert_int_equal(live(f), 0);
    f->clients = 200;
    sim_step(&sim);
    /* The first decision jumps straight to the need, in panic, as far as the spawn limits
     * allow (32 at once host-wide). */
    assert_true(f->st.panic);
    assert_int_equal(f->st.desired, 200);
    assert_int_equal(f->spawns, 32);
    assert_int_equal(f->st.last.reason, SCALER_REASON_PANIC);
    assert_int_equal(f->st.last.held, SCALER_REASON_SPAWN_CONCURRENCY);
    uint64_t t0 = sim.now, t100 = 0;
    while (count(f, W_READY) + count(f, W_BUSY) < 200 && sim.now - t0 < 2 * SEC) {
        sim_step(&sim);
        if (!t100 && count(f, W_READY) + count(f, W_BUSY) >= 100)
            t100 = sim.now;
    }
    /* The first 100 come from the bucket's burst, 32 at a time: a few spawn latencies. */
    assert_true(t100 - t0 <= 25 * MS);
    dump(&sim, f);
    /* The bucket (100 at once, then 500/s) bounds the ramp: the last 100 take 200 ms. */
    assert_true(sim.now - t0 <= 260 * MS);
    assert_int_equal(f->spawns, 200); /* exactly the need: no overshoot */
    sim_run(&sim, 2 * SEC);
    assert_int_equal(f->spawns, 200);
    assert_int_equal(f->reaps, 0);
    assert_int_equal(f->qlen, 0);
    /* The burst is over once it has been served for a while: panic ends, the pool stays. */
    sim_run(&sim, 6 * SEC);
    assert_false(f->st.panic);
    assert_int_equal(live(f), 200);
    assert_true(f->by_reason[SCALER_REASON_PANIC] > 0);
    sim_free(&sim);
}

static void test_step_fresh(void **state)
{
    /* 0 → 200 concurrent clients, reuse false: every invocation needs a fresh container, so the
     * spawns follow the queue plus the reserve. 1 s invocations keep that at ~200 spawns/s,
     * under the 500/s spawn rate. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("step-fresh", false);
    f->duration = 1 * SEC;
    f->spawn_latency = 2 * MS;
    sim_add(&sim, f);
    sim_run(&sim, 100 * MS);
    f->clients = 200;
    sim_step(&sim);
    assert_int_equal(f->by_reason[SCALER_REASON_QUEUE], 1);
    assert_int_equal(f->spawns, 32);
    sim_run(&sim, 500 * MS);
    /* Within half a second every client is being served. */
    assert_int_equal(f->qlen, 0);
    assert_int_equal(f->nrun, 200);
    /* The clients now come back in the pattern the first ramp gave them: half at once, half
     * at the spawn rate. Fresh containers follow: nobody waits more than a few spawns. */
    f->max_wait = 0;
    struct delta d0 = mark(f);
    sim_run(&sim, 5 * SEC);
    struct delta d = since(f, &d0);
    dump(&sim, f);
    assert_true(d.arrived >= 900);
    assert_true(f->max_wait <= 5 * MS);
    assert_true(d.spawns >= d.arrived - 10 && d.spawns <= d.arrived + 10);
    assert_true(f->by_reason[SCALER_REASON_PREWARM] > 0);
    /* Never more containers than running ones plus a small reserve. */
    assert_true(live(f) <= 200 + 10);
    sim_free(&sim);
}

static void test_decay_to_zero(void **state)
{
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("decay", true);
    f->idle_timeout_s = 5;
    f->rate = 100;
    f->duration = 100 * MS;
    struct sim_fn *g = fn_new("decay-fresh", false);
    g->idle_timeout_s = 5;
    g->rate = 100;
    sim_add(&sim, f);
    sim_add(&sim, g);
    sim_run(&sim, 5 * SEC);
    assert_true(live(f) >= 5);
    assert_true(live(g) >= 1);
    f->rate = g->rate = 0;
    sim_run(&sim, 4 * SEC);
    /* Not before idle_timeout_s. */
    assert_true(live(f) >= 5);
    assert_true(live(g) >= 1);
    assert_int_equal(f->reaps + g->reaps, 0);
    sim_run(&sim, 2 * SEC);
    dump(&sim, f);
    dump(&sim, g);
    /* Then to zero, min_scale being 0, and every reap for idleness. */
    assert_int_equal(live(f), 0);
    assert_int_equal(live(g), 0);
    assert_int_equal(f->by_reason[SCALER_REASON_IDLE], f->reaps);
    assert_int_equal(g->by_reason[SCALER_REASON_IDLE], g->reaps);
    assert_int_equal(f->st.desired, 0);
    sim_free(&sim);
}

static void test_min_scale_floor(void **state)
{
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("floor", true);
    f->min_scale = 3;
    f->idle_timeout_s = 2;
    struct sim_fn *g = fn_new("floor-fresh", false);
    g->min_scale = 2;
    g->idle_timeout_s = 2;
    sim_add(&sim, f);
    sim_add(&sim, g);
    sim_step(&sim);
    assert_int_equal(live(f), 3);
    assert_int_equal(live(g), 2);
    assert_int_equal(f->by_reason[SCALER_REASON_MIN_SCALE], 1);
    sim_run(&sim, 1 * SEC);
    f->clients = 20;
    g->clients = 20;
    sim_run(&sim, 2 * SEC);
    assert_true(live(f) >= 20);
    f->clients = g->clients = 0;
    size_t lowest_f = SIZE_MAX, lowest_g = SIZE_MAX;
    for (int i = 0; i < 10000; i++) {
        sim_step(&sim);
        if (live(f) < lowest_f)
            lowest_f = live(f);
        if (count(g, W_READY) + count(g, W_SPAWNING) < lowest_g)
            lowest_g = count(g, W_READY) + count(g, W_SPAWNING);
    }
    dump(&sim, f);
    dump(&sim, g);
    /* Back to the floor, never below it (fresh ones: the floor counts ready and spawning). */
    assert_int_equal(live(f), 3);
    assert_int_equal(lowest_f, 3);
    assert_int_equal(live(g), 2);
    assert_true(lowest_g >= 2);
    sim_free(&sim);
}

static void test_max_scale_cap(void **state)
{
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("cap", true);
    f->max_scale = 10;
    f->clients = 50;
    f->duration = 20 * MS;
    struct sim_fn *g = fn_new("cap-fresh", false);
    g->max_scale = 10;
    g->clients = 50;
    g->duration = 20 * MS;
    sim_add(&sim, f);
    sim_add(&sim, g);
    size_t most_f = 0, most_g = 0;
    for (int i = 0; i < 3000; i++) {
        sim_step(&sim);
        if (live(f) > most_f)
            most_f = live(f);
        if (live(g) > most_g)
            most_g = live(g);
    }
    dump(&sim, f);
    dump(&sim, g);
    assert_int_equal(most_f, 10);
    assert_int_equal(most_g, 10);
    assert_int_equal(f->st.desired, 10);
    assert_int_equal(f->st.last.held, SCALER_REASON_MAX_SCALE);
    assert_int_equal(g->st.last.held, SCALER_REASON_MAX_SCALE);
    /* Work queues but is served. */
    assert_true(f->served > 1000);
    assert_true(g->served > 1000);
    sim_free(&sim);
}

static void test_memory_budget(void **state)
{
    /* Room for 10 containers of 128 MB, 5 of them taken by something else. */
    struct sim sim;
    sim_init(&sim, NULL, 10 * 128 * MB);
    sim.other_committed = 5 * 128 * MB;
    struct sim_fn *f = fn_new("mem", true);
    f->clients = 30;
    f->duration = 200 * MS;
    sim_add(&sim, f);
    sim_run(&sim, 1 * SEC);
    dump(&sim, f);
    assert_int_equal(live(f), 5);
    assert_true(sim.max_committed <= sim.budget);
    assert_int_equal(f->st.last.held, SCALER_REASON_OVER_BUDGET);
    assert_true(f->qlen > 0); /* the work queues instead */
    /* Memory frees: spawning resumes up to the budget. */
    sim.other_committed = 0;
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(f), 10);
    assert_true(sim.max_committed <= sim.budget);
    /* More budget: up to the need. */
    sim.budget = 100 * 128 * MB;
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(f), 30);
    assert_int_equal(f->qlen, 0);
    sim_free(&sim);
}

static void test_two_functions_spawn_share(void **state)
{
    /* One function bursts to 200 while another steps to 8: the spawn budget is shared round
     * robin, so the small one is served in the first rounds, not after the burst. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *big = fn_new("big", true);
    big->duration = 500 * MS;
    struct sim_fn *small = fn_new("small", true);
    small->duration = 500 * MS;
    small->min_scale = 2;
    sim_add(&sim, big);
    sim_add(&sim, small);
    sim_run(&sim, 100 * MS);
    big->clients = 200;
    sim_step(&sim);
    small->clients = 8;
    sim_run(&sim, 50 * MS);
    dump(&sim, big);
    dump(&sim, small);
    assert_true(live(small) >= 8);
    assert_true(small->max_wait <= 10 * MS);
    assert_true(big->qlen > 0); /* the burst is still being served */
    sim_run(&sim, 2 * SEC);
    assert_int_equal(big->qlen, 0);
    assert_true(live(small) >= 8);
    sim_free(&sim);
}

static void test_two_functions_memory(void **state)
{
    /* Room for 20. "quiet" has min_scale 4 and "burst" wants 200: the floor's memory is
     * reserved first, the burst gets the rest, and the floor is never taken. */
    struct sim sim;
    sim_init(&sim, NULL, 20 * 128 * MB);
    struct sim_fn *burst = fn_new("burst", true);
    burst->duration = 200 * MS;
    burst->idle_timeout_s = 60;
    struct sim_fn *quiet = fn_new("quiet", true);
    quiet->min_scale = 4;
    sim_add(&sim, burst);
    sim_add(&sim, quiet);
    burst->clients = 200;
    size_t lowest = SIZE_MAX;
    for (int i = 0; i < 2000; i++) {
        sim_step(&sim);
        if (i > 10 && live(quiet) < lowest)
            lowest = live(quiet);
    }
    dump(&sim, burst);
    dump(&sim, quiet);
    assert_int_equal(lowest, 4);
    assert_int_equal(live(burst), 16);
    assert_true(sim.max_committed <= sim.budget);
    /* The burst ends; its idle workers (idle timeout 60 s) hold the memory. A new function
     * with a floor of 4 arrives: idle workers of the burst are reaped for it, oldest first. */
    burst->clients = 0;
    sim_run(&sim, 4 * SEC);
    assert_int_equal(burst->qlen + burst->nrun, 0);
    assert_int_equal(live(burst), 16);
    struct sim_fn *late = fn_new("late", true);
    late->min_scale = 4;
    sim_add(&sim, late);
    sim_run(&sim, 100 * MS);
    dump(&sim, burst);
    dump(&sim, late);
    assert_int_equal(live(late), 4);
    assert_int_equal(burst->by_reason[SCALER_REASON_OVER_BUDGET], 4);
    assert_int_equal(live(burst), 12);
    assert_int_equal(live(quiet), 4);
    assert_true(sim.max_committed <= sim.budget);
    sim_free(&sim);
}

static void test_two_functions_fair_share(void **state)
{
    /* Room for 20. "hog" has 200 clients and holds all 20, busy: its queue never empties, so
     * its workers never go idle. "fair" (min_scale 0) then gets 6 clients: its max-min fair
     * share is all 6 it wants, so 6 of hog's workers are retired and finish what they run, and
     * fair gets their memory. */
    struct sim sim;
    sim_init(&sim, NULL, 20 * 128 * MB);
    struct sim_fn *hog = fn_new("hog", true);
    hog->duration = 200 * MS;
    hog->clients = 200;
    struct sim_fn *fair = fn_new("fair", true);
    fair->duration = 200 * MS;
    sim_add(&sim, hog);
    sim_add(&sim, fair);
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(hog), 20);
    fair->clients = 6;
    sim_run(&sim, 500 * MS);
    dump(&sim, hog);
    dump(&sim, fair);
    assert_int_equal(hog->retires, 6);
    assert_int_equal(hog->by_reason[SCALER_REASON_OVER_BUDGET], 6);
    assert_int_equal(live(fair), 6);
    assert_int_equal(live(hog), 14);
    /* One invocation's duration, a spawn, and fair runs. */
    assert_true(fair->max_wait <= 250 * MS);
    assert_true(sim.max_committed <= sim.budget);
    /* And it stays so: no churn. */
    struct delta dh = mark(hog), df = mark(fair);
    sim_run(&sim, 5 * SEC);
    struct delta d = since(hog, &dh);
    assert_int_equal(d.spawns + d.reaps, 0);
    assert_int_equal(hog->retires, 6);
    d = since(fair, &df);
    assert_int_equal(d.spawns + d.reaps, 0);
    assert_true(d.arrived > 100);
    /* When fair is done, hog takes the memory back. */
    fair->clients = 0;
    sim_run(&sim, 12 * SEC);
    dump(&sim, hog);
    dump(&sim, fair);
    assert_int_equal(live(fair), 0);
    assert_int_equal(live(hog), 20);
    assert_true(sim.max_committed <= sim.budget);
    sim_free(&sim);
}

static void test_two_functions_fresh_share(void **state)
{
    /* The same with fresh containers: hog's containers go after each invocation, and its
     * spawns stop at its fair share, so the memory they free goes to "fair". */
    struct sim sim;
    sim_init(&sim, NULL, 20 * 128 * MB);
    struct sim_fn *hog = fn_new("hog-fresh", false);
    hog->duration = 200 * MS;
    hog->clients = 200;
    struct sim_fn *fair = fn_new("fair-fresh", false);
    fair->duration = 200 * MS;
    sim_add(&sim, hog);
    sim_add(&sim, fair);
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(hog), 20);
    fair->clients = 6;
    sim_run(&sim, 500 * MS);
    dump(&sim, hog);
    dump(&sim, fair);
    assert_true(fair->max_wait <= 250 * MS);
    assert_int_equal(fair->nrun, 6);
    assert_int_equal(hog->retires, 0); /* nothing to retire: they go by themselves */
    for (int i = 0; i < 2000; i++) {
        sim_step(&sim);
        /* fair's 6 clients keep being served; hog keeps the rest. */
        assert_true(fair->qlen + fair->nrun == 6);
    }
    dump(&sim, hog);
    dump(&sim, fair);
    assert_true(fair->served > 40);
    assert_true(hog->nrun >= 10);
    assert_true(sim.max_committed <= sim.budget);
    sim_free(&sim);
}

static void test_flapping_no_oscillation(void **state)
{
    /* 10 and 14 clients alternating every 500 ms, with a 2 s idle timeout: the pool settles at
     * the high level and stays there. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = fn_new("flap", true);
    f->idle_timeout_s = 2;
    f->duration = 20 * MS;
    struct sim_fn *g = fn_new("flap-fresh", false);
    g->idle_timeout_s = 2;
    g->duration = 20 * MS;
    sim_add(&sim, f);
    sim_add(&sim, g);
    struct delta df = {}, dg = {};
    for (int period = 0; period < 40; period++) {
        f->clients = period % 2 ? 14 : 10;
        g->rate = period % 2 ? 300 : 200;
        if (period == 4) {
            df = mark(f);
            dg = mark(g);
        }
        sim_run(&sim, 500 * MS);
    }
    struct delta d = since(f, &df);
    dump(&sim, f);
    dump(&sim, g);
    /* Over 18 s of flapping: no reap, no spawn, for the warm pool. */
    assert_int_equal(d.reaps, 0);
    assert_int_equal(d.spawns, 0);
    assert_int_equal(live(f), 14);
    /* The fresh pool spawns one per invocation by design; it reaps none. */
    d = since(g, &dg);
    assert_int_equal(d.reaps, 0);
    sim_free(&sim);
}

static void test_spawn_limits(void **state)
{
    /* A small bucket (10, 100/s) and 4 spawns at once: 300 wanted at once cannot fork-storm. */
    struct scaler_config cfg;
    scaler_config_defaults(&cfg);
    cfg.spawn_burst = 10;
    cfg.spawn_rate = 100;
    cfg.max_spawning = 4;
    struct sim sim;
    sim_init(&sim, &cfg, BIG_BUDGET);
    struct sim_fn *f = fn_new("storm", true);
    f->duration = 1 * SEC;
    f->spawn_latency = 20 * MS;
    f->clients = 300;
    sim_add(&sim, f);
    sim_step(&sim);
    assert_int_equal(f->spawns, 4);
    assert_int_equal(f->st.last.held, SCALER_REASON_SPAWN_CONCURRENCY);
    sim_run(&sim, 3 * SEC);
    dump(&sim, f);
    assert_true(sim.max_spawning <= 4);
    /* Over any second, at most the burst plus the rate. */
    for (size_t i = 0; i < sim.nspawn_times; i++) {
        size_t in_window = 0;
        for (size_t j = i; j < sim.nspawn_times && sim.spawn_times[j] < sim.spawn_times[i] + SEC;
             j++)
            in_window++;
        assert_true(in_window <= 10 + 100);
    }
    /* 4 at once with 20 ms spawns allows 200/s: the rate of 100/s is what binds. */
    assert_true(f->spawns >= 300 - 10 && f->spawns <= 310);
    (void)f;
    sim_free(&sim);
}

/* ---- the CPU cap (reuse true) ---- */

/* A warm function on a host of `cpus` CPUs whose invocations take `wall` with `cpu` of CPU,
 * measured: one client for a second. */
static struct sim_fn *measured(struct sim *sim, const char *name, uint64_t budget, double cpus,
                               uint64_t wall, uint64_t cpu)
{
    sim->cpus = cpus;
    sim->budget = budget;
    struct sim_fn *f = fn_new(name, true);
    f->duration = wall;
    f->cpu = cpu;
    f->clients = 1;
    sim_add(sim, f);
    sim_run(sim, 1 * SEC);
    return f;
}

static void test_cpu_bound_capped(void **state)
{
    /* Pure CPU (wall = CPU = 20 ms) on 2 CPUs: 2 × 2 × 1 = 4 containers keep both busy with the
     * headroom; 50 clients queue for them instead of getting 50 containers. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = measured(&sim, "cpu", BIG_BUDGET, 2, 20 * MS, 20 * MS);
    assert_int_equal(live(f), 1);
    f->clients = 50;
    sim_run(&sim, 3 * SEC);
    dump(&sim, f);
    assert_int_equal(live(f), 4);
    assert_int_equal(f->st.desired, 4);
    assert_int_equal(f->st.cpu_cap, 4);
    assert_int_equal(f->st.last.held, SCALER_REASON_CPU);
    struct scaler_view v;
    scaler_view(&f->st, &v);
    assert_int_equal(v.cpu_cap, 4);
    assert_true(fabs(v.cpu_ms - 20) < 1e-9);
    assert_true(f->qlen > 0);     /* the work queues ... */
    assert_true(f->served > 500); /* ... and is served: 4 × 50/s for 3 s */

    /* Half the CPU (2 CPU ms in 4 wall ms: the rest waits on I/O): twice the containers. */
    f->duration = 4 * MS;
    f->cpu = 2 * MS;
    sim_run(&sim, 21 * SEC); /* the 1:1 samples are two windows old */
    dump(&sim, f);
    assert_int_equal(f->st.cpu_cap, 8);
    assert_int_equal(f->st.desired, 8);
    sim_free(&sim);
}

static void test_cpu_cap_shrinks_overgrown_pool(void **state)
{
    /* 50 clients at once find no measurement: 50 containers. Once the first invocations have
     * reported (pure CPU, 2 CPUs) the excess is retired as it finishes, down to the cap of 4,
     * every invocation still served, and the pool does not grow back. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    sim.cpus = 2;
    struct sim_fn *f = fn_new("overgrown", true);
    f->duration = 20 * MS;
    f->cpu = 20 * MS;
    f->clients = 50;
    sim_add(&sim, f);
    size_t most = 0;
    for (int i = 0; i < 100; i++) {
        sim_step(&sim);
        most = live(f) > most ? live(f) : most;
    }
    assert_int_equal(most, 50);
    unsigned spawns = f->spawns;
    sim_run(&sim, 2 * SEC);
    dump(&sim, f);
    assert_int_equal(live(f), 4);
    assert_int_equal(count(f, W_DRAINING), 0);
    assert_int_equal(f->retires + f->reaps, 46);
    assert_true(f->by_reason[SCALER_REASON_CPU] >= 1);
    assert_int_equal(f->spawns, spawns);
    assert_true(f->served > 400);
    sim_free(&sim);
}

static void test_cpu_io_bound_uncapped(void **state)
{
    /* 1 ms of CPU in 100 ms (the `sleep` example): the cap (2 × 2 × 100 = 400) is far above
     * the need, so 100 clients get 100 containers, as without a cap. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = measured(&sim, "io", BIG_BUDGET, 2, 100 * MS, 1 * MS);
    f->clients = 100;
    sim_run(&sim, 2 * SEC);
    dump(&sim, f);
    assert_int_equal(live(f), 100);
    assert_int_equal(f->st.cpu_cap, 400);
    assert_int_not_equal(f->st.last.held, SCALER_REASON_CPU);
    assert_int_equal(f->qlen, 0);
    sim_free(&sim);
}

static void test_cpu_unmeasured_uncapped(void **state)
{
    /* Before any measurement (and without a CPU count) the pool follows the need: the first
     * burst is not held back for want of samples. */
    for (int k = 0; k < 2; k++) {
        struct sim sim;
        sim_init(&sim, NULL, BIG_BUDGET);
        sim.cpus = k == 0 ? 2 : 0;
        struct sim_fn *f = fn_new("unmeasured", true);
        f->duration = 20 * MS;
        f->cpu = k == 0 ? 0 : 20 * MS; /* k 0: no samples; k 1: samples, no CPU count */
        f->clients = k == 0 ? 50 : 1;
        sim_add(&sim, f);
        sim_step(&sim);
        if (k == 0) /* as many as the host lets start at once */
            assert_int_equal(f->spawns, 32);
        sim_run(&sim, 1 * SEC);
        f->clients = 50;
        sim_run(&sim, 1 * SEC);
        assert_int_equal(live(f), 50);
        assert_int_equal(f->st.cpu_cap, 0);
        sim_free(&sim);
    }
}

static void test_cpu_cap_floor_and_zero(void **state)
{
    /* A cap below one container (0.1 CPU, wall = CPU: 0.2 slots) is one: scale from zero still
     * happens. min_scale is kept whatever the cap says. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = measured(&sim, "tiny", BIG_BUDGET, 0.1, 20 * MS, 20 * MS);
    f->idle_timeout_s = 1;
    f->clients = 0;
    sim_run(&sim, 3 * SEC); /* idle past idle_timeout_s: back to zero, the samples still fresh */
    assert_int_equal(live(f), 0);
    f->clients = 5;
    sim_step(&sim);
    assert_int_equal(f->spawns - 1, 1); /* one more spawn, from zero */
    sim_run(&sim, 1 * SEC);
    dump(&sim, f);
    assert_int_equal(live(f), 1);
    assert_int_equal(f->st.cpu_cap, 1);
    assert_true(f->served > 40); /* one container, 50/s */

    f->min_scale = 3;
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(f), 3);
    assert_int_equal(f->st.cpu_cap, 3);
    sim_free(&sim);
}

static void test_cpu_cap_with_memory_and_spawn_limits(void **state)
{
    /* The cap is one more upper bound: memory for 3 containers under a CPU cap of 4 gives 3
     * (held by the budget); a CPU cap of 4 under a budget of 10 gives 4 (held by the CPUs). */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    struct sim_fn *f = measured(&sim, "both", 3 * 128 * MB, 2, 20 * MS, 20 * MS);
    f->clients = 50;
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(f), 3);
    assert_int_equal(f->st.last.held, SCALER_REASON_OVER_BUDGET);
    assert_true(sim.max_committed <= sim.budget);
    sim.budget = 10 * 128 * MB;
    sim_run(&sim, 1 * SEC);
    assert_int_equal(live(f), 4);
    assert_int_equal(f->st.last.held, SCALER_REASON_CPU);

    /* Spawn limits still bind below the cap: one spawn at a time. */
    struct scaler_config cfg;
    scaler_config_defaults(&cfg);
    cfg.max_spawning = 1;
    struct sim sim2;
    sim_init(&sim2, &cfg, BIG_BUDGET);
    struct sim_fn *g = measured(&sim2, "slow", BIG_BUDGET, 2, 20 * MS, 20 * MS);
    g->spawn_latency = 50 * MS;
    g->clients = 50;
    sim_step(&sim2);
    assert_int_equal(g->st.last.held, SCALER_REASON_SPAWN_CONCURRENCY);
    sim_run(&sim2, 1 * SEC);
    assert_int_equal(live(g), 4);
    assert_true(sim2.max_spawning <= 1);
    sim_free(&sim2);
    sim_free(&sim);
}

static void test_cpu_fresh_unchanged(void **state)
{
    /* reuse false: the cap does not apply (a fresh container's start is not the invocation's
     * CPU); 50 clients of a CPU-bound function get their containers up to max_scale. */
    struct sim sim;
    sim_init(&sim, NULL, BIG_BUDGET);
    sim.cpus = 2;
    struct sim_fn *f = fn_new("fresh-cpu", false);
    f->duration = 200 * MS;
    f->cpu = 200 * MS;
    f->max_scale = 30;
    f->clients = 50;
    sim_add(&sim, f);
    sim_run(&sim, 2 * SEC);
    dump(&sim, f);
    assert_int_equal(f->st.cpu_cap, 0);
    assert_int_equal(f->st.last.held, SCALER_REASON_MAX_SCALE);
    assert_int_equal(count(f, W_BUSY) + count(f, W_READY) + count(f, W_SPAWNING), 30);
    sim_free(&sim);
}

static void test_cpu_observe(void **state)
{
    /* The least wall per CPU second of this window and the last: invocations that waited for a
     * CPU (wall 30 × CPU) do not raise it while one that did not (1:1) is recent; it lapses two
     * windows after the last sample, and samples with a zero time are ignored. */
    struct scaler_config cfg;
    scaler_config_defaults(&cfg);
    struct scaler_fn f;
    scaler_fn_init(&f);
    uint64_t t = 100 * SEC;
    scaler_observe(&cfg, &f, 0, 5 * MS, t);
    scaler_observe(&cfg, &f, 5 * MS, 0, t);
    assert_true(f.wall_per_cpu[0] == 0 && f.cpu_us == 0);
    scaler_observe(&cfg, &f, 1 * MS, 1 * MS, t);
    for (int i = 0; i < 100; i++)
        scaler_observe(&cfg, &f, 1 * MS, 30 * MS, t + 1 * SEC + (uint64_t)i * 100 * MS);
    assert_true(fabs(f.cpu_us - 1000) < 1e-9);
    /* A decision in the next window still sees 1:1: 2 × 2 × 1 = 4 workers. */
    struct scaler_state s;
    scaler_init(&s, &cfg);
    struct scaler_host host = {.memory_budget = BIG_BUDGET, .cpus = 2};
    struct scaler_input in = {.st = &f,
                              .reuse = true,
                              .concurrency = 1,
                              .max_scale = 100,
                              .idle_timeout_s = 10,
                              .memory_mb = 1,
                              .queued = 50};
    struct scaler_action *a = NULL;
    size_t n = 0;
    assert_int_equal(scaler_decide(&s, &host, &in, 1, t + 12 * SEC, &a, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].count, 4);
    assert_int_equal(f.last.held, SCALER_REASON_CPU);
    free(a);
    /* Concurrency 4: the 4 slots are one container, so of 3 running, 2 are retired. */
    in.concurrency = 4;
    in.nbusy = 3;
    in.inflight = 12;
    const uint64_t running[] = {11, 12, 13};
    in.running = running;
    in.nrunning = 3;
    assert_int_equal(scaler_decide(&s, &host, &in, 1, t + 12 * SEC, &a, &n), 0);
    assert_int_equal(f.cpu_cap, 1);
    assert_int_equal(n, 2);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(a[k].kind, SCALER_RETIRE);
        assert_int_equal(a[k].reason, SCALER_REASON_CPU);
        assert_int_equal(a[k].worker, running[k]);
    }
    free(a);
    in.running = NULL;
    in.nrunning = 0;
    /* A window later only the 30:1 samples are left (in the window before): 2 × 2 × 30 = 120,
     * above max_scale, so no cap. */
    in.concurrency = 1;
    in.nbusy = 0;
    in.inflight = 0;
    assert_int_equal(scaler_decide(&s, &host, &in, 1, t + 21 * SEC, &a, &n), 0);
    assert_int_equal(f.cpu_cap, 0);
    assert_int_not_equal(f.last.held, SCALER_REASON_CPU);
    free(a);
    /* Four windows on: nothing measured lately, no cap. */
    assert_int_equal(scaler_decide(&s, &host, &in, 1, t + 45 * SEC, &a, &n), 0);
    assert_int_equal(f.cpu_cap, 0);
    free(a);
}

static void test_host_cpus(void **state)
{
    double c = -1;
    assert_int_equal(scaler_host_cpus(8, NULL, &c), 0);
    assert_true(c == 8);
    assert_int_equal(scaler_host_cpus(8, "max 100000\n", &c), 0);
    assert_true(c == 8);
    assert_int_equal(scaler_host_cpus(8, "150000 100000\n", &c), 0);
    assert_true(c == 1.5);
    assert_int_equal(scaler_host_cpus(2, "400000 100000", &c), 0);
    assert_true(c == 2); /* a quota above the CPUs does not add any */
    double keep = 7;
    assert_int_equal(scaler_host_cpus(0, NULL, &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "max", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "0 100000", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "100000 0", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "-1 100000", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "lots 100000", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "100000 100000 x", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "100000  100000", &keep), -EINVAL);
    assert_int_equal(scaler_host_cpus(2, "99999999999999999999999 100000", &keep), -EINVAL);
    assert_true(keep == 7);
}

/* ---- the pure helpers ---- */

static void test_meminfo(void **state)
{
    const char *text = "MemTotal:       16316412 kB\n"
                       "MemFree:         1234567 kB\n"
                       "MemAvailable:   12345678 kB\n";
    uint64_t b = 0;
    assert_int_equal(scaler_memory_budget(text, 80, &b), 0);
    assert_int_equal(b, 16316412ull * 1024 * 80 / 100);
    assert_int_equal(scaler_memory_budget(text, 100, &b), 0);
    assert_int_equal(b, 16316412ull * 1024);
    /* MemTotal need not be first. */
    assert_int_equal(scaler_memory_budget("MemFree: 1 kB\nMemTotal: 2048 kB\n", 50, &b), 0);
    assert_int_equal(b, 1024ull * 1024);
    uint64_t keep = 7;
    assert_int_equal(scaler_memory_budget("MemFree: 1 kB\n", 80, &keep), -EINVAL);
    assert_int_equal(keep, 7); /* untouched on failure */
    assert_int_equal(scaler_memory_budget("MemTotal: lots kB\n", 80, &keep), -EINVAL);
    assert_int_equal(scaler_memory_budget("MemTotal: 12 MB\n", 80, &keep), -EINVAL);
    assert_int_equal(scaler_memory_budget("MemTotalX: 12 kB\n", 80, &keep), -EINVAL);
    assert_int_equal(scaler_memory_budget("MemTotal: 99999999999999999999999 kB\n", 80, &keep),
                     -ERANGE);
    assert_int_equal(scaler_memory_budget(text, 0, &keep), -EINVAL);
    assert_int_equal(scaler_memory_budget(text, 101, &keep), -EINVAL);
    assert_int_equal(scaler_memory_budget("", 80, &keep), -EINVAL);
    assert_int_equal(keep, 7);
}

static void test_view_and_names(void **state)
{
    for (int r = 0; r < _SCALER_REASON_MAX; r++) {
        assert_non_null(scaler_reason_name(r));
        assert_string_not_equal(scaler_reason_name(r), "unknown");
    }
    assert_string_equal(scaler_reason_name(SCALER_REASON_OVER_BUDGET), "over_budget");
    assert_string_equal(scaler_reason_name(_SCALER_REASON_MAX), "unknown");

    struct scaler_fn f;
    scaler_fn_init(&f);
    struct scaler_view v;
    scaler_view(&f, &v);
    assert_int_equal(v.last_at_us, 0);
    assert_string_equal(v.last_reason, "none");

    f.desired = 5;
    f.last = (struct scaler_decision){.at_us = 7,
                                      .desired = 5,
                                      .spawned = 3,
                                      .reason = SCALER_REASON_QUEUE,
                                      .held = SCALER_REASON_SPAWN_RATE};
    scaler_view(&f, &v);
    char buf[128];
    scaler_format(&v, buf, sizeof(buf));
    assert_string_equal(buf, "desired=5 spawned=3 reaped=0 reason=queue held=spawn_rate panic=no");
}

static void test_bad_arguments(void **state)
{
    struct scaler_state s;
    scaler_init(&s, NULL);
    struct scaler_host host = {.memory_budget = BIG_BUDGET};
    struct scaler_action *a = (void *)1;
    size_t n = 99;
    assert_int_equal(scaler_decide(&s, &host, NULL, 0, 1, &a, &n), 0);
    assert_null(a);
    assert_int_equal(n, 0);
    struct scaler_input in = {.max_scale = 1};
    assert_int_equal(scaler_decide(&s, &host, &in, 1, 1, &a, &n), -EINVAL); /* no st */
    struct scaler_fn st = {};
    in.st = &st;
    in.nidle = 1;
    assert_int_equal(scaler_decide(&s, &host, &in, 1, 1, &a, &n), -EINVAL); /* no idle list */
    in.nidle = 0;
    in.nrunning = 2;
    assert_int_equal(scaler_decide(&s, &host, &in, 1, 1, &a, &n), -EINVAL); /* no running list */
    in.nrunning = 0;
    assert_int_equal(scaler_decide(&s, &host, &in, 1, 1, &a, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(scaler_decide(&s, NULL, &in, 1, 1, &a, &n), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_reuse),
        cmocka_unit_test(test_steady_fresh),
        cmocka_unit_test(test_step_reuse_panic),
        cmocka_unit_test(test_step_fresh),
        cmocka_unit_test(test_decay_to_zero),
        cmocka_unit_test(test_min_scale_floor),
        cmocka_unit_test(test_max_scale_cap),
        cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_two_functions_spawn_share),
        cmocka_unit_test(test_two_functions_memory),
        cmocka_unit_test(test_two_functions_fair_share),
        cmocka_unit_test(test_two_functions_fresh_share),
        cmocka_unit_test(test_flapping_no_oscillation),
        cmocka_unit_test(test_spawn_limits),
        cmocka_unit_test(test_cpu_bound_capped),
        cmocka_unit_test(test_cpu_cap_shrinks_overgrown_pool),
        cmocka_unit_test(test_cpu_io_bound_uncapped),
        cmocka_unit_test(test_cpu_unmeasured_uncapped),
        cmocka_unit_test(test_cpu_cap_floor_and_zero),
        cmocka_unit_test(test_cpu_cap_with_memory_and_spawn_limits),
        cmocka_unit_test(test_cpu_fresh_unchanged),
        cmocka_unit_test(test_cpu_observe),
        cmocka_unit_test(test_host_cpus),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_view_and_names),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
