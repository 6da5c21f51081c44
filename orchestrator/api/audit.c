#include "api/audit.h"

#include <string.h>

#include "records/accountant.h"
#include "api/auth.h"
#include "records/retention.h"

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
    const char *function =
        startswith(route->pattern, "/v1/functions/{}") ? http_request_param(req, 0) : NULL;
    const char *role = auth_role_name((enum auth_role)__builtin_ctz(c->role));
    const struct journal_value v[] = {
        JV_I(wall_usec()),
        JV_S(c->token_id),
        JV_S(c->name),
        JV_S(role),
        {.type = JV_TEXT, .p = action},
        JV_S(http_request_path(req)),
        JV_S(function),
        JV_S(http_request_audit_detail(req)),
        JV_S(http_request_peer(req)),
        JV_I(status),
    };
    return journal_submit_lazy(j,
                               "INSERT INTO audit (time_us, token_id, token_name, role, action, "
                               "path, function, detail, peer, status) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               v, ARRAY_SIZE(v), NULL, NULL);
}

int audit_purge(struct journal *j, int64_t before_us)
{
    const struct journal_value v[] = {JV_I(before_us)};
    return journal_submit_lazy(j, "DELETE FROM audit WHERE time_us < ?", v, ARRAY_SIZE(v),
                               retention_done, "audit");
}

static void add_text(cJSON *o, const char *key, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddStringToObject(o, key, (const char *)sqlite3_column_text(st, col));
}

void audit_http_list(struct http_request *req, sqlite3 *db)
{
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
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, time_us, token_id, token_name, role, action, path, "
                           "function, detail, peer, status FROM audit "
                           "WHERE time_us >= ? AND (?2 IS NULL OR function = ?2) "
                           "ORDER BY seq DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK) {
        http_reply_error(req, 500, "internal", "reading the audit log: %s", sqlite3_errmsg(db));
        return;
    }
    sqlite3_bind_int64(st, 1, since_s * 1000000);
    if (function)
        sqlite3_bind_text(st, 2, function, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, n);
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "entries");
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        char when[32];
        format_time_ms((uint64_t)sqlite3_column_int64(st, 1), when);
        cJSON_AddNumberToObject(o, "seq", (double)sqlite3_column_int64(st, 0));
        cJSON_AddStringToObject(o, "time", when);
        add_text(o, "token_id", st, 2);
        add_text(o, "token_name", st, 3);
        add_text(o, "role", st, 4);
        add_text(o, "action", st, 5);
        add_text(o, "path", st, 6);
        add_text(o, "function", st, 7);
        add_text(o, "detail", st, 8);
        add_text(o, "peer", st, 9);
        cJSON_AddNumberToObject(o, "status", sqlite3_column_int(st, 10));
        cJSON_AddItemToArray(arr, o);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) {
        cJSON_Delete(root);
        http_reply_error(req, 500, "internal", "reading the audit log: %s", sqlite3_errmsg(db));
        return;
    }
    http_reply_json(req, 200, root);
}
