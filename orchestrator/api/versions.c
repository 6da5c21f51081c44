#include "api/versions.h"

#include "api/api.h"
#include "api/errors.h"
#include "api/functions.h"
#include "functions/registry.h"

/* ---- bodies ---- */

static cJSON *alias_json(const struct registry_alias *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON *w = cJSON_AddObjectToObject(o, "versions");
    for (size_t i = 0; i < a->n; i++) {
        char key[16];
        snprintf(key, sizeof(key), "%u", a->versions[i]);
        cJSON_AddNumberToObject(w, key, a->weights[i]);
    }
    cJSON_AddNumberToObject(o, "primary", alias_primary(a));
    return o;
}

cJSON *api_aliases_json(const struct registry_function *f)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < f->n_aliases; i++)
        cJSON_AddItemToArray(arr, alias_json(f->aliases[i]));
    return arr;
}

cJSON *api_versions_json(const struct registry_function *f)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < f->n_versions; i++) {
        const struct registry_version *v = f->versions[i];
        char created[32];
        format_time_ms(v->created_usec, created);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "version", v->version);
        cJSON_AddStringToObject(o, "digest", v->digest);
        cJSON_AddStringToObject(o, "created_at", created);
        cJSON_AddNumberToObject(o, "bundle_bytes", (double)v->bundle_bytes);
        cJSON_AddBoolToObject(o, "current", v->version == f->version);
        cJSON *names = cJSON_AddArrayToObject(o, "aliases");
        for (size_t j = 0; j < f->n_aliases; j++)
            if (alias_has(f->aliases[j], v->version))
                cJSON_AddItemToArray(names, cJSON_CreateString(f->aliases[j]->name));
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* A version number as a JSON value gives it: 1..UINT32_MAX (registry_parse_version reads one
 * from text). */
static bool number_version(const cJSON *v, uint32_t *ret)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > UINT32_MAX ||
        v->valuedouble != (double)(uint32_t)v->valuedouble)
        return false;
    *ret = (uint32_t)v->valuedouble;
    return true;
}

/* ---- reads ---- */

static const struct registry_function *find(struct http_request *req, void *userdata)
{
    struct ig_error err = {};
    const struct registry_function *f =
        registry_find(((struct api *)userdata)->registry, http_request_param(req, 0), &err);
    if (!f)
        api_reply_error(req, &err);
    return f;
}

void api_versions_list(struct http_request *req, void *userdata)
{
    const struct registry_function *f = find(req, userdata);
    if (!f)
        return;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", f->name);
    cJSON_AddNumberToObject(root, "current_version", f->version);
    cJSON_AddItemToObject(root, "versions", api_versions_json(f));
    http_reply_json(req, 200, root);
}

void api_aliases_list(struct http_request *req, void *userdata)
{
    const struct registry_function *f = find(req, userdata);
    if (!f)
        return;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", f->name);
    cJSON_AddItemToObject(root, "aliases", api_aliases_json(f));
    http_reply_json(req, 200, root);
}

void api_alias_get(struct http_request *req, void *userdata)
{
    const struct registry_function *f = find(req, userdata);
    if (!f)
        return;
    struct ig_error err = {};
    const char *name = http_request_param(req, 1);
    const struct registry_alias *a = registry_alias(f, name);
    if (!a) {
        if (alias_check_name(name, &err) == 0)
            ig_error_set_reason(&err, ENOENT, "alias_not_found", "function %s has no alias %s",
                                f->name, name);
        api_reply_error(req, &err);
        return;
    }
    http_reply_json(req, 200, alias_json(a));
}

/* ---- mutations ---- */

/* An alias set or a rollback is done: the alias as it is now, and the current version. */
static void alias_set_done(void *userdata, const struct ig_error *err,
                           const struct registry_result *res)
{
    struct http_request *req = userdata;
    if (api_mutation_failed(req, err))
        return;
    cJSON *o = alias_json(res->alias);
    cJSON_AddStringToObject(o, "function", res->name);
    cJSON_AddNumberToObject(o, "current_version", res->version);
    http_reply_json(req, 200, o);
}

/* The body's routes: {"version": N} or {"versions": {"N": weight, ...}} (more than the limit
 * are counted, for the registry to refuse). 0, or -EINVAL with err. */
static int parse_routes(const cJSON *root, uint32_t *versions, uint32_t *weights, size_t *ret_n,
                        struct ig_error *err)
{
    static const char *const allowed[] = {"version", "versions", NULL};
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(root, "versions");
    if (api_check_fields(root, allowed, err) < 0)
        return -EINVAL;
    if (!one == !many)
        return ig_error_set_reason(err, EINVAL, "bad_request",
                                   "give one of version (a number) or versions (an object of "
                                   "version: weight)");
    if (one) {
        if (!number_version(one, &versions[0]))
            return ig_error_set_reason(err, EINVAL, "bad_request",
                                       "version: must be a version number");
        weights[0] = ALIAS_TOTAL_WEIGHT;
        *ret_n = 1;
        return 0;
    }
    if (!cJSON_IsObject(many))
        return ig_error_set_reason(err, EINVAL, "bad_request",
                                   "versions: must be an object of version: weight");
    size_t n = 0;
    for (const cJSON *e = many->child; e; e = e->next, n++) {
        uint32_t v, w;
        if (!registry_parse_version(e->string, &v))
            return ig_error_set_reason(err, EINVAL, "bad_request",
                                       "versions: \"%.40s\" is not a version number", e->string);
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1000 ||
            e->valuedouble != (double)(uint32_t)e->valuedouble)
            return ig_error_set_reason(err, EINVAL, "invalid_weights",
                                       "versions: the weight of %u must be a whole number from "
                                       "1 to 100",
                                       v);
        w = (uint32_t)e->valuedouble;
        if (n < ALIAS_MAX_VERSIONS) {
            versions[n] = v;
            weights[n] = w;
        }
    }
    *ret_n = n;
    return 0;
}

static int start_alias_put(struct http_request *req, struct api *a, struct ig_error *err)
{
    uint32_t versions[ALIAS_MAX_VERSIONS], weights[ALIAS_MAX_VERSIONS];
    size_t n = 0, len;
    const char *body = http_request_body(req, &len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    int q = cJSON_IsObject(root)
                ? parse_routes(root, versions, weights, &n, err)
                : ig_error_set_reason(err, EINVAL, "bad_request",
                                      "the body must be a JSON object: {\"version\": N} or "
                                      "{\"versions\": {\"N\": weight, ...}}");
    cJSON_Delete(root);
    if (q < 0)
        return q;
    return registry_set_alias(a->registry, http_request_param(req, 0), http_request_param(req, 1),
                              versions, weights, n, alias_set_done, req, err);
}

void api_alias_put(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_alias_put);
}

static void alias_deleted(void *userdata, const struct ig_error *err,
                          const struct registry_result *res)
{
    struct http_request *req = userdata;
    if (api_mutation_failed(req, err))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", res->name);
    cJSON_AddStringToObject(o, "name", http_request_param(req, 1));
    cJSON_AddBoolToObject(o, "deleted", true);
    http_reply_json(req, 200, o);
}

static int start_alias_delete(struct http_request *req, struct api *a, struct ig_error *err)
{
    return registry_delete_alias(a->registry, http_request_param(req, 0),
                                 http_request_param(req, 1), alias_deleted, req, err);
}

void api_alias_delete(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_alias_delete);
}

static int start_rollback(struct http_request *req, struct api *a, struct ig_error *err)
{
    static const char *const allowed[] = {"to", NULL};
    size_t len;
    const char *body = http_request_body(req, &len);
    cJSON *root = len ? cJSON_ParseWithLength(body, len) : cJSON_CreateObject();
    uint32_t to = 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "to");
    int q = 0;
    if (!cJSON_IsObject(root))
        q = ig_error_set_reason(err, EINVAL, "bad_request",
                                "the body must be empty or a JSON object: {\"to\": N}");
    else if (api_check_fields(root, allowed, err) < 0)
        q = -EINVAL;
    else if (t && !number_version(t, &to))
        q = ig_error_set_reason(err, EINVAL, "bad_request", "to: must be a version number");
    cJSON_Delete(root);
    if (q < 0)
        return q;
    return registry_rollback(a->registry, http_request_param(req, 0), to, alias_set_done, req, err);
}

void api_rollback_post(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_rollback);
}

static void version_deleted(void *userdata, const struct ig_error *err,
                            const struct registry_result *res)
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

static int start_version_delete(struct http_request *req, struct api *a, struct ig_error *err)
{
    uint32_t v;
    if (!registry_parse_version(http_request_param(req, 1), &v))
        return ig_error_set_reason(err, EINVAL, "bad_request", "\"%.40s\" is not a version number",
                                   http_request_param(req, 1));
    return registry_delete_version(a->registry, http_request_param(req, 0), v, version_deleted, req,
                                   err);
}

void api_version_delete(struct http_request *req, void *userdata)
{
    api_mutation_start(req, userdata, start_version_delete);
}
