#include "records/bundles_store.h"

#include <stdlib.h>
#include <string.h>

#include "records/store-internal.h"

int bundles_store_put(struct store *s, const char *digest, const void *data, size_t len,
                      struct ig_error *err)
{
    struct db *db;
    int r = db_open(s->path, 0, &db, err);
    if (r < 0)
        return r;
    const struct db_value key[] = {DV_S(digest)};
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    r = db_begin(db, NULL);
    if (r == 0)
        r = db_query(db, "SELECT 1 FROM bundle_chunks WHERE digest = $1 AND n = 0", key,
                     ARRAY_SIZE(key), &rows, NULL);
    if (r == 0)
        r = db_next(rows);
    db_rows_free(TAKE_PTR(rows));
    /* r == 1: stored already, by an earlier push of the same bytes. */
    for (size_t off = 0, n = 0; r == 0 && off < len; off += BUNDLES_STORE_CHUNK, n++) {
        size_t chunk = len - off < BUNDLES_STORE_CHUNK ? len - off : BUNDLES_STORE_CHUNK;
        const struct db_value v[] = {DV_S(digest), DV_I(n), DV_B((const char *)data + off, chunk)};
        /* Another host storing the same bytes at once: its rows are these. */
        r = db_exec(db,
                    "INSERT INTO bundle_chunks (digest, n, data) VALUES ($1, $2, $3) "
                    "ON CONFLICT (digest, n) DO NOTHING",
                    v, ARRAY_SIZE(v), NULL);
        r = r < 0 ? r : 0;
    }
    if (r >= 0 && db_commit(db, NULL) == 0) {
        db_close(db);
        return 0;
    }
    r = db_fail(db, err, "store: storing bundle %s", digest);
    db_rollback(db);
    db_close(db);
    return r;
}

/* Appends the rows' chunks to *buf, checking they come numbered 0..n-1. */
static int read_chunks(struct db *db, struct db_rows *rows, const char *digest, size_t max,
                       char **buf, size_t *len, struct ig_error *err)
{
    int q;
    int64_t expect = 0;
    while ((q = db_next(rows)) > 0) {
        size_t n;
        const void *data = db_blob(rows, 1, &n);
        if (db_int(rows, 0) != expect++)
            return ig_error_set(err, EBADMSG,
                                "bundle %s: chunk %lld of its stored bytes is missing", digest,
                                (long long)(expect - 1));
        if (*len + n > max)
            return ig_error_set(err, EFBIG, "bundle %s: its stored bytes pass %zu bytes", digest,
                                max);
        char *nb = realloc(*buf, *len + n + 1);
        if (!nb)
            return ig_error_set(err, ENOMEM, "out of memory");
        *buf = nb;
        if (n)
            memcpy(*buf + *len, data, n);
        *len += n;
    }
    if (q < 0)
        return db_fail(db, err, "store: reading bundle %s", digest);
    if (expect == 0)
        return ig_error_set(err, ENOENT, "bundle %s: the store does not hold its bytes", digest);
    return 0;
}

int bundles_store_get(struct store *s, const char *digest, size_t max, char **ret, size_t *ret_len,
                      struct ig_error *err)
{
    struct db *db;
    int r = db_open(s->path, DB_READONLY, &db, err);
    if (r < 0)
        return r;
    const struct db_value key[] = {DV_S(digest)};
    struct db_rows *rows = NULL;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    r = db_query(db, "SELECT n, data FROM bundle_chunks WHERE digest = $1 ORDER BY n", key,
                 ARRAY_SIZE(key), &rows, NULL);
    r = r < 0 ? db_fail(db, err, "store: reading bundle %s", digest)
              : read_chunks(db, rows, digest, max, &buf, &len, err);
    db_rows_free(rows);
    db_close(db);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(buf);
    *ret_len = len;
    return 0;
}

bool bundles_store_has(struct store *s, const char *digest)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(digest)};
    if (db_query(s->db, "SELECT 1 FROM bundle_chunks WHERE digest = $1 AND n = 0", v, ARRAY_SIZE(v),
                 &rows, NULL) < 0)
        return false;
    return db_next(rows) == 1;
}

int bundles_store_forget(struct store *s, const char *digest)
{
    const struct db_value v[] = {DV_S(digest)};
    int r = db_exec(s->db,
                    "DELETE FROM bundle_chunks WHERE digest = $1 AND NOT EXISTS "
                    "(SELECT 1 FROM function_versions WHERE digest = $1)",
                    v, ARRAY_SIZE(v), NULL);
    return r < 0 ? r : 0;
}
