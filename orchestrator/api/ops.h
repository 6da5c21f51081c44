/* The operators' routes; userdata is the struct api. */
#pragma once

#include "base/http.h"

/* GET /healthz (liveness): 200 {"status": "ok"}, or 200 {"status": "degraded", "reason",
 * "message"} while the store cannot write or the state dir's disk is full; 503 "stopping" once
 * a graceful stop began. */
void api_get_healthz(struct http_request *req, void *userdata);
/* GET /readyz (readiness): 200 {"status": "ready"}, or 503 store_unavailable /
 * insufficient_storage (with Retry-After) while /healthz says degraded, 503 shutting_down. */
void api_get_readyz(struct http_request *req, void *userdata);
void api_get_version(struct http_request *req, void *userdata);
void api_get_doctor(struct http_request *req, void *userdata);
/* GET /v1/functions/{name}/logs?invocation=&since=&tail=&follow=true */
void api_get_logs(struct http_request *req, void *userdata);
/* GET /v1/usage?function=&since=&until=&group_by= (docs/api.md "Usage"). */
void api_get_usage(struct http_request *req, void *userdata);
