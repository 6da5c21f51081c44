/* The routes of the registry (docs/api.md "Functions", "Services"): /v1/functions and
 * /v1/services. Each handler's userdata is the struct api (api.h). */
#pragma once

#include "base/http.h"

void api_function_list(struct http_request *req, void *userdata);
void api_function_get(struct http_request *req, void *userdata);
/* The body is the bundle; the reply comes when the registry is done with it. */
void api_function_put(struct http_request *req, void *userdata);
/* The reply comes once the function has drained (registry.h). */
void api_function_delete(struct http_request *req, void *userdata);

void api_service_list(struct http_request *req, void *userdata);
void api_service_get(struct http_request *req, void *userdata);
/* The body is the deploy archive (functions/service.h). */
void api_service_put(struct http_request *req, void *userdata);
void api_service_delete(struct http_request *req, void *userdata);
