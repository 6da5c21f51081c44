/* POST /v1/events and GET /v1/events/dead-letters (docs/api.md): the CloudEvents HTTP binding's
 * side of events/, which receives parsed events and reports an ig_error. Route handlers; userdata
 * is the struct api. */
#pragma once

#include "base/http.h"

/* Parses the request's events in the mode its Content-Type names (binary, structured or batch),
 * has events/ accept them, and replies 202 with each event's deliveries, or the error. */
void api_events_post(struct http_request *req, void *userdata);
/* The newest dead letters (?limit=, 1 to 1000, default 100), newest first. */
void api_events_dead_letters(struct http_request *req, void *userdata);
