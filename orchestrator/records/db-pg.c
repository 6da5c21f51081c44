/* db.h on PostgreSQL 15 through libpq: the only file that speaks to libpq (scripts/check-layers).
 * Synchronous: every call waits for the server's answer (docs/plan-store-postgresql.md, answer 5:
 * what must never wait gets libpq's non-blocking calls in the loop, elsewhere).
 *
 * Statements are prepared once per connection, by text and by the types of the values bound
 * (an integer goes as int8, a double as float8, a blob as bytea, all three in binary; text and
 * NULL go as text of an unknown type, which the server types from where the parameter stands, as
 * SQLite takes any value anywhere). Results come as text and are converted by the getters: a
 * result holds integers, sums (numeric on PostgreSQL), booleans and bytea alike, and SQLite's
 * getters convert as freely. */
#include "records/db-internal.h"

#include <endian.h>
#include <libpq-fe.h>
#include <poll.h>
#include <string.h>

/* Type OIDs, fixed in PostgreSQL's catalog (catalog/pg_type.dat) since they were assigned. */
#define BOOL_OID   16
#define BYTEA_OID  17
#define INT8_OID   20
#define FLOAT8_OID 701

/* Prepared statements kept per connection: the daemon runs fewer distinct texts than this on one
 * connection; past it, the oldest is deallocated (one round trip). */
#define PG_STMT_CACHE 64
/* Parameters of one statement: the widest the store binds is an invocation's record (~30). */
#define PG_MAX_PARAMS 64

struct prepared {
    char *sql; /* NULL: a free slot */
    uint64_t hash;
    char sig[PG_MAX_PARAMS + 1]; /* the parameters' types, a letter each (sig_letter) */
    char name[16];
};

struct pg {
    struct db base;
    PGconn *c;
    char *conninfo; /* to connect again */
    int flags;      /* db_open's */
    /* The connection was lost (or the server shuts down): every statement fails with ENOTCONN
     * without trying the socket again, until a reconnection (reconnect_if_due) works. lost_in_tx:
     * inside a transaction, which a reconnection must not continue in autocommit. */
    bool lost, lost_in_tx;
    /* A transaction was open when the running statement began (its loss is lost_in_tx). */
    bool tx_open;
    uint64_t retry_at_us, backoff_us; /* monotonic: the next attempt to connect, and the step */
    uint64_t epoch;                   /* db_reach_back's */
    struct prepared cache[PG_STMT_CACHE];
    unsigned cache_next, names;
};

struct pg_rows {
    struct db_rows base;
    PGresult *res;
    int row, nfields;
    /* bytea columns of the current row, decoded when read (NULL: not yet). */
    struct decoded {
        char *p;
        size_t len;
    } * decoded;
};

/* The engine's own structs from db.c's: each embeds it first. */
static struct pg *pg(struct db *db)
{
    return (struct pg *)db;
}

static struct pg_rows *pg_rows(struct db_rows *r)
{
    return (struct pg_rows *)r;
}

/* The errno behind a failed statement's SQLSTATE. libpq's own failures carry none: here they are
 * the connection's (the store never copies, pipelines or cancels). */
static int sqlstate_errno(const char *state)
{
    if (!state)
        return ENOTCONN;
    if (streq(state, "23505")) /* unique_violation */
        return EEXIST;
    if (streq(state, "53100")) /* disk_full */
        return ENOSPC;
    /* Class 08 is the connection's (08P01, a protocol violation, is a message the server did not
     * understand: a bug, not a lost server); 57P01-57P03: the server shuts down or restarts. */
    if ((!strncmp(state, "08", 2) && !streq(state, "08P01")) || streq(state, "57P01") ||
        streq(state, "57P02") || streq(state, "57P03"))
        return ENOTCONN;
    /* A serialization failure, a deadlock, a lock not had within lock_timeout: the work may run
     * again, as after SQLite's busy wait. */
    if (streq(state, "40001") || streq(state, "40P01") || streq(state, "55P03"))
        return EAGAIN;
    return EIO;
}

/* The first line of a message (libpq's run on with hints on indented lines). */
static int first_line(const char *msg)
{
    return (int)strcspn(msg ? msg : "", "\n");
}

/* Notes why res failed (NULL: libpq could not even make a result) and returns -errno. */
static int note_result(struct pg *db, const PGresult *res)
{
    if (!res && PQstatus(db->c) != CONNECTION_BAD)
        return db_note(&db->base, ENOMEM, "%s", strerror(ENOMEM));
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *msg = primary ? primary : res ? PQresultErrorMessage(res) : PQerrorMessage(db->c);
    int code = sqlstate_errno(state);
    if (code == ENOTCONN) {
        db_note(&db->base, code, "the store is unreachable: %.*s", first_line(msg), msg);
        if (!db->lost) {
            db->lost = true;
            db->lost_in_tx = db->tx_open;
            db->backoff_us = DB_RECONNECT_MIN_US;
            /* Stale (lost in an outage another connection already saw end): connect again at
             * the next statement. */
            bool up = db_reach_lost(&db->epoch, false, db->base.message);
            db->retry_at_us = up ? 0 : now_usec() + db->backoff_us;
        }
        return -code;
    }
    if (code == ENOSPC)
        return db_note(&db->base, code, "%.*s (%s)", first_line(msg), msg, strerror(code));
    return db_note(&db->base, code, "%.*s", first_line(msg), msg);
}

static int note_lost(struct pg *db)
{
    return db_note(&db->base, ENOTCONN, "the store is unreachable: the connection was lost");
}

/* Connects to conninfo as PQconnectdb does, but gives up after timeout_ms (libpq's own
 * connect_timeout counts whole seconds, 2 at least, and per address): the connection, or NULL
 * after writing why in msg. */
static PGconn *connect_within(const char *conninfo, int timeout_ms, char *msg, size_t size)
{
    PGconn *c = PQconnectStart(conninfo);
    if (!c) {
        snprintf(msg, size, "%s", strerror(ENOMEM));
        return NULL;
    }
    uint64_t deadline = now_usec() + (uint64_t)timeout_ms * 1000;
    /* libpq's loop: as if PQconnectPoll had said WRITING, then wait for what it says. */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd p = {.fd = PQsocket(c),
                           .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        uint64_t now = now_usec();
        int r = now < deadline ? poll(&p, 1, (int)((deadline - now + 999) / 1000)) : 0;
        if (r == 0) {
            snprintf(msg, size, "connecting timed out after %d ms", timeout_ms);
            PQfinish(c);
            return NULL;
        }
        if (r > 0)
            st = PQconnectPoll(c);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = PQerrorMessage(c);
        snprintf(msg, size, "%.*s", first_line(m), m);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* A notice is the server's remark on a statement that succeeded (a table already there): the
 * store has no one to tell, and libpq would print it on stderr. */
static void ignore_notice(void *arg, const char *message)
{
}

static int pg_exec_script(struct db *base, const char *sql);

/* The connection's settings, on a new connection: UTF-8 whatever the environment says (the store
 * keeps UTF-8 text); a row lock waited for as long as SQLite's connections wait for the write
 * lock, then EAGAIN; read only for DB_READONLY. */
static int setup(struct pg *db)
{
    PQsetNoticeProcessor(db->c, ignore_notice, NULL);
    char sql[160];
    snprintf(sql, sizeof(sql), "SET client_encoding = 'UTF8'; SET lock_timeout = '%ds'%s",
             db->flags & DB_WRITER ? 10 : 5,
             db->flags & DB_READONLY ? "; SET default_transaction_read_only = on" : "");
    return pg_exec_script(&db->base, sql);
}

static void forget_prepared(struct pg *db)
{
    for (size_t i = 0; i < PG_STMT_CACHE; i++) {
        free(db->cache[i].sql);
        db->cache[i].sql = NULL;
    }
    db->cache_next = 0;
}

/* A connection idle through an outage that is over (db_reach_stale) is taken for lost, outside
 * a transaction, and connects again before its next statement: its server likely restarted,
 * and that statement would otherwise be the one that finds out, failing after the store is
 * back. */
static void forget_if_stale(struct pg *db)
{
    if (db->lost || !db_reach_stale(db->epoch) || PQtransactionStatus(db->c) != PQTRANS_IDLE)
        return;
    db->lost = true;
    db->lost_in_tx = false;
    db->retry_at_us = 0;
    db->backoff_us = DB_RECONNECT_MIN_US;
}

/* Whether a lost connection may run sql: connects again when an attempt is due (the backoff's
 * step has passed, or another connection found the store back) and sql may run on a new
 * connection (not inside the transaction the loss cut, which only ROLLBACK or a new BEGIN ends).
 * True once connected again, with the statements to prepare again and the settings made. */
static bool reconnect_if_due(struct pg *db, const char *sql)
{
    if (db->lost_in_tx && strncmp(sql, "BEGIN", 5) != 0)
        return false;
    if (now_usec() < db->retry_at_us && !db_reach_up())
        return false;
    char why[256];
    PGconn *c = connect_within(
        db->conninfo, db->flags & DB_WRITER ? DB_WRITER_CONNECT_TIMEOUT_MS : DB_CONNECT_TIMEOUT_MS,
        why, sizeof(why));
    if (c) {
        PQfinish(db->c); /* its prepared statements went with its session */
        db->c = c;
        forget_prepared(db);
        db->lost = db->lost_in_tx = false;
        /* Connected: the store is back (and this connection of its present, for setup's
         * statements). */
        db_reach_back(&db->epoch);
        const struct db_engine *e = db->base.engine;
        if (setup(db) < 0 || (db->base.durable_set &&
                              pg_exec_script(&db->base, e->durable_sql[db->base.durable]) < 0)) {
            /* Not usable without them: tried again at the next step. */
            db->lost = true;
            db->retry_at_us = now_usec() + db->backoff_us;
            return false;
        }
        return true;
    }
    char reason[300];
    snprintf(reason, sizeof(reason), "the store is unreachable: %s", why);
    db_reach_lost(&db->epoch, true, reason);
    db->retry_at_us = now_usec() + db->backoff_us;
    db->backoff_us =
        db->backoff_us * 2 < DB_RECONNECT_MAX_US ? db->backoff_us * 2 : DB_RECONNECT_MAX_US;
    return false;
}

/* FNV-1a of the text, then of the signature: the cache compares texts only when these match. */
static uint64_t hash_of(const char *sql, const char *sig)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = sql; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    for (const char *p = sig; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

/* The name of sql prepared for parameters of these types: from the cache, or prepared into it
 * (in place of the oldest, deallocated). NULL after noting why not. */
static const char *prepared(struct pg *db, const char *sql, const char *sig, const Oid *types,
                            size_t n)
{
    uint64_t h = hash_of(sql, sig);
    for (size_t i = 0; i < PG_STMT_CACHE; i++) {
        struct prepared *c = &db->cache[i];
        if (c->sql && c->hash == h && streq(c->sig, sig) && streq(c->sql, sql))
            return c->name;
    }
    char *copy = strdup(sql);
    if (!copy) {
        db_note(&db->base, ENOMEM, "%s", strerror(ENOMEM));
        return NULL;
    }
    struct prepared *c = &db->cache[db->cache_next++ % PG_STMT_CACHE];
    if (c->sql) {
        /* Its result is of no use: should it fail (in a failed transaction), the statement
         * stays on the server until the connection closes, under a name never used again. */
        char sql_dealloc[40];
        snprintf(sql_dealloc, sizeof(sql_dealloc), "DEALLOCATE %s", c->name);
        PQclear(PQexec(db->c, sql_dealloc));
        free(c->sql);
        c->sql = NULL;
    }
    char name[16];
    snprintf(name, sizeof(name), "ig%u", ++db->names);
    PGresult *res = PQprepare(db->c, name, sql, (int)n, types);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        note_result(db, res);
        PQclear(res);
        free(copy);
        return NULL;
    }
    PQclear(res);
    c->sql = copy;
    c->hash = h;
    snprintf(c->sig, sizeof(c->sig), "%s", sig);
    snprintf(c->name, sizeof(c->name), "%s", name);
    return c->name;
}

/* Runs sql with v bound: its result (to clear) in *ret, or -errno after noting why. */
static int run(struct pg *db, const char *sql, const struct db_value *v, size_t n, PGresult **ret)
{
    forget_if_stale(db);
    if (db->lost && !reconnect_if_due(db, sql))
        return note_lost(db);
    /* COMMIT ends the transaction whatever becomes of it: after its loss, nothing of it is left
     * to cut. */
    db->tx_open = PQtransactionStatus(db->c) != PQTRANS_IDLE && !streq(sql, "COMMIT");
    if (n > PG_MAX_PARAMS)
        return db_note(&db->base, EINVAL, "%zu parameters, over %d", n, PG_MAX_PARAMS);
    Oid types[PG_MAX_PARAMS];
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS], formats[PG_MAX_PARAMS];
    uint64_t binary[PG_MAX_PARAMS];
    char sig[PG_MAX_PARAMS + 1], *copies[PG_MAX_PARAMS] = {};
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        types[i] = 0;
        values[i] = NULL;
        lengths[i] = 0;
        formats[i] = 1;
        sig[i] = 'u';
        switch (v[i].type) {
        case DV_NULL:
            break;
        case DV_INT:
            binary[i] = htobe64((uint64_t)v[i].i);
            types[i] = INT8_OID, values[i] = (const char *)&binary[i], lengths[i] = 8;
            sig[i] = 'i';
            break;
        case DV_DOUBLE:
            memcpy(&binary[i], &v[i].d, sizeof(binary[i]));
            binary[i] = htobe64(binary[i]);
            types[i] = FLOAT8_OID, values[i] = (const char *)&binary[i], lengths[i] = 8;
            sig[i] = 'd';
            break;
        case DV_TEXT:
            /* Text goes as text: libpq reads it up to its NUL. */
            formats[i] = 0;
            values[i] = v[i].p;
            if (v[i].len && !(values[i] = copies[i] = strndup(v[i].p, v[i].len)))
                r = db_note(&db->base, ENOMEM, "%s", strerror(ENOMEM));
            break;
        case DV_BLOB:
            /* A NULL pointer would be SQL NULL: an empty blob is an empty bytea. */
            types[i] = BYTEA_OID, values[i] = v[i].p ? v[i].p : "", lengths[i] = (int)v[i].len;
            sig[i] = 'b';
            break;
        }
    }
    sig[n] = '\0';
    const char *name = r == 0 ? prepared(db, sql, sig, types, n) : NULL;
    PGresult *res = NULL;
    if (name) {
        res = PQexecPrepared(db->c, name, (int)n, values, lengths, formats, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
            *ret = res;
        else
            r = note_result(db, res);
    } else if (r == 0) {
        r = -db->base.code;
    }
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    if (r < 0)
        PQclear(res);
    return r;
}

static int pg_exec(struct db *base, const char *sql, const struct db_value *v, size_t n)
{
    struct pg *db = pg(base);
    PGresult *res;
    int r = run(db, sql, v, n, &res);
    if (r < 0)
        return r;
    const char *status = PQcmdStatus(res);
    if (streq(sql, "COMMIT") && streq(status, "ROLLBACK")) {
        /* A statement failed inside the transaction, which PostgreSQL then rolls back whole
         * (SQLite undoes the statement alone): a caller that goes on past a failure puts it
         * in a savepoint, as the journal does. */
        r = db_note(base, EIO, "the transaction was rolled back: a statement of it had failed");
    } else {
        /* The rows changed; a query's rows are not (SQLite's count is 0 for a read). */
        r = strncmp(status, "SELECT", 6) ? atoi(PQcmdTuples(res)) : 0;
    }
    PQclear(res);
    return r;
}

static int pg_query(struct db *base, const char *sql, const struct db_value *v, size_t n,
                    struct db_rows **ret)
{
    struct pg *db = pg(base);
    PGresult *res;
    int r = run(db, sql, v, n, &res);
    if (r < 0)
        return r;
    struct pg_rows *rows = calloc(1, sizeof(*rows));
    int nfields = PQnfields(res);
    if (rows && nfields > 0)
        rows->decoded = calloc((size_t)nfields, sizeof(*rows->decoded));
    if (!rows || (nfields > 0 && !rows->decoded)) {
        free(rows);
        PQclear(res);
        return db_note(base, ENOMEM, "%s", strerror(ENOMEM));
    }
    rows->base.db = base;
    rows->res = res;
    rows->row = -1;
    rows->nfields = nfields;
    *ret = &rows->base;
    return 0;
}

static void forget_decoded(struct pg_rows *rows)
{
    for (int i = 0; i < rows->nfields; i++) {
        free(rows->decoded[i].p);
        rows->decoded[i] = (struct decoded){};
    }
}

static int pg_next(struct db_rows *r)
{
    struct pg_rows *rows = pg_rows(r);
    forget_decoded(rows);
    if (rows->row + 1 >= PQntuples(rows->res))
        return 0;
    rows->row++;
    return 1;
}

static bool pg_is_null(struct db_rows *r, int col)
{
    struct pg_rows *rows = pg_rows(r);
    return PQgetisnull(rows->res, rows->row, col);
}

/* A bytea column of the row as its bytes (the text result, decoded by libpq), NUL after them so
 * that it reads as text too; NULL when it is NULL, not bytea's text, or memory ran out. */
static const struct decoded *bytea(struct pg_rows *rows, int col)
{
    struct decoded *d = &rows->decoded[col];
    if (d->p || PQgetisnull(rows->res, rows->row, col))
        return d->p ? d : NULL;
    size_t len;
    unsigned char *bytes =
        PQunescapeBytea((const unsigned char *)PQgetvalue(rows->res, rows->row, col), &len);
    if (bytes && (d->p = malloc(len + 1))) {
        memcpy(d->p, bytes, len);
        d->p[len] = '\0';
        d->len = len;
    }
    PQfreemem(bytes);
    return d->p ? d : NULL;
}

static double pg_double(struct db_rows *r, int col)
{
    struct pg_rows *rows = pg_rows(r);
    if (PQgetisnull(rows->res, rows->row, col))
        return 0;
    const char *s = PQgetvalue(rows->res, rows->row, col);
    if (PQftype(rows->res, col) == BOOL_OID)
        return *s == 't';
    return strtod(s, NULL);
}

static int64_t pg_int(struct db_rows *r, int col)
{
    struct pg_rows *rows = pg_rows(r);
    if (PQgetisnull(rows->res, rows->row, col))
        return 0;
    const char *s = PQgetvalue(rows->res, rows->row, col);
    if (PQftype(rows->res, col) == BOOL_OID)
        return *s == 't';
    char *end;
    long long v = strtoll(s, &end, 10);
    /* A fraction or an exponent (a double, a numeric average): truncated, as SQLite does. */
    if (*end == '.' || *end == 'e' || *end == 'E')
        return (int64_t)strtod(s, NULL);
    return v;
}

static const char *pg_text(struct db_rows *r, int col)
{
    struct pg_rows *rows = pg_rows(r);
    if (PQgetisnull(rows->res, rows->row, col))
        return NULL;
    if (PQftype(rows->res, col) == BYTEA_OID) {
        const struct decoded *d = bytea(rows, col);
        return d ? d->p : NULL;
    }
    return PQgetvalue(rows->res, rows->row, col);
}

static const void *pg_blob(struct db_rows *r, int col, size_t *ret_len)
{
    struct pg_rows *rows = pg_rows(r);
    *ret_len = 0;
    if (PQgetisnull(rows->res, rows->row, col))
        return NULL;
    if (PQftype(rows->res, col) == BYTEA_OID) {
        const struct decoded *d = bytea(rows, col);
        if (d)
            *ret_len = d->len;
        return d ? d->p : NULL;
    }
    *ret_len = (size_t)PQgetlength(rows->res, rows->row, col);
    return PQgetvalue(rows->res, rows->row, col);
}

static void pg_rows_free(struct db_rows *r)
{
    struct pg_rows *rows = pg_rows(r);
    forget_decoded(rows);
    free(rows->decoded);
    PQclear(rows->res);
    free(rows);
}

static int pg_rollback(struct db *base)
{
    struct pg *db = pg(base);
    PGTransactionStatusType t = PQtransactionStatus(db->c);
    if (db->lost || t == PQTRANS_UNKNOWN) {
        db->lost_in_tx = false; /* what was cut is given up: the next statement may reconnect */
        return -ENOTCONN;
    }
    if (t == PQTRANS_IDLE)
        return 0;
    PGresult *res = PQexec(db->c, "ROLLBACK");
    int r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -EIO;
    PQclear(res);
    return r;
}

static int pg_exec_script(struct db *base, const char *sql)
{
    struct pg *db = pg(base);
    forget_if_stale(db);
    if (db->lost && !reconnect_if_due(db, sql))
        return note_lost(db);
    db->tx_open = PQtransactionStatus(db->c) != PQTRANS_IDLE;
    /* The simple protocol: several statements in one text, no parameters, the last result. */
    PGresult *res = PQexec(db->c, sql);
    ExecStatusType st = PQresultStatus(res);
    int r = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : note_result(db, res);
    PQclear(res);
    return r;
}

/* The schema version is a row in meta, which a new database does not have yet: version 0.
 * Whether meta exists is read from pg_class by a scan, not by name (to_regclass): a name looked up
 * is cached by the session, and a table another host made after this transaction began would
 * stay unseen by it (when hosts migrate one database together: store_migrate). */
static int pg_user_version(struct db *base, int *ret)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    int r = db_query(base,
                     "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables "
                     "WHERE schemaname = current_schema() AND tablename = 'meta')",
                     NULL, 0, &rows, NULL);
    if (r < 0)
        return r;
    if (db_next(rows) != 1)
        return db_note(base, EIO, "no answer to whether table meta exists");
    if (!db_int(rows, 0)) {
        *ret = 0;
        return 0;
    }
    db_rows_free(TAKE_PTR(rows));
    r = db_query(base, "SELECT value FROM meta WHERE key = 'user_version'", NULL, 0, &rows, NULL);
    if (r < 0)
        return r;
    *ret = db_next(rows) == 1 ? (int)db_int(rows, 0) : 0;
    return 0;
}

static int pg_set_user_version(struct db *base, int version)
{
    char text[16];
    snprintf(text, sizeof(text), "%d", version);
    const struct db_value v[] = {{.type = DV_TEXT, .p = text}};
    /* meta as the first migration makes it, should the version be set before (a test). */
    int r =
        pg_exec(base, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                NULL, 0);
    if (r >= 0)
        r = pg_exec(base,
                    "INSERT INTO meta (key, value) VALUES ('user_version', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    v, ARRAY_SIZE(v));
    return r < 0 ? r : 0;
}

static int pg_listen(struct db *base, const char *channel)
{
    struct pg *db = pg(base);
    char sql[128];
    snprintf(sql, sizeof(sql), "LISTEN %s", channel);
    int r = pg_exec_script(base, sql);
    /* From now on the loop reads the socket: libpq must never wait on it. */
    if (r == 0 && PQsetnonblocking(db->c, 1) < 0)
        r = db_note(base, EIO, "%s", PQerrorMessage(db->c));
    return r;
}

static int pg_socket(struct db *base)
{
    int fd = PQsocket(pg(base)->c);
    return fd < 0 ? -ENOTCONN : fd;
}

static int pg_notifications(struct db *base, void (*fn)(void *userdata, const char *payload),
                            void *userdata)
{
    struct pg *db = pg(base);
    /* A lost connection shows as a failed read (EOF after the server's FATAL message, as
     * pg_terminate_backend or a shutdown send) or as the connection's status. */
    if (db->lost || !PQconsumeInput(db->c) || PQstatus(db->c) == CONNECTION_BAD) {
        db->lost = true;
        const char *msg = PQerrorMessage(db->c);
        return db_note(base, ENOTCONN, "the store is unreachable: %.*s", first_line(msg), msg);
    }
    PGnotify *n;
    while ((n = PQnotifies(db->c))) {
        fn(userdata, n->extra);
        PQfreemem(n);
    }
    return 0;
}

static const char *pg_last_message(struct db *db)
{
    return PQerrorMessage(pg(db)->c);
}

static void pg_close(struct db *base)
{
    struct pg *db = pg(base);
    forget_prepared(db);
    PQfinish(db->c); /* the session's prepared statements end with it */
    free(db->conninfo);
    free(db);
}

static const struct db_engine engine = {
    .postgresql = true,
    .close = pg_close,
    .exec = pg_exec,
    .query = pg_query,
    .next = pg_next,
    .is_null = pg_is_null,
    .get_int = pg_int,
    .get_double = pg_double,
    .get_text = pg_text,
    .get_blob = pg_blob,
    .rows_free = pg_rows_free,
    /* No database write lock to take: rows lock as they are written. A read transaction is one
     * snapshot for all its statements, as a SQLite read transaction is (READ COMMITTED would
     * take one per statement). */
    .begin_sql = "BEGIN",
    .begin_read_sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    .durable_sql =
        {[false] = "SET synchronous_commit = off", [true] = "SET synchronous_commit = on"},
    .rollback = pg_rollback,
    .exec_script = pg_exec_script,
    .user_version = pg_user_version,
    .set_user_version = pg_set_user_version,
    .listen = pg_listen,
    .socket = pg_socket,
    .notifications = pg_notifications,
    .last_message = pg_last_message,
};

int db_open_pg(const char *conninfo, int flags, struct db **ret, struct ig_error *err)
{
    struct pg *db = calloc(1, sizeof(*db));
    if (!db)
        return ig_error_set(err, ENOMEM, "out of memory");
    db->base.engine = &engine;
    db->flags = flags;
    db->conninfo = strdup(conninfo);
    db->c = db->conninfo ? PQconnectdb(conninfo) : NULL;
    if (!db->c) {
        free(db->conninfo);
        free(db);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    /* What the error names: never the conninfo, which may hold a password. */
    char what[300];
    snprintf(what, sizeof(what), "PostgreSQL database %s on %s:%s", PQdb(db->c),
             PQhost(db->c) ? PQhost(db->c) : "?", PQport(db->c));
    int r;
    if (PQstatus(db->c) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(db->c);
        r = ig_error_set(err, ENOTCONN, "opening %s: the store is unreachable: %.*s", what,
                         first_line(msg), msg);
        pg_close(&db->base);
        return r;
    }
    if (setup(db) < 0) {
        r = db_fail(&db->base, err, "setting up %s", what);
        pg_close(&db->base);
        return r;
    }
    db_reach_back(&db->epoch); /* a connection made says the store is reachable */
    *ret = &db->base;
    return 0;
}

/* The target's keywords as libpq reads them (URL or conninfo alike); NULL with *ret_msg set
 * (PQfreemem it) when it does not parse. */
static PQconninfoOption *parse_target(const char *conninfo, char **ret_msg)
{
    *ret_msg = NULL;
    return PQconninfoParse(conninfo, ret_msg);
}

static const char *option_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++)
        if (streq(o->keyword, keyword))
            return o->val && o->val[0] ? o->val : NULL;
    return NULL;
}

int db_check_target_pg(const char *conninfo, struct ig_error *err)
{
    char *msg;
    PQconninfoOption *opts = parse_target(conninfo, &msg);
    int r = 0;
    if (!opts) {
        r = msg ? ig_error_set(err, EINVAL, "not a PostgreSQL URL or conninfo: %.*s",
                               first_line(msg), msg)
                : ig_error_set(err, ENOMEM, "out of memory");
        PQfreemem(msg);
        return r;
    }
    if (option_value(opts, "password"))
        r = ig_error_set(err, EINVAL,
                         "the PostgreSQL store's target holds a password: leave it out and give "
                         "it in libpq's password file (PGPASSFILE, or ~/.pgpass)");
    PQconninfoFree(opts);
    return r;
}

void db_target_name_pg(const char *conninfo, char *buf, size_t size)
{
    char *msg;
    PQconninfoOption *opts = parse_target(conninfo, &msg);
    PQfreemem(msg);
    const char *user = option_value(opts, "user"), *host = option_value(opts, "host");
    const char *port = option_value(opts, "port"), *dbname = option_value(opts, "dbname");
    snprintf(buf, size, "postgresql://%s%s%s%s%s/%s", user ? user : "", user ? "@" : "",
             host ? host : "", port ? ":" : "", port ? port : "", dbname ? dbname : "");
    PQconninfoFree(opts);
}
