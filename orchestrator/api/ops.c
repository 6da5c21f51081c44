/* The operators' routes (docs/api.md, docs/operations.md): /healthz, /v1/version, /v1/doctor,
 * a function's logs (records/fnlog.c) and the usage ledger (records/accountant.c). */
#include "api/ops.h"

#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/errors.h"
#include "config.h"
#include "dispatch/dispatch.h"
#include "records/accountant.h"
#include "records/fnlog.h"
#include "records/invocation.h"
#include "records/journal.h"
#include "records/store.h"

/* Whether the daemon can take work that must be stored: false with the reason while the store
 * is unreachable (PostgreSQL's server away), cannot write (the journal's last commit failed, and
 * its probes since) or the state dir's disk is full (logs, bundles and secrets are written there
 * too). All recover by themselves. */
static bool storage_ok(struct api *a, struct ig_error *ret_why)
{
    struct journal_health h = {};
    if (!api_store_reachable(ret_why))
        return false;
    if (a->journal)
        journal_get_health(a->journal, &h);
    if (h.failing) {
        ig_error_set_reason(ret_why, h.code == EIO || h.code == ENOTCONN ? h.code : ENOSPC,
                            "store_unavailable", "the store cannot write since %.0f s: %s",
                            (double)((int64_t)wall_usec() - h.since_us) / 1e6, h.message);
        return false;
    }
    if (store_space_check(a->state_dir, ret_why) < 0) {
        ret_why->reason = "insufficient_storage";
        return false;
    }
    return true;
}

void api_get_healthz(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *root = cJSON_CreateObject();
    struct ig_error why = {};
    /* Liveness: a full disk is not cured by a restart (which may not even start), so it stays
     * 200 and says degraded; /readyz is the one that turns 503. */
    bool ok = a->stopping || storage_ok(a, &why);
    cJSON_AddStringToObject(root, "status", a->stopping ? "stopping" : ok ? "ok" : "degraded");
    if (!ok) {
        cJSON_AddStringToObject(root, "reason", why.reason);
        cJSON_AddStringToObject(root, "message", why.message);
    }
    http_reply_json(req, a->stopping ? 503 : 200, root);
}

void api_get_readyz(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    struct ig_error why = {};
    if (a->stopping) {
        http_reply_error(req, 503, "shutting_down", "ignisd is shutting down");
        return;
    }
    if (!storage_ok(a, &why)) {
        http_set_header(req, "Retry-After", API_STORE_RETRY_AFTER);
        http_reply_error(req, 503, why.reason, "%s", why.message);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", "ready");
    http_reply_json(req, 200, root);
}

void api_get_version(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", IGNIS_VERSION);
    cJSON_AddStringToObject(root, "api", "v1");
    cJSON_AddNumberToObject(root, "schema", store_schema_version());
    cJSON_AddNumberToObject(root, "uptime_s", (double)(now_usec() - a->started_usec) / 1e6);
    http_reply_json(req, 200, root);
}

void api_get_doctor(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *checks;
    const char *worst;
    if (a->doctor(a->doctor_userdata, &checks, &worst) < 0) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", worst);
    cJSON_AddItemToObject(root, "checks", checks);
    http_reply_json(req, 200, root);
}

/* since: seconds since the epoch (fractions allowed) or RFC 3339 UTC ("...Z"). */
static int parse_since(const char *s, uint64_t *ret_us)
{
    char *end;
    double v = strtod(s, &end);
    if (end != s && *end == '\0' && v >= 0) {
        *ret_us = (uint64_t)(v * 1e6);
        return 0;
    }
    struct tm tm = {};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return -EINVAL;
    double frac = 0;
    if (*rest == '.')
        frac = strtod(rest, (char **)&rest);
    if (*rest != 'Z' || rest[1])
        return -EINVAL;
    time_t t = timegm(&tm);
    if (t < 0)
        return -EINVAL;
    *ret_us = (uint64_t)t * 1000000 + (uint64_t)(frac * 1e6);
    return 0;
}

/* A yes/no query parameter: true or 1, false or 0; absent is false. */
static int parse_flag(const char *text, bool *ret)
{
    if (!text || streq(text, "false") || streq(text, "0"))
        *ret = false;
    else if (streq(text, "true") || streq(text, "1"))
        *ret = true;
    else
        return -EINVAL;
    return 0;
}

/* The query of GET /v1/functions/{name}/logs. */
struct logs_query {
    const char *inv;
    uint64_t since_us;
    unsigned long tail;
    bool follow;
};

/* Replies 400 and returns false when a parameter is not of its form. */
static bool parse_logs_query(struct http_request *req, struct logs_query *ret)
{
    const char *since = http_request_query(req, "since");
    const char *follow = http_request_query(req, "follow");
    const char *tail = http_request_query(req, "tail");
    *ret = (struct logs_query){.inv = http_request_query(req, "invocation"), .tail = SIZE_MAX};
    const char *inv = ret->inv;
    if (inv && (!*inv || strlen(inv) > INV_ID_LEN || strchr(inv, '"') || strchr(inv, '\\'))) {
        http_reply_error(req, 400, "bad_request", "invocation is not an invocation id");
        return false;
    }
    if (since && parse_since(since, &ret->since_us) < 0) {
        http_reply_error(req, 400, "bad_request",
                         "since must be seconds since the epoch or an RFC 3339 UTC time");
        return false;
    }
    if (tail && parse_count(tail, 0, FNLOG_TAIL_MAX, &ret->tail) < 0) {
        http_reply_error(req, 400, "bad_request", "tail must be a number from 0 to %d",
                         FNLOG_TAIL_MAX);
        return false;
    }
    if (parse_flag(follow, &ret->follow) < 0) {
        http_reply_error(req, 400, "bad_request", "follow must be true or false");
        return false;
    }
    return true;
}

static void follower_wake(void *userdata)
{
    http_stream_wake(userdata);
}

static ssize_t follower_read(void *ctx, char *out, size_t max)
{
    return fnlog_follower_read(ctx, out, max);
}

static void follower_close(struct http_request *req, void *userdata)
{
    fnlog_follower_free(http_request_context(req));
}

void api_get_logs(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *name = http_request_param(req, 0);
    struct logs_query q;
    /* A deleted function's log is still there to read. */
    if (!dispatch_function(a->dispatch, name) && !fnlog_known(name)) {
        http_reply_error(req, 404, "not_found", "no function named '%s'", name);
        return;
    }
    if (!parse_logs_query(req, &q))
        return;
    char *history;
    size_t len;
    /* What is pending goes to disk first: the files are then the whole story. */
    if (fnlog_sync(name) < 0 || fnlog_read(name, q.inv, q.since_us, q.tail, &history, &len) < 0) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    if (!q.follow) {
        http_reply_take(req, 200, "application/x-ndjson", history, len);
        return;
    }
    struct fnlog_follower *fo;
    if (fnlog_follow(name, q.inv, history, len, follower_wake, req, &fo) < 0) {
        free(history);
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_request_set_context(req, fo, follower_close);
    if (http_reply_stream(req, 200, "application/x-ndjson", follower_read, fo) < 0) {
        http_request_set_context(req, NULL, NULL);
        fnlog_follower_free(fo);
        http_reply_error(req, 500, "internal", "out of memory");
    }
}

void api_get_usage(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    static const char time_forms[] = "a duration (45s, 30m, 1h, 7d), unix seconds or "
                                     "YYYY-MM-DDTHH:MM:SSZ";
    int64_t now = (int64_t)(wall_usec() / 1000000);
    /* Default: the last 24 hours, the current minute included. */
    struct acct_query q = {.since_s = now - 86400, .until_s = now + 1};
    const char *fn = http_request_query(req, "function");
    const char *since = http_request_query(req, "since");
    const char *until = http_request_query(req, "until");
    const char *group = http_request_query(req, "group_by");
    const char *by_version = http_request_query(req, "by_version");
    cJSON *json;

    if (fn && *fn)
        q.function = fn;
    if (since && accountant_parse_time(since, now, &q.since_s) < 0) {
        http_reply_error(req, 400, "bad_request", "since must be %s, not '%s'", time_forms, since);
        return;
    }
    if (until && accountant_parse_time(until, now, &q.until_s) < 0) {
        http_reply_error(req, 400, "bad_request", "until must be %s, not '%s'", time_forms, until);
        return;
    }
    if (group && *group && accountant_parse_group(group, &q.group) < 0) {
        http_reply_error(req, 400, "bad_request", "group_by must be minute, hour or day, not '%s'",
                         group);
        return;
    }
    if (parse_flag(by_version, &q.by_version) < 0) {
        http_reply_error(req, 400, "bad_request", "by_version must be true or false");
        return;
    }
    if (q.until_s < q.since_s) {
        http_reply_error(req, 400, "bad_request", "until is before since");
        return;
    }
    struct ig_error err = {};
    if (accountant_query(a->store, &q, &json, &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    http_reply_json(req, 200, json);
}
