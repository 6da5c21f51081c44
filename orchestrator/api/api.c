#include "api/api.h"

#include "api/audit.h"
#include "api/auth.h"
#include "api/functions.h"
#include "api/hosts.h"
#include "api/invoke.h"
#include "api/metrics.h"
#include "api/ops.h"
#include "api/secrets.h"
#include "api/series.h"
#include "api/ui.h"
#include "api/tokens.h"
#include "api/versions.h"
#include "dispatch/dispatch.h"
#include "api/events.h"
#include "events/events.h"
#include "base/log.h"
#include "functions/registry.h"
#include "functions/secrets.h"
#include "functions/service.h"

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
    {"GET", "/healthz", api_get_healthz, 0, AUTH_PUBLIC, false, 0},
    {"GET", "/readyz", api_get_readyz, 0, AUTH_PUBLIC, false, 0},
    {"GET", "/v1/version", api_get_version, 0, AUTH_ANY_ROLE, false, 0},
    /* The console (ui.c; docs/operations.md "The console"): its files are public, holding no
     * data; the page reads the API below with the token it is given. */
    {"GET", "/ui", api_get_ui_redirect, 0, AUTH_PUBLIC, false, 0},
    {"GET", "/ui/", api_get_ui_index, 0, AUTH_PUBLIC, false, 0},
    {"GET", "/ui/{}", api_get_ui_asset, 0, AUTH_PUBLIC, false, 0},
    {"GET", "/v1/whoami", api_get_whoami, 0, AUTH_ANY_ROLE, false, 0},
    {"GET", "/v1/doctor", api_get_doctor, 0, OPERATE, false, 0},
    {"GET", "/v1/hosts", api_get_hosts, 0, OPERATE, false, 0},
    {"POST", "/v1/hosts/{}/drain", api_post_host_drain, 0, OPERATE, true, 0},
    {"DELETE", "/v1/hosts/{}", api_delete_host, 0, OPERATE, true, 0},
    /* The registry (functions.c over functions/registry.c, docs/api.md "Functions"). */
    {"GET", "/v1/functions", api_function_list, 0, FN_READ, false, 0},
    {"PUT", "/v1/functions/{}", api_function_put, REGISTRY_MAX_BUNDLE, FN_WRITE, true, 0},
    {"GET", "/v1/functions/{}", api_function_get, 0, FN_READ, false, 0},
    {"DELETE", "/v1/functions/{}", api_function_delete, 0, FN_WRITE, true, 0},
    /* Versions and aliases (versions.c over functions/registry.c, docs/api.md "Versions and
     * aliases"). */
    {"GET", "/v1/functions/{}/versions", api_versions_list, 0, FN_READ, false, 0},
    {"DELETE", "/v1/functions/{}/versions/{}", api_version_delete, 0, FN_WRITE, true, 0},
    {"GET", "/v1/functions/{}/aliases", api_aliases_list, 0, FN_READ, false, 0},
    {"GET", "/v1/functions/{}/aliases/{}", api_alias_get, 0, FN_READ, false, 0},
    {"PUT", "/v1/functions/{}/aliases/{}", api_alias_put, 4096, FN_WRITE, true, 0},
    {"DELETE", "/v1/functions/{}/aliases/{}", api_alias_delete, 0, FN_WRITE, true, 0},
    {"POST", "/v1/functions/{}/rollback", api_rollback_post, 4096, FN_WRITE, true, 0},
    /* Services (functions.c over functions/registry.c, service.c; docs/api.md "Services"). */
    {"GET", "/v1/services", api_service_list, 0, FN_READ, false, 0},
    {"PUT", "/v1/services/{}", api_service_put, SERVICE_ARCHIVE_MAX, FN_WRITE, true, 0},
    {"GET", "/v1/services/{}", api_service_get, 0, FN_READ, false, 0},
    {"DELETE", "/v1/services/{}", api_service_delete, 0, FN_WRITE, true, 0},
    /* Invocations (invoke.c over dispatch.c, docs/api.md "Invocations"). */
    {"POST", "/v1/functions/{}/invoke", api_post_invoke, PROTO_DEFAULT_MAX_BODY, INVOKE, false,
     INVOKE_MAX_HEADER},
    {"GET", "/v1/invocations/{}", api_get_invocation, 0, INVOKE, false, 0},
    /* The accountant (accountant.c, docs/api.md "Usage"). */
    {"GET", "/v1/usage", api_get_usage, 0, FN_READ, false, 0},
    /* The operators' view (metrics.c over telemetry.c, ops.c over fnlog.c; docs/operations.md). */
    {"GET", "/metrics", api_get_metrics, 0, OPERATE | AUTH_SCRAPE, false, 0},
    {"GET", "/v1/functions/{}/logs", api_get_logs, 0, FN_WRITE, false, 0},
    /* The console's charts (series.c over records/series.c; docs/api.md "Series"). */
    {"GET", "/v1/functions/{}/series", api_get_function_series, 0, FN_READ, false, 0},
    {"GET", "/v1/series", api_get_series_summary, 0, FN_READ, false, 0},
    /* Tokens and the audit log (auth.c, audit.c; docs/api.md "Tokens", "Audit"). */
    {"POST", "/v1/tokens", api_post_token, 4096, AUTH_ADMIN, true, 0},
    {"GET", "/v1/tokens", api_get_tokens, 0, AUTH_ADMIN, false, 0},
    {"DELETE", "/v1/tokens/{}", api_delete_token, 0, AUTH_ADMIN, true, 0},
    {"GET", "/v1/audit", api_get_audit, 0, AUTH_ADMIN, false, 0},
    /* Secrets (secrets.c over functions/secrets.c, docs/api.md "Secrets"). */
    {"PUT", "/v1/functions/{}/secrets/{}", api_secret_put, SECRET_MAX_BYTES, FN_WRITE, true, 0},
    {"GET", "/v1/functions/{}/secrets", api_secrets_list, 0, FN_WRITE, false, 0},
    {"DELETE", "/v1/functions/{}/secrets/{}", api_secret_delete, 0, FN_WRITE, true, 0},
    /* Events (api/events.c, docs/api.md "POST /v1/events"); binary mode carries attributes in
     * headers. */
    {"POST", "/v1/events", api_events_post, PROTO_DEFAULT_MAX_BODY, INVOKE, false,
     INVOKE_MAX_HEADER},
    {"GET", "/v1/events/dead-letters", api_events_dead_letters, 0, FN_WRITE, false, 0},
};
const size_t api_nroutes = ARRAY_SIZE(api_routes);
