/* A bounded record of a function's recent invocation latencies, for the p50/p99 that
 * GET /v1/functions and `ignis top` show. Pure: no I/O, no clock. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The last LATENCY_SAMPLES latencies: enough for a p99 that means something (the 99th
 * percentile of 512 is the 6th slowest), small enough to sort on every GET. */
#define LATENCY_SAMPLES 512

struct latency {
    uint32_t us[LATENCY_SAMPLES]; /* a ring; latencies past UINT32_MAX µs (71 min) are clamped */
    size_t n;                     /* samples held, up to LATENCY_SAMPLES */
    size_t next;                  /* where the next sample goes */
};

void latency_add(struct latency *l, uint64_t usec);
/* The p-th percentile (0 < p ≤ 100, nearest rank) of the samples held, in µs; 0 when empty. */
uint64_t latency_percentile(const struct latency *l, double p);
