/* db.h on SQLite: the only file that speaks to libsqlite3 (scripts/check-layers). */
#include "records/db-internal.h"

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

struct lite {
    struct db base;
    sqlite3 *h;
    struct cached cache[DB_STMT_CACHE];
    unsigned cache_next;
};

struct lite_rows {
    struct db_rows base;
    sqlite3_stmt *st;
    struct cached *slot; /* NULL: prepared for this query alone, finalized with it */
};

/* The engine's own structs from db.c's: each embeds it first. */
static struct lite *lite(struct db *db)
{
    return (struct lite *)db;
}

static struct lite_rows *lite_rows(struct db_rows *r)
{
    return (struct lite_rows *)r;
}

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
static int note(struct lite *db)
{
    int code = engine_errno(db->h);
    if (code == ENOSPC || code == EDQUOT)
        return db_note(&db->base, code, "%s (%s)", sqlite3_errmsg(db->h), strerror(code));
    return db_note(&db->base, code, "%s", sqlite3_errmsg(db->h));
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

static sqlite3_stmt *prepare(struct lite *db, const char *sql)
{
    char *text = rewrite(sql);
    sqlite3_stmt *st = NULL;
    if (!text) {
        db_note(&db->base, ENOMEM, "%s", strerror(ENOMEM));
        return NULL;
    }
    if (sqlite3_prepare_v3(db->h, text, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        note(db);
        sqlite3_finalize(st);
        st = NULL;
    } else if (!st) {
        db_note(&db->base, EINVAL, "no statement in \"%.64s\"", sql);
    }
    free(text);
    return st;
}

/* The statement for sql, reset and unbound: from the cache, or prepared into it (replacing the
 * oldest entry no query holds). *ret_slot is NULL when the statement is not cached (every
 * entry is held, or the cached one is, by a query still open on the same text): the caller
 * finalizes it. */
static sqlite3_stmt *statement(struct lite *db, const char *sql, struct cached **ret_slot)
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

static int bind(struct lite *db, sqlite3_stmt *st, const struct db_value *v, size_t n)
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

static int lite_exec(struct db *base, const char *sql, const struct db_value *v, size_t n)
{
    struct lite *db = lite(base);
    struct cached *slot;
    sqlite3_stmt *st = statement(db, sql, &slot);
    if (!st)
        return -base->code;
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
    return r;
}

static int lite_query(struct db *base, const char *sql, const struct db_value *v, size_t n,
                      struct db_rows **ret)
{
    struct lite *db = lite(base);
    struct cached *slot;
    sqlite3_stmt *st = statement(db, sql, &slot);
    if (!st)
        return -base->code;
    int r = bind(db, st, v, n);
    struct lite_rows *rows = r == 0 ? malloc(sizeof(*rows)) : NULL;
    if (!rows) {
        if (r == 0)
            r = db_note(base, ENOMEM, "%s", strerror(ENOMEM));
        release(st, slot);
        return r;
    }
    if (slot)
        slot->in_use = true;
    *rows = (struct lite_rows){.base.db = base, .st = st, .slot = slot};
    *ret = &rows->base;
    return 0;
}

static int lite_next(struct db_rows *r)
{
    int s = sqlite3_step(lite_rows(r)->st);
    if (s == SQLITE_ROW)
        return 1;
    if (s == SQLITE_DONE)
        return 0;
    return note(lite(r->db));
}

static bool lite_is_null(struct db_rows *r, int col)
{
    return sqlite3_column_type(lite_rows(r)->st, col) == SQLITE_NULL;
}

static int64_t lite_int(struct db_rows *r, int col)
{
    return sqlite3_column_int64(lite_rows(r)->st, col);
}

static double lite_double(struct db_rows *r, int col)
{
    return sqlite3_column_double(lite_rows(r)->st, col);
}

static const char *lite_text(struct db_rows *r, int col)
{
    return (const char *)sqlite3_column_text(lite_rows(r)->st, col);
}

static const void *lite_blob(struct db_rows *r, int col, size_t *ret_len)
{
    sqlite3_stmt *st = lite_rows(r)->st;
    const void *p = sqlite3_column_blob(st, col);
    *ret_len = (size_t)sqlite3_column_bytes(st, col);
    return p;
}

static void lite_rows_free(struct db_rows *r)
{
    struct lite_rows *rows = lite_rows(r);
    release(rows->st, rows->slot);
    free(rows);
}

static int lite_rollback(struct db *base)
{
    struct lite *db = lite(base);
    /* A failed statement may have rolled the transaction back already (SQLite does so on a
     * full disk, among others): then there is nothing to do, and no error to note over the
     * first one. */
    if (sqlite3_get_autocommit(db->h))
        return 0;
    return sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static int lite_exec_script(struct db *base, const char *sql)
{
    struct lite *db = lite(base);
    return sqlite3_exec(db->h, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : note(db);
}

static int lite_user_version(struct db *db, int *ret)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    int r = db_query(db, "PRAGMA user_version", NULL, 0, &rows, NULL);
    if (r < 0)
        return r;
    r = db_next(rows);
    if (r <= 0)
        return r < 0 ? r : db_note(db, EIO, "no schema version");
    *ret = (int)db_int(rows, 0);
    return 0;
}

static int lite_set_user_version(struct db *db, int version)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    return lite_exec_script(db, sql);
}

static const char *lite_last_message(struct db *db)
{
    return sqlite3_errmsg(lite(db)->h);
}

static void lite_close(struct db *base)
{
    struct lite *db = lite(base);
    for (size_t i = 0; i < DB_STMT_CACHE; i++) {
        sqlite3_finalize(db->cache[i].st);
        free(db->cache[i].sql);
    }
    sqlite3_close_v2(db->h);
    free(db);
}

static const struct db_engine engine = {
    .close = lite_close,
    .exec = lite_exec,
    .query = lite_query,
    .next = lite_next,
    .is_null = lite_is_null,
    .get_int = lite_int,
    .get_double = lite_double,
    .get_text = lite_text,
    .get_blob = lite_blob,
    .rows_free = lite_rows_free,
    /* IMMEDIATE: the write lock at once, so that a write transaction never fails halfway for
     * want of it. A read one is deferred: a WAL snapshot from the first read on, without the
     * write lock. */
    .begin_sql = "BEGIN IMMEDIATE",
    .begin_read_sql = "BEGIN",
    .durable_sql = {[false] = "PRAGMA synchronous=NORMAL", [true] = "PRAGMA synchronous=FULL"},
    .rollback = lite_rollback,
    .exec_script = lite_exec_script,
    .user_version = lite_user_version,
    .set_user_version = lite_set_user_version,
    .last_message = lite_last_message,
};

int db_open_sqlite(const char *path, int flags, struct db **ret, struct ig_error *err)
{
    struct lite *db = calloc(1, sizeof(*db));
    if (!db)
        return ig_error_set(err, ENOMEM, "out of memory");
    db->base.engine = &engine;
    int open_flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    if (flags & DB_READONLY)
        open_flags |= SQLITE_OPEN_READONLY;
    else
        open_flags |= SQLITE_OPEN_READWRITE | (flags & DB_CREATE ? SQLITE_OPEN_CREATE : 0);
    int r = sqlite3_open_v2(path, &db->h, open_flags, NULL);
    if (r != SQLITE_OK) {
        if (db->h)
            note(db);
        r = ig_error_set(err, db->h ? db->base.code : EIO, "opening %s: %s", path,
                         db->h ? db->base.message : sqlite3_errstr(r));
        lite_close(&db->base);
        return r;
    }
    /* The two connections wait for each other's write lock: the loop's briefly (it answers
     * requests), the writer longer (a batch it drops is lost work). */
    int busy_ms = flags & DB_WRITER ? 10000 : 5000;
    sqlite3_busy_timeout(db->h, busy_ms);
    /* WAL: readers never block the writer. synchronous=NORMAL survives a process crash; the
     * writer's commits that must survive power loss (async invocations) are FULL
     * (db_set_durable). WAL is the file's, set once by the connection that creates it. */
    const char *setup = flags & DB_READONLY ? NULL
                        : flags & DB_WRITER ? "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                                            : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                              "PRAGMA foreign_keys=ON;";
    /* Turning a new file to WAL takes its exclusive lock, and where waiting for it could
     * deadlock (two connections converting one new file together: hosts, or a host and a tool,
     * starting together) SQLite answers BUSY at once instead of calling the busy handler. The
     * pragmas are idempotent: tried again until the busy timeout. */
    uint64_t deadline = now_usec() + (uint64_t)busy_ms * 1000;
    while (setup && (r = sqlite3_exec(db->h, setup, NULL, NULL, NULL)) != SQLITE_OK &&
           (r & 0xff) == SQLITE_BUSY && now_usec() < deadline)
        sqlite3_sleep(1);
    if (setup && r != SQLITE_OK) {
        note(db);
        r = db_fail(&db->base, err, "setting up %s", path);
        lite_close(&db->base);
        return r;
    }
    *ret = &db->base;
    return 0;
}
