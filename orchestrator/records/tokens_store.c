#include "records/tokens_store.h"

#include <sqlite3.h>
#include <string.h>

#include "records/store-internal.h"

static void bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

int tokens_store_insert(struct store *s, const struct token_row *t, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            s->db,
            "INSERT INTO tokens (id, name, role, salt, hash, created_us, expires_us, "
            "revoked_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            -1, &st, NULL) != SQLITE_OK)
        return store_fail(s->db, err, "storing the token");
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t->role, -1, SQLITE_STATIC);
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
        return store_fail(s->db, err, "storing the token");
    return 0;
}

int tokens_store_load(struct store *s, int (*each)(void *userdata, const struct token_row *t),
                      void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, name, role, salt, hash, created_us, expires_us, revoked_us, "
                           "created_by FROM tokens ORDER BY created_us, id",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "reading tokens: %s", sqlite3_errmsg(s->db));
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct token_row t = {};
        const char *role = (const char *)sqlite3_column_text(st, 2);
        if (sqlite3_column_bytes(st, 3) != sizeof(t.salt) ||
            sqlite3_column_bytes(st, 4) != sizeof(t.hash) || !role)
            continue; /* cannot be written by this code; never matches */
        snprintf(t.id, sizeof(t.id), "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(t.name, sizeof(t.name), "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(t.role, sizeof(t.role), "%s", role);
        memcpy(t.salt, sqlite3_column_blob(st, 3), sizeof(t.salt));
        memcpy(t.hash, sqlite3_column_blob(st, 4), sizeof(t.hash));
        t.created_us = sqlite3_column_int64(st, 5);
        t.expires_us = sqlite3_column_int64(st, 6);
        t.revoked_us = sqlite3_column_int64(st, 7);
        if (sqlite3_column_type(st, 8) == SQLITE_TEXT)
            snprintf(t.created_by, sizeof(t.created_by), "%s",
                     (const char *)sqlite3_column_text(st, 8));
        int q = each(userdata, &t);
        explicit_bzero(&t, sizeof(t));
        if (q < 0) {
            sqlite3_finalize(st);
            return ig_error_set(err, q, "reading tokens: %s", strerror(-q));
        }
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ig_error_set(err, EIO, "reading tokens: %s", sqlite3_errmsg(s->db));
    return 0;
}

int tokens_store_revoke(struct store *s, const char *id, int64_t revoked_us, struct ig_error *err)
{
    sqlite3_stmt *st;
    int r = SQLITE_ERROR;
    if (sqlite3_prepare_v2(s->db, "UPDATE tokens SET revoked_us = ? WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, revoked_us);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (r != SQLITE_DONE)
        return store_fail(s->db, err, "revoking the token");
    return 0;
}
