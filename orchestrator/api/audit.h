/* The audit log (docs/security.md): one row in ignis.db for every request to a route marked
 * audit in the route table (push, update, delete, token and secret changes), allowed or not:
 * who (token id, name, role), what (method and route, the path, a detail line), which function,
 * when, from which address, and the status answered. Readable by admins (GET /v1/audit). The
 * rows are records/audit_store's. */
#pragma once

#include "base/http.h"

struct journal;

/* Queues the row (written off the loop, crash-safe) of a request by a known token; one without
 * (a 401) is not recorded. status 0: no reply was sent. */
int audit_record(struct journal *j, struct http_request *req, const struct http_route *route,
                 unsigned status);

/* GET /v1/audit?function=&since=&limit= : newest first; userdata is the struct api. */
void api_get_audit(struct http_request *req, void *userdata);
