#include "records/sinks_store.h"

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
                               "INSERT OR REPLACE INTO sink_deliveries (id, function, url, type, "
                               "time, content_type, body, status, attempts, max_attempts, "
                               "created_us, expires_us) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, "
                               "?, ?, ?)",
                               v, ARRAY_SIZE(v), done, userdata);
}

int sinks_store_update(struct journal *j, const struct sinks_store_row *row, journal_done_fn done,
                       void *userdata)
{
    bool final = !streq(row->status, "pending");
    const struct db_value v[] = {
        DV_S(row->status),
        DV_I(row->attempts),
        row->http_status ? DV_I(row->http_status) : DV_NULL_V,
        DV_S(row->error),
        row->next_attempt_us ? DV_I(row->next_attempt_us) : DV_NULL_V,
        row->finished_us ? DV_I(row->finished_us) : DV_NULL_V,
        DV_I(row->expires_us),
        DV_I(final),
        DV_S(row->id),
    };
    return journal_submit_lazy(j,
                               "UPDATE sink_deliveries SET status = ?, attempts = ?, "
                               "http_status = ?, error = ?, next_attempt_us = ?, finished_us = ?, "
                               "expires_us = ?, body = CASE WHEN ? THEN NULL ELSE body END "
                               "WHERE id = ?",
                               v, ARRAY_SIZE(v), done, userdata);
}

int sinks_store_each_pending(struct store *s,
                             int (*each)(void *userdata, const struct sinks_store_row *row),
                             void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, function, url, type, time, content_type, body, attempts, "
                           "max_attempts, next_attempt_us FROM sink_deliveries WHERE status = "
                           "'pending' ORDER BY created_us",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "%s", sqlite3_errmsg(s->db));
    int q, r = 0;
    while ((q = sqlite3_step(st)) == SQLITE_ROW) {
        const struct sinks_store_row row = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .function = (const char *)sqlite3_column_text(st, 1),
            .url = (const char *)sqlite3_column_text(st, 2),
            .type = (const char *)sqlite3_column_text(st, 3),
            .time = (const char *)sqlite3_column_text(st, 4),
            .content_type = (const char *)sqlite3_column_text(st, 5),
            .body = sqlite3_column_blob(st, 6),
            .body_len = (size_t)sqlite3_column_bytes(st, 6),
            .status = "pending",
            .attempts = sqlite3_column_int(st, 7),
            .max_attempts = sqlite3_column_int(st, 8),
            .next_attempt_us = sqlite3_column_int64(st, 9),
        };
        if ((r = each(userdata, &row)) < 0)
            break;
    }
    if (r == 0 && q != SQLITE_DONE)
        r = -EIO;
    if (r < 0)
        ig_error_set(err, -r, "%s", sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return r;
}

int sinks_store_find(struct store *s, const char *id,
                     void (*each)(void *userdata, const struct sinks_store_row *row),
                     void *userdata)
{
    store_settle(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT url, type, status, attempts, max_attempts, http_status, error, "
                           "next_attempt_us, finished_us FROM sink_deliveries WHERE id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int r = -ENOENT;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const struct sinks_store_row row = {
            .id = id,
            .url = (const char *)sqlite3_column_text(st, 0),
            .type = (const char *)sqlite3_column_text(st, 1),
            .status = (const char *)sqlite3_column_text(st, 2),
            .attempts = sqlite3_column_int(st, 3),
            .max_attempts = sqlite3_column_int(st, 4),
            .http_status = sqlite3_column_int(st, 5),
            .error = (const char *)sqlite3_column_text(st, 6),
            .next_attempt_us = sqlite3_column_int64(st, 7),
            .finished_us = sqlite3_column_int64(st, 8),
        };
        each(userdata, &row);
        r = 0;
    }
    sqlite3_finalize(st);
    return r;
}

void sinks_store_purge(struct journal *j, int64_t now_us)
{
    const struct db_value v[] = {DV_I(now_us)};
    journal_submit_lazy(j,
                        "DELETE FROM sink_deliveries WHERE expires_us < ? AND status <> 'pending'",
                        v, ARRAY_SIZE(v), retention_done, "sink_deliveries");
}
