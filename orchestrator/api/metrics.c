#include "api/metrics.h"

#include <string.h>

#include "api/api.h"
#include "api/auth.h"
#include "api/forward.h"
#include "config.h"
#include "dispatch/dispatch.h"
#include "dispatch/scaler.h"
#include "records/db.h"
#include "records/journal.h"
#include "records/telemetry.h"

static const char *const phase_names[] = {
    [TELEMETRY_PHASE_QUEUE] = "queue_wait",
    [TELEMETRY_PHASE_SETUP] = "setup",
    [TELEMETRY_PHASE_INIT] = "runtime_init",
    [TELEMETRY_PHASE_FIRST_BYTE] = "first_byte",
};

static const char *const status_names[] = {
    [TELEMETRY_OK] = "ok",
    [TELEMETRY_ERROR] = "error",
    [TELEMETRY_CRASH] = "crash",
    [TELEMETRY_TIMEOUT] = "timeout",
    [TELEMETRY_INIT_ERROR] = "init_error",
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

static const char *const event_outcome_names[] = {
    [TELEMETRY_EVENT_DELIVERED] = "delivered",
    [TELEMETRY_EVENT_DUPLICATE] = "duplicate",
    [TELEMETRY_EVENT_NO_SUBSCRIBER] = "no_subscriber",
};

/* Telemetry's refusal statuses, and "other" last. */
static const char *const event_refusal_names[TELEMETRY_EVENT_REFUSALS] = {
    "400", "413", "415", "429", "500", "503", "other"};

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

_Static_assert(AUTH_NROLES <= TELEMETRY_ROLES_MAX, "telemetry counts every role");

/* One function's series: dispatch's live state and telemetry's counters (NULL: none yet). */
struct row {
    struct dispatch_fn_stats s;
    const struct telemetry_fn *t;
};

/* Every function's, read once per scrape, in dispatch's order. */
struct rows {
    struct row *v;
    size_t n;
};

static int rows_read(struct dispatch *d, struct rows *ret)
{
    size_t n = 0;
    for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn))
        n++;
    struct row *v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    n = 0;
    for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn), n++) {
        dispatch_fn_stats(fn, &v[n].s);
        v[n].t = telemetry_function(v[n].s.name);
    }
    *ret = (struct rows){.v = v, .n = n};
    return 0;
}

/* One gauge or counter sample per function, from a getter. */
typedef double (*fn_value)(const struct row *fn);

static void per_function(struct metrics_buf *b, const struct rows *rows, const char *name,
                         enum metric_type type, const char *help, fn_value get_value)
{
    metrics_family(b, name, type, help);
    for (size_t i = 0; i < rows->n; i++) {
        const char *labels[] = {"function", rows->v[i].s.name, NULL};
        metrics_sample(b, labels, get_value(&rows->v[i]));
    }
}

static double v_queue(const struct row *fn)
{
    return (double)fn->s.queued;
}
static double v_inflight(const struct row *fn)
{
    return (double)fn->s.inflight;
}
static double v_cold(const struct row *fn)
{
    return (double)fn->s.cold_starts;
}
static double v_billed(const struct row *fn)
{
    return fn->t ? (double)fn->t->billed_ms / 1000 : 0;
}
static double v_cpu(const struct row *fn)
{
    return fn->t ? fn->t->cpu_seconds : 0;
}
static double v_peak(const struct row *fn)
{
    return fn->t ? (double)fn->t->memory_peak : 0;
}
static double v_throttled(const struct row *fn)
{
    return (double)fn->s.throttles;
}
static double v_dead(const struct row *fn)
{
    return fn->t ? (double)fn->t->dead_letters : 0;
}
static double v_emitted(const struct row *fn)
{
    return fn->t ? (double)fn->t->events_emitted : 0;
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
    const struct telemetry_host *h = telemetry_host();
    metrics_family(b, "ignis_events_total", METRIC_COUNTER,
                   "Events accepted (stored with their deliveries), by mode (binary, structured, "
                   "batch: POST /v1/events; emitted: by a function) and outcome (delivered, "
                   "duplicate, no_subscriber).");
    for (size_t m = 0; m < _TELEMETRY_EVENT_MODE_MAX; m++)
        for (size_t o = 0; o < _TELEMETRY_EVENT_OUTCOME_MAX; o++) {
            const char *labels[] = {"mode", event_mode_names[m], "outcome", event_outcome_names[o],
                                    NULL};
            metrics_sample(b, labels, (double)h->events[m][o]);
        }
    metrics_family(b, "ignis_event_deliveries_total", METRIC_COUNTER,
                   "Async invocations made for accepted events, one per subscriber.");
    metrics_sample(b, NULL, (double)h->event_deliveries);
    metrics_family(b, "ignis_events_refused_total", METRIC_COUNTER,
                   "POST /v1/events requests answered with an error instead of 202, by status.");
    by_label(b, "status", event_refusal_names, h->events_refused, TELEMETRY_EVENT_REFUSALS);
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
static void render_stock(struct metrics_buf *b, const struct container_stock_stats *s)
{
    const struct container_stock_stats st = *s;
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
                   "Ended containers' resources (and killed ones' exits) handed back, not yet done "
                   "by the stock's thread.");
    metrics_sample(b, NULL, (double)st.cgroups_returned);
}

/* Process: the build, the host and the uptime. The host is an info series of its own, not a
 * label on every series: a scrape's targets already tell hosts apart (instance), and a query
 * that wants the host id joins on it (docs/operations.md "Metrics"). */
static void render_process(struct metrics_buf *b, const char *host_id, uint64_t started_usec)
{
    metrics_family(b, "ignis_build_info", METRIC_GAUGE, "Always 1; the version of ignisd.");
    const char *build[] = {"version", IGNIS_VERSION, NULL};
    metrics_sample(b, build, 1);
    metrics_family(b, "ignis_host_info", METRIC_GAUGE,
                   "Always 1; this host's id among the hosts sharing its store.");
    const char *host[] = {"host", host_id ? host_id : "", NULL};
    metrics_sample(b, host, 1);
    metrics_family(b, "ignis_uptime_seconds", METRIC_GAUGE, "Seconds since ignisd started.");
    metrics_sample(b, NULL, telemetry_seconds(started_usec, now_usec()));
}

/* The store's reachability (PostgreSQL's server may go away; SQLite's file does not), and what
 * the journal wrote (j NULL: nothing of it). */
static void render_store(struct metrics_buf *b, struct journal *j)
{
    struct db_reachability r;
    db_get_reachability(&r);
    metrics_family(b, "ignis_store_up", METRIC_GAUGE,
                   "1 while the store is reachable, 0 while its server is away.");
    metrics_sample(b, NULL, r.up);
    metrics_family(b, "ignis_store_disconnects_total", METRIC_COUNTER,
                   "Times the store became unreachable.");
    metrics_sample(b, NULL, (double)r.disconnects);
    if (!j)
        return;
    struct journal_stats st;
    journal_get_stats(j, &st);
    metrics_family(b, "ignis_store_statements_total", METRIC_COUNTER,
                   "Statements the journal wrote (records, the ledger, the queue's rows).");
    metrics_sample(b, NULL, (double)st.statements);
    metrics_family(b, "ignis_store_commits_total", METRIC_COUNTER,
                   "Transactions the journal committed: its statements go in batches.");
    metrics_sample(b, NULL, (double)st.commits);
    metrics_family(b, "ignis_store_durable_commits_total", METRIC_COUNTER,
                   "Of the commits, those that waited for the disk (a statement of the batch "
                   "asked for it).");
    metrics_sample(b, NULL, (double)st.full_commits);
}

/* Host-wide: containers, the memory budget, the async backlog, dead letters. */
static void render_capacity(struct metrics_buf *b, const struct dispatch_host_stats *host,
                            const struct rows *rows)
{
    size_t backlog = 0;
    for (size_t i = 0; i < rows->n; i++)
        backlog += rows->v[i].s.queued_async;
    metrics_family(b, "ignis_live_containers", METRIC_GAUGE,
                   "Containers that exist now, every function, draining ones included.");
    metrics_sample(b, NULL, (double)host->live_workers);
    metrics_family(b, "ignis_memory_budget_bytes", METRIC_GAUGE,
                   "Memory the containers' limits may add up to on this host.");
    metrics_sample(b, NULL, (double)host->memory_budget);
    metrics_family(b, "ignis_memory_budget_used_bytes", METRIC_GAUGE,
                   "Memory limits of the live containers, added up.");
    metrics_sample(b, NULL, (double)host->memory_committed);
    metrics_family(b, "ignis_async_backlog", METRIC_GAUGE,
                   "Accepted async invocations waiting in a queue (retries included).");
    metrics_sample(b, NULL, (double)backlog);
    metrics_family(b, "ignis_dead_letters_total", METRIC_COUNTER,
                   "Async invocations dead-lettered since ignisd started, every function.");
    metrics_sample(b, NULL, (double)telemetry_dead_letters());
}

/* Per function, first part: invocations, durations, queues, containers, cold starts. */
static void render_invocations(struct metrics_buf *b, const struct rows *rows,
                               const struct metrics_histogram *empty)
{
    metrics_family(b, "ignis_invocations_total", METRIC_COUNTER,
                   "Invocation attempts that ended, by status (ok, error, crash, timeout, "
                   "init_error).");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        for (size_t k = 0; k < _TELEMETRY_STATUS_MAX; k++) {
            const char *labels[] = {"function", fn->s.name, "status", status_names[k], NULL};
            metrics_sample(b, labels, fn->t ? (double)fn->t->by_status[k] : 0);
        }
    }
    /* Bounded: a function's versions are pruned to keep_versions, and a version's series goes
     * with it. */
    metrics_family(b, "ignis_version_invocations_total", METRIC_COUNTER,
                   "Invocation attempts that ended, by the function version that ran them (the "
                   "versions kept).");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        for (size_t k = 0; k < fn->s.n_by_version; k++) {
            char version[24];
            snprintf(version, sizeof(version), "%lld", (long long)fn->s.by_version[k].version);
            const char *labels[] = {"function", fn->s.name, "version", version, NULL};
            metrics_sample(b, labels, (double)fn->s.by_version[k].invocations);
        }
    }
    metrics_family(b, "ignis_invocation_duration_seconds", METRIC_HISTOGRAM,
                   "Wall time from hand-off to the container until the attempt ended.");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        const char *labels[] = {"function", fn->s.name, NULL};
        metrics_histogram(b, labels, fn->t ? &fn->t->duration : empty);
    }
    per_function(b, rows, "ignis_queue_depth", METRIC_GAUGE,
                 "Invocations waiting for a container (retries in backoff included).", v_queue);
    per_function(b, rows, "ignis_inflight", METRIC_GAUGE, "Invocations running now.", v_inflight);
    metrics_family(b, "ignis_containers", METRIC_GAUGE,
                   "The function's containers by state (draining ones are in none).");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        static const char *const states[] = {"ready", "busy", "spawning"};
        size_t counts[] = {fn->s.nready, fn->s.nbusy, fn->s.nspawning};
        for (size_t k = 0; k < ARRAY_SIZE(states); k++) {
            const char *labels[] = {"function", fn->s.name, "state", states[k], NULL};
            metrics_sample(b, labels, (double)counts[k]);
        }
    }
    per_function(b, rows, "ignis_cold_starts_total", METRIC_COUNTER,
                 "Invocations that waited for a container made for them.", v_cold);
    metrics_family(b, "ignis_cold_start_phase_seconds", METRIC_HISTOGRAM,
                   "Cold starts by phase: queue_wait (enqueued to hand-off), setup (shim: "
                   "namespaces, cgroups, root), runtime_init (exec to READY), first_byte "
                   "(hand-off to the result).");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        for (size_t p = 0; p < _TELEMETRY_PHASE_MAX; p++) {
            const char *labels[] = {"function", fn->s.name, "phase", phase_names[p], NULL};
            metrics_histogram(b, labels, fn->t ? &fn->t->phases[p] : empty);
        }
    }
}

/* Per function, second part: billing, resources, the scaler, throttles, events, schedules. */
static void render_usage(struct metrics_buf *b, const struct rows *rows)
{
    /* In seconds, not the milliseconds Ignis bills in: promtool's lint refuses any base unit
     * but seconds. The value is the billed ms / 1000, exact to the millisecond. */
    per_function(b, rows, "ignis_billed_seconds_total", METRIC_COUNTER,
                 "Billed time (wall time from hand-off to result, rounded up to the "
                 "millisecond per attempt), in seconds.",
                 v_billed);
    per_function(b, rows, "ignis_cpu_seconds_total", METRIC_COUNTER,
                 "CPU time (user + system) of the function's containers, read from their "
                 "cgroups when an invocation ends.",
                 v_cpu);
    per_function(b, rows, "ignis_memory_peak_bytes", METRIC_GAUGE,
                 "The highest memory peak seen in one of the function's containers.", v_peak);
    metrics_family(b, "ignis_scaler_decisions_total", METRIC_COUNTER,
                   "Scaler actions applied, by action and reason (spawns count containers).");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        for (size_t k = 0; k < ARRAY_SIZE(action_names); k++)
            for (size_t r = 0; r < _SCALER_REASON_MAX; r++) {
                if (!fn->s.decisions[k][r])
                    continue; /* only the combinations that happened: bounded either way */
                const char *labels[] = {"function", fn->s.name,
                                        "action",   action_names[k],
                                        "reason",   scaler_reason_name(r),
                                        NULL};
                metrics_sample(b, labels, (double)fn->s.decisions[k][r]);
            }
    }
    per_function(b, rows, "ignis_throttled_total", METRIC_COUNTER,
                 "Invocations refused with 429 because the queue was full.", v_throttled);
    per_function(b, rows, "ignis_function_dead_letters_total", METRIC_COUNTER,
                 "Async invocations of the function dead-lettered.", v_dead);
    per_function(b, rows, "ignis_events_emitted_total", METRIC_COUNTER,
                 "Events the function emitted (EVENT frames), whatever became of them.", v_emitted);
    metrics_family(b, "ignis_schedule_runs_total", METRIC_COUNTER,
                   "Schedule runs submitted, by kind (on_time, or makeup: a slot missed while "
                   "ignisd was down).");
    for (size_t i = 0; i < rows->n; i++) {
        const struct row *fn = &rows->v[i];
        static const char *const kinds[] = {"on_time", "makeup"};
        for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
            const char *labels[] = {"function", fn->s.name, "kind", kinds[k], NULL};
            metrics_sample(b, labels, fn->t ? (double)fn->t->schedule_runs[k] : 0);
        }
    }
}

int api_metrics_render(struct dispatch *d, struct journal *j, const struct forwarder *fw,
                       const char *host_id, uint64_t started_usec, char **ret_text, size_t *ret_len)
{
    struct metrics_buf b = {};
    static const uint64_t zeros[64] = {}; /* at least metrics_latency_nbounds + 1 */
    const struct metrics_histogram empty = {.bounds = metrics_latency_bounds,
                                            .nbounds = metrics_latency_nbounds,
                                            .counts = (uint64_t *)zeros};
    struct dispatch_host_stats host;
    struct rows rows;
    if (rows_read(d, &rows) < 0)
        return -ENOMEM;
    dispatch_host_stats(d, &host);

    render_process(&b, host_id, started_usec);
    render_store(&b, j);
    render_capacity(&b, &host, &rows);
    render_invocations(&b, &rows, &empty);
    render_usage(&b, &rows);
    render_host(&b);
    forward_metrics(fw, &b);
    if (host.has_stock)
        render_stock(&b, &host.stock);
    free(rows.v);

    *ret_text = metrics_take(&b, ret_len);
    metrics_buf_done(&b);
    return *ret_text ? 0 : -ENOMEM;
}

void api_get_metrics(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    char *text;
    size_t len;
    if (api_metrics_render(a->dispatch, a->journal, a->forwarder, a->host_id, a->started_usec,
                           &text, &len) < 0) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_reply_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
