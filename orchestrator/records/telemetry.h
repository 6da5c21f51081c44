/* Telemetry: the per-function counters and histograms behind GET /metrics that dispatch does
 * not keep itself (invocations by status, durations, the cold-start phases, billed ms, CPU,
 * memory peaks, dead letters, emitted events, schedule runs), the host-wide counters of events,
 * sinks and auth, and the scrape's rendering in the Prometheus text format 0.0.4
 * (metrics.c writes it). Loop thread only. The state lives here, keyed by function name, so that
 * dispatch and the pool need one call per event and no new fields for it; a function's series
 * outlive its removal only until the next scrape skips it. */
#pragma once

#include "dispatch/dispatch-internal.h"

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
void telemetry_dead_letter(const struct fn_state *fn);
/* Resource use measured for the function (today the pool reads the container's cgroup when an
 * invocation ends; the accountant may call this instead): CPU seconds to add, and a memory
 * peak in bytes (the family keeps the highest). */
void telemetry_usage(const char *function, double cpu_seconds, uint64_t memory_peak_bytes);

/* How an accepted event came: a CloudEvents HTTP mode of POST /v1/events, or emitted by a
 * function. */
enum telemetry_event_mode {
    TELEMETRY_EVENT_BINARY,
    TELEMETRY_EVENT_STRUCTURED,
    TELEMETRY_EVENT_BATCH,
    TELEMETRY_EVENT_EMITTED,
    _TELEMETRY_EVENT_MODE_MAX,
};
/* Why an emitted event was dead-lettered. */
enum telemetry_dead_letter_reason {
    TELEMETRY_DEAD_HOP_LIMIT,
    TELEMETRY_DEAD_INVALID,       /* not a valid CloudEvent, or no hop count could be stamped */
    TELEMETRY_DEAD_TOO_LARGE,     /* over what a function may receive */
    TELEMETRY_DEAD_NO_INVOCATION, /* the worker ran no such invocation */
    TELEMETRY_DEAD_QUEUE_FULL,    /* a subscriber's queue was at --queue-max */
    _TELEMETRY_DEAD_REASON_MAX,
};
/* Why auth refused a request. */
enum telemetry_auth_refusal {
    TELEMETRY_AUTH_NO_TOKEN,      /* 401: no Authorization header */
    TELEMETRY_AUTH_BAD_HEADER,    /* 401: not "Bearer TOKEN" */
    TELEMETRY_AUTH_INVALID_TOKEN, /* 401: not a token, or not one of ours */
    TELEMETRY_AUTH_REVOKED,       /* 401 */
    TELEMETRY_AUTH_EXPIRED,       /* 401 */
    TELEMETRY_AUTH_FORBIDDEN,     /* 403: the role may not use the route */
    TELEMETRY_AUTH_RATE_LIMITED,  /* 429: over the token's rate */
    _TELEMETRY_AUTH_REFUSAL_MAX,
};

/* One event stored with its deliveries (a 202, or an emitted event routed): duplicate (nothing
 * delivered), else delivered to `deliveries` subscribers (0: no subscriber). */
void telemetry_event_accepted(enum telemetry_event_mode mode, bool duplicate, size_t deliveries);
/* POST /v1/events answered `status` instead of 202 (the whole request: a refused batch
 * delivers nothing). */
void telemetry_event_refused(int status);
/* The function emitted an event (the runtime protocol's EVENT frame), whatever became of it. */
void telemetry_event_emitted(const char *function);
void telemetry_event_dead_letter(enum telemetry_dead_letter_reason reason);
/* A schedule run was submitted for the function; makeup: for a slot missed while ignisd was
 * down. */
void telemetry_schedule_run(const char *function, bool makeup);
/* Sinks: a delivery was made or resumed (+1) or ended or was dropped at shutdown (-1); an
 * attempt started; a delivery ended for good. */
void telemetry_sink_pending(int delta);
void telemetry_sink_attempt(void);
void telemetry_sink_final(bool delivered);
/* Auth refused a request (the reason implies the status), or let one through for this role
 * (an enum auth_role; public routes are not counted). */
void telemetry_auth_refused(enum telemetry_auth_refusal reason);
void telemetry_auth_allowed(unsigned role);

/* The whole scrape. Returns 0 and the text (malloc'd), or -ENOMEM. */
int telemetry_render(const struct dispatch *d, uint64_t started_usec, char **ret_text,
                     size_t *ret_len);
/* GET /metrics. */
void telemetry_http_metrics(struct http_request *req, const struct dispatch *d,
                            uint64_t started_usec);
