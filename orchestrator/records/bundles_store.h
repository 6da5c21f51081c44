/* Bundle bytes in the store (issue #16): each pushed bundle's gzip tar, kept once per digest in
 * bundle_chunks(digest, n, data), in chunks of BUNDLES_STORE_CHUNK bytes, so that every host on
 * the same database can unpack it into its own cache (functions/registry.c). The store keeps
 * bytes only: checking them against their digest is the reader's (a host never runs a bundle
 * whose bytes it did not verify). Rows of a digest no version names any more are deleted with
 * the versions (functions_store.c).
 *
 * These functions block (a megabyte per chunk) and open a connection of their own for the
 * call: run them on a worker thread, never on the loop. */
#pragma once

#include <stddef.h>

#include "base/util.h"

struct store;

#define BUNDLES_STORE_CHUNK (1u << 20)

/* Stores len bytes under digest, all chunks in one transaction: when it commits, the bundle is
 * whole. A digest already stored (the same bytes pushed again, perhaps by another host) is left
 * as it is. 0 or -errno with err (ENOSPC: the disk is full; ENOTCONN: PostgreSQL unreachable). */
int bundles_store_put(struct store *s, const char *digest, const void *data, size_t len,
                      struct ig_error *err);

/* Reads the bytes stored under digest into *ret (malloc'd) and *ret_len, their chunks in order.
 * -ENOENT when the store holds none; -EBADMSG when the chunks are not numbered 0..n-1 (rows
 * lost); -EFBIG past max bytes; other errors the engine's, with err. */
int bundles_store_get(struct store *s, const char *digest, size_t max, char **ret, size_t *ret_len,
                      struct ig_error *err);

/* Whether the store holds digest's bytes; false when it cannot tell. Loop thread (the store's
 * connection: a look-up by key). */
bool bundles_store_has(struct store *s, const char *digest);

/* Deletes digest's bytes when no version names it, on the store's connection (loop thread),
 * inside the caller's transaction when there is one: functions_store.c's deletes of versions,
 * and a push that could not be recorded. 0 or -errno (db_fail tells why). */
int bundles_store_forget(struct store *s, const char *digest);
