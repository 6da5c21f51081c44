#include "telemetry.h"

#include <string.h>

#include "config.h"
#include "metrics.h"
#include "pool.h"

#define N_KINDS (OUTCOME_INIT + 1)

enum phase { PHASE_QUEUE, PHASE_SETUP, PHASE_INIT, PHASE_FIRST_BYTE, _PHASE_MAX };

static const char *const phase_names[] = {
    [PHASE_QUEUE] = "queue_wait",
    [PHASE_SETUP] = "setup",
    [PHASE_INIT] = "runtime_init",
    [PHASE_FIRST_BYTE] = "first_byte",
};

static const char *const status_names[] = {
    [OUTCOME_OK] = "ok",           [OUTCOME_ERROR] = "error",     [OUTCOME_CRASH] = "crash",
    [OUTCOME_TIMEOUT] = "timeout", [OUTCOME_INIT] = "init_error",
};

static const char *const action_names[] = {
    [SCALER_SPAWN] = "spawn",
    [SCALER_REAP] = "reap",
    [SCALER_RETIRE] = "retire",
};

struct tfn {
    char name[MANIFEST_NAME_MAX + 1];
    uint64_t by_status[N_KINDS];
    uint64_t billed_ms, dead_letters;
    double cpu_seconds;
    uint64_t memory_peak;
    struct metrics_histogram duration;
    struct metrics_histogram phases[_PHASE_MAX];
    struct tfn *next;
};

static struct {
    bool ready;
    struct tfn *fns;
} T;

int telemetry_init(void)
{
    T.ready = true;
    return 0;
}

static void tfn_free(struct tfn *t)
{
    metrics_histogram_done(&t->duration);
    for (size_t i = 0; i < _PHASE_MAX; i++)
        metrics_histogram_done(&t->phases[i]);
    free(t);
}

void telemetry_free(void)
{
    while (T.fns) {
        struct tfn *t = T.fns;
        T.fns = t->next;
        tfn_free(t);
    }
    T.ready = false;
}

/* The function's state, made on first use; NULL if memory ran out (the event is not counted). */
static struct tfn *get(const char *name)
{
    for (struct tfn *t = T.fns; t; t = t->next)
        if (streq(t->name, name))
            return t;
    struct tfn *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    snprintf(t->name, sizeof(t->name), "%s", name);
    int r = metrics_histogram_init(&t->duration, metrics_latency_bounds, metrics_latency_nbounds);
    for (size_t i = 0; r == 0 && i < _PHASE_MAX; i++)
        r = metrics_histogram_init(&t->phases[i], metrics_latency_bounds, metrics_latency_nbounds);
    if (r < 0) {
        tfn_free(t);
        return NULL;
    }
    t->next = T.fns;
    T.fns = t;
    return t;
}

static double seconds_between(uint64_t from_us, uint64_t to_us)
{
    return to_us > from_us ? (double)(to_us - from_us) / 1e6 : 0;
}

void telemetry_cold_start(const struct inv *inv, const struct worker *w)
{
    struct tfn *t = get(inv->fn->name);
    if (!t)
        return;
    /* The split has the resolution of a loop turn: when the sync pipe's EOF and READY are
     * seen in the same turn, the pool takes both as now, and the whole counts as setup. Without
     * any sync pipe (exec_us 0), the whole counts as init. */
    uint64_t exec_us = w->exec_us ? w->exec_us : w->spawned_us;
    metrics_histogram_observe(&t->phases[PHASE_QUEUE],
                              seconds_between(inv->enqueued_us, inv->started_us));
    metrics_histogram_observe(&t->phases[PHASE_SETUP], seconds_between(w->spawned_us, exec_us));
    metrics_histogram_observe(&t->phases[PHASE_INIT], seconds_between(exec_us, w->ready_us));
}

void telemetry_complete(const struct inv *inv, enum outcome_kind kind, int64_t billed_ms)
{
    struct tfn *t = get(inv->fn->name);
    if (!t)
        return;
    uint64_t now = now_usec();
    if ((unsigned)kind < N_KINDS)
        t->by_status[kind]++;
    t->billed_ms += billed_ms > 0 ? (uint64_t)billed_ms : 0;
    metrics_histogram_observe(&t->duration, seconds_between(inv->started_us, now));
    if (inv->cold)
        metrics_histogram_observe(&t->phases[PHASE_FIRST_BYTE],
                                  seconds_between(inv->started_us, now));
}

void telemetry_dead_letter(const struct fn *fn)
{
    struct tfn *t = get(fn->name);
    if (t)
        t->dead_letters++;
}

void telemetry_usage(const char *function, double cpu_seconds, uint64_t memory_peak_bytes)
{
    struct tfn *t = get(function);
    if (!t)
        return;
    t->cpu_seconds += cpu_seconds;
    if (memory_peak_bytes > t->memory_peak)
        t->memory_peak = memory_peak_bytes;
}

static const struct tfn *find(const char *name)
{
    for (struct tfn *t = T.fns; t; t = t->next)
        if (streq(t->name, name))
            return t;
    return NULL;
}

/* One gauge or counter sample per function, from a getter. */
typedef double (*fn_value)(const struct fn *fn, const struct tfn *t);

static void per_function(struct metrics_buf *b, const struct dispatch *d, const char *name,
                         enum metric_type type, const char *help, fn_value get_value)
{
    metrics_family(b, name, type, help);
    for (const struct fn *fn = d->fns; fn; fn = fn->next) {
        const char *labels[] = {"function", fn->name, NULL};
        metrics_sample(b, labels, get_value(fn, find(fn->name)));
    }
}

static double v_queue(const struct fn *fn, const struct tfn *t)
{
    return (double)fn->queued;
}
static double v_inflight(const struct fn *fn, const struct tfn *t)
{
    return (double)fn->inflight;
}
static double v_cold(const struct fn *fn, const struct tfn *t)
{
    return (double)fn->cold_starts;
}
static double v_billed(const struct fn *fn, const struct tfn *t)
{
    return t ? (double)t->billed_ms / 1000 : 0;
}
static double v_cpu(const struct fn *fn, const struct tfn *t)
{
    return t ? t->cpu_seconds : 0;
}
static double v_peak(const struct fn *fn, const struct tfn *t)
{
    return t ? (double)t->memory_peak : 0;
}
static double v_throttled(const struct fn *fn, const struct tfn *t)
{
    return (double)fn->throttles;
}
static double v_dead(const struct fn *fn, const struct tfn *t)
{
    return t ? (double)t->dead_letters : 0;
}

int telemetry_render(const struct dispatch *d, uint64_t started_usec, char **ret_text,
                     size_t *ret_len)
{
    struct metrics_buf b = {};
    static const uint64_t zeros[64] = {}; /* at least metrics_latency_nbounds + 1 */
    struct metrics_histogram empty = {.bounds = metrics_latency_bounds,
                                      .nbounds = metrics_latency_nbounds,
                                      .counts = (uint64_t *)zeros};

    /* Process. */
    metrics_family(&b, "ignis_build_info", METRIC_GAUGE, "Always 1; the version of ignisd.");
    const char *build[] = {"version", IGNIS_VERSION, NULL};
    metrics_sample(&b, build, 1);
    metrics_family(&b, "ignis_uptime_seconds", METRIC_GAUGE, "Seconds since ignisd started.");
    metrics_sample(&b, NULL, seconds_between(started_usec, now_usec()));

    /* Host-wide. */
    size_t backlog = 0;
    uint64_t dead = 0;
    for (const struct fn *fn = d->fns; fn; fn = fn->next) {
        const struct inv *inv;
        TAILQ_FOREACH(inv, &fn->queue, link)
        backlog += inv->async;
    }
    for (const struct tfn *t = T.fns; t; t = t->next)
        dead += t->dead_letters;
    metrics_family(&b, "ignis_live_containers", METRIC_GAUGE,
                   "Containers that exist now, every function, draining ones included.");
    metrics_sample(&b, NULL, (double)d->live_workers);
    metrics_family(&b, "ignis_memory_budget_bytes", METRIC_GAUGE,
                   "Memory the containers' limits may add up to on this host.");
    metrics_sample(&b, NULL, (double)d->host.memory_budget);
    metrics_family(&b, "ignis_memory_budget_used_bytes", METRIC_GAUGE,
                   "Memory limits of the live containers, added up.");
    metrics_sample(&b, NULL, (double)d->memory_committed);
    metrics_family(&b, "ignis_async_backlog", METRIC_GAUGE,
                   "Accepted async invocations waiting in a queue (retries included).");
    metrics_sample(&b, NULL, (double)backlog);
    metrics_family(&b, "ignis_dead_letters_total", METRIC_COUNTER,
                   "Async invocations dead-lettered since ignisd started, every function.");
    metrics_sample(&b, NULL, (double)dead);

    /* Per function. */
    metrics_family(&b, "ignis_invocations_total", METRIC_COUNTER,
                   "Invocation attempts that ended, by status (ok, error, crash, timeout, "
                   "init_error).");
    for (const struct fn *fn = d->fns; fn; fn = fn->next) {
        const struct tfn *t = find(fn->name);
        for (size_t k = 0; k < N_KINDS; k++) {
            const char *labels[] = {"function", fn->name, "status", status_names[k], NULL};
            metrics_sample(&b, labels, t ? (double)t->by_status[k] : 0);
        }
    }
    metrics_family(&b, "ignis_invocation_duration_seconds", METRIC_HISTOGRAM,
                   "Wall time from hand-off to the container until the attempt ended.");
    for (const struct fn *fn = d->fns; fn; fn = fn->next) {
        const struct tfn *t = find(fn->name);
        const char *labels[] = {"function", fn->name, NULL};
        metrics_histogram(&b, labels, t ? &t->duration : &empty);
    }
    per_function(&b, d, "ignis_queue_depth", METRIC_GAUGE,
                 "Invocations waiting for a container (retries in backoff included).", v_queue);
    per_function(&b, d, "ignis_inflight", METRIC_GAUGE, "Invocations running now.", v_inflight);
    metrics_family(&b, "ignis_containers", METRIC_GAUGE,
                   "The function's containers by state (draining ones are in none).");
    for (const struct fn *fn = d->fns; fn; fn = fn->next) {
        static const char *const states[] = {"ready", "busy", "spawning"};
        size_t counts[] = {fn->nready, fn->nbusy, fn->nspawning};
        for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
            const char *labels[] = {"function", fn->name, "state", states[i], NULL};
            metrics_sample(&b, labels, (double)counts[i]);
        }
    }
    per_function(&b, d, "ignis_cold_starts_total", METRIC_COUNTER,
                 "Invocations that waited for a container made for them.", v_cold);
    metrics_family(&b, "ignis_cold_start_phase_seconds", METRIC_HISTOGRAM,
                   "Cold starts by phase: queue_wait (enqueued to hand-off), setup (shim: "
                   "namespaces, cgroups, root), runtime_init (exec to READY), first_byte "
                   "(hand-off to the result).");
    for (const struct fn *fn = d->fns; fn; fn = fn->next) {
        const struct tfn *t = find(fn->name);
        for (size_t p = 0; p < _PHASE_MAX; p++) {
            const char *labels[] = {"function", fn->name, "phase", phase_names[p], NULL};
            metrics_histogram(&b, labels, t ? &t->phases[p] : &empty);
        }
    }
    /* In seconds, not the milliseconds Ignis bills in: promtool's lint refuses any base unit
     * but seconds. The value is the billed ms / 1000, exact to the millisecond. */
    per_function(&b, d, "ignis_billed_seconds_total", METRIC_COUNTER,
                 "Billed time (wall time from hand-off to result, rounded up to the "
                 "millisecond per attempt), in seconds.",
                 v_billed);
    per_function(&b, d, "ignis_cpu_seconds_total", METRIC_COUNTER,
                 "CPU time (user + system) of the function's containers, read from their "
                 "cgroups when an invocation ends.",
                 v_cpu);
    per_function(&b, d, "ignis_memory_peak_bytes", METRIC_GAUGE,
                 "The highest memory peak seen in one of the function's containers.", v_peak);
    metrics_family(&b, "ignis_scaler_decisions_total", METRIC_COUNTER,
                   "Scaler actions applied, by action and reason (spawns count containers).");
    for (const struct fn *fn = d->fns; fn; fn = fn->next)
        for (size_t k = 0; k < ARRAY_SIZE(action_names); k++)
            for (size_t r = 0; r < _SCALER_REASON_MAX; r++) {
                if (!fn->decisions[k][r])
                    continue; /* only the combinations that happened: bounded either way */
                const char *labels[] = {"function", fn->name,
                                        "action",   action_names[k],
                                        "reason",   scaler_reason_name(r),
                                        NULL};
                metrics_sample(&b, labels, (double)fn->decisions[k][r]);
            }
    per_function(&b, d, "ignis_throttled_total", METRIC_COUNTER,
                 "Invocations refused with 429 because the queue was full.", v_throttled);
    per_function(&b, d, "ignis_function_dead_letters_total", METRIC_COUNTER,
                 "Async invocations of the function dead-lettered.", v_dead);

    *ret_text = metrics_take(&b, ret_len);
    metrics_buf_done(&b);
    return *ret_text ? 0 : -ENOMEM;
}

void telemetry_http_metrics(struct http_request *req, const struct dispatch *d,
                            uint64_t started_usec)
{
    char *text;
    size_t len;
    if (telemetry_render(d, started_usec, &text, &len) < 0) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_reply_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
