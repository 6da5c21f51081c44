/* The token routes (docs/api.md "Tokens"): POST /v1/tokens, GET /v1/tokens,
 * DELETE /v1/tokens/{id}, over auth.c's tokens. */
#include "api/tokens.h"

#include <string.h>

#include "api/api.h"
#include "api/auth.h"
#include "api/errors.h"

static void add_time(cJSON *o, const char *key, int64_t us)
{
    if (!us) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char buf[32];
    format_time_ms((uint64_t)us, buf);
    cJSON_AddStringToObject(o, key, buf);
}

static cJSON *token_json(const struct auth_token_info *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "role", auth_role_name(t->role));
    cJSON_AddStringToObject(o, "state", t->state);
    add_time(o, "created_at", t->created_us);
    add_time(o, "expires_at", t->expires_us);
    add_time(o, "revoked_at", t->revoked_us);
    if (t->created_by[0])
        cJSON_AddStringToObject(o, "created_by", t->created_by);
    else
        cJSON_AddNullToObject(o, "created_by");
    return o;
}

static void set_audit_detail(struct http_request *req, const struct auth_token_info *t)
{
    char detail[160];
    snprintf(detail, sizeof(detail), "token=%s role=%s name=%s", t->id, auth_role_name(t->role),
             t->name);
    http_request_set_audit_detail(req, detail);
}

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* The body of POST /v1/tokens: {"role", "name"?, "expires_in"?}. Returns 0, or -EINVAL with
 * err (bad_request) saying what is wrong. */
static int parse_request(const cJSON *root, enum auth_role *ret_role, const char **ret_name,
                         int64_t *ret_expires_s, struct ig_error *err)
{
    static const char *const allowed[] = {"role", "name", "expires_in", NULL};
    if (api_check_fields(root, allowed, err) < 0)
        return -EINVAL;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(root, "role");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    const char *why = NULL;
    *ret_expires_s = 0;
    if (!cJSON_IsString(role) || auth_role_parse(role->valuestring, ret_role) < 0)
        why = "role: must be one of admin, developer, invoker, operator";
    else if (name && (!cJSON_IsString(name) || !name_valid(name->valuestring)))
        why = "name: must be 1 to 64 printable characters without spaces";
    else if (expires && (!cJSON_IsString(expires) ||
                         auth_parse_duration(expires->valuestring, ret_expires_s) < 0))
        why = "expires_in: must be a duration such as 3600s, 90m, 12h or 30d (at most 100 "
              "years)";
    if (why)
        return ig_error_set_reason(err, EINVAL, "bad_request", "%s", why);
    *ret_name = name ? name->valuestring : NULL;
    return 0;
}

void api_post_token(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    size_t len;
    const char *body = http_request_body(req, &len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        http_reply_error(req, 400, "bad_request",
                         "the body must be a JSON object: {\"role\": ..., \"name\": ..., "
                         "\"expires_in\": ...}");
        return;
    }
    enum auth_role role;
    const char *name = NULL;
    int64_t expires_s;
    struct ig_error err = {};
    if (parse_request(root, &role, &name, &expires_s, &err) < 0) {
        cJSON_Delete(root);
        api_reply_error(req, &err);
        return;
    }
    const struct http_caller *c = http_request_caller(req);
    struct auth_token_info t;
    char text[AUTH_TOKEN_LEN + 1];
    int r =
        auth_token_create(a->auth, role, name, expires_s, c ? c->token_id : NULL, &t, text, &err);
    cJSON_Delete(root);
    if (r < 0) {
        api_reply_error(req, &err);
        return;
    }
    set_audit_detail(req, &t);
    cJSON *o = token_json(&t);
    cJSON_AddStringToObject(o, "token", text);
    explicit_bzero(text, sizeof(text));
    http_reply_json(req, 201, o);
}

void api_get_tokens(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "tokens");
    for (size_t i = 0; i < auth_token_count(a->auth); i++) {
        struct auth_token_info t;
        auth_token_at(a->auth, i, &t);
        cJSON_AddItemToArray(arr, token_json(&t));
    }
    http_reply_json(req, 200, root);
}

void api_delete_token(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *id = http_request_param(req, 0);
    struct auth_token_info t = {};
    struct ig_error err = {};
    int r = auth_token_revoke(a->auth, id, &t, &err);
    /* Audited with who it names, also when the revocation is refused. */
    if (t.id)
        set_audit_detail(req, &t);
    if (r < 0) {
        api_reply_error(req, &err);
        return;
    }
    http_reply_json(req, 200, token_json(&t));
}
