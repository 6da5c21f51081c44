#include "events/events.h"

#include <string.h>
#include <strings.h>

#include "base/cloudevents.h"
#include "base/cron.h"
#include "events/dedupe.h"
#include "functions/bundle.h"
#include "base/log.h"
#include "records/db.h"
#include "records/events_store.h"
#include "records/invocation.h"
#include "records/telemetry.h"

/* The de-duplication window holds at most this many (source, id) pairs (24 bytes each); past it
 * the oldest go first, before their window ends (dedupe.h). */
#define DEDUPE_CAPACITY  (1u << 18)
#define MEDIA_CLOUDEVENT "application/cloudevents+json"
/* A delivery's idempotency key on a shared store: this, then the sha256 of the event's (source,
 * id). Under /ignis/, which clients may not use. */
#define EVENTS_DELIVERY_KEY "/ignis/events/"

/* One delivery submitted, as its callback sees it: event i's delivery k. dup: its idempotency key
 * was taken, by the same event accepted on another host first. */
/* See answer_stalled_acceptances. */
#define ACCEPT_AWAY_US (1000 * 1000)

struct delivery_ref {
    struct acceptance *a;
    size_t i, k;
    bool dup;
};

/* The events of one events_accept (in order) or one emitted event, from their checks until every
 * delivery is durable. Linked in events->inflight, so that a repeat arriving meanwhile is taken
 * for a duplicate. */
struct acceptance {
    struct event_router *ev;
    events_accept_fn done; /* NULL for an emitted event */
    void *userdata;
    /* The sender's token: an invoker reads the results of the deliveries its events made
     * (docs/security.md). "": an emitted event, or a sender without a token. */
    char token_id[17];
    enum telemetry_event_mode mode;
    bool batch;
    struct event_accepted *v;
    size_t n;
    size_t pending;      /* submissions not yet durable */
    uint64_t started_us; /* monotonic */
    bool answered;       /* done ran before the end: the store became unreachable meanwhile */
    bool failed;
    char failure[256];
    /* Every delivery's route (route_all), in the order deliver submits them: each non-duplicate
     * event's subscribers in dispatch_functions' order. Valid until the loop turns. */
    struct dispatch_route *routes;
    size_t nroutes, next_route;
    struct delivery_ref *refs; /* one per route, in the same order */
    struct acceptance *next;
};

/* A function's schedule and its last run (unix seconds: the slot that ran). */
struct sched {
    char function[MANIFEST_NAME_MAX + 1];
    char *text;
    struct cron_schedule cs;
    int64_t last_run;
    bool seen; /* the function still has this schedule (a tick's mark) */
    struct sched *next;
};

struct event_router {
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct dispatch *d;
    struct events_options opts;
    struct ce_dedupe *dedupe;
    struct acceptance *inflight;
    struct sched *scheds;
    struct loop_timer *sched_timer;
    /* Wall clock: slots before it were missed while no host ticked (ignisd was down, or the
     * host that ticked died before this one took the lock). */
    int64_t started_s;
    /* On a shared store one host ticks, the one holding this lock (NULL: another does, or this
     * store is SQLite's, where this host always ticks); that it could not be taken is said
     * once. */
    struct inv_host_lock *sched_lock;
    bool sched_lock_said;
};

/* ---- acceptances ---- */

static void acceptance_free(struct acceptance *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].source);
        free(a->v[i].id);
        free(a->v[i].type);
        free(a->v[i].payload);
        free(a->v[i].deliveries);
    }
    free(a->v);
    free(a->routes);
    free(a->refs);
    free(a);
}

static void unlink_acceptance(struct acceptance *a)
{
    for (struct acceptance **p = &a->ev->inflight; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            return;
        }
}

enum seen {
    SEEN_NOT,
    SEEN_DURABLE,  /* stored before, or earlier in the same request (whose fate it shares) */
    SEEN_INFLIGHT, /* in another request still being stored, which may yet fail */
};

static enum seen seen_before(struct event_router *ev, const struct acceptance *self, size_t upto,
                             const char *source, const char *id)
{
    if (ce_dedupe_contains(ev->dedupe, source, id, wall_usec()))
        return SEEN_DURABLE;
    for (size_t i = 0; i < upto; i++)
        if (!self->v[i].duplicate && streq(self->v[i].source, source) && streq(self->v[i].id, id))
            return SEEN_DURABLE;
    for (const struct acceptance *a = ev->inflight; a; a = a->next)
        for (size_t i = 0; i < a->n; i++)
            if (!a->v[i].duplicate && streq(a->v[i].source, source) && streq(a->v[i].id, id))
                return SEEN_INFLIGHT;
    return SEEN_NOT;
}

static void on_forgotten(struct loop *l, int result, const char *message, void *userdata)
{
    if (result < 0)
        log_warn("removing an event id failed", "error=\"%s\"", message);
}

/* Once every delivery of an acceptance is durable, its events' ids are remembered; when one
 * failed, the rows remember() queued are taken back, so the sender's retry is not taken for a
 * duplicate. */
static void settle_ids(struct acceptance *a)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].duplicate)
            continue;
        if (!a->failed) {
            ce_dedupe_insert(a->ev->dedupe, a->v[i].source, a->v[i].id, wall_usec());
            continue;
        }
        events_store_forget_id(a->ev->journal, a->v[i].source, a->v[i].id, on_forgotten, NULL);
    }
}

/* An event every delivery of which met its key (the same event, accepted on another host first:
 * docs/architecture.md "Events across hosts") was a duplicate: the reply says so, and its
 * deliveries are the first acceptance's. */
static void settle_cluster_duplicates(struct acceptance *a)
{
    for (size_t i = 0; i < a->n; i++) {
        size_t dups = 0;
        for (size_t k = 0; k < a->next_route; k++)
            dups += a->refs[k].i == i && a->refs[k].dup;
        if (a->v[i].ndeliveries > 0 && dups == a->v[i].ndeliveries)
            a->v[i].duplicate = true;
    }
}

static void finish(struct acceptance *a)
{
    unlink_acceptance(a);
    settle_ids(a);
    settle_cluster_duplicates(a);
    for (size_t i = 0; i < a->n && !a->failed; i++)
        telemetry_event_accepted(a->mode, a->v[i].duplicate, a->v[i].ndeliveries);
    if (a->done && a->failed) {
        struct ig_error err = {};
        ig_error_set_reason(&err, EAGAIN, "store_unavailable", "the event could not be stored: %s",
                            a->failure);
        a->done(-EAGAIN, &err, NULL, 0, a->userdata);
    } else if (a->done)
        a->done(0, NULL, a->v, a->n, a->userdata);
    else if (a->failed && !a->answered)
        log_error("an emitted event could not be stored", "error=\"%s\"", a->failure);
    acceptance_free(a);
}

static void on_delivery_durable(int result, const char *message, const char *id, void *userdata)
{
    struct acceptance *a = userdata;
    if (result < 0 && !a->failed) {
        a->failed = true;
        snprintf(a->failure, sizeof(a->failure), "%s", message);
    }
    if (--a->pending == 0)
        finish(a);
}

static void on_id_stored(struct loop *l, int result, const char *message, void *userdata)
{
    on_delivery_durable(result, message, NULL, userdata);
}

static void on_delivery_submitted(int result, const char *message, const char *id, void *userdata)
{
    struct delivery_ref *ref = userdata;
    if (result == -EEXIST) {
        /* Delivered already, by the host that accepted the event first: that is its delivery. */
        struct event_delivery *dl = &ref->a->v[ref->i].deliveries[ref->k];
        snprintf(dl->id, sizeof(dl->id), "%s", id);
        ref->dup = true;
        result = 0;
    }
    on_delivery_durable(result, message, id, ref->a);
}

/* Records (source, id) in the event_ids table, after the event's deliveries in the journal's
 * order, so it is never durable before them: a crash after the deliveries were committed but
 * before the id was makes the sender's retry deliver again (at least once), and one after both
 * makes it a duplicate. The reply waits for it, so a 202 means both are on disk. */
static int remember(struct acceptance *a, size_t i)
{
    int r = events_store_remember_id(a->ev->journal, a->v[i].source, a->v[i].id,
                                     (int64_t)wall_usec(), on_id_stored, a);
    if (r == 0)
        a->pending++;
    return r;
}

/* Takes e's attributes and rendering into slot i of a. Returns 0, -ENOMEM, or -EFBIG when the
 * rendered event is over the payload a function may receive. */
static int accept_event(struct acceptance *a, size_t i, const struct ce_event *e)
{
    struct event_accepted *x = &a->v[i];
    x->source = strdup(e->source);
    x->id = strdup(e->id);
    x->type = strdup(e->type);
    if (!x->source || !x->id || !x->type || ce_event_to_json(e, &x->payload, &x->payload_len) < 0)
        return -ENOMEM;
    if (x->payload_len > PROTO_DEFAULT_MAX_BODY)
        return -EFBIG;
    return 0;
}

static bool subscribed(const struct fn_state *fn, const struct ce_event *e)
{
    if (dispatch_fn_removing(fn))
        return false;
    const struct manifest *m = dispatch_fn_manifest(fn);
    for (size_t i = 0; i < m->n_events; i++)
        if (ce_subscription_matches(m->events[i].type, m->events[i].source, e))
            return true;
    return false;
}

/* Submits slot i's deliveries: one async invocation of every subscribed function. */
static int deliver(struct acceptance *a, size_t i, const struct ce_event *e)
{
    struct event_accepted *x = &a->v[i];
    struct dispatch *d = a->ev->d;
    size_t n = 0;
    for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn))
        n += subscribed(fn, e);
    if (n == 0)
        return 0;
    x->deliveries = calloc(n, sizeof(*x->deliveries));
    if (!x->deliveries)
        return -ENOMEM;
    /* Hosts sharing a store each keep their own window of ids: the delivery's idempotency key,
     * the event's (source, id), makes it once per subscriber whichever host accepts the event,
     * and however many do. On one host the window suffices (and the key would outlive it). */
    char key[sizeof(EVENTS_DELIVERY_KEY) + BUNDLE_DIGEST_LEN];
    if (dispatch_get_options(d)->shared_queue) {
        _cleanup_free_ char *pair = NULL;
        int len = asprintf(&pair, "%zu:%s%s", strlen(e->source), e->source, e->id);
        if (len < 0)
            return -ENOMEM;
        /* Hashed: a source and an id may be 4 KiB each, past what an index entry holds. */
        memcpy(key, EVENTS_DELIVERY_KEY, sizeof(EVENTS_DELIVERY_KEY) - 1);
        bundle_digest(pair, (size_t)len, key + sizeof(EVENTS_DELIVERY_KEY) - 1);
    }
    for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn)) {
        if (!subscribed(fn, e))
            continue;
        struct event_delivery *dl = &x->deliveries[x->ndeliveries];
        struct delivery_ref *ref = &a->refs[a->next_route];
        const struct dispatch_route *route = &a->routes[a->next_route++];
        *ref = (struct delivery_ref){.a = a, .i = i, .k = x->ndeliveries};
        if (dispatch_submit_async(d, route, x->payload, x->payload_len, MEDIA_CLOUDEVENT,
                                  dispatch_get_options(d)->shared_queue ? key : NULL,
                                  a->token_id[0] ? a->token_id : NULL, dl->id,
                                  on_delivery_submitted, ref) < 0)
            return -ENOMEM;
        snprintf(dl->function, sizeof(dl->function), "%s", dispatch_fn_name(fn));
        x->ndeliveries++;
        a->pending++;
    }
    return 0;
}

static struct acceptance *acceptance_new(struct event_router *ev, size_t n)
{
    struct acceptance *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->ev = ev;
    a->n = n;
    a->started_us = now_usec();
    a->v = calloc(n ? n : 1, sizeof(*a->v));
    if (!a->v) {
        free(a);
        return NULL;
    }
    return a;
}

/* Routes every delivery of a's events (events[i] unless a duplicate, to each subscriber)
 * through the subscriber's default alias, its canary too, into a->routes; then checks that each
 * routed state's queue takes all the deliveries routed to it: the queue an invocation waits in
 * is its version's, which may not be the function's own. Returns 0; -ENOBUFS with *ret_full, the
 * first full state, and *ret_n, what it was to take; -ENOMEM; or a route's failure with err (a
 * subscriber's bundle still being fetched from a shared store: -EAGAIN "bundle_unavailable"). A
 * refusal still took its picks of the alias's round-robin, as an invocation refused after its
 * route does. */
static int route_all(struct acceptance *a, struct ce_event *const *events,
                     struct fn_state **ret_full, size_t *ret_n, struct ig_error *err)
{
    struct dispatch *d = a->ev->d;
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn))
            n += !a->v[i].duplicate && subscribed(fn, events[i]);
    a->routes = calloc(n ? n : 1, sizeof(*a->routes));
    a->refs = calloc(n ? n : 1, sizeof(*a->refs));
    if (!a->routes || !a->refs)
        return -ENOMEM;
    for (size_t i = 0; i < a->n; i++)
        for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn)) {
            int r;
            if (!a->v[i].duplicate && subscribed(fn, events[i]) &&
                (r = dispatch_route(d, fn, NULL, true, &a->routes[a->nroutes++], err)) < 0)
                return r;
        }
    for (size_t k = 0; k < a->nroutes; k++) {
        struct fn_state *to = a->routes[k].fn;
        size_t first = 0, count = 0;
        while (a->routes[first].fn != to)
            first++;
        if (first < k)
            continue; /* checked at its first route */
        for (size_t j = k; j < a->nroutes; j++)
            count += a->routes[j].fn == to;
        if (!dispatch_queue_takes(d, to, count)) {
            *ret_full = to;
            *ret_n = count;
            return -ENOBUFS;
        }
    }
    return 0;
}

/* Submits every delivery of a checked acceptance and the record of its ids. Returns 0 (finish
 * runs once they are durable) or -ENOMEM after submitting some: those run, and the acceptance is
 * finished as failed, so the sender's retry delivers again (at least once). */
static int submit_all(struct acceptance *a, struct ce_event *const *events)
{
    int r = 0;
    a->next = a->ev->inflight;
    a->ev->inflight = a;
    a->pending++; /* held until every submission is made */
    for (size_t i = 0; i < a->n && r == 0; i++) {
        if (!a->v[i].duplicate && (r = deliver(a, i, events[i])) == 0)
            r = remember(a, i);
        free(a->v[i].payload);
        a->v[i].payload = NULL;
    }
    if (r < 0) {
        a->failed = true;
        snprintf(a->failure, sizeof(a->failure), "out of memory");
    }
    on_delivery_durable(0, NULL, NULL, a);
    return r;
}

/* ---- accepting events ---- */

/* Ends an acceptance refused before any delivery: done learns why, and nothing stays. */
static void refuse(struct acceptance *a, int r, const struct ig_error *err)
{
    events_accept_fn done = a->done;
    void *userdata = a->userdata;
    acceptance_free(a);
    done(r, err, NULL, 0, userdata);
}

int events_accepting(const struct event_router *ev, struct ig_error *err)
{
    if (dispatch_stopping(ev->d))
        return ig_error_set_reason(err, ESHUTDOWN, "shutting_down", "ignisd is shutting down");
    return 0;
}

void events_accept(struct event_router *ev, const struct ce_events *events, const char *token_id,
                   events_accept_fn done, void *userdata)
{
    struct ig_error err = {};
    int r;

    if ((r = events_accepting(ev, &err)) < 0) {
        done(r, &err, NULL, 0, userdata);
        return;
    }
    struct acceptance *a = acceptance_new(ev, events->n);
    if (!a) {
        ig_error_set(&err, ENOMEM, "out of memory");
        done(-ENOMEM, &err, NULL, 0, userdata);
        return;
    }
    a->done = done;
    a->userdata = userdata;
    if (token_id)
        snprintf(a->token_id, sizeof(a->token_id), "%s", token_id);
    a->batch = events->mode == CE_MODE_BATCH;
    a->mode = a->batch                             ? TELEMETRY_EVENT_BATCH
              : events->mode == CE_MODE_STRUCTURED ? TELEMETRY_EVENT_STRUCTURED
                                                   : TELEMETRY_EVENT_BINARY;
    /* Every check before any delivery: a refused request delivers nothing. */
    for (size_t i = 0; i < events->n; i++) {
        const struct ce_event *e = events->v[i];
        char at[32] = "";
        if (a->batch)
            snprintf(at, sizeof(at), "event %zu: ", i);
        r = accept_event(a, i, e);
        if (r == -EFBIG) {
            ig_error_set(&err, EFBIG,
                         "%sthe event in the JSON format is %zu bytes, over the %u bytes a "
                         "function may receive",
                         at, a->v[i].payload_len, PROTO_DEFAULT_MAX_BODY);
            refuse(a, r, &err);
            return;
        }
        if (r < 0) {
            ig_error_set(&err, ENOMEM, "out of memory");
            refuse(a, r, &err);
            return;
        }
        enum seen seen = seen_before(ev, a, i, e->source, e->id);
        if (seen == SEEN_INFLIGHT) {
            /* Not a duplicate yet: the other request may fail, and then this one must deliver
             * it. The sender retries once that one has settled. */
            ig_error_set_reason(&err, EINPROGRESS, "in_progress",
                                "%sevent (%s, %s) is being stored by another request; retry", at,
                                e->source, e->id);
            refuse(a, -EINPROGRESS, &err);
            return;
        }
        a->v[i].duplicate = seen == SEEN_DURABLE;
    }
    /* Each subscriber's queue takes all the request gives it, or nothing is delivered. */
    struct fn_state *full;
    size_t n;
    r = route_all(a, events->v, &full, &n, &err);
    if (r == -ENOBUFS) {
        ig_error_set(&err, ENOBUFS,
                     "the queue of subscriber '%s' is full (%zu invocations waiting, %zu more "
                     "from this request, at most %zu); nothing was delivered",
                     dispatch_fn_name(full), dispatch_fn_waiting(full), n,
                     dispatch_get_options(ev->d)->queue_max);
        refuse(a, r, &err);
        return;
    }
    if (r < 0) {
        if (!err.code)
            ig_error_set(&err, ENOMEM, "out of memory");
        refuse(a, r, &err);
        return;
    }
    submit_all(a, events->v);
}

/* ---- dead letters ---- */

static void on_dead_letter_stored(struct loop *l, int result, const char *message, void *userdata)
{
    if (result < 0)
        log_error("storing a dead-lettered event failed", "error=\"%s\"", message);
}

/* A copy of s fit for a TEXT column and a JSON string: bytes outside printable ASCII become '?'
 * (an emitted type may be anything the function sent). */
static char *printable(const char *s)
{
    char *c = strdup(s ? s : "");
    for (char *p = c; p && *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    return c;
}

static void dead_letter(struct event_router *ev, const char *function, const char *invocation,
                        const struct ce_event *e, enum telemetry_dead_letter_reason class,
                        const char *reason)
{
    telemetry_event_dead_letter(class);
    _cleanup_free_ char *json = NULL, *type = printable(e->type);
    if (ce_event_to_json(e, &json, NULL) < 0 || !type)
        return;
    log_warn("event dead-lettered", "function=%s type=\"%s\" id=%s reason=\"%s\"",
             function ? function : "", type, e->id, reason);
    const struct events_dead_letter dl = {
        .at_us = (int64_t)wall_usec(),
        .function = function,
        .invocation = invocation,
        .type = type,
        .source = e->source,
        .event_id = e->id,
        .reason = reason,
        .event = json,
    };
    events_store_append_dead_letter(ev->journal, &dl, on_dead_letter_stored, NULL);
}

/* ---- emitted events ---- */

/* The hop count of the event an invocation is running for: its ignishops extension when its
 * payload is a CloudEvent (a delivery), else 0 (a direct invoke, a schedule's first link). */
static long long parent_hops(const struct inv *inv)
{
    static const char media[] = MEDIA_CLOUDEVENT;
    size_t len;
    const char *ct, *body = dispatch_inv_payload(inv, &len, &ct);
    if (!ct || strncasecmp(ct, media, sizeof(media) - 1) != 0 ||
        (ct[sizeof(media) - 1] && ct[sizeof(media) - 1] != ';' && ct[sizeof(media) - 1] != ' '))
        return 0;
    _cleanup_ce_event_ struct ce_event *e = NULL;
    struct ig_error err = {};
    if (ce_parse_json(body, len, &e, &err) < 0)
        return 0;
    const struct ce_extension *x = ce_event_extension(e, EVENTS_HOPS_EXTENSION);
    if (!x)
        return 0;
    char *end;
    long long h = strtoll(x->value, &end, 10);
    return *end || h < 0 ? 0 : h;
}

void events_emitted(struct event_router *ev, struct fn_state *fn, struct inv *inv,
                    const struct proto_msg *m)
{
    _cleanup_ce_event_ struct ce_event *e = calloc(1, sizeof(*e));
    char source[sizeof(EVENTS_FUNCTION_SOURCE) + MANIFEST_NAME_MAX], id[INV_ID_LEN + 16], time[32],
        hops[24];
    struct ig_error err = {};

    const char *fn_name = dispatch_fn_name(fn);
    telemetry_event_emitted(fn_name);
    if (!e)
        return;
    snprintf(source, sizeof(source), EVENTS_FUNCTION_SOURCE "%s", fn_name);
    /* The id is the invocation's and the event's place among what this attempt emitted, so a
     * retried attempt that emits the same events again emits the same ids, which the
     * de-duplication drops: a failed attempt's events stand (at least once), and are not
     * delivered twice. */
    if (inv)
        snprintf(id, sizeof(id), "%s-%u", dispatch_inv_id(inv), dispatch_inv_count_emitted(inv));
    else
        inv_id_new(id);
    ce_time_format((int64_t)wall_usec(), time);
    long long h = 0;
    if (inv && !dispatch_inv_parent_hops(inv, &h)) {
        h = parent_hops(inv);
        dispatch_inv_set_parent_hops(inv, h);
    }
    h++;
    snprintf(hops, sizeof(hops), "%lld", h);
    e->specversion = strdup("1.0");
    e->id = strdup(id);
    e->source = strdup(source);
    e->type = proto_strdup(m->event_type);
    e->time = strdup(time);
    e->datacontenttype = m->content_type.len ? proto_strdup(m->content_type) : NULL;
    if (!e->specversion || !e->id || !e->source || !e->type || !e->time ||
        (m->content_type.len && !e->datacontenttype))
        return;

    const char *inv_id = inv ? dispatch_inv_id(inv) : NULL;
    char reason[600];
    if (!inv) {
        dead_letter(ev, fn_name, NULL, e, TELEMETRY_DEAD_NO_INVOCATION,
                    "emitted while the worker ran no such invocation");
        return;
    }
    /* The data first, so that a dead letter keeps it. */
    int bad = ce_event_set_data(e, m->body.data, m->body.len, &err);
    if (bad == -ENOMEM)
        return;
    if (h > INT32_MAX || ce_event_set_extension(e, EVENTS_HOPS_EXTENSION, hops, CE_EXT_INTEGER,
                                                bad ? NULL : &err) < 0) {
        dead_letter(ev, fn_name, inv_id, e, TELEMETRY_DEAD_INVALID,
                    "the hop count cannot be stamped");
        return;
    }
    if (h > ev->opts.hop_limit) {
        snprintf(reason, sizeof(reason),
                 "hop limit: the event would be hop %lld of a chain, past the limit of %u "
                 "(--event-hop-limit)",
                 h, ev->opts.hop_limit);
        dead_letter(ev, fn_name, inv_id, e, TELEMETRY_DEAD_HOP_LIMIT, reason);
        return;
    }
    if (bad < 0 || ce_event_validate(e, &err) < 0) {
        snprintf(reason, sizeof(reason), "invalid event: %s", err.message);
        dead_letter(ev, fn_name, inv_id, e, TELEMETRY_DEAD_INVALID, reason);
        return;
    }

    struct acceptance *a = acceptance_new(ev, 1);
    if (!a)
        return;
    a->mode = TELEMETRY_EVENT_EMITTED;
    int r = accept_event(a, 0, e);
    if (r == -EFBIG) {
        snprintf(reason, sizeof(reason),
                 "too large: the event in the JSON format is %zu bytes, over the %u bytes a "
                 "function may receive",
                 a->v[0].payload_len, PROTO_DEFAULT_MAX_BODY);
        dead_letter(ev, fn_name, inv_id, e, TELEMETRY_DEAD_TOO_LARGE, reason);
    }
    if (r < 0) {
        acceptance_free(a);
        return;
    }
    /* One in flight (a retried attempt racing its first) is delivered again: at least once. */
    if (seen_before(ev, a, 0, e->source, e->id) == SEEN_DURABLE) {
        log_debug("emitted event is a duplicate (a retried attempt emitted it again)",
                  "function=%s id=%s", fn_name, e->id);
        telemetry_event_accepted(TELEMETRY_EVENT_EMITTED, true, 0);
        acceptance_free(a);
        return;
    }
    struct ce_event *const one[] = {e};
    struct fn_state *full;
    size_t n;
    struct ig_error rerr = {};
    r = route_all(a, one, &full, &n, &rerr);
    if (r == -ENOBUFS) {
        snprintf(reason, sizeof(reason),
                 "queue full: subscriber '%s' has %zu invocations waiting (--queue-max %zu)",
                 dispatch_fn_name(full), dispatch_fn_waiting(full),
                 dispatch_get_options(ev->d)->queue_max);
        dead_letter(ev, fn_name, inv_id, e, TELEMETRY_DEAD_QUEUE_FULL, reason);
    } else if (r < 0 && rerr.code)
        log_error("an emitted event could not be delivered", "function=%s id=%s error=\"%s\"",
                  fn_name, e->id, rerr.message);
    if (r < 0) {
        acceptance_free(a);
        return;
    }
    submit_all(a, one);
}

/* ---- schedules ---- */

static void on_schedule_stored(struct loop *l, int result, const char *message, void *userdata)
{
    if (result < 0)
        log_warn("recording a schedule's last run failed", "error=\"%s\"", message);
}

static void sched_store(struct event_router *ev, const struct sched *s)
{
    events_store_save_schedule(ev->journal, s->function, s->text, s->last_run, on_schedule_stored,
                               NULL);
}

static void sched_free(struct sched *s)
{
    if (!s)
        return;
    free(s->text);
    free(s);
}

static struct sched *sched_add(struct event_router *ev, const char *function, const char *text,
                               int64_t last_run)
{
    struct sched *s = calloc(1, sizeof(*s));
    struct ig_error err = {};
    if (!s)
        return NULL;
    snprintf(s->function, sizeof(s->function), "%s", function);
    s->text = strdup(text);
    if (!s->text || cron_parse(text, &s->cs, &err) < 0) {
        sched_free(s);
        return NULL;
    }
    s->last_run = last_run;
    s->next = ev->scheds;
    ev->scheds = s;
    return s;
}

static void on_schedule_submitted(int result, const char *message, const char *id, void *userdata)
{
    char *function = userdata;
    if (result < 0 && result != -EEXIST) /* -EEXIST: the slot ran already (its key) */
        log_error("a schedule's run could not be stored", "function=%s error=\"%s\"", function,
                  message);
    free(function);
}

/* One run of fn's schedule for slot: a dev.ignis.schedule event to fn alone. Its invocation
 * carries the idempotency key SOURCE@TIME: a make-up run whose slot already ran (ignisd died
 * after the invocation was committed but before the last run was) finds it and runs nothing.
 * 0 when the slot is done with (run, or skipped and said why); -EAGAIN when it is to be tried
 * again at the next tick. */
static int run_schedule(struct event_router *ev, struct fn_state *fn, const struct sched *s,
                        int64_t slot)
{
    char source[sizeof(EVENTS_SCHEDULE_SOURCE) + MANIFEST_NAME_MAX], time[32];
    char key[sizeof(source) + sizeof(time)], existing[INV_ID_LEN + 1];
    snprintf(source, sizeof(source), EVENTS_SCHEDULE_SOURCE "%s", dispatch_fn_name(fn));
    ce_time_format(slot * 1000000, time);
    snprintf(key, sizeof(key), "%s@%s", source, time);
    bool makeup = slot < ev->started_s;
    if (makeup && inv_store_find_idempotent(ev->store, dispatch_fn_name(fn), key, slot * 1000000,
                                            existing) == 0) {
        log_info("schedule run already made before the restart",
                 "function=%s slot=%s invocation=%s", dispatch_fn_name(fn), time, existing);
        return 0;
    }
    /* A schedule's run goes through the default alias (its route fails for want of memory, or,
     * on a queue of this host's own, while this host fetches the version's bundle: then the slot
     * is tried again at the next tick; a shared queue takes it whatever this host's cache holds),
     * and waits in the queue of the version it was routed to: that one must take it. */
    struct dispatch_route route;
    struct ig_error err = {};
    int r = dispatch_route(ev->d, fn, NULL, true, &route, &err);
    if (r == -EAGAIN) {
        log_warn("a schedule's run waits for its version: tried again at the next tick",
                 "function=%s slot=%s error=\"%s\"", dispatch_fn_name(fn), time, err.message);
        return r;
    }
    if (r < 0) {
        log_error("a schedule's run could not be submitted", "function=%s error=\"%s\"",
                  dispatch_fn_name(fn), err.message);
        return 0;
    }
    if (!dispatch_queue_takes(ev->d, route.fn, 1)) {
        log_warn("schedule run skipped: the queue of the version it was routed to is full",
                 "function=%s version=%lld slot=%s", dispatch_fn_name(fn), (long long)route.version,
                 time);
        return 0;
    }
    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "schedule", s->text);
    cJSON_AddStringToObject(data, "scheduled_time", time);
    cJSON_AddBoolToObject(data, "makeup", makeup);
    _cleanup_free_ char *text = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    struct ce_event e = {
        .id = time,
        .source = source,
        .specversion = (char *)"1.0",
        .type = (char *)EVENTS_SCHEDULE_TYPE,
        .datacontenttype = (char *)"application/json",
        .time = time,
        .data_kind = CE_DATA_JSON,
        .data = text,
        .data_len = text ? strlen(text) : 0,
    };
    _cleanup_free_ char *payload = NULL;
    size_t len;
    char id[INV_ID_LEN + 1], *userdata = strdup(dispatch_fn_name(fn));
    if (!text || !userdata || ce_event_to_json(&e, &payload, &len) < 0 ||
        dispatch_submit_async(ev->d, &route, payload, len, MEDIA_CLOUDEVENT, key, NULL, id,
                              on_schedule_submitted, userdata) < 0) {
        free(userdata);
        log_error("a schedule's run could not be submitted", "function=%s error=\"out of memory\"",
                  dispatch_fn_name(fn));
        return 0;
    }
    telemetry_schedule_run(dispatch_fn_name(fn), makeup);
    log_debug("schedule run", "function=%s slot=%s invocation=%s makeup=%s", dispatch_fn_name(fn),
              time, id, makeup ? "true" : "false");
    return 0;
}

static struct sched *sched_find(struct event_router *ev, const char *function)
{
    for (struct sched *s = ev->scheds; s; s = s->next)
        if (streq(s->function, function))
            return s;
    return NULL;
}

/* Every function's schedule, checked each second: a function pushed with a schedule starts at
 * the next slot after it is seen; one whose slots passed while ignisd was down runs once for the
 * latest (cron_due); one that lost its schedule, or was deleted, forgets it. */
static void check_schedules(struct event_router *ev)
{
    int64_t now = (int64_t)(wall_usec() / 1000000);
    for (struct sched *s = ev->scheds; s; s = s->next)
        s->seen = false;
    for (struct fn_state *fn = dispatch_functions(ev->d); fn; fn = dispatch_next(fn)) {
        const char *text = dispatch_fn_manifest(fn)->schedule;
        if (!text || dispatch_fn_removing(fn))
            continue;
        struct sched *s = sched_find(ev, dispatch_fn_name(fn));
        if (s && !streq(s->text, text)) {
            /* A new schedule: it starts now, not at slots the old one would have had. */
            char *copy = strdup(text);
            struct ig_error err = {};
            if (!copy || cron_parse(text, &s->cs, &err) < 0) {
                free(copy);
                continue;
            }
            free(s->text);
            s->text = copy;
            s->last_run = now;
            sched_store(ev, s);
        }
        if (!s) {
            if (!(s = sched_add(ev, dispatch_fn_name(fn), text, now)))
                continue;
            sched_store(ev, s);
        }
        s->seen = true;
        int64_t slot;
        if (cron_due(&s->cs, s->last_run, now, ev->opts.tz_offset_s, &slot) != 1)
            continue;
        /* The delivery goes to the journal before the last run, so a crash between their
         * commits leaves the slot due at the next start, where run_schedule finds its key. */
        if (run_schedule(ev, fn, s, slot) == -EAGAIN)
            continue;
        s->last_run = slot;
        sched_store(ev, s);
    }
    for (struct sched **p = &ev->scheds; *p;) {
        struct sched *s = *p;
        if (s->seen) {
            p = &s->next;
            continue;
        }
        *p = s->next;
        events_store_delete_schedule(ev->journal, s->function, on_schedule_stored, NULL);
        sched_free(s);
    }
}

static void load_schedule(void *userdata, const char *function, const char *schedule,
                          int64_t last_run);

/* Whether this host ticks the schedules now: always on SQLite (one host); on a shared store
 * while it holds the schedule lock, which it tries to take each second. The slot's idempotency
 * key makes a slot run once whoever ticks (two hosts ticking at once, for a moment, run nothing
 * twice); the lock saves every host the work. A host that takes the lock reads the last runs
 * the previous holder stored and makes up what it missed meanwhile (the make-up rule: one run,
 * for the latest slot). */
static bool ticking(struct event_router *ev)
{
    if (!dispatch_get_options(ev->d)->shared_queue || ev->sched_lock)
        return true;
    struct ig_error err = {};
    int r = inv_schedule_lock_take(ev->store, &ev->sched_lock, &err);
    if (r < 0 && !ev->sched_lock_said)
        log_warn("taking the schedule tick's lock failed", "error=\"%s\"", err.message);
    ev->sched_lock_said = r < 0;
    if (r <= 0)
        return false;
    while (ev->scheds) {
        struct sched *s = ev->scheds;
        ev->scheds = s->next;
        sched_free(s);
    }
    if (events_store_load_schedules(ev->store, load_schedule, ev, &err) < 0) {
        log_warn("reading the schedules' last runs failed: trying again in a second",
                 "error=\"%s\"", err.message);
        inv_host_lock_free(TAKE_PTR(ev->sched_lock));
        return false;
    }
    ev->started_s = (int64_t)(wall_usec() / 1000000);
    log_info("this host ticks the schedules (it holds their lock)");
    return true;
}

/* While the store is unreachable, an acceptance whose rows have waited ACCEPT_AWAY_US for it is
 * answered -ENOTCONN: a row of it was cut on its way (or waits behind one that was), and whether
 * the store got it is not known until the store is back (records/journal.c writes it again
 * then). The acceptance ends then, unanswered. */
static void answer_stalled_acceptances(struct event_router *ev)
{
    struct db_reachability reach;
    if (!ev->inflight)
        return;
    db_get_reachability(&reach);
    if (reach.up)
        return;
    uint64_t now = now_usec();
    for (struct acceptance *a = ev->inflight; a; a = a->next) {
        if (!a->done || now < a->started_us + ACCEPT_AWAY_US)
            continue;
        struct ig_error err = {};
        ig_error_set_reason(&err, ENOTCONN, "store_unavailable",
                            "the store became unreachable while the events were being stored: "
                            "they are stored and delivered once it is back, unless ignisd stops "
                            "before (sending the same events again is safe then: a repeated "
                            "(source, id) is a duplicate)");
        a->done(-ENOTCONN, &err, NULL, 0, a->userdata);
        a->done = NULL;
        a->answered = true;
    }
}

static void on_schedule_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct event_router *ev = userdata;
    ev->sched_timer = NULL;
    answer_stalled_acceptances(ev);
    if (!dispatch_stopping(ev->d) && ticking(ev))
        check_schedules(ev);
    /* Just past the next whole second of the wall clock, where cron slots fall. */
    uint64_t wall = wall_usec();
    loop_add_timer(l, now_usec() + (1000000 - wall % 1000000) + 2000, on_schedule_tick, ev,
                   &ev->sched_timer);
}

/* ---- retention ---- */

void events_purge(void *userdata, int64_t now)
{
    struct event_router *ev = userdata;
    events_store_purge(ev->journal, now - (int64_t)ev->opts.dedupe_window_us,
                       now - EVENTS_DEAD_LETTER_RETENTION_US);
}

/* ---- lifecycle ---- */

struct load {
    struct event_router *ev;
    size_t n;
};

static void load_id(void *userdata, const char *source, const char *id, int64_t accepted_us)
{
    struct load *ld = userdata;
    ce_dedupe_insert(ld->ev->dedupe, source, id, (uint64_t)accepted_us);
    ld->n++;
}

static void load_schedule(void *userdata, const char *function, const char *schedule,
                          int64_t last_run)
{
    sched_add(userdata, function, schedule, last_run);
}

/* The ids still in the de-duplication window (the newest the memory holds, DEDUPE_CAPACITY) and
 * the schedules' last runs. */
static int load(struct event_router *ev, struct ig_error *err)
{
    int64_t since = (int64_t)wall_usec() - (int64_t)ev->opts.dedupe_window_us;
    struct load ld = {.ev = ev};
    int r = events_store_load_ids(ev->store, since, DEDUPE_CAPACITY, load_id, &ld, err);
    if (r < 0)
        return r;
    if ((r = events_store_load_schedules(ev->store, load_schedule, ev, err)) < 0)
        return r;
    if (ld.n)
        log_info("event ids loaded for de-duplication", "count=%zu", ld.n);
    return 0;
}

int events_new(struct loop *l, struct store *s, struct journal *j, struct dispatch *d,
               const struct events_options *opts, struct event_router **ret, struct ig_error *err)
{
    struct event_router *ev = calloc(1, sizeof(*ev));
    uint8_t key[16];
    int r;

    if (!ev)
        return ig_error_set(err, ENOMEM, "out of memory");
    ev->loop = l;
    ev->store = s;
    ev->journal = j;
    ev->d = d;
    ev->opts = *opts;
    ev->started_s = (int64_t)(wall_usec() / 1000000);
    random_bytes(key, sizeof(key));
    if ((r = ce_dedupe_new(DEDUPE_CAPACITY, opts->dedupe_window_us, key, &ev->dedupe)) < 0) {
        ig_error_set(err, -r, "event de-duplication: %s", strerror(-r));
        goto fail;
    }
    if ((r = load(ev, err)) < 0)
        goto fail;
    if (loop_add_timer(l, now_usec(), on_schedule_tick, ev, &ev->sched_timer) < 0) {
        r = ig_error_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    *ret = ev;
    return 0;
fail:
    events_free(ev);
    return r;
}

void events_free(struct event_router *ev)
{
    if (!ev)
        return;
    if (ev->sched_timer)
        loop_cancel_timer(ev->loop, ev->sched_timer);
    inv_host_lock_free(ev->sched_lock);
    while (ev->scheds) {
        struct sched *s = ev->scheds;
        ev->scheds = s->next;
        sched_free(s);
    }
    /* Acceptances still waiting had their journal callbacks run by journal_free; none is left. */
    ce_dedupe_free(ev->dedupe);
    free(ev);
}
