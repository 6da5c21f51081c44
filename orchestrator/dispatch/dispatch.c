#include <sched.h>
#include <string.h>

#include "base/log.h"
#include "dispatch/cluster.h"
#include "dispatch/dispatch-internal.h"
#include "functions/registry.h"
#include "records/changes.h"
#include "records/db.h"
#include "records/telemetry.h"
#include "dispatch/meter.h"

/* How often the dispatcher looks at idle workers and retention, at the least. */
#define TICK_US (50 * 1000)
/* An async invocation whose row waits this long for a store that became unreachable (PostgreSQL's
 * server gone as the row was being written) is answered without waiting for it to come back. */
#define SUBMIT_AWAY_US (1000 * 1000)
/* Spawning backs off after consecutive failures, up to this. */
#define SPAWN_BACKOFF_MAX_US (5 * 1000 * 1000)
/* How long spawns wait after one was refused for want of fds. */
#define SPAWN_REFUSED_RETRY_US (1000 * 1000)

void dispatch_options_defaults(struct dispatch_options *o, const char *state_dir)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->state_dir, sizeof(o->state_dir), "%s", state_dir);
    snprintf(o->images_dir, sizeof(o->images_dir), "%s/images", state_dir);
    o->queue_max = 1000;
    o->retention_us = 24ll * 3600 * 1000000;
    o->idempotency_us = 24ll * 3600 * 1000000;
    o->retry_base_ms = 200;
    o->retry_cap_ms = 60000;
    o->shutdown_grace_ms = 10000;
    o->python_templates = true;
}

static void inv_free(struct inv *inv)
{
    if (!inv)
        return;
    free(inv->body);
    free(inv->content_type);
    free(inv->idempotency_key);
    free(inv);
}

struct fn_state *dispatch_function(struct dispatch *d, const char *name)
{
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        if (!fn->of && streq(fn->name, name))
            return fn;
    return NULL;
}

/* The first function's own state from fn on (version states are not functions). */
static struct fn_state *own_from(struct fn_state *fn)
{
    while (fn && fn->of)
        fn = fn->next;
    return fn;
}

struct fn_state *dispatch_functions(struct dispatch *d)
{
    return own_from(d->fns);
}

struct fn_state *dispatch_next(const struct fn_state *fn)
{
    return own_from(fn->next);
}

/* The state whose counters count what fn runs: the function's own. */
static struct fn_state *owner(struct fn_state *fn)
{
    return fn->of ? fn->of : fn;
}

const char *dispatch_fn_name(const struct fn_state *fn)
{
    return fn->name;
}

const struct manifest *dispatch_fn_manifest(const struct fn_state *fn)
{
    return fn->manifest;
}

bool dispatch_fn_removing(const struct fn_state *fn)
{
    return fn->removing;
}

bool dispatch_fn_is_current(const struct fn_state *fn)
{
    return !fn->of;
}

bool dispatch_fn_has_free(const struct fn_state *fn)
{
    return fn->nready > 0;
}

size_t dispatch_fn_containers(const struct fn_state *fn)
{
    return fn->nready + fn->nbusy + fn->nspawning;
}

size_t dispatch_fn_waiting(const struct fn_state *fn)
{
    return fn->queued + fn->submitting;
}

void dispatch_fn_stats(const struct fn_state *fn, struct dispatch_fn_stats *ret)
{
    *ret = (struct dispatch_fn_stats){
        .name = fn->name,
        .desired = fn->sc.desired,
        .cold_starts = fn->cold_starts,
        .throttles = fn->throttles,
        .decisions = fn->decisions,
        .by_version = fn->by_version,
        .n_by_version = fn->n_by_version,
    };
    for (const struct fn_state *s = fn; s; s = s == fn ? fn->versions : s->vnext) {
        ret->queued += s->queued;
        ret->queued_async += s->queued - s->queued_sync; /* sync ones are counted apart */
        ret->inflight += s->inflight;
        ret->nready += s->nready;
        ret->nbusy += s->nbusy;
        ret->nspawning += s->nspawning;
    }
}

void dispatch_host_stats(const struct dispatch *d, struct dispatch_host_stats *ret)
{
    *ret = (struct dispatch_host_stats){
        .live_workers = d->live_workers,
        .memory_budget = d->host.memory_budget,
        .memory_committed = d->memory_committed,
        .has_stock = d->stock != NULL,
    };
    for (const struct fn_state *fn = d->fns; fn; fn = fn->next) {
        ret->nready += fn->nready;
        ret->nbusy += fn->nbusy;
    }
    if (d->stock)
        container_stock_stats(d->stock, &ret->stock);
}

const char *dispatch_inv_id(const struct inv *inv)
{
    return inv->id;
}

const char *dispatch_inv_payload(const struct inv *inv, size_t *ret_len,
                                 const char **ret_content_type)
{
    *ret_len = inv->body_len;
    *ret_content_type = inv->content_type;
    return inv->body;
}

unsigned dispatch_inv_count_emitted(struct inv *inv)
{
    return ++inv->emitted;
}

bool dispatch_inv_parent_hops(const struct inv *inv, long long *ret)
{
    if (!inv->parent_hops_read)
        return false;
    *ret = inv->parent_hops;
    return true;
}

void dispatch_inv_set_parent_hops(struct inv *inv, long long hops)
{
    inv->parent_hops = hops;
    inv->parent_hops_read = true;
}

static void schedule_removals(struct dispatch *d);
static void finish_removals(struct dispatch *d);
static void check_stopped(struct dispatch *d);
static void kick(struct fn_state *fn);
static void spawn_failed(struct fn_state *fn, struct dispatch_outcome *o);
static void spawn_refused(struct fn_state *fn, const struct ig_error *err);

/* ---- capacity: the scaler's driver ---- */

static struct worker *find_worker(struct fn_state *fn, uint64_t seq)
{
    for (struct worker *w = fn->workers; w; w = w->next)
        if (w->seq == seq)
            return w;
    return NULL;
}

static void note_decision(struct fn_state *fn, const struct scaler_action *a)
{
    fn->decisions[a->kind][a->reason] += a->kind == SCALER_SPAWN ? a->count : 1;
    log_debug("scaler", "function=%s action=%s count=%u reason=%s", fn->name,
              a->kind == SCALER_SPAWN  ? "spawn"
              : a->kind == SCALER_REAP ? "reap"
                                       : "retire",
              a->kind == SCALER_SPAWN ? a->count : 1, scaler_reason_name(a->reason));
}

static void apply(struct fn_state *fn, const struct scaler_action *a)
{
    if (a->kind == SCALER_SPAWN) {
        note_decision(fn, a);
        for (unsigned i = 0; i < a->count; i++) {
            struct ig_error err = {};
            if (fn->d->pool->spawn(fn, &err) < 0) {
                if (err.code == EMFILE || err.code == ENFILE) {
                    spawn_refused(fn, &err);
                    return;
                }
                log_warn("spawn failed", "function=%s error=\"%s\"", fn->name, err.message);
                struct dispatch_outcome o = {.kind = OUTCOME_INIT};
                o.error_type = strdup("Ignis.SpawnError");
                o.error_message = strdup(err.message);
                spawn_failed(fn, &o);
                dispatch_outcome_clear(&o);
                return;
            }
        }
        return;
    }
    struct worker *w = find_worker(fn, a->worker);
    if (!w)
        return;
    note_decision(fn, a);
    if (a->kind == SCALER_REAP && w->inflight == 0)
        fn->d->pool->destroy(w);
    else
        fn->d->pool->retire(w);
}

/* Runs the scaler over every function at once (the spawn budget and the memory are shared) and
 * applies what it decides. Called on a short tick and whenever demand changed; the scaler itself
 * keeps the rates, panic windows and hysteresis. */

/* fn's min_scale and max_scale on this host: with hosts sharing the store, the function's are
 * the cluster's, split over the live hosts, the home host first (dispatch_set_cluster); the
 * max never below one where the function may run at all, so a host sent an invocation can run it.
 * Computed again only when the view of the hosts or the totals changed: the scaler asks for every
 * function on every run. */
static void share_update(struct fn_state *fn)
{
    const struct manifest *m = fn->manifest;
    uint64_t epoch = cluster_epoch(fn->d->cluster);
    if (fn->share.epoch == epoch && fn->share.min_of == m->min_scale &&
        fn->share.max_of == m->max_scale)
        return;
    unsigned max = cluster_share(fn->d->cluster, fn->name, m->max_scale);
    fn->share.epoch = epoch;
    fn->share.min_of = m->min_scale;
    fn->share.max_of = m->max_scale;
    fn->share.min = cluster_share(fn->d->cluster, fn->name, m->min_scale);
    fn->share.max = m->max_scale > 0 && max == 0 ? 1 : max;
}

static unsigned min_scale_here(struct fn_state *fn)
{
    share_update(fn);
    return fn->share.min;
}

static unsigned max_scale_here(struct fn_state *fn)
{
    share_update(fn);
    return fn->share.max;
}

bool dispatch_fn_has_room(struct fn_state *fn)
{
    return fn->nready > 0 ||
           fn->nready + fn->nbusy + fn->nspawning + fn->queued < max_scale_here(fn);
}

static void run_scaler(struct dispatch *d)
{
    size_t n = 0;
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        n++;
    if (n == 0 || d->stopping)
        return;
    struct scaler_input *in = calloc(n, sizeof(*in));
    struct fn_state **fns = calloc(n, sizeof(*fns));
    struct scaler_worker *idle = calloc(d->live_workers + 1, sizeof(*idle));
    uint64_t *running = calloc(d->live_workers + 1, sizeof(*running));
    struct scaler_action *actions = NULL;
    size_t nactions = 0, i = 0, ni = 0, nr = 0;
    uint64_t now = now_usec();

    if (!in || !fns || !idle || !running)
        goto out;
    for (struct fn_state *fn = d->fns; fn; fn = fn->next, i++) {
        const struct manifest *m = fn->manifest;
        fns[i] = fn;
        in[i] = (struct scaler_input){
            .st = &fn->sc,
            .reuse = m->reuse,
            .concurrency = m->concurrency,
            /* A function being deleted still runs what was queued before the delete; a version
             * that is not the current one scales to zero once nothing routes to it. */
            .min_scale = fn->removing || fn->of ? 0 : min_scale_here(fn),
            .max_scale = fn->removing && TAILQ_EMPTY(&fn->queue) ? 0 : max_scale_here(fn),
            .idle_timeout_s = m->idle_timeout_s,
            .memory_mb = m->memory_mb,
            .queued = fn->queued,
            .inflight = fn->inflight,
            .nready = fn->nready,
            .nbusy = fn->nbusy,
            .nspawning = fn->nspawning,
            .ndraining = fn->ndraining,
            .arrivals = fn->arrivals,
            /* The fresh reserve must cover the spawns that take long, not the average one: a
             * loaded host's spawn times have a long tail, and every arrival that outruns the
             * reserve is a cold start. So, like TCP's retransmission timeout, mean + 4 × mean
             * deviation (RFC 6298). */
            .spawn_latency_us = fn->spawn_latency_us + 4 * fn->spawn_latency_dev_us,
        };
        fn->arrivals = 0;
        in[i].idle = idle + ni;
        for (struct worker *w = fn->workers; w; w = w->next)
            if (w->state == WORKER_READY && w->inflight == 0)
                idle[ni++] =
                    (struct scaler_worker){.id = w->seq, .idle_since_us = w->idle_since_us};
        in[i].nidle = (size_t)(idle + ni - in[i].idle);
        in[i].running = running + nr;
        for (struct worker *w = fn->workers; w; w = w->next)
            if ((w->state == WORKER_READY || w->state == WORKER_BUSY) && w->inflight > 0)
                running[nr++] = w->seq;
        in[i].nrunning = (size_t)(running + nr - in[i].running);
        /* A function whose spawns keep failing is held back by its own backoff; one whose
         * bundle is on its way, until it is here. */
        if (now < fn->spawn_not_before_us || fn->bundle_pending)
            in[i].max_scale = (unsigned)(fn->nready + fn->nbusy + fn->nspawning);
    }
    d->host.memory_committed = d->memory_committed;
    if (scaler_decide(&d->scaler, &d->host, in, n, now, &actions, &nactions) < 0)
        goto out;
    for (size_t k = 0; k < nactions; k++)
        apply(fns[actions[k].fn], &actions[k]);
out:
    free(actions);
    free(running);
    free(idle);
    free(fns);
    free(in);
}

/* Demand-driven scaler runs are at most this often: under a sustained queue every loop turn
 * would ask, and a run (inputs for every function, the policy) costs more than a hand-off. */
#define SCALE_MIN_INTERVAL_US 2000

static void run_requested_scale(struct dispatch *d)
{
    d->scale_pending = false;
    d->last_scale_us = now_usec();
    run_scaler(d);
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        if (!TAILQ_EMPTY(&fn->queue))
            kick(fn);
}

static void on_scale_posted(struct loop *l, void *userdata)
{
    run_requested_scale(userdata);
}

static void on_scale_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    run_requested_scale(userdata);
}

static void request_scale(struct dispatch *d)
{
    if (d->scale_pending || d->stopping)
        return;
    uint64_t due = d->last_scale_us + SCALE_MIN_INTERVAL_US, now = now_usec();
    int r = due <= now ? loop_post(d->loop, on_scale_posted, d)
                       : loop_add_timer(d->loop, due, on_scale_due, d, NULL);
    if (r == 0)
        d->scale_pending = true;
}

/* ---- hand-off ---- */

static struct worker *pick_worker(struct fn_state *fn)
{
    struct worker *best = NULL;
    for (struct worker *w = fn->workers; w; w = w->next) {
        if (w->state != WORKER_READY || w->version != fn->version)
            continue;
        if (w->inflight >= fn->manifest->concurrency)
            continue;
        /* Prefer the most recently used warm worker, so idle ones can age out. */
        if (!best || w->idle_since_us > best->idle_since_us)
            best = w;
    }
    return best;
}

static void on_timeout(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct inv *inv = userdata;
    inv->timer = NULL;
    log_info("invocation timed out", "function=%s id=%s timeout_ms=%u", inv->fn->name, inv->id,
             inv->fn->manifest->timeout_ms);
    inv->fn->d->pool->kill(inv->worker, inv);
}

static void queue_remove(struct fn_state *fn, struct inv *inv)
{
    TAILQ_REMOVE(&fn->queue, inv, link);
    fn->queued--;
    if (!inv->async)
        fn->queued_sync--;
}

static void start(struct fn_state *fn, struct inv *inv, struct worker *w)
{
    struct dispatch *d = fn->d;
    queue_remove(fn, inv);
    inv->attempts++;
    inv->emitted = 0;
    inv->cold = !w->used && w->ready_us > inv->enqueued_us;
    /* The container's CPU counter measures an attempt only while nothing else runs there; of
     * those running, only a lone one can still be alone. */
    inv->alone = w->inflight == 0;
    if (w->inflight == 1)
        TAILQ_FIRST(&w->running)->alone = false;
    /* Before the clock starts: the reading is ours, not the function's. */
    meter_begin(&inv->acct, w->cgroup, w->inflight == 0, w->memory_mb,
                inv->cold ? w->ready_us - w->spawned_us : 0);
    inv->started_us = now_usec();
    inv->started_wall_us = (int64_t)wall_usec();
    if (inv->cold) {
        owner(fn)->cold_starts++;
        /* The split has the resolution of a loop turn: when the sync pipe's EOF and READY are
         * seen in the same turn, the pool takes both as now, and the whole counts as setup.
         * Without any sync pipe (exec_us 0), the whole counts as init. */
        uint64_t exec_us = w->exec_us ? w->exec_us : w->spawned_us;
        telemetry_cold_start(fn->name, telemetry_seconds(inv->enqueued_us, inv->started_us),
                             telemetry_seconds(w->spawned_us, exec_us),
                             telemetry_seconds(exec_us, w->ready_us));
    }
    fn->inflight++;
    /* Under a lease, the claim set the row running: only a lease the wait for a container ate
     * into is renewed. */
    if (inv->async && !inv->lease_attempts)
        inv_store_mark_running(d->journal, inv->id, inv->attempts, inv->started_wall_us, NULL, 0,
                               NULL, NULL);
    else if (inv->async &&
             queue_lease_short(fn->manifest, inv->lease_until_us, inv->started_wall_us))
        inv_store_mark_running(d->journal, inv->id, inv->attempts, inv->started_wall_us,
                               d->lease_owner, inv->started_wall_us + queue_lease_us(fn->manifest),
                               NULL, NULL);
    loop_add_timer(d->loop, inv->started_us + (uint64_t)fn->manifest->timeout_ms * 1000, on_timeout,
                   inv, &inv->timer);
    if (d->pool->send(w, inv) < 0) {
        /* The runtime is gone; killing it completes inv (and anything else it ran) as a crash. */
        d->pool->kill(w, NULL);
    }
}

static void kick(struct fn_state *fn)
{
    size_t cap = manifest_max_concurrency(fn->manifest);
    while (!TAILQ_EMPTY(&fn->queue) && fn->inflight < cap) {
        struct inv *inv = TAILQ_FIRST(&fn->queue);
        if (inv->timer) /* a retry waiting for its backoff: the queue is FIFO, others wait */
            break;
        struct worker *w = pick_worker(fn);
        if (!w)
            break;
        start(fn, inv, w);
    }
    /* Work is waiting for a container: the scaler decides how many to make. A warm hit needs
     * no decision, which keeps the scaler off the hot path. */
    if (!TAILQ_EMPTY(&fn->queue))
        request_scale(fn->d);
}

static void enqueue(struct fn_state *fn, struct inv *inv)
{
    inv->fn = fn;
    inv->enqueued_us = now_usec();
    TAILQ_INSERT_TAIL(&fn->queue, inv, link);
    fn->queued++;
    if (!inv->async)
        fn->queued_sync++;
    fn->arrivals++;
    kick(fn);
}

/* ---- outcomes ---- */

/* The attempt's outcome as /metrics counts it. */
static const enum telemetry_status metrics_status[] = {
    [OUTCOME_OK] = TELEMETRY_OK,           [OUTCOME_ERROR] = TELEMETRY_ERROR,
    [OUTCOME_CRASH] = TELEMETRY_CRASH,     [OUTCOME_TIMEOUT] = TELEMETRY_TIMEOUT,
    [OUTCOME_INIT] = TELEMETRY_INIT_ERROR,
};

/* The attempt's outcome as the usage ledger records it. */
static const char *outcome_name(enum outcome_kind k)
{
    static const char *const names[] = {[OUTCOME_OK] = "ok",
                                        [OUTCOME_ERROR] = "error",
                                        [OUTCOME_CRASH] = "crash",
                                        [OUTCOME_TIMEOUT] = "timeout",
                                        [OUTCOME_INIT] = "init"};
    return names[k];
}

/* The outcome as others may see it (the result borrows o's strings). */
static struct dispatch_result result_of(const struct inv *inv, const struct dispatch_outcome *o,
                                        int64_t billed_ms)
{
    return (struct dispatch_result){
        .function = inv->fn->name,
        /* The current version's: its triggers (the sink) are the function's, whichever version
         * ran (docs/architecture.md "Per-version pools"). */
        .manifest = owner(inv->fn)->manifest,
        .id = inv->id,
        .version = inv->version,
        .alias = inv->alias[0] ? inv->alias : NULL,
        .kind = o->kind,
        .body = o->body,
        .body_len = o->body_len,
        .content_type = o->content_type,
        .error_type = o->error_type,
        .error_message = o->error_message,
        .trace = o->trace,
        .billed_ms = billed_ms,
        .cold = inv->cold,
    };
}

/* Tells a sync invocation's caller its outcome (r) or error (err). Its caller is done with it
 * then: one still inside dispatch_submit_sync is not handed it back. */
static void tell_caller(struct dispatch *d, struct inv *inv, const struct ig_error *err,
                        struct dispatch_result *r)
{
    if (d->submitting_sync == inv)
        d->submitting_sync = NULL;
    inv->done(err, r, inv->done_userdata);
}

/* A final outcome: the completed hook, then a sync invocation's waiting caller, who may take the
 * result's body (o gives it up then). */
static void notify_completed(struct dispatch *d, struct inv *inv, struct dispatch_outcome *o,
                             int64_t billed_ms)
{
    struct dispatch_result r = result_of(inv, o, billed_ms);
    if (d->hooks.completed)
        d->hooks.completed(d->hooks.userdata, &r);
    if (inv->done) {
        tell_caller(d, inv, NULL, &r);
        if (!r.body)
            o->body = NULL;
    }
}

static void on_retry_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct inv *inv = userdata;
    inv->timer = NULL;
    kick(inv->fn);
}

/* ---- records ----
 *
 * An outcome's record is retried until the store takes it: at a full disk an async invocation
 * that ran must not stay `queued` or `running` in the store (to run again after a restart) while
 * its client polls forever. The record keeps its own copies; the function's drain and a stop
 * wait for its records (a stop no longer once its grace is over). A retried record cannot undo
 * a later one of the same invocation: inv_store_finish skips an older attempt's. */

/* Sync records beyond this many pending are dropped (with a warning): each waits in memory. */
#define RECORDS_PENDING_MAX 10000
#define RECORD_RETRY_MIN_US (50 * 1000)
#define RECORD_RETRY_MAX_US (2 * 1000 * 1000)

struct pending_record {
    struct dispatch *d;
    /* The function whose `recording` counts this record (it is not removed while any is
     * pending); NULL for a ghost's (recovery of a deleted function's invocation). */
    struct fn_state *fn;
    struct inv_record r; /* owns its strings (inv_record_clear) */
    int64_t expires_us;
    /* An async attempt's ledger row, written with its outcome (inv_store_finish: on PostgreSQL
     * one statement); its id, function and usage point into this record. */
    bool billed;
    struct acct_record bill;
    struct acct_usage usage;
    unsigned tries; /* failed so far */
    struct loop_timer *timer;
    struct pending_record *prev, *next;
};

static void submit_record(struct pending_record *pr);

static void pending_record_done(struct pending_record *pr)
{
    struct dispatch *d = pr->d;
    struct fn_state *fn = pr->fn;
    if (pr->timer)
        loop_cancel_timer(d->loop, pr->timer);
    if (pr->prev)
        pr->prev->next = pr->next;
    else
        d->records = pr->next;
    if (pr->next)
        pr->next->prev = pr->prev;
    d->records_pending--;
    if (d->records_pending < RECORDS_PENDING_MAX / 2)
        d->records_dropping = false;
    if (fn && --fn->recording == 0 && fn->removing)
        schedule_removals(d);
    inv_record_clear(&pr->r);
    free(pr);
    check_stopped(d);
}

static void on_record_retry(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct pending_record *pr = userdata;
    pr->timer = NULL;
    submit_record(pr);
}

static void record_failed(struct pending_record *pr, const char *message)
{
    struct dispatch *d = pr->d;
    pr->tries++;
    if (d->closed) {
        log_error("an invocation's outcome could not be recorded before the stop",
                  "function=%s id=%s status=%s error=\"%s\" effect=\"%s\"", pr->r.function,
                  pr->r.id, inv_status_name(pr->r.status), message,
                  pr->r.async ? "its record stays as it was: it runs again at the next start"
                              : "the sync invocation has no record");
        pending_record_done(pr);
        return;
    }
    if (pr->tries == 1)
        log_warn("recording an invocation failed: retrying until it is written",
                 "function=%s id=%s status=%s error=\"%s\"", pr->r.function, pr->r.id,
                 inv_status_name(pr->r.status), message);
    uint64_t delay = RECORD_RETRY_MIN_US << (pr->tries < 6 ? pr->tries - 1 : 5);
    if (delay > RECORD_RETRY_MAX_US)
        delay = RECORD_RETRY_MAX_US;
    if (loop_add_timer(d->loop, now_usec() + delay, on_record_retry, pr, &pr->timer) < 0)
        pr->timer = NULL; /* without memory the next record's tick does not come: give up */
    if (!pr->timer) {
        log_error("an invocation's outcome could not be recorded", "function=%s id=%s",
                  pr->r.function, pr->r.id);
        pending_record_done(pr);
    }
}

static void on_record_written(struct loop *l, int result, const char *message, void *userdata)
{
    struct pending_record *pr = userdata;
    if (result < 0) {
        record_failed(pr, message ? message : strerror(-result));
        return;
    }
    if (result == 0 && pr->r.async && pr->d->lease_owner)
        log_warn("a late outcome was dropped: this host's lease on the invocation ended",
                 "function=%s id=%s attempt=%d status=%s", pr->r.function, pr->r.id, pr->r.attempts,
                 inv_status_name(pr->r.status));
    if (pr->tries > 0)
        log_info("invocation recorded after retries", "function=%s id=%s status=%s tries=%u",
                 pr->r.function, pr->r.id, inv_status_name(pr->r.status), pr->tries + 1);
    pending_record_done(pr);
}

static void submit_record(struct pending_record *pr)
{
    struct dispatch *d = pr->d;
    /* A sync invocation is written once, when it is over: an insert. An async one's row is
     * there since its acceptance. */
    int q = pr->r.async ? inv_store_finish(d->journal, &pr->r, pr->expires_us, d->lease_owner,
                                           pr->billed ? &pr->bill : NULL, on_record_written, pr)
                        : inv_store_insert(d->journal, &pr->r, pr->expires_us,
                                           pr->billed ? &pr->bill : NULL, on_record_written, pr);
    if (q < 0)
        record_failed(pr, strerror(-q));
}

/* Copies r (its strings too) and bill (NULL: none) into a pending record and submits it. */
static void record_submit(struct dispatch *d, struct fn_state *fn, const struct inv_record *r,
                          const struct acct_record *bill, int64_t expires_us)
{
    if (!r->async && d->records_pending >= RECORDS_PENDING_MAX) {
        if (!d->records_dropping)
            log_warn("the store is not keeping up: sync invocation records are dropped",
                     "pending=%zu", d->records_pending);
        d->records_dropping = true;
        if (bill) /* the ledger row is not: usage is billed whatever becomes of the record */
            accountant_record(d->journal, bill);
        return;
    }
    struct pending_record *pr = calloc(1, sizeof(*pr));
    bool oom = !pr;
    if (pr) {
        pr->d = d;
        pr->r = *r;
        pr->r.function = strdup(r->function);
        pr->r.payload = NULL;
        pr->r.payload_len = 0;
        pr->r.idempotency_key = NULL;
        pr->r.content_type = r->content_type ? strdup(r->content_type) : NULL;
        pr->r.result = r->result ? malloc(r->result_len + 1) : NULL;
        if (pr->r.result) {
            memcpy(pr->r.result, r->result, r->result_len);
            pr->r.result[r->result_len] = '\0';
        }
        pr->r.error_type = r->error_type ? strdup(r->error_type) : NULL;
        pr->r.error_message = r->error_message ? strdup(r->error_message) : NULL;
        oom = !pr->r.function || (r->content_type && !pr->r.content_type) ||
              (r->result && !pr->r.result) || (r->error_type && !pr->r.error_type) ||
              (r->error_message && !pr->r.error_message);
    }
    if (oom) {
        if (pr)
            inv_record_clear(&pr->r);
        free(pr);
        log_error("an invocation's outcome could not be recorded", "function=%s id=%s error=\"%s\"",
                  fn->name, r->id, strerror(ENOMEM));
        if (bill && !r->async)
            accountant_record(d->journal, bill);
        return;
    }
    pr->expires_us = expires_us;
    if (bill) {
        pr->billed = true;
        pr->usage = *bill->usage;
        pr->bill = *bill;
        pr->bill.id = pr->r.id;
        pr->bill.function = pr->r.function;
        pr->bill.usage = &pr->usage;
    }
    pr->next = d->records;
    if (d->records)
        d->records->prev = pr;
    d->records = pr;
    d->records_pending++;
    if (!fn->ghost) {
        pr->fn = fn;
        fn->recording++;
    }
    submit_record(pr);
}

/* The ledger row of inv's attempt, which ended with o and used usage (pointed to). */
static struct acct_record attempt_bill(struct dispatch *d, struct inv *inv,
                                       const struct dispatch_outcome *o,
                                       const struct acct_usage *usage)
{
    return (struct acct_record){.id = inv->id,
                                .attempt = inv->attempts,
                                .function = inv->fn->name,
                                .version = inv->version,
                                .start_wall_us = inv->started_wall_us,
                                .status = outcome_name(o->kind),
                                .cold = inv->cold,
                                .host = d->opts.host_id,
                                .usage = usage};
}

/* usage: the attempt's, as its ledger row has it (the same figures, computed once in complete);
 * NULL when no attempt ran for this outcome, and the record keeps the last one's. An async
 * attempt's ledger row goes with its record (a sync one's is written by complete). */
static void record(struct dispatch *d, struct inv *inv, enum inv_status status,
                   const struct dispatch_outcome *o, const struct acct_usage *usage,
                   int64_t next_attempt_us)
{
    struct inv_record r = {
        .function = inv->fn->name,
        .version = inv->version,
        .async = inv->async,
        .status = status,
        /* Under a lease, the row's: an invocation that never started has one attempt fewer
         * here than its claim counted. */
        .attempts = inv->lease_attempts ? inv->lease_attempts : inv->attempts,
        .max_retries = (int)inv->fn->manifest->max_retries,
        .created_us = inv->created_wall_us,
        .started_us = inv->started_wall_us,
        .finished_us = (int64_t)wall_usec(),
        .next_attempt_us = next_attempt_us,
        .result = o->kind == OUTCOME_OK ? o->body : NULL,
        .result_len = o->kind == OUTCOME_OK ? o->body_len : 0,
        .error_type = o->kind == OUTCOME_OK ? NULL : o->error_type,
        .error_message = o->kind == OUTCOME_OK ? NULL : o->error_message,
        .billed_ms = usage ? usage->billed_ms : 0,
        .cold = inv->cold,
        .measured = usage != NULL,
        .cpu_us = usage ? (int64_t)usage->cpu_us : 0,
        .mem_peak_bytes = usage ? (int64_t)usage->mem_peak_bytes : 0,
        .init_us = usage ? (int64_t)usage->init_us : 0,
    };
    memcpy(r.id, inv->id, sizeof(r.id));
    memcpy(r.token_id, inv->token_id, sizeof(r.token_id));
    memcpy(r.alias, inv->alias, sizeof(r.alias));
    if (!inv->async) {
        /* A sync invocation is recorded without its result: the client has it, and storing
         * every reply would double what the journal writes. */
        r.result = NULL;
        r.result_len = 0;
        r.content_type = inv->content_type;
    }
    struct acct_record bill = usage ? attempt_bill(d, inv, o, usage) : (struct acct_record){};
    record_submit(d, inv->fn, &r, usage ? &bill : NULL, r.finished_us + d->opts.retention_us);
}

/* Counts a finished attempt in the function's counters (a version state's too: they are the
 * function's) and in /metrics. */
static void count_attempt(struct inv *inv, const struct dispatch_outcome *o, int64_t billed_ms)
{
    struct fn_state *own = owner(inv->fn);
    own->invocations++;
    own->billed_ms += (uint64_t)billed_ms;
    latency_add(&own->latency, now_usec() - inv->enqueued_us);
    if (o->kind != OUTCOME_OK)
        own->errors++;
    if (o->kind == OUTCOME_TIMEOUT)
        own->timeouts++;
    versions_count(own, inv->version);
    telemetry_complete(own->name, metrics_status[o->kind],
                       telemetry_seconds(inv->started_us, now_usec()), billed_ms, inv->cold);
}

static void complete(struct inv *inv, struct dispatch_outcome *o)
{
    struct fn_state *fn = inv->fn;
    struct dispatch *d = fn->d;
    /* Billed: wall time from hand-off to result, rounded up to the next millisecond. */
    struct acct_usage usage;
    accountant_compute(&inv->acct, now_usec() - inv->started_us, &usage);
    int64_t billed_ms = usage.billed_ms;

    if (inv->timer) {
        loop_cancel_timer(d->loop, inv->timer);
        inv->timer = NULL;
    }
    inv->worker = NULL;
    fn->inflight--;
    /* With a shared queue, an attempt's end makes room: claim at once, not at the next poll
     * (a backlog would drain at max_concurrency per poll), when the function may have rows due
     * as far as this host knows (claim_due). Else the claim would be a statement per attempt
     * for nothing. */
    if (d->lease_owner && inv->async && owner(fn)->claim_due)
        queue_kick(d, owner(fn));
    count_attempt(inv, o, billed_ms);
    if (inv->acct.handed_off) {
        /* Lambda's REPORT line, in the function's own log stream, and the same figures for
         * /metrics: one cgroup reading serves the ledger, the log and the metrics. The version
         * that ran ends it (Lambda names it in its START line, which Ignis does not write). */
        char report[512];
        accountant_report_line(report, sizeof(report), inv->id, inv->version, &usage);
        fnlog_platform(fn->name, inv->id, "%s", report);
        telemetry_usage(fn->name, (double)usage.cpu_us / 1e6, usage.mem_peak_bytes);
    }
    /* The runtime answered, and the readings are the attempt's own: the scaler's CPU cap. */
    if ((o->kind == OUTCOME_OK || o->kind == OUTCOME_ERROR) && inv->alone && inv->acct.begin_ok &&
        inv->acct.end_ok)
        scaler_observe(&d->scaler.cfg, &fn->sc, usage.cpu_us, usage.wall_us, now_usec());

    /* An attempt is billed with its record (below; one statement on PostgreSQL), unless our
     * own shutdown cut an async one short: it runs again after the restart. */
    if (inv->async && d->stopping && o->kind != OUTCOME_OK) {
        /* Killed by our own shutdown: the record stays `running`, and the next start runs it
         * again without counting this attempt. */
        inv_free(inv);
        check_stopped(d);
        return;
    }
    if (!inv->async) {
        record(d, inv, o->kind == OUTCOME_OK ? INV_SUCCEEDED : INV_FAILED, o, &usage, 0);
        notify_completed(d, inv, o, billed_ms);
        inv_free(inv);
        if (fn->removing)
            schedule_removals(d);
        check_stopped(d);
        return;
    }
    if (o->kind != OUTCOME_OK && inv->attempts <= (int)fn->manifest->max_retries && !fn->removing) {
        uint64_t delay_ms = inv_backoff_ms((unsigned)inv->attempts, d->opts.retry_base_ms,
                                           d->opts.retry_cap_ms, random_u64());
        int64_t next = (int64_t)wall_usec() + (int64_t)delay_ms * 1000;
        log_info("invocation will be retried",
                 "function=%s id=%s attempt=%d delay_ms=%llu "
                 "error=\"%s\"",
                 fn->name, inv->id, inv->attempts, (unsigned long long)delay_ms,
                 o->error_type ? o->error_type : "");
        record(d, inv, INV_QUEUED, o, &usage, next);
        if (inv->lease_attempts) {
            /* Back in the shared queue, claimed again when due, by whichever host is free. */
            inv_free(inv);
            if (fn->removing)
                schedule_removals(d);
            check_stopped(d);
            return;
        }
        /* Back in the queue at its place in arrival order is not what a retry wants: it goes
         * to the back, and its timer holds it until the backoff has passed. */
        inv->enqueued_us = now_usec();
        TAILQ_INSERT_TAIL(&fn->queue, inv, link);
        fn->queued++;
        loop_add_timer(d->loop, now_usec() + delay_ms * 1000, on_retry_due, inv, &inv->timer);
        kick(fn);
        return;
    }
    enum inv_status final = o->kind == OUTCOME_OK            ? INV_SUCCEEDED
                            : fn->manifest->max_retries == 0 ? INV_FAILED
                                                             : INV_DEAD;
    if (final == INV_DEAD) {
        telemetry_dead_letter(fn->name);
        log_warn("invocation dead-lettered", "function=%s id=%s attempts=%d error=\"%s\"", fn->name,
                 inv->id, inv->attempts, o->error_type ? o->error_type : "");
    }
    record(d, inv, final, o, &usage, 0);
    notify_completed(d, inv, o, billed_ms);
    inv_free(inv);
    if (fn->removing)
        schedule_removals(d);
    check_stopped(d);
}

static void emitted_frame(struct fn_state *fn, struct inv *inv, const struct proto_msg *m)
{
    struct dispatch *d = fn->d;
    if (d->hooks.emitted)
        d->hooks.emitted(d->hooks.userdata, fn, inv, m);
    else
        log_info("function emitted an event", "function=%s type=\"%.*s\"", fn->name,
                 (int)m->event_type.len, m->event_type.data);
}

/* ---- workers coming and going ---- */

static void worker_ready(struct fn_state *fn, struct worker *w)
{
    fn->spawn_failures = 0;
    fn->spawn_not_before_us = 0;
    uint64_t latency = w->ready_us - w->spawned_us;
    if (fn->spawn_latency_us) {
        /* RFC 6298's estimator (SRTT, RTTVAR): a mean and a mean deviation, updated first. */
        uint64_t dev = latency > fn->spawn_latency_us ? latency - fn->spawn_latency_us
                                                      : fn->spawn_latency_us - latency;
        fn->spawn_latency_dev_us = (fn->spawn_latency_dev_us * 3 + dev) / 4;
        fn->spawn_latency_us = (fn->spawn_latency_us * 7 + latency) / 8;
    } else {
        fn->spawn_latency_us = latency;
        fn->spawn_latency_dev_us = latency / 2;
    }
    kick(fn);
    /* A spawn finishing frees one of the host's max_spawning slots: spawns held back by it go
     * on now, not at the next tick (up to 50 ms per wave of 32 while a pool grows). */
    request_scale(fn->d);
}

static void spawn_failed(struct fn_state *fn, struct dispatch_outcome *o)
{
    /* The invocation that was waiting longest takes the error (Lambda returns an init error to
     * the invocation that caused the cold start); spawning backs off so a broken function does
     * not fork-storm the host. */
    fn->spawn_failures++;
    uint64_t backoff = 10000ull << (fn->spawn_failures < 10 ? fn->spawn_failures : 10);
    if (backoff > SPAWN_BACKOFF_MAX_US)
        backoff = SPAWN_BACKOFF_MAX_US;
    fn->spawn_not_before_us = now_usec() + backoff;
    /* A function being deleted takes the error for everything queued: a broken function's
     * delete must not wait out one backoff per queued invocation. */
    struct inv *inv;
    while ((inv = TAILQ_FIRST(&fn->queue)) && !inv->timer) {
        queue_remove(fn, inv);
        inv->attempts++;
        inv->acct = (struct acct_attempt){0}; /* no container ran it: nothing is billed */
        inv->started_us = now_usec();
        inv->started_wall_us = (int64_t)wall_usec();
        fn->inflight++;
        complete(inv, o);
        if (!fn->removing)
            break;
    }
}

/* The host had no fds for a container (EMFILE from the pool's reserve check, or ENFILE): not the
 * function's fault, so no init error and no growing backoff. Sync invocations that no container
 * of the function is there to take are answered with the error (a 503) now, rather than left
 * waiting for fds that may come back only when idle containers are reaped; async ones stay
 * queued and the spawn is tried again a second later. */
static void spawn_refused(struct fn_state *fn, const struct ig_error *err)
{
    log_warn("spawn refused", "function=%s error=\"%s\"", fn->name, err->message);
    fn->spawn_not_before_us = now_usec() + SPAWN_REFUSED_RETRY_US;
    if (fn->workers)
        return;
    for (struct inv *inv = TAILQ_FIRST(&fn->queue), *next; inv; inv = next) {
        next = TAILQ_NEXT(inv, link);
        if (inv->async)
            continue;
        queue_remove(fn, inv);
        fn->throttles++;
        if (inv->done)
            tell_caller(fn->d, inv, err, NULL);
        inv_free(inv);
    }
    if (fn->removing)
        schedule_removals(fn->d);
}

/* ---- the periodic tick: idle reaping, retention, deferred spawns ---- */

static void answer_stalled_submissions(struct dispatch *d);

static void on_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct dispatch *d = userdata;
    d->tick = NULL;
    run_scaler(d);
    finish_removals(d); /* version states that scaled to zero */
    answer_stalled_submissions(d);
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        if (!TAILQ_EMPTY(&fn->queue))
            kick(fn);
    loop_add_timer(d->loop, now_usec() + TICK_US, on_tick, d, &d->tick);
}

/* ---- functions ---- */

struct fn_state *dispatch_state_new(struct dispatch *d, const char *name)
{
    struct fn_state *fn = calloc(1, sizeof(*fn));
    if (!fn)
        return NULL;
    fn->d = d;
    snprintf(fn->name, sizeof(fn->name), "%s", name);
    TAILQ_INIT(&fn->queue);
    scaler_fn_init(&fn->sc);
    return fn;
}

void dispatch_state_link(struct fn_state *fn)
{
    fn->next = fn->d->fns;
    fn->d->fns = fn;
}

/* Tells the warm hook what changed and stayed changed since it was last told. */
static void warm_flush(struct dispatch *d)
{
    while (d->warm_dirty) {
        struct fn_state *fn = d->warm_dirty;
        d->warm_dirty = fn->warm_next;
        fn->warm_dirty = false;
        if (fn->warm != fn->warm_told && d->hooks.warm) {
            fn->warm_told = fn->warm;
            d->hooks.warm(d->hooks.userdata, fn->name, fn->warm);
        }
    }
}

static void on_warm_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct dispatch *d = userdata;
    d->warm_timer = NULL;
    warm_flush(d);
}

void dispatch_warm_note(struct fn_state *fn)
{
    struct dispatch *d = fn->d;
    if (fn->of || fn->ghost || !d->cluster || !d->hooks.warm)
        return;
    bool warm = fn->nready > 0 && !fn->removing && !d->stopping;
    if (warm == fn->warm)
        return;
    fn->warm = warm;
    if (!fn->warm_dirty) {
        fn->warm_dirty = true;
        fn->warm_next = d->warm_dirty;
        d->warm_dirty = fn;
    }
    if (!d->warm_timer)
        loop_add_timer(d->loop, now_usec() + DISPATCH_WARM_FLUSH_US, on_warm_due, d,
                       &d->warm_timer);
}

void dispatch_state_free(struct fn_state *fn)
{
    if (!fn)
        return;
    if (fn->warm_dirty)
        for (struct fn_state **p = &fn->d->warm_dirty; *p; p = &(*p)->warm_next)
            if (*p == fn) {
                *p = fn->warm_next;
                break;
            }
    if (fn->warm_told && fn->d->hooks.warm)
        fn->d->hooks.warm(fn->d->hooks.userdata, fn->name, false);
    if (fn->tpl) /* the pool watches it, and workers of another state may wait for it */
        fn->d->pool->forget(fn);
    free(fn->by_version);
    free(fn->bundle_dir);
    free(fn);
}

int dispatch_function_set(struct dispatch *d, const char *name, int64_t version,
                          const struct manifest *m, const char *bundle_dir)
{
    struct fn_state *fn = dispatch_function(d, name);
    if (!fn) {
        fn = dispatch_state_new(d, name);
        if (!fn || !(fn->bundle_dir = strdup(bundle_dir))) {
            dispatch_state_free(fn);
            return -ENOMEM;
        }
        fn->version = version;
        fn->manifest = m;
        dispatch_state_link(fn);
    } else if (versions_switch(fn, version, m, bundle_dir) < 0)
        return -ENOMEM;
    for (struct fn_state *s = fn; s; s = s == fn ? fn->versions : s->vnext)
        kick(s);
    request_scale(d);
    return 0;
}

static void unlink_fn(struct dispatch *d, struct fn_state *fn)
{
    for (struct fn_state **p = &d->fns; *p; p = &(*p)->next)
        if (*p == fn) {
            *p = fn->next;
            break;
        }
    if (fn->of)
        versions_unlink(fn);
}

/* Fails every queued invocation of fn (sync: done gets code, reason and message; async: left
 * queued in the store when `keep_async`, else dead). */
static void fail_queued(struct fn_state *fn, int code, const char *reason, const char *message,
                        bool keep_async)
{
    struct inv *inv;
    while ((inv = TAILQ_FIRST(&fn->queue))) {
        queue_remove(fn, inv);
        if (inv->timer) {
            loop_cancel_timer(fn->d->loop, inv->timer);
            inv->timer = NULL;
        }
        if (!inv->async && inv->done) {
            struct ig_error err = {};
            ig_error_set_reason(&err, code, reason, "%s", message);
            tell_caller(fn->d, inv, &err, NULL);
        } else if (inv->async && !keep_async) {
            struct dispatch_outcome o = {.kind = OUTCOME_ERROR};
            o.error_type = strdup("Ignis.FunctionDeleted");
            o.error_message = strdup(message);
            record(fn->d, inv, INV_DEAD, &o, NULL, 0);
            dispatch_outcome_clear(&o);
        }
        inv_free(inv);
    }
}

/* The async retries of fn waiting for their backoff: dead with error_type and message, as their
 * function or their version is being removed. */
static void drop_waiting_retries(struct fn_state *fn, const char *error_type, const char *message)
{
    for (struct inv *inv = TAILQ_FIRST(&fn->queue), *next; inv; inv = next) {
        next = TAILQ_NEXT(inv, link);
        if (!inv->timer)
            continue;
        queue_remove(fn, inv);
        loop_cancel_timer(fn->d->loop, inv->timer);
        inv->timer = NULL;
        struct dispatch_outcome o = {.kind = OUTCOME_ERROR};
        o.error_type = strdup(error_type);
        o.error_message = strdup(message);
        record(fn->d, inv, INV_DEAD, &o, NULL, 0);
        dispatch_outcome_clear(&o);
        inv_free(inv);
    }
}

/* Nothing left that needs fn: a function's own state waits for its version states too, and a
 * version state for its async submissions (on_submission_durable holds it). */
static bool fn_drained(const struct fn_state *fn)
{
    return fn->inflight == 0 && fn->workers == NULL && TAILQ_EMPTY(&fn->queue) &&
           fn->recording == 0 && !fn->versions && (!fn->of || fn->submitting == 0);
}

/* Frees the states being removed once drained (calling their removed), and the version states
 * nothing routes to any more once they scaled to zero. A version state is before its function
 * in the list (made later), so one pass frees both. */
static void finish_removals(struct dispatch *d)
{
    for (struct fn_state *fn = d->fns, *next; fn; fn = next) {
        next = fn->next;
        if (!fn->removing) {
            if (fn->of && fn_drained(fn)) {
                log_debug("version state freed", "function=%s version=%lld", fn->name,
                          (long long)fn->version);
                unlink_fn(d, fn);
                dispatch_state_free(fn);
            }
            continue;
        }
        /* Containers (a starting one too) stay while queued invocations wait for them. */
        for (struct worker *w = fn->workers, *wn; w && TAILQ_EMPTY(&fn->queue); w = wn) {
            wn = w->next;
            if (w->inflight == 0)
                fn->d->pool->destroy(w);
        }
        if (!fn_drained(fn))
            continue;
        /* A drained version's count goes now, not when its drain began: what it still ran
         * until now was counted, and would have brought the series back. */
        if (fn->of)
            versions_forget(fn->of, fn->version);
        unlink_fn(d, fn);
        if (fn->removed)
            fn->removed(fn->removed_userdata);
        dispatch_state_free(fn);
    }
}

static void on_removals_posted(struct loop *l, void *userdata)
{
    struct dispatch *d = userdata;
    d->removals_pending = false;
    finish_removals(d);
}

/* Completions happen inside a worker's callbacks, where neither the worker nor its function may
 * be freed: removals finish on the next turn of the loop instead. */
static void schedule_removals(struct dispatch *d)
{
    if (!d->removals_pending && loop_post(d->loop, on_removals_posted, d) == 0)
        d->removals_pending = true;
}

int dispatch_function_remove(struct dispatch *d, const char *name, void (*done)(void *userdata),
                             void *userdata)
{
    struct fn_state *fn = dispatch_function(d, name);
    if (!fn)
        return -ENOENT;
    fn->removing = true;
    dispatch_warm_note(fn);
    fn->removed = done;
    fn->removed_userdata = userdata;
    /* A delete drains: what was accepted before it (queued, or waiting for a cold container)
     * still runs, and done is called once it has, in every version's state. Only a retry
     * waiting for its backoff is not run again: its record ends dead (Ignis.FunctionDeleted).
     * New work is refused (404) from now on (dispatch_function_accepting). */
    for (struct fn_state *s = fn; s; s = s == fn ? fn->versions : s->vnext) {
        s->removing = true;
        drop_waiting_retries(s, "Ignis.FunctionDeleted",
                             "the function was deleted while the invocation waited to be retried");
        kick(s);
    }
    finish_removals(d); /* may free fn */
    return 0;
}

int dispatch_version_drain(struct dispatch *d, const char *name, int64_t version,
                           void (*done)(void *userdata), void *userdata)
{
    struct fn_state *fn = dispatch_function(d, name), *vs = NULL;
    if (!fn)
        return -ENOENT;
    if (fn->version == version)
        return -EBUSY;
    for (struct fn_state *s = fn->versions; s; s = s->vnext)
        if (s->version == version && !s->removing)
            vs = s;
    if (!vs) {
        versions_forget(fn, version);
        return -ENOENT;
    }
    /* As a delete, for one version: what it accepted still runs; its retries in backoff die. */
    vs->removing = true;
    vs->removed = done;
    vs->removed_userdata = userdata;
    /* The function is still there: what is gone is the version it was routed to, which an
     * async invocation never trades for another (version_gone). */
    char msg[160];
    snprintf(msg, sizeof(msg),
             "version %lld of %s was removed while the invocation waited to be retried",
             (long long)version, name);
    drop_waiting_retries(vs, "Ignis.VersionNotFound", msg);
    kick(vs);
    finish_removals(d); /* may free vs */
    return 0;
}

void dispatch_state_counts(const struct fn_state *s, cJSON *o)
{
    cJSON_AddNumberToObject(o, "ready", (double)s->nready);
    cJSON_AddNumberToObject(o, "busy", (double)s->nbusy);
    cJSON_AddNumberToObject(o, "spawning", (double)s->nspawning);
    cJSON_AddNumberToObject(o, "draining", (double)s->ndraining);
    cJSON_AddNumberToObject(o, "queue_depth", (double)s->queued);
    cJSON_AddNumberToObject(o, "in_flight", (double)s->inflight);
}

cJSON *dispatch_function_state(const struct fn_state *fn)
{
    cJSON *o = cJSON_CreateObject();
    dispatch_state_counts(fn, o);
    struct scaler_view v;
    scaler_view(&fn->sc, &v);
    cJSON_AddNumberToObject(o, "desired", v.desired);
    cJSON_AddNumberToObject(o, "arrival_rate", v.arrival_rate);
    cJSON_AddBoolToObject(o, "panic", v.panic);
    cJSON *last = cJSON_AddObjectToObject(o, "last_decision");
    cJSON_AddStringToObject(last, "reason", v.last_reason ? v.last_reason : "none");
    cJSON_AddStringToObject(last, "held", v.last_held ? v.last_held : "none");
    cJSON_AddNumberToObject(last, "spawned", v.last_spawned);
    cJSON_AddNumberToObject(last, "reaped", v.last_reaped);
    cJSON_AddNumberToObject(last, "age_s",
                            v.last_at_us ? (double)(now_usec() - v.last_at_us) / 1e6 : -1);
    cJSON_AddNumberToObject(o, "spawn_latency_ms", (double)fn->spawn_latency_us / 1e3);
    cJSON_AddNumberToObject(o, "cpu_ms", v.cpu_ms);
    cJSON_AddNumberToObject(o, "cpu_cap", v.cpu_cap);
    cJSON_AddNumberToObject(o, "invocations", (double)fn->invocations);
    cJSON_AddNumberToObject(o, "errors", (double)fn->errors);
    cJSON_AddNumberToObject(o, "cold_starts", (double)fn->cold_starts);
    cJSON_AddNumberToObject(o, "timeouts", (double)fn->timeouts);
    cJSON_AddNumberToObject(o, "throttles", (double)fn->throttles);
    cJSON_AddNumberToObject(o, "billed_ms", (double)fn->billed_ms);
    cJSON_AddNumberToObject(o, "latency_p50_ms",
                            (double)latency_percentile(&fn->latency, 50) / 1e3);
    cJSON_AddNumberToObject(o, "latency_p99_ms",
                            (double)latency_percentile(&fn->latency, 99) / 1e3);
    return o;
}

/* ---- ways in ---- */

void dispatch_sync_cancel(struct inv *inv)
{
    inv->done = NULL;
    if (inv->worker)
        return; /* running: it completes and is recorded; only the outcome has nowhere to go */
    /* Still queued: a caller that went away cancels its invocation. */
    queue_remove(inv->fn, inv);
    log_debug("queued invocation cancelled by its client", "function=%s id=%s", inv->fn->name,
              inv->id);
    inv_free(inv);
}

/* The state that runs version of fn (a function's own state), made from v (the registry's
 * version, NULL when unknown) when there is none: 0 and *ret, or -ENOENT when the version is
 * not kept (or is being drained for its removal), -ENOMEM. */
static int state_of(struct fn_state *fn, int64_t version, const struct registry_version *v,
                    struct fn_state **ret)
{
    for (struct fn_state *vs = fn->versions; vs; vs = vs->vnext)
        if (vs->version == version && vs->removing)
            return -ENOENT;
    if (fn->version == version) {
        *ret = fn;
        return 0;
    }
    if (!v)
        return -ENOENT;
    return versions_state(fn, version, v->manifest, v->bundle_dir, ret);
}

/* state_of for an invocation routed earlier (stored, or recovered): its version is looked up in
 * the registry again, as it may have gone since. */
static int state_for(struct dispatch *d, struct fn_state *fn, int64_t version,
                     struct fn_state **ret)
{
    const struct registry_function *f = d->registry ? registry_lookup(d->registry, fn->name) : NULL;
    const struct registry_version *v =
        f && version > 0 && version <= UINT32_MAX ? registry_version(f, (uint32_t)version) : NULL;
    return state_of(fn, version, v, ret);
}

int dispatch_route(struct dispatch *d, struct fn_state *fn, const char *selector, bool async,
                   struct dispatch_route *ret, struct ig_error *err)
{
    const struct registry_function *f = d->registry ? registry_lookup(d->registry, fn->name) : NULL;
    const struct registry_version *v = NULL;
    const char *alias = REGISTRY_DEFAULT_ALIAS;
    int64_t version = fn->version;
    if (f) {
        int r = async && d->lease_owner ? registry_resolve(f, selector, &v, &alias, err)
                                        : registry_route(f, selector, &v, &alias, err);
        if (r < 0)
            return r;
        if (v)
            version = v->version;
    } else if (selector && selector[0])
        return ig_error_set_reason(err, ENOENT, "version_not_found",
                                   "function %s has no version or alias %.80s", fn->name, selector);
    struct fn_state *s;
    int q = state_of(fn, version, v, &s);
    if (q == -ENOENT)
        return ig_error_set_reason(err, ENOENT, "version_not_found",
                                   "version %lld of function %s is being removed",
                                   (long long)version, fn->name);
    if (q < 0)
        return ig_error_set(err, -q, "out of memory");
    *ret = (struct dispatch_route){.fn = s, .version = version};
    snprintf(ret->alias, sizeof(ret->alias), "%s", alias ? alias : "");
    return 0;
}

int dispatch_function_accepting(struct dispatch *d, const char *name, const char *selector,
                                bool async, struct dispatch_route *ret, struct ig_error *err)
{
    if (d->stopping)
        return ig_error_set_reason(err, ESHUTDOWN, "shutting_down", "ignisd is shutting down");
    struct fn_state *fn = dispatch_function(d, name);
    if (!fn || fn->removing)
        return ig_error_set_reason(err, ENOENT, "not_found", "no function named '%s'", name);
    return dispatch_route(d, fn, selector, async, ret, err);
}

int dispatch_admit(struct dispatch *d, struct fn_state *fn, bool sync, struct ig_error *err)
{
    if (!dispatch_queue_takes(d, fn, 1))
        return ig_error_set_reason(err, ENOBUFS, "too_many_requests",
                                   "the queue of '%s' is full (%zu invocations waiting)", fn->name,
                                   fn->queued + fn->submitting);
    /* max_concurrency is a hard cap (docs/api.md): as Lambda's reserved concurrency, a sync
     * invocation beyond it is throttled at once, while async ones wait in the queue. */
    uint32_t cap = fn->manifest->max_concurrency;
    if (sync && cap > 0 && fn->inflight + fn->queued_sync >= cap) {
        owner(fn)->throttles++;
        return ig_error_set_reason(err, ENOBUFS, "too_many_requests",
                                   "'%s' is running its max_concurrency of %u invocations",
                                   fn->name, cap);
    }
    return 0;
}

/* A new invocation of payload (copied, NUL-terminated) with a fresh id, made now; NULL without
 * memory. The strings are copied; NULL ones stay NULL. */
static struct inv *inv_new(const struct dispatch_route *route, const void *payload, size_t len,
                           const char *content_type, const char *idempotency_key,
                           const char *token_id, bool async)
{
    struct inv *inv = calloc(1, sizeof(*inv));
    if (!inv)
        return NULL;
    inv->version = route->version;
    memcpy(inv->alias, route->alias, sizeof(inv->alias));
    inv->body = malloc(len + 1);
    inv->content_type = content_type ? strdup(content_type) : NULL;
    inv->idempotency_key = idempotency_key ? strdup(idempotency_key) : NULL;
    if (!inv->body || (content_type && !inv->content_type) ||
        (idempotency_key && !inv->idempotency_key)) {
        inv_free(inv);
        return NULL;
    }
    if (len)
        memcpy(inv->body, payload, len);
    inv->body[len] = '\0';
    inv->body_len = len;
    inv_id_new(inv->id);
    inv->async = async;
    if (token_id)
        snprintf(inv->token_id, sizeof(inv->token_id), "%s", token_id);
    inv->created_wall_us = (int64_t)wall_usec();
    return inv;
}

int dispatch_submit_sync(struct dispatch *d, const struct dispatch_route *route,
                         const void *payload, size_t len, const char *content_type,
                         const char *token_id, dispatch_sync_done_fn done, void *userdata,
                         struct inv **ret_inv, struct ig_error *err)
{
    struct fn_state *fn = route->fn;
    int r = dispatch_admit(d, fn, true, err);
    if (r < 0)
        return r;
    struct inv *inv = inv_new(route, payload, len, content_type, NULL, token_id, false);
    if (!inv)
        return ig_error_set(err, ENOMEM, "out of memory");
    inv->done = done;
    inv->done_userdata = userdata;
    /* A warm worker whose runtime is already gone completes it inside enqueue, and a refused
     * spawn fails it: then there is nothing left to cancel (tell_caller). */
    d->submitting_sync = inv;
    enqueue(fn, inv);
    *ret_inv = d->submitting_sync;
    d->submitting_sync = NULL;
    return 0;
}

bool dispatch_queue_takes(struct dispatch *d, struct fn_state *fn, size_t n)
{
    /* With a shared queue, what waits is mostly rows in the store, which any host claims. */
    size_t shared = d->lease_owner ? owner(fn)->shared_queued : 0;
    if (fn->queued + fn->submitting + shared + n <= d->opts.queue_max)
        return true;
    owner(fn)->throttles++;
    return false;
}

/* An async invocation routed to a version that is not kept any more (pruned or deleted since it
 * was accepted): dead with that error, never run on another version. fn is its function's own
 * state. Takes inv. */
static void version_gone(struct fn_state *fn, struct inv *inv)
{
    char msg[192];
    snprintf(msg, sizeof(msg),
             "version %lld of %s is not kept any more: the invocation was not run on another "
             "version",
             (long long)inv->version, fn->name);
    log_warn("invocation dead-lettered: its version is gone", "function=%s id=%s version=%lld",
             fn->name, inv->id, (long long)inv->version);
    inv->fn = fn;
    struct dispatch_outcome o = {.kind = OUTCOME_ERROR};
    o.error_type = strdup("Ignis.VersionNotFound");
    o.error_message = strdup(msg);
    telemetry_dead_letter(fn->name);
    record(fn->d, inv, INV_DEAD, &o, 0, 0);
    dispatch_outcome_clear(&o);
    inv_free(inv);
}

/* An accepted async invocation waiting for its row to be durable; in d->submissions. */
struct submission {
    struct dispatch *d;
    struct inv *inv;
    uint64_t submitted_us; /* monotonic */
    TAILQ_ENTRY(submission) link;
    char fn_name[MANIFEST_NAME_MAX + 1];
    /* The version state counting it in submitting (it stays until then); NULL: the function's
     * own, found again by name as it may be deleted meanwhile. */
    struct fn_state *vstate;
    /* Its row is inserted claimed by this host (queue_take_here): it runs here once durable
     * (the claim's attempt, under the claim's lease: inv's), no claim needed. */
    bool taken;
    dispatch_submitted_fn done;
    void *userdata;
};

/* Its idempotency key was taken by an acceptance committed first (on another host, or this
 * one's of a request answered before it saw the other): done learns the first one's id. */
static void duplicate_key(struct submission *s)
{
    char first[INV_ID_LEN + 1];
    int q = inv_store_find_idempotent(s->d->store, s->fn_name, s->inv->idempotency_key, 0, first);
    log_info("async invocation not accepted: its idempotency key was taken meanwhile",
             "function=%s first=%s", s->fn_name, q == 0 ? first : "(purged)");
    if (s->done)
        s->done(q == 0 ? -EEXIST : -EIO, "the idempotency key was taken meanwhile",
                q == 0 ? first : s->inv->id, s->userdata);
}

static void on_submission_durable(struct loop *l, int result, const char *message, void *userdata)
{
    struct submission *s = userdata;
    struct dispatch *d = s->d;
    struct fn_state *fn = dispatch_function(d, s->fn_name);
    struct fn_state *counted = s->vstate ? s->vstate : fn, *to;

    TAILQ_REMOVE(&d->submissions, s, link);
    if (counted && counted->submitting > 0)
        counted->submitting--;
    if (counted && s->taken && counted->taking > 0)
        counted->taking--;
    if (s->vstate)
        schedule_removals(d); /* it may be drained now */
    if (result < 0)
        log_error("storing an async invocation failed", "function=%s error=\"%s\"", s->fn_name,
                  message);
    if (result == 0)
        duplicate_key(s);
    else if (s->done)
        s->done(result < 0 ? result : 0, message, s->inv->id, s->userdata);
    if (result > 0 && s->taken)
        log_debug("async invocation taken here as it was accepted", "function=%s id=%s", s->fn_name,
                  s->inv->id);
    if (result > 0 && d->lease_owner && !s->taken) {
        /* Claimed from the store like any other, by whichever host has room: the notification
         * its commit sent (changes_announce, above) wakes every host, this one too. */
        if (fn) {
            fn->shared_queued++;
            fn->claim_due = true;
        }
        inv_free(s->inv);
    } else if (result > 0 && fn && !fn->removing && !d->stopping) {
        /* The current version may have changed since it was routed: it runs the one it was
         * routed to, or none. */
        if (state_for(d, fn, s->inv->version, &to) == 0)
            enqueue(to, s->inv);
        else
            version_gone(fn, s->inv);
    } else /* a failed commit; or it stays in the store, and the next start runs it (a row taken
            * here is this host's: its peers requeue it once this host's lock is free) */
        inv_free(s->inv);
    free(s);
}

int dispatch_submit_async(struct dispatch *d, const struct dispatch_route *route,
                          const void *payload, size_t len, const char *content_type,
                          const char *idempotency_key, const char *token_id,
                          char ret_id[INV_ID_LEN + 1], dispatch_submitted_fn done, void *userdata)
{
    struct fn_state *fn = route->fn;
    struct inv *inv = inv_new(route, payload, len, content_type, idempotency_key, token_id, true);
    struct submission *s = calloc(1, sizeof(*s));
    if (!inv || !s)
        goto oom;
    *s = (struct submission){
        .d = d, .inv = inv, .vstate = fn->of ? fn : NULL, .done = done, .userdata = userdata};
    snprintf(s->fn_name, sizeof(s->fn_name), "%s", fn->name);
    struct inv_record r = {
        .function = fn->name,
        .version = route->version,
        .async = true,
        .status = INV_QUEUED,
        .payload = inv->body,
        .payload_len = inv->body_len,
        .content_type = inv->content_type,
        .idempotency_key = inv->idempotency_key,
        .max_retries = (int)fn->manifest->max_retries,
        .created_us = inv->created_wall_us,
    };
    memcpy(r.id, inv->id, sizeof(r.id));
    memcpy(r.token_id, inv->token_id, sizeof(r.token_id));
    memcpy(r.alias, inv->alias, sizeof(r.alias));
    /* With warm containers here that have room for it soon, taken here as it is stored: no
     * claim, no notification, no peer woken for it. */
    struct fn_state *own = owner(fn);
    if ((s->taken = queue_take_here(d, own))) {
        fn->taking++;
        r.status = INV_RUNNING;
        r.attempts = 1;
        r.started_us = (int64_t)wall_usec();
        r.lease_owner = d->lease_owner;
        r.lease_until_us = inv->lease_until_us = r.started_us + queue_lease_us(own->manifest);
        inv->lease_attempts = 1; /* the claim's attempt, which start counts (inv->attempts 0) */
    }
    if (inv_store_insert(d->journal, &r, inv->created_wall_us + d->opts.retention_us, NULL,
                         on_submission_durable, s) < 0)
        goto oom;
    /* Peers hear of it when the row commits (the same batch) and claim at once; should the
     * notification not go out, their poll finds the row. */
    if (d->lease_owner && !s->taken &&
        changes_announce(d->journal, CHANGES_QUEUE, fn->name, NULL, NULL) < 0)
        log_debug("announcing an async invocation failed", "function=%s", fn->name);
    s->submitted_us = now_usec();
    TAILQ_INSERT_TAIL(&d->submissions, s, link);
    fn->submitting++;
    memcpy(ret_id, inv->id, INV_ID_LEN + 1);
    return 0;
oom:
    inv_free(inv);
    free(s);
    return -ENOMEM;
}

/* While the store is unreachable, a submission whose row has waited SUBMIT_AWAY_US is answered
 * -ENOTCONN: its row was cut on its way (or queued behind one that was), and whether the store
 * got it is not known until the store is back, when the journal writes it again (records/
 * journal.c). The invocation then runs as any other (its done is not called again): a client
 * retrying with the same idempotency key learns of it; one without a key may run it twice, at
 * least once as a 5xx of Lambda's async API allows. */
static void answer_stalled_submissions(struct dispatch *d)
{
    struct submission *s;
    struct db_reachability reach;
    if (TAILQ_EMPTY(&d->submissions))
        return;
    db_get_reachability(&reach);
    if (reach.up)
        return;
    uint64_t now = now_usec();
    TAILQ_FOREACH(s, &d->submissions, link)
    {
        if (now < s->submitted_us + SUBMIT_AWAY_US)
            break; /* oldest first: the rest are younger */
        if (!s->done)
            continue;
        log_warn("async invocation answered before its row was known stored: the store is "
                 "unreachable",
                 "function=%s id=%s", s->fn_name, s->inv->id);
        s->done(-ENOTCONN,
                "the store became unreachable while the invocation was being stored: it is "
                "stored and runs once the store is back, unless ignisd stops before (a retry "
                "with the same Idempotency-Key is answered with it then)",
                s->inv->id, s->userdata);
        s->done = NULL;
    }
}

int dispatch_find_idempotent(struct dispatch *d, const struct fn_state *fn, const char *key,
                             char ret_id[INV_ID_LEN + 1])
{
    return inv_store_find_idempotent(d->store, fn->name, key,
                                     (int64_t)wall_usec() - d->opts.idempotency_us, ret_id);
}

int dispatch_invocation_get(struct dispatch *d, const char *id, const char *only_token, cJSON **ret,
                            struct ig_error *err)
{
    struct inv_record r;
    int q = inv_id_valid(id) ? inv_store_get(d->store, id, &r) : -ENOENT;
    if (q == -ENOENT)
        return ig_error_set_reason(err, ENOENT, "not_found", "no invocation with id '%s'", id);
    if (q < 0)
        return ig_error_set(err, -q, "reading invocation '%s': %s", id, strerror(-q));
    if (only_token && !streq(r.token_id, only_token)) {
        inv_record_clear(&r);
        return ig_error_set_reason(err, ENOENT, "not_found", "no invocation with id '%s'", id);
    }
    cJSON *json = inv_record_to_json(&r);
    inv_record_clear(&r);
    if (d->hooks.describe)
        d->hooks.describe(d->hooks.userdata, id, json);
    *ret = json;
    return 0;
}

/* ---- recovery ---- */

int dispatch_queue_record(struct dispatch *d, struct inv_record *r, int lease_attempts)
{
    struct fn_state *fn = dispatch_function(d, r->function);
    struct inv *inv = calloc(1, sizeof(*inv));
    if (!inv)
        return -ENOMEM;
    memcpy(inv->id, r->id, sizeof(inv->id));
    inv->version = r->version;
    memcpy(inv->alias, r->alias, sizeof(inv->alias));
    inv->async = true;
    inv->body = TAKE_PTR(r->payload);
    inv->body_len = r->payload_len;
    inv->content_type = TAKE_PTR(r->content_type);
    inv->idempotency_key = TAKE_PTR(r->idempotency_key);
    /* An attempt cut short by the daemon's own stop does not count against the function. A
     * claimed one runs the attempt its claim counted: start() counts it again. */
    inv->attempts = r->status == INV_RUNNING && r->attempts > 0 ? r->attempts - 1 : r->attempts;
    inv->lease_attempts = lease_attempts;
    inv->lease_until_us = r->lease_until_us;
    inv->created_wall_us = r->created_us;
    if (!inv->body)
        inv->body = strdup("");
    if (!fn) {
        struct fn_state ghost = {.d = d, .version = r->version, .ghost = true};
        struct manifest gm = {.max_retries = (uint32_t)r->max_retries};
        snprintf(ghost.name, sizeof(ghost.name), "%s", r->function);
        ghost.manifest = &gm;
        inv->fn = &ghost;
        struct dispatch_outcome o = {.kind = OUTCOME_ERROR};
        o.error_type = strdup("Ignis.FunctionDeleted");
        o.error_message = strdup("the function no longer exists");
        record(d, inv, INV_DEAD, &o, 0, 0);
        dispatch_outcome_clear(&o);
        inv_free(inv);
        return 0;
    }
    struct fn_state *to;
    if (state_for(d, fn, inv->version, &to) < 0) {
        version_gone(fn, inv);
        return 0;
    }
    enqueue(to, inv);
    return 1;
}

struct recover_count {
    struct dispatch *d;
    size_t n;
};

static int recover_counting(struct inv_record *r, void *userdata)
{
    struct recover_count *c = userdata;
    int q = dispatch_queue_record(c->d, r, 0);
    if (q > 0)
        c->n++;
    return q < 0 ? q : 0;
}

int dispatch_recover(struct dispatch *d, struct ig_error *err)
{
    /* Shared by hosts, the queue is the store's: this host claims from it like any other. */
    if (d->lease_owner)
        return queue_start(d, err);
    struct recover_count c = {.d = d};
    int r = inv_store_load_pending(d->store, recover_counting, &c);
    if (r < 0)
        return ig_error_set(err, -r, "recovering queued invocations: %s", strerror(-r));
    if (c.n)
        log_info("recovered queued invocations", "count=%zu", c.n);
    return 0;
}

/* ---- lifecycle ---- */

/* The CPUs the containers can run on, for the scaler's CPU cap: the daemon's affinity mask (the
 * containers are its children and inherit it), less a cgroup v2 cpu.max quota on the daemon's
 * cgroup or an ancestor, where the host is unified. 0 (no cap) when the mask cannot be read. */
static double host_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return 0;
    unsigned ncpu = (unsigned)CPU_COUNT(&set);
    double cpus = 0;
    if (scaler_host_cpus(ncpu, NULL, &cpus) < 0)
        return 0;
    _cleanup_free_ char *self = NULL;
    if (read_file("/proc/self/cgroup", 1 << 16, &self, NULL) < 0 || !startswith(self, "0::/"))
        return cpus; /* a v1 or hybrid host: its quota is not read */
    char path[4096];
    size_t len = strcspn(self + 3, "\n");
    if (len >= sizeof(path) - 64)
        return cpus;
    memcpy(path, self + 3, len);
    path[len] = 0;
    for (;;) {
        char file[4200];
        snprintf(file, sizeof(file), "/sys/fs/cgroup%s/cpu.max", streq(path, "/") ? "" : path);
        _cleanup_free_ char *max = NULL;
        double limit;
        if (read_file(file, 256, &max, NULL) == 0 && scaler_host_cpus(ncpu, max, &limit) == 0 &&
            limit < cpus)
            cpus = limit;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            break;
        *slash = 0;
    }
    return cpus;
}

int dispatch_new(struct loop *l, struct store *s, struct journal *j, struct cg_manager *cg,
                 const struct dispatch_options *opts, struct dispatch **ret, struct ig_error *err)
{
    struct dispatch *d = calloc(1, sizeof(*d));
    if (!d)
        return ig_error_set(err, ENOMEM, "out of memory");
    d->loop = l;
    d->store = s;
    d->journal = j;
    d->cg = cg;
    d->opts = *opts;
    d->lease_owner = opts->shared_queue ? d->opts.host_id : NULL;
    TAILQ_INIT(&d->submissions);
    scaler_init(&d->scaler, NULL);
    d->host.memory_budget = opts->memory_budget;
    d->host.cpus = host_cpus();
    if (!d->host.memory_budget) {
        char *meminfo = NULL;
        if (read_file("/proc/meminfo", 1 << 16, &meminfo, NULL) < 0 ||
            scaler_memory_budget(meminfo, 80, &d->host.memory_budget) < 0)
            d->host.memory_budget = UINT64_MAX;
        free(meminfo);
    }
    d->pool = &pool_containers;
    d->pool_hooks = (struct pool_hooks){
        .ready = worker_ready,
        .complete = complete,
        .spawn_failed = spawn_failed,
        .kick = kick,
        .emitted = emitted_frame,
    };
    if (loop_add_timer(l, now_usec() + TICK_US, on_tick, d, &d->tick) < 0) {
        free(d);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    *ret = d;
    return 0;
}

void dispatch_set_hooks(struct dispatch *d, const struct dispatch_hooks *hooks)
{
    d->hooks = *hooks;
}

void dispatch_set_cluster(struct dispatch *d, struct cluster *c)
{
    d->cluster = c;
}

void dispatch_set_stock(struct dispatch *d, struct container_stock *stock)
{
    d->stock = stock;
}

const struct dispatch_options *dispatch_get_options(const struct dispatch *d)
{
    return &d->opts;
}

bool dispatch_stopping(const struct dispatch *d)
{
    return d->stopping;
}

static void check_stopped(struct dispatch *d)
{
    if (!d->stopping || !d->stopped)
        return;
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        if (fn->inflight > 0)
            return;
    if (d->records_pending > 0 && !d->grace_over)
        return;
    if (d->grace_timer) {
        loop_cancel_timer(d->loop, d->grace_timer);
        d->grace_timer = NULL;
    }
    void (*stopped)(void *) = d->stopped;
    d->stopped = NULL;
    stopped(d->stopped_userdata);
}

static void on_grace_over(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct dispatch *d = userdata;
    d->grace_timer = NULL;
    d->grace_over = true;
    log_warn("shutdown grace period over: killing what still runs");
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        for (struct worker *w = fn->workers, *next; w; w = next) {
            next = w->next;
            if (w->inflight > 0)
                d->pool->kill(w, NULL);
        }
    check_stopped(d);
}

static void on_shutdown_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct dispatch *d = userdata;
    check_stopped(d);
    if (d->stopped)
        loop_add_timer(l, now_usec() + 10000, on_shutdown_tick, d, NULL);
}

void dispatch_shutdown(struct dispatch *d, void (*stopped)(void *userdata), void *userdata)
{
    d->stopping = true;
    d->stopped = stopped;
    d->stopped_userdata = userdata;
    queue_stop(d);
    queue_hand_back(d);
    for (struct fn_state *fn = d->fns; fn; fn = fn->next) {
        fail_queued(fn, ESHUTDOWN, "shutting_down", "ignisd is shutting down", true);
        dispatch_warm_note(fn); /* peers forward nothing more here */
    }
    loop_add_timer(d->loop, now_usec() + d->opts.shutdown_grace_ms * 1000, on_grace_over, d,
                   &d->grace_timer);
    loop_add_timer(d->loop, now_usec(), on_shutdown_tick, d, NULL);
}

void dispatch_close(struct dispatch *d)
{
    if (!d)
        return;
    d->stopping = true;
    d->stopped = NULL;
    queue_stop(d);
    if (d->tick)
        loop_cancel_timer(d->loop, d->tick);
    if (d->grace_timer)
        loop_cancel_timer(d->loop, d->grace_timer);
    d->tick = d->grace_timer = NULL;
    for (struct fn_state *fn = d->fns; fn; fn = fn->next) {
        fail_queued(fn, ESHUTDOWN, "shutting_down", "ignisd is shutting down", true);
        while (fn->workers)
            d->pool->kill(fn->workers, NULL);
        dispatch_warm_note(fn);
    }
    /* The last of the warm capacity goes through the journal, which the daemon frees next: the
     * hook is not called after this. */
    if (d->warm_timer)
        loop_cancel_timer(d->loop, d->warm_timer);
    d->warm_timer = NULL;
    warm_flush(d);
    d->hooks.warm = NULL;
    /* Once no worker is left to wait for one (a worker may wait for another state's). */
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        if (fn->tpl)
            d->pool->forget(fn);
    container_templates_shutdown();
    /* Records waiting for a retry get one last try, through the journal that the daemon frees
     * next; one that fails then is given up with an error line (record_failed). */
    d->closed = true;
    for (struct pending_record *pr = d->records, *next; pr; pr = next) {
        next = pr->next;
        if (pr->timer) {
            loop_cancel_timer(d->loop, pr->timer);
            pr->timer = NULL;
            submit_record(pr);
        }
    }
}

void dispatch_free(struct dispatch *d)
{
    if (!d)
        return;
    dispatch_close(d);
    /* The journal, freed first, delivered every record's outcome: peers may requeue what is
     * left of this host's now. */
    queue_release(d);
    while (d->records) {
        struct pending_record *pr = d->records;
        d->records = pr->next;
        inv_record_clear(&pr->r);
        free(pr);
    }
    while (d->fns) {
        struct fn_state *fn = d->fns;
        d->fns = fn->next;
        dispatch_state_free(fn);
    }
    free(d);
}

/* ---- the registry's hooks ---- */

static void on_registry_updated(void *userdata, const struct registry_function *f)
{
    struct dispatch *d = userdata;
    if (dispatch_function_set(d, f->name, f->version, f->manifest, f->bundle_dir) < 0) {
        log_error("cannot follow a new function version", "function=%s version=%u", f->name,
                  f->version);
        return;
    }
    const struct registry_version *v = registry_version(f, f->version);
    dispatch_function(d, f->name)->bundle_pending = v && (v->fetching || v->fetch_failed_here);
}

static void on_registry_drain(void *userdata, const struct registry_function *f,
                              void (*done)(void *ctx), void *ctx)
{
    struct dispatch *d = userdata;
    if (dispatch_function_remove(d, f->name, done, ctx) == -ENOENT)
        done(ctx);
}

static void on_registry_drain_version(void *userdata, const struct registry_function *f,
                                      const struct registry_version *v, void (*done)(void *ctx),
                                      void *ctx)
{
    struct dispatch *d = userdata;
    int r = dispatch_version_drain(d, f->name, v->version, done, ctx);
    if (r == -EBUSY) /* the registry keeps its current version: nothing to drain */
        log_error("the current version cannot be drained", "function=%s version=%u", f->name,
                  v->version);
    if (r < 0)
        done(ctx);
}

static void on_registry_describe(void *userdata, const struct registry_function *f, cJSON *live)
{
    struct dispatch *d = userdata;
    struct fn_state *fn = dispatch_function(d, f->name);
    if (!fn)
        return;
    cJSON *state = dispatch_function_state(fn);
    cJSON *item;
    while ((item = state->child)) {
        cJSON_DetachItemViaPointer(state, item);
        cJSON_DeleteItemFromObject(live, item->string);
        cJSON_AddItemToObject(live, item->string, item);
    }
    cJSON_Delete(state);
    versions_describe(fn, live);
}

void dispatch_attach_registry(struct dispatch *d, struct registry *r)
{
    const struct registry_hooks hooks = {
        .describe = on_registry_describe,
        .updated = on_registry_updated,
        .drain = on_registry_drain,
        .drain_version = on_registry_drain_version,
        .userdata = d,
    };
    d->registry = r;
    registry_set_hooks(r, &hooks);
    for (size_t i = 0; i < registry_count(r); i++)
        on_registry_updated(d, registry_at(r, i));
}
