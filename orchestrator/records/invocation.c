#include "records/invocation.h"

#include <string.h>

#include "base/log.h"
#include "records/accountant.h"
#include "records/store-internal.h"

uint64_t inv_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, uint64_t random)
{
    uint64_t d = base_ms;
    for (unsigned i = 1; i < attempt && d < cap_ms; i++)
        d *= 2;
    if (d > cap_ms)
        d = cap_ms;
    return d - d / 2 + (d / 2 ? random % (d / 2 + 1) : 0);
}

void inv_record_clear(struct inv_record *r)
{
    free(r->function);
    free(r->payload);
    free(r->content_type);
    free(r->idempotency_key);
    free(r->result);
    free(r->error_type);
    free(r->error_message);
    memset(r, 0, sizeof(*r));
}

/* A usage figure: NULL when the record has none. */
static struct db_value usage_i(const struct inv_record *r, int64_t v)
{
    return r->measured ? DV_I(v) : DV_NULL_V;
}

/* A record, every column of it (inv_store_insert). DO NOTHING whichever unique key it meets: the
 * id (made before the statement: the journal runs a batch again when the store's loss left its
 * commit unknown, journal.h, and the row is then already there) or the idempotency key (another
 * acceptance of it, on any host, committed first). */
#define INSERT_COLUMNS                                                                             \
    "id, function, version, async, status, payload, content_type, idempotency_key, attempts, "     \
    "max_retries, created_us, started_us, finished_us, next_attempt_us, result, error_type, "      \
    "error_message, billed_ms, cold, expires_us, token_id, cpu_us, mem_peak_bytes, init_us, "      \
    "alias, lease_owner, lease_until"
#define INSERT_SQL                                                                                 \
    "INSERT INTO invocations (" INSERT_COLUMNS ") "                                                \
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "    \
    "$19, $20, $21, $22, $23, $24, $25, $26, $27) ON CONFLICT DO NOTHING"
#define INSERT_VALUES 27

/* Sync invocations' records: a batch's in one statement on PostgreSQL (journal_submit_row). */
static const struct journal_rows sync_records = {
    INSERT_SQL,
    "INSERT INTO invocations (" INSERT_COLUMNS ") SELECT * FROM unnest($1::text[], $2::text[], "
    "$3::bigint[], $4::bigint[], $5::text[], $6::bytea[], $7::text[], $8::text[], $9::bigint[], "
    "$10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bytea[], "
    "$16::text[], $17::text[], $18::bigint[], $19::bigint[], $20::bigint[], $21::text[], "
    "$22::bigint[], $23::bigint[], $24::bigint[], $25::text[], $26::text[], $27::bigint[]) "
    "ON CONFLICT DO NOTHING",
    INSERT_VALUES,
};

int inv_store_insert(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     const struct acct_record *bill, journal_done_fn done, void *userdata)
{
    const struct db_value v[INSERT_VALUES] = {
        DV_S(r->id),
        DV_S(r->function),
        DV_I(r->version),
        DV_I(r->async),
        DV_S(inv_status_name(r->status)),
        r->payload ? DV_B(r->payload, r->payload_len) : DV_NULL_V,
        DV_S(r->content_type),
        DV_S(r->idempotency_key),
        DV_I(r->attempts),
        DV_I(r->max_retries),
        DV_I(r->created_us),
        db_opt_int(r->started_us),
        db_opt_int(r->finished_us),
        db_opt_int(r->next_attempt_us),
        r->result ? DV_B(r->result, r->result_len) : DV_NULL_V,
        DV_S(r->error_type),
        DV_S(r->error_message),
        DV_I(r->billed_ms),
        DV_I(r->cold),
        DV_I(expires_us),
        DV_S(r->token_id[0] ? r->token_id : NULL),
        usage_i(r, r->cpu_us),
        usage_i(r, r->mem_peak_bytes),
        usage_i(r, r->init_us),
        DV_S(r->alias[0] ? r->alias : NULL),
        DV_S(r->lease_owner),
        db_opt_int(r->lease_owner ? r->lease_until_us : 0),
    };
    /* An async invocation's row is its acceptance (the 202 waits for it): durable, and counted
     * (an insert that met a key changed nothing). A sync invocation's is a record of what the
     * client already has: a crash-safe write is enough, with its ledger row before it. */
    int q = bill ? accountant_record(j, bill) : 0;
    if (q < 0)
        return q;
    return r->async ? journal_submit_counted(j, true, INSERT_SQL, v, INSERT_VALUES, done, userdata)
                    : journal_submit_row(j, &sync_records, v, done, userdata);
}

int inv_store_mark_running(struct journal *j, const char *id, int attempts, int64_t started_us,
                           const char *owner, int64_t lease_until_us, journal_done_fn done,
                           void *userdata)
{
    /* Lazy: lost only to a power loss, which leaves the row queued with one attempt fewer, and
     * recovery runs it again, as it would a running one. Under a lease it is fenced like every
     * write of a claimed row, and renews the lease from the attempt's start. */
    const struct db_value v[] = {DV_I(attempts), DV_I(started_us), DV_S(id), DV_S(owner),
                                 db_opt_int(lease_until_us)};
    return journal_submit_lazy(j,
                               "UPDATE invocations SET status = 'running', attempts = $1, "
                               "started_us = $2, lease_until = coalesce($5, lease_until) "
                               "WHERE id = $3 AND (CAST($4 AS TEXT) IS NULL OR "
                               "(lease_owner = $4 AND attempts = $1))",
                               v, ARRAY_SIZE(v), done, userdata);
}

int inv_store_hand_back(struct journal *j, const char *id, const char *owner, int attempts,
                        journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_S(id), DV_S(owner), DV_I(attempts)};
    return journal_submit_counted(j, true,
                                  "UPDATE invocations SET status = 'queued', attempts = $3 - 1, "
                                  "started_us = NULL, lease_owner = NULL, lease_until = NULL "
                                  "WHERE id = $1 AND status = 'running' AND lease_owner = $2 "
                                  "AND attempts = $3",
                                  v, ARRAY_SIZE(v), done, userdata);
}

/* The outcome's UPDATE, values $1..$18 (finish's). A retry's record (back to queued) of an
 * attempt older than the row's is not written: a record retried after a write failure must not
 * undo what a later attempt recorded. An outcome without usage (no attempt ran for it) keeps the
 * last attempt's. Under a lease ($18, the owner), the row is written only while this host holds
 * it for this very attempt: a host whose lease was taken over (it was thought dead, or its lease
 * ran out) changes nothing. Either way the lease ends: a retry is claimed again by whichever host
 * is free. The payload is dropped once it cannot run again: a final record keeps only the result.
 */
#define FINISH_SQL                                                                                 \
    "UPDATE invocations SET status = $1, attempts = $2, started_us = $3, "                         \
    "finished_us = $4, next_attempt_us = $5, result = $6, error_type = $7, "                       \
    "error_message = $8, billed_ms = $9, cold = $10, "                                             \
    "cpu_us = coalesce($11, cpu_us), "                                                             \
    "mem_peak_bytes = coalesce($12, mem_peak_bytes), "                                             \
    "init_us = coalesce($13, init_us), expires_us = $14, "                                         \
    "payload = CASE WHEN $15 <> 0 THEN NULL ELSE payload END, lease_owner = NULL, "                \
    "lease_until = NULL WHERE id = $16 AND ($15 <> 0 OR attempts <= $17) "                         \
    "AND (CAST($18 AS TEXT) IS NULL OR (lease_owner = $18 AND attempts = $17))"
#define FINISH_VALUES 18

int inv_store_finish(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     const char *owner, const struct acct_record *bill, journal_done_fn done,
                     void *userdata)
{
    const struct db_value v[FINISH_VALUES] = {
        DV_S(inv_status_name(r->status)),
        DV_I(r->attempts),
        db_opt_int(r->started_us),
        db_opt_int(r->finished_us),
        db_opt_int(r->next_attempt_us),
        r->result ? DV_B(r->result, r->result_len) : DV_NULL_V,
        DV_S(r->error_type),
        DV_S(r->error_message),
        DV_I(r->billed_ms),
        DV_I(r->cold),
        usage_i(r, r->cpu_us),
        usage_i(r, r->mem_peak_bytes),
        usage_i(r, r->init_us),
        DV_I(expires_us),
        DV_I(inv_status_final(r->status)),
        DV_S(r->id),
        DV_I(r->attempts),
        DV_S(owner),
    };
    /* With its ledger row, before it (so in its transaction unless a batch's bound falls between
     * them): the attempt ran here and used what it used, so the row is written whether or not the
     * fence lets the UPDATE write, keyed by (id, attempt) so that it is billed once, and a later
     * attempt (another host's) has a number of its own from its claim. done's count is the
     * UPDATE's: 0 when fenced off. */
    int q = bill ? accountant_record(j, bill) : 0;
    if (q < 0)
        return q;
    return journal_submit_counted(j, true, FINISH_SQL, v, FINISH_VALUES, done, userdata);
}

int inv_store_purge(struct journal *j, int64_t now_us, journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {DV_I(now_us)};
    return journal_submit_lazy(j,
                               "DELETE FROM invocations WHERE expires_us < $1 AND status IN "
                               "('succeeded', 'failed', 'dead')",
                               v, ARRAY_SIZE(v), done, userdata);
}

static char *col_dup(struct db_rows *rows, int i, size_t *ret_len)
{
    if (db_is_null(rows, i))
        return NULL;
    size_t n;
    const void *p = db_blob(rows, i, &n);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    if (ret_len)
        *ret_len = n;
    return s;
}

#define RECORD_COLUMNS                                                                             \
    "id, function, version, async, status, payload, content_type, idempotency_key, attempts, "     \
    "max_retries, created_us, started_us, finished_us, next_attempt_us, result, error_type, "      \
    "error_message, billed_ms, cold, token_id, cpu_us, mem_peak_bytes, init_us, alias"

static void row_to_record(struct db_rows *rows, struct inv_record *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", db_text(rows, 0));
    r->function = col_dup(rows, 1, NULL);
    r->version = db_int(rows, 2);
    r->async = db_int(rows, 3);
    inv_status_parse(db_text(rows, 4), &r->status);
    r->payload = col_dup(rows, 5, &r->payload_len);
    r->content_type = col_dup(rows, 6, NULL);
    r->idempotency_key = col_dup(rows, 7, NULL);
    r->attempts = (int)db_int(rows, 8);
    r->max_retries = (int)db_int(rows, 9);
    r->created_us = db_int(rows, 10);
    r->started_us = db_int(rows, 11);
    r->finished_us = db_int(rows, 12);
    r->next_attempt_us = db_int(rows, 13);
    r->result = col_dup(rows, 14, &r->result_len);
    r->error_type = col_dup(rows, 15, NULL);
    r->error_message = col_dup(rows, 16, NULL);
    r->billed_ms = db_int(rows, 17);
    r->cold = db_int(rows, 18);
    if (!db_is_null(rows, 19))
        snprintf(r->token_id, sizeof(r->token_id), "%s", db_text(rows, 19));
    r->measured = !db_is_null(rows, 20);
    r->cpu_us = db_int(rows, 20);
    r->mem_peak_bytes = db_int(rows, 21);
    r->init_us = db_int(rows, 22);
    if (!db_is_null(rows, 23))
        snprintf(r->alias, sizeof(r->alias), "%s", db_text(rows, 23));
}

int inv_store_get(struct store *s, const char *id, struct inv_record *ret)
{
    store_settle(s);
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(id)};
    int r = db_query(s->db, "SELECT " RECORD_COLUMNS " FROM invocations WHERE id = $1", v,
                     ARRAY_SIZE(v), &rows, NULL);
    if (r < 0)
        return r == -ENOTCONN ? r : -EIO;
    r = db_next(rows);
    if (r > 0)
        row_to_record(rows, ret);
    return r > 0 ? 0 : r == 0 ? -ENOENT : -EIO;
}

int inv_store_find_idempotent(struct store *s, const char *function, const char *key,
                              int64_t not_before_us, char ret_id[INV_ID_LEN + 1])
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(function), DV_S(key), DV_I(not_before_us)};
    int r = db_query(s->db,
                     "SELECT id FROM invocations WHERE function = $1 AND idempotency_key = $2 "
                     "AND created_us >= $3 ORDER BY created_us LIMIT 1",
                     v, ARRAY_SIZE(v), &rows, NULL);
    if (r < 0)
        return r == -ENOTCONN ? r : -EIO; /* the store away: say so */
    r = db_next(rows);
    if (r > 0)
        snprintf(ret_id, INV_ID_LEN + 1, "%s", db_text(rows, 0));
    return r > 0 ? 0 : r == 0 ? -ENOENT : -EIO;
}

int inv_store_load_pending(struct store *s, int (*fn)(struct inv_record *r, void *userdata),
                           void *userdata)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    int r;
    if (db_query(s->db,
                 "SELECT " RECORD_COLUMNS " FROM invocations WHERE async = 1 AND "
                 "status IN ('queued', 'running') ORDER BY created_us",
                 NULL, 0, &rows, NULL) < 0)
        return -EIO;
    while ((r = db_next(rows)) > 0) {
        struct inv_record rec;
        row_to_record(rows, &rec);
        int q = fn(&rec, userdata);
        inv_record_clear(&rec);
        if (q < 0)
            return q;
    }
    return r == 0 ? 0 : -EIO;
}

int inv_store_queued_functions(struct store *s, int64_t now_us,
                               int (*fn)(const char *function, int64_t queued, int64_t due,
                                         void *userdata),
                               void *userdata)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_I(now_us)};
    int r;
    if (db_query(s->db,
                 "SELECT function, count(*), count(*) FILTER (WHERE next_attempt_us IS NULL OR "
                 "next_attempt_us <= $1) FROM invocations WHERE async = 1 AND status = 'queued' "
                 "GROUP BY function LIMIT 256",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return -EIO;
    while ((r = db_next(rows)) > 0) {
        int q = fn(db_text(rows, 0), db_int(rows, 1), db_int(rows, 2), userdata);
        if (q < 0)
            return q;
    }
    return r == 0 ? 0 : -EIO;
}

/* The claim's text on each engine: SQLite has no row locks (and needs none: one host, one
 * writer), PostgreSQL's hosts skip the rows another claim holds instead of waiting for it. The
 * claim is the attempt's start as the store sees it (started_us: the claim's time until the
 * outcome writes the attempt's own): the lease covers the attempt's timeout and a grace for a
 * wait here, so the attempt's start need write nothing unless that wait ran long (dispatch's
 * start, queue_lease_short). */
#define CLAIM_SQL(LOCKING)                                                                         \
    "UPDATE invocations SET status = 'running', attempts = attempts + 1, started_us = $2, "        \
    "lease_owner = $1, lease_until = $2 + $3 WHERE id IN (SELECT id FROM invocations WHERE "       \
    "function = $4 "                                                                               \
    "AND async = 1 AND status = 'queued' AND (next_attempt_us IS NULL OR next_attempt_us <= $2) "  \
    "ORDER BY created_us LIMIT $5" LOCKING ") RETURNING " RECORD_COLUMNS

int inv_store_claim(struct store *s, const char *function, int limit, const char *owner,
                    int64_t now_us, int64_t lease_us,
                    int (*fn)(struct inv_record *r, void *userdata), void *userdata)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(owner), DV_I(now_us), DV_I(lease_us), DV_S(function),
                                 DV_I(limit)};
    int r = 0, n = 0;
    if (limit <= 0)
        return 0;
    if (db_query(s->db,
                 db_on_postgresql(s->db) ? CLAIM_SQL(" FOR UPDATE SKIP LOCKED") : CLAIM_SQL(""), v,
                 ARRAY_SIZE(v), &rows, NULL) < 0)
        return -EIO;
    /* Every row is read before any is handed on: fn may write (through the journal), and the
     * claim is committed once its statement is done. */
    struct inv_record *got = calloc((size_t)limit, sizeof(*got));
    if (!got)
        return -ENOMEM;
    while (n < limit && (r = db_next(rows)) > 0) {
        row_to_record(rows, &got[n]);
        got[n++].lease_until_us = now_us + lease_us;
    }
    if (n < limit && r < 0)
        n = -EIO;
    db_rows_free(TAKE_PTR(rows));
    for (int i = 0; i < (n > 0 ? n : 0); i++) {
        if (fn(&got[i], userdata) < 0)
            log_error("a claimed invocation could not be queued: its lease runs out",
                      "id=%s function=%s", got[i].id, function);
        inv_record_clear(&got[i]);
    }
    free(got);
    return n;
}

int inv_store_requeue(struct store *s, const char *owner, int64_t expired_before_us)
{
    const struct db_value v[] = {DV_S(owner), DV_I(expired_before_us)};
    int r = db_exec(s->db,
                    "UPDATE invocations SET status = 'queued', lease_owner = NULL, "
                    "lease_until = NULL, next_attempt_us = NULL WHERE status = 'running' "
                    "AND (lease_owner = $1 OR lease_until < $2)",
                    v, ARRAY_SIZE(v), NULL);
    return r < 0 ? -EIO : r;
}

int inv_store_lease_holders(struct store *s, const char *except,
                            int (*fn)(const char *owner, void *userdata), void *userdata)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(except)};
    int r;
    if (db_query(s->db,
                 "SELECT DISTINCT lease_owner FROM invocations WHERE status = 'running' "
                 "AND lease_owner IS NOT NULL AND lease_owner <> $1",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return -EIO;
    while ((r = db_next(rows)) > 0) {
        int q = fn(db_text(rows, 0), userdata);
        if (q < 0)
            return q;
    }
    return r == 0 ? 0 : -EIO;
}

/* ---- session advisory locks (PostgreSQL): each host's liveness, the schedule tick ---- */

struct inv_host_lock {
    struct db *db; /* idle but for the lock: a busy session outlives its process's death */
};

/* A lock's key: FNV-1a of tag and name, tagged so that none can be the migration's (or
 * another kind's of the same name). */
static int64_t lock_key(const char *tag, const char *name)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const char *p = tag; *p; p++)
        h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
    return (int64_t)h;
}

static int64_t host_lock_key(const char *host_id)
{
    return lock_key("ignis-host:", host_id);
}

/* 1 when db took the session lock key, 0 when another session holds it, -errno. */
static int try_lock(struct db *db, int64_t key)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_I(key)};
    if (db_query(db, "SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END", v,
                 ARRAY_SIZE(v), &rows, NULL) < 0 ||
        db_next(rows) <= 0)
        return -EIO;
    return (int)db_int(rows, 0);
}

/* Takes the session lock key on a connection of its own: as inv_host_lock_take. The tries are
 * made on one connection kept for them (s->lock_trier), which the lock takes when it gets it: a
 * host that does not hold the schedule tick's lock tries it every second, and a connection made
 * and closed each time cost the server a backend's start a second per host. */
static int lock_take(struct store *s, int64_t key, const char *what, struct inv_host_lock **ret,
                     struct ig_error *err)
{
    int r = s->lock_trier ? 0 : db_open(s->path, 0, &s->lock_trier, err);
    if (r < 0)
        return r;
    r = try_lock(s->lock_trier, key);
    if (r < 0) {
        db_fail(s->lock_trier, err, "%s", what);
        db_close(TAKE_PTR(s->lock_trier)); /* a new one at the next try */
    }
    if (r <= 0)
        return r;
    struct inv_host_lock *l = calloc(1, sizeof(*l));
    if (!l) {
        db_close(TAKE_PTR(s->lock_trier)); /* and the lock with it */
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    l->db = TAKE_PTR(s->lock_trier);
    *ret = l;
    return 1;
}

int inv_host_lock_take(struct store *s, const char *host_id, struct inv_host_lock **ret,
                       struct ig_error *err)
{
    return lock_take(s, host_lock_key(host_id), "taking the host's lock", ret, err);
}

int inv_schedule_lock_take(struct store *s, struct inv_host_lock **ret, struct ig_error *err)
{
    return lock_take(s, lock_key("ignis-schedules", ""), "taking the schedule tick's lock", ret,
                     err);
}

void inv_host_lock_free(struct inv_host_lock *l)
{
    if (!l)
        return;
    db_close(l->db);
    free(l);
}

int inv_store_requeue_dead(struct store *s, const char *host_id)
{
    int r = try_lock(s->db, host_lock_key(host_id));
    if (r <= 0)
        return r;
    /* Its session is gone: so is the host (or it runs no more as it did). Its rows go back to
     * the queue while this connection holds its lock, so that it cannot come back meanwhile
     * and claim in between. */
    r = inv_store_requeue(s, host_id, 0);
    const struct db_value v[] = {DV_I(host_lock_key(host_id))};
    if (db_exec(s->db, "SELECT pg_advisory_unlock($1)", v, ARRAY_SIZE(v), NULL) < 0 && r >= 0)
        r = -EIO;
    return r;
}

static void add_time(cJSON *o, const char *key, int64_t us)
{
    if (us)
        cJSON_AddNumberToObject(o, key, (double)us / 1e6);
}

static void add_usage(cJSON *o, const char *key, bool measured, double v)
{
    if (measured)
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

cJSON *inv_record_to_json(const struct inv_record *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "function", r->function ? r->function : "");
    cJSON_AddNumberToObject(o, "version", (double)r->version);
    if (r->alias[0])
        cJSON_AddStringToObject(o, "alias", r->alias);
    else
        cJSON_AddNullToObject(o, "alias");
    cJSON_AddStringToObject(o, "mode", r->async ? "async" : "sync");
    cJSON_AddStringToObject(o, "status", inv_status_name(r->status));
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    cJSON_AddNumberToObject(o, "max_retries", r->max_retries);
    add_time(o, "created", r->created_us);
    add_time(o, "started", r->started_us);
    add_time(o, "finished", r->finished_us);
    if (r->status == INV_QUEUED)
        add_time(o, "next_attempt", r->next_attempt_us);
    if (r->result) {
        /* A JSON result is shown as JSON; anything else as a string (or base64 when binary). */
        cJSON *parsed = cJSON_ParseWithLength(r->result, r->result_len);
        if (parsed)
            cJSON_AddItemToObject(o, "result", parsed);
        else if (memchr(r->result, '\0', r->result_len) == NULL)
            cJSON_AddStringToObject(o, "result", r->result);
    }
    if (r->error_type || r->error_message) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "type", r->error_type ? r->error_type : "");
        cJSON_AddStringToObject(e, "message", r->error_message ? r->error_message : "");
    }
    if (r->finished_us) {
        cJSON_AddNumberToObject(o, "billed_ms", (double)r->billed_ms);
        cJSON_AddBoolToObject(o, "cold_start", r->cold);
        cJSON_AddNumberToObject(o, "duration_ms", (double)(r->finished_us - r->started_us) / 1e3);
        /* The ledger's µs as ms with µs precision, the number GET /v1/usage gives for the same
         * attempt; the REPORT line rounds it to two decimals for people. */
        add_usage(o, "cpu_ms", r->measured, (double)r->cpu_us / 1e3);
        add_usage(o, "peak_memory_bytes", r->measured, (double)r->mem_peak_bytes);
        add_usage(o, "init_ms", r->measured, (double)r->init_us / 1e3);
    }
    return o;
}
