/* db.h on SQLite: the only file that speaks to libsqlite3 (scripts/check-layers). */
#include "records/db.h"

#include <sqlite3.h>
#include <string.h>

/* Prepared statements kept per connection, by SQL text: the few statements the daemon runs over
 * and over (a journal batch's inserts, the savepoint ones) are parsed once, not per row
 * (docs/performance.md "Accountant"). The loop's and the journal's connections each run fewer
 * distinct texts than this. */
#define DB_STMT_CACHE 32

struct cached {
    char *sql; /* as the caller wrote it, `$n` and all: the key */
    sqlite3_stmt *st;
    bool in_use; /* an open db_rows steps it: neither reused nor evicted until it is freed */
};

struct db {
    sqlite3 *h;
    /* The last failure, as db_fail reports it; cleared when the next operation starts, as
     * SQLite's own error code is. */
    int code;
    char message[512];
    struct cached cache[DB_STMT_CACHE];
    unsigned cache_next;
};

struct db_rows {
    struct db *db;
    sqlite3_stmt *st;
    struct cached *slot; /* NULL: prepared for this query alone, finalized with it */
};

/* The errno behind the connection's last failure. A full disk is SQLITE_FULL, or a write or an
 * allocation of the -shm or -wal file that failed so, which SQLite reports as "disk I/O error":
 * the system errno says which; it is the last OS failure's, however old, so it counts only for
 * an I/O error. */
static int engine_errno(sqlite3 *h)
{
    int ext = sqlite3_extended_errcode(h), primary = ext & 0xff;
    int sys = primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_FULL
                  ? sqlite3_system_errno(h)
                  : 0;
    if (sys == EDQUOT)
        return EDQUOT;
    if (primary == SQLITE_FULL || sys == ENOSPC)
        return ENOSPC;
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
        return EEXIST;
    /* Locked past the wait: the store is busy, not the request in conflict (503, not 409). */
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return EAGAIN;
    return EIO;
}

/* Records the connection's last failure and returns its negative errno. */
static int note(struct db *db)
{
    db->code = engine_errno(db->h);
    if (db->code == ENOSPC || db->code == EDQUOT)
        snprintf(db->message, sizeof(db->message), "%s (%s)", sqlite3_errmsg(db->h),
                 strerror(db->code));
    else
        snprintf(db->message, sizeof(db->message), "%s", sqlite3_errmsg(db->h));
    return -db->code;
}

static void clear(struct db *db)
{
    db->code = 0;
    db->message[0] = '\0';
}

/* The failure just noted, in err (when not NULL): the engine's message alone. */
static int fail(struct db *db, struct ig_error *err)
{
    return ig_error_set(err, db->code, "%s", db->message);
}

int db_fail(struct db *db, struct ig_error *err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return ig_error_set(err, db->code ? db->code : EIO, "%s: %s", what,
                        db->message[0] ? db->message : sqlite3_errmsg(db->h));
}

/* sql with its `$n` parameters as `?n`: SQLite reads `$1` as a parameter named "$1", whose index
 * is its order of appearance, not 1. Quoted text is left alone. */
static char *rewrite(const char *sql)
{
    char *out = strdup(sql), quote = 0;
    if (!out)
        return NULL;
    for (char *p = out; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            *p = '?';
        }
    }
    return out;
}

static sqlite3_stmt *prepare(struct db *db, const char *sql)
{
    char *text = rewrite(sql);
    sqlite3_stmt *st = NULL;
    if (!text) {
        db->code = ENOMEM;
        snprintf(db->message, sizeof(db->message), "%s", strerror(ENOMEM));
        return NULL;
    }
    if (sqlite3_prepare_v3(db->h, text, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        note(db);
        sqlite3_finalize(st);
        st = NULL;
    } else if (!st) {
        db->code = EINVAL;
        snprintf(db->message, sizeof(db->message), "no statement in \"%.64s\"", sql);
    }
    free(text);
    return st;
}

/* The statement for sql, reset and unbound: from the cache, or prepared into it (replacing the
 * oldest entry no query holds). *ret_slot is NULL when the statement is not cached (every
 * entry is held, or the cached one is, by a query still open on the same text): the caller
 * finalizes it. */
static sqlite3_stmt *statement(struct db *db, const char *sql, struct cached **ret_slot)
{
    struct cached *held = NULL;
    for (size_t i = 0; i < DB_STMT_CACHE; i++)
        if (db->cache[i].sql && streq(db->cache[i].sql, sql)) {
            if (!db->cache[i].in_use) {
                *ret_slot = &db->cache[i];
                return db->cache[i].st;
            }
            held = &db->cache[i];
        }
    sqlite3_stmt *st = prepare(db, sql);
    *ret_slot = NULL;
    if (!st || held)
        return st;
    for (size_t tries = 0; tries < DB_STMT_CACHE; tries++) {
        struct cached *c = &db->cache[db->cache_next++ % DB_STMT_CACHE];
        if (c->in_use)
            continue;
        char *copy = strdup(sql);
        if (!copy)
            return st;
        sqlite3_finalize(c->st);
        free(c->sql);
        *c = (struct cached){.sql = copy, .st = st};
        *ret_slot = c;
        return st;
    }
    return st;
}

/* Done with st: reset (its bindings point into the caller's values) or finalized. */
static void release(sqlite3_stmt *st, struct cached *slot)
{
    if (!slot) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    slot->in_use = false;
}

static int bind(struct db *db, sqlite3_stmt *st, const struct db_value *v, size_t n)
{
    int r = SQLITE_OK;
    for (size_t i = 0; r == SQLITE_OK && i < n; i++) {
        int idx = (int)i + 1;
        switch (v[i].type) {
        case DV_NULL:
            r = sqlite3_bind_null(st, idx);
            break;
        case DV_INT:
            r = sqlite3_bind_int64(st, idx, v[i].i);
            break;
        case DV_DOUBLE:
            r = sqlite3_bind_double(st, idx, v[i].d);
            break;
        case DV_TEXT:
            r = sqlite3_bind_text(st, idx, v[i].p, (int)(v[i].len ? v[i].len : strlen(v[i].p)),
                                  SQLITE_STATIC);
            break;
        case DV_BLOB:
            r = sqlite3_bind_blob(st, idx, v[i].p, (int)v[i].len, SQLITE_STATIC);
            break;
        }
    }
    return r == SQLITE_OK ? 0 : note(db);
}

int db_exec(struct db *db, const char *sql, const struct db_value *v, size_t n,
            struct ig_error *err)
{
    struct cached *slot;
    clear(db);
    sqlite3_stmt *st = statement(db, sql, &slot);
    if (!st)
        return fail(db, err);
    int r = bind(db, st, v, n);
    if (r == 0) {
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (s == SQLITE_DONE)
            r = sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes(db->h);
        else
            r = note(db);
    }
    release(st, slot);
    return r < 0 ? fail(db, err) : r;
}

int db_query(struct db *db, const char *sql, const struct db_value *v, size_t n,
             struct db_rows **ret, struct ig_error *err)
{
    struct cached *slot;
    clear(db);
    sqlite3_stmt *st = statement(db, sql, &slot);
    if (!st)
        return fail(db, err);
    int r = bind(db, st, v, n);
    struct db_rows *rows = r == 0 ? malloc(sizeof(*rows)) : NULL;
    if (!rows) {
        if (r == 0) {
            db->code = ENOMEM;
            snprintf(db->message, sizeof(db->message), "%s", strerror(ENOMEM));
        }
        release(st, slot);
        return fail(db, err);
    }
    if (slot)
        slot->in_use = true;
    *rows = (struct db_rows){.db = db, .st = st, .slot = slot};
    *ret = rows;
    return 0;
}

int db_next(struct db_rows *r)
{
    int s = sqlite3_step(r->st);
    if (s == SQLITE_ROW)
        return 1;
    if (s == SQLITE_DONE)
        return 0;
    return note(r->db);
}

bool db_is_null(struct db_rows *r, int col)
{
    return sqlite3_column_type(r->st, col) == SQLITE_NULL;
}

int64_t db_int(struct db_rows *r, int col)
{
    return sqlite3_column_int64(r->st, col);
}

double db_double(struct db_rows *r, int col)
{
    return sqlite3_column_double(r->st, col);
}

const char *db_text(struct db_rows *r, int col)
{
    return (const char *)sqlite3_column_text(r->st, col);
}

const void *db_blob(struct db_rows *r, int col, size_t *ret_len)
{
    const void *p = sqlite3_column_blob(r->st, col);
    *ret_len = (size_t)sqlite3_column_bytes(r->st, col);
    return p;
}

void db_rows_free(struct db_rows *r)
{
    if (!r)
        return;
    release(r->st, r->slot);
    free(r);
}

/* A statement without values or rows, through the cache: 0 or -errno. */
static int exec0(struct db *db, const char *sql, struct ig_error *err)
{
    int r = db_exec(db, sql, NULL, 0, err);
    return r < 0 ? r : 0;
}

int db_begin(struct db *db, struct ig_error *err)
{
    return exec0(db, "BEGIN IMMEDIATE", err);
}

int db_begin_read(struct db *db, struct ig_error *err)
{
    /* Deferred: a WAL snapshot from the first read on, without the write lock. */
    return exec0(db, "BEGIN", err);
}

int db_commit(struct db *db, struct ig_error *err)
{
    return exec0(db, "COMMIT", err);
}

int db_rollback(struct db *db)
{
    /* A failed statement may have rolled the transaction back already (SQLite does so on a
     * full disk, among others): then there is nothing to do, and no error to note over the
     * first one. */
    if (sqlite3_get_autocommit(db->h))
        return 0;
    return sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static int savepoint_op(struct db *db, const char *op, const char *name)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "%s %s", op, name);
    return exec0(db, sql, NULL);
}

int db_savepoint(struct db *db, const char *name)
{
    return savepoint_op(db, "SAVEPOINT", name);
}

int db_release(struct db *db, const char *name)
{
    return savepoint_op(db, "RELEASE", name);
}

int db_rollback_to(struct db *db, const char *name)
{
    return savepoint_op(db, "ROLLBACK TO", name);
}

int db_set_durable(struct db *db, bool durable, struct ig_error *err)
{
    return exec0(db, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err);
}

int db_exec_script(struct db *db, const char *sql, struct ig_error *err)
{
    clear(db);
    if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK) {
        note(db);
        return fail(db, err);
    }
    return 0;
}

int db_user_version(struct db *db, int *ret, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    int r = db_query(db, "PRAGMA user_version", NULL, 0, &rows, err);
    if (r < 0)
        return r;
    r = db_next(rows);
    if (r <= 0)
        return r < 0 ? fail(db, err) : ig_error_set(err, EIO, "no schema version");
    *ret = (int)db_int(rows, 0);
    return 0;
}

int db_set_user_version(struct db *db, int version, struct ig_error *err)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    return db_exec_script(db, sql, err);
}

int db_open_sqlite(const char *path, int flags, struct db **ret, struct ig_error *err)
{
    struct db *db = calloc(1, sizeof(*db));
    if (!db)
        return ig_error_set(err, ENOMEM, "out of memory");
    int open_flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    if (flags & DB_READONLY)
        open_flags |= SQLITE_OPEN_READONLY;
    else
        open_flags |= SQLITE_OPEN_READWRITE | (flags & DB_CREATE ? SQLITE_OPEN_CREATE : 0);
    int r = sqlite3_open_v2(path, &db->h, open_flags, NULL);
    if (r != SQLITE_OK) {
        if (db->h)
            note(db);
        r = ig_error_set(err, db->h ? db->code : EIO, "opening %s: %s", path,
                         db->h ? db->message : sqlite3_errstr(r));
        db_close(db);
        return r;
    }
    /* The two connections wait for each other's write lock: the loop's briefly (it answers
     * requests), the writer longer (a batch it drops is lost work). */
    sqlite3_busy_timeout(db->h, flags & DB_WRITER ? 10000 : 5000);
    /* WAL: readers never block the writer. synchronous=NORMAL survives a process crash; the
     * writer's commits that must survive power loss (async invocations) are FULL
     * (db_set_durable). WAL is the file's, set once by the connection that creates it. */
    const char *setup = flags & DB_READONLY ? NULL
                        : flags & DB_WRITER ? "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                                            : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                              "PRAGMA foreign_keys=ON;";
    if (setup && sqlite3_exec(db->h, setup, NULL, NULL, NULL) != SQLITE_OK) {
        note(db);
        r = db_fail(db, err, "setting up %s", path);
        db_close(db);
        return r;
    }
    *ret = db;
    return 0;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < DB_STMT_CACHE; i++) {
        sqlite3_finalize(db->cache[i].st);
        free(db->cache[i].sql);
    }
    sqlite3_close_v2(db->h);
    free(db);
}
