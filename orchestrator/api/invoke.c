#include "api/invoke.h"

#include <string.h>

#include "api/api.h"
#include "api/auth.h"
#include "api/errors.h"
#include "api/forward.h"
#include "dispatch/dispatch.h"

/* The status of a sync invocation's reply for its outcome. */
static unsigned status_for(enum outcome_kind k)
{
    switch (k) {
    case OUTCOME_OK:
        return 200;
    case OUTCOME_TIMEOUT:
        return 504;
    default:
        return 502;
    }
}

static const char *error_code_for(enum outcome_kind k)
{
    switch (k) {
    case OUTCOME_ERROR:
        return "function_error";
    case OUTCOME_CRASH:
        return "function_crashed";
    case OUTCOME_TIMEOUT:
        return "function_timeout";
    case OUTCOME_INIT:
        return "function_init_error";
    default:
        return "ok";
    }
}

/* Ignis-Version and, through an alias, Ignis-Alias: what runs the invocation. */
static void set_route_headers(struct http_request *req, int64_t version, const char *alias)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)version);
    http_set_header(req, "Ignis-Version", buf);
    if (alias && alias[0])
        http_set_header(req, "Ignis-Alias", alias);
}

/* ---- sync ---- */

static void reply_outcome(struct http_request *req, struct dispatch_result *r)
{
    char buf[32];
    if (http_request_header(req, "Ignis-Forwarded")) {
        /* What the forwarding host takes off its round trip to measure the hop (forward.c). */
        snprintf(buf, sizeof(buf), "ignis;dur=%.3f",
                 (double)(now_usec() - http_request_handled_usec(req)) / 1e3);
        http_set_header(req, "Server-Timing", buf);
    }
    http_set_header(req, "Ignis-Invocation-Id", r->id);
    set_route_headers(req, r->version, r->alias);
    http_set_header(req, "Ignis-Cold-Start", r->cold ? "true" : "false");
    snprintf(buf, sizeof(buf), "%lld", (long long)r->billed_ms);
    http_set_header(req, "Ignis-Billed-Ms", buf);
    if (r->kind == OUTCOME_OK) {
        http_reply_take(req, 200, r->content_type ? r->content_type : "application/json",
                        r->body ? r->body : strdup(""), r->body_len);
        r->body = NULL;
        return;
    }
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", error_code_for(r->kind));
    cJSON_AddStringToObject(e, "message", r->error_message ? r->error_message : "");
    if (r->error_type)
        cJSON_AddStringToObject(e, "type", r->error_type);
    if (r->trace)
        cJSON_AddStringToObject(e, "trace", r->trace);
    http_reply_json(req, status_for(r->kind), root);
}

/* A sync invocation waiting for its outcome here: what a drain needs to send it elsewhere. */
struct sync_call {
    struct http_request *req;
    struct api *a;
    struct inv *inv; /* its handle while it waits or runs */
    bool may_move;   /* neither forwarded here nor placed already: a stop may move it */
    char function[MANIFEST_NAME_MAX + 1];
    int64_t version;
    char alias[INV_ALIAS_MAX + 1];
    uint32_t memory_mb, timeout_ms;
};

static void on_sync_done(const struct ig_error *err, struct dispatch_result *r, void *userdata)
{
    struct sync_call *call = userdata;
    struct http_request *req = call->req;
    http_request_set_context(req, NULL, NULL);
    /* This host stops with the invocation still queued: another host runs it (with a
     * cluster_key), rather than the caller getting 503. */
    const struct forward_target t = {.function = call->function,
                                     .version = call->version,
                                     .alias = call->alias,
                                     .memory_mb = call->memory_mb,
                                     .timeout_ms = call->timeout_ms};
    if (!(err && err->code == ESHUTDOWN && call->may_move &&
          forward_place(req, call->a, &t, true))) {
        if (call->a->host_id)
            http_set_header(req, "Ignis-Host", call->a->host_id);
        if (err)
            api_reply_error(req, err);
        else
            reply_outcome(req, r);
    }
    free(call);
}

/* The client went away while its invocation waited or ran. */
static void on_sync_client_gone(struct http_request *req, void *userdata)
{
    struct sync_call *call = http_request_context(req);
    if (call) {
        dispatch_sync_cancel(call->inv);
        free(call);
    }
}

void invoke_sync_here(struct http_request *req, struct api *a, const struct dispatch_route *route,
                      bool may_move)
{
    size_t len;
    const char *body = http_request_body(req, &len);
    const struct http_caller *caller = http_request_caller(req);
    const struct manifest *m = dispatch_fn_manifest(route->fn);
    struct ig_error err = {};
    struct sync_call *call = calloc(1, sizeof(*call));
    if (!call) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    *call = (struct sync_call){.req = req,
                               .a = a,
                               .may_move = may_move,
                               .version = route->version,
                               .memory_mb = m->memory_mb,
                               .timeout_ms = m->timeout_ms};
    snprintf(call->function, sizeof(call->function), "%s", dispatch_fn_name(route->fn));
    memcpy(call->alias, route->alias, sizeof(call->alias));
    struct inv *inv; /* NULL when done already ran (and freed call) */
    if (dispatch_submit_sync(
            a->dispatch, route, body, len, http_request_header(req, "Content-Type"),
            caller ? caller->token_id : NULL, on_sync_done, call, &inv, &err) < 0) {
        free(call);
        api_reply_error(req, &err);
        return;
    }
    if (inv) {
        call->inv = inv;
        http_request_set_context(req, call, on_sync_client_gone);
    }
}

/* What a forward of an invocation routed so carries. */
static struct forward_target target_of(const char *name, const struct dispatch_route *route)
{
    const struct manifest *m = dispatch_fn_manifest(route->fn);
    enum placement_local local = dispatch_fn_has_free(route->fn)     ? LOCAL_FREE
                                 : dispatch_fn_containers(route->fn) ? LOCAL_BUSY
                                                                     : LOCAL_NONE;
    return (struct forward_target){.function = name,
                                   .version = route->version,
                                   .alias = route->alias,
                                   .memory_mb = m->memory_mb,
                                   .timeout_ms = m->timeout_ms,
                                   .local = local};
}

/* Here when it has a warm, free container (or is a version's, or the request was forwarded);
 * else where placement says (forward.h). */
static void invoke_sync(struct http_request *req, struct api *a, const char *name,
                        struct dispatch_route *route)
{
    enum forward_mode mode;
    int fw = forward_received(req, a, route, &mode);
    if (fw < 0)
        return;
    bool free_here = dispatch_fn_has_free(route->fn);
    if (fw == 1 && ((mode == FORWARD_WARM && !free_here) ||
                    (mode == FORWARD_HOME && !dispatch_fn_has_room(route->fn)))) {
        forward_refuse(req, name, mode);
        return;
    }
    if (fw == 0 && !free_here && dispatch_fn_is_current(route->fn)) {
        const struct forward_target t = target_of(name, route);
        if (forward_place(req, a, &t, false))
            return;
    }
    invoke_sync_here(req, a, route, fw == 0);
}

/* A sync invocation arriving while this host stops (a drain: the load balancer has not seen
 * /readyz yet): sent to another host when there is one (with a cluster_key). true once
 * forwarded. */
static bool moved_while_stopping(struct http_request *req, struct api *a, const char *name,
                                 const char *selector)
{
    struct fn_state *fn = dispatch_function(a->dispatch, name);
    struct dispatch_route route;
    struct ig_error err = {};
    if (!a->forwarder || http_request_header(req, "Ignis-Forwarded") || !fn ||
        dispatch_fn_removing(fn) ||
        dispatch_route(a->dispatch, fn, selector, false, &route, &err) < 0)
        return false;
    const struct forward_target t = target_of(name, &route);
    return forward_place(req, a, &t, true);
}

/* ---- async ---- */

/* The client waiting for its 202, NULL once it went away. */
struct async_reply {
    struct http_request *req;
    int64_t version;
    char alias[INV_ALIAS_MAX + 1];
};

static void on_async_client_gone(struct http_request *req, void *userdata)
{
    struct async_reply *a = http_request_context(req);
    if (a)
        a->req = NULL;
}

static void reply_existing(struct http_request *req, const char *id);

static void on_async_submitted(int result, const char *message, const char *id, void *userdata)
{
    struct async_reply *a = userdata;
    if (a->req) {
        http_request_set_context(a->req, NULL, NULL);
        if (result == -EEXIST) {
            /* Its key was taken meanwhile (another host's acceptance): the first one answers. */
            reply_existing(a->req, id);
        } else if (result == -ENOTCONN) {
            /* The store went away with the row on its way: the id says which invocation may run
             * once it is back. */
            struct ig_error err = {};
            ig_error_set(&err, ENOTCONN, "%s", message); /* store_unavailable: api_code_for */
            http_set_header(a->req, "Ignis-Invocation-Id", id);
            api_reply_error(a->req, &err);
        } else if (result < 0) {
            /* Nothing was accepted: the client retries, after the disk has room again. */
            struct ig_error err = {};
            ig_error_set_reason(&err, EAGAIN, "store_unavailable",
                                "the invocation could not be stored: %s", message);
            api_reply_error(a->req, &err);
        } else {
            cJSON *root = cJSON_CreateObject();
            cJSON_AddStringToObject(root, "id", id);
            cJSON_AddStringToObject(root, "status", "queued");
            http_set_header(a->req, "Ignis-Invocation-Id", id);
            set_route_headers(a->req, a->version, a->alias);
            http_reply_json(a->req, 202, root);
        }
    }
    free(a);
}

static void reply_existing(struct http_request *req, const char *id)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddBoolToObject(root, "duplicate", true);
    http_set_header(req, "Ignis-Invocation-Id", id);
    http_reply_json(req, 202, root);
}

/* Whether the request's Idempotency-Key (NULL: none) is one a client may send: true, or false
 * once answered. */
static bool key_allowed(struct http_request *req, const char *key)
{
    if (!key)
        return true;
    if (strlen(key) > 256) {
        http_reply_error(req, 400, "bad_request", "Idempotency-Key is over 256 bytes");
        return false;
    }
    /* ignisd's own keys (a schedule's runs) begin so; a client's must not match them. */
    if (strncmp(key, "/ignis/", 7) == 0) {
        http_reply_error(req, 400, "bad_request",
                         "Idempotency-Key values beginning with /ignis/ are reserved");
        return false;
    }
    return true;
}

/* Whether the request's Idempotency-Key (NULL: none) names an invocation made earlier: then it is
 * answered with that one. */
static bool answered_by_key(struct http_request *req, struct dispatch *d, struct fn_state *fn,
                            const char *key)
{
    char existing[INV_ID_LEN + 1];
    if (!key)
        return false;
    int r = dispatch_find_idempotent(d, fn, key, existing);
    if (r == 0) {
        reply_existing(req, existing);
        return true;
    }
    if (r != -ENOENT) {
        /* The key cannot be honoured unread: accepting would run the work twice. */
        struct ig_error err = {};
        ig_error_set(&err, -r, "looking up Idempotency-Key: %s", strerror(-r));
        api_reply_error(req, &err);
        return true;
    }
    return false;
}

static void invoke_async(struct http_request *req, struct dispatch *d,
                         const struct dispatch_route *route)
{
    struct fn_state *fn = route->fn;
    struct ig_error err = {};
    if (dispatch_admit(d, fn, false, &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    size_t len;
    const char *body = http_request_body(req, &len);
    const char *key = http_request_header(req, "Idempotency-Key");
    if (answered_by_key(req, d, fn, key))
        return;
    struct async_reply *a = calloc(1, sizeof(*a));
    char id[INV_ID_LEN + 1];
    const struct http_caller *caller = http_request_caller(req);
    if (a) {
        a->version = route->version;
        memcpy(a->alias, route->alias, sizeof(a->alias));
    }
    if (!a ||
        dispatch_submit_async(d, route, body, len, http_request_header(req, "Content-Type"), key,
                              caller ? caller->token_id : NULL, id, on_async_submitted, a) < 0) {
        free(a);
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    a->req = req;
    http_request_set_context(req, a, on_async_client_gone);
}

/* ---- routes ---- */

/* The function's name and the selector of the version that runs it (NULL: the default alias)
 * from the path's NAME or NAME@SELECTOR and the query's version=SELECTOR, which name the same
 * thing: one at most. Only this route reads a selector in its path: the others take the name
 * as it is, so "f@1" is no function's name there (invalid_name). true, or false once answered. */
static bool parse_target(struct http_request *req, char name[static MANIFEST_NAME_MAX + 2],
                         const char **ret_selector)
{
    const char *param = http_request_param(req, 0), *at = strchr(param, '@');
    const char *query = http_request_query(req, "version");
    /* A name over MANIFEST_NAME_MAX is cut to one byte over it: still no function's. */
    int len = at ? (int)(at - param) : (int)strlen(param);
    snprintf(name, MANIFEST_NAME_MAX + 2, "%.*s", len, param);
    if (at && query) {
        http_reply_error(req, 400, "bad_request",
                         "name the version once: %s or ?version=, not both", param);
        return false;
    }
    const char *selector = at ? at + 1 : query;
    if (selector && !selector[0]) {
        http_reply_error(req, 400, "invalid_alias",
                         "an empty version or alias: NAME@N, NAME@ALIAS or ?version=N|ALIAS");
        return false;
    }
    *ret_selector = selector;
    return true;
}

void api_post_invoke(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *type = http_request_header(req, "Ignis-Invocation-Type");
    bool async = type && (streq(type, "async") || streq(type, "Event"));
    struct dispatch_route route;
    struct ig_error err = {};
    char name[MANIFEST_NAME_MAX + 2];
    const char *selector;

    if (!parse_target(req, name, &selector))
        return;
    /* The request's own errors first: a route takes a pick of an alias's weighted round-robin
     * (and may make a version's pool), which a request refused for its headers must not. */
    if (type && !async && !streq(type, "sync") && !streq(type, "RequestResponse")) {
        http_reply_error(req, 400, "bad_request",
                         "Ignis-Invocation-Type must be sync or async, not '%s'", type);
        return;
    }
    if (async && !key_allowed(req, http_request_header(req, "Idempotency-Key")))
        return;
    /* An async invocation is accepted once stored: not while the store is away. */
    if (async && !api_store_reachable(&err)) {
        api_reply_error(req, &err);
        return;
    }
    if (dispatch_function_accepting(a->dispatch, name, selector, async, &route, &err) < 0) {
        if (!(err.code == ESHUTDOWN && !async && moved_while_stopping(req, a, name, selector)))
            api_reply_error(req, &err);
        return;
    }
    if (async)
        invoke_async(req, a->dispatch, &route);
    else
        invoke_sync(req, a, name, &route);
}

void api_get_invocation(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    /* An invoker reads the results of its own invocations only. */
    const struct http_caller *c = http_request_caller(req);
    struct ig_error err = {};
    cJSON *json;
    if (dispatch_invocation_get(a->dispatch, http_request_param(req, 0),
                                c && c->role == AUTH_INVOKER ? c->token_id : NULL, &json,
                                &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    http_reply_json(req, 200, json);
}
