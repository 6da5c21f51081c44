/* Who may do what (docs/security.md): bearer tokens with roles, checked for every request
 * against the route table's allowed roles (api.c), a per-token request rate, and the token
 * routes (/v1/tokens). Tokens are random (256 bits), stored only as salted SHA-256 hashes, and
 * compared in constant time. The loop thread owns all of it. */
#pragma once

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
struct store;

int auth_new(struct store *store, const struct auth_options *opts, struct auth **ret,
             struct ig_error *err);
void auth_free(struct auth *a);
/* Another host sharing the store made or revoked token id (records/changes.h): reads it again,
 * so a token made there authenticates here and one revoked there is refused here. 0, or -errno
 * with err (the token stays as it was). */
int auth_reload_token(struct auth *a, const char *id, struct ig_error *err);
/* Reads every token again, as auth_reload_token does one (after notifications were missed). */
int auth_reload(struct auth *a, struct ig_error *err);

/* The http_authorize_fn, given the daemon's auth. */
bool auth_check(struct auth *a, struct http_request *req, const struct http_route *route);

/* A token as /v1/tokens shows it; the strings are the auth's, valid until its next change. */
struct auth_token_info {
    const char *id, *name;
    enum auth_role role;
    const char *state;                          /* active, expired, revoked */
    int64_t created_us, expires_us, revoked_us; /* wall clock; 0: never */
    const char *created_by;                     /* "" for the first admin token */
};

size_t auth_token_count(const struct auth *a);
/* The i-th token (i < auth_token_count), oldest first. */
void auth_token_at(const struct auth *a, size_t i, struct auth_token_info *ret);
/* Makes and stores a token of role named name (NULL: the role's name) that expires after
 * expires_s (0: never), made by the token created_by (NULL: nobody); its text goes to the
 * caller once, in ret_text. */
int auth_token_create(struct auth *a, enum auth_role role, const char *name, int64_t expires_s,
                      const char *created_by, struct auth_token_info *ret_info,
                      char ret_text[AUTH_TOKEN_LEN + 1], struct ig_error *err);
/* Revokes a token (revoking a revoked one changes nothing). ENOENT: no such token; EBUSY
 * (last_admin): it is the last active admin token. ret_info is the token as it is now, filled
 * whenever it exists (a refused revocation too). */
int auth_token_revoke(struct auth *a, const char *id, struct auth_token_info *ret_info,
                      struct ig_error *err);
