/* Domain errors as HTTP replies: the one place that turns an ig_error (an errno and, where the
 * domain gave one, a reason) into a status and a JSON error body. nginx's static module maps
 * NGX_ENOENT to 404 the same way; the domain below api/ knows no status. */
#pragma once

#include <cjson/cJSON.h>

#include "base/http.h"

/* The status for an errno: EINVAL 400, EACCES 403, ENOENT 404, EEXIST/EBUSY 409, EFBIG 413,
 * EMEDIUMTYPE 415, ENOBUFS 429, EINPROGRESS/EAGAIN/ENOTCONN/ESHUTDOWN 503, ETIMEDOUT 504,
 * ENOSPC/EDQUOT 507, ECANCELED 499 (the client went away); anything else 500. */
unsigned api_status_for(int code);
/* The reply's error code: err->reason, else store_unavailable for ENOTCONN (the store's server
 * is away), else the status's own ("not_found", "conflict", ...). */
const char *api_code_for(const struct ig_error *err);
/* Replies {"error": {"code", "message"}} with the status and code above, and Retry-After where
 * the client should come back: 1 s for a full queue, an event still being stored or no fds for
 * a container; API_STORE_RETRY_AFTER for store_unavailable. */
int api_reply_error(struct http_request *req, const struct ig_error *err);

/* Whether the store is reachable (records/db.h: db_get_reachability): false, with ENOTCONN
 * store_unavailable "the store is unreachable since N s: REASON" in ret_why, while its server is
 * away. For a route that would accept work it must store first (an async invocation, an event),
 * so that it answers at once rather than wait in the journal for the store to come back. */
bool api_store_reachable(struct ig_error *ret_why);

/* 0 when every member of the request body's object root is named in allowed (NULL-terminated);
 * else -EINVAL with err, bad_request "NAME: unknown field" for the first other one: a misspelt
 * field is refused rather than silently ignored. */
int api_check_fields(const cJSON *root, const char *const *allowed, struct ig_error *err);

/* Retry-After (seconds) of a 503 store_unavailable: the store could not write (a full disk) or
 * its server is away, and a client should try again once space is freed or the server is back;
 * the journal probes every second, the connections try again at least every 2 s. */
#define API_STORE_RETRY_AFTER "5"
