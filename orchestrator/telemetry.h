/* Telemetry: the per-function counters and histograms behind GET /metrics that dispatch does
 * not keep itself (invocations by status, durations, the cold-start phases, billed ms, CPU,
 * memory peaks, dead letters), and the scrape's rendering in the Prometheus text format 0.0.4
 * (metrics.c writes it). Loop thread only. The state lives here, keyed by function name, so that
 * dispatch and the pool need one call per event and no new fields for it; a function's series
 * outlive its removal only until the next scrape skips it. */
#pragma once

#include "dispatch.h"

struct worker;

/* Sets up (idempotent) and frees the module's state. */
int telemetry_init(void);
void telemetry_free(void);

/* A cold start handed its invocation to the worker (dispatch's start()): the queue wait, the
 * shim's namespace and root setup, and the runtime's init are known now. */
void telemetry_cold_start(const struct inv *inv, const struct worker *w);
/* An attempt ended (dispatch_complete): status, duration, billed ms, and the first-byte phase of
 * a cold start. */
void telemetry_complete(const struct inv *inv, enum outcome_kind kind, int64_t billed_ms);
/* An async invocation was dead-lettered. */
void telemetry_dead_letter(const struct fn *fn);
/* Resource use measured for the function (today the pool reads the container's cgroup when an
 * invocation ends; the accountant may call this instead): CPU seconds to add, and a memory
 * peak in bytes (the family keeps the highest). */
void telemetry_usage(const char *function, double cpu_seconds, uint64_t memory_peak_bytes);

/* The whole scrape. Returns 0 and the text (malloc'd), or -ENOMEM. */
int telemetry_render(const struct dispatch *d, uint64_t started_usec, char **ret_text,
                     size_t *ret_len);
/* GET /metrics. */
void telemetry_http_metrics(struct http_request *req, const struct dispatch *d,
                            uint64_t started_usec);
