#include "records/series.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

_Static_assert(sizeof(struct series_sample) == 44, "docs/api.md states the ring's size");

/* The counters of the last reading, from which the next second's figures are made. */
struct base {
    uint64_t invocations, errors, cold_starts, billed_ms;
    double cpu_ms, cold_setup_ms, cold_init_ms;
    uint64_t counts[SERIES_MAX_BUCKETS];
    size_t nbuckets;
};

struct series_fn {
    char name[64];
    uint32_t last_s; /* the last second recorded */
    struct base base;
    size_t n, head; /* samples held; where the oldest is */
    struct series_sample ring[SERIES_SECONDS];
    struct series_fn *next;
};

struct series {
    struct series_fn *fns;
};

int series_new(struct series **ret)
{
    struct series *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

void series_free(struct series *s)
{
    if (!s)
        return;
    while (s->fns) {
        struct series_fn *f = s->fns;
        s->fns = f->next;
        free(f);
    }
    free(s);
}

size_t series_fn_bytes(void)
{
    return sizeof(struct series_fn);
}

/* The buckets of a reading that the series keeps (a longer histogram is cut). */
static size_t nbuckets_of(const struct series_reading *r)
{
    return r->nbuckets < SERIES_MAX_BUCKETS ? r->nbuckets : SERIES_MAX_BUCKETS;
}

static struct series_fn *find(const struct series *s, const char *name)
{
    for (struct series_fn *f = s->fns; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static uint16_t clamp16(double v)
{
    return v <= 0 ? 0 : v >= UINT16_MAX ? UINT16_MAX : (uint16_t)(v + 0.5);
}

static uint32_t clamp32(double v)
{
    return v <= 0 ? 0 : v >= UINT32_MAX ? UINT32_MAX : (uint32_t)(v + 0.5);
}

/* A counter's growth since its base; a counter that went back began again from 0. */
static uint64_t grew(uint64_t now, uint64_t was)
{
    return now >= was ? now - was : now;
}

static double grew_d(double now, double was)
{
    return now >= was ? now - was : now;
}

double series_quantile(const double *bounds, const uint64_t *counts, size_t nbuckets, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i < nbuckets; i++)
        total += counts[i];
    if (total == 0)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (size_t i = 0; i < nbuckets; i++) {
        if (counts[i] == 0 || seen + (double)counts[i] < rank) {
            seen += (double)counts[i];
            continue;
        }
        double lo = i > 0 ? bounds[i - 1] : 0;
        if (i == nbuckets - 1) /* +Inf: nothing to interpolate towards */
            return lo;
        return lo + (bounds[i] - lo) * ((rank - seen) / (double)counts[i]);
    }
    return nbuckets > 1 ? bounds[nbuckets - 2] : 0;
}

static void take_base(struct base *b, const struct series_reading *r)
{
    b->invocations = r->invocations;
    b->errors = r->errors;
    b->cold_starts = r->cold_starts;
    b->billed_ms = r->billed_ms;
    b->cpu_ms = r->cpu_ms;
    b->cold_setup_ms = r->cold_setup_ms;
    b->cold_init_ms = r->cold_init_ms;
    b->nbuckets = r->counts ? nbuckets_of(r) : 0;
    if (b->nbuckets)
        memcpy(b->counts, r->counts, b->nbuckets * sizeof(*b->counts));
}

static void make_sample(struct series_sample *x, const struct base *b, bool first, uint32_t now_s,
                        const struct series_reading *r)
{
    *x = (struct series_sample){
        .at_s = now_s,
        .queued = clamp16((double)r->queued),
        .ready = clamp16((double)r->ready),
        .busy = clamp16((double)r->busy),
        .spawning = clamp16((double)r->spawning),
        .desired = clamp16((double)r->desired),
    };
    if (first)
        return;
    uint64_t cold = grew(r->cold_starts, b->cold_starts);
    x->cold_starts = clamp16((double)cold);
    x->invocations = clamp32((double)grew(r->invocations, b->invocations));
    x->errors = clamp32((double)grew(r->errors, b->errors));
    x->billed_ms = clamp32((double)grew(r->billed_ms, b->billed_ms));
    x->cpu_ms = clamp32(grew_d(r->cpu_ms, b->cpu_ms));
    if (cold) {
        x->cold_setup_ms = clamp16(grew_d(r->cold_setup_ms, b->cold_setup_ms) / (double)cold);
        x->cold_init_ms = clamp16(grew_d(r->cold_init_ms, b->cold_init_ms) / (double)cold);
    }
    size_t nb = r->counts ? nbuckets_of(r) : 0;
    if (nb && r->bounds_ms) {
        uint64_t delta[SERIES_MAX_BUCKETS];
        bool reset = nb != b->nbuckets;
        for (size_t i = 0; i < nb && !reset; i++)
            reset = r->counts[i] < b->counts[i];
        for (size_t i = 0; i < nb; i++)
            delta[i] = reset ? r->counts[i] : r->counts[i] - b->counts[i];
        x->p50_us = clamp32(series_quantile(r->bounds_ms, delta, nb, 0.50) * 1000);
        x->p99_us = clamp32(series_quantile(r->bounds_ms, delta, nb, 0.99) * 1000);
    }
}

int series_record(struct series *s, const char *name, uint32_t now_s,
                  const struct series_reading *r)
{
    if (strlen(name) >= sizeof(((struct series_fn *)0)->name))
        return -EINVAL;
    struct series_fn *f = find(s, name);
    bool first = !f;
    if (!f) {
        /* calloc: the ring is 39 KB of zeroes the kernel maps lazily. */
        f = calloc(1, sizeof(*f));
        if (!f)
            return -ENOMEM;
        strcpy(f->name, name);
        f->next = s->fns;
        s->fns = f;
    }
    struct series_sample x;
    make_sample(&x, &f->base, first, now_s, r);
    take_base(&f->base, r);
    if (f->n > 0 && f->last_s == now_s) {
        /* A second sampled twice (a late timer): the newer reading wins, counts add up. */
        struct series_sample *last = &f->ring[(f->head + f->n - 1) % SERIES_SECONDS];
        x.invocations += last->invocations;
        x.errors += last->errors;
        x.cold_starts = clamp16((double)x.cold_starts + last->cold_starts);
        x.billed_ms += last->billed_ms;
        x.cpu_ms += last->cpu_ms;
        *last = x;
        return 0;
    }
    f->last_s = now_s;
    if (f->n < SERIES_SECONDS) {
        f->ring[(f->head + f->n) % SERIES_SECONDS] = x;
        f->n++;
    } else {
        f->ring[f->head] = x;
        f->head = (f->head + 1) % SERIES_SECONDS;
    }
    return 0;
}

void series_sweep(struct series *s, uint32_t now_s)
{
    for (struct series_fn **p = &s->fns; *p;) {
        struct series_fn *f = *p;
        if (f->last_s != now_s) {
            *p = f->next;
            free(f);
        } else {
            p = &f->next;
        }
    }
}

const struct series_fn *series_find(const struct series *s, const char *name)
{
    return find(s, name);
}

const struct series_fn *series_first(const struct series *s)
{
    return s->fns;
}

const struct series_fn *series_next(const struct series_fn *f)
{
    return f->next;
}

const char *series_name(const struct series_fn *f)
{
    return f->name;
}

size_t series_count(const struct series_fn *f)
{
    return f->n;
}

const struct series_sample *series_at(const struct series_fn *f, size_t i)
{
    return i < f->n ? &f->ring[(f->head + i) % SERIES_SECONDS] : NULL;
}

double series_rate(const struct series *s, uint32_t now_s, uint32_t seconds)
{
    uint64_t n = 0;
    for (const struct series_fn *f = series_first(s); f; f = series_next(f))
        for (size_t i = f->n; i-- > 0;) {
            const struct series_sample *x = series_at(f, i);
            if (x->at_s + seconds < now_s)
                break;
            if (x->at_s < now_s)
                n += x->invocations;
        }
    return seconds ? (double)n / seconds : 0;
}
