/* The invocation routes (docs/api.md "Invocations"): POST /v1/functions/{name}/invoke, sync or
 * async, and GET /v1/invocations/{id}. Route userdata: the struct api. */
#pragma once

#include <stdbool.h>

#include "base/http.h"

struct api;
struct dispatch_route;

void api_post_invoke(struct http_request *req, void *userdata);
void api_get_invocation(struct http_request *req, void *userdata);
/* Runs a sync invocation as routed on this host (its reply names the host: Ignis-Host). With
 * may_move (neither forwarded here nor placed by this host already), one still queued when this
 * host stops is forwarded to another host (forward_place) rather than answered 503. */
void invoke_sync_here(struct http_request *req, struct api *a, const struct dispatch_route *route,
                      bool may_move);
