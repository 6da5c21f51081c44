#include "api/ui.h"

#include <string.h>

#include "api/auth.h"

static void security_headers(struct http_request *req)
{
    http_set_header(req, "Content-Security-Policy", UI_CSP);
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    http_set_header(req, "X-Frame-Options", "DENY");
    http_set_header(req, "Referrer-Policy", "no-referrer");
    /* Small files, served from memory: the browser asks again rather than keep an old build. */
    http_set_header(req, "Cache-Control", "no-cache");
}

static void serve(struct http_request *req, const char *name)
{
    for (size_t i = 0; i < ui_assets_count; i++) {
        if (strcmp(ui_assets[i].name, name) != 0)
            continue;
        security_headers(req);
        http_reply(req, 200, ui_assets[i].content_type, ui_assets[i].data, ui_assets[i].len);
        return;
    }
    security_headers(req);
    http_reply_error(req, 404, "not_found", "no such console file");
}

void api_get_ui_index(struct http_request *req, void *userdata)
{
    serve(req, "index.html");
}

void api_get_ui_asset(struct http_request *req, void *userdata)
{
    serve(req, http_request_param(req, 0));
}

void api_get_ui_redirect(struct http_request *req, void *userdata)
{
    http_set_header(req, "Location", "/ui/");
    http_reply(req, 308, "text/plain; charset=utf-8", "/ui/\n", 5);
}

void api_get_whoami(struct http_request *req, void *userdata)
{
    const struct http_caller *c = http_request_caller(req);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token_id", c ? c->token_id : "");
    cJSON_AddStringToObject(o, "name", c ? c->name : "");
    cJSON_AddStringToObject(
        o, "role", c && c->role ? auth_role_name((enum auth_role)__builtin_ctz(c->role)) : "");
    http_reply_json(req, 200, o);
}
