#include "records/accountant.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "records/retention.h"
#include "records/store-internal.h"

/* ---- pure ---- */

int64_t accountant_billed_ms(uint64_t wall_us)
{
    return (int64_t)((wall_us + 999) / 1000);
}

double accountant_gb_s(uint32_t memory_mb, int64_t billed_ms)
{
    return (double)memory_mb / 1024.0 * (double)billed_ms / 1000.0;
}

static uint64_t delta(uint64_t from, uint64_t to)
{
    return to > from ? to - from : 0;
}

void accountant_compute(const struct acct_attempt *a, uint64_t wall_us, struct acct_usage *ret)
{
    struct acct_usage u = {.memory_mb = a->memory_mb};
    if (a->handed_off) {
        u.wall_us = wall_us;
        u.billed_ms = accountant_billed_ms(wall_us);
        u.gb_s = accountant_gb_s(a->memory_mb, u.billed_ms);
        u.init_us = a->init_us;
        u.peak_reset = a->peak_reset;
    }
    if (a->handed_off && a->begin_ok && a->end_ok) {
        u.cpu_us = delta(a->begin.cpu_usec, a->end.cpu_usec);
        u.oom_kills = delta(a->begin.oom_kills, a->end.oom_kills);
        u.mem_peak_bytes = a->end.memory_peak_bytes;
    }
    *ret = u;
}

int accountant_report_line(char *buf, size_t len, const char *id, int64_t version,
                           const struct acct_usage *u)
{
    uint64_t max_mb = (u->mem_peak_bytes + (1u << 20) - 1) >> 20;
    char init[64] = "";
    if (u->init_us > 0)
        snprintf(init, sizeof(init), "\tInit Duration: %.2f ms", (double)u->init_us / 1e3);
    return snprintf(buf, len,
                    "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %lld ms\t"
                    "CPU: %.2f ms\tMemory Size: %u MB\tMax Memory Used: %llu MB%s\tVersion: %lld",
                    id, (double)u->wall_us / 1e3, (long long)u->billed_ms, (double)u->cpu_us / 1e3,
                    u->memory_mb, (unsigned long long)max_mb, init, (long long)version);
}

/* ---- the ledger ---- */

/* The ledger row's columns, in the order of its values. */
#define ROW_COLUMNS                                                                                \
    "id, attempt, function, version, start_us, wall_us, cpu_us, mem_peak_bytes, peak_reset, "      \
    "memory_mb, billed_ms, gb_s, cold, init_us, status, oom_kills, host"
#define ROW_VALUES 17

/* DO NOTHING: an attempt is billed once, even if a crash made us write it twice; the rollup
 * counts only the rows inserted (on PostgreSQL its statement trigger's transition table holds
 * only those). */
static const struct journal_rows ledger_rows = {
    "INSERT INTO usage (" ROW_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
    "$12, $13, $14, $15, $16, $17) ON CONFLICT (id, attempt) DO NOTHING",
    "INSERT INTO usage (" ROW_COLUMNS ") SELECT * FROM unnest($1::text[], $2::bigint[], "
    "$3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], "
    "$9::bigint[], $10::bigint[], $11::bigint[], $12::float8[], $13::bigint[], $14::bigint[], "
    "$15::text[], $16::bigint[], $17::text[]) ON CONFLICT (id, attempt) DO NOTHING",
    ROW_VALUES,
};

int accountant_record(struct journal *j, const struct acct_record *r)
{
    const struct acct_usage *u = r->usage;
    /* A crash the kernel's OOM killer caused is recorded as `oom`. */
    const char *status = streq(r->status, "crash") && u->oom_kills > 0 ? "oom" : r->status;
    const struct db_value v[ROW_VALUES] = {
        DV_S(r->id),
        DV_I(r->attempt),
        DV_S(r->function),
        DV_I(r->version),
        DV_I(r->start_wall_us),
        DV_I(u->wall_us),
        DV_I(u->cpu_us),
        DV_I(u->mem_peak_bytes),
        DV_I(u->peak_reset),
        DV_I(u->memory_mb),
        DV_I(u->billed_ms),
        DV_F(u->gb_s),
        DV_I(r->cold),
        DV_I(u->init_us),
        DV_S(status),
        DV_I(u->oom_kills),
        DV_S(r->host ? r->host : ""),
    };
    /* Usage survives a crash or restart of ignisd; a power loss may take the last second. */
    return journal_submit_row(j, &ledger_rows, v, NULL, NULL);
}

int accountant_purge(struct journal *j, int64_t rows_before_us, int64_t rollup_before_us)
{
    const struct db_value rows[] = {DV_I(rows_before_us)};
    const struct db_value minutes[] = {DV_I(rollup_before_us / 1000000)};
    int r = journal_submit_lazy(j, "DELETE FROM usage WHERE start_us < $1", rows, 1, retention_done,
                                "usage");
    if (r < 0)
        return r;
    return journal_submit_lazy(j, "DELETE FROM usage_minute WHERE minute < $1", minutes, 1,
                               retention_done, "usage_minute");
}

/* ---- GET /v1/usage ---- */

int accountant_parse_time(const char *text, int64_t now_s, int64_t *ret_s)
{
    size_t n = strlen(text), digits = strspn(text, "0123456789");
    if (n == 0 || digits == 0 || digits > 12)
        return -EINVAL;
    int64_t v = strtoll(text, NULL, 10);
    if (digits == n) {
        *ret_s = v;
        return 0;
    }
    if (digits + 1 == n) {
        int64_t d;
        if (parse_duration_s(text, &d) < 0)
            return -EINVAL;
        *ret_s = now_s - d;
        return 0;
    }
    struct tm tm = {0};
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        return -EINVAL;
    *ret_s = (int64_t)timegm(&tm);
    return 0;
}

int accountant_parse_group(const char *text, enum acct_group *ret)
{
    static const char *const names[] = {
        [ACCT_GROUP_MINUTE] = "minute", [ACCT_GROUP_HOUR] = "hour", [ACCT_GROUP_DAY] = "day"};
    for (size_t i = ACCT_GROUP_MINUTE; i < ARRAY_SIZE(names); i++)
        if (streq(text, names[i])) {
            *ret = (enum acct_group)i;
            return 0;
        }
    return -EINVAL;
}

static void add_figures(cJSON *o, struct db_rows *rows)
{
    cJSON_AddNumberToObject(o, "invocations", (double)db_int(rows, 2));
    cJSON_AddNumberToObject(o, "errors", (double)db_int(rows, 3));
    cJSON_AddNumberToObject(o, "cold_starts", (double)db_int(rows, 4));
    cJSON_AddNumberToObject(o, "oom_kills", (double)db_int(rows, 5));
    cJSON_AddNumberToObject(o, "wall_ms", (double)db_int(rows, 6) / 1e3);
    cJSON_AddNumberToObject(o, "cpu_ms", (double)db_int(rows, 7) / 1e3);
    cJSON_AddNumberToObject(o, "billed_ms", (double)db_int(rows, 8));
    cJSON_AddNumberToObject(o, "gb_s", (double)db_int(rows, 9) / 1024e3);
    cJSON_AddNumberToObject(o, "peak_memory_bytes", (double)db_int(rows, 10));
    cJSON_AddNumberToObject(o, "init_ms", (double)db_int(rows, 11) / 1e3);
}

static void add_to(cJSON *o, const char *key, double v, bool max)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!item) {
        cJSON_AddNumberToObject(o, key, v);
        return;
    }
    cJSON_SetNumberValue(item, max ? (v > item->valuedouble ? v : item->valuedouble)
                                   : item->valuedouble + v);
}

/* Adds figures `from` (an object as add_figures makes) into `to`. */
static void accumulate(cJSON *to, const cJSON *from)
{
    for (const cJSON *f = from->child; f; f = f->next)
        if (cJSON_IsNumber(f) && !streq(f->string, "start"))
            add_to(to, f->string, f->valuedouble, streq(f->string, "peak_memory_bytes"));
}

static void iso_time(int64_t s, char buf[32])
{
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The rollup's figures (add_figures reads columns 2..) over q's range and function. The rollup
 * keeps integers only (GB-s as MB-ms), so sums are exact and equal the ledger rows' sums. */
#define FIGURES                                                                                    \
    "SUM(invocations), SUM(errors), SUM(cold_starts), SUM(oom_kills), SUM(wall_us), "              \
    "SUM(cpu_us), SUM(billed_ms), SUM(mb_ms), MAX(mem_peak_bytes), SUM(init_us) "                  \
    "FROM usage_minute WHERE minute >= $1 AND minute < $2 "                                        \
    "AND (CAST($3 AS TEXT) IS NULL OR function = $3) "

/* The values of FIGURES' $1..$3 for q, and $4: the width of q's buckets. */
static void range_values(const struct acct_query *q, struct db_value ret[4])
{
    static const int64_t widths[] = {[ACCT_GROUP_NONE] = 0,
                                     [ACCT_GROUP_MINUTE] = 60,
                                     [ACCT_GROUP_HOUR] = 3600,
                                     [ACCT_GROUP_DAY] = 86400};
    /* Whole minutes: the rollup's resolution. */
    ret[0] = DV_I(q->since_s - (q->since_s % 60 + 60) % 60);
    ret[1] = DV_I(q->until_s);
    ret[2] = DV_S(q->function);
    ret[3] = DV_I(widths[q->group]);
}

/* Adds `versions` to each function of fns (sorted by name): its figures per version, oldest
 * version first. */
static int add_versions(struct store *store, const struct acct_query *q, cJSON *fns,
                        struct ig_error *err)
{
    static const char sql[] = "SELECT function, version, " FIGURES
                              "GROUP BY function, version ORDER BY function, version";
    struct db_value v[4];
    range_values(q, v);
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(store->db, sql, v, 3, &rows, NULL) < 0)
        return db_fail(store->db, err, "reading the usage ledger failed");
    cJSON *fn = fns->child;
    int r;
    while ((r = db_next(rows)) > 0) {
        const char *name = db_text(rows, 0);
        /* Both queries sort by name, in the same read transaction: the same functions. */
        while (fn && strcmp(cJSON_GetObjectItem(fn, "function")->valuestring, name) < 0)
            fn = fn->next;
        if (!fn || !streq(cJSON_GetObjectItem(fn, "function")->valuestring, name))
            continue;
        cJSON *versions = cJSON_GetObjectItem(fn, "versions");
        if (!versions)
            versions = cJSON_AddArrayToObject(fn, "versions");
        cJSON *ver = cJSON_CreateObject();
        cJSON_AddNumberToObject(ver, "version", (double)db_int(rows, 1));
        add_figures(ver, rows);
        cJSON_AddItemToArray(versions, ver);
    }
    if (r < 0)
        return db_fail(store->db, err, "reading the usage ledger failed");
    return 0;
}

static int query(struct store *store, const struct acct_query *q, cJSON **ret, struct ig_error *err)
{
    static const char sql[] =
        "SELECT function, CASE WHEN $4 = 0 THEN 0 ELSE minute - minute % $4 END AS bucket, " FIGURES
        "GROUP BY function, bucket ORDER BY function, bucket";
    struct db_value v[4];
    range_values(q, v);
    struct db_rows *rows;
    int r = db_query(store->db, sql, v, ARRAY_SIZE(v), &rows, NULL);
    if (r < 0)
        return db_fail(store->db, err, "reading the usage ledger failed");

    cJSON *root = cJSON_CreateObject(), *fns = cJSON_AddArrayToObject(root, "functions");
    cJSON *totals = cJSON_CreateObject(), *cur = NULL, *buckets = NULL;
    char buf[32];
    iso_time(q->since_s - (q->since_s % 60 + 60) % 60, buf);
    cJSON_AddStringToObject(root, "since", buf);
    iso_time(q->until_s, buf);
    cJSON_AddStringToObject(root, "until", buf);
    if (q->group != ACCT_GROUP_NONE)
        cJSON_AddStringToObject(root, "group_by",
                                q->group == ACCT_GROUP_MINUTE ? "minute"
                                : q->group == ACCT_GROUP_HOUR ? "hour"
                                                              : "day");
    static const char *const zero[] = {"invocations",       "errors", "cold_starts", "oom_kills",
                                       "wall_ms",           "cpu_ms", "billed_ms",   "gb_s",
                                       "peak_memory_bytes", "init_ms"};
    for (size_t i = 0; i < ARRAY_SIZE(zero); i++)
        cJSON_AddNumberToObject(totals, zero[i], 0);
    while ((r = db_next(rows)) > 0) {
        const char *name = db_text(rows, 0);
        if (!cur || !streq(cJSON_GetObjectItem(cur, "function")->valuestring, name)) {
            cur = cJSON_CreateObject();
            cJSON_AddStringToObject(cur, "function", name);
            cJSON_AddItemToArray(fns, cur);
            buckets = q->group != ACCT_GROUP_NONE ? cJSON_AddArrayToObject(cur, "buckets") : NULL;
        }
        cJSON *fig = cJSON_CreateObject();
        add_figures(fig, rows);
        accumulate(cur, fig);
        accumulate(totals, fig);
        if (buckets) {
            iso_time(db_int(rows, 1), buf);
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "start", buf);
            for (cJSON *f = fig->child; f; f = f->next)
                cJSON_AddNumberToObject(b, f->string, f->valuedouble);
            cJSON_AddItemToArray(buckets, b);
        }
        cJSON_Delete(fig);
    }
    if (r < 0)
        r = db_fail(store->db, err, "reading the usage ledger failed");
    db_rows_free(rows);
    if (r < 0) {
        cJSON_Delete(totals);
        cJSON_Delete(root);
        return r;
    }
    if (q->by_version && (r = add_versions(store, q, fns, err)) < 0) {
        cJSON_Delete(totals);
        cJSON_Delete(root);
        return r;
    }
    /* The buckets array goes last in each function's object, after its figures. */
    for (cJSON *f = fns->child; f; f = f->next) {
        cJSON *b = cJSON_DetachItemFromObject(f, "buckets");
        if (b)
            cJSON_AddItemToObject(f, "buckets", b);
    }
    cJSON_AddItemToObject(root, "totals", totals);
    *ret = root;
    return 0;
}

int accountant_query(struct store *store, const struct acct_query *q, cJSON **ret,
                     struct ig_error *err)
{
    store_settle(store);
    /* By version is two reads: one snapshot, so that the versions add up to their functions'
     * figures even when the journal commits rows in between. */
    bool snapshot = q->by_version && db_begin_read(store->db, NULL) == 0;
    int r = query(store, q, ret, err);
    if (snapshot)
        db_commit(store->db, NULL);
    return r;
}
