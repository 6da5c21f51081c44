#include "api/auth.h"

#include <fcntl.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/log.h"
#include "records/telemetry.h"

#define TOKEN_PREFIX "ignis_"

static const char *const role_names[AUTH_NROLES] = {
    [AUTH_ROLE_ADMIN] = "admin",
    [AUTH_ROLE_DEVELOPER] = "developer",
    [AUTH_ROLE_INVOKER] = "invoker",
    [AUTH_ROLE_OPERATOR] = "operator",
};

struct token {
    char id[AUTH_TOKEN_ID_LEN + 1];
    char name[AUTH_NAME_MAX + 1];
    enum auth_role role;
    uint8_t salt[16], hash[SHA256_DIGEST_SIZE];
    int64_t created_us, expires_us, revoked_us; /* wall clock; 0: never */
    char created_by[AUTH_TOKEN_ID_LEN + 1];     /* "" for the first admin token */
    struct auth_bucket bucket;
};

struct auth {
    sqlite3 *db;
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
        if (streq(a->tokens[i].id, id))
            return &a->tokens[i];
    return NULL;
}

static void bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static int token_insert(struct auth *a, const struct token *t, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            a->db,
            "INSERT INTO tokens (id, name, role, salt, hash, created_us, expires_us, "
            "revoked_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "storing the token: %s", sqlite3_errmsg(a->db));
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, auth_role_name(t->role), -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, t->salt, sizeof(t->salt), SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, t->hash, sizeof(t->hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, t->created_us);
    bind_opt(st, 7, t->expires_us);
    if (t->created_by[0])
        sqlite3_bind_text(st, 8, t->created_by, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ig_error_set(err, EIO, "storing the token: %s", sqlite3_errmsg(a->db));
    return tokens_append(a, t) < 0 ? ig_error_set(err, ENOMEM, "out of memory") : 0;
}

static int tokens_load(struct auth *a, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db,
                           "SELECT id, name, role, salt, hash, created_us, expires_us, revoked_us, "
                           "created_by FROM tokens ORDER BY created_us, id",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "reading tokens: %s", sqlite3_errmsg(a->db));
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct token t = {};
        const char *role = (const char *)sqlite3_column_text(st, 2);
        if (sqlite3_column_bytes(st, 3) != sizeof(t.salt) ||
            sqlite3_column_bytes(st, 4) != sizeof(t.hash) || !role ||
            auth_role_parse(role, &t.role) < 0)
            continue; /* cannot be written by this code; never matches */
        snprintf(t.id, sizeof(t.id), "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(t.name, sizeof(t.name), "%s", (const char *)sqlite3_column_text(st, 1));
        memcpy(t.salt, sqlite3_column_blob(st, 3), sizeof(t.salt));
        memcpy(t.hash, sqlite3_column_blob(st, 4), sizeof(t.hash));
        t.created_us = sqlite3_column_int64(st, 5);
        t.expires_us = sqlite3_column_int64(st, 6);
        t.revoked_us = sqlite3_column_int64(st, 7);
        if (sqlite3_column_type(st, 8) == SQLITE_TEXT)
            snprintf(t.created_by, sizeof(t.created_by), "%s",
                     (const char *)sqlite3_column_text(st, 8));
        if (tokens_append(a, &t) < 0) {
            sqlite3_finalize(st);
            return ig_error_set(err, ENOMEM, "out of memory");
        }
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ig_error_set(err, EIO, "reading tokens: %s", sqlite3_errmsg(a->db));
    return 0;
}

enum token_state { TOKEN_ACTIVE, TOKEN_EXPIRED, TOKEN_REVOKED };

static enum token_state token_state(const struct token *t, int64_t now_us)
{
    if (t->revoked_us)
        return TOKEN_REVOKED;
    return t->expires_us && now_us >= t->expires_us ? TOKEN_EXPIRED : TOKEN_ACTIVE;
}

/* The record of the token whose text is ignis_ID_SECRET (hex): a fresh salt and the hash. */
static void token_init(enum auth_role role, const char *name, const char *id,
                       const char *secret_hex, struct token *ret)
{
    memset(ret, 0, sizeof(*ret));
    snprintf(ret->id, sizeof(ret->id), "%s", id);
    random_bytes(ret->salt, sizeof(ret->salt));
    auth_hash(ret->salt, secret_hex, ret->hash);
    ret->role = role;
    snprintf(ret->name, sizeof(ret->name), "%s", name);
    ret->created_us = (int64_t)wall_usec();
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
    snprintf(ret_text, AUTH_TOKEN_LEN + 1, TOKEN_PREFIX "%s_%s", ret->id, secret_hex);
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
        log_info("first admin token ready", "id=%s file=%s provisioned=%s", t.id, path,
                 provisioned ? "true" : "false");
    explicit_bzero(text, sizeof(text));
    return r;
}

int auth_new(sqlite3 *db, const struct auth_options *opts, struct auth **ret, struct ig_error *err)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        return ig_error_set(err, ENOMEM, "out of memory");
    a->db = db;
    a->opts = *opts;
    int r = tokens_load(a, err);
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
    auth_hash(t ? t->salt : no_salt, secret, hash);
    explicit_bzero(secret, sizeof(secret));
    if (!t || !memeql_sec(hash, t->hash, sizeof(hash)))
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
    memcpy(c.token_id, t->id, sizeof(c.token_id));
    memcpy(c.name, t->name, sizeof(c.name));
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
                         "token '%s' is over its rate of %g requests a second", t->name,
                         a->opts.rate);
        return false;
    }
    telemetry_auth_allowed(t->role);
    return true;
}

/* ---- the token routes ---- */

static void add_time(cJSON *o, const char *key, int64_t us)
{
    if (!us) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    char buf[32];
    format_time_ms((uint64_t)us, buf);
    cJSON_AddStringToObject(o, key, buf);
}

static cJSON *token_json(const struct token *t)
{
    static const char *const states[] = {
        [TOKEN_ACTIVE] = "active", [TOKEN_EXPIRED] = "expired", [TOKEN_REVOKED] = "revoked"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "role", auth_role_name(t->role));
    cJSON_AddStringToObject(o, "state", states[token_state(t, (int64_t)wall_usec())]);
    add_time(o, "created_at", t->created_us);
    add_time(o, "expires_at", t->expires_us);
    add_time(o, "revoked_at", t->revoked_us);
    if (t->created_by[0])
        cJSON_AddStringToObject(o, "created_by", t->created_by);
    else
        cJSON_AddNullToObject(o, "created_by");
    return o;
}

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

void auth_http_create(struct http_request *req, struct auth *a)
{
    size_t len;
    const char *body = http_request_body(req, &len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        http_reply_error(req, 400, "bad_request",
                         "the body must be a JSON object: {\"role\": ..., \"name\": ..., "
                         "\"expires_in\": ...}");
        return;
    }
    for (const cJSON *f = root->child; f; f = f->next)
        if (!streq(f->string, "role") && !streq(f->string, "name") &&
            !streq(f->string, "expires_in")) {
            http_reply_error(req, 400, "bad_request", "%s: unknown field", f->string);
            cJSON_Delete(root);
            return;
        }
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(root, "role");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    enum auth_role r;
    int64_t expires_s = 0;
    const char *problem = NULL;
    if (!cJSON_IsString(role) || auth_role_parse(role->valuestring, &r) < 0)
        problem = "role: must be one of admin, developer, invoker, operator";
    else if (name && (!cJSON_IsString(name) || !name_valid(name->valuestring)))
        problem = "name: must be 1 to 64 printable characters without spaces";
    else if (expires && (!cJSON_IsString(expires) ||
                         auth_parse_duration(expires->valuestring, &expires_s) < 0))
        problem = "expires_in: must be a duration such as 3600s, 90m, 12h or 30d (at most 100 "
                  "years)";
    if (problem) {
        http_reply_error(req, 400, "bad_request", "%s", problem);
        cJSON_Delete(root);
        return;
    }
    struct token t;
    char text[AUTH_TOKEN_LEN + 1];
    token_generate(r, name ? name->valuestring : auth_role_name(r), &t, text);
    cJSON_Delete(root);
    if (expires_s)
        t.expires_us = t.created_us + expires_s * 1000000;
    const struct http_caller *c = http_request_caller(req);
    if (c)
        memcpy(t.created_by, c->token_id, sizeof(t.created_by));
    struct ig_error err = {};
    if (token_insert(a, &t, &err) < 0) {
        explicit_bzero(text, sizeof(text));
        http_reply_error(req, 500, "internal", "%s", err.message);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "token=%s role=%s name=%s", t.id, auth_role_name(t.role),
             t.name);
    http_request_set_audit_detail(req, detail);
    cJSON *o = token_json(&t);
    cJSON_AddStringToObject(o, "token", text);
    explicit_bzero(text, sizeof(text));
    http_reply_json(req, 201, o);
}

void auth_http_list(struct http_request *req, struct auth *a)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "tokens");
    for (size_t i = 0; i < a->n; i++)
        cJSON_AddItemToArray(arr, token_json(&a->tokens[i]));
    http_reply_json(req, 200, root);
}

void auth_http_revoke(struct http_request *req, struct auth *a)
{
    const char *id = http_request_param(req, 0);
    struct token *t = hex_valid(id, AUTH_TOKEN_ID_LEN) ? token_find(a, id) : NULL;
    if (!t) {
        http_reply_error(req, 404, "not_found", "no token with id '%s'", id);
        return;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "token=%s role=%s name=%s", t->id, auth_role_name(t->role),
             t->name);
    http_request_set_audit_detail(req, detail);
    if (!t->revoked_us) {
        int64_t now = (int64_t)wall_usec();
        if (t->role == AUTH_ROLE_ADMIN) {
            size_t admins = 0;
            for (size_t i = 0; i < a->n; i++)
                admins += a->tokens[i].role == AUTH_ROLE_ADMIN &&
                          token_state(&a->tokens[i], now) == TOKEN_ACTIVE;
            if (admins <= 1 && token_state(t, now) == TOKEN_ACTIVE) {
                http_reply_error(req, 409, "last_admin",
                                 "token '%s' is the last active admin token: create another "
                                 "admin token first",
                                 t->id);
                return;
            }
        }
        sqlite3_stmt *st;
        int r = SQLITE_ERROR;
        if (sqlite3_prepare_v2(a->db, "UPDATE tokens SET revoked_us = ? WHERE id = ?", -1, &st,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, now);
            sqlite3_bind_text(st, 2, t->id, -1, SQLITE_STATIC);
            r = sqlite3_step(st);
            sqlite3_finalize(st);
        }
        if (r != SQLITE_DONE) {
            http_reply_error(req, 500, "internal", "revoking the token: %s", sqlite3_errmsg(a->db));
            return;
        }
        t->revoked_us = now;
        log_info("token revoked", "id=%s name=%s", t->id, t->name);
    }
    http_reply_json(req, 200, token_json(t));
}
