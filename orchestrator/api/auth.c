#include "api/auth.h"

#include <fcntl.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/log.h"
#include "records/telemetry.h"
#include "records/tokens_store.h"

#define TOKEN_PREFIX "ignis_"

static const char *const role_names[AUTH_NROLES] = {
    [AUTH_ROLE_ADMIN] = "admin",
    [AUTH_ROLE_DEVELOPER] = "developer",
    [AUTH_ROLE_INVOKER] = "invoker",
    [AUTH_ROLE_OPERATOR] = "operator",
};

/* A token: its stored row (records/tokens_store.h: id, name, the role's name, salt, hash,
 * times, creator), the role parsed, and its rate bucket. */
struct token {
    struct token_row row;
    enum auth_role role;
    struct auth_bucket bucket;
};

struct auth {
    struct store *store;
    struct auth_options opts;
    struct token *tokens;
    size_t n, cap;
};

const char *auth_role_name(enum auth_role r)
{
    return r < AUTH_NROLES ? role_names[r] : "?";
}

int auth_role_parse(const char *s, enum auth_role *ret)
{
    for (size_t i = 0; i < AUTH_NROLES; i++)
        if (streq(s, role_names[i])) {
            *ret = (enum auth_role)i;
            return 0;
        }
    return -EINVAL;
}

int auth_token_parse(const char *token, char ret_id[AUTH_TOKEN_ID_LEN + 1], char ret_secret[65])
{
    if (strlen(token) != AUTH_TOKEN_LEN || !startswith(token, TOKEN_PREFIX))
        return -EINVAL;
    const char *id = token + strlen(TOKEN_PREFIX), *secret = id + AUTH_TOKEN_ID_LEN + 1;
    if (id[AUTH_TOKEN_ID_LEN] != '_')
        return -EINVAL;
    char idbuf[AUTH_TOKEN_ID_LEN + 1];
    memcpy(idbuf, id, AUTH_TOKEN_ID_LEN);
    idbuf[AUTH_TOKEN_ID_LEN] = '\0';
    if (!hex_valid(idbuf, AUTH_TOKEN_ID_LEN) || !hex_valid(secret, 64))
        return -EINVAL;
    memcpy(ret_id, idbuf, sizeof(idbuf));
    memcpy(ret_secret, secret, 65);
    return 0;
}

void auth_hash(const uint8_t salt[16], const char *secret, uint8_t ret[32])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, 16, salt);
    sha256_update(&ctx, strlen(secret), (const uint8_t *)secret);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, ret);
}

int auth_parse_duration(const char *text, int64_t *ret_s)
{
    int64_t s;
    if (parse_duration_s(text, &s) < 0 || s < 1 || s > 100ll * 366 * 86400)
        return -EINVAL;
    *ret_s = s;
    return 0;
}

bool auth_bucket_take(struct auth_bucket *b, uint64_t now_us, double rate, double burst,
                      unsigned *ret_retry_after_s)
{
    if (b->last_us == 0) {
        b->tokens = burst;
        b->last_us = now_us;
    }
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) / 1e6 * rate;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_us = now_us;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    double wait = (1.0 - b->tokens) / rate;
    unsigned s = (unsigned)wait;
    if ((double)s < wait)
        s++;
    *ret_retry_after_s = s < 1 ? 1 : s;
    return false;
}

/* ---- the store ---- */

static int tokens_append(struct auth *a, const struct token *t)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        struct token *p = realloc(a->tokens, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        a->tokens = p;
        a->cap = cap;
    }
    a->tokens[a->n++] = *t;
    return 0;
}

static struct token *token_find(struct auth *a, const char *id)
{
    for (size_t i = 0; i < a->n; i++)
        if (streq(a->tokens[i].row.id, id))
            return &a->tokens[i];
    return NULL;
}

static int token_insert(struct auth *a, const struct token *t, struct ig_error *err)
{
    int r = tokens_store_insert(a->store, &t->row, err);
    if (r < 0)
        return r;
    return tokens_append(a, t) < 0 ? ig_error_set(err, ENOMEM, "out of memory") : 0;
}

static int token_loaded(void *userdata, const struct token_row *row)
{
    struct auth *a = userdata;
    struct token t = {.row = *row};
    if (auth_role_parse(row->role, &t.role) < 0)
        return 0; /* cannot be written by this code; never matches */
    int r = tokens_append(a, &t);
    explicit_bzero(&t, sizeof(t));
    return r;
}

/* A token as the store has it now takes the place of the one in memory, keeping its rate
 * bucket, or joins them (made by another host). */
static int token_refresh(void *userdata, const struct token_row *row)
{
    struct auth *a = userdata;
    struct token t = {.row = *row};
    if (auth_role_parse(row->role, &t.role) < 0)
        return 0; /* cannot be written by this code; never matches */
    struct token *cur = token_find(a, row->id);
    int r = 0;
    if (cur) {
        t.bucket = cur->bucket;
        *cur = t;
    } else {
        r = tokens_append(a, &t);
    }
    explicit_bzero(&t, sizeof(t));
    return r;
}

int auth_reload_token(struct auth *a, const char *id, struct ig_error *err)
{
    struct token_row row;
    int r = tokens_store_get(a->store, id, &row, err);
    if (r == -ENOENT)
        return 0; /* tokens are revoked, never deleted: nothing a host keeps can be gone */
    if (r == 0)
        r = token_refresh(a, &row);
    explicit_bzero(&row, sizeof(row));
    return r == -ENOMEM ? ig_error_set(err, ENOMEM, "out of memory") : r;
}

int auth_reload(struct auth *a, struct ig_error *err)
{
    return tokens_store_load(a->store, token_refresh, a, err);
}

enum token_state { TOKEN_ACTIVE, TOKEN_EXPIRED, TOKEN_REVOKED };

static enum token_state token_state(const struct token *t, int64_t now_us)
{
    if (t->row.revoked_us)
        return TOKEN_REVOKED;
    return t->row.expires_us && now_us >= t->row.expires_us ? TOKEN_EXPIRED : TOKEN_ACTIVE;
}

/* The record of the token whose text is ignis_ID_SECRET (hex): a fresh salt and the hash. */
static void token_init(enum auth_role role, const char *name, const char *id,
                       const char *secret_hex, struct token *ret)
{
    memset(ret, 0, sizeof(*ret));
    snprintf(ret->row.id, sizeof(ret->row.id), "%s", id);
    random_bytes(ret->row.salt, sizeof(ret->row.salt));
    auth_hash(ret->row.salt, secret_hex, ret->row.hash);
    ret->role = role;
    snprintf(ret->row.role, sizeof(ret->row.role), "%s", auth_role_name(role));
    snprintf(ret->row.name, sizeof(ret->row.name), "%s", name);
    ret->row.created_us = (int64_t)wall_usec();
}

/* A new token of role: its record in *ret, and the text the caller gets once in ret_text. */
static void token_generate(enum auth_role role, const char *name, struct token *ret,
                           char ret_text[AUTH_TOKEN_LEN + 1])
{
    uint8_t id[AUTH_TOKEN_ID_LEN / 2], secret[32];
    char id_hex[AUTH_TOKEN_ID_LEN + 1], secret_hex[65];
    random_bytes(id, sizeof(id));
    random_bytes(secret, sizeof(secret));
    hex_encode(id, sizeof(id), id_hex);
    hex_encode(secret, sizeof(secret), secret_hex);
    token_init(role, name, id_hex, secret_hex, ret);
    snprintf(ret_text, AUTH_TOKEN_LEN + 1, TOKEN_PREFIX "%s_%s", ret->row.id, secret_hex);
    explicit_bzero(secret, sizeof(secret));
    explicit_bzero(secret_hex, sizeof(secret_hex));
}

/* The token from a provisioned STATE_DIR/admin.token: 0600 (or stricter), a regular file of the
 * daemon's own user, so nobody else could have planted or read it. */
static int read_provisioned(const char *path, char ret[AUTH_TOKEN_LEN + 1], struct ig_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 && errno == ENOENT)
        return -ENOENT; /* not provisioned: the caller makes one */
    if (fd < 0 || fstat(fd, &st) < 0)
        return ig_error_set(err, errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
        return ig_error_set(err, EPERM,
                            "%s: refusing a token file that is not a regular file of mode 0600 "
                            "owned by uid %u",
                            path, (unsigned)geteuid());
    char buf[AUTH_TOKEN_LEN + 8];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0)
        return ig_error_set(err, errno, "%s: %s", path, strerror(errno));
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char id[AUTH_TOKEN_ID_LEN + 1], secret[65];
    if (auth_token_parse(buf, id, secret) < 0)
        return ig_error_set(err, EINVAL, "%s: not an ignis token", path);
    memcpy(ret, buf, AUTH_TOKEN_LEN + 1);
    explicit_bzero(buf, sizeof(buf));
    return 0;
}

static int write_token_file(const char *path, const char *text, struct ig_error *err)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ig_error_set(err, errno, "%s: %s", path, strerror(errno));
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0)
        return ig_error_set(err, errno ? errno : EIO, "%s: %s", path, strerror(errno));
    return 0;
}

/* First start: no token at all in the store. */
static int bootstrap(struct auth *a, struct ig_error *err)
{
    char path[4200], text[AUTH_TOKEN_LEN + 1];
    struct token t = {};
    snprintf(path, sizeof(path), "%s/admin.token", a->opts.state_dir);
    int r = read_provisioned(path, text, err);
    bool provisioned = r == 0;
    if (r < 0 && r != -ENOENT)
        return r;
    if (provisioned) {
        char id[AUTH_TOKEN_ID_LEN + 1], secret[65];
        auth_token_parse(text, id, secret);
        token_init(AUTH_ROLE_ADMIN, "admin", id, secret, &t);
        explicit_bzero(secret, sizeof(secret));
    } else {
        token_generate(AUTH_ROLE_ADMIN, "admin", &t, text);
        /* The file first: if storing the token then fails, the next start adopts the file. */
        r = write_token_file(path, text, err);
        if (r < 0)
            return r;
    }
    r = token_insert(a, &t, err);
    if (r == 0 && !provisioned)
        /* Once, on stderr only (not the structured log): the operator's copy is the file. */
        fprintf(stderr,
                "ignisd: created the first admin token; it is shown only now and kept in %s "
                "(mode 0600):\n%s\n",
                path, text);
    if (r == 0)
        log_info("first admin token ready", "id=%s file=%s provisioned=%s", t.row.id, path,
                 provisioned ? "true" : "false");
    explicit_bzero(text, sizeof(text));
    return r;
}

int auth_new(struct store *store, const struct auth_options *opts, struct auth **ret,
             struct ig_error *err)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        return ig_error_set(err, ENOMEM, "out of memory");
    a->store = store;
    a->opts = *opts;
    int r = tokens_store_load(a->store, token_loaded, a, err);
    if (r == 0 && a->n == 0)
        r = bootstrap(a, err);
    if (r < 0) {
        auth_free(a);
        return r;
    }
    *ret = a;
    return 0;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    if (a->tokens)
        explicit_bzero(a->tokens, a->cap * sizeof(*a->tokens));
    free(a->tokens);
    free(a);
}

/* ---- checking requests ---- */

/* RFC 6750 section 3: a 401 names the scheme, and error="invalid_token" when one was given. */
static bool deny_401(struct http_request *req, enum telemetry_auth_refusal why, const char *message)
{
    bool given = why != TELEMETRY_AUTH_NO_TOKEN && why != TELEMETRY_AUTH_BAD_HEADER;
    telemetry_auth_refused(why);
    http_set_header(req, "WWW-Authenticate",
                    given ? "Bearer realm=\"ignis\", error=\"invalid_token\""
                          : "Bearer realm=\"ignis\"");
    http_reply_error(req, 401, "unauthorized", "%s", message);
    return false;
}

bool auth_check(struct auth *a, struct http_request *req, const struct http_route *route)
{
    if (route->roles & AUTH_PUBLIC)
        return true;
    if ((route->roles & AUTH_SCRAPE) && a->opts.metrics_public)
        return true;
    const char *h = http_request_header(req, "Authorization");
    if (!h)
        return deny_401(req, TELEMETRY_AUTH_NO_TOKEN,
                        "this route needs a token: Authorization: Bearer TOKEN");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return deny_401(req, TELEMETRY_AUTH_BAD_HEADER,
                        "the Authorization header must be 'Bearer TOKEN'");
    const char *text = h + 7;
    while (*text == ' ')
        text++;
    char id[AUTH_TOKEN_ID_LEN + 1], secret[65];
    uint8_t hash[SHA256_DIGEST_SIZE];
    if (auth_token_parse(text, id, secret) < 0)
        return deny_401(req, TELEMETRY_AUTH_INVALID_TOKEN, "the token is not valid");
    struct token *t = token_find(a, id);
    /* Hash even for an unknown id, so the reply takes as long either way. */
    static const uint8_t no_salt[16];
    auth_hash(t ? t->row.salt : no_salt, secret, hash);
    explicit_bzero(secret, sizeof(secret));
    if (!t || !memeql_sec(hash, t->row.hash, sizeof(hash)))
        return deny_401(req, TELEMETRY_AUTH_INVALID_TOKEN, "the token is not valid");
    switch (token_state(t, (int64_t)wall_usec())) {
    case TOKEN_REVOKED:
        return deny_401(req, TELEMETRY_AUTH_REVOKED, "the token was revoked");
    case TOKEN_EXPIRED:
        return deny_401(req, TELEMETRY_AUTH_EXPIRED, "the token expired");
    case TOKEN_ACTIVE:
        break;
    }
    /* Known from here on, also when refused: the audit log records who was. */
    struct http_caller c = {.role = 1u << t->role};
    memcpy(c.token_id, t->row.id, sizeof(c.token_id));
    memcpy(c.name, t->row.name, sizeof(c.name));
    http_request_set_caller(req, &c);
    unsigned allowed = route->roles & AUTH_ANY_ROLE;
    if (!allowed)
        allowed = AUTH_ADMIN;
    if (!(allowed & (1u << t->role))) {
        telemetry_auth_refused(TELEMETRY_AUTH_FORBIDDEN);
        http_reply_error(req, 403, "forbidden", "the role '%s' may not %s %s",
                         auth_role_name(t->role), route->method, route->pattern);
        return false;
    }
    unsigned retry;
    if (a->opts.rate > 0 &&
        !auth_bucket_take(&t->bucket, now_usec(), a->opts.rate, a->opts.burst, &retry)) {
        char value[16];
        snprintf(value, sizeof(value), "%u", retry);
        http_set_header(req, "Retry-After", value);
        telemetry_auth_refused(TELEMETRY_AUTH_RATE_LIMITED);
        http_reply_error(req, 429, "rate_limited",
                         "token '%s' is over its rate of %g requests a second", t->row.name,
                         a->opts.rate);
        return false;
    }
    telemetry_auth_allowed(t->role);
    return true;
}

/* ---- managing tokens ---- */

static void token_info(const struct token *t, struct auth_token_info *ret)
{
    static const char *const states[] = {
        [TOKEN_ACTIVE] = "active", [TOKEN_EXPIRED] = "expired", [TOKEN_REVOKED] = "revoked"};
    *ret = (struct auth_token_info){.id = t->row.id,
                                    .name = t->row.name,
                                    .role = t->role,
                                    .state = states[token_state(t, (int64_t)wall_usec())],
                                    .created_us = t->row.created_us,
                                    .expires_us = t->row.expires_us,
                                    .revoked_us = t->row.revoked_us,
                                    .created_by = t->row.created_by};
}

size_t auth_token_count(const struct auth *a)
{
    return a->n;
}

void auth_token_at(const struct auth *a, size_t i, struct auth_token_info *ret)
{
    token_info(&a->tokens[i], ret);
}

int auth_token_create(struct auth *a, enum auth_role role, const char *name, int64_t expires_s,
                      const char *created_by, struct auth_token_info *ret_info,
                      char ret_text[AUTH_TOKEN_LEN + 1], struct ig_error *err)
{
    struct token t;
    token_generate(role, name ? name : auth_role_name(role), &t, ret_text);
    if (expires_s)
        t.row.expires_us = t.row.created_us + expires_s * 1000000;
    if (created_by)
        snprintf(t.row.created_by, sizeof(t.row.created_by), "%s", created_by);
    int r = token_insert(a, &t, err);
    if (r < 0) {
        explicit_bzero(ret_text, AUTH_TOKEN_LEN + 1);
        return r;
    }
    token_info(&a->tokens[a->n - 1], ret_info);
    return 0;
}

int auth_token_revoke(struct auth *a, const char *id, struct auth_token_info *ret_info,
                      struct ig_error *err)
{
    struct token *t = hex_valid(id, AUTH_TOKEN_ID_LEN) ? token_find(a, id) : NULL;
    if (!t)
        return ig_error_set(err, ENOENT, "no token with id '%s'", id);
    token_info(t, ret_info); /* also when refused: the caller may say whom it named */
    if (!t->row.revoked_us) {
        int64_t now = (int64_t)wall_usec();
        if (t->role == AUTH_ROLE_ADMIN) {
            size_t admins = 0;
            for (size_t i = 0; i < a->n; i++)
                admins += a->tokens[i].role == AUTH_ROLE_ADMIN &&
                          token_state(&a->tokens[i], now) == TOKEN_ACTIVE;
            if (admins <= 1 && token_state(t, now) == TOKEN_ACTIVE)
                return ig_error_set_reason(err, EBUSY, "last_admin",
                                           "token '%s' is the last active admin token: create "
                                           "another admin token first",
                                           t->row.id);
        }
        int r = tokens_store_revoke(a->store, t->row.id, now, err);
        if (r < 0)
            return r;
        t->row.revoked_us = now;
        log_info("token revoked", "id=%s name=%s", t->row.id, t->row.name);
    }
    token_info(t, ret_info);
    return 0;
}
