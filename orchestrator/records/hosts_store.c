#include "records/hosts_store.h"

#include "records/changes.h"
#include "records/store-internal.h"

/* A host's figures as statement values, in their columns' order (containers_ready,
 * containers_busy, memory_used, memory_budget, invocations_per_s). */
#define FIGURE_VALUES 5
static void figure_values(const struct host_figures *f, struct db_value ret[FIGURE_VALUES])
{
    ret[0] = DV_I(f->containers_ready);
    ret[1] = DV_I(f->containers_busy);
    ret[2] = DV_I(f->memory_used);
    ret[3] = DV_I(f->memory_budget);
    ret[4] = DV_F(f->invocations_per_s);
}

int hosts_store_register(struct store *s, const struct host_row *h, struct ig_error *err)
{
    struct db_value v[4 + FIGURE_VALUES] = {DV_S(h->host_id), DV_S(h->advertise), DV_S(h->version),
                                            DV_I(h->started_us)};
    figure_values(&h->figures, v + 4);
    if (db_exec(s->db,
                "INSERT INTO hosts (host_id, advertise, version, started_at, heartbeat_at, "
                "containers_ready, containers_busy, memory_used, memory_budget, "
                "invocations_per_s) VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9) "
                "ON CONFLICT (host_id) DO UPDATE SET advertise = $2, version = $3, "
                "started_at = $4, heartbeat_at = $4, containers_ready = $5, "
                "containers_busy = $6, memory_used = $7, memory_budget = $8, "
                "invocations_per_s = $9, drain_requested = 0",
                v, ARRAY_SIZE(v), NULL) < 0)
        return db_fail(s->db, err, "store: registering host %s", h->host_id);
    /* What it had warm before a restart went with its containers. */
    if (db_exec(s->db, "DELETE FROM warm_capacity WHERE host_id = $1", v, 1, NULL) < 0)
        return db_fail(s->db, err, "store: clearing host %s's warm capacity", h->host_id);
    return 0;
}

int hosts_store_heartbeat(struct journal *j, const char *host_id, int64_t now_us,
                          const struct host_figures *f, journal_done_fn done, void *userdata)
{
    struct db_value v[2 + FIGURE_VALUES] = {DV_S(host_id), DV_I(now_us)};
    figure_values(f, v + 2);
    return journal_submit_lazy(j,
                               "UPDATE hosts SET heartbeat_at = $2, containers_ready = $3, "
                               "containers_busy = $4, memory_used = $5, memory_budget = $6, "
                               "invocations_per_s = $7 WHERE host_id = $1",
                               v, ARRAY_SIZE(v), done, userdata);
}

int hosts_store_request_drain(struct journal *j, const char *host_id)
{
    const struct db_value v[] = {DV_S(host_id)};
    int r = journal_submit(j, "UPDATE hosts SET drain_requested = 1 WHERE host_id = $1", v,
                           ARRAY_SIZE(v), NULL, NULL);
    return r < 0 ? r : changes_announce(j, CHANGES_DRAIN, host_id, NULL, NULL);
}

int hosts_store_drain_requested(struct store *s, const char *host_id, bool *ret,
                                struct ig_error *err)
{
    const struct db_value v[] = {DV_S(host_id)};
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    int r = db_query(s->db, "SELECT drain_requested FROM hosts WHERE host_id = $1", v,
                     ARRAY_SIZE(v), &rows, NULL);
    if (r == 0)
        r = db_next(rows);
    if (r < 0)
        return db_fail(s->db, err, "store: reading host %s's row", host_id);
    *ret = r > 0 && db_int(rows, 0) != 0;
    return 0;
}

int hosts_store_forget(struct store *s, const char *host_id, int64_t beat_before_us,
                       struct ig_error *err)
{
    const struct db_value v[] = {DV_S(host_id), DV_I(beat_before_us)};
    /* In one transaction, both under the same condition: its warm rows go with its row, and a
     * host that beat since keeps both. */
    const struct db_stmt stmts[] = {
        {"DELETE FROM warm_capacity WHERE host_id = $1 AND EXISTS (SELECT 1 FROM hosts WHERE "
         "host_id = $1 AND heartbeat_at < $2)",
         v, ARRAY_SIZE(v)},
        {"DELETE FROM hosts WHERE host_id = $1 AND heartbeat_at < $2", v, ARRAY_SIZE(v)},
    };
    int rows[ARRAY_SIZE(stmts)];
    size_t failed;
    int r = db_exec_batch(s->db, stmts, ARRAY_SIZE(stmts), rows, &failed, err);
    if (r < 0) {
        ig_error_prefix(err, "store: forgetting host %s", host_id);
        return r;
    }
    return rows[1];
}

int hosts_store_list(struct store *s, int64_t now_us,
                     int (*each)(void *userdata, const struct host_row *h), void *userdata,
                     struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db,
                 "SELECT host_id, advertise, version, started_at, heartbeat_at, "
                 "containers_ready, containers_busy, memory_used, memory_budget, "
                 "invocations_per_s FROM hosts ORDER BY host_id",
                 NULL, 0, &rows, NULL) < 0)
        return db_fail(s->db, err, "store: listing hosts");
    int q;
    while ((q = db_next(rows)) > 0) {
        const struct host_row h = {
            .host_id = db_text(rows, 0),
            .advertise = db_text(rows, 1),
            .version = db_text(rows, 2),
            .started_us = db_int(rows, 3),
            .heartbeat_us = db_int(rows, 4),
            .heartbeat_age_us = now_us - db_int(rows, 4),
            .figures = {.containers_ready = db_int(rows, 5),
                        .containers_busy = db_int(rows, 6),
                        .memory_used = db_int(rows, 7),
                        .memory_budget = db_int(rows, 8),
                        .invocations_per_s = db_double(rows, 9)},
        };
        int r = each(userdata, &h);
        if (r < 0)
            return r;
    }
    if (q < 0)
        return db_fail(s->db, err, "store: listing hosts");
    return 0;
}

int hosts_store_warm(struct journal *j, const char *host_id, const char *function, bool warm)
{
    const struct db_value v[] = {DV_S(host_id), DV_S(function)};
    int r = journal_submit_lazy(j,
                                warm ? "INSERT INTO warm_capacity (host_id, function) "
                                       "VALUES ($1, $2) ON CONFLICT DO NOTHING"
                                     : "DELETE FROM warm_capacity WHERE host_id = $1 AND "
                                       "function = $2",
                                v, ARRAY_SIZE(v), NULL, NULL);
    char what[160];
    snprintf(what, sizeof(what), "%s %s %c", host_id, function, warm ? '+' : '-');
    return r < 0 ? r : changes_announce_each(j, CHANGES_WARM, what);
}

int hosts_store_warm_list(struct store *s,
                          int (*each)(void *userdata, const char *host_id, const char *function),
                          void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db, "SELECT host_id, function FROM warm_capacity", NULL, 0, &rows, NULL) < 0)
        return db_fail(s->db, err, "store: reading warm capacity");
    int q;
    while ((q = db_next(rows)) > 0) {
        int r = each(userdata, db_text(rows, 0), db_text(rows, 1));
        if (r < 0)
            return r;
    }
    if (q < 0)
        return db_fail(s->db, err, "store: reading warm capacity");
    return 0;
}
