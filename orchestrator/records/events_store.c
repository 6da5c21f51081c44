#include "records/events_store.h"

#include "base/invocation_id.h"
#include "records/retention.h"
#include "records/store-internal.h"

int events_store_remember_id(struct journal *j, const char *source, const char *id,
                             int64_t accepted_us, journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(source), DV_S(id), DV_I(accepted_us)};
    return journal_submit(j,
                          "INSERT INTO event_ids (source, id, accepted_us) VALUES ($1, $2, $3) "
                          "ON CONFLICT (source, id) DO NOTHING",
                          v, ARRAY_SIZE(v), done, userdata);
}

int events_store_forget_id(struct journal *j, const char *source, const char *id,
                           journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(source), DV_S(id)};
    return journal_submit_lazy(j, "DELETE FROM event_ids WHERE source = $1 AND id = $2", v,
                               ARRAY_SIZE(v), done, userdata);
}

int events_store_load_ids(struct store *s, int64_t since_us, size_t max,
                          void (*each)(void *userdata, const char *source, const char *id,
                                       int64_t accepted_us),
                          void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_I(since_us), DV_I(max)};
    /* The newest `max`, oldest first, as they were inserted. */
    if (db_query(s->db,
                 "SELECT source, id, accepted_us FROM (SELECT source, id, accepted_us "
                 "FROM event_ids WHERE accepted_us >= $1 ORDER BY accepted_us DESC "
                 "LIMIT $2) AS newest ORDER BY accepted_us",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return db_fail(s->db, err, "loading event ids");
    while (db_next(rows) > 0)
        each(userdata, db_text(rows, 0), db_text(rows, 1), db_int(rows, 2));
    return 0;
}

int events_store_save_schedule(struct journal *j, const char *function, const char *schedule,
                               int64_t last_run, journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(function), DV_S(schedule), DV_I(last_run)};
    return journal_submit_lazy(j,
                               "INSERT INTO schedules (function, schedule, last_run) "
                               "VALUES ($1, $2, $3) ON CONFLICT (function) DO UPDATE SET "
                               "schedule = excluded.schedule, last_run = excluded.last_run",
                               v, ARRAY_SIZE(v), done, userdata);
}

int events_store_delete_schedule(struct journal *j, const char *function, journal_done_fn done,
                                 void *userdata)
{
    const struct db_value v[] = {DV_S(function)};
    return journal_submit_lazy(j, "DELETE FROM schedules WHERE function = $1", v, ARRAY_SIZE(v),
                               done, userdata);
}

int events_store_load_schedules(struct store *s,
                                void (*each)(void *userdata, const char *function,
                                             const char *schedule, int64_t last_run),
                                void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db, "SELECT function, schedule, last_run FROM schedules", NULL, 0, &rows,
                 NULL) < 0)
        return db_fail(s->db, err, "loading schedules");
    while (db_next(rows) > 0)
        each(userdata, db_text(rows, 0), db_text(rows, 1), db_int(rows, 2));
    return 0;
}

int events_store_append_dead_letter(struct journal *j, const struct events_dead_letter *dl,
                                    journal_done_fn done, void *userdata)
{
    char rid[INV_ID_LEN + 1];
    inv_id_new(rid);
    const struct db_value v[] = {
        DV_I(dl->at_us),  DV_S(dl->function), DV_S(dl->invocation),
        DV_S(dl->type),   DV_S(dl->source),   DV_S(dl->event_id),
        DV_S(dl->reason), DV_S(dl->event),    {.type = DV_TEXT, .p = rid},
    };
    /* rid: the row once, should the journal run its batch again (journal.h). */
    return journal_submit_lazy(
        j,
        "INSERT INTO event_dead_letters (at_us, function, invocation, type, "
        "source, event_id, reason, event, rid) VALUES ($1, $2, $3, $4, $5, $6, $7, "
        "$8, $9) ON CONFLICT (rid) DO NOTHING",
        v, ARRAY_SIZE(v), done, userdata);
}

int events_store_list_dead_letters(struct store *s, size_t limit,
                                   void (*each)(void *userdata,
                                                const struct events_dead_letter *dl),
                                   void *userdata, struct ig_error *err)
{
    store_settle(s);
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_I(limit)};
    if (db_query(s->db,
                 "SELECT seq, at_us, function, invocation, type, source, event_id, "
                 "reason, event FROM event_dead_letters ORDER BY seq DESC LIMIT $1",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return db_fail(s->db, err, "reading dead letters");
    while (db_next(rows) > 0) {
        const struct events_dead_letter dl = {
            .seq = db_int(rows, 0),
            .at_us = db_int(rows, 1),
            .function = db_text(rows, 2),
            .invocation = db_text(rows, 3),
            .type = db_text(rows, 4),
            .source = db_text(rows, 5),
            .event_id = db_text(rows, 6),
            .reason = db_text(rows, 7),
            .event = db_text(rows, 8),
        };
        each(userdata, &dl);
    }
    return 0;
}

void events_store_purge(struct journal *j, int64_t ids_before_us, int64_t dead_letters_before_us)
{
    const struct db_value ids[] = {DV_I(ids_before_us)};
    const struct db_value dead[] = {DV_I(dead_letters_before_us)};
    journal_submit_lazy(j, "DELETE FROM event_ids WHERE accepted_us < $1", ids, 1, retention_done,
                        "event_ids");
    journal_submit_lazy(j, "DELETE FROM event_dead_letters WHERE at_us < $1", dead, 1,
                        retention_done, "event_dead_letters");
}
