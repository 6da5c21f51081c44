/* The audit log (docs/security.md): one row in ignis.db for every request to a route marked
 * audit in the route table (push, update, delete, token and secret changes), allowed or not:
 * who (token id, name, role), what (method and route, the path, a detail line), which function,
 * when, from which address, and the status answered. Readable by admins (GET /v1/audit). */
#pragma once

#include <sqlite3.h>

#include "base/http.h"
#include "records/journal.h"

/* Queues the row (written off the loop, crash-safe) of a request by a known token; one without
 * (a 401) is not recorded. status 0: no reply was sent. */
int audit_record(struct journal *j, struct http_request *req, const struct http_route *route,
                 unsigned status);

/* Deletes the rows recorded before before_us (the daemon's retention, retention.h). */
int audit_purge(struct journal *j, int64_t before_us);

/* GET /v1/audit?function=&since=&limit= : newest first. */
void audit_http_list(struct http_request *req, sqlite3 *db);
