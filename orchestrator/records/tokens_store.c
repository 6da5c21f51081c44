#include "records/tokens_store.h"

#include <string.h>

#include "records/store-internal.h"

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
    if (db_exec(s->db,
                "INSERT INTO tokens (id, name, role, salt, hash, created_us, expires_us, "
                "revoked_us, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
                v, ARRAY_SIZE(v), NULL) < 0)
        return db_fail(s->db, err, "storing the token");
    return 0;
}

int tokens_store_load(struct store *s, int (*each)(void *userdata, const struct token_row *t),
                      void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db,
                 "SELECT id, name, role, salt, hash, created_us, expires_us, revoked_us, "
                 "created_by FROM tokens ORDER BY created_us, id",
                 NULL, 0, &rows, NULL) < 0)
        return db_fail(s->db, err, "reading tokens");
    int r;
    while ((r = db_next(rows)) > 0) {
        struct token_row t = {};
        const char *role = db_text(rows, 2);
        size_t salt_len, hash_len;
        const void *salt = db_blob(rows, 3, &salt_len), *hash = db_blob(rows, 4, &hash_len);
        if (salt_len != sizeof(t.salt) || hash_len != sizeof(t.hash) || !role)
            continue; /* cannot be written by this code; never matches */
        snprintf(t.id, sizeof(t.id), "%s", db_text(rows, 0));
        snprintf(t.name, sizeof(t.name), "%s", db_text(rows, 1));
        snprintf(t.role, sizeof(t.role), "%s", role);
        memcpy(t.salt, salt, sizeof(t.salt));
        memcpy(t.hash, hash, sizeof(t.hash));
        t.created_us = db_int(rows, 5);
        t.expires_us = db_int(rows, 6);
        t.revoked_us = db_int(rows, 7);
        if (!db_is_null(rows, 8))
            snprintf(t.created_by, sizeof(t.created_by), "%s", db_text(rows, 8));
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
    if (db_exec(s->db, "UPDATE tokens SET revoked_us = $1 WHERE id = $2", v, ARRAY_SIZE(v), NULL) <
        0)
        return db_fail(s->db, err, "revoking the token");
    return 0;
}
