/* The routes of a function's versions and aliases (docs/api.md "Versions and aliases"):
 * /v1/functions/{name}/versions, /aliases and /rollback, over functions/registry.c. Each
 * handler's userdata is the struct api (api.h). */
#pragma once

#include <cjson/cJSON.h>

#include "base/http.h"

struct registry_function;

/* f's kept versions, oldest first, each with the aliases pointing at it (GET
 * /v1/functions/{name} shows them too). */
cJSON *api_versions_json(const struct registry_function *f);
/* f's aliases by name, each with its versions' weights. */
cJSON *api_aliases_json(const struct registry_function *f);

void api_versions_list(struct http_request *req, void *userdata);
/* The reply comes once the version has drained (registry.h). */
void api_version_delete(struct http_request *req, void *userdata);
void api_aliases_list(struct http_request *req, void *userdata);
void api_alias_get(struct http_request *req, void *userdata);
/* The body: {"version": N} or {"versions": {"N": weight, ...}}. */
void api_alias_put(struct http_request *req, void *userdata);
void api_alias_delete(struct http_request *req, void *userdata);
/* The body: empty, or {"to": N}. */
void api_rollback_post(struct http_request *req, void *userdata);
