#include "records/audit_store.h"

#include <string.h>

#include "base/invocation_id.h"
#include "records/journal.h"
#include "records/retention.h"
#include "records/store-internal.h"

int audit_store_append(struct journal *j, const struct audit_row *r)
{
    char rid[INV_ID_LEN + 1];
    inv_id_new(rid);
    const struct db_value v[] = {
        DV_I(r->time_us), DV_S(r->token_id), DV_S(r->token_name),         DV_S(r->role),
        DV_S(r->action),  DV_S(r->path),     DV_S(r->function),           DV_S(r->detail),
        DV_S(r->peer),    DV_I(r->status),   {.type = DV_TEXT, .p = rid},
    };
    /* rid: the row once, should the journal run its batch again (journal.h). */
    return journal_submit_lazy(j,
                               "INSERT INTO audit (time_us, token_id, token_name, role, action, "
                               "path, function, detail, peer, status, rid) "
                               "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
                               "ON CONFLICT (rid) DO NOTHING",
                               v, ARRAY_SIZE(v), NULL, NULL);
}

int audit_store_purge(struct journal *j, int64_t before_us)
{
    const struct db_value v[] = {DV_I(before_us)};
    return journal_submit_lazy(j, "DELETE FROM audit WHERE time_us < $1", v, ARRAY_SIZE(v),
                               retention_done, "audit");
}

int audit_store_list(struct store *s, const char *function, int64_t since_us, unsigned long limit,
                     int (*each)(void *userdata, const struct audit_row *r), void *userdata,
                     struct ig_error *err)
{
    store_settle(s);
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_I(since_us), DV_S(function), DV_I(limit)};
    if (db_query(s->db,
                 "SELECT seq, time_us, token_id, token_name, role, action, path, "
                 "function, detail, peer, status FROM audit "
                 "WHERE time_us >= $1 AND (CAST($2 AS TEXT) IS NULL OR function = $2) "
                 "ORDER BY seq DESC LIMIT $3",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return db_fail(s->db, err, "reading the audit log");
    int r;
    while ((r = db_next(rows)) > 0) {
        const struct audit_row row = {
            .seq = db_int(rows, 0),
            .time_us = db_int(rows, 1),
            .token_id = db_text(rows, 2),
            .token_name = db_text(rows, 3),
            .role = db_text(rows, 4),
            .action = db_text(rows, 5),
            .path = db_text(rows, 6),
            .function = db_text(rows, 7),
            .detail = db_text(rows, 8),
            .peer = db_text(rows, 9),
            .status = (int)db_int(rows, 10),
        };
        int q = each(userdata, &row);
        if (q < 0)
            return ig_error_set(err, q, "reading the audit log: %s", strerror(-q));
    }
    if (r < 0)
        return db_fail(s->db, err, "reading the audit log");
    return 0;
}
