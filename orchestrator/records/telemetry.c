#include "records/telemetry.h"

#include <string.h>

#include "api/auth.h"
#include "config.h"
#include "container/container.h"
#include "base/metrics.h"

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

static const char *const event_mode_names[] = {
    [TELEMETRY_EVENT_BINARY] = "binary",
    [TELEMETRY_EVENT_STRUCTURED] = "structured",
    [TELEMETRY_EVENT_BATCH] = "batch",
    [TELEMETRY_EVENT_EMITTED] = "emitted",
};

enum event_outcome { EVENT_DELIVERED, EVENT_DUPLICATE, EVENT_NO_SUBSCRIBER, _EVENT_OUTCOME_MAX };

static const char *const event_outcome_names[] = {
    [EVENT_DELIVERED] = "delivered",
    [EVENT_DUPLICATE] = "duplicate",
    [EVENT_NO_SUBSCRIBER] = "no_subscriber",
};

/* The statuses POST /v1/events answers instead of 202 (docs/api.md); anything else is "other",
 * the last. */
static const int event_refusal_statuses[] = {400, 413, 415, 429, 500, 503};
static const char *const event_refusal_names[] = {"400", "413", "415",  "429",
                                                  "500", "503", "other"};
#define N_EVENT_REFUSALS ARRAY_SIZE(event_refusal_names)
_Static_assert(ARRAY_SIZE(event_refusal_names) == ARRAY_SIZE(event_refusal_statuses) + 1,
               "one name per status, and other");

static const char *const dead_reason_names[] = {
    [TELEMETRY_DEAD_HOP_LIMIT] = "hop_limit",   [TELEMETRY_DEAD_INVALID] = "invalid",
    [TELEMETRY_DEAD_TOO_LARGE] = "too_large",   [TELEMETRY_DEAD_NO_INVOCATION] = "no_invocation",
    [TELEMETRY_DEAD_QUEUE_FULL] = "queue_full",
};

static const struct {
    const char *status, *reason;
} auth_refusals[] = {
    [TELEMETRY_AUTH_NO_TOKEN] = {"401", "no_token"},
    [TELEMETRY_AUTH_BAD_HEADER] = {"401", "bad_header"},
    [TELEMETRY_AUTH_INVALID_TOKEN] = {"401", "invalid_token"},
    [TELEMETRY_AUTH_REVOKED] = {"401", "revoked"},
    [TELEMETRY_AUTH_EXPIRED] = {"401", "expired"},
    [TELEMETRY_AUTH_FORBIDDEN] = {"403", "forbidden"},
    [TELEMETRY_AUTH_RATE_LIMITED] = {"429", "rate_limited"},
};

struct tfn {
    char name[MANIFEST_NAME_MAX + 1];
    uint64_t by_status[N_KINDS];
    uint64_t billed_ms, dead_letters;
    uint64_t events_emitted, schedule_runs[2]; /* [makeup] */
    double cpu_seconds;
    uint64_t memory_peak;
    struct metrics_histogram duration;
    struct metrics_histogram phases[_PHASE_MAX];
    struct tfn *next;
};

/* Host-wide counters: they live as long as the daemon, whatever functions come and go. */
struct thost {
    uint64_t events[_TELEMETRY_EVENT_MODE_MAX][_EVENT_OUTCOME_MAX];
    uint64_t event_deliveries;
    uint64_t events_refused[N_EVENT_REFUSALS];
    uint64_t event_dead_letters[_TELEMETRY_DEAD_REASON_MAX];
    uint64_t sink_attempts, sink_final[2]; /* [delivered] */
    int64_t sink_pending;
    uint64_t auth_refused[_TELEMETRY_AUTH_REFUSAL_MAX];
    uint64_t auth_allowed[AUTH_NROLES];
};

static struct {
    bool ready;
    struct tfn *fns;
    struct thost host;
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
    memset(&T.host, 0, sizeof(T.host));
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

void telemetry_dead_letter(const struct fn_state *fn)
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

void telemetry_event_accepted(enum telemetry_event_mode mode, bool duplicate, size_t deliveries)
{
    enum event_outcome o = duplicate         ? EVENT_DUPLICATE
                           : deliveries == 0 ? EVENT_NO_SUBSCRIBER
                                             : EVENT_DELIVERED;
    if ((unsigned)mode < _TELEMETRY_EVENT_MODE_MAX)
        T.host.events[mode][o]++;
    T.host.event_deliveries += deliveries;
}

void telemetry_event_refused(int status)
{
    size_t i = 0;
    while (i < ARRAY_SIZE(event_refusal_statuses) && event_refusal_statuses[i] != status)
        i++;
    T.host.events_refused[i]++;
}

void telemetry_event_emitted(const char *function)
{
    struct tfn *t = get(function);
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
    struct tfn *t = get(function);
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
    if (role < AUTH_NROLES)
        T.host.auth_allowed[role]++;
}

static const struct tfn *find(const char *name)
{
    for (struct tfn *t = T.fns; t; t = t->next)
        if (streq(t->name, name))
            return t;
    return NULL;
}

/* One gauge or counter sample per function, from a getter. */
typedef double (*fn_value)(const struct fn_state *fn, const struct tfn *t);

static void per_function(struct metrics_buf *b, const struct dispatch *d, const char *name,
                         enum metric_type type, const char *help, fn_value get_value)
{
    metrics_family(b, name, type, help);
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
        const char *labels[] = {"function", fn->name, NULL};
        metrics_sample(b, labels, get_value(fn, find(fn->name)));
    }
}

static double v_queue(const struct fn_state *fn, const struct tfn *t)
{
    return (double)fn->queued;
}
static double v_inflight(const struct fn_state *fn, const struct tfn *t)
{
    return (double)fn->inflight;
}
static double v_cold(const struct fn_state *fn, const struct tfn *t)
{
    return (double)fn->cold_starts;
}
static double v_billed(const struct fn_state *fn, const struct tfn *t)
{
    return t ? (double)t->billed_ms / 1000 : 0;
}
static double v_cpu(const struct fn_state *fn, const struct tfn *t)
{
    return t ? t->cpu_seconds : 0;
}
static double v_peak(const struct fn_state *fn, const struct tfn *t)
{
    return t ? (double)t->memory_peak : 0;
}
static double v_throttled(const struct fn_state *fn, const struct tfn *t)
{
    return (double)fn->throttles;
}
static double v_dead(const struct fn_state *fn, const struct tfn *t)
{
    return t ? (double)t->dead_letters : 0;
}
static double v_emitted(const struct fn_state *fn, const struct tfn *t)
{
    return t ? (double)t->events_emitted : 0;
}

/* One sample per value of a single label: key=names[i] counted values[i]. */
static void by_label(struct metrics_buf *b, const char *key, const char *const *names,
                     const uint64_t *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *labels[] = {key, names[i], NULL};
        metrics_sample(b, labels, (double)values[i]);
    }
}

/* Events, sinks and auth: host-wide, every label value always written (the sets are fixed). */
static void render_host(struct metrics_buf *b)
{
    const struct thost *h = &T.host;
    metrics_family(b, "ignis_events_total", METRIC_COUNTER,
                   "Events accepted (stored with their deliveries), by mode (binary, structured, "
                   "batch: POST /v1/events; emitted: by a function) and outcome (delivered, "
                   "duplicate, no_subscriber).");
    for (size_t m = 0; m < _TELEMETRY_EVENT_MODE_MAX; m++)
        for (size_t o = 0; o < _EVENT_OUTCOME_MAX; o++) {
            const char *labels[] = {"mode", event_mode_names[m], "outcome", event_outcome_names[o],
                                    NULL};
            metrics_sample(b, labels, (double)h->events[m][o]);
        }
    metrics_family(b, "ignis_event_deliveries_total", METRIC_COUNTER,
                   "Async invocations made for accepted events, one per subscriber.");
    metrics_sample(b, NULL, (double)h->event_deliveries);
    metrics_family(b, "ignis_events_refused_total", METRIC_COUNTER,
                   "POST /v1/events requests answered with an error instead of 202, by status.");
    by_label(b, "status", event_refusal_names, h->events_refused, N_EVENT_REFUSALS);
    metrics_family(b, "ignis_event_dead_letters_total", METRIC_COUNTER,
                   "Emitted events dead-lettered, by reason (hop_limit, invalid, too_large, "
                   "no_invocation).");
    by_label(b, "reason", dead_reason_names, h->event_dead_letters, _TELEMETRY_DEAD_REASON_MAX);
    metrics_family(b, "ignis_sink_deliveries_total", METRIC_COUNTER,
                   "Sink deliveries that ended, by status (delivered, failed: retries exhausted).");
    static const char *const sink_status[] = {"failed", "delivered"};
    by_label(b, "status", sink_status, h->sink_final, ARRAY_SIZE(sink_status));
    metrics_family(b, "ignis_sink_attempts_total", METRIC_COUNTER,
                   "HTTP requests made to sinks (first attempts and retries).");
    metrics_sample(b, NULL, (double)h->sink_attempts);
    metrics_family(b, "ignis_sink_pending", METRIC_GAUGE,
                   "Sink deliveries not yet ended: in flight, waiting for a slot, or in backoff.");
    metrics_sample(b, NULL, (double)h->sink_pending);
    metrics_family(b, "ignis_auth_refused_total", METRIC_COUNTER,
                   "Requests refused by auth, by status (401, 403, 429) and reason.");
    for (size_t i = 0; i < _TELEMETRY_AUTH_REFUSAL_MAX; i++) {
        const char *labels[] = {"status", auth_refusals[i].status, "reason",
                                auth_refusals[i].reason, NULL};
        metrics_sample(b, labels, (double)h->auth_refused[i]);
    }
    metrics_family(b, "ignis_auth_allowed_total", METRIC_COUNTER,
                   "Requests with a token that auth let through, by the token's role.");
    const char *roles[AUTH_NROLES];
    for (size_t i = 0; i < AUTH_NROLES; i++)
        roles[i] = auth_role_name((enum auth_role)i);
    by_label(b, "role", roles, h->auth_allowed, AUTH_NROLES);
}

/* Four samples of a stock family: {netns, cgroup} x the two results, values in that order. */
static void stock_samples(struct metrics_buf *b, const char *result_a, const char *result_b,
                          const uint64_t v[4])
{
    const char *resources[] = {"netns", "cgroup"}, *results[] = {result_a, result_b};
    for (size_t i = 0; i < 4; i++) {
        const char *labels[] = {"resource", resources[i / 2], "result", results[i % 2], NULL};
        metrics_sample(b, labels, (double)v[i]);
    }
}

/* The container stock (container.h), when ignisd has one (as root). Its counters are the
 * stock's own, kept for the daemon's life. */
static void render_stock(struct metrics_buf *b, struct container_stock *stock)
{
    struct container_stock_stats st;
    container_stock_stats(stock, &st);
    metrics_family(b, "ignis_container_stock_takes_total", METRIC_COUNTER,
                   "Containers that asked the stock for a network namespace or cgroup, by "
                   "resource and result (taken: one was ready; missed: made in place).");
    const uint64_t takes[] = {st.netns_taken, st.netns_missed, st.cgroups_taken, st.cgroups_missed};
    stock_samples(b, "taken", "missed", takes);
    metrics_family(b, "ignis_container_stock_busy_total", METRIC_COUNTER,
                   "Containers that found the stock's lock held and made everything in place.");
    metrics_sample(b, NULL, (double)st.busy);
    metrics_family(b, "ignis_container_stock_returns_total", METRIC_COUNTER,
                   "Resources of ended containers the stock's thread handled, by resource and "
                   "result (reused: kept for the function's next container; discarded: cgroup "
                   "removed, namespace closed).");
    const uint64_t returns[] = {st.netns_reused, st.netns_closed, st.cgroups_reused,
                                st.cgroups_removed};
    stock_samples(b, "reused", "discarded", returns);
    metrics_family(b, "ignis_container_stock_ready", METRIC_GAUGE,
                   "Prepared resources the stock holds now, by resource (cgroups: every "
                   "function's together).");
    const char *netns[] = {"resource", "netns", NULL}, *cgroup[] = {"resource", "cgroup", NULL};
    metrics_sample(b, netns, (double)st.netns_ready);
    metrics_sample(b, cgroup, (double)st.cgroups_ready);
    metrics_family(b, "ignis_container_stock_backlog", METRIC_GAUGE,
                   "Ended containers' resources handed back, waiting for the stock's thread.");
    metrics_sample(b, NULL, (double)st.cgroups_returned);
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
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
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
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
        const struct tfn *t = find(fn->name);
        for (size_t k = 0; k < N_KINDS; k++) {
            const char *labels[] = {"function", fn->name, "status", status_names[k], NULL};
            metrics_sample(&b, labels, t ? (double)t->by_status[k] : 0);
        }
    }
    metrics_family(&b, "ignis_invocation_duration_seconds", METRIC_HISTOGRAM,
                   "Wall time from hand-off to the container until the attempt ended.");
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
        const struct tfn *t = find(fn->name);
        const char *labels[] = {"function", fn->name, NULL};
        metrics_histogram(&b, labels, t ? &t->duration : &empty);
    }
    per_function(&b, d, "ignis_queue_depth", METRIC_GAUGE,
                 "Invocations waiting for a container (retries in backoff included).", v_queue);
    per_function(&b, d, "ignis_inflight", METRIC_GAUGE, "Invocations running now.", v_inflight);
    metrics_family(&b, "ignis_containers", METRIC_GAUGE,
                   "The function's containers by state (draining ones are in none).");
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
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
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
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
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next)
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
    per_function(&b, d, "ignis_events_emitted_total", METRIC_COUNTER,
                 "Events the function emitted (EVENT frames), whatever became of them.", v_emitted);
    metrics_family(&b, "ignis_schedule_runs_total", METRIC_COUNTER,
                   "Schedule runs submitted, by kind (on_time, or makeup: a slot missed while "
                   "ignisd was down).");
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
        const struct tfn *t = find(fn->name);
        static const char *const kinds[] = {"on_time", "makeup"};
        for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
            const char *labels[] = {"function", fn->name, "kind", kinds[k], NULL};
            metrics_sample(&b, labels, t ? (double)t->schedule_runs[k] : 0);
        }
    }

    render_host(&b);
    if (d->stock)
        render_stock(&b, d->stock);

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
