/* Placement across hosts in simulation (scripts/bench cluster-sim; issue #17, "beyond this
 * machine, in simulation"). The placement policy (dispatch/placement.c) and the scaler's policy
 * (dispatch/scaler.c) are pure, so a discrete-event simulation can drive the very code ignisd
 * runs over a cluster that does not exist: a synthetic trace (bursty Poisson arrivals over
 * functions of Zipf popularity, log-normal durations, host failures), three placement policies
 * run on the same trace ("placement", ours; "random"; "local"), and per policy the cold-start
 * ratio, the forwarded share, the container-seconds spent idle, the spread of load over hosts,
 * the invocations lost to failures and the wait the placement added.
 *
 * What a simulated host is: containers of concurrency 1 (reuse true), at most --containers of
 * them (its memory budget over memory_mb); an invocation runs on the most recently idle free
 * container of its function (dispatch.c's pick_worker), else waits in its function's queue there
 * while a container starts (a cold start: --cold-ms); a full host reaps its least recently used
 * idle container to make room, else the invocation waits. Which scaler parts are modelled is
 * printed with the parameters (print_params). Deterministic for a seed; no threads, no I/O but
 * printing. Asserts nothing: scripts/bench reports, it does not judge. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch/cluster.h"
#include "dispatch/placement.h"
#include "dispatch/scaler.h"
#include "records/hosts_store.h"

/* The clock starts at 1 s, not 0: the scaler takes a time of 0 for "never". */
#define T0_US 1000000
/* Mirrored from files whose constants are not in a header: dispatch.c's SCALE_MIN_INTERVAL_US,
 * api/forward.c's FORWARD_CONNECT_MS, the manifest's timeout_ms default. HOSTS_GONE_AFTER_US and
 * CLUSTER_REFRESH_US come from their headers. */
#define SCALE_MIN_INTERVAL_US 2000
#define CONNECT_TIMEOUT_US    (1000 * 1000)
#define TIMEOUT_US            (30 * 1000000LL)
#define FORGET_RING           32
#define NONE                  UINT32_MAX

struct params {
    double seconds;
    uint64_t seed;
    unsigned functions, hosts;
    double rate, zipf_s, on_s, off_s;
    double median_ms, sigma, cold_ms;
    unsigned containers, memory_mb, max_scale, idle_timeout_s;
    double delay_ms, hop_ms, fail_every_s, down_s, tick_ms;
};

/* ---- random numbers: xoshiro256**, seeded by splitmix64 ---- */

struct rng {
    uint64_t s[4];
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* In [0, 1). */
static double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double rng_exp(struct rng *r, double mean)
{
    return -mean * log1p(-rng_unit(r));
}

static double rng_normal(struct rng *r)
{
    double u = 1.0 - rng_unit(r), v = rng_unit(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* ---- the trace: the same for every policy ---- */

struct arrival {
    int64_t t, dur;
    uint32_t fn, host;
};

struct outage {
    int64_t down, up;
    uint32_t host;
};

struct trace {
    struct arrival *a;
    size_t n, cap;
    struct outage *o;
    size_t no, ocap;
};

static bool up_at(const struct trace *tr, uint32_t h, int64_t t)
{
    for (size_t i = 0; i < tr->no; i++)
        if (tr->o[i].host == h && tr->o[i].down <= t && t < tr->o[i].up)
            return false;
    return true;
}

static void *grow(void *p, size_t *cap, size_t size)
{
    *cap = *cap ? 2 * *cap : 1024;
    void *q = realloc(p, *cap * size);
    if (!q) {
        fprintf(stderr, "cluster-sim: out of memory\n");
        exit(1);
    }
    return q;
}

static int arrival_cmp(const void *x, const void *y)
{
    const struct arrival *a = x, *b = y;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    if (a->fn != b->fn)
        return a->fn < b->fn ? -1 : 1;
    return a->host < b->host ? -1 : a->host > b->host;
}

/* The load balancer: a uniformly random host of those up at t (UINT32_MAX: none). */
static uint32_t lb_pick(const struct trace *tr, struct rng *r, uint32_t nhosts, int64_t t)
{
    for (int k = 0; k < 10000; k++) {
        uint32_t h = rng_below(r, nhosts);
        if (up_at(tr, h, t))
            return h;
    }
    return UINT32_MAX;
}

/* Failures: exponential times between them (mean fail_every_s), a uniformly random host that is
 * up then, down for down_s. Arrivals: each function alternates on and off periods (exponential,
 * means on_s and off_s; it starts in either in proportion) and is a Poisson process while on, at
 * the rate that makes its mean rate × its Zipf share; off, it is silent. Durations are
 * log-normal, cut at the manifest's default timeout. */
static void make_trace(const struct params *p, struct trace *tr)
{
    struct rng r;
    rng_seed(&r, p->seed);
    if (p->fail_every_s > 0)
        for (double t = rng_exp(&r, p->fail_every_s); t < p->seconds;
             t += rng_exp(&r, p->fail_every_s)) {
            int64_t at = T0_US + (int64_t)(t * 1e6);
            uint32_t h = lb_pick(tr, &r, p->hosts, at);
            if (h == UINT32_MAX)
                continue;
            if (tr->no == tr->ocap)
                tr->o = grow(tr->o, &tr->ocap, sizeof(*tr->o));
            tr->o[tr->no++] = (struct outage){at, at + (int64_t)(p->down_s * 1e6), h};
        }
    double norm = 0;
    for (unsigned f = 0; f < p->functions; f++)
        norm += pow(f + 1, -p->zipf_s);
    bool bursty = p->on_s > 0 && p->off_s > 0;
    double on_frac = bursty ? p->on_s / (p->on_s + p->off_s) : 1;
    for (unsigned f = 0; f < p->functions; f++) {
        double rate_on = p->rate * pow(f + 1, -p->zipf_s) / norm / on_frac;
        bool on = !bursty || rng_unit(&r) < on_frac;
        for (double t = 0; t < p->seconds; on = !on || !bursty) {
            double len = bursty ? rng_exp(&r, on ? p->on_s : p->off_s) : p->seconds;
            double stop = fmin(t + len, p->seconds);
            for (double s = t + rng_exp(&r, 1 / rate_on); on && s < stop;
                 s += rng_exp(&r, 1 / rate_on)) {
                int64_t at = T0_US + (int64_t)(s * 1e6);
                double ms = p->median_ms * exp(p->sigma * rng_normal(&r));
                int64_t dur = (int64_t)(ms * 1e3);
                uint32_t h = lb_pick(tr, &r, p->hosts, at);
                if (h == UINT32_MAX)
                    continue;
                if (tr->n == tr->cap)
                    tr->a = grow(tr->a, &tr->cap, sizeof(*tr->a));
                tr->a[tr->n++] = (struct arrival){at,
                                                  dur < 1            ? 1
                                                  : dur > TIMEOUT_US ? TIMEOUT_US
                                                                     : dur,
                                                  f, h};
            }
            t = stop;
        }
    }
    qsort(tr->a, tr->n, sizeof(*tr->a), arrival_cmp);
}

/* ---- events: a binary heap ordered by time, then by the order they were made ---- */

enum ev_type {
    EV_ARRIVE,     /* a: invocation (a retry) */
    EV_START_DONE, /* a: host, b: slot, gen: the container's */
    EV_RUN_DONE,   /* a: host, b: slot, gen */
    EV_FWD_ARRIVE, /* a: invocation, b: target host, x: enum fwd_kind */
    EV_FWD_BACK,   /* a: invocation, b: the peer, x: kind | FWD_UNREACHABLE */
    EV_PUBLISH,    /* a: function, b: host, gen: its life, x: warm */
    EV_SCALE,      /* a: host, gen: its life */
    EV_TICK,
    EV_HEARTBEAT,
    EV_FAIL,    /* a: host */
    EV_RECOVER, /* a: host */
    EV_SEEN,    /* a: host, gen: its life, x: live */
};

struct event {
    int64_t t;
    uint64_t seq;
    uint32_t a, b, gen;
    uint8_t type, x;
};

struct heap {
    struct event *e;
    size_t n, cap;
    uint64_t seq;
};

static bool ev_before(const struct event *x, const struct event *y)
{
    return x->t != y->t ? x->t < y->t : x->seq < y->seq;
}

static void heap_push(struct heap *h, struct event ev)
{
    if (h->n == h->cap)
        h->e = grow(h->e, &h->cap, sizeof(*h->e));
    ev.seq = h->seq++;
    size_t i = h->n++;
    while (i > 0 && ev_before(&ev, &h->e[(i - 1) / 2])) {
        h->e[i] = h->e[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->e[i] = ev;
}

static struct event heap_pop(struct heap *h)
{
    struct event top = h->e[0], last = h->e[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && ev_before(&h->e[c + 1], &h->e[c]))
            c++;
        if (!ev_before(&h->e[c], &last))
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    if (h->n)
        h->e[i] = last;
    return top;
}

/* ---- the cluster ---- */

enum policy { POL_PLACEMENT, POL_RANDOM, POL_LOCAL, _POL_MAX };
static const char *const policy_name[] = {"placement", "random", "local"};

enum fwd_kind { FWD_WARM, FWD_HOME, FWD_RANDOM, FWD_UNREACHABLE = 0x80 };

enum cstate { C_FREE, C_STARTING, C_BUSY, C_IDLE };

struct container {
    uint32_t fn, gen, inv;
    uint8_t state;
    bool fresh;       /* has run nothing yet: its first invocation is a cold start */
    int64_t born_us;  /* its start began */
    int64_t since_us; /* C_IDLE: idle since */
};

enum inv_state { INV_NET, INV_QUEUED, INV_RUNNING, INV_DONE, INV_LOST };

struct inv {
    int64_t arrived, dur;
    uint32_t fn, next, origin, at;
    uint8_t state, retry;
};

/* A function on a host: its containers, its queue, its warm flag and the scaler's state. */
struct fnhost {
    uint32_t nidle, nbusy, nspawning, queued;
    uint32_t qhead, qtail;
    uint32_t arrivals; /* since the scaler's previous run */
    uint32_t cap, cap_epoch;
    bool warm;     /* it has a warm, free container now */
    bool warm_pub; /* what its peers see: warm as it was --delay-ms ago */
    bool dirty;    /* its demand changed since the scaler last saw it */
    struct scaler_fn sc;
};

struct forget {
    uint32_t fn, peer, seq;
};

struct host {
    bool up, seen_live;
    uint32_t life; /* bumped when it dies and when it comes back: older events are stale */
    int64_t mem_free_seen;
    unsigned ncont;
    struct container *c;
    uint64_t picks, runs;
    struct scaler_state sc;
    bool scale_pending;
    int64_t last_scale;
    uint32_t *blocked; /* functions waiting for memory to start a container, oldest first */
    size_t bhead, bn, bcap;
    uint32_t *dirty; /* functions whose demand changed since the scaler's last run here */
    size_t ndirty, dcap;
    struct forget forget[FORGET_RING];
    unsigned nforget;
};

struct stats {
    uint64_t invocations, retries, runs, cold, waited_warm, forwarded, fwd_sent;
    uint64_t refused_warm, refused_home, unreachable;
    uint64_t spawns, reaped_idle, reaped_other, evicted, lost, failed, completed, spawn_asks;
    uint64_t scaler_runs;
    int64_t idle_us, cs_us;
    int64_t *waits;
    size_t nwaits, wcap;
    double load_max_mean, load_cv;
};

struct sim {
    const struct params *p;
    enum policy pol;
    const struct trace *tr;
    struct rng rng;
    int64_t now, end;
    struct heap heap;
    uint32_t nh, nf;
    struct host *hosts;
    struct fnhost *fh; /* [fn * nh + host] */
    uint32_t *pub_seq; /* per host: bumped with each change its peers see */
    uint32_t live_epoch;
    struct inv *invs;
    size_t ninv, icap, first_live;
    char (*host_id)[8];
    char (*fn_name)[8];
    struct placement_host *view;
    /* run_scaler's buffers */
    struct scaler_input *in;
    struct scaler_worker *idle;
    uint64_t *running;
    uint32_t *mark, *idx, *fns, stamp;
    struct stats st;
};

static struct fnhost *FH(struct sim *s, uint32_t fn, uint32_t h)
{
    return &s->fh[(size_t)fn * s->nh + h];
}

static void push(struct sim *s, int64_t t, uint8_t type, uint32_t a, uint32_t b, uint32_t gen,
                 uint8_t x)
{
    heap_push(&s->heap, (struct event){.t = t, .type = type, .a = a, .b = b, .gen = gen, .x = x});
}

static int64_t mem_bytes(const struct sim *s)
{
    return (int64_t)s->p->memory_mb << 20;
}

/* Its peers learn of a change of a host's warm, free containers --delay-ms later (ignisd
 * publishes the warm_capacity row within ~50 ms of a change). */
static void warm_update(struct sim *s, uint32_t fn, uint32_t h)
{
    struct fnhost *f = FH(s, fn, h);
    bool w = f->nidle > 0;
    if (w == f->warm)
        return;
    f->warm = w;
    if (s->pol == POL_PLACEMENT)
        push(s, s->now + (int64_t)(s->p->delay_ms * 1e3), EV_PUBLISH, fn, h, s->hosts[h].life, w);
}

/* The host's view of the cluster for fn, as cluster.c's view_build makes it: every host, live
 * by its heartbeat, its memory free as of its last heartbeat, its warm flags as published (none
 * with warm_ok false), less those a refused forward made this host forget. */
static void build_view(struct sim *s, uint32_t fn, uint32_t here, bool warm_ok)
{
    const struct fnhost *f = FH(s, fn, 0);
    for (uint32_t i = 0; i < s->nh; i++)
        s->view[i] = (struct placement_host){
            .id = s->host_id[i],
            .live = i == here || s->hosts[i].seen_live,
            .memory_free = s->hosts[i].mem_free_seen,
            .warm = warm_ok && i != here && f[i].warm_pub,
        };
    const struct host *hh = &s->hosts[here];
    for (unsigned k = 0; warm_ok && k < hh->nforget && k < FORGET_RING; k++)
        if (hh->forget[k].fn == fn && hh->forget[k].seq == s->pub_seq[hh->forget[k].peer])
            s->view[hh->forget[k].peer].warm = false;
}

/* fn's max_scale on host h: its share of the cluster's (placement_share over the hosts h sees
 * live), never below one, as dispatch.c's max_scale_here; --max-scale 0: the host's memory. */
static uint32_t cap_of(struct sim *s, uint32_t fn, uint32_t h)
{
    struct fnhost *f = FH(s, fn, h);
    if (s->p->max_scale == 0)
        return s->p->containers;
    if (f->cap_epoch == s->live_epoch + 1)
        return f->cap;
    build_view(s, fn, h, false);
    unsigned n = placement_share(s->fn_name[fn], s->view, s->nh, h, s->p->max_scale);
    f->cap = n ? n : 1;
    f->cap_epoch = s->live_epoch + 1;
    return f->cap;
}

static void leave_idle(struct sim *s, uint32_t h, struct container *c)
{
    s->st.idle_us += s->now - c->since_us;
    FH(s, c->fn, h)->nidle--;
    warm_update(s, c->fn, h);
}

/* Destroys an idle container. */
static void reap(struct sim *s, uint32_t h, uint32_t slot)
{
    struct host *hh = &s->hosts[h];
    struct container *c = &hh->c[slot];
    leave_idle(s, h, c);
    s->st.cs_us += s->now - c->born_us;
    c->state = C_FREE;
    c->gen++;
    hh->ncont--;
}

/* The idle container of fn that became idle last (pick_worker), or of any function the one
 * that became idle first (fn NONE: the scaler reaps the oldest idle first); NONE: none. */
static uint32_t find_idle(const struct sim *s, uint32_t h, uint32_t fn)
{
    const struct host *hh = &s->hosts[h];
    uint32_t best = NONE;
    for (uint32_t i = 0; i < s->p->containers; i++) {
        const struct container *c = &hh->c[i];
        if (c->state != C_IDLE || (fn != NONE && c->fn != fn))
            continue;
        if (best == NONE ||
            (fn == NONE ? c->since_us < hh->c[best].since_us : c->since_us > hh->c[best].since_us))
            best = i;
    }
    return best;
}

/* Starts a container of fn on h, reaping the least recently used idle one when the host is
 * full; false when it is full of busy and starting ones. */
static bool spawn(struct sim *s, uint32_t h, uint32_t fn)
{
    struct host *hh = &s->hosts[h];
    if (hh->ncont >= s->p->containers) {
        uint32_t victim = find_idle(s, h, NONE);
        if (victim == NONE)
            return false;
        reap(s, h, victim);
        s->st.evicted++;
    }
    uint32_t slot = 0;
    while (hh->c[slot].state != C_FREE)
        slot++;
    struct container *c = &hh->c[slot];
    *c = (struct container){
        .fn = fn, .gen = c->gen, .state = C_STARTING, .fresh = true, .born_us = s->now};
    hh->ncont++;
    FH(s, fn, h)->nspawning++;
    s->st.spawns++;
    push(s, s->now + (int64_t)(s->p->cold_ms * 1e3), EV_START_DONE, h, slot, c->gen, 0);
    return true;
}

/* A container for each queued invocation not already waiting for one starting, within the
 * function's max_scale here (the scaler's queue rule for reuse true, concurrency 1). */
static void want_spawn(struct sim *s, uint32_t h, uint32_t fn)
{
    struct fnhost *f = FH(s, fn, h);
    struct host *hh = &s->hosts[h];
    while (f->queued > f->nspawning && f->nidle + f->nbusy + f->nspawning < cap_of(s, fn, h))
        if (!spawn(s, h, fn)) {
            if (hh->bn == hh->bcap)
                hh->blocked = grow(hh->blocked, &hh->bcap, sizeof(*hh->blocked));
            hh->blocked[hh->bn++] = fn;
            return;
        }
}

/* Functions waiting for memory get it, oldest first, as idle containers can be reaped. */
static void pump(struct sim *s, uint32_t h)
{
    struct host *hh = &s->hosts[h];
    while (hh->bhead < hh->bn) {
        uint32_t fn = hh->blocked[hh->bhead];
        struct fnhost *f = FH(s, fn, h);
        if (f->queued > f->nspawning && f->nidle + f->nbusy + f->nspawning < cap_of(s, fn, h)) {
            if (!spawn(s, h, fn))
                return;
            continue;
        }
        hh->bhead++;
    }
    hh->bhead = hh->bn = 0;
}

static void run_on(struct sim *s, uint32_t h, uint32_t slot, uint32_t i)
{
    struct host *hh = &s->hosts[h];
    struct container *c = &hh->c[slot];
    struct inv *v = &s->invs[i];
    s->st.waited_warm += v->state == INV_QUEUED && !c->fresh;
    if (c->state == C_IDLE)
        leave_idle(s, h, c);
    c->state = C_BUSY;
    c->inv = i;
    FH(s, c->fn, h)->nbusy++;
    v->state = INV_RUNNING;
    v->at = h;
    s->st.runs++;
    hh->runs++;
    s->st.cold += c->fresh;
    c->fresh = false;
    s->st.forwarded += h != v->origin;
    push(s, s->now + v->dur, EV_RUN_DONE, h, slot, c->gen, 0);
}

/* The dispatcher asks the scaler after each enqueue and completion, at most every 2 ms. */
static void request_scale(struct sim *s, uint32_t h, uint32_t fn)
{
    struct host *hh = &s->hosts[h];
    struct fnhost *f = FH(s, fn, h);
    if (!f->dirty) {
        f->dirty = true;
        if (hh->ndirty == hh->dcap)
            hh->dirty = grow(hh->dirty, &hh->dcap, sizeof(*hh->dirty));
        hh->dirty[hh->ndirty++] = fn;
    }
    if (hh->scale_pending)
        return;
    int64_t due = hh->last_scale + SCALE_MIN_INTERVAL_US;
    push(s, due > s->now ? due : s->now, EV_SCALE, h, 0, hh->life, 0);
    hh->scale_pending = true;
}

/* Invocation i is taken by host h: it runs on a free container, or waits for one. */
static void submit(struct sim *s, uint32_t h, uint32_t i)
{
    uint32_t fn = s->invs[i].fn;
    struct fnhost *f = FH(s, fn, h);
    f->arrivals++;
    if (f->nidle) {
        run_on(s, h, find_idle(s, h, fn), i);
    } else {
        struct inv *v = &s->invs[i];
        v->state = INV_QUEUED;
        v->at = h;
        v->next = NONE;
        if (f->qtail == NONE)
            f->qhead = i;
        else
            s->invs[f->qtail].next = i;
        f->qtail = i;
        f->queued++;
        want_spawn(s, h, fn);
    }
    request_scale(s, h, fn);
}

static uint32_t dequeue(struct sim *s, struct fnhost *f)
{
    uint32_t i = f->qhead;
    f->qhead = s->invs[i].next;
    if (f->qhead == NONE)
        f->qtail = NONE;
    f->queued--;
    return i;
}

/* A container is ready for work (started, or its invocation ended): the next queued
 * invocation of its function, else it idles. */
static void container_free(struct sim *s, uint32_t h, uint32_t slot)
{
    struct container *c = &s->hosts[h].c[slot];
    struct fnhost *f = FH(s, c->fn, h);
    if (f->qhead != NONE) {
        run_on(s, h, slot, dequeue(s, f));
        return;
    }
    c->state = C_IDLE;
    c->since_us = s->now;
    f->nidle++;
    warm_update(s, c->fn, h);
    pump(s, h);
}

static void forward(struct sim *s, uint32_t i, uint32_t target, enum fwd_kind kind)
{
    s->invs[i].state = INV_NET;
    s->st.fwd_sent++;
    push(s, s->now + (int64_t)(s->p->hop_ms * 500), EV_FWD_ARRIVE, i, target, 0, kind);
}

static void forget_warm(struct sim *s, uint32_t here, uint32_t peer, uint32_t fn)
{
    struct host *hh = &s->hosts[here];
    hh->forget[hh->nforget++ % FORGET_RING] = (struct forget){fn, peer, s->pub_seq[peer]};
}

/* cluster_place: placement_decide over this host's view, with what it has of fn. */
static struct placement place(struct sim *s, uint32_t fn, uint32_t here, bool warm_ok)
{
    const struct fnhost *f = FH(s, fn, here);
    enum placement_local local = f->nidle                  ? LOCAL_FREE
                                 : f->nbusy + f->nspawning ? LOCAL_BUSY
                                                           : LOCAL_NONE;
    build_view(s, fn, here, warm_ok);
    return placement_decide(s->fn_name[fn], local, s->view, s->nh, here, mem_bytes(s),
                            s->hosts[here].picks++);
}

/* Invocation i at the host the load balancer sent it to. */
static void arrive(struct sim *s, uint32_t i)
{
    uint32_t h = s->invs[i].origin, fn = s->invs[i].fn;
    if (s->pol == POL_LOCAL || (s->pol == POL_PLACEMENT && FH(s, fn, h)->nidle)) {
        submit(s, h, i);
    } else if (s->pol == POL_RANDOM) {
        uint32_t t = rng_below(&s->rng, s->nh);
        for (int k = 0; k < 1000 && t != h && !s->hosts[t].seen_live; k++)
            t = rng_below(&s->rng, s->nh);
        if (t == h || !s->hosts[t].seen_live)
            submit(s, h, i);
        else
            forward(s, i, t, FWD_RANDOM);
    } else {
        struct placement p = place(s, fn, h, true);
        if (p.kind == PLACE_HERE)
            submit(s, h, i);
        else
            forward(s, i, (uint32_t)p.host, p.kind == PLACE_WARM_PEER ? FWD_WARM : FWD_HOME);
    }
}

/* A forward reaches its peer: a warm one runs it only on a free container, the home host only
 * with room for it (dispatch_fn_has_room), else it is refused at once (api/invoke.c); a host
 * that is down does not answer, and the connect times out. */
static void on_fwd_arrive(struct sim *s, const struct event *e)
{
    struct inv *v = &s->invs[e->a];
    uint32_t t = e->b, fn = v->fn;
    if (v->state == INV_LOST)
        return;
    int64_t one_way = (int64_t)(s->p->hop_ms * 500);
    if (!s->hosts[t].up) {
        push(s, s->now - one_way + CONNECT_TIMEOUT_US, EV_FWD_BACK, e->a, t, 0,
             e->x | FWD_UNREACHABLE);
        return;
    }
    struct fnhost *f = FH(s, fn, t);
    bool take =
        e->x == FWD_RANDOM || f->nidle > 0 ||
        (e->x == FWD_HOME && f->nidle + f->nbusy + f->nspawning + f->queued < cap_of(s, fn, t));
    if (take)
        submit(s, t, e->a);
    else
        push(s, s->now + one_way, EV_FWD_BACK, e->a, t, 0, e->x);
}

/* The answer of a peer that did not run it (forward.c's next_step): from a warm peer, on to
 * the home host unless that is this one; else it runs here. Never a third forward. */
static void on_fwd_back(struct sim *s, const struct event *e)
{
    struct inv *v = &s->invs[e->a];
    if (v->state == INV_LOST)
        return;
    uint32_t here = v->origin;
    if (e->x & FWD_UNREACHABLE)
        s->st.unreachable++;
    else if (e->x == FWD_WARM)
        s->st.refused_warm++;
    else
        s->st.refused_home++;
    forget_warm(s, here, e->b, v->fn);
    if ((e->x & ~FWD_UNREACHABLE) == FWD_WARM) {
        struct placement p = place(s, v->fn, here, false);
        if (p.kind == PLACE_HOME) {
            forward(s, e->a, (uint32_t)p.host, FWD_HOME);
            return;
        }
    }
    submit(s, here, e->a);
}

/* ---- the scaler, per host, as dispatch.c's run_scaler ---- */

static uint32_t add_input(struct sim *s, uint32_t fn, uint32_t n)
{
    if (s->mark[fn] == s->stamp)
        return n;
    s->mark[fn] = s->stamp;
    s->idx[fn] = n;
    s->fns[n] = fn;
    return n + 1;
}

/* scaler_decide over every function with containers or work on h (all), or over those whose
 * demand changed since the last run: a function's plan, hold and idle reaps depend on its own
 * state only; what one decision shares among functions (the spawn budget, memory for spawns) is
 * not taken from the scaler here. */
static void run_scaler(struct sim *s, uint32_t h, bool all)
{
    struct host *hh = &s->hosts[h];
    uint32_t n = 0, K = s->p->containers;
    s->stamp++;
    for (uint32_t k = 0; all && k < K; k++)
        if (hh->c[k].state != C_FREE)
            n = add_input(s, hh->c[k].fn, n);
    for (size_t k = hh->bhead; all && k < hh->bn; k++)
        if (FH(s, hh->blocked[k], h)->queued)
            n = add_input(s, hh->blocked[k], n);
    for (size_t k = 0; k < hh->ndirty; k++) {
        FH(s, hh->dirty[k], h)->dirty = false;
        n = add_input(s, hh->dirty[k], n);
    }
    hh->ndirty = 0;
    if (n == 0)
        return;
    /* Each function's idle and running containers, contiguous in the shared arrays. */
    size_t ni = 0, nr = 0;
    for (uint32_t j = 0; j < n; j++) {
        struct fnhost *f = FH(s, s->fns[j], h);
        s->in[j] = (struct scaler_input){
            .st = &f->sc,
            .reuse = true,
            .concurrency = 1,
            .max_scale = cap_of(s, s->fns[j], h),
            .idle_timeout_s = s->p->idle_timeout_s,
            .memory_mb = s->p->memory_mb,
            .queued = f->queued,
            .inflight = f->nbusy,
            .nready = f->nidle,
            .nbusy = f->nbusy,
            .nspawning = f->nspawning,
            .idle = s->idle + ni,
            .nidle = f->nidle,
            .running = s->running + nr,
            .nrunning = f->nbusy,
            .arrivals = f->arrivals,
            .spawn_latency_us = (uint64_t)(s->p->cold_ms * 1e3),
        };
        f->arrivals = 0;
        ni += f->nidle;
        nr += f->nbusy;
    }
    for (uint32_t j = 0; j < n; j++)
        s->in[j].nidle = s->in[j].nrunning = 0;
    for (uint32_t k = 0; k < K; k++) {
        const struct container *c = &hh->c[k];
        if (c->state == C_FREE || s->mark[c->fn] != s->stamp)
            continue;
        struct scaler_input *in = &s->in[s->idx[c->fn]];
        if (c->state == C_IDLE)
            ((struct scaler_worker *)in->idle)[in->nidle++] =
                (struct scaler_worker){.id = k, .idle_since_us = (uint64_t)c->since_us};
        else if (c->state == C_BUSY)
            ((uint64_t *)in->running)[in->nrunning++] = k;
    }
    struct scaler_host host = {.memory_budget = (uint64_t)K * (uint64_t)mem_bytes(s),
                               .memory_committed = (uint64_t)hh->ncont * (uint64_t)mem_bytes(s)};
    struct scaler_action *act = NULL;
    size_t nact = 0;
    s->st.scaler_runs++;
    if (scaler_decide(&hh->sc, &host, s->in, n, (uint64_t)s->now, &act, &nact) < 0) {
        fprintf(stderr, "cluster-sim: scaler_decide failed\n");
        exit(1);
    }
    bool reaped = false;
    for (size_t k = 0; k < nact; k++) {
        const struct scaler_action *a = &act[k];
        if (a->kind == SCALER_SPAWN) {
            s->st.spawn_asks += a->count;
        } else if (a->kind == SCALER_REAP && hh->c[a->worker].state == C_IDLE &&
                   hh->c[a->worker].fn == s->fns[a->fn]) {
            reap(s, h, (uint32_t)a->worker);
            reaped = true;
            if (a->reason == SCALER_REASON_IDLE)
                s->st.reaped_idle++;
            else
                s->st.reaped_other++;
        }
    }
    free(act);
    if (reaped)
        pump(s, h);
}

/* ---- failures ---- */

/* An invocation whose host died, or whose client's host did: the client retries it once, at a
 * host the load balancer picks. */
static void lose(struct sim *s, uint32_t i)
{
    struct inv *v = &s->invs[i];
    if (v->state == INV_QUEUED) {
        struct fnhost *f = FH(s, v->fn, v->at);
        uint32_t *link = &f->qhead, prev = NONE;
        while (*link != i) {
            prev = *link;
            link = &s->invs[*link].next;
        }
        *link = v->next;
        if (f->qtail == i)
            f->qtail = prev;
        f->queued--;
    }
    v->state = INV_LOST;
    s->st.lost++;
    uint32_t h = lb_pick(s->tr, &s->rng, s->nh, s->now);
    if (v->retry || h == UINT32_MAX) {
        s->st.failed++;
        return;
    }
    struct inv retry = {.arrived = s->now, .dur = v->dur, .fn = v->fn, .origin = h, .retry = 1};
    if (s->ninv == s->icap)
        s->invs = grow(s->invs, &s->icap, sizeof(*s->invs));
    s->invs[s->ninv] = retry;
    s->st.retries++;
    push(s, s->now, EV_ARRIVE, (uint32_t)s->ninv++, 0, 0, 0);
}

static void on_fail(struct sim *s, uint32_t h)
{
    struct host *hh = &s->hosts[h];
    if (!hh->up)
        return;
    while (s->first_live < s->ninv && s->invs[s->first_live].state >= INV_DONE)
        s->first_live++;
    for (size_t i = s->first_live, n = s->ninv; i < n; i++) {
        const struct inv *v = &s->invs[i];
        if (v->state < INV_DONE && (v->origin == h || (v->at == h && v->state != INV_NET)))
            lose(s, (uint32_t)i);
    }
    for (uint32_t k = 0; k < s->p->containers; k++) {
        struct container *c = &hh->c[k];
        if (c->state == C_FREE)
            continue;
        if (c->state == C_IDLE)
            s->st.idle_us += s->now - c->since_us;
        s->st.cs_us += s->now - c->born_us;
        c->state = C_FREE;
        c->gen++;
    }
    for (uint32_t fn = 0; fn < s->nf; fn++) {
        struct fnhost *f = FH(s, fn, h);
        f->nidle = f->nbusy = f->nspawning = f->queued = 0;
        f->qhead = f->qtail = NONE;
        f->warm = false; /* its row stays as it was: nobody publishes for it */
    }
    hh->ncont = 0;
    hh->up = false;
    hh->life++;
    hh->bhead = hh->bn = 0;
    for (size_t k = 0; k < hh->ndirty; k++)
        FH(s, hh->dirty[k], h)->dirty = false;
    hh->ndirty = 0;
    hh->nforget = 0;
    hh->scale_pending = false;
    push(s, s->now + HOSTS_GONE_AFTER_US, EV_SEEN, h, 0, hh->life, 0);
}

/* It comes back empty, a new ignisd: its scaler state new, its warm rows cleared; its peers see
 * it at its first heartbeat. */
static void on_recover(struct sim *s, uint32_t h)
{
    struct host *hh = &s->hosts[h];
    hh->up = true;
    hh->life++;
    scaler_init(&hh->sc, NULL);
    for (uint32_t fn = 0; fn < s->nf; fn++) {
        struct fnhost *f = FH(s, fn, h);
        scaler_fn_init(&f->sc);
        f->arrivals = 0;
        f->warm_pub = false;
    }
    s->pub_seq[h]++;
    push(s, s->now + CLUSTER_REFRESH_US, EV_SEEN, h, 0, hh->life, 1);
}

/* ---- one run ---- */

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static void *alloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "cluster-sim: out of memory\n");
        exit(1);
    }
    return p;
}

static void sim_init(struct sim *s, const struct params *p, const struct trace *tr, enum policy pol)
{
    *s = (struct sim){.p = p, .pol = pol, .tr = tr, .nh = p->hosts, .nf = p->functions};
    rng_seed(&s->rng, p->seed ^ 0x5851f42d4c957f2dull);
    s->end = T0_US + (int64_t)(p->seconds * 1e6);
    s->hosts = alloc(s->nh, sizeof(*s->hosts));
    s->fh = alloc((size_t)s->nf * s->nh, sizeof(*s->fh));
    s->pub_seq = alloc(s->nh, sizeof(*s->pub_seq));
    s->host_id = alloc(s->nh, sizeof(*s->host_id));
    s->fn_name = alloc(s->nf, sizeof(*s->fn_name));
    s->view = alloc(s->nh, sizeof(*s->view));
    size_t most = p->functions; /* distinct functions per run */
    s->in = alloc(most, sizeof(*s->in));
    s->idle = alloc(p->containers, sizeof(*s->idle));
    s->running = alloc(p->containers, sizeof(*s->running));
    s->mark = alloc(s->nf, sizeof(*s->mark));
    s->idx = alloc(s->nf, sizeof(*s->idx));
    s->fns = alloc(most, sizeof(*s->fns));
    s->icap = tr->n + tr->n / 8 + 1024;
    s->invs = alloc(s->icap, sizeof(*s->invs));
    for (uint32_t h = 0; h < s->nh; h++) {
        struct host *hh = &s->hosts[h];
        snprintf(s->host_id[h], sizeof(s->host_id[h]), "h%03u", h);
        hh->up = hh->seen_live = true;
        hh->mem_free_seen = (int64_t)p->containers * mem_bytes(s);
        hh->c = alloc(p->containers, sizeof(*hh->c));
        scaler_init(&hh->sc, NULL);
    }
    for (uint32_t fn = 0; fn < s->nf; fn++) {
        snprintf(s->fn_name[fn], sizeof(s->fn_name[fn]), "f%04u", fn);
        for (uint32_t h = 0; h < s->nh; h++) {
            struct fnhost *f = FH(s, fn, h);
            f->qhead = f->qtail = NONE;
            scaler_fn_init(&f->sc);
        }
    }
    for (size_t k = 0; k < tr->no; k++) {
        push(s, tr->o[k].down, EV_FAIL, tr->o[k].host, 0, 0, 0);
        push(s, tr->o[k].up, EV_RECOVER, tr->o[k].host, 0, 0, 0);
    }
    push(s, T0_US + (int64_t)(p->tick_ms * 1e3), EV_TICK, 0, 0, 0, 0);
    push(s, T0_US + CLUSTER_REFRESH_US, EV_HEARTBEAT, 0, 0, 0, 0);
}

static void sim_free(struct sim *s)
{
    for (uint32_t h = 0; h < s->nh; h++) {
        free(s->hosts[h].c);
        free(s->hosts[h].blocked);
        free(s->hosts[h].dirty);
    }
    free(s->hosts);
    free(s->fh);
    free(s->pub_seq);
    free(s->host_id);
    free(s->fn_name);
    free(s->view);
    free(s->in);
    free(s->idle);
    free(s->running);
    free(s->mark);
    free(s->idx);
    free(s->fns);
    free(s->invs);
    free(s->heap.e);
    free(s->st.waits);
}

static void on_run_done(struct sim *s, const struct event *e)
{
    struct container *c = &s->hosts[e->a].c[e->b];
    if (c->gen != e->gen || c->state != C_BUSY)
        return;
    struct inv *v = &s->invs[c->inv];
    if (v->state == INV_RUNNING) {
        v->state = INV_DONE;
        s->st.completed++;
        /* The wait added: the reply's time at the client less the arrival and the run. */
        int64_t reply = s->now + (v->at != v->origin ? (int64_t)(s->p->hop_ms * 500) : 0);
        if (s->st.nwaits == s->st.wcap)
            s->st.waits = grow(s->st.waits, &s->st.wcap, sizeof(*s->st.waits));
        s->st.waits[s->st.nwaits++] = reply - v->arrived - v->dur;
    }
    uint32_t fn = c->fn;
    FH(s, fn, e->a)->nbusy--;
    container_free(s, e->a, e->b);
    request_scale(s, e->a, fn);
}

static void dispatch_event(struct sim *s, const struct event *e)
{
    struct host *hh = e->type == EV_START_DONE || e->type == EV_SCALE || e->type == EV_SEEN
                          ? &s->hosts[e->a]
                          : NULL;
    switch (e->type) {
    case EV_ARRIVE:
        arrive(s, e->a);
        break;
    case EV_START_DONE:
        if (hh->c[e->b].gen != e->gen || hh->c[e->b].state != C_STARTING)
            break;
        FH(s, hh->c[e->b].fn, e->a)->nspawning--;
        container_free(s, e->a, e->b);
        break;
    case EV_RUN_DONE:
        on_run_done(s, e);
        break;
    case EV_FWD_ARRIVE:
        on_fwd_arrive(s, e);
        break;
    case EV_FWD_BACK:
        on_fwd_back(s, e);
        break;
    case EV_PUBLISH:
        if (s->hosts[e->b].life == e->gen) {
            FH(s, e->a, e->b)->warm_pub = e->x;
            s->pub_seq[e->b]++;
        }
        break;
    case EV_SCALE:
        if (hh->life != e->gen)
            break;
        hh->scale_pending = false;
        hh->last_scale = s->now;
        run_scaler(s, e->a, false);
        break;
    case EV_TICK:
        for (uint32_t h = 0; h < s->nh; h++)
            if (s->hosts[h].up)
                run_scaler(s, h, true);
        push(s, s->now + (int64_t)(s->p->tick_ms * 1e3), EV_TICK, 0, 0, 0, 0);
        break;
    case EV_HEARTBEAT:
        for (uint32_t h = 0; h < s->nh; h++)
            if (s->hosts[h].up)
                s->hosts[h].mem_free_seen =
                    (int64_t)(s->p->containers - s->hosts[h].ncont) * mem_bytes(s);
        push(s, s->now + CLUSTER_REFRESH_US, EV_HEARTBEAT, 0, 0, 0, 0);
        break;
    case EV_FAIL:
        on_fail(s, e->a);
        break;
    case EV_RECOVER:
        on_recover(s, e->a);
        break;
    case EV_SEEN:
        if (hh->life != e->gen)
            break;
        hh->seen_live = e->x;
        s->live_epoch++;
        if (e->x)
            hh->mem_free_seen = (int64_t)(s->p->containers - hh->ncont) * mem_bytes(s);
        break;
    }
}

static void sim_run(struct sim *s)
{
    const struct trace *tr = s->tr;
    size_t next = 0;
    for (;;) {
        bool from_trace = next < tr->n && (s->heap.n == 0 || tr->a[next].t < s->heap.e[0].t);
        int64_t t = from_trace ? tr->a[next].t : s->heap.n ? s->heap.e[0].t : INT64_MAX;
        if (t >= s->end)
            break;
        s->now = t;
        if (from_trace) {
            const struct arrival *a = &tr->a[next++];
            if (s->ninv == s->icap)
                s->invs = grow(s->invs, &s->icap, sizeof(*s->invs));
            s->invs[s->ninv] =
                (struct inv){.arrived = a->t, .dur = a->dur, .fn = a->fn, .origin = a->host};
            s->st.invocations++;
            arrive(s, (uint32_t)s->ninv++);
            continue;
        }
        struct event e = heap_pop(&s->heap);
        dispatch_event(s, &e);
    }
    /* What is still up at the end counts to the end. */
    s->now = s->end;
    double sum = 0, sq = 0, max = 0;
    for (uint32_t h = 0; h < s->nh; h++) {
        struct host *hh = &s->hosts[h];
        for (uint32_t k = 0; k < s->p->containers; k++) {
            const struct container *c = &hh->c[k];
            if (c->state == C_IDLE)
                s->st.idle_us += s->now - c->since_us;
            if (c->state != C_FREE)
                s->st.cs_us += s->now - c->born_us;
        }
        double r = (double)hh->runs;
        sum += r;
        sq += r * r;
        max = fmax(max, r);
    }
    double mean = sum / s->nh;
    s->st.load_max_mean = mean > 0 ? max / mean : 0;
    s->st.load_cv = mean > 0 ? sqrt(fmax(0, sq / s->nh - mean * mean)) / mean : 0;
    qsort(s->st.waits, s->st.nwaits, sizeof(*s->st.waits), cmp_i64);
}

/* ---- the report ---- */

static double pct(const struct stats *st, double q)
{
    if (st->nwaits == 0)
        return 0;
    size_t k = (size_t)(q * (double)(st->nwaits - 1) + 0.5);
    return (double)st->waits[k] / 1e3;
}

static void row_u(const char *label, const struct stats *st, size_t off)
{
    printf("%-38s", label);
    for (int k = 0; k < _POL_MAX; k++)
        printf(" %12" PRIu64, *(const uint64_t *)((const char *)&st[k] + off));
    printf("\n");
}

static void print_table(const struct stats st[_POL_MAX])
{
    printf("%-38s", "");
    for (int k = 0; k < _POL_MAX; k++)
        printf(" %12s", policy_name[k]);
    printf("\n");
    row_u("invocations (the trace's arrivals)", st, offsetof(struct stats, invocations));
    row_u("runs started (retries included)", st, offsetof(struct stats, runs));
    row_u("cold starts", st, offsetof(struct stats, cold));
#define ROW(label, fmt, expr)                                                                      \
    do {                                                                                           \
        printf("%-38s", label);                                                                    \
        for (int k = 0; k < _POL_MAX; k++) {                                                       \
            const struct stats *x = &st[k];                                                        \
            printf(" " fmt, expr);                                                                 \
        }                                                                                          \
        printf("\n");                                                                              \
    } while (0)
    ROW("cold-start ratio (of runs)", "%11.3f%%", x->runs ? 100.0 * x->cold / x->runs : 0);
    row_u("waited for a busy container", st, offsetof(struct stats, waited_warm));
    ROW("forwarded share (ran elsewhere)", "%11.2f%%",
        x->runs ? 100.0 * x->forwarded / x->runs : 0);
    row_u("forwards sent", st, offsetof(struct stats, fwd_sent));
    row_u("  refused: warm peer had none free", st, offsetof(struct stats, refused_warm));
    row_u("  refused: home host had no room", st, offsetof(struct stats, refused_home));
    row_u("  unreachable (host down, 1 s connect)", st, offsetof(struct stats, unreachable));
    ROW("idle container-seconds", "%12.0f", (double)x->idle_us / 1e6);
    ROW("container-seconds in all", "%12.0f", (double)x->cs_us / 1e6);
    ROW("  idle share", "%11.1f%%", x->cs_us ? 100.0 * (double)x->idle_us / (double)x->cs_us : 0);
    row_u("containers started", st, offsetof(struct stats, spawns));
    row_u("  reaped idle (scaler, idle_timeout_s)", st, offsetof(struct stats, reaped_idle));
    row_u("  reaped for memory (LRU)", st, offsetof(struct stats, evicted));
    row_u("  reaped by the scaler, other reasons", st, offsetof(struct stats, reaped_other));
    ROW("load over hosts: max/mean runs", "%12.2f", x->load_max_mean);
    ROW("load over hosts: coeff. of variation", "%12.3f", x->load_cv);
    row_u("lost to host failures", st, offsetof(struct stats, lost));
    row_u("  retried elsewhere", st, offsetof(struct stats, retries));
    row_u("  lost again or no host (failed)", st, offsetof(struct stats, failed));
    row_u("completed", st, offsetof(struct stats, completed));
    ROW("wait added p50 (ms)", "%12.2f", pct(x, 0.50));
    ROW("wait added p99 (ms)", "%12.2f", pct(x, 0.99));
    ROW("wait added p99.9 (ms)", "%12.2f", pct(x, 0.999));
    row_u("scaler runs", st, offsetof(struct stats, scaler_runs));
    row_u("scaler spawn asks (not applied)", st, offsetof(struct stats, spawn_asks));
#undef ROW
}

static void print_goal(const struct stats st[_POL_MAX])
{
    const struct stats *us = &st[POL_PLACEMENT];
    printf("\ngoal: fewer cold starts than both baselines at equal or lower idle "
           "container-seconds\n");
    for (int k = POL_RANDOM; k < _POL_MAX; k++) {
        bool fewer = us->cold < st[k].cold, idle = us->idle_us <= st[k].idle_us;
        printf("  vs %-6s: %s  (cold starts %" PRIu64 " vs %" PRIu64 ", %s; idle container-s "
               "%.0f vs %.0f, %s)\n",
               policy_name[k], fewer && idle ? "yes" : "no", us->cold, st[k].cold,
               fewer ? "fewer" : "not fewer", (double)us->idle_us / 1e6,
               (double)st[k].idle_us / 1e6, idle ? "equal or lower" : "higher");
    }
}

static void print_params(const struct params *p, const struct trace *tr)
{
    printf("seed %" PRIu64 "; %g s simulated; %u hosts; %u functions, Zipf s=%.2f\n", p->seed,
           p->seconds, p->hosts, p->functions, p->zipf_s);
    printf("arrivals: %.0f/s over the cluster (%zu in the trace); per function on/off "
           "(Markov-modulated Poisson) with means %.1f s on, %.1f s off%s\n",
           p->rate, tr->n, p->on_s, p->off_s,
           p->on_s > 0 && p->off_s > 0 ? "" : " (off: plain Poisson)");
    printf("load balancer: each arrival to a uniformly random host that is up\n");
    printf("durations: log-normal, median %.0f ms, sigma %.2f (cut at 30 s); cold start %.0f ms\n",
           p->median_ms, p->sigma, p->cold_ms);
    printf("hosts: at most %u containers of %u MB each (concurrency 1, reuse true); max_scale "
           "%u per function over the cluster%s; idle_timeout_s %u\n",
           p->containers, p->memory_mb, p->max_scale,
           p->max_scale ? " (placement_share per host, at least 1)" : " (none)", p->idle_timeout_s);
    printf("peers: warm flags seen %g ms late; memory free and liveness by the 1 s heartbeat, "
           "a dead host taken for gone after %d s; a forward costs %g ms round trip\n",
           p->delay_ms, HOSTS_GONE_AFTER_US / 1000000, p->hop_ms);
    printf("failures: a random host every %g s on average (exponential), down %g s, back "
           "empty; %zu in the run\n",
           p->fail_every_s, p->down_s, tr->no);
    printf("scaler (dispatch/scaler.c): scaler_decide per host, over every function there each "
           "%.0f ms (ignisd: 50 ms) and over those\n"
           "  whose demand changed after each enqueue and completion (at most every 2 ms, as "
           "dispatch.c); applied: its reaps\n"
           "  (idle past idle_timeout_s above the largest need of the last idle_timeout_s, "
           "oldest first, none in panic; over budget);\n"
           "  spawns are on demand (a container per queued invocation within max_scale here: "
           "its queue rule for reuse true),\n"
           "  its own spawn asks are counted, not applied; not modelled: the CPU cap, the fresh "
           "reserve (reuse false), spawn failures\n",
           p->tick_ms);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench-cluster-sim [OPTION VALUE]...   (scripts/bench cluster-sim)\n"
                 "  --seconds S       simulated time (300)\n"
                 "  --seed N          the trace's and the policies' random numbers (1)\n"
                 "  --hosts N         hosts (100)\n"
                 "  --functions N     functions, Zipf popularity (1000)\n"
                 "  --zipf S          the Zipf exponent (1.0)\n"
                 "  --rate R          invocations per second over the cluster, on average (2000)\n"
                 "  --on S, --off S   mean on and off periods of each function's arrivals (5, 15;\n"
                 "                    either 0: plain Poisson)\n"
                 "  --median-ms MS    the durations' median (50)\n"
                 "  --sigma X         the durations' log-normal sigma (1.0)\n"
                 "  --cold-ms MS      a container's start (100)\n"
                 "  --containers K    containers a host holds (64)\n"
                 "  --memory-mb MB    each container's memory limit (128)\n"
                 "  --max-scale N     a function's max_scale over the cluster (100; 0: none)\n"
                 "  --idle-timeout S  idle_timeout_s (60)\n"
                 "  --delay-ms MS     how late peers see a host's warm flags (50)\n"
                 "  --hop-ms MS       a forward's round trip (1)\n"
                 "  --fail-every S    mean time between host failures (30; 0: none)\n"
                 "  --down S          how long a failed host stays down (60)\n"
                 "  --tick-ms MS      the scaler's run over every function of a host (1000)\n");
}

/* Returns 0, 1 for --help, or -1 on a bad option or value. */
static int parse(int argc, char **argv, struct params *p)
{
    static const struct option opts[] = {
        {"seconds", 1, 0, 's'},      {"seed", 1, 0, 'S'},
        {"hosts", 1, 0, 'H'},        {"functions", 1, 0, 'F'},
        {"rate", 1, 0, 'r'},         {"zipf", 1, 0, 'z'},
        {"on", 1, 0, 'o'},           {"off", 1, 0, 'O'},
        {"median-ms", 1, 0, 'm'},    {"sigma", 1, 0, 'g'},
        {"cold-ms", 1, 0, 'c'},      {"containers", 1, 0, 'K'},
        {"memory-mb", 1, 0, 'M'},    {"max-scale", 1, 0, 'x'},
        {"idle-timeout", 1, 0, 'i'}, {"delay-ms", 1, 0, 'd'},
        {"hop-ms", 1, 0, 'p'},       {"fail-every", 1, 0, 'f'},
        {"down", 1, 0, 'D'},         {"tick-ms", 1, 0, 't'},
        {"help", 0, 0, 'h'},         {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'h')
            return 1;
        char *end;
        double v = optarg ? strtod(optarg, &end) : 0;
        if (!optarg || *end || v < 0)
            return -1;
        switch (o) {
        case 's':
            p->seconds = v;
            break;
        case 'S':
            p->seed = strtoull(optarg, NULL, 10);
            break;
        case 'H':
            p->hosts = (unsigned)v;
            break;
        case 'F':
            p->functions = (unsigned)v;
            break;
        case 'r':
            p->rate = v;
            break;
        case 'z':
            p->zipf_s = v;
            break;
        case 'o':
            p->on_s = v;
            break;
        case 'O':
            p->off_s = v;
            break;
        case 'm':
            p->median_ms = v;
            break;
        case 'g':
            p->sigma = v;
            break;
        case 'c':
            p->cold_ms = v;
            break;
        case 'K':
            p->containers = (unsigned)v;
            break;
        case 'M':
            p->memory_mb = (unsigned)v;
            break;
        case 'x':
            p->max_scale = (unsigned)v;
            break;
        case 'i':
            p->idle_timeout_s = (unsigned)v;
            break;
        case 'd':
            p->delay_ms = v;
            break;
        case 'p':
            p->hop_ms = v;
            break;
        case 'f':
            p->fail_every_s = v;
            break;
        case 'D':
            p->down_s = v;
            break;
        case 't':
            p->tick_ms = v;
            break;
        default:
            return -1;
        }
    }
    if (optind != argc || p->seconds <= 0 || p->seconds > 86400 || p->hosts < 1 ||
        p->hosts > 1000 || p->functions < 1 || p->functions > 100000 || p->rate <= 0 ||
        p->containers < 1 || p->containers > 4096 || p->memory_mb < 1 || p->idle_timeout_s < 1 ||
        p->tick_ms < 1 || p->rate * p->seconds > 5e7)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct params p = {
        .seconds = 300,
        .seed = 1,
        .functions = 1000,
        .hosts = 100,
        .rate = 2000,
        .zipf_s = 1.0,
        .on_s = 5,
        .off_s = 15,
        .median_ms = 50,
        .sigma = 1.0,
        .cold_ms = 100,
        .containers = 64,
        .memory_mb = 128,     /* the manifest's default */
        .max_scale = 100,     /* the manifest's default */
        .idle_timeout_s = 60, /* the manifest's default */
        .delay_ms = 50,
        .hop_ms = 1,
        .fail_every_s = 30,
        .down_s = 60,
        .tick_ms = 1000,
    };
    int r = parse(argc, argv, &p);
    if (r != 0) {
        usage(r > 0 ? stdout : stderr);
        return r > 0 ? 0 : 2;
    }
    printf("simulator:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    struct trace tr = {0};
    make_trace(&p, &tr);
    print_params(&p, &tr);
    printf("\n");
    static struct stats st[_POL_MAX];
    for (int k = 0; k < _POL_MAX; k++) {
        struct sim s;
        sim_init(&s, &p, &tr, (enum policy)k);
        sim_run(&s);
        st[k] = s.st;
        s.st.waits = NULL;
        sim_free(&s);
    }
    print_table(st);
    print_goal(st);
    for (int k = 0; k < _POL_MAX; k++)
        free(st[k].waits);
    free(tr.a);
    free(tr.o);
    return 0;
}
