/* Telemetry: the counters and histograms behind GET /metrics that no module keeps itself: per
 * function (invocations by status, durations, the cold-start phases, billed ms, CPU, memory
 * peaks, dead letters, emitted events, schedule runs) and host-wide (events, sinks, auth). Every
 * call takes plain values, so any layer can count; the rendering (api/metrics.c) reads them back
 * with the live state of the modules that own it. Loop thread only. The state lives here, keyed
 * by function name, so that dispatch and the pool need one call per event and no new fields for
 * it. A function's entry is kept for the daemon's life, one per name ever counted (the
 * dead-letter total includes deleted functions'); the scrape shows only the functions that
 * exist. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/metrics.h"

/* How an attempt ended (dispatch's outcomes, in their order). */
enum telemetry_status {
    TELEMETRY_OK,
    TELEMETRY_ERROR,
    TELEMETRY_CRASH,
    TELEMETRY_TIMEOUT,
    TELEMETRY_INIT_ERROR,
    _TELEMETRY_STATUS_MAX,
};

/* The phases of a cold start. */
enum telemetry_phase {
    TELEMETRY_PHASE_QUEUE,      /* enqueued to hand-off */
    TELEMETRY_PHASE_SETUP,      /* the shim: namespaces, cgroups, root */
    TELEMETRY_PHASE_INIT,       /* the runtime's exec to READY */
    TELEMETRY_PHASE_FIRST_BYTE, /* hand-off to the result */
    _TELEMETRY_PHASE_MAX,
};

/* How an accepted event came: a CloudEvents HTTP mode of POST /v1/events, or emitted by a
 * function. */
enum telemetry_event_mode {
    TELEMETRY_EVENT_BINARY,
    TELEMETRY_EVENT_STRUCTURED,
    TELEMETRY_EVENT_BATCH,
    TELEMETRY_EVENT_EMITTED,
    _TELEMETRY_EVENT_MODE_MAX,
};
/* What became of an accepted event. */
enum telemetry_event_outcome {
    TELEMETRY_EVENT_DELIVERED,
    TELEMETRY_EVENT_DUPLICATE,
    TELEMETRY_EVENT_NO_SUBSCRIBER,
    _TELEMETRY_EVENT_OUTCOME_MAX,
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

/* The statuses POST /v1/events answers instead of 202 (docs/api.md), counted each; anything
 * else counts as "other", the last slot. */
#define TELEMETRY_EVENT_REFUSALS 7
extern const int telemetry_event_refusal_statuses[TELEMETRY_EVENT_REFUSALS - 1];
/* Roles are auth's (enum auth_role); a role at or past this is not counted. */
#define TELEMETRY_ROLES_MAX 8

/* One function's counters. */
struct telemetry_fn {
    char name[64];
    uint64_t by_status[_TELEMETRY_STATUS_MAX];
    uint64_t billed_ms, dead_letters;
    uint64_t events_emitted, schedule_runs[2]; /* [makeup] */
    double cpu_seconds;
    uint64_t memory_peak;
    struct metrics_histogram duration;
    struct metrics_histogram phases[_TELEMETRY_PHASE_MAX];
    struct telemetry_fn *next;
};

/* Host-wide counters: they live as long as the daemon, whatever functions come and go. */
struct telemetry_host {
    uint64_t events[_TELEMETRY_EVENT_MODE_MAX][_TELEMETRY_EVENT_OUTCOME_MAX];
    uint64_t event_deliveries;
    uint64_t events_refused[TELEMETRY_EVENT_REFUSALS];
    uint64_t event_dead_letters[_TELEMETRY_DEAD_REASON_MAX];
    uint64_t sink_attempts, sink_final[2]; /* [delivered] */
    int64_t sink_pending;
    uint64_t auth_refused[_TELEMETRY_AUTH_REFUSAL_MAX];
    uint64_t auth_allowed[TELEMETRY_ROLES_MAX];
};

/* Seconds from one monotonic reading to a later one (0 if it is not later). */
static inline double telemetry_seconds(uint64_t from_us, uint64_t to_us)
{
    return to_us > from_us ? (double)(to_us - from_us) / 1e6 : 0;
}

/* Sets up (idempotent) and frees the module's state. */
int telemetry_init(void);
void telemetry_free(void);

/* A cold start handed its invocation to the worker: the queue wait, the shim's namespace and
 * root setup, and the runtime's init, in seconds. */
void telemetry_cold_start(const char *function, double queue_s, double setup_s, double init_s);
/* An attempt ended: its status, duration (hand-off to result) and billed ms; for a cold start the
 * duration is also its first-byte phase. */
void telemetry_complete(const char *function, enum telemetry_status status, double duration_s,
                        int64_t billed_ms, bool cold);
/* An async invocation was dead-lettered. */
void telemetry_dead_letter(const char *function);
/* Resource use measured for the function (today the pool reads the container's cgroup when an
 * invocation ends; the accountant may call this instead): CPU seconds to add, and a memory
 * peak in bytes (the family keeps the highest). */
void telemetry_usage(const char *function, double cpu_seconds, uint64_t memory_peak_bytes);

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

/* Reading back, for the scrape. A function's counters, NULL when nothing was counted for it. */
const struct telemetry_fn *telemetry_function(const char *name);
const struct telemetry_host *telemetry_host(void);
/* Async invocations dead-lettered since start, every function (deleted ones included). */
uint64_t telemetry_dead_letters(void);
