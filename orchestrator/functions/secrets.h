/* Secrets (docs/security.md): values kept as files, mode 0600, under
 * STATE_DIR/secrets/FUNCTION/NAME (the directories 0700), never in ignis.db, never in a reply, a
 * log line or a metric. A function's containers get copies of the ones its manifest lists at
 * /run/secrets/NAME (shim/init.c). Set, list (names only), remove: api/secrets.c serves them.
 *
 * Errors: invalid_name (EINVAL), bad_request (EINVAL: an empty value), too_many_secrets (EBUSY),
 * not_found (ENOENT), internal (EIO: the files could not be written or read; the message says
 * why). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/container_spec.h"
#include "base/util.h"

#define SECRET_MAX_BYTES CONTAINER_SECRET_MAX
/* Secrets one function may have stored (its manifest lists at most 64 of them). */
#define SECRETS_MAX_PER_FUNCTION 128

/* STATE_DIR/secrets/FUNCTION into buf. */
void secrets_path(const char *state_dir, const char *function, char *buf, size_t size);

/* 0, or -EINVAL (invalid_name) when function is not a function name or secret (unless NULL) is
 * not a secret name. */
int secrets_check_names(const char *function, const char *secret, struct ig_error *err);

/* Stores a secret's value (1 byte to SECRET_MAX_BYTES), replacing it atomically; a new one past
 * SECRETS_MAX_PER_FUNCTION is refused. *ret_created: it did not exist. */
int secrets_put(const char *state_dir, const char *function, const char *secret, const void *value,
                size_t len, bool *ret_created, struct ig_error *err);

/* A stored secret, without its value. */
struct secret_info {
    char *name;
    uint64_t bytes;
    uint64_t updated_usec; /* wall clock */
};

/* The function's secrets in name order (none when it has no directory). Free with
 * secrets_list_free. */
int secrets_list(const char *state_dir, const char *function, struct secret_info **ret,
                 size_t *ret_n, struct ig_error *err);
void secrets_list_free(struct secret_info *list, size_t n);

int secrets_delete(const char *state_dir, const char *function, const char *secret,
                   struct ig_error *err);
