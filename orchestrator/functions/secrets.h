/* Secrets (docs/security.md): values kept as files, mode 0600, under
 * STATE_DIR/secrets/FUNCTION/NAME (the directories 0700), never in ignis.db, never in a reply, a
 * log line or a metric. A function's containers get copies of the ones its manifest lists at
 * /run/secrets/NAME (shim/init.c). The routes set, list (names only) and remove them. */
#pragma once

#include <stddef.h>

#include "base/container_spec.h"
#include "base/http.h"

#define SECRET_MAX_BYTES CONTAINER_SECRET_MAX
/* Secrets one function may have stored (its manifest lists at most 64 of them). */
#define SECRETS_MAX_PER_FUNCTION 128

/* STATE_DIR/secrets/FUNCTION into buf. */
void secrets_path(const char *state_dir, const char *function, char *buf, size_t size);

/* PUT /v1/functions/{name}/secrets/{secret}: the body is the value (1 byte to 64 KiB); a new
 * one past SECRETS_MAX_PER_FUNCTION is 409. */
void secrets_http_put(struct http_request *req, const char *state_dir);
/* GET /v1/functions/{name}/secrets: names, sizes and times, never values. */
void secrets_http_list(struct http_request *req, const char *state_dir);
/* DELETE /v1/functions/{name}/secrets/{secret}. */
void secrets_http_delete(struct http_request *req, const char *state_dir);
