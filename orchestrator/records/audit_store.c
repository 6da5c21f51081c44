#include "records/audit_store.h"

#include <sqlite3.h>
#include <string.h>

#include "records/journal.h"
#include "records/retention.h"
#include "records/store-internal.h"

int audit_store_append(struct journal *j, const struct audit_row *r)
{
    const struct db_value v[] = {
        DV_I(r->time_us), DV_S(r->token_id), DV_S(r->token_name), DV_S(r->role), DV_S(r->action),
        DV_S(r->path),    DV_S(r->function), DV_S(r->detail),     DV_S(r->peer), DV_I(r->status),
    };
    return journal_submit_lazy(j,
                               "INSERT INTO audit (time_us, token_id, token_name, role, action, "
                               "path, function, detail, peer, status) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               v, ARRAY_SIZE(v), NULL, NULL);
}

int audit_store_purge(struct journal *j, int64_t before_us)
{
    const struct db_value v[] = {DV_I(before_us)};
    return journal_submit_lazy(j, "DELETE FROM audit WHERE time_us < ?", v, ARRAY_SIZE(v),
                               retention_done, "audit");
}

static const char *text_or_null(sqlite3_stmt *st, int col)
{
    return sqlite3_column_type(st, col) == SQLITE_NULL ? NULL
                                                       : (const char *)sqlite3_column_text(st, col);
}

int audit_store_list(struct store *s, const char *function, int64_t since_us, unsigned long limit,
                     int (*each)(void *userdata, const struct audit_row *r), void *userdata,
                     struct ig_error *err)
{
    store_settle(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT seq, time_us, token_id, token_name, role, action, path, "
                           "function, detail, peer, status FROM audit "
                           "WHERE time_us >= ? AND (?2 IS NULL OR function = ?2) "
                           "ORDER BY seq DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "reading the audit log: %s", sqlite3_errmsg(s->db));
    sqlite3_bind_int64(st, 1, since_us);
    if (function)
        sqlite3_bind_text(st, 2, function, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const struct audit_row row = {
            .seq = sqlite3_column_int64(st, 0),
            .time_us = sqlite3_column_int64(st, 1),
            .token_id = text_or_null(st, 2),
            .token_name = text_or_null(st, 3),
            .role = text_or_null(st, 4),
            .action = text_or_null(st, 5),
            .path = text_or_null(st, 6),
            .function = text_or_null(st, 7),
            .detail = text_or_null(st, 8),
            .peer = text_or_null(st, 9),
            .status = sqlite3_column_int(st, 10),
        };
        int q = each(userdata, &row);
        if (q < 0) {
            sqlite3_finalize(st);
            return ig_error_set(err, q, "reading the audit log: %s", strerror(-q));
        }
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return ig_error_set(err, EIO, "reading the audit log: %s", sqlite3_errmsg(s->db));
    return 0;
}
