/* The events' accept without HTTP (events_accept): an event reaches every subscriber as a durable
 * async invocation made with the sender's token; a repeat of an accepted event is a duplicate;
 * one still being stored by another acceptance is refused (in_progress); a batch that would
 * overfill a subscriber's queue delivers nothing, and the queue checked is that of the version
 * a delivery was routed to (a registry's 50/50 default alias). A real loop, store, journal and
 * dispatcher in a temp dir; api/errors turns each refusal into today's status and code. No
 * container is made: the subscribers' max_scale is 0, so their deliveries stay queued (the unit
 * tier has no privileges), and closing the dispatcher fails them at teardown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "api/errors.h"
#include "base/cloudevents.h"
#include "dispatch/dispatch.h"
#include "events/events.h"
#include "functions/bundle.h"
#include "functions/registry.h"
#include "records/journal.h"
#include "records/store-internal.h"
#include "records/telemetry.h"

#define QUEUE_MAX 2
#define TOKEN     "0123456789abcdef"

struct fixture {
    char dir[64];
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct dispatch *d;
    struct event_router *ev;
    struct manifest *orders, *shipping, *audit;
    struct registry *reg; /* test_routed_version_queue_full's; NULL: none */
};

/* What an acceptance's done reported. */
struct report {
    struct loop *loop;
    bool called, during_accept;
    bool in_accept; /* set around events_accept */
    int result;
    struct ig_error err;
    size_t n;
    bool duplicate[4];
    size_t ndeliveries[4];
    char functions[4][2][MANIFEST_NAME_MAX + 1];
    char invocations[4][2][INV_ID_LEN + 1];
};

static struct manifest *manifest(const char *name, const char *events)
{
    char text[512];
    struct manifest *m;
    struct ig_error err = {};
    snprintf(text, sizeof(text),
             "{\"name\": \"%s\", \"runtime\": \"python3\", \"handler\": \"app.handler\", "
             "\"events\": %s}",
             name, events);
    if (manifest_parse(text, strlen(text), &m, &err) < 0)
        fail_msg("%s", err.message);
    /* No container: deliveries wait in the queue. */
    m->max_scale = 0;
    return m;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct ig_error err = {};
    char path[128];
    struct dispatch_options dopts;
    const struct events_options eopts = {.dedupe_window_us = 3600ull * 1000000, .hop_limit = 8};

    strcpy(f->dir, "/tmp/ignis-events-test.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(path, sizeof(path), "%s/ignis.db", f->dir);
    assert_int_equal(telemetry_init(), 0);
    assert_int_equal(loop_new(&f->loop), 0);
    if (store_open(path, &f->store, &err) < 0 || journal_new(f->loop, path, &f->journal, &err) < 0)
        fail_msg("%s", err.message);
    dispatch_options_defaults(&dopts, f->dir);
    dopts.queue_max = QUEUE_MAX;
    if (dispatch_new(f->loop, f->store, f->journal, NULL, &dopts, &f->d, &err) < 0)
        fail_msg("%s", err.message);
    /* Two subscribers, and a function subscribed to something else. */
    f->orders = manifest("orders", "[{\"type\": \"com.example.order.*\"}]");
    f->shipping = manifest("shipping", "[{\"type\": \"com.example.order.created\", "
                                       "\"source\": \"/shop\"}]");
    f->audit = manifest("audit", "[{\"type\": \"com.example.user.created\"}]");
    assert_int_equal(dispatch_function_set(f->d, "orders", 1, f->orders, f->dir), 0);
    assert_int_equal(dispatch_function_set(f->d, "shipping", 1, f->shipping, f->dir), 0);
    assert_int_equal(dispatch_function_set(f->d, "audit", 1, f->audit, f->dir), 0);
    if (events_new(f->loop, f->store, f->journal, f->d, &eopts, &f->ev, &err) < 0)
        fail_msg("%s", err.message);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    /* The daemon's order (daemon_free): the dispatcher's last rows go through the journal. */
    dispatch_close(f->d);
    journal_free(f->journal);
    events_free(f->ev);
    dispatch_free(f->d);
    registry_free(f->reg);
    manifest_free(f->orders);
    manifest_free(f->shipping);
    manifest_free(f->audit);
    store_free(f->store);
    loop_free(f->loop);
    telemetry_free();
    int r = rm_rf(f->dir);
    free(f);
    return r;
}

static void on_done(int result, const struct ig_error *err, const struct event_accepted *v,
                    size_t n, void *userdata)
{
    struct report *o = userdata;
    assert_false(o->called);
    o->called = true;
    o->during_accept = o->in_accept;
    o->result = result;
    o->n = n;
    if (result < 0) {
        assert_null(v);
        o->err = *err;
    }
    for (size_t i = 0; i < n && i < ARRAY_SIZE(o->duplicate); i++) {
        o->duplicate[i] = v[i].duplicate;
        o->ndeliveries[i] = v[i].ndeliveries;
        for (size_t k = 0; k < v[i].ndeliveries && k < 2; k++) {
            snprintf(o->functions[i][k], sizeof(o->functions[i][k]), "%s",
                     v[i].deliveries[k].function);
            snprintf(o->invocations[i][k], sizeof(o->invocations[i][k]), "%s",
                     v[i].deliveries[k].id);
        }
    }
    if (o->loop && !o->during_accept)
        loop_quit(o->loop);
}

static void on_timeout(struct loop *l, struct loop_timer *t, void *userdata)
{
    fail_msg("the acceptance did not end within 10 s");
}

static void accept_events(struct fixture *f, const struct ce_events *events, struct report *o)
{
    o->loop = f->loop;
    o->in_accept = true;
    events_accept(f->ev, events, TOKEN, on_done, o);
    o->in_accept = false;
}

/* Runs the loop until o's done ran. */
static void wait_done(struct fixture *f, struct report *o)
{
    struct loop_timer *t;
    if (o->called)
        return;
    assert_int_equal(loop_add_timer(f->loop, now_usec() + 10000000, on_timeout, NULL, &t), 0);
    assert_int_equal(loop_run(f->loop), 0);
    loop_cancel_timer(f->loop, t);
    assert_true(o->called);
}

/* Events in structured mode (one) or batch mode (several): type com.example.order.created from
 * /shop, with the given ids. */
static struct ce_events *make_events(const char *const *ids, size_t n)
{
    struct ce_events *events = calloc(1, sizeof(*events));
    assert_non_null(events);
    events->mode = n == 1 ? CE_MODE_STRUCTURED : CE_MODE_BATCH;
    events->v = calloc(n, sizeof(*events->v));
    assert_non_null(events->v);
    for (size_t i = 0; i < n; i++) {
        char text[256];
        struct ig_error err = {};
        snprintf(text, sizeof(text),
                 "{\"specversion\": \"1.0\", \"id\": \"%s\", \"source\": \"/shop\", "
                 "\"type\": \"com.example.order.created\", \"data\": {\"order\": %zu}}",
                 ids[i], i);
        if (ce_parse_json(text, strlen(text), &events->v[i], &err) < 0)
            fail_msg("%s", err.message);
        events->n++;
    }
    return events;
}

static int count(struct fixture *f, const char *sql)
{
    struct db_rows *st;
    int n = -1;
    assert_int_equal(db_query(f->store->db, sql, NULL, 0, &st, NULL), 0);
    if (db_next(st) > 0)
        n = (int)db_int(st, 0);
    db_rows_free(st);
    return n;
}

static void test_delivered_to_every_subscriber(void **state)
{
    struct fixture *f = *state;
    static const char *const ids[] = {"order-1"};
    _cleanup_ce_events_ struct ce_events *events = make_events(ids, 1);
    struct report o = {};

    accept_events(f, events, &o);
    wait_done(f, &o);
    assert_false(o.during_accept); /* it waited for the journal */
    assert_int_equal(o.result, 0);
    assert_int_equal(o.n, 1);
    assert_false(o.duplicate[0]);
    assert_int_equal(o.ndeliveries[0], 2);
    /* Both subscribers, not the bystander, each by a durable async invocation the sender's
     * token made, whose payload is the event in the JSON format. */
    bool orders = false, shipping = false;
    for (size_t k = 0; k < 2; k++) {
        orders |= streq(o.functions[0][k], "orders");
        shipping |= streq(o.functions[0][k], "shipping");
        struct inv_record r = {};
        assert_int_equal(inv_store_get(f->store, o.invocations[0][k], &r), 0);
        assert_string_equal(r.function, o.functions[0][k]);
        assert_true(r.async);
        assert_string_equal(r.token_id, TOKEN);
        assert_string_equal(r.content_type, "application/cloudevents+json");
        cJSON *payload = cJSON_Parse(r.payload);
        assert_string_equal(cJSON_GetObjectItem(payload, "id")->valuestring, "order-1");
        assert_int_equal(
            cJSON_GetObjectItem(cJSON_GetObjectItem(payload, "data"), "order")->valueint, 0);
        cJSON_Delete(payload);
        inv_record_clear(&r);
    }
    assert_true(orders && shipping);
    /* The id is on disk when done runs: a 202 means both are. */
    assert_int_equal(count(f, "SELECT count(*) FROM event_ids WHERE source = '/shop' AND "
                              "id = 'order-1'"),
                     1);
}

static void test_repeat_is_a_duplicate(void **state)
{
    struct fixture *f = *state;
    static const char *const ids[] = {"order-2"};
    _cleanup_ce_events_ struct ce_events *events = make_events(ids, 1);
    struct report first = {}, again = {};

    accept_events(f, events, &first);
    wait_done(f, &first);
    assert_int_equal(first.result, 0);
    assert_int_equal(first.ndeliveries[0], 2);

    /* Nothing to store: done runs before events_accept returns. */
    accept_events(f, events, &again);
    assert_true(again.called && again.during_accept);
    assert_int_equal(again.result, 0);
    assert_int_equal(again.n, 1);
    assert_true(again.duplicate[0]);
    assert_int_equal(again.ndeliveries[0], 0);
    assert_int_equal(count(f, "SELECT count(*) FROM invocations"), 2);
}

static void test_repeat_while_stored_is_in_progress(void **state)
{
    struct fixture *f = *state;
    static const char *const ids[] = {"order-3"};
    _cleanup_ce_events_ struct ce_events *events = make_events(ids, 1);
    struct report first = {}, repeat = {};

    accept_events(f, events, &first);
    assert_false(first.called);
    /* The first may yet fail, so the repeat is not a duplicate yet: refused, to retry. */
    accept_events(f, events, &repeat);
    assert_true(repeat.called && repeat.during_accept);
    assert_int_equal(repeat.result, -EINPROGRESS);
    assert_int_equal(repeat.err.code, EINPROGRESS);
    assert_int_equal(api_status_for(repeat.err.code), 503);
    assert_string_equal(api_code_for(&repeat.err), "in_progress");
    assert_non_null(strstr(repeat.err.message, "(/shop, order-3) is being stored"));

    wait_done(f, &first);
    assert_int_equal(first.result, 0);
    assert_false(first.duplicate[0]);
    assert_int_equal(first.ndeliveries[0], 2);
}

static void test_batch_past_queue_bound(void **state)
{
    struct fixture *f = *state;
    static const char *const ids[] = {"order-4", "order-5", "order-6"};
    _cleanup_ce_events_ struct ce_events *events = make_events(ids, ARRAY_SIZE(ids));
    struct report o = {}, one = {};

    /* Three events for queues that hold QUEUE_MAX: nothing is delivered. */
    accept_events(f, events, &o);
    assert_true(o.called && o.during_accept);
    assert_int_equal(o.result, -ENOBUFS);
    assert_int_equal(api_status_for(o.err.code), 429);
    assert_string_equal(api_code_for(&o.err), "too_many_requests");
    assert_non_null(strstr(o.err.message, "is full (0 invocations waiting, 3 more from this "
                                          "request, at most 2); nothing was delivered"));

    /* None of its ids was remembered: one sent again alone is delivered. */
    _cleanup_ce_events_ struct ce_events *alone = make_events(ids, 1);
    accept_events(f, alone, &one);
    wait_done(f, &one);
    assert_int_equal(one.result, 0);
    assert_false(one.duplicate[0]);
    assert_int_equal(one.ndeliveries[0], 2);
    /* The journal commits in order: by now anything the refused batch had queued would be on
     * disk too. Only the lone event's rows are. */
    assert_int_equal(count(f, "SELECT count(*) FROM invocations"), 2);
    assert_int_equal(count(f, "SELECT count(*) FROM event_ids"), 1);
}

static void on_registry_done(void *userdata, const struct ig_error *err,
                             const struct registry_result *result)
{
    struct report *o = userdata;
    assert_int_equal(err ? err->code : 0, 0);
    o->called = true;
    loop_quit(o->loop);
}

/* Pushes version v of "split", a subscriber of the events make_events makes (the versions differ
 * in memory_mb), through the registry, and runs the loop until it is recorded. */
static void push_split(struct fixture *f, int v)
{
    char src[128], path[160], json[256];
    struct ig_error err = {};
    snprintf(src, sizeof(src), "%s/split%d", f->dir, v);
    assert_int_equal(mkdir_p(src, 0755), 0);
    snprintf(path, sizeof(path), "%s/function.json", src);
    snprintf(json, sizeof(json),
             "{\"name\": \"split\", \"runtime\": \"provided\", \"memory_mb\": %d, "
             "\"events\": [{\"type\": \"com.example.order.created\"}]}",
             128 + v);
    FILE *file = fopen(path, "we");
    assert_non_null(file);
    fputs(json, file);
    fclose(file);
    _cleanup_free_ char *b = NULL;
    size_t len;
    assert_int_equal(bundle_pack_dir(src, 1 << 20, &b, &len, &err), 0);
    struct report o = {.loop = f->loop};
    assert_int_equal(registry_push(f->reg, "split", b, len, on_registry_done, &o, &err), 0);
    wait_done(f, &o);
}

/* A subscriber whose default alias is 50/50 over two versions, the queue of version 1 (the
 * canary: 2 is the current one) full. The queue an event's delivery waits in is its routed
 * version's, so that is the one checked: of two events in a row (any two routes of a 50/50
 * alias give each version one), the one routed to version 1 is refused, not queued past
 * queue_max there, and the other is delivered. */
static void test_routed_version_queue_full(void **state)
{
    struct fixture *f = *state;
    struct ig_error err = {};
    assert_int_equal(registry_new(f->loop, f->store, f->dir, &f->reg, &err), 0);
    dispatch_attach_registry(f->d, f->reg);
    push_split(f, 1);
    push_split(f, 2);
    const struct registry_function *rf = registry_lookup(f->reg, "split");
    for (uint32_t v = 1; v <= 2; v++) /* no container: deliveries wait in the queue */
        ((struct manifest *)registry_version(rf, v)->manifest)->max_scale = 0;
    static const uint32_t versions[] = {1, 2}, weights[] = {50, 50};
    struct report set = {.loop = f->loop};
    assert_int_equal(registry_set_alias(f->reg, "split", "default", versions, weights, 2,
                                        on_registry_done, &set, &err),
                     0);
    wait_done(f, &set);

    /* Version 1's queue takes QUEUE_MAX: fill it. */
    struct fn_state *split = dispatch_function(f->d, "split");
    assert_non_null(split);
    for (int i = 0; i < QUEUE_MAX; i++) {
        struct dispatch_route route;
        char id[INV_ID_LEN + 1];
        assert_int_equal(dispatch_route(f->d, split, "1", true, &route, &err), 0);
        assert_true(dispatch_queue_takes(f->d, route.fn, 1));
        assert_int_equal(dispatch_submit_async(f->d, &route, "{}", 2, "application/json", NULL,
                                               NULL, id, NULL, NULL),
                         0);
    }

    static const char *const ids[][1] = {{"split-1"}, {"split-2"}};
    unsigned refused = 0, delivered = 0;
    for (size_t k = 0; k < ARRAY_SIZE(ids); k++) {
        _cleanup_ce_events_ struct ce_events *events = make_events(ids[k], 1);
        struct report o = {};
        accept_events(f, events, &o);
        wait_done(f, &o);
        if (o.result == -ENOBUFS) {
            refused++;
            assert_non_null(strstr(o.err.message, "the queue of subscriber 'split' is full (2 "
                                                  "invocations waiting, 1 more"));
        } else {
            assert_int_equal(o.result, 0);
            assert_int_equal(o.ndeliveries[0], 3); /* orders, shipping and split */
            delivered++;
        }
    }
    assert_int_equal(refused, 1);
    assert_int_equal(delivered, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivered_to_every_subscriber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_is_a_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_while_stored_is_in_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_past_queue_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routed_version_queue_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
