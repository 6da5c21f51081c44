/* The tokens table: API tokens as stored (salted hashes, never the secret). api/auth.c keeps
 * them in memory and is their only writer; these are its statements, on the loop thread's
 * connection (single-row, rare admin operations). Each write tells the other hosts sharing the
 * store (records/changes.h), which read the token again with tokens_store_get. */
#pragma once

#include <stdint.h>

#include "base/util.h"

struct store;

struct token_row {
    char id[17];
    char name[65];
    char role[16]; /* the role's name: auth.c parses it */
    uint8_t salt[16], hash[32];
    int64_t created_us, expires_us, revoked_us; /* wall clock; 0: never */
    char created_by[17];                        /* "" for the first admin token */
};

int tokens_store_insert(struct store *s, const struct token_row *t, struct ig_error *err);
/* Calls each for every token, oldest first. A row whose salt or hash has the wrong size (no
 * ignisd writes one) is skipped. each returns 0, or -errno to stop (returned). */
int tokens_store_load(struct store *s, int (*each)(void *userdata, const struct token_row *t),
                      void *userdata, struct ig_error *err);
/* The token id as stored now, into *ret: 0, -ENOENT (none, or one no ignisd writes), or -errno
 * with err. */
int tokens_store_get(struct store *s, const char *id, struct token_row *ret, struct ig_error *err);
int tokens_store_revoke(struct store *s, const char *id, int64_t revoked_us, struct ig_error *err);
