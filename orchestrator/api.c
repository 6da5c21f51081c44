#include "api.h"

#include "config.h"
#include "daemon.h"
#include "doctor.h"
#include "fnlog.h"
#include "registry.h"
#include "service.h"
#include "store.h"
#include "telemetry.h"

static void get_healthz(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", d->stopping ? "stopping" : "ok");
    http_reply_json(req, d->stopping ? 503 : 200, root);
}

static void get_version(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", IGNIS_VERSION);
    cJSON_AddStringToObject(root, "api", "v1");
    cJSON_AddNumberToObject(root, "schema", store_schema_version());
    cJSON_AddNumberToObject(root, "uptime_s", (double)(now_usec() - d->started_usec) / 1e6);
    http_reply_json(req, 200, root);
}

static void post_invoke(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    dispatch_http_invoke(req, d->dispatch);
}

static void get_invocation(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    dispatch_http_get_invocation(req, d->dispatch);
}

static void post_events(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    events_http_post(req, d->events);
}

static void get_dead_letters(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    events_http_dead_letters(req, d->events);
}

static void get_metrics(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    telemetry_http_metrics(req, d->dispatch, d->started_usec);
}

static void get_logs(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    fnlog_http_logs(req, dispatch_function(d->dispatch, http_request_param(req, 0)) != NULL);
}

static void get_doctor(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    struct doctor_env env = {.state_dir = d->opts.state_dir,
                             .images_dir = d->dispatch->opts.images_dir,
                             .cg = d->cgroups};
    cJSON *checks;
    enum doctor_status worst;
    if (doctor_run(&env, &checks, &worst) < 0) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", doctor_status_name(worst));
    cJSON_AddItemToObject(root, "checks", checks);
    http_reply_json(req, 200, root);
}

static void get_usage(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    accountant_http_usage(req, d->store->db);
}

const struct http_route api_routes[] = {
    {"GET", "/healthz", get_healthz, 0},
    {"GET", "/v1/version", get_version, 0},
    {"GET", "/v1/doctor", get_doctor, 0},
    /* The registry (registry.c, docs/api.md "Functions"). */
    {"GET", "/v1/functions", registry_http_list, 0},
    {"PUT", "/v1/functions/{}", registry_http_put, REGISTRY_MAX_BUNDLE},
    {"GET", "/v1/functions/{}", registry_http_get, 0},
    {"DELETE", "/v1/functions/{}", registry_http_delete, 0},
    /* Services (registry.c, service.c; docs/api.md "Services"). */
    {"GET", "/v1/services", registry_http_service_list, 0},
    {"PUT", "/v1/services/{}", registry_http_service_put, SERVICE_ARCHIVE_MAX},
    {"GET", "/v1/services/{}", registry_http_service_get, 0},
    {"DELETE", "/v1/services/{}", registry_http_service_delete, 0},
    /* Dispatch (dispatch.c, docs/api.md "Invocations"). */
    {"POST", "/v1/functions/{}/invoke", post_invoke, PROTO_DEFAULT_MAX_BODY},
    {"GET", "/v1/invocations/{}", get_invocation, 0},
    /* The accountant (accountant.c, docs/api.md "Usage"). */
    {"GET", "/v1/usage", get_usage, 0},
    /* The operators' view (telemetry.c, fnlog.c; docs/operations.md). */
    {"GET", "/metrics", get_metrics, 0},
    {"GET", "/v1/functions/{}/logs", get_logs, 0},
    /* Events (events.c, docs/api.md "POST /v1/events"). */
    {"POST", "/v1/events", post_events, PROTO_DEFAULT_MAX_BODY},
    {"GET", "/v1/events/dead-letters", get_dead_letters, 0},
};
const size_t api_nroutes = ARRAY_SIZE(api_routes);
