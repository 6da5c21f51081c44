/* The operators' routes; userdata is the struct api. */
#pragma once

#include "base/http.h"

/* GET /healthz: 200 {"status": "ok"}, 503 "stopping" once a graceful stop began. */
void api_get_healthz(struct http_request *req, void *userdata);
void api_get_version(struct http_request *req, void *userdata);
void api_get_doctor(struct http_request *req, void *userdata);
/* GET /v1/functions/{name}/logs?invocation=&since=&tail=&follow=true */
void api_get_logs(struct http_request *req, void *userdata);
/* GET /v1/usage?function=&since=&until=&group_by= (docs/api.md "Usage"). */
void api_get_usage(struct http_request *req, void *userdata);
