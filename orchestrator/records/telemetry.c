#include "records/telemetry.h"

#include <string.h>

#include "base/util.h"

const int telemetry_event_refusal_statuses[TELEMETRY_EVENT_REFUSALS - 1] = {400, 413, 415,
                                                                            429, 500, 503};

static struct {
    bool ready;
    struct telemetry_fn *fns;
    struct telemetry_host host;
} T;

int telemetry_init(void)
{
    T.ready = true;
    return 0;
}

static void fn_free(struct telemetry_fn *t)
{
    metrics_histogram_done(&t->duration);
    for (size_t i = 0; i < _TELEMETRY_PHASE_MAX; i++)
        metrics_histogram_done(&t->phases[i]);
    free(t);
}

void telemetry_free(void)
{
    while (T.fns) {
        struct telemetry_fn *t = T.fns;
        T.fns = t->next;
        fn_free(t);
    }
    memset(&T.host, 0, sizeof(T.host));
    T.ready = false;
}

static struct telemetry_fn *find(const char *name)
{
    for (struct telemetry_fn *t = T.fns; t; t = t->next)
        if (streq(t->name, name))
            return t;
    return NULL;
}

/* The function's state, made on first use; NULL if memory ran out (the event is not counted). */
static struct telemetry_fn *get(const char *name)
{
    struct telemetry_fn *t = find(name);
    if (t)
        return t;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    snprintf(t->name, sizeof(t->name), "%s", name);
    int r = metrics_histogram_init(&t->duration, metrics_latency_bounds, metrics_latency_nbounds);
    for (size_t i = 0; r == 0 && i < _TELEMETRY_PHASE_MAX; i++)
        r = metrics_histogram_init(&t->phases[i], metrics_latency_bounds, metrics_latency_nbounds);
    if (r < 0) {
        fn_free(t);
        return NULL;
    }
    t->next = T.fns;
    T.fns = t;
    return t;
}

void telemetry_cold_start(const char *function, double queue_s, double setup_s, double init_s)
{
    struct telemetry_fn *t = get(function);
    if (!t)
        return;
    metrics_histogram_observe(&t->phases[TELEMETRY_PHASE_QUEUE], queue_s);
    metrics_histogram_observe(&t->phases[TELEMETRY_PHASE_SETUP], setup_s);
    metrics_histogram_observe(&t->phases[TELEMETRY_PHASE_INIT], init_s);
}

void telemetry_complete(const char *function, enum telemetry_status status, double duration_s,
                        int64_t billed_ms, bool cold)
{
    struct telemetry_fn *t = get(function);
    if (!t)
        return;
    if ((unsigned)status < _TELEMETRY_STATUS_MAX)
        t->by_status[status]++;
    t->billed_ms += billed_ms > 0 ? (uint64_t)billed_ms : 0;
    metrics_histogram_observe(&t->duration, duration_s);
    if (cold)
        metrics_histogram_observe(&t->phases[TELEMETRY_PHASE_FIRST_BYTE], duration_s);
}

void telemetry_dead_letter(const char *function)
{
    struct telemetry_fn *t = get(function);
    if (t)
        t->dead_letters++;
}

void telemetry_usage(const char *function, double cpu_seconds, uint64_t memory_peak_bytes)
{
    struct telemetry_fn *t = get(function);
    if (!t)
        return;
    t->cpu_seconds += cpu_seconds;
    if (memory_peak_bytes > t->memory_peak)
        t->memory_peak = memory_peak_bytes;
}

void telemetry_event_accepted(enum telemetry_event_mode mode, bool duplicate, size_t deliveries)
{
    enum telemetry_event_outcome o = duplicate         ? TELEMETRY_EVENT_DUPLICATE
                                     : deliveries == 0 ? TELEMETRY_EVENT_NO_SUBSCRIBER
                                                       : TELEMETRY_EVENT_DELIVERED;
    if ((unsigned)mode < _TELEMETRY_EVENT_MODE_MAX)
        T.host.events[mode][o]++;
    T.host.event_deliveries += deliveries;
}

void telemetry_event_refused(int status)
{
    size_t i = 0;
    while (i < ARRAY_SIZE(telemetry_event_refusal_statuses) &&
           telemetry_event_refusal_statuses[i] != status)
        i++;
    T.host.events_refused[i]++;
}

void telemetry_event_emitted(const char *function)
{
    struct telemetry_fn *t = get(function);
    if (t)
        t->events_emitted++;
}

void telemetry_event_dead_letter(enum telemetry_dead_letter_reason reason)
{
    if ((unsigned)reason < _TELEMETRY_DEAD_REASON_MAX)
        T.host.event_dead_letters[reason]++;
}

void telemetry_schedule_run(const char *function, bool makeup)
{
    struct telemetry_fn *t = get(function);
    if (t)
        t->schedule_runs[makeup]++;
}

void telemetry_sink_pending(int delta)
{
    T.host.sink_pending += delta;
}

void telemetry_sink_attempt(void)
{
    T.host.sink_attempts++;
}

void telemetry_sink_final(bool delivered)
{
    T.host.sink_final[delivered]++;
}

void telemetry_auth_refused(enum telemetry_auth_refusal reason)
{
    if ((unsigned)reason < _TELEMETRY_AUTH_REFUSAL_MAX)
        T.host.auth_refused[reason]++;
}

void telemetry_auth_allowed(unsigned role)
{
    if (role < TELEMETRY_ROLES_MAX)
        T.host.auth_allowed[role]++;
}

const struct telemetry_fn *telemetry_function(const char *name)
{
    return find(name);
}

const struct telemetry_host *telemetry_host(void)
{
    return &T.host;
}

uint64_t telemetry_dead_letters(void)
{
    uint64_t dead = 0;
    for (const struct telemetry_fn *t = T.fns; t; t = t->next)
        dead += t->dead_letters;
    return dead;
}
