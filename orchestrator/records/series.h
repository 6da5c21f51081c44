/* Series: the last 15 minutes of each function, one sample a second, for the console's charts
 * and GET /v1/functions/{name}/series (docs/api.md "Series"). Pure data: the sampler (the
 * daemon's one-second timer) hands in what it read, as cumulative counters and gauges; the
 * series turns counters into per-second figures itself, so a reading costs no state elsewhere.
 * In memory only: a restarted daemon starts with empty rings. Loop thread only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 15 minutes of one-second samples. */
#define SERIES_SECONDS 900u
/* The duration histogram's buckets a reading may carry (telemetry's latency buckets and +Inf). */
#define SERIES_MAX_BUCKETS 24u

/* A function at one moment, as the sampler read it. Gauges are now; counters are since the
 * daemon (or the function's telemetry) began, and may go back to 0 (a function deleted and
 * pushed again): a counter lower than its last reading counts from 0. */
struct series_reading {
    /* Gauges. */
    uint64_t queued, ready, busy, spawning, desired;
    /* Counters. */
    uint64_t invocations, errors, cold_starts, billed_ms;
    double cpu_ms;
    double cold_setup_ms, cold_init_ms; /* the cold starts' setup and runtime-init phases, summed */
    /* The duration histogram: bucket upper bounds in ms (nbuckets - 1 of them; the last bucket
     * is +Inf) and its counts, not cumulative. NULL/0: no durations. */
    const double *bounds_ms;
    const uint64_t *counts;
    size_t nbuckets;
};

/* One second of one function: 44 bytes, so a full ring is 39,600 bytes. Gauges past 65,535 and
 * per-second figures past their type are clamped. */
struct series_sample {
    uint32_t at_s; /* wall clock, seconds since the epoch */
    uint16_t queued, ready, busy, spawning, desired;
    uint16_t cold_starts;
    uint32_t invocations, errors;         /* ended in this second; errors: every status but ok */
    uint32_t p50_us, p99_us;              /* of the invocations ended in this second; 0: none */
    uint32_t cpu_ms, billed_ms;           /* used and billed in this second */
    uint16_t cold_setup_ms, cold_init_ms; /* the mean of the cold starts of this second */
};

struct series;
struct series_fn;

int series_new(struct series **ret);
void series_free(struct series *s);

/* Adds the sample of second now_s for the function name from its reading; the first reading of
 * a function (new, or after a restart) only sets the base of its counters: its per-second
 * figures are 0. A second already sampled is replaced. Returns 0 or -ENOMEM / -EINVAL (a name
 * longer than 63 bytes). */
int series_record(struct series *s, const char *name, uint32_t now_s,
                  const struct series_reading *r);
/* Drops every function not recorded at now_s (deleted functions: their rings go at once). */
void series_sweep(struct series *s, uint32_t now_s);

/* A function's ring, NULL when it has none. */
const struct series_fn *series_find(const struct series *s, const char *name);
/* Every function, in no particular order: for (f = series_first(s); f; f = series_next(f)). */
const struct series_fn *series_first(const struct series *s);
const struct series_fn *series_next(const struct series_fn *f);
const char *series_name(const struct series_fn *f);
/* Samples held (at most SERIES_SECONDS), and the i-th, oldest first. */
size_t series_count(const struct series_fn *f);
const struct series_sample *series_at(const struct series_fn *f, size_t i);
/* Invocations ended per second, every function's, over the `seconds` whole seconds before
 * now_s (now_s's own is not over yet). */
double series_rate(const struct series *s, uint32_t now_s, uint32_t seconds);
/* Bytes one function's series holds (its ring and its last reading). */
size_t series_fn_bytes(void);

/* The q-quantile (0 < q < 1) of a non-cumulative histogram, interpolated within its bucket as
 * Prometheus's histogram_quantile does, in the bounds' unit; 0 when it holds nothing. Values in
 * the +Inf bucket are reported as its lower bound. */
double series_quantile(const double *bounds, const uint64_t *counts, size_t nbuckets, double q);
