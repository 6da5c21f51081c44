/* The secrets table (#16): secret values shared by the hosts of one PostgreSQL store, sealed by
 * functions/secrets.c (AES-256-GCM under the hosts' secrets_key) before they get here: the
 * table holds a nonce and a ciphertext per (function, name), never a value in the clear. Each
 * write tells the other hosts (records/changes.h, kind "secret", the function's name), which
 * read the function's rows again and write them out as files. On SQLite the table stays empty
 * (secrets are files of the one host). Statements on the loop thread's connection. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

struct store;

#define SECRETS_STORE_NONCE_BYTES 12

/* A row as stored. The pointers are valid during the callback that gets it. */
struct secret_row {
    const char *function, *name;
    const uint8_t *nonce; /* SECRETS_STORE_NONCE_BYTES */
    const uint8_t *sealed;
    size_t sealed_len;
    int64_t updated_us; /* wall clock */
};

/* Stores function's secret name, sealed, and tells every host, in one transaction. A secret the
 * function does not have yet is refused with EBUSY (no reason set: the caller's) when it already
 * has max; with replace false an existing one is left as it is (an import). *ret_created: there
 * was none. 0, or -errno with err (db_fail's). */
int secrets_store_put(struct store *s, const struct secret_row *row, bool replace, size_t max,
                      bool *ret_created, struct ig_error *err);

/* Removes function's secret name and tells every host: 0, -ENOENT (none; err unset), or -errno
 * with err. */
int secrets_store_delete(struct store *s, const char *function, const char *name,
                         struct ig_error *err);

/* Calls each for every row of function (NULL: of every function), by function then name. each
 * returns 0, or -errno to stop (returned, err unset). */
int secrets_store_load(struct store *s, const char *function,
                       int (*each)(void *userdata, const struct secret_row *row), void *userdata,
                       struct ig_error *err);
