#include "api/audit.h"

#include <string.h>

#include "api/api.h"
#include "api/auth.h"
#include "api/errors.h"
#include "records/accountant.h"
#include "records/audit_store.h"

#define AUDIT_DEFAULT_LIMIT 100
#define AUDIT_MAX_LIMIT     1000

int audit_record(struct journal *j, struct http_request *req, const struct http_route *route,
                 unsigned status)
{
    const struct http_caller *c = http_request_caller(req);
    /* Only a known token's requests: one without a valid token (401) could be sent by anyone,
     * as fast as connections allow, and each row is kept for a year; ignis_auth_refused_total
     * counts them. */
    if (!c)
        return 0;
    char action[128];
    snprintf(action, sizeof(action), "%s %s", route->method, route->pattern);
    const struct audit_row row = {
        .time_us = (int64_t)wall_usec(),
        .token_id = c->token_id,
        .token_name = c->name,
        .role = auth_role_name((enum auth_role)__builtin_ctz(c->role)),
        .action = action,
        .path = http_request_path(req),
        .function =
            startswith(route->pattern, "/v1/functions/{}") ? http_request_param(req, 0) : NULL,
        .detail = http_request_audit_detail(req),
        .peer = http_request_peer(req),
        .status = (int)status,
    };
    return audit_store_append(j, &row);
}

static void add_text(cJSON *o, const char *key, const char *value)
{
    if (value)
        cJSON_AddStringToObject(o, key, value);
    else
        cJSON_AddNullToObject(o, key);
}

static int add_entry(void *userdata, const struct audit_row *r)
{
    cJSON *o = cJSON_CreateObject();
    char when[32];
    format_time_ms((uint64_t)r->time_us, when);
    cJSON_AddNumberToObject(o, "seq", (double)r->seq);
    cJSON_AddStringToObject(o, "time", when);
    add_text(o, "token_id", r->token_id);
    add_text(o, "token_name", r->token_name);
    add_text(o, "role", r->role);
    add_text(o, "action", r->action);
    add_text(o, "path", r->path);
    add_text(o, "function", r->function);
    add_text(o, "detail", r->detail);
    add_text(o, "peer", r->peer);
    cJSON_AddNumberToObject(o, "status", r->status);
    cJSON_AddItemToArray(userdata, o);
    return 0;
}

void api_get_audit(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *function = http_request_query(req, "function");
    const char *since = http_request_query(req, "since");
    const char *limit = http_request_query(req, "limit");
    int64_t since_s = 0;
    unsigned long n = AUDIT_DEFAULT_LIMIT;
    if (since && accountant_parse_time(since, (int64_t)(wall_usec() / 1000000), &since_s) < 0) {
        http_reply_error(req, 400, "bad_request",
                         "since must be a duration (1h, 7d), unix seconds or "
                         "YYYY-MM-DDTHH:MM:SSZ, not '%s'",
                         since);
        return;
    }
    if (limit && parse_count(limit, 1, AUDIT_MAX_LIMIT, &n) < 0) {
        http_reply_error(req, 400, "bad_request", "limit must be from 1 to %d, not '%s'",
                         AUDIT_MAX_LIMIT, limit);
        return;
    }
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "entries");
    struct ig_error err = {};
    if (audit_store_list(a->store, function, since_s * 1000000, n, add_entry, arr, &err) < 0) {
        cJSON_Delete(root);
        api_reply_error(req, &err);
        return;
    }
    http_reply_json(req, 200, root);
}
