#include "records/events_store.h"

#include "records/retention.h"
#include "records/store-internal.h"

int events_store_remember_id(struct journal *j, const char *source, const char *id,
                             int64_t accepted_us, journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(source), DV_S(id), DV_I(accepted_us)};
    return journal_submit(j,
                          "INSERT OR IGNORE INTO event_ids (source, id, accepted_us) "
                          "VALUES (?, ?, ?)",
                          v, ARRAY_SIZE(v), done, userdata);
}

int events_store_forget_id(struct journal *j, const char *source, const char *id,
                           journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(source), DV_S(id)};
    return journal_submit_lazy(j, "DELETE FROM event_ids WHERE source = ? AND id = ?", v,
                               ARRAY_SIZE(v), done, userdata);
}

int events_store_load_ids(struct store *s, int64_t since_us, size_t max,
                          void (*each)(void *userdata, const char *source, const char *id,
                                       int64_t accepted_us),
                          void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    /* The newest `max`, oldest first, as they were inserted. */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT source, id, accepted_us FROM (SELECT source, id, accepted_us "
                           "FROM event_ids WHERE accepted_us >= ? ORDER BY accepted_us DESC "
                           "LIMIT ?) ORDER BY accepted_us",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "loading event ids: %s", sqlite3_errmsg(s->db));
    sqlite3_bind_int64(st, 1, since_us);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    while (sqlite3_step(st) == SQLITE_ROW)
        each(userdata, (const char *)sqlite3_column_text(st, 0),
             (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    return 0;
}

int events_store_save_schedule(struct journal *j, const char *function, const char *schedule,
                               int64_t last_run, journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(function), DV_S(schedule), DV_I(last_run)};
    return journal_submit_lazy(j,
                               "INSERT OR REPLACE INTO schedules (function, schedule, last_run) "
                               "VALUES (?, ?, ?)",
                               v, ARRAY_SIZE(v), done, userdata);
}

int events_store_delete_schedule(struct journal *j, const char *function, journal_done_fn done,
                                 void *userdata)
{
    const struct db_value v[] = {DV_S(function)};
    return journal_submit_lazy(j, "DELETE FROM schedules WHERE function = ?", v, ARRAY_SIZE(v),
                               done, userdata);
}

int events_store_load_schedules(struct store *s,
                                void (*each)(void *userdata, const char *function,
                                             const char *schedule, int64_t last_run),
                                void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT function, schedule, last_run FROM schedules", -1, &st,
                           NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "loading schedules: %s", sqlite3_errmsg(s->db));
    while (sqlite3_step(st) == SQLITE_ROW)
        each(userdata, (const char *)sqlite3_column_text(st, 0),
             (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
    sqlite3_finalize(st);
    return 0;
}

int events_store_append_dead_letter(struct journal *j, const struct events_dead_letter *dl,
                                    journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {
        DV_I(dl->at_us),  DV_S(dl->function), DV_S(dl->invocation), DV_S(dl->type),
        DV_S(dl->source), DV_S(dl->event_id), DV_S(dl->reason),     DV_S(dl->event),
    };
    return journal_submit_lazy(j,
                               "INSERT INTO event_dead_letters (at_us, function, invocation, type, "
                               "source, event_id, reason, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               v, ARRAY_SIZE(v), done, userdata);
}

int events_store_list_dead_letters(struct store *s, size_t limit,
                                   void (*each)(void *userdata,
                                                const struct events_dead_letter *dl),
                                   void *userdata, struct ig_error *err)
{
    store_settle(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT seq, at_us, function, invocation, type, source, event_id, "
                           "reason, event FROM event_dead_letters ORDER BY seq DESC LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "%s", sqlite3_errmsg(s->db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const struct events_dead_letter dl = {
            .seq = sqlite3_column_int64(st, 0),
            .at_us = sqlite3_column_int64(st, 1),
            .function = (const char *)sqlite3_column_text(st, 2),
            .invocation = (const char *)sqlite3_column_text(st, 3),
            .type = (const char *)sqlite3_column_text(st, 4),
            .source = (const char *)sqlite3_column_text(st, 5),
            .event_id = (const char *)sqlite3_column_text(st, 6),
            .reason = (const char *)sqlite3_column_text(st, 7),
            .event = (const char *)sqlite3_column_text(st, 8),
        };
        each(userdata, &dl);
    }
    sqlite3_finalize(st);
    return 0;
}

void events_store_purge(struct journal *j, int64_t ids_before_us, int64_t dead_letters_before_us)
{
    const struct db_value ids[] = {DV_I(ids_before_us)};
    const struct db_value dead[] = {DV_I(dead_letters_before_us)};
    journal_submit_lazy(j, "DELETE FROM event_ids WHERE accepted_us < ?", ids, 1, retention_done,
                        "event_ids");
    journal_submit_lazy(j, "DELETE FROM event_dead_letters WHERE at_us < ?", dead, 1,
                        retention_done, "event_dead_letters");
}
