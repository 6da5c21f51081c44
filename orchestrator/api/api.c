#include "api/api.h"

#include "api/audit.h"
#include "api/auth.h"
#include "api/invoke.h"
#include "api/metrics.h"
#include "config.h"
#include "dispatch/dispatch.h"
#include "events/events.h"
#include "records/accountant.h"
#include "records/fnlog.h"
#include "base/log.h"
#include "functions/registry.h"
#include "functions/secrets.h"
#include "functions/service.h"
#include "records/store.h"

static void get_healthz(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", a->stopping ? "stopping" : "ok");
    http_reply_json(req, a->stopping ? 503 : 200, root);
}

static void get_version(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", IGNIS_VERSION);
    cJSON_AddStringToObject(root, "api", "v1");
    cJSON_AddNumberToObject(root, "schema", store_schema_version());
    cJSON_AddNumberToObject(root, "uptime_s", (double)(now_usec() - a->started_usec) / 1e6);
    http_reply_json(req, 200, root);
}

static void post_events(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    events_http_post(req, a->events);
}

static void get_dead_letters(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    events_http_dead_letters(req, a->events);
}

static void get_logs(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    fnlog_http_logs(req, dispatch_function(a->dispatch, http_request_param(req, 0)) != NULL);
}

static void get_doctor(struct http_request *req, void *userdata)
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

static void get_usage(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    accountant_http_usage(req, a->store->db);
}

static void post_token(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    auth_http_create(req, a->auth);
}

static void get_tokens(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    auth_http_list(req, a->auth);
}

static void delete_token(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    auth_http_revoke(req, a->auth);
}

static void get_audit(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    audit_http_list(req, a->store->db);
}

static void put_secret(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    secrets_http_put(req, a->state_dir);
}

static void get_secrets(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    secrets_http_list(req, a->state_dir);
}

static void delete_secret(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    secrets_http_delete(req, a->state_dir);
}

bool api_authorize(struct http_request *req, const struct http_route *route, void *userdata)
{
    struct api *a = userdata;
    return auth_check(a->auth, req, route);
}

void api_audit(struct http_request *req, const struct http_route *route, unsigned status,
               void *userdata)
{
    struct api *a = userdata;
    /* Requests that end while the daemon is freed (answered 503) come after the journal. */
    if (a->journal && audit_record(a->journal, req, route, status) < 0)
        log_warn("cannot record an audit entry", "path=%s status=%u", http_request_path(req),
                 status);
}

/* Who may call what (docs/api.md "Roles", docs/security.md). Each entry's roles are the whole
 * access rule: tests/integration/test_auth.c tries every role on every entry. */
#define FN_READ  (AUTH_ADMIN | AUTH_DEVELOPER | AUTH_OPERATOR)
#define FN_WRITE (AUTH_ADMIN | AUTH_DEVELOPER)
#define INVOKE   (AUTH_ADMIN | AUTH_DEVELOPER | AUTH_INVOKER)
#define OPERATE  (AUTH_ADMIN | AUTH_OPERATOR)
/* Invocation bodies are the event: headers such as Lambda's client context may be large. */
#define INVOKE_MAX_HEADER (32u * 1024u)

const struct http_route api_routes[] = {
    {"GET", "/healthz", get_healthz, 0, AUTH_PUBLIC, false, 0},
    {"GET", "/v1/version", get_version, 0, AUTH_ANY_ROLE, false, 0},
    {"GET", "/v1/doctor", get_doctor, 0, OPERATE, false, 0},
    /* The registry (registry.c, docs/api.md "Functions"). */
    {"GET", "/v1/functions", registry_http_list, 0, FN_READ, false, 0},
    {"PUT", "/v1/functions/{}", registry_http_put, REGISTRY_MAX_BUNDLE, FN_WRITE, true, 0},
    {"GET", "/v1/functions/{}", registry_http_get, 0, FN_READ, false, 0},
    {"DELETE", "/v1/functions/{}", registry_http_delete, 0, FN_WRITE, true, 0},
    /* Services (registry.c, service.c; docs/api.md "Services"). */
    {"GET", "/v1/services", registry_http_service_list, 0, FN_READ, false, 0},
    {"PUT", "/v1/services/{}", registry_http_service_put, SERVICE_ARCHIVE_MAX, FN_WRITE, true, 0},
    {"GET", "/v1/services/{}", registry_http_service_get, 0, FN_READ, false, 0},
    {"DELETE", "/v1/services/{}", registry_http_service_delete, 0, FN_WRITE, true, 0},
    /* Invocations (invoke.c over dispatch.c, docs/api.md "Invocations"). */
    {"POST", "/v1/functions/{}/invoke", api_post_invoke, PROTO_DEFAULT_MAX_BODY, INVOKE, false,
     INVOKE_MAX_HEADER},
    {"GET", "/v1/invocations/{}", api_get_invocation, 0, INVOKE, false, 0},
    /* The accountant (accountant.c, docs/api.md "Usage"). */
    {"GET", "/v1/usage", get_usage, 0, FN_READ, false, 0},
    /* The operators' view (metrics.c over telemetry.c, fnlog.c; docs/operations.md). */
    {"GET", "/metrics", api_get_metrics, 0, OPERATE | AUTH_SCRAPE, false, 0},
    {"GET", "/v1/functions/{}/logs", get_logs, 0, FN_WRITE, false, 0},
    /* Tokens and the audit log (auth.c, audit.c; docs/api.md "Tokens", "Audit"). */
    {"POST", "/v1/tokens", post_token, 4096, AUTH_ADMIN, true, 0},
    {"GET", "/v1/tokens", get_tokens, 0, AUTH_ADMIN, false, 0},
    {"DELETE", "/v1/tokens/{}", delete_token, 0, AUTH_ADMIN, true, 0},
    {"GET", "/v1/audit", get_audit, 0, AUTH_ADMIN, false, 0},
    /* Secrets (secrets.c, docs/api.md "Secrets"). */
    {"PUT", "/v1/functions/{}/secrets/{}", put_secret, SECRET_MAX_BYTES, FN_WRITE, true, 0},
    {"GET", "/v1/functions/{}/secrets", get_secrets, 0, FN_WRITE, false, 0},
    {"DELETE", "/v1/functions/{}/secrets/{}", delete_secret, 0, FN_WRITE, true, 0},
    /* Events (events.c, docs/api.md "POST /v1/events"); binary mode carries attributes in
     * headers. */
    {"POST", "/v1/events", post_events, PROTO_DEFAULT_MAX_BODY, INVOKE, false, INVOKE_MAX_HEADER},
    {"GET", "/v1/events/dead-letters", get_dead_letters, 0, FN_WRITE, false, 0},
};
const size_t api_nroutes = ARRAY_SIZE(api_routes);
