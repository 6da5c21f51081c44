#include "events/events.h"

#include <string.h>
#include <strings.h>

#include "base/cloudevents.h"
#include "base/cron.h"
#include "events/dedupe.h"
#include "base/log.h"
#include "records/retention.h"
#include "records/telemetry.h"

/* The de-duplication window holds at most this many (source, id) pairs (24 bytes each); past it
 * the oldest go first, before their window ends (dedupe.h). */
#define DEDUPE_CAPACITY (1u << 18)
/* Dead letters GET /v1/events/dead-letters returns by default, and at most. */
#define DEAD_LETTERS_DEFAULT 100
#define DEAD_LETTERS_MAX     1000
#define MEDIA_CLOUDEVENT     "application/cloudevents+json"

struct delivery {
    char function[MANIFEST_NAME_MAX + 1];
    char id[INV_ID_LEN + 1];
};

/* One event of an acceptance: what the reply says about it. */
struct accepted {
    char *source, *id, *type;
    char *payload; /* the event in the JSON format, until its deliveries are submitted */
    size_t payload_len;
    bool duplicate;
    struct delivery *deliveries;
    size_t ndeliveries;
};

/* One POST /v1/events (its events in order) or one emitted event, from its checks until every
 * delivery is durable. Linked in events->inflight, so that a repeat arriving meanwhile is taken
 * for a duplicate. */
struct acceptance {
    struct events *ev;
    struct http_request *req; /* NULL for an emitted event, or once the client went away */
    enum telemetry_event_mode mode;
    bool batch;
    struct accepted *v;
    size_t n;
    size_t pending; /* submissions not yet durable */
    bool failed;
    char failure[256];
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

struct events {
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct dispatch *d;
    struct events_options opts;
    struct ce_dedupe *dedupe;
    struct acceptance *inflight;
    struct sched *scheds;
    struct loop_timer *sched_timer;
    int64_t started_s; /* wall clock: slots before it were missed while ignisd was down */
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

static enum seen seen_before(struct events *ev, const struct acceptance *self, size_t upto,
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
        const struct journal_value v[] = {JV_S(a->v[i].source), JV_S(a->v[i].id)};
        journal_submit_lazy(a->ev->journal, "DELETE FROM event_ids WHERE source = ? AND id = ?", v,
                            ARRAY_SIZE(v), on_forgotten, NULL);
    }
}

static cJSON *accepted_json(const struct accepted *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "source", e->source);
    cJSON_AddStringToObject(o, "type", e->type);
    cJSON_AddBoolToObject(o, "duplicate", e->duplicate);
    cJSON *list = cJSON_AddArrayToObject(o, "deliveries");
    for (size_t i = 0; i < e->ndeliveries; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "function", e->deliveries[i].function);
        cJSON_AddStringToObject(d, "invocation", e->deliveries[i].id);
        cJSON_AddItemToArray(list, d);
    }
    return o;
}

static void finish(struct acceptance *a)
{
    unlink_acceptance(a);
    settle_ids(a);
    for (size_t i = 0; i < a->n && !a->failed; i++)
        telemetry_event_accepted(a->mode, a->v[i].duplicate, a->v[i].ndeliveries);
    /* Counted whether or not the client is still there to read the reply. */
    if (a->failed && a->mode != TELEMETRY_EVENT_EMITTED)
        telemetry_event_refused(503);
    if (a->req) {
        http_request_set_context(a->req, NULL, NULL);
        if (a->failed)
            http_reply_error(a->req, 503, "store_unavailable", "the event could not be stored: %s",
                             a->failure);
        else if (a->batch) {
            cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "events");
            for (size_t i = 0; i < a->n; i++)
                cJSON_AddItemToArray(list, accepted_json(&a->v[i]));
            http_reply_json(a->req, 202, root);
        } else
            http_reply_json(a->req, 202, accepted_json(&a->v[0]));
    } else if (a->failed)
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

/* Records (source, id) in the event_ids table, after the event's deliveries in the journal's
 * order, so it is never durable before them: a crash after the deliveries were committed but
 * before the id was makes the sender's retry deliver again (at least once), and one after both
 * makes it a duplicate. The reply waits for it, so a 202 means both are on disk. */
static int remember(struct acceptance *a, size_t i)
{
    const struct journal_value v[] = {JV_S(a->v[i].source), JV_S(a->v[i].id), JV_I(wall_usec())};
    int r = journal_submit(a->ev->journal,
                           "INSERT OR IGNORE INTO event_ids (source, id, accepted_us) "
                           "VALUES (?, ?, ?)",
                           v, ARRAY_SIZE(v), on_id_stored, a);
    if (r == 0)
        a->pending++;
    return r;
}

static void on_client_gone(struct http_request *req, void *userdata)
{
    struct acceptance *a = http_request_context(req);
    if (a)
        a->req = NULL;
}

/* Takes e's attributes and rendering into slot i of a. Returns 0, -ENOMEM, or -EFBIG when the
 * rendered event is over the payload a function may receive. */
static int accept_event(struct acceptance *a, size_t i, const struct ce_event *e)
{
    struct accepted *x = &a->v[i];
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
    struct accepted *x = &a->v[i];
    struct dispatch *d = a->ev->d;
    /* An invoker reads the results of the deliveries its events made (docs/security.md). */
    const struct http_caller *caller = a->req ? http_request_caller(a->req) : NULL;
    size_t n = 0;
    for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn))
        n += subscribed(fn, e);
    if (n == 0)
        return 0;
    x->deliveries = calloc(n, sizeof(*x->deliveries));
    if (!x->deliveries)
        return -ENOMEM;
    for (struct fn_state *fn = dispatch_functions(d); fn; fn = dispatch_next(fn)) {
        if (!subscribed(fn, e))
            continue;
        struct delivery *dl = &x->deliveries[x->ndeliveries];
        if (dispatch_submit_async(d, fn, x->payload, x->payload_len, MEDIA_CLOUDEVENT, NULL,
                                  caller ? caller->token_id : NULL, dl->id, on_delivery_durable,
                                  a) < 0)
            return -ENOMEM;
        snprintf(dl->function, sizeof(dl->function), "%s", dispatch_fn_name(fn));
        x->ndeliveries++;
        a->pending++;
    }
    return 0;
}

static struct acceptance *acceptance_new(struct events *ev, size_t n)
{
    struct acceptance *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->ev = ev;
    a->n = n;
    a->v = calloc(n ? n : 1, sizeof(*a->v));
    if (!a->v) {
        free(a);
        return NULL;
    }
    return a;
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

/* ---- POST /v1/events ---- */

struct header_list {
    struct ce_header *v;
    size_t n, cap;
    bool oom;
};

static void collect_header(void *ctx, const char *name, const char *value)
{
    struct header_list *h = ctx;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 32;
        struct ce_header *v = realloc(h->v, cap * sizeof(*v));
        if (!v) {
            h->oom = true;
            return;
        }
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = (struct ce_header){.name = name, .value = value};
}

void events_http_post(struct http_request *req, struct events *ev)
{
    struct header_list h = {};
    _cleanup_ce_events_ struct ce_events *events = NULL;
    struct ig_error err = {};
    size_t len;
    const char *body = http_request_body(req, &len);

    if (dispatch_stopping(ev->d)) {
        telemetry_event_refused(503);
        http_reply_error(req, 503, "shutting_down", "ignisd is shutting down");
        return;
    }
    http_request_each_header(req, collect_header, &h);
    int r = h.oom ? -ENOMEM : ce_parse_http(h.v, h.n, body, len, &events, &err);
    free(h.v);
    if (r == -EINVAL) {
        telemetry_event_refused(400);
        http_reply_error(req, 400, "invalid_event", "%s", err.message);
        return;
    }
    if (r == -EOPNOTSUPP) {
        telemetry_event_refused(415);
        http_reply_error(req, 415, "unsupported_media_type", "%s", err.message);
        return;
    }
    if (r == -E2BIG) {
        telemetry_event_refused(413);
        http_reply_error(req, 413, "payload_too_large", "%s", err.message);
        return;
    }
    if (r < 0) {
        telemetry_event_refused(500);
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }

    struct acceptance *a = acceptance_new(ev, events->n);
    if (!a) {
        telemetry_event_refused(500);
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
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
            telemetry_event_refused(413);
            http_reply_error(req, 413, "payload_too_large",
                             "%sthe event in the JSON format is %zu bytes, over the %u bytes a "
                             "function may receive",
                             at, a->v[i].payload_len, PROTO_DEFAULT_MAX_BODY);
            acceptance_free(a);
            return;
        }
        if (r < 0) {
            telemetry_event_refused(500);
            http_reply_error(req, 500, "internal", "out of memory");
            acceptance_free(a);
            return;
        }
        enum seen seen = seen_before(ev, a, i, e->source, e->id);
        if (seen == SEEN_INFLIGHT) {
            /* Not a duplicate yet: the other request may fail, and then this one must deliver
             * it. The sender retries once that one has settled. */
            http_set_header(req, "Retry-After", "1");
            telemetry_event_refused(503);
            http_reply_error(req, 503, "in_progress",
                             "%sevent (%s, %s) is being stored by another request; retry", at,
                             e->source, e->id);
            acceptance_free(a);
            return;
        }
        a->v[i].duplicate = seen == SEEN_DURABLE;
    }
    /* Each subscriber's queue takes all the request gives it, or nothing is delivered. */
    for (struct fn_state *fn = dispatch_functions(ev->d); fn; fn = dispatch_next(fn)) {
        size_t n = 0;
        for (size_t i = 0; i < events->n; i++)
            n += !a->v[i].duplicate && subscribed(fn, events->v[i]);
        if (n && !dispatch_queue_takes(ev->d, fn, n)) {
            http_set_header(req, "Retry-After", "1");
            telemetry_event_refused(429);
            http_reply_error(req, 429, "too_many_requests",
                             "the queue of subscriber '%s' is full (%zu invocations waiting, "
                             "%zu more from this request, at most %zu); nothing was delivered",
                             dispatch_fn_name(fn), dispatch_fn_waiting(fn), n,
                             dispatch_get_options(ev->d)->queue_max);
            acceptance_free(a);
            return;
        }
    }
    a->req = req;
    http_request_set_context(req, a, on_client_gone);
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

static void dead_letter(struct events *ev, const char *function, const char *invocation,
                        const struct ce_event *e, enum telemetry_dead_letter_reason class,
                        const char *reason)
{
    telemetry_event_dead_letter(class);
    _cleanup_free_ char *json = NULL, *type = printable(e->type);
    if (ce_event_to_json(e, &json, NULL) < 0 || !type)
        return;
    log_warn("event dead-lettered", "function=%s type=\"%s\" id=%s reason=\"%s\"",
             function ? function : "", type, e->id, reason);
    const struct journal_value v[] = {
        JV_I(wall_usec()), JV_S(function), JV_S(invocation), JV_S(type),
        JV_S(e->source),   JV_S(e->id),    JV_S(reason),     JV_S(json),
    };
    journal_submit_lazy(
        ev->journal,
        "INSERT INTO event_dead_letters (at_us, function, invocation, type, source, "
        "event_id, reason, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        v, ARRAY_SIZE(v), on_dead_letter_stored, NULL);
}

void events_http_dead_letters(struct http_request *req, struct events *ev)
{
    const char *q = http_request_query(req, "limit");
    unsigned long limit = DEAD_LETTERS_DEFAULT;
    if (q && parse_count(q, 1, DEAD_LETTERS_MAX, &limit) < 0) {
        http_reply_error(req, 400, "bad_request", "limit must be a number from 1 to %d",
                         DEAD_LETTERS_MAX);
        return;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ev->store->db,
                           "SELECT seq, at_us, function, invocation, reason, event "
                           "FROM event_dead_letters ORDER BY seq DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        http_reply_error(req, 500, "internal", "%s", sqlite3_errmsg(ev->store->db));
        return;
    }
    sqlite3_bind_int64(st, 1, limit);
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "dead_letters");
    while (sqlite3_step(st) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        char time[32];
        ce_time_format(sqlite3_column_int64(st, 1), time);
        cJSON_AddNumberToObject(o, "seq", (double)sqlite3_column_int64(st, 0));
        cJSON_AddStringToObject(o, "time", time);
        const char *fn = (const char *)sqlite3_column_text(st, 2),
                   *inv = (const char *)sqlite3_column_text(st, 3);
        if (fn)
            cJSON_AddStringToObject(o, "function", fn);
        else
            cJSON_AddNullToObject(o, "function");
        if (inv)
            cJSON_AddStringToObject(o, "invocation", inv);
        else
            cJSON_AddNullToObject(o, "invocation");
        cJSON_AddStringToObject(o, "reason", (const char *)sqlite3_column_text(st, 4));
        cJSON *event = cJSON_Parse((const char *)sqlite3_column_text(st, 5));
        cJSON_AddItemToObject(o, "event", event ? event : cJSON_CreateNull());
        cJSON_AddItemToArray(list, o);
    }
    sqlite3_finalize(st);
    http_reply_json(req, 200, root);
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

void events_emitted(struct events *ev, struct fn_state *fn, struct inv *inv,
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
    for (struct fn_state *to = dispatch_functions(ev->d); to; to = dispatch_next(to))
        if (subscribed(to, e) && !dispatch_queue_takes(ev->d, to, 1)) {
            snprintf(reason, sizeof(reason),
                     "queue full: subscriber '%s' has %zu invocations waiting (--queue-max %zu)",
                     dispatch_fn_name(to), dispatch_fn_waiting(to),
                     dispatch_get_options(ev->d)->queue_max);
            dead_letter(ev, fn_name, inv_id, e, TELEMETRY_DEAD_QUEUE_FULL, reason);
            acceptance_free(a);
            return;
        }
    struct ce_event *const one[] = {e};
    submit_all(a, one);
}

/* ---- schedules ---- */

static void on_schedule_stored(struct loop *l, int result, const char *message, void *userdata)
{
    if (result < 0)
        log_warn("recording a schedule's last run failed", "error=\"%s\"", message);
}

static void sched_store(struct events *ev, const struct sched *s)
{
    const struct journal_value v[] = {JV_S(s->function), JV_S(s->text), JV_I(s->last_run)};
    journal_submit_lazy(ev->journal,
                        "INSERT OR REPLACE INTO schedules (function, schedule, last_run) "
                        "VALUES (?, ?, ?)",
                        v, ARRAY_SIZE(v), on_schedule_stored, NULL);
}

static void sched_free(struct sched *s)
{
    if (!s)
        return;
    free(s->text);
    free(s);
}

static struct sched *sched_add(struct events *ev, const char *function, const char *text,
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
    if (result < 0)
        log_error("a schedule's run could not be stored", "function=%s error=\"%s\"", function,
                  message);
    free(function);
}

/* One run of fn's schedule for slot: a dev.ignis.schedule event to fn alone. Its invocation
 * carries the idempotency key SOURCE@TIME: a make-up run whose slot already ran (ignisd died
 * after the invocation was committed but before the last run was) finds it and runs nothing. */
static void run_schedule(struct events *ev, struct fn_state *fn, const struct sched *s,
                         int64_t slot)
{
    char source[sizeof(EVENTS_SCHEDULE_SOURCE) + MANIFEST_NAME_MAX], time[32];
    char key[sizeof(source) + sizeof(time)], existing[INV_ID_LEN + 1];
    snprintf(source, sizeof(source), EVENTS_SCHEDULE_SOURCE "%s", dispatch_fn_name(fn));
    ce_time_format(slot * 1000000, time);
    snprintf(key, sizeof(key), "%s@%s", source, time);
    bool makeup = slot < ev->started_s;
    if (makeup && inv_store_find_idempotent(ev->store->db, dispatch_fn_name(fn), key,
                                            slot * 1000000, existing) == 0) {
        log_info("schedule run already made before the restart",
                 "function=%s slot=%s invocation=%s", dispatch_fn_name(fn), time, existing);
        return;
    }
    if (!dispatch_queue_takes(ev->d, fn, 1)) {
        log_warn("schedule run skipped: the function's queue is full", "function=%s slot=%s",
                 dispatch_fn_name(fn), time);
        return;
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
        dispatch_submit_async(ev->d, fn, payload, len, MEDIA_CLOUDEVENT, key, NULL, id,
                              on_schedule_submitted, userdata) < 0) {
        free(userdata);
        log_error("a schedule's run could not be submitted", "function=%s error=\"out of memory\"",
                  dispatch_fn_name(fn));
        return;
    }
    telemetry_schedule_run(dispatch_fn_name(fn), makeup);
    log_debug("schedule run", "function=%s slot=%s invocation=%s makeup=%s", dispatch_fn_name(fn),
              time, id, makeup ? "true" : "false");
}

static struct sched *sched_find(struct events *ev, const char *function)
{
    for (struct sched *s = ev->scheds; s; s = s->next)
        if (streq(s->function, function))
            return s;
    return NULL;
}

/* Every function's schedule, checked each second: a function pushed with a schedule starts at
 * the next slot after it is seen; one whose slots passed while ignisd was down runs once for the
 * latest (cron_due); one that lost its schedule, or was deleted, forgets it. */
static void check_schedules(struct events *ev)
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
        run_schedule(ev, fn, s, slot);
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
        const struct journal_value v[] = {JV_S(s->function)};
        journal_submit_lazy(ev->journal, "DELETE FROM schedules WHERE function = ?", v, 1,
                            on_schedule_stored, NULL);
        sched_free(s);
    }
}

static void on_schedule_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct events *ev = userdata;
    ev->sched_timer = NULL;
    if (!dispatch_stopping(ev->d))
        check_schedules(ev);
    /* Just past the next whole second of the wall clock, where cron slots fall. */
    uint64_t wall = wall_usec();
    loop_add_timer(l, now_usec() + (1000000 - wall % 1000000) + 2000, on_schedule_tick, ev,
                   &ev->sched_timer);
}

/* ---- retention ---- */

void events_purge(void *userdata, int64_t now)
{
    struct events *ev = userdata;
    const struct journal_value ids[] = {JV_I(now - (int64_t)ev->opts.dedupe_window_us)};
    const struct journal_value dead[] = {JV_I(now - EVENTS_DEAD_LETTER_RETENTION_US)};
    journal_submit_lazy(ev->journal, "DELETE FROM event_ids WHERE accepted_us < ?", ids, 1,
                        retention_done, "event_ids");
    journal_submit_lazy(ev->journal, "DELETE FROM event_dead_letters WHERE at_us < ?", dead, 1,
                        retention_done, "event_dead_letters");
}

/* ---- lifecycle ---- */

static int load(struct events *ev, struct ig_error *err)
{
    sqlite3 *db = ev->store->db;
    sqlite3_stmt *st;
    int64_t since = (int64_t)wall_usec() - (int64_t)ev->opts.dedupe_window_us;
    size_t n = 0;

    /* The newest the memory holds (DEDUPE_CAPACITY), oldest first, as they were inserted. */
    if (sqlite3_prepare_v2(db,
                           "SELECT source, id, accepted_us FROM (SELECT source, id, accepted_us "
                           "FROM event_ids WHERE accepted_us >= ? ORDER BY accepted_us DESC "
                           "LIMIT ?) ORDER BY accepted_us",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "loading event ids: %s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_int64(st, 2, DEDUPE_CAPACITY);
    while (sqlite3_step(st) == SQLITE_ROW) {
        ce_dedupe_insert(ev->dedupe, (const char *)sqlite3_column_text(st, 0),
                         (const char *)sqlite3_column_text(st, 1),
                         (uint64_t)sqlite3_column_int64(st, 2));
        n++;
    }
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(db, "SELECT function, schedule, last_run FROM schedules", -1, &st,
                           NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "loading schedules: %s", sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW)
        sched_add(ev, (const char *)sqlite3_column_text(st, 0),
                  (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    if (n)
        log_info("event ids loaded for de-duplication", "count=%zu", n);
    return 0;
}

int events_new(struct loop *l, struct store *s, struct journal *j, struct dispatch *d,
               const struct events_options *opts, struct events **ret, struct ig_error *err)
{
    struct events *ev = calloc(1, sizeof(*ev));
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

void events_free(struct events *ev)
{
    if (!ev)
        return;
    if (ev->sched_timer)
        loop_cancel_timer(ev->loop, ev->sched_timer);
    while (ev->scheds) {
        struct sched *s = ev->scheds;
        ev->scheds = s->next;
        sched_free(s);
    }
    /* Acceptances still waiting had their journal callbacks run by journal_free; none is left. */
    ce_dedupe_free(ev->dedupe);
    free(ev);
}
