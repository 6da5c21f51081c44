#include "records/tokens_store.h"

#include <string.h>

#include "records/changes.h"
#include "records/store-internal.h"

/* Runs sql on the token id and tells the other hosts, in one transaction. */
static int write_token(struct store *s, const char *id, const char *sql, const struct db_value *v,
                       size_t n, const char *what, struct ig_error *err)
{
    if (db_begin(s->db, NULL) < 0)
        return db_fail(s->db, err, "%s", what);
    if (db_exec(s->db, sql, v, n, NULL) < 0 || changes_notify(s->db, CHANGES_TOKEN, id) < 0 ||
        db_commit(s->db, NULL) < 0) {
        int r = db_fail(s->db, err, "%s", what);
        db_rollback(s->db);
        return r;
    }
    return 0;
}

int tokens_store_insert(struct store *s, const struct token_row *t, struct ig_error *err)
{
    const struct db_value v[] = {
        DV_S(t->id),
        DV_S(t->name),
        DV_S(t->role),
        DV_B(t->salt, sizeof(t->salt)),
        DV_B(t->hash, sizeof(t->hash)),
        DV_I(t->created_us),
        db_opt_int(t->expires_us),
        DV_S(t->created_by[0] ? t->created_by : NULL),
    };
    return write_token(s, t->id,
                       "INSERT INTO tokens (id, name, role, salt, hash, created_us, expires_us, "
                       "revoked_us, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
                       v, ARRAY_SIZE(v), "storing the token", err);
}

#define TOKEN_COLUMNS "id, name, role, salt, hash, created_us, expires_us, revoked_us, created_by"

/* The current row (TOKEN_COLUMNS) into *t; false for a row whose salt or hash has the wrong size
 * or that has no role. */
static bool token_from_row(struct db_rows *rows, struct token_row *t)
{
    const char *role = db_text(rows, 2);
    size_t salt_len, hash_len;
    const void *salt = db_blob(rows, 3, &salt_len), *hash = db_blob(rows, 4, &hash_len);
    if (salt_len != sizeof(t->salt) || hash_len != sizeof(t->hash) || !role)
        return false;
    snprintf(t->id, sizeof(t->id), "%s", db_text(rows, 0));
    snprintf(t->name, sizeof(t->name), "%s", db_text(rows, 1));
    snprintf(t->role, sizeof(t->role), "%s", role);
    memcpy(t->salt, salt, sizeof(t->salt));
    memcpy(t->hash, hash, sizeof(t->hash));
    t->created_us = db_int(rows, 5);
    t->expires_us = db_int(rows, 6);
    t->revoked_us = db_int(rows, 7);
    if (!db_is_null(rows, 8))
        snprintf(t->created_by, sizeof(t->created_by), "%s", db_text(rows, 8));
    return true;
}

int tokens_store_get(struct store *s, const char *id, struct token_row *ret, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(id)};
    if (db_query(s->db, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = $1", v, ARRAY_SIZE(v),
                 &rows, NULL) < 0)
        return db_fail(s->db, err, "reading token %s", id);
    int r = db_next(rows);
    if (r < 0)
        return db_fail(s->db, err, "reading token %s", id);
    struct token_row t = {};
    if (r == 0 || !token_from_row(rows, &t))
        return ig_error_set(err, ENOENT, "no token %s", id);
    *ret = t;
    explicit_bzero(&t, sizeof(t));
    return 0;
}

int tokens_store_load(struct store *s, int (*each)(void *userdata, const struct token_row *t),
                      void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db, "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY created_us, id", NULL, 0,
                 &rows, NULL) < 0)
        return db_fail(s->db, err, "reading tokens");
    int r;
    while ((r = db_next(rows)) > 0) {
        struct token_row t = {};
        if (!token_from_row(rows, &t))
            continue; /* cannot be written by this code; never matches */
        int q = each(userdata, &t);
        explicit_bzero(&t, sizeof(t));
        if (q < 0)
            return ig_error_set(err, q, "reading tokens: %s", strerror(-q));
    }
    if (r < 0)
        return db_fail(s->db, err, "reading tokens");
    return 0;
}

int tokens_store_revoke(struct store *s, const char *id, int64_t revoked_us, struct ig_error *err)
{
    const struct db_value v[] = {DV_I(revoked_us), DV_S(id)};
    return write_token(s, id, "UPDATE tokens SET revoked_us = $1 WHERE id = $2", v, ARRAY_SIZE(v),
                       "revoking the token", err);
}
