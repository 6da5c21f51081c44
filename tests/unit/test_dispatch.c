/* Dispatch against a fake pool: the test plays the pool (struct pool_ops for what dispatch asks,
 * the pool hooks to report back), with a real loop, store and journal in a temp dir. Each case
 * ends one way an attempt can end (success, error, crash, timeout) or an async invocation's
 * retries (a retry after the backoff, a dead letter once they are spent), and checks what the
 * caller was told, what the completed hook saw and the record written. The version cases run
 * version states, some through a real registry (routing, a version's drain, recovery after a
 * restart). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "dispatch/dispatch-internal.h"
#include "functions/bundle.h"
#include "functions/registry.h"
#include "records/telemetry.h"

/* ---- the fake pool ---- */

static struct {
    unsigned spawns, sends, kills;
    struct inv *last_sent; /* the invocation handed over last */
    bool quit_on_send;
} P;

static size_t *state_count(struct worker *w)
{
    size_t *counts[] = {&w->fn->nspawning, &w->fn->nready, &w->fn->nbusy, &w->fn->ndraining};
    return counts[w->state];
}

static void set_state(struct worker *w, enum worker_state st)
{
    (*state_count(w))--;
    w->state = st;
    (*state_count(w))++;
}

static void on_ready_posted(struct loop *l, void *userdata)
{
    struct worker *w = userdata;
    w->ready_us = w->idle_since_us = now_usec();
    set_state(w, WORKER_READY);
    w->fn->d->pool_hooks.ready(w->fn, w);
}

/* A worker is ready on the next loop turn, as a container's READY frame would come. */
static int fake_spawn(struct fn_state *fn, struct ig_error *err)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return ig_error_set(err, ENOMEM, "out of memory");
    w->fn = fn;
    w->seq = ++fn->d->worker_seq;
    w->version = fn->version;
    w->memory_mb = fn->manifest->memory_mb;
    w->state = WORKER_SPAWNING;
    w->spawned_us = now_usec();
    TAILQ_INIT(&w->running);
    w->next = fn->workers;
    fn->workers = w;
    fn->nspawning++;
    fn->d->live_workers++;
    P.spawns++;
    return loop_post(fn->d->loop, on_ready_posted, w);
}

static int fake_send(struct worker *w, struct inv *inv)
{
    inv->worker = w;
    TAILQ_INSERT_TAIL(&w->running, inv, link);
    w->inflight++;
    w->used = true;
    set_state(w, WORKER_BUSY);
    P.sends++;
    P.last_sent = inv;
    if (P.quit_on_send)
        loop_quit(w->fn->d->loop);
    return 0;
}

static void worker_free(struct worker *w)
{
    for (struct worker **p = &w->fn->workers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    (*state_count(w))--;
    w->fn->d->live_workers--;
    free(w);
}

/* As the real pool: the worker goes, what it ran completes as crashed, or timed out. */
static void fake_kill(struct worker *w, struct inv *timed_out)
{
    struct fn_state *fn = w->fn;
    struct inv_list running;
    TAILQ_INIT(&running);
    TAILQ_CONCAT(&running, &w->running, link);
    worker_free(w);
    P.kills++;
    struct inv *inv;
    while ((inv = TAILQ_FIRST(&running))) {
        TAILQ_REMOVE(&running, inv, link);
        struct dispatch_outcome o = {.kind = inv == timed_out ? OUTCOME_TIMEOUT : OUTCOME_CRASH};
        o.error_type = strdup(inv == timed_out ? "Ignis.Timeout" : "Runtime.ExitError");
        fn->d->pool_hooks.complete(inv, &o);
        dispatch_outcome_clear(&o);
    }
    fn->d->pool_hooks.kick(fn);
}

static void fake_destroy(struct worker *w)
{
    worker_free(w);
}

static void fake_retire(struct worker *w)
{
    if (w->inflight == 0)
        worker_free(w);
    else
        set_state(w, WORKER_DRAINING);
}

static const struct pool_ops fake_pool = {
    .spawn = fake_spawn,
    .send = fake_send,
    .kill = fake_kill,
    .destroy = fake_destroy,
    .retire = fake_retire,
};

/* The runtime answered the invocation: as the pool's finished_one. */
static void finish(struct inv *inv, enum outcome_kind kind, const char *body, const char *type)
{
    struct worker *w = inv->worker;
    struct fn_state *fn = w->fn;
    TAILQ_REMOVE(&w->running, inv, link);
    w->inflight--;
    w->idle_since_us = now_usec();
    set_state(w, WORKER_READY);
    struct dispatch_outcome o = {.kind = kind};
    if (body) {
        o.body = strdup(body);
        o.body_len = strlen(body);
    }
    o.error_type = type ? strdup(type) : NULL;
    o.error_message = type ? strdup("it failed") : NULL;
    fn->d->pool_hooks.complete(inv, &o);
    dispatch_outcome_clear(&o);
    fn->d->pool_hooks.kick(fn);
}

/* ---- the dispatcher under test ---- */

static struct {
    char dir[64], db[128];
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct dispatch *d;
    struct manifest m;
    struct fn_state *fn;
    struct registry *reg; /* attach_registry's; NULL: none */
    /* what the completed hook saw */
    unsigned completed;
    enum outcome_kind completed_kind;
    char completed_id[INV_ID_LEN + 1];
} T;

/* What a sync invocation's caller was told. */
struct sync_call {
    bool done;
    int error; /* the ig_error's code when it never ran */
    enum outcome_kind kind;
    char *body;
    int64_t billed_ms;
    char id[INV_ID_LEN + 1];
};

static void on_completed(void *userdata, const struct dispatch_result *r)
{
    T.completed++;
    T.completed_kind = r->kind;
    snprintf(T.completed_id, sizeof(T.completed_id), "%s", r->id);
}

static void on_sync_done(const struct ig_error *err, struct dispatch_result *r, void *userdata)
{
    struct sync_call *c = userdata;
    c->done = true;
    if (err) {
        c->error = err->code;
        return;
    }
    c->kind = r->kind;
    c->billed_ms = r->billed_ms;
    snprintf(c->id, sizeof(c->id), "%s", r->id);
    c->body = r->body; /* taken, as the API takes it for its reply */
    r->body = NULL;
}

static int setup(void **state)
{
    memset(&T, 0, sizeof(T));
    memset(&P, 0, sizeof(P));
    strcpy(T.dir, "/tmp/ignis-dispatch-test.XXXXXX");
    if (!mkdtemp(T.dir))
        return -1;
    snprintf(T.db, sizeof(T.db), "%s/ignis.db", T.dir);
    struct ig_error err = {};
    if (store_open(T.db, &T.store, &err) < 0 || loop_new(&T.loop) < 0 ||
        journal_new(T.loop, T.db, &T.journal, &err) < 0 || telemetry_init() < 0)
        return -1;
    struct dispatch_options o;
    dispatch_options_defaults(&o, T.dir);
    o.retry_base_ms = 1;
    o.retry_cap_ms = 5;
    o.memory_budget = 1ull << 40;
    if (dispatch_new(T.loop, T.store, T.journal, NULL, &o, &T.d, &err) < 0)
        return -1;
    T.d->pool = &fake_pool;
    dispatch_set_hooks(T.d, &(struct dispatch_hooks){.completed = on_completed});
    T.m = (struct manifest){.name = "hello",
                            .handler = (char *)"",
                            .memory_mb = 128,
                            .timeout_ms = 10000,
                            .reuse = true,
                            .concurrency = 1,
                            .max_scale = 4,
                            .idle_timeout_s = 60};
    if (dispatch_function_set(T.d, "hello", 1, &T.m, T.dir) < 0)
        return -1;
    T.fn = dispatch_function(T.d, "hello");
    return T.fn ? 0 : -1;
}

static int teardown(void **state)
{
    dispatch_close(T.d);
    journal_free(T.journal);
    dispatch_free(T.d);
    registry_free(T.reg);
    telemetry_free();
    loop_free(T.loop);
    store_free(T.store);
    return rm_rf(T.dir);
}

static void on_deadline(struct loop *l, struct loop_timer *t, void *userdata)
{
    *(bool *)userdata = true;
    loop_quit(l);
}

/* Runs the loop until the fake pool is handed an invocation (or 5 s pass). */
static struct inv *run_until_sent(void)
{
    unsigned sends = P.sends;
    bool late = false;
    struct loop_timer *t = NULL;
    P.quit_on_send = true;
    loop_add_timer(T.loop, now_usec() + 5000000, on_deadline, &late, &t);
    while (P.sends == sends && !late)
        loop_run(T.loop);
    if (!late)
        loop_cancel_timer(T.loop, t);
    P.quit_on_send = false;
    assert_false(late);
    return P.last_sent;
}

/* Runs the loop for ms milliseconds. */
static void run_for(unsigned ms)
{
    bool over = false;
    loop_add_timer(T.loop, now_usec() + ms * 1000ull, on_deadline, &over, NULL);
    while (!over)
        loop_run(T.loop);
}

/* Waits (up to 5 s) for the invocation's record to reach status; returns it. */
static struct inv_record wait_record(const char *id, enum inv_status status)
{
    struct inv_record r = {};
    for (int i = 0; i < 500; i++) {
        if (inv_store_get(T.store, id, &r) == 0) {
            if (r.status == status)
                return r;
            inv_record_clear(&r);
        }
        run_for(10);
    }
    fail_msg("invocation %s never reached %s", id, inv_status_name(status));
    return r;
}

/* The route of an unqualified invocation (no registry: the current version). */
static struct dispatch_route route_default(void)
{
    struct dispatch_route route;
    struct ig_error err = {};
    assert_int_equal(dispatch_route(T.d, T.fn, NULL, false, &route, &err), 0);
    assert_ptr_equal(route.fn, T.fn);
    assert_string_equal(route.alias, "default");
    return route;
}

static struct inv *submit_sync_to(const struct dispatch_route *route, struct sync_call *c)
{
    struct ig_error err = {};
    struct inv *inv = NULL;
    assert_int_equal(dispatch_submit_sync(T.d, route, "{\"x\":1}", 7, "application/json", NULL,
                                          on_sync_done, c, &inv, &err),
                     0);
    assert_non_null(inv);
    return inv;
}

static struct inv *submit_sync(struct sync_call *c)
{
    struct dispatch_route route = route_default();
    return submit_sync_to(&route, c);
}

static void test_sync_success(void **state)
{
    struct sync_call c = {};
    struct inv *inv = submit_sync(&c);
    assert_ptr_equal(run_until_sent(), inv);
    assert_false(c.done);
    char id[INV_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", inv->id);
    finish(inv, OUTCOME_OK, "\"hi\"", NULL);

    assert_true(c.done);
    assert_int_equal(c.error, 0);
    assert_int_equal(c.kind, OUTCOME_OK);
    assert_string_equal(c.body, "\"hi\"");
    assert_string_equal(c.id, id);
    assert_true(c.billed_ms >= 1);
    assert_int_equal(T.completed, 1);
    assert_int_equal(T.completed_kind, OUTCOME_OK);
    free(c.body);
    /* A sync record is written once, final, without its result. */
    struct inv_record r = wait_record(id, INV_SUCCEEDED);
    assert_false(r.async);
    assert_int_equal(r.attempts, 1);
    assert_null(r.result);
    inv_record_clear(&r);
    assert_int_equal(T.fn->invocations, 1);
    assert_int_equal(T.fn->errors, 0);
    assert_int_equal(T.fn->inflight, 0);
}

static void test_sync_error(void **state)
{
    struct sync_call c = {};
    struct inv *inv = submit_sync(&c);
    run_until_sent();
    char id[INV_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", inv->id);
    finish(inv, OUTCOME_ERROR, NULL, "Function.Error");

    assert_true(c.done);
    assert_int_equal(c.kind, OUTCOME_ERROR);
    assert_null(c.body);
    assert_int_equal(T.completed_kind, OUTCOME_ERROR);
    struct inv_record r = wait_record(id, INV_FAILED);
    assert_string_equal(r.error_type, "Function.Error");
    assert_string_equal(r.error_message, "it failed");
    inv_record_clear(&r);
    assert_int_equal(T.fn->errors, 1);
}

static void test_sync_crash(void **state)
{
    struct sync_call c = {};
    struct inv *inv = submit_sync(&c);
    run_until_sent();
    char id[INV_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", inv->id);
    T.d->pool->kill(inv->worker, NULL);

    assert_true(c.done);
    assert_int_equal(c.kind, OUTCOME_CRASH);
    assert_int_equal(P.kills, 1);
    struct inv_record r = wait_record(id, INV_FAILED);
    assert_string_equal(r.error_type, "Runtime.ExitError");
    inv_record_clear(&r);
    assert_int_equal(T.fn->inflight, 0);
}

static void test_sync_timeout(void **state)
{
    T.m.timeout_ms = 20;
    struct sync_call c = {};
    struct inv *inv = submit_sync(&c);
    run_until_sent();
    char id[INV_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", inv->id);
    /* Nobody answers: dispatch's timer kills the worker, which completes it as timed out. */
    for (int i = 0; i < 500 && !c.done; i++)
        run_for(10);

    assert_true(c.done);
    assert_int_equal(c.kind, OUTCOME_TIMEOUT);
    assert_int_equal(P.kills, 1);
    struct inv_record r = wait_record(id, INV_FAILED);
    assert_string_equal(r.error_type, "Ignis.Timeout");
    inv_record_clear(&r);
    assert_int_equal(T.fn->timeouts, 1);
}

static void on_removed(void *userdata)
{
    *(bool *)userdata = true;
}

/* A queued invocation whose caller went away never runs and leaves no record; a delete drains:
 * the one still waiting for its (cold) container runs, new work is refused, and the delete's
 * done comes only after. */
static void test_sync_cancel_and_delete(void **state)
{
    struct sync_call gone = {}, waiting = {};
    struct inv *inv = submit_sync(&gone);
    char gone_id[INV_ID_LEN + 1];
    snprintf(gone_id, sizeof(gone_id), "%s", dispatch_inv_id(inv));
    submit_sync(&waiting);
    dispatch_sync_cancel(inv);
    assert_int_equal(T.fn->queued, 1);
    bool removed = false;
    assert_int_equal(dispatch_function_remove(T.d, "hello", on_removed, &removed), 0);
    assert_false(gone.done);
    assert_false(waiting.done);
    assert_false(removed);
    struct dispatch_route route;
    struct ig_error err = {};
    assert_int_equal(dispatch_function_accepting(T.d, "hello", NULL, false, &route, &err), -ENOENT);

    struct inv *sent = run_until_sent();
    assert_non_null(sent);
    assert_false(removed);
    finish(sent, OUTCOME_OK, "\"hi\"", NULL);
    for (int i = 0; i < 100 && !removed; i++)
        run_for(10);
    assert_true(waiting.done);
    assert_int_equal(waiting.error, 0);
    assert_int_equal(waiting.kind, OUTCOME_OK);
    free(waiting.body);
    assert_true(removed);
    assert_int_equal(P.sends, 1);
    assert_null(dispatch_function(T.d, "hello"));
    /* The delete waited for the records: the one that ran has its row, the cancelled one none. */
    struct inv_record r = {};
    assert_int_equal(inv_store_get(T.store, waiting.id, &r), 0);
    inv_record_clear(&r);
    assert_int_equal(inv_store_get(T.store, gone_id, &r), -ENOENT);
}

struct async_call {
    int result;
    bool done;
};

static void on_submitted(int result, const char *message, const char *id, void *userdata)
{
    struct async_call *c = userdata;
    c->result = result;
    c->done = true;
}

static void submit_async(char id[INV_ID_LEN + 1], struct async_call *c)
{
    struct dispatch_route route = route_default();
    assert_true(dispatch_queue_takes(T.d, T.fn, 1));
    assert_int_equal(dispatch_submit_async(T.d, &route, "{}", 2, "application/json", NULL, NULL, id,
                                           on_submitted, c),
                     0);
}

/* An async attempt that fails goes back in the queue with its backoff, and runs again. */
static void test_async_retry(void **state)
{
    T.m.max_retries = 2;
    char id[INV_ID_LEN + 1];
    struct async_call c = {};
    submit_async(id, &c);
    struct inv *inv = run_until_sent();
    assert_true(c.done);
    assert_int_equal(c.result, 0);
    assert_string_equal(inv->id, id);
    assert_int_equal(inv->attempts, 1);
    finish(inv, OUTCOME_ERROR, NULL, "Function.Error");
    assert_int_equal(T.completed, 0); /* not final */
    assert_non_null(inv->timer);      /* its backoff: then it runs again */
    assert_int_equal(T.fn->queued, 1);

    inv = run_until_sent();
    assert_string_equal(inv->id, id);
    assert_int_equal(inv->attempts, 2);
    finish(inv, OUTCOME_OK, "{}", NULL);
    assert_int_equal(T.completed, 1);
    assert_int_equal(T.completed_kind, OUTCOME_OK);
    assert_string_equal(T.completed_id, id);
    struct inv_record r = wait_record(id, INV_SUCCEEDED);
    assert_int_equal(r.attempts, 2);
    assert_true(r.async);
    assert_memory_equal(r.result, "{}", 2);
    inv_record_clear(&r);
}

/* Once its retries are spent, an async invocation is dead-lettered. */
static void test_async_dead_letter(void **state)
{
    T.m.max_retries = 1;
    char id[INV_ID_LEN + 1];
    struct async_call c = {};
    submit_async(id, &c);
    finish(run_until_sent(), OUTCOME_ERROR, NULL, "Function.Error");
    struct inv *inv = run_until_sent();
    assert_int_equal(inv->attempts, 2);
    T.d->pool->kill(inv->worker, NULL);
    assert_int_equal(T.completed, 1);
    assert_int_equal(T.completed_kind, OUTCOME_CRASH);
    struct inv_record r = wait_record(id, INV_DEAD);
    assert_int_equal(r.attempts, 2);
    assert_string_equal(r.error_type, "Runtime.ExitError");
    inv_record_clear(&r);
    assert_int_equal(T.fn->errors, 2);
}

/* ---- version states ---- */

/* Runs the loop until cond() holds (or 10 s pass). */
static bool run_until(bool (*cond)(void))
{
    for (int i = 0; i < 1000 && !cond(); i++)
        run_for(10);
    return cond();
}

static bool no_version_states(void)
{
    return T.fn->versions == NULL;
}

/* An invocation routed to another version runs in that version's own state, on a container made
 * for it, is recorded with its version and alias, and counts as the function's; the state scales
 * to zero once idle (its manifest's min_scale notwithstanding) and is freed. */
static void test_version_state_lifecycle(void **state)
{
    struct manifest m2 = T.m;
    m2.min_scale = 1;
    m2.idle_timeout_s = 1;
    struct fn_state *vs;
    assert_int_equal(versions_state(T.fn, 2, &m2, T.dir, &vs), 0);
    assert_ptr_not_equal(vs, T.fn);
    assert_ptr_equal(vs->of, T.fn);
    /* Not a function of its own. */
    assert_ptr_equal(dispatch_function(T.d, "hello"), T.fn);
    assert_ptr_equal(dispatch_functions(T.d), T.fn);
    assert_null(dispatch_next(T.fn));
    struct fn_state *again;
    assert_int_equal(versions_state(T.fn, 2, &m2, T.dir, &again), 0);
    assert_ptr_equal(again, vs);

    struct dispatch_route route = {.fn = vs, .version = 2, .alias = "canary"};
    struct sync_call c = {};
    struct inv *inv = submit_sync_to(&route, &c);
    assert_ptr_equal(run_until_sent(), inv);
    assert_ptr_equal(inv->worker->fn, vs);
    assert_int_equal(inv->worker->version, 2);
    assert_int_equal(T.fn->nready + T.fn->nbusy + T.fn->nspawning, 0);
    finish(inv, OUTCOME_OK, "{}", NULL);
    assert_true(c.done);
    free(c.body);
    struct inv_record r = wait_record(c.id, INV_SUCCEEDED);
    assert_int_equal(r.version, 2);
    assert_string_equal(r.alias, "canary");
    inv_record_clear(&r);
    assert_int_equal(T.fn->invocations, 1);
    assert_int_equal(T.fn->n_by_version, 1);
    assert_int_equal(T.fn->by_version[0].version, 2);

    assert_true(run_until(no_version_states));
    assert_int_equal(T.d->live_workers, 0);
}

/* The current version changes while an invocation of the old one waits for a container: it
 * moves to the old version's state and runs there, never on the new version. */
static void test_switch_keeps_queued_on_their_version(void **state)
{
    struct sync_call c = {};
    struct inv *inv = submit_sync(&c);
    assert_null(inv->worker);
    struct manifest m2 = T.m;
    assert_int_equal(dispatch_function_set(T.d, "hello", 2, &m2, T.dir), 0);
    assert_int_equal(T.fn->version, 2);
    assert_int_equal(T.fn->queued, 0);
    assert_non_null(T.fn->versions);
    assert_ptr_equal(inv->fn, T.fn->versions);
    assert_int_equal(inv->fn->version, 1);
    assert_int_equal(inv->fn->queued, 1);

    assert_ptr_equal(run_until_sent(), inv);
    assert_int_equal(inv->worker->version, 1);
    finish(inv, OUTCOME_OK, "{}", NULL);
    free(c.body);
    struct inv_record r = wait_record(c.id, INV_SUCCEEDED);
    assert_int_equal(r.version, 1);
    assert_string_equal(r.alias, "default");
    inv_record_clear(&r);

    /* Back to version 1 (a rollback): its state hands its warm container to the function's. */
    assert_int_equal(dispatch_function_set(T.d, "hello", 1, &T.m, T.dir), 0);
    assert_int_equal(T.fn->nready, 1);
    assert_true(run_until(no_version_states));
}

static void on_drained(void *userdata)
{
    *(bool *)userdata = true;
}

/* The registry's drain_version: what the version runs still finishes, then done; the current
 * version cannot be drained, and a version nothing runs is done at once (-ENOENT). */
static void test_version_drain(void **state)
{
    struct fn_state *vs;
    assert_int_equal(versions_state(T.fn, 3, &T.m, T.dir, &vs), 0);
    struct dispatch_route route = {.fn = vs, .version = 3};
    struct sync_call c = {};
    struct inv *inv = submit_sync_to(&route, &c);
    assert_ptr_equal(run_until_sent(), inv);

    bool drained = false;
    assert_int_equal(dispatch_version_drain(T.d, "hello", 1, on_drained, &drained), -EBUSY);
    assert_int_equal(dispatch_version_drain(T.d, "hello", 7, on_drained, &drained), -ENOENT);
    assert_int_equal(dispatch_version_drain(T.d, "hello", 3, on_drained, &drained), 0);
    assert_false(drained);
    finish(inv, OUTCOME_OK, "{}", NULL);
    free(c.body);
    for (int i = 0; i < 500 && !drained; i++)
        run_for(10);
    assert_true(drained);
    assert_null(T.fn->versions);
    /* Its /metrics series went with it, although it completed an invocation while draining. */
    assert_int_equal(T.fn->n_by_version, 0);
    assert_int_equal(T.d->live_workers, 0);
    struct inv_record r = wait_record(c.id, INV_SUCCEEDED);
    assert_int_equal(r.version, 3);
    assert_string_equal(r.alias, "");
    inv_record_clear(&r);
}

/* ---- versions through a registry ---- */

static void on_pushed(void *userdata, const struct ig_error *err,
                      const struct registry_result *result)
{
    assert_int_equal(err ? err->code : 0, 0);
    *(bool *)userdata = true;
    loop_quit(T.loop);
}

/* A registry with two versions of "versioned" (their manifests differ in memory_mb; extra: more
 * of their fields), version 2 the current one, attached to the dispatcher: routes and recovery
 * look versions up there. */
static struct fn_state *attach_registry(const char *extra)
{
    struct ig_error err = {};
    assert_int_equal(registry_new(T.loop, T.store, T.dir, &T.reg, &err), 0);
    for (int v = 1; v <= 2; v++) {
        char src[128], path[160], json[256];
        snprintf(src, sizeof(src), "%s/src%d", T.dir, v);
        assert_int_equal(mkdir_p(src, 0755), 0);
        snprintf(path, sizeof(path), "%s/function.json", src);
        snprintf(json, sizeof(json),
                 "{\"name\": \"versioned\", \"runtime\": \"provided\", \"memory_mb\": %d%s}",
                 128 + v, extra);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(json, f);
        fclose(f);
        _cleanup_free_ char *b = NULL;
        size_t len;
        assert_int_equal(bundle_pack_dir(src, 1 << 20, &b, &len, &err), 0);
        bool pushed = false;
        assert_int_equal(registry_push(T.reg, "versioned", b, len, on_pushed, &pushed, &err), 0);
        while (!pushed)
            loop_run(T.loop);
    }
    dispatch_attach_registry(T.d, T.reg);
    struct fn_state *fn = dispatch_function(T.d, "versioned");
    assert_non_null(fn);
    assert_int_equal(fn->version, 2);
    return fn;
}

#define VERSIONED                                                                                  \
    "{\"name\": \"versioned\", \"runtime\": \"provided\", \"max_retries\": 2, "                    \
    "\"memory_mb\": %d28}"

/* A retry of a version's async invocation waiting for its backoff when the version is drained
 * is dead as its version's: Ignis.VersionNotFound, not Ignis.FunctionDeleted (the function is
 * still there). */
static void test_version_drain_drops_retries(void **state)
{
    struct fn_state *fn = attach_registry(", \"max_retries\": 2");
    struct dispatch_route route;
    struct ig_error err = {};
    assert_int_equal(dispatch_route(T.d, fn, "1", true, &route, &err), 0);
    assert_ptr_equal(route.fn->of, fn);
    char id[INV_ID_LEN + 1];
    struct async_call c = {};
    assert_int_equal(dispatch_submit_async(T.d, &route, "{}", 2, "application/json", NULL, NULL, id,
                                           on_submitted, &c),
                     0);
    struct inv *inv = run_until_sent();
    assert_int_equal(inv->version, 1);
    finish(inv, OUTCOME_ERROR, NULL, "Function.Error");
    assert_non_null(inv->timer); /* waiting for its backoff */

    bool drained = false;
    assert_int_equal(dispatch_version_drain(T.d, "versioned", 1, on_drained, &drained), 0);
    struct inv_record r = wait_record(id, INV_DEAD);
    assert_string_equal(r.error_type, "Ignis.VersionNotFound");
    assert_int_equal(r.version, 1);
    assert_true(r.alias[0] == '\0');
    inv_record_clear(&r);
    for (int i = 0; i < 500 && !drained; i++)
        run_for(10);
    assert_true(drained);
    assert_null(fn->versions);
}

static void on_inserted(struct loop *l, int result, const char *message, void *userdata)
{
    assert_int_equal(result, 1); /* the row it inserted */
    *(bool *)userdata = true;
    loop_quit(l);
}

/* An async invocation of "versioned" that a previous run accepted (routed to version through
 * alias) and left queued in the store: what dispatch_recover finds at the next start. */
static void insert_queued(int64_t version, const char *alias, char id[INV_ID_LEN + 1])
{
    inv_id_new(id);
    struct inv_record r = {
        .function = (char *)"versioned",
        .version = version,
        .async = true,
        .status = INV_QUEUED,
        .payload = (char *)"{}",
        .payload_len = 2,
        .max_retries = 0,
        .created_us = (int64_t)wall_usec(),
    };
    memcpy(r.id, id, sizeof(r.id));
    snprintf(r.alias, sizeof(r.alias), "%s", alias);
    bool stored = false;
    assert_int_equal(
        inv_store_insert(T.journal, &r, r.created_us + 3600000000ll, NULL, on_inserted, &stored),
        0);
    while (!stored)
        loop_run(T.loop);
}

/* Recovered after a restart, an async invocation runs the version it was routed to although
 * another is current now, in that version's state, and its record keeps the alias. */
static void test_recover_runs_its_version(void **state)
{
    struct fn_state *fn = attach_registry("");
    char id[INV_ID_LEN + 1];
    insert_queued(1, "canary", id);
    struct ig_error err = {};
    assert_int_equal(dispatch_recover(T.d, &err), 0);
    struct inv *inv = run_until_sent();
    assert_string_equal(inv->id, id);
    assert_ptr_equal(inv->fn->of, fn);
    assert_int_equal(inv->worker->version, 1);
    assert_int_equal(inv->worker->memory_mb, 129); /* version 1's manifest */
    finish(inv, OUTCOME_OK, "{}", NULL);
    struct inv_record r = wait_record(id, INV_SUCCEEDED);
    assert_int_equal(r.version, 1);
    assert_string_equal(r.alias, "canary");
    inv_record_clear(&r);
}

/* Recovered after a restart, an async invocation whose version is not kept any more is
 * dead-lettered (Ignis.VersionNotFound), never run on the current version. */
static void test_recover_version_gone(void **state)
{
    attach_registry("");
    char id[INV_ID_LEN + 1];
    insert_queued(9, "canary", id);
    struct ig_error err = {};
    assert_int_equal(dispatch_recover(T.d, &err), 0);
    struct inv_record r = wait_record(id, INV_DEAD);
    assert_string_equal(r.error_type, "Ignis.VersionNotFound");
    assert_int_equal(r.version, 9);
    assert_string_equal(r.alias, "canary");
    inv_record_clear(&r);
    assert_int_equal(P.sends, 0);
}

/* A claimed attempt's start renews its lease only when the wait since the claim ate into the
 * grace the claim gave it (queue.c): the claim's lease covers an attempt that starts soon. */
static void test_lease_renewed_only_after_a_long_wait(void **state)
{
    struct manifest m = {.timeout_ms = 10000};
    int64_t claimed = 1000000000, lease_until = claimed + queue_lease_us(&m);
    assert_false(queue_lease_short(&m, lease_until, claimed));
    assert_false(queue_lease_short(&m, lease_until, claimed + 14 * 1000000));
    assert_true(queue_lease_short(&m, lease_until, claimed + 16 * 1000000));
    m.timeout_ms = 30000; /* a version with a longer timeout took over meanwhile */
    assert_true(queue_lease_short(&m, lease_until, claimed));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cancel_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_state_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_keeps_queued_on_their_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_drain_drops_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_runs_its_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_version_gone, setup, teardown),
        cmocka_unit_test(test_lease_renewed_only_after_a_long_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
