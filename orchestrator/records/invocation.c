#include "records/invocation.h"

#include <string.h>

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

int inv_store_insert(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     journal_done_fn done, void *userdata)
{
    const struct db_value v[] = {
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
    };
    /* An async invocation's row is its acceptance (the 202 waits for it): durable. A sync
     * invocation's is a record of what the client already has: a crash-safe write is enough. */
    return (r->async ? journal_submit : journal_submit_lazy)(
        j,
        "INSERT INTO invocations (id, function, version, async, status, "
        "payload, content_type, idempotency_key, attempts, max_retries, "
        "created_us, started_us, finished_us, next_attempt_us, result, "
        "error_type, error_message, billed_ms, cold, expires_us, token_id, cpu_us, "
        "mem_peak_bytes, init_us, alias) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
        "$19, $20, $21, $22, $23, $24, $25)",
        v, ARRAY_SIZE(v), done, userdata);
}

int inv_store_mark_running(struct journal *j, const char *id, int attempts, int64_t started_us,
                           journal_done_fn done, void *userdata)
{
    /* Lazy: lost only to a power loss, which leaves the row queued with one attempt fewer, and
     * recovery runs it again, as it would a running one. */
    const struct db_value v[] = {DV_I(attempts), DV_I(started_us), DV_S(id)};
    return journal_submit_lazy(j,
                               "UPDATE invocations SET status = 'running', attempts = $1, "
                               "started_us = $2 WHERE id = $3",
                               v, ARRAY_SIZE(v), done, userdata);
}

int inv_store_finish(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     journal_done_fn done, void *userdata)
{
    /* The payload is dropped once it cannot run again: a final record keeps only the result. */
    const struct db_value v[] = {
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
    };
    /* A retry's record (back to queued) of an attempt older than the row's is not written: a
     * record retried after a write failure must not undo what a later attempt recorded. An
     * outcome without usage (no attempt ran for it) keeps the last attempt's. */
    return journal_submit(j,
                          "UPDATE invocations SET status = $1, attempts = $2, started_us = $3, "
                          "finished_us = $4, next_attempt_us = $5, result = $6, error_type = $7, "
                          "error_message = $8, billed_ms = $9, cold = $10, "
                          "cpu_us = coalesce($11, cpu_us), "
                          "mem_peak_bytes = coalesce($12, mem_peak_bytes), "
                          "init_us = coalesce($13, init_us), expires_us = $14, "
                          "payload = CASE WHEN $15 <> 0 THEN NULL ELSE payload END WHERE id = $16 "
                          "AND ($15 <> 0 OR attempts <= $17)",
                          v, ARRAY_SIZE(v), done, userdata);
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
    if (db_query(s->db, "SELECT " RECORD_COLUMNS " FROM invocations WHERE id = $1", v,
                 ARRAY_SIZE(v), &rows, NULL) < 0)
        return -EIO;
    int r = db_next(rows);
    if (r > 0)
        row_to_record(rows, ret);
    return r > 0 ? 0 : r == 0 ? -ENOENT : -EIO;
}

int inv_store_find_idempotent(struct store *s, const char *function, const char *key,
                              int64_t not_before_us, char ret_id[INV_ID_LEN + 1])
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(function), DV_S(key), DV_I(not_before_us)};
    if (db_query(s->db,
                 "SELECT id FROM invocations WHERE function = $1 AND idempotency_key = $2 "
                 "AND created_us >= $3 ORDER BY created_us LIMIT 1",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return -EIO;
    int r = db_next(rows);
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
