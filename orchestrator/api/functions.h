/* The routes of the registry (docs/api.md "Functions", "Services"): /v1/functions and
 * /v1/services. Each handler's userdata is the struct api (api.h). */
#pragma once

#include <stdbool.h>

#include "base/http.h"

struct api;
struct ig_error;

/* A registry mutation from a request (versions.c's too): start is called with the request's
 * close hook set (the registry's done may run before start returns, and the client may go
 * away: then the registry is detached from it); a refusal (start < 0) is answered at once.
 * Every mutation writes the store: while it is unreachable the request is refused (503
 * store_unavailable) before anything is done, rather than a delete draining the function and
 * then waiting for the store with its records. */
void api_mutation_start(struct http_request *req, struct api *a,
                        int (*start)(struct http_request *req, struct api *a,
                                     struct ig_error *err));
/* In the registry's done: clears the close hook; answers err and returns true when there is
 * one. */
bool api_mutation_failed(struct http_request *req, const struct ig_error *err);

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
