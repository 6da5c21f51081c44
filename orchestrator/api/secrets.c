#include "api/secrets.h"

#include "api/api.h"
#include "api/errors.h"
#include "functions/secrets.h"

void api_secret_put(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *fn = http_request_param(req, 0), *name = http_request_param(req, 1);
    struct ig_error err = {};
    size_t len;
    const char *value = http_request_body(req, &len);
    /* The audit line names the secret once the request is one that may store it. */
    if (secrets_check_names(fn, name, NULL) == 0 && len > 0) {
        char detail[200];
        snprintf(detail, sizeof(detail), "secret=%s bytes=%zu", name, len);
        http_request_set_audit_detail(req, detail);
    }
    bool created;
    if (secrets_put(a->secrets, fn, name, value, len, &created, &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", fn);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "bytes", (double)len);
    cJSON_AddBoolToObject(o, "created", created);
    http_reply_json(req, created ? 201 : 200, o);
}

void api_secrets_list(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *fn = http_request_param(req, 0);
    struct ig_error err = {};
    struct secret_info *list;
    size_t n;
    if (secrets_list(a->secrets, fn, &list, &n, &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "function", fn);
    cJSON *arr = cJSON_AddArrayToObject(root, "secrets");
    for (size_t i = 0; i < n; i++) {
        char when[32];
        cJSON *o = cJSON_CreateObject();
        format_time_ms(list[i].updated_usec, when);
        cJSON_AddStringToObject(o, "name", list[i].name);
        cJSON_AddNumberToObject(o, "bytes", (double)list[i].bytes);
        cJSON_AddStringToObject(o, "updated_at", when);
        /* false: shared through the store, and this host's secrets_key does not open it. */
        cJSON_AddBoolToObject(o, "usable", list[i].usable);
        cJSON_AddItemToArray(arr, o);
    }
    secrets_list_free(list, n);
    http_reply_json(req, 200, root);
}

void api_secret_delete(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *fn = http_request_param(req, 0), *name = http_request_param(req, 1);
    struct ig_error err = {};
    if (secrets_check_names(fn, name, NULL) == 0) {
        char detail[200];
        snprintf(detail, sizeof(detail), "secret=%s", name);
        http_request_set_audit_detail(req, detail);
    }
    if (secrets_delete(a->secrets, fn, name, &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", fn);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "deleted", true);
    http_reply_json(req, 200, o);
}
