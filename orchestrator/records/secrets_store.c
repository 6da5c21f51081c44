#include "records/secrets_store.h"

#include <string.h>

#include "records/changes.h"
#include "records/store-internal.h"

/* Inside an open transaction: whether function has name (*ret_has) and how many it has. */
static int count_secrets(struct store *s, const char *function, const char *name, bool *ret_has,
                         int64_t *ret_n)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(function), DV_S(name)};
    int r = db_query(s->db,
                     "SELECT count(*), COALESCE(sum(CASE WHEN name = $2 THEN 1 ELSE 0 END), 0) "
                     "FROM secrets WHERE function = $1",
                     v, ARRAY_SIZE(v), &rows, NULL);
    if (r < 0 || (r = db_next(rows)) < 0)
        return r;
    *ret_n = r > 0 ? db_int(rows, 0) : 0;
    *ret_has = r > 0 && db_int(rows, 1) > 0;
    return 0;
}

int secrets_store_put(struct store *s, const struct secret_row *row, bool replace, size_t max,
                      bool *ret_created, struct ig_error *err)
{
    const struct db_value v[] = {
        DV_S(row->function),
        DV_S(row->name),
        DV_B(row->nonce, SECRETS_STORE_NONCE_BYTES),
        DV_B(row->sealed, row->sealed_len),
        DV_I(row->updated_us),
    };
    bool has = false;
    int64_t n = 0;
    if (db_begin(s->db, NULL) < 0)
        return db_fail(s->db, err, "storing secret %s", row->name);
    if (count_secrets(s, row->function, row->name, &has, &n) < 0)
        goto fail;
    if (!has && n >= (int64_t)max) {
        db_rollback(s->db);
        return -EBUSY;
    }
    if (has && !replace) {
        db_rollback(s->db);
        *ret_created = false;
        return 0;
    }
    if (db_exec(s->db,
                "INSERT INTO secrets (function, name, nonce, ciphertext, updated_us) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (function, name) DO UPDATE SET "
                "nonce = excluded.nonce, ciphertext = excluded.ciphertext, "
                "updated_us = excluded.updated_us",
                v, ARRAY_SIZE(v), NULL) < 0 ||
        changes_notify(s->db, CHANGES_SECRET, row->function) < 0 || db_commit(s->db, NULL) < 0)
        goto fail;
    *ret_created = !has;
    return 0;
fail:;
    int r = db_fail(s->db, err, "storing secret %s", row->name);
    db_rollback(s->db);
    return r;
}

int secrets_store_delete(struct store *s, const char *function, const char *name,
                         struct ig_error *err)
{
    const struct db_value v[] = {DV_S(function), DV_S(name)};
    int r;
    if (db_begin(s->db, NULL) < 0)
        return db_fail(s->db, err, "removing secret %s", name);
    if ((r = db_exec(s->db, "DELETE FROM secrets WHERE function = $1 AND name = $2", v,
                     ARRAY_SIZE(v), NULL)) < 0 ||
        (r > 0 && changes_notify(s->db, CHANGES_SECRET, function) < 0) ||
        db_commit(s->db, NULL) < 0) {
        r = db_fail(s->db, err, "removing secret %s", name);
        db_rollback(s->db);
        return r;
    }
    return r > 0 ? 0 : -ENOENT;
}

int secrets_store_load(struct store *s, const char *function,
                       int (*each)(void *userdata, const struct secret_row *row), void *userdata,
                       struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(function)};
    if (db_query(s->db,
                 "SELECT function, name, nonce, ciphertext, updated_us FROM secrets "
                 "WHERE CAST($1 AS TEXT) IS NULL OR function = $1 ORDER BY function, name",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return db_fail(s->db, err, "reading secrets");
    int r;
    while ((r = db_next(rows)) > 0) {
        size_t nonce_len;
        struct secret_row row = {.function = db_text(rows, 0), .name = db_text(rows, 1)};
        row.nonce = db_blob(rows, 2, &nonce_len);
        row.sealed = db_blob(rows, 3, &row.sealed_len);
        row.updated_us = db_int(rows, 4);
        if (nonce_len != SECRETS_STORE_NONCE_BYTES || !row.sealed)
            continue; /* no ignisd writes one; it never opens */
        int q = each(userdata, &row);
        if (q < 0)
            return q;
    }
    if (r < 0)
        return db_fail(s->db, err, "reading secrets");
    return 0;
}
