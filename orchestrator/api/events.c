#include "api/events.h"

#include "api/api.h"
#include "api/errors.h"
#include "base/cloudevents.h"
#include "events/events.h"
#include "records/events_store.h"
#include "records/telemetry.h"

/* Dead letters GET /v1/events/dead-letters returns by default, and at most. */
#define DEAD_LETTERS_DEFAULT 100
#define DEAD_LETTERS_MAX     1000

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

/* The request's events: binary mode's ce- headers and the Content-Type that names the mode are
 * the HTTP binding's, so they are read here. Errors as ce_parse_http's, with the errno and
 * reason that give their status: 400 invalid_event, 415, 413, or 500 without memory. */
static int parse(struct http_request *req, struct ce_events **ret, struct ig_error *err)
{
    struct header_list h = {};
    size_t len;
    const char *body = http_request_body(req, &len);
    http_request_each_header(req, collect_header, &h);
    int r = h.oom ? -ENOMEM : ce_parse_http(h.v, h.n, body, len, ret, err);
    free(h.v);
    if (r == -EINVAL) {
        err->code = EINVAL;
        err->reason = "invalid_event";
    } else if (r == -EOPNOTSUPP) {
        /* Another event format than JSON: a media type this server does not take. */
        err->code = EMEDIUMTYPE;
        err->reason = NULL;
    } else if (r == -E2BIG) {
        err->code = E2BIG;
        err->reason = NULL;
    } else if (r < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    return r;
}

/* A refusal is counted whether or not the client is still there (req NULL) to read it. */
static void refuse(struct http_request *req, const struct ig_error *err)
{
    telemetry_event_refused((int)api_status_for(err->code));
    if (req)
        api_reply_error(req, err);
}

static cJSON *accepted_json(const struct event_accepted *e)
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

/* A POST /v1/events whose events are being accepted. A client that goes away meanwhile leaves
 * req NULL: the acceptance goes on (its deliveries run), and its end is counted, unanswered. */
struct post {
    struct http_request *req;
    bool batch; /* the reply lists the events; else it is the one event */
};

static void on_client_gone(struct http_request *req, void *userdata)
{
    struct post *p = http_request_context(req);
    if (p)
        p->req = NULL;
}

static void on_accepted(int result, const struct ig_error *err, const struct event_accepted *v,
                        size_t n, void *userdata)
{
    struct post *p = userdata;
    if (p->req)
        http_request_set_context(p->req, NULL, NULL);
    if (result < 0)
        refuse(p->req, err);
    else if (p->req && p->batch) {
        cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "events");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(list, accepted_json(&v[i]));
        http_reply_json(p->req, 202, root);
    } else if (p->req)
        http_reply_json(p->req, 202, accepted_json(&v[0]));
    free(p);
}

void api_events_post(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    _cleanup_ce_events_ struct ce_events *events = NULL;
    struct ig_error err = {};

    /* Stopping first: a sender is told so whatever it sent. */
    if (events_accepting(a->events, &err) < 0 || !api_store_reachable(&err) ||
        parse(req, &events, &err) < 0) {
        refuse(req, &err);
        return;
    }
    struct post *p = calloc(1, sizeof(*p));
    if (!p) {
        ig_error_set(&err, ENOMEM, "out of memory");
        refuse(req, &err);
        return;
    }
    p->req = req;
    p->batch = events->mode == CE_MODE_BATCH;
    http_request_set_context(req, p, on_client_gone);
    const struct http_caller *caller = http_request_caller(req);
    events_accept(a->events, events, caller ? caller->token_id : NULL, on_accepted, p);
}

/* ---- GET /v1/events/dead-letters ---- */

static void add_dead_letter(void *userdata, const struct events_dead_letter *dl)
{
    cJSON *o = cJSON_CreateObject();
    char time[32];
    ce_time_format(dl->at_us, time);
    cJSON_AddNumberToObject(o, "seq", (double)dl->seq);
    cJSON_AddStringToObject(o, "time", time);
    if (dl->function)
        cJSON_AddStringToObject(o, "function", dl->function);
    else
        cJSON_AddNullToObject(o, "function");
    if (dl->invocation)
        cJSON_AddStringToObject(o, "invocation", dl->invocation);
    else
        cJSON_AddNullToObject(o, "invocation");
    cJSON_AddStringToObject(o, "reason", dl->reason);
    cJSON *event = cJSON_Parse(dl->event);
    cJSON_AddItemToObject(o, "event", event ? event : cJSON_CreateNull());
    cJSON_AddItemToArray(userdata, o);
}

void api_events_dead_letters(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *q = http_request_query(req, "limit");
    unsigned long limit = DEAD_LETTERS_DEFAULT;
    if (q && parse_count(q, 1, DEAD_LETTERS_MAX, &limit) < 0) {
        http_reply_error(req, 400, "bad_request", "limit must be a number from 1 to %d",
                         DEAD_LETTERS_MAX);
        return;
    }
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "dead_letters");
    struct ig_error err = {};
    if (events_store_list_dead_letters(a->store, limit, add_dead_letter, list, &err) < 0) {
        cJSON_Delete(root);
        api_reply_error(req, &err);
        return;
    }
    http_reply_json(req, 200, root);
}
