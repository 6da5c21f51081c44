/* Who may do what (docs/security.md): bearer tokens with roles, checked for every request
 * against the route table's allowed roles (api.c), a per-token request rate, and the token
 * routes (/v1/tokens). Tokens are random (256 bits), stored only as salted SHA-256 hashes, and
 * compared in constant time. The loop thread owns all of it. */
#pragma once

#include <sqlite3.h>

#include "base/http.h"
#include "base/util.h"

enum auth_role {
    AUTH_ROLE_ADMIN,
    AUTH_ROLE_DEVELOPER,
    AUTH_ROLE_INVOKER,
    AUTH_ROLE_OPERATOR,
    AUTH_NROLES,
};

/* The bits of http_route.roles. */
#define AUTH_ADMIN     (1u << AUTH_ROLE_ADMIN)
#define AUTH_DEVELOPER (1u << AUTH_ROLE_DEVELOPER)
#define AUTH_INVOKER   (1u << AUTH_ROLE_INVOKER)
#define AUTH_OPERATOR  (1u << AUTH_ROLE_OPERATOR)
#define AUTH_ANY_ROLE  (AUTH_ADMIN | AUTH_DEVELOPER | AUTH_INVOKER | AUTH_OPERATOR)
/* No token needed (/healthz). */
#define AUTH_PUBLIC (1u << 8)
/* No token needed when the daemon is configured so (metrics_public: /metrics). */
#define AUTH_SCRAPE (1u << 9)

/* "ignis_" + 16 hex digits of id + "_" + 64 hex digits of secret. */
#define AUTH_TOKEN_ID_LEN 16
#define AUTH_TOKEN_LEN    (6 + AUTH_TOKEN_ID_LEN + 1 + 64)
#define AUTH_NAME_MAX     64

const char *auth_role_name(enum auth_role r);
int auth_role_parse(const char *s, enum auth_role *ret);

/* Splits a token into its id and secret parts (copied). -EINVAL for anything not of the shape. */
int auth_token_parse(const char *token, char ret_id[AUTH_TOKEN_ID_LEN + 1], char ret_secret[65]);
/* SHA-256 of salt || secret. */
void auth_hash(const uint8_t salt[16], const char *secret, uint8_t ret[32]);

/* "30d", "12h", "90m", "3600s" (1 s to 100 years) in seconds. -EINVAL otherwise. */
int auth_parse_duration(const char *text, int64_t *ret_s);

/* A token bucket: rate tokens a second up to burst. Takes one; false (and the seconds until one
 * is there, at least 1) when empty. Pure: the clock is an argument. */
struct auth_bucket {
    double tokens;
    uint64_t last_us;
};
bool auth_bucket_take(struct auth_bucket *b, uint64_t now_us, double rate, double burst,
                      unsigned *ret_retry_after_s);

struct auth_options {
    double rate;          /* requests a second per token; 0: no limit */
    double burst;         /* the bucket's size */
    bool metrics_public;  /* AUTH_SCRAPE routes need no token */
    char state_dir[4096]; /* where admin.token is written on first start */
};

struct auth;

/* Loads the tokens from the store. When there are none (first start), makes the first admin
 * token: the one in STATE_DIR/admin.token if that file is there (mode 0600, this user's: a
 * provisioned token), else a new one, written there 0600 and printed once on stderr. */
int auth_new(sqlite3 *db, const struct auth_options *opts, struct auth **ret, struct ig_error *err);
void auth_free(struct auth *a);

/* The http_authorize_fn, given the daemon's auth. */
bool auth_check(struct auth *a, struct http_request *req, const struct http_route *route);

/* POST /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/{id}. */
void auth_http_create(struct http_request *req, struct auth *a);
void auth_http_list(struct http_request *req, struct auth *a);
void auth_http_revoke(struct http_request *req, struct auth *a);
