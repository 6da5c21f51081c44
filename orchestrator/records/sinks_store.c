#include "records/sinks_store.h"

#include <string.h>

#include "records/retention.h"
#include "records/store-internal.h"

int sinks_store_insert(struct journal *j, const struct sinks_store_row *row, journal_done_fn done,
                       void *userdata)
{
    const struct db_value v[] = {
        DV_S(row->id),
        DV_S(row->function),
        DV_S(row->url),
        DV_S(row->type),
        DV_S(row->time),
        DV_S(row->content_type),
        row->body_len ? DV_B(row->body, row->body_len) : DV_B("", 0),
        DV_I(row->max_attempts),
        DV_I(row->created_us),
        DV_I(row->expires_us),
    };
    return journal_submit_lazy(j,
                               "INSERT INTO sink_deliveries (id, function, url, type, time, "
                               "content_type, body, status, attempts, max_attempts, created_us, "
                               "expires_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, "
                               "$9, $10) ON CONFLICT (id) DO UPDATE SET "
                               "function = excluded.function, url = excluded.url, "
                               "type = excluded.type, time = excluded.time, "
                               "content_type = excluded.content_type, body = excluded.body, "
                               "status = excluded.status, attempts = excluded.attempts, "
                               "max_attempts = excluded.max_attempts, http_status = NULL, "
                               "error = NULL, next_attempt_us = NULL, "
                               "created_us = excluded.created_us, finished_us = NULL, "
                               "expires_us = excluded.expires_us",
                               v, ARRAY_SIZE(v), done, userdata);
}

int sinks_store_update(struct journal *j, const struct sinks_store_row *row, journal_done_fn done,
                       void *userdata)
{
    bool final = !streq(row->status, "pending");
    const struct db_value v[] = {
        DV_S(row->status),
        DV_I(row->attempts),
        db_opt_int(row->http_status),
        DV_S(row->error),
        db_opt_int(row->next_attempt_us),
        db_opt_int(row->finished_us),
        DV_I(row->expires_us),
        DV_I(final),
        DV_S(row->id),
    };
    return journal_submit_lazy(j,
                               "UPDATE sink_deliveries SET status = $1, attempts = $2, "
                               "http_status = $3, error = $4, next_attempt_us = $5, "
                               "finished_us = $6, expires_us = $7, "
                               "body = CASE WHEN $8 <> 0 THEN NULL ELSE body END WHERE id = $9",
                               v, ARRAY_SIZE(v), done, userdata);
}

int sinks_store_each_pending(struct store *s,
                             int (*each)(void *userdata, const struct sinks_store_row *row),
                             void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db,
                 "SELECT id, function, url, type, time, content_type, body, attempts, "
                 "max_attempts, next_attempt_us FROM sink_deliveries WHERE status = "
                 "'pending' ORDER BY created_us",
                 NULL, 0, &rows, NULL) < 0)
        return db_fail(s->db, err, "loading sink deliveries");
    int q;
    while ((q = db_next(rows)) > 0) {
        struct sinks_store_row row = {
            .id = db_text(rows, 0),
            .function = db_text(rows, 1),
            .url = db_text(rows, 2),
            .type = db_text(rows, 3),
            .time = db_text(rows, 4),
            .content_type = db_text(rows, 5),
            .status = "pending",
            .attempts = (int)db_int(rows, 7),
            .max_attempts = (int)db_int(rows, 8),
            .next_attempt_us = db_int(rows, 9),
        };
        row.body = db_blob(rows, 6, &row.body_len);
        int r = each(userdata, &row);
        if (r < 0)
            return ig_error_set(err, -r, "loading sink deliveries: %s", strerror(-r));
    }
    if (q < 0)
        return db_fail(s->db, err, "loading sink deliveries");
    return 0;
}

int sinks_store_find(struct store *s, const char *id,
                     void (*each)(void *userdata, const struct sinks_store_row *row),
                     void *userdata)
{
    store_settle(s);
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(id)};
    if (db_query(s->db,
                 "SELECT url, type, status, attempts, max_attempts, http_status, error, "
                 "next_attempt_us, finished_us FROM sink_deliveries WHERE id = $1",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return -EIO;
    if (db_next(rows) <= 0)
        return -ENOENT;
    const struct sinks_store_row row = {
        .id = id,
        .url = db_text(rows, 0),
        .type = db_text(rows, 1),
        .status = db_text(rows, 2),
        .attempts = (int)db_int(rows, 3),
        .max_attempts = (int)db_int(rows, 4),
        .http_status = (int)db_int(rows, 5),
        .error = db_text(rows, 6),
        .next_attempt_us = db_int(rows, 7),
        .finished_us = db_int(rows, 8),
    };
    each(userdata, &row);
    return 0;
}

void sinks_store_purge(struct journal *j, int64_t now_us)
{
    const struct db_value v[] = {DV_I(now_us)};
    journal_submit_lazy(j,
                        "DELETE FROM sink_deliveries WHERE expires_us < $1 AND status <> 'pending'",
                        v, ARRAY_SIZE(v), retention_done, "sink_deliveries");
}
