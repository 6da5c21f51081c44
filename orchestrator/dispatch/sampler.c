#include "dispatch/sampler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "dispatch/dispatch.h"
#include "records/series.h"
#include "records/telemetry.h"

#define SAMPLER_PERIOD_US 1000000u

struct sampler {
    struct loop *loop;
    struct dispatch *dispatch;
    struct series *series;
    struct loop_timer *timer;
    uint64_t due_us; /* monotonic */
    double bounds_ms[SERIES_MAX_BUCKETS];
    size_t nbuckets;
};

static void reading_of(const struct sampler *s, const struct dispatch_fn_stats *st,
                       const struct telemetry_fn *t, struct series_reading *ret)
{
    *ret = (struct series_reading){
        .queued = st->queued,
        .ready = st->nready,
        .busy = st->nbusy,
        .spawning = st->nspawning,
        .desired = st->desired,
        .cold_starts = st->cold_starts,
    };
    if (!t)
        return;
    for (size_t k = 0; k < _TELEMETRY_STATUS_MAX; k++)
        ret->invocations += t->by_status[k];
    ret->errors = ret->invocations - t->by_status[TELEMETRY_OK];
    ret->billed_ms = t->billed_ms;
    ret->cpu_ms = t->cpu_seconds * 1000;
    ret->cold_setup_ms = t->phases[TELEMETRY_PHASE_SETUP].sum * 1000;
    ret->cold_init_ms = t->phases[TELEMETRY_PHASE_INIT].sum * 1000;
    if (t->duration.counts && t->duration.nbounds + 1 == s->nbuckets) {
        ret->bounds_ms = s->bounds_ms;
        ret->counts = t->duration.counts;
        ret->nbuckets = s->nbuckets;
    }
}

void sampler_tick(struct sampler *s, uint32_t now_s)
{
    for (struct fn_state *fn = dispatch_functions(s->dispatch); fn; fn = dispatch_next(fn)) {
        struct dispatch_fn_stats st;
        struct series_reading r;
        dispatch_fn_stats(fn, &st);
        reading_of(s, &st, telemetry_function(st.name), &r);
        int e = series_record(s->series, st.name, now_s, &r);
        if (e < 0)
            log_warn("cannot sample a function's series", "function=%s error=\"%s\"", st.name,
                     strerror(-e));
    }
    series_sweep(s->series, now_s);
}

static void on_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct sampler *s = userdata;
    s->timer = NULL;
    sampler_tick(s, (uint32_t)(wall_usec() / 1000000));
    /* Whole periods from the start: a late tick does not shift the next; a stalled loop skips. */
    uint64_t now = now_usec();
    s->due_us += SAMPLER_PERIOD_US;
    if (s->due_us <= now)
        s->due_us = now + SAMPLER_PERIOD_US - (now - s->due_us) % SAMPLER_PERIOD_US;
    if (loop_add_timer(l, s->due_us, on_timer, s, &s->timer) < 0)
        log_error("cannot re-arm the series sampler");
}

int sampler_new(struct loop *l, struct dispatch *d, struct series *series, struct sampler **ret)
{
    struct sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    *s = (struct sampler){.loop = l, .dispatch = d, .series = series};
    /* The durations' histogram is telemetry's latency buckets (seconds) and +Inf. */
    if (metrics_latency_nbounds + 1 <= SERIES_MAX_BUCKETS) {
        for (size_t i = 0; i < metrics_latency_nbounds; i++)
            s->bounds_ms[i] = metrics_latency_bounds[i] * 1000;
        s->nbuckets = metrics_latency_nbounds + 1;
    }
    s->due_us = now_usec() + SAMPLER_PERIOD_US;
    int r = loop_add_timer(l, s->due_us, on_timer, s, &s->timer);
    if (r < 0) {
        free(s);
        return r;
    }
    *ret = s;
    return 0;
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    if (s->timer)
        loop_cancel_timer(s->loop, s->timer);
    free(s);
}
