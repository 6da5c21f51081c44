/* The HTTP API's routes (docs/api.md). */
#pragma once

#include <stddef.h>

#include "base/http.h"

extern const struct http_route api_routes[];
extern const size_t api_nroutes;

/* The server's hooks (http_server_options), userdata the daemon: every request is checked
 * against its route's roles (auth_check), and audited routes are recorded (audit_record). */
bool api_authorize(struct http_request *req, const struct http_route *route, void *userdata);
void api_audit(struct http_request *req, const struct http_route *route, unsigned status,
               void *userdata);
