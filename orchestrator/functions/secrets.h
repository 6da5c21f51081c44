/* Secrets (docs/security.md): values kept as files, mode 0600, under
 * STATE_DIR/secrets/FUNCTION/NAME (the directories 0700), never in a reply, a log line or a
 * metric. A function's containers get copies of the ones its manifest lists at
 * /run/secrets/NAME (shim/init.c). Set, list (names only), remove: api/secrets.c serves them.
 *
 * Where the files come from: on one host (SQLite, or PostgreSQL without a secrets_key) they are
 * the secrets themselves, set and removed through this host. Hosts sharing a PostgreSQL store
 * and one secrets_key share them (#16): a value set through any host is sealed (AES-256-GCM
 * under the key, a fresh 96-bit nonce, the function's and secret's names as associated data so
 * that a row cannot be moved to another secret) and stored (records/secrets_store.h), never in
 * the clear; every host writes the store's secrets of a function out as its files
 * (secrets_sync) when told of a change, at start and at the periodic re-read. A value this
 * host's key does not open is logged (function and name, never a value) and absent here.
 *
 * Errors: invalid_name (EINVAL), bad_request (EINVAL: an empty value), too_many_secrets (EBUSY),
 * not_found (ENOENT), internal (EIO: the files could not be written or read; the message says
 * why); shared, the store's errnos too (ENOTCONN while it is away). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/container_spec.h"
#include "base/util.h"

struct store;

#define SECRET_MAX_BYTES CONTAINER_SECRET_MAX
/* Secrets one function may have stored (its manifest lists at most 64 of them). */
#define SECRETS_MAX_PER_FUNCTION 128

#define SECRETS_KEY_BYTES   32
#define SECRETS_NONCE_BYTES 12
#define SECRETS_TAG_BYTES   16

/* STATE_DIR/secrets/FUNCTION into buf. */
void secrets_path(const char *state_dir, const char *function, char *buf, size_t size);

/* 0, or -EINVAL (invalid_name) when function is not a function name or secret (unless NULL) is
 * not a secret name. */
int secrets_check_names(const char *function, const char *secret, struct ig_error *err);

/* Reads a secrets_key file: 32 bytes, or 64 hex digits (a newline after them allowed), in a
 * regular file no one but its owner may read or write (0600 or 0400). 0, or -errno with err
 * naming the file and what is wrong with it. */
int secrets_key_load(const char *path, uint8_t ret[SECRETS_KEY_BYTES], struct ig_error *err);

/* Seals value (len bytes) as function's secret name under key: a fresh random nonce into
 * ret_nonce, and len + SECRETS_TAG_BYTES bytes (the ciphertext, then the tag) into ret_sealed. */
void secrets_seal(const uint8_t key[SECRETS_KEY_BYTES], const char *function, const char *name,
                  const void *value, size_t len, uint8_t ret_nonce[SECRETS_NONCE_BYTES],
                  uint8_t *ret_sealed);
/* Opens what secrets_seal made into ret_value (sealed_len - SECRETS_TAG_BYTES bytes): 0, or
 * -EBADMSG when it was not sealed under key for function's secret name, or was changed since
 * (ret_value's contents are then undefined: the caller clears them). */
int secrets_open(const uint8_t key[SECRETS_KEY_BYTES], const char *function, const char *name,
                 const uint8_t nonce[SECRETS_NONCE_BYTES], const uint8_t *sealed, size_t sealed_len,
                 uint8_t *ret_value);

struct secrets;

/* Secrets under state_dir: this host's files alone when store is NULL; else shared through
 * store, sealed under key (32 bytes, copied). Shared, it imports once (its first start
 * sharing) the files this host had into the store, those the store has not got already, unless
 * the store's secrets do not open with key (logged); then writes out every function's secrets
 * (secrets_sync). Fails as the store does. */
int secrets_new(const char *state_dir, struct store *store, const uint8_t *key,
                struct secrets **ret, struct ig_error *err);
/* Accepts NULL. */
void secrets_free(struct secrets *s);
/* Whether the secrets are shared through the store. */
bool secrets_shared(const struct secrets *s);

/* Shared: writes function's secrets (NULL: every function's) as the store has them now out as
 * files (each replaced atomically when its value changed), and removes the files of those it
 * does not have (after the import), or whose value does not open with this host's key (logged).
 * Files alone: nothing to do. 0, or -errno with err (the store's failure, or the files'). */
int secrets_sync(struct secrets *s, const char *function, struct ig_error *err);

/* Stores a secret's value (1 byte to SECRET_MAX_BYTES), replacing it atomically; a new one past
 * SECRETS_MAX_PER_FUNCTION is refused. *ret_created: it did not exist. */
int secrets_put(struct secrets *s, const char *function, const char *secret, const void *value,
                size_t len, bool *ret_created, struct ig_error *err);

/* A stored secret, without its value. */
struct secret_info {
    char *name;
    uint64_t bytes;
    uint64_t updated_usec; /* wall clock */
    bool usable;           /* false: shared, and this host's key does not open it */
};

/* The function's secrets in name order (none when it has none). Free with secrets_list_free. */
int secrets_list(struct secrets *s, const char *function, struct secret_info **ret, size_t *ret_n,
                 struct ig_error *err);
void secrets_list_free(struct secret_info *list, size_t n);

int secrets_delete(struct secrets *s, const char *function, const char *secret,
                   struct ig_error *err);
