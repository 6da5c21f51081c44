#include "api/functions.h"

#include <string.h>

#include "api/api.h"
#include "api/errors.h"
#include "api/versions.h"
#include "functions/registry.h"

/* ---- bodies ---- */

static cJSON *function_summary(const struct registry_function *f)
{
    char created[32], updated[32];
    cJSON *o = cJSON_CreateObject();
    format_time_ms(f->created_usec, created);
    format_time_ms(f->updated_usec, updated);
    cJSON_AddStringToObject(o, "name", f->name);
    cJSON_AddNumberToObject(o, "version", f->version);
    cJSON_AddStringToObject(o, "digest", f->digest);
    cJSON_AddStringToObject(o, "runtime", manifest_runtime_name(f->manifest->runtime));
    cJSON_AddStringToObject(o, "state", f->deleting ? "deleting" : "active");
    if (f->service[0])
        cJSON_AddStringToObject(o, "service", f->service);
    else
        cJSON_AddNullToObject(o, "service");
    cJSON_AddStringToObject(o, "created_at", created);
    cJSON_AddStringToObject(o, "updated_at", updated);
    return o;
}

static void add_live(const struct registry *r, const struct registry_function *f, cJSON *o)
{
    registry_live(r, f, cJSON_AddObjectToObject(o, "live"));
}

/* A service and its functions: their names, or (full) their summaries and the spec. */
static cJSON *service_summary(const struct registry *r, const struct registry_service *sv,
                              bool full)
{
    char created[32], updated[32];
    cJSON *o = cJSON_CreateObject();
    format_time_ms(sv->created_usec, created);
    format_time_ms(sv->updated_usec, updated);
    cJSON_AddStringToObject(o, "name", sv->name);
    cJSON_AddStringToObject(o, "state", sv->deleting ? "deleting" : "active");
    cJSON_AddStringToObject(o, "created_at", created);
    cJSON_AddStringToObject(o, "updated_at", updated);
    cJSON *fns = cJSON_AddArrayToObject(o, "functions");
    for (size_t i = 0; i < registry_count(r); i++) {
        const struct registry_function *f = registry_at(r, i);
        if (!streq(f->service, sv->name))
            continue;
        if (!full) {
            cJSON_AddItemToArray(fns, cJSON_CreateString(f->name));
            continue;
        }
        cJSON *fo = function_summary(f);
        add_live(r, f, fo);
        cJSON_AddItemToArray(fns, fo);
    }
    if (full)
        cJSON_AddItemToObject(o, "spec", cJSON_Parse(sv->spec));
    return o;
}

static cJSON *name_array(const char (*names)[MANIFEST_NAME_MAX + 1], size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
    return arr;
}

/* ---- mutations: the reply comes from the registry's done ---- */

/* The client went away (or the server stops) before the registry's answer: the registry stops
 * reading the body and will not call back; the mutation goes on. The daemon clears a->registry
 * once it is freed: nothing is left to detach from then. */
static void mutation_gone(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    if (a->registry)
        registry_detach(a->registry, req);
}

/* Starts a mutation: the close hook is set first, since a delete may be done before it returns;
 * a refusal (q < 0) is answered at once. */
void api_mutation_start(struct http_request *req, struct api *a,
                        int (*start)(struct http_request *req, struct api *a, struct ig_error *err))
{
    struct ig_error err = {};
    if (!api_store_reachable(&err)) {
        api_reply_error(req, &err);
        return;
    }
    http_request_set_context(req, a, mutation_gone);
    if (start(req, a, &err) < 0) {
        http_request_set_context(req, NULL, NULL);
        api_reply_error(req, &err);
    }
}

/* In a done callback: the request needs its close hook no more. Answers a failure and says
 * whether there was one. */
bool api_mutation_failed(struct http_request *req, const struct ig_error *err)
{
    http_request_set_context(req, NULL, NULL);
    if (err)
        api_reply_error(req, err);
    return err != NULL;
}

static void pushed(void *userdata, const struct ig_error *err, const struct registry_result *res)
{
    struct http_request *req = userdata;
    if (api_mutation_failed(req, err))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", res->name);
    cJSON_AddNumberToObject(o, "version", res->version);
    cJSON_AddStringToObject(o, "digest", res->digest);
    cJSON_AddBoolToObject(o, "created", res->created);
    cJSON *pruned = cJSON_AddArrayToObject(o, "pruned");
    for (size_t i = 0; i < res->n_pruned; i++)
        cJSON_AddItemToArray(pruned, cJSON_CreateNumber(res->pruned[i]));
    http_reply_json(req, res->created ? 201 : 200, o);
}

static int start_push(struct http_request *req, struct api *a, struct ig_error *err)
{
    size_t len;
    const char *body = http_request_body(req, &len);
    const char *promote = http_request_query(req, "promote");
    if (promote && !streq(promote, "true") && !streq(promote, "false"))
        return ig_error_set_reason(err, EINVAL, "bad_request",
                                   "promote must be true or false, not '%.40s'", promote);
    return registry_push_version(a->registry, http_request_param(req, 0), body, len,
                                 !promote || streq(promote, "true"), pushed, req, err);
}

void api_function_put(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_push);
}

static void deleted(void *userdata, const struct ig_error *err, const struct registry_result *res)
{
    struct http_request *req = userdata;
    if (api_mutation_failed(req, err))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", res->name);
    cJSON_AddNumberToObject(o, "version", res->version);
    cJSON_AddBoolToObject(o, "deleted", true);
    cJSON_AddNumberToObject(o, "bundles_removed", (double)res->bundles_removed);
    http_reply_json(req, 200, o);
}

static int start_delete(struct http_request *req, struct api *a, struct ig_error *err)
{
    return registry_delete(a->registry, http_request_param(req, 0), deleted, req, err);
}

void api_function_delete(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_delete);
}

static void deployed(void *userdata, const struct ig_error *err, const struct registry_result *res)
{
    struct http_request *req = userdata;
    if (api_mutation_failed(req, err))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", res->name);
    cJSON *arr = cJSON_AddArrayToObject(o, "functions");
    for (size_t i = 0; i < res->n_deployed; i++) {
        const struct registry_deployed *d = &res->deployed[i];
        cJSON *fo = cJSON_CreateObject();
        cJSON_AddStringToObject(fo, "name", d->name);
        cJSON_AddNumberToObject(fo, "version", d->version);
        cJSON_AddStringToObject(fo, "digest", d->digest);
        cJSON_AddBoolToObject(fo, "created", d->created);
        cJSON_AddItemToArray(arr, fo);
    }
    cJSON_AddItemToObject(o, "removed", name_array(res->removed, res->n_removed));
    http_reply_json(req, 200, o);
}

static int start_deploy(struct http_request *req, struct api *a, struct ig_error *err)
{
    size_t len;
    const char *body = http_request_body(req, &len);
    return registry_deploy(a->registry, http_request_param(req, 0), body, len, deployed, req, err);
}

void api_service_put(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_deploy);
}

static void undeployed(void *userdata, const struct ig_error *err,
                       const struct registry_result *res)
{
    struct http_request *req = userdata;
    if (api_mutation_failed(req, err))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", res->name);
    cJSON_AddItemToObject(o, "functions", name_array(res->removed, res->n_removed));
    cJSON_AddBoolToObject(o, "deleted", true);
    cJSON_AddNumberToObject(o, "bundles_removed", (double)res->bundles_removed);
    http_reply_json(req, 200, o);
}

static int start_undeploy(struct http_request *req, struct api *a, struct ig_error *err)
{
    return registry_undeploy(a->registry, http_request_param(req, 0), undeployed, req, err);
}

void api_service_delete(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_undeploy);
}

/* ---- reads ---- */

void api_function_list(struct http_request *req, void *userdata)
{
    const struct registry *r = ((struct api *)userdata)->registry;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "functions");
    /* Each with its live state, so `ignis top` sees every function in one request. */
    for (size_t i = 0; i < registry_count(r); i++) {
        cJSON *o = function_summary(registry_at(r, i));
        add_live(r, registry_at(r, i), o);
        cJSON_AddItemToArray(arr, o);
    }
    http_reply_json(req, 200, root);
}

void api_function_get(struct http_request *req, void *userdata)
{
    const struct registry *r = ((struct api *)userdata)->registry;
    struct ig_error err = {};
    const struct registry_function *f = registry_find(r, http_request_param(req, 0), &err);
    if (!f) {
        api_reply_error(req, &err);
        return;
    }
    cJSON *root = function_summary(f);
    cJSON_AddNumberToObject(root, "bundle_bytes", (double)f->bundle_bytes);
    cJSON_AddItemToObject(root, "manifest", manifest_to_json(f->manifest));
    cJSON_AddItemToObject(root, "versions", api_versions_json(f));
    cJSON_AddItemToObject(root, "aliases", api_aliases_json(f));
    add_live(r, f, root);
    http_reply_json(req, 200, root);
}

static int service_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct registry_service *const *)a)->name,
                  (*(const struct registry_service *const *)b)->name);
}

void api_service_list(struct http_request *req, void *userdata)
{
    const struct registry *r = ((struct api *)userdata)->registry;
    size_t n = registry_service_count(r);
    _cleanup_free_ const struct registry_service **sorted = calloc(n + 1, sizeof(*sorted));
    if (!sorted) {
        struct ig_error err = {};
        ig_error_set(&err, ENOMEM, "out of memory");
        api_reply_error(req, &err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = registry_service_at(r, i);
    qsort(sorted, n, sizeof(*sorted), service_cmp);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "services");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, service_summary(r, sorted[i], false));
    http_reply_json(req, 200, root);
}

void api_service_get(struct http_request *req, void *userdata)
{
    const struct registry *r = ((struct api *)userdata)->registry;
    struct ig_error err = {};
    const struct registry_service *sv = registry_find_service(r, http_request_param(req, 0), &err);
    if (sv)
        http_reply_json(req, 200, service_summary(r, sv, true));
    else
        api_reply_error(req, &err);
}
