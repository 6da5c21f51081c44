/* db.h on PostgreSQL 15 through libpq: the only file that speaks to libpq (scripts/check-layers).
 * Synchronous: every call waits for the server's answer (docs/plan-store-postgresql.md, answer 5:
 * what must never wait gets libpq's non-blocking calls in the loop, elsewhere). A batch
 * (db_exec_batch) goes in one pipeline, so that it waits once.
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
 * the connection's (the store never copies or cancels; a pipeline's statements aborted after a
 * failure are read by their status, not by this). */
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

/* The connection is lost (its message noted): every statement fails at once until a
 * reconnection, tried after a backoff step. */
static void mark_lost(struct pg *db)
{
    if (db->lost)
        return;
    db->lost = true;
    db->lost_in_tx = db->tx_open;
    db->backoff_us = DB_RECONNECT_MIN_US;
    /* Stale (lost in an outage another connection already saw end): connect again at the next
     * statement. */
    bool up = db_reach_lost(&db->epoch, false, db->base.message);
    db->retry_at_us = up ? 0 : now_usec() + db->backoff_us;
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
        mark_lost(db);
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

/* A libpq call that sends failed: the connection's loss, or libpq's own refusal (EIO). */
static int note_send(struct pg *db)
{
    if (PQstatus(db->c) == CONNECTION_BAD)
        return note_result(db, NULL);
    const char *msg = PQerrorMessage(db->c);
    return db_note(&db->base, EIO, "%.*s", first_line(msg), msg);
}

/* How long a connection waits for the server's answer: DB_ANSWER_TIMEOUT_MS on the event loop's
 * connections; unbounded on the journal's writer (off the loop, where a batch, or a purge in
 * it, may take long) and on the one that migrates (DB_CREATE: a migration, or the wait for
 * another host's, takes as long as it takes). 0: unbounded. */
static int answer_ms(const struct pg *db)
{
    return db->flags & (DB_WRITER | DB_CREATE) ? 0 : DB_ANSWER_TIMEOUT_MS;
}

/* The result of what a PQsend* call that returned ok just sent: waited for within answer_ms,
 * then read to its end (a script's last result is kept, or its first failure, after which the
 * server runs nothing of it); the result (to clear), or NULL after noting why. A server that
 * stays silent past answer_ms, its socket open (hung, or stopped), is taken for lost: the
 * statement is left outstanding on a connection given up. */
static PGresult *answer(struct pg *db, int ok)
{
    if (!ok) {
        note_send(db);
        return NULL;
    }
    int ms = answer_ms(db);
    uint64_t deadline = now_usec() + (uint64_t)ms * 1000;
    PGresult *kept = NULL, *res;
    for (;;) {
        while (PQisBusy(db->c) && PQsocket(db->c) >= 0) {
            int n = poll_until(PQsocket(db->c), POLLIN, ms ? deadline : UINT64_MAX);
            if (n < 0)
                break; /* PQgetResult says what became of the statement */
            if (n == 0) {
                PQclear(kept);
                db_note(&db->base, ENOTCONN, "the store is unreachable: no answer within %d s",
                        ms / 1000);
                mark_lost(db);
                return NULL;
            }
            /* A loss: the next result says so. */
            if (n > 0 && !PQconsumeInput(db->c))
                break;
        }
        if (!(res = PQgetResult(db->c)))
            break;
        ExecStatusType st = kept ? PQresultStatus(kept) : PGRES_COMMAND_OK;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            PQclear(kept);
            kept = res;
        } else {
            PQclear(res);
        }
        if (PQstatus(db->c) == CONNECTION_BAD)
            break;
    }
    if (!kept)
        note_result(db, NULL);
    return kept;
}

/* Connects to conninfo as PQconnectdb does, but gives up after timeout_ms (libpq's own
 * connect_timeout counts whole seconds, 2 at least, and per address): the connection, or NULL
 * after writing why in msg. Over TCP, a server that stops answering without closing the
 * connection (its machine lost, the network cut, a failover's address moved elsewhere) is
 * found within DB_TCP_USER_TIMEOUT_MS: a statement sent, or a keepalive probe of an idle
 * connection, unacknowledged that long fails the connection (TCP_USER_TIMEOUT), where the
 * kernel's defaults would wait for minutes (retransmissions) or hours (keepalives off). What
 * conninfo says of these keywords wins: it is read after them. */
static PGconn *connect_within(const char *conninfo, int timeout_ms, char *msg, size_t size)
{
    char user_timeout[16];
    snprintf(user_timeout, sizeof(user_timeout), "%d", DB_TCP_USER_TIMEOUT_MS);
    const char *const keys[] = {"keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "tcp_user_timeout",
                                "dbname",
                                NULL};
    const char *const values[] = {"1", "5", "2", "3", user_timeout, conninfo, NULL};
    PGconn *c = PQconnectStartParams(keys, values, 1);
    if (!c) {
        snprintf(msg, size, "%s", strerror(ENOMEM));
        return NULL;
    }
    uint64_t deadline = now_usec() + (uint64_t)timeout_ms * 1000;
    /* libpq's loop: as if PQconnectPoll had said WRITING, then wait for what it says. */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int r = poll_until(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
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
 * lock, then EAGAIN; a statement cancelled by the server a second before this connection would
 * give the server up (answer_ms), so that a slow one fails as such (EIO); read only for
 * DB_READONLY. */
static int setup(struct pg *db)
{
    PQsetNoticeProcessor(db->c, ignore_notice, NULL);
    char sql[200], statement_timeout[64] = "";
    if (answer_ms(db))
        snprintf(statement_timeout, sizeof(statement_timeout), "; SET statement_timeout = '%dms'",
                 answer_ms(db) - 1000);
    snprintf(sql, sizeof(sql), "SET client_encoding = 'UTF8'; SET lock_timeout = '%ds'%s%s",
             db->flags & DB_WRITER ? 10 : 5, statement_timeout,
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

/* A statement's values as libpq takes them. libpq copies them into what it sends, so one is
 * bound at a time, on the stack. */
struct bound {
    size_t n;
    Oid types[PG_MAX_PARAMS];
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS], formats[PG_MAX_PARAMS];
    uint64_t binary[PG_MAX_PARAMS];
    char sig[PG_MAX_PARAMS + 1], *copies[PG_MAX_PARAMS];
};

static void unbind(struct bound *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->copies[i]);
    b->n = 0;
}

/* Binds v: 0, or -errno after noting why (unbind either way). */
static int bind(struct pg *db, const struct db_value *v, size_t n, struct bound *b)
{
    b->n = 0;
    if (n > PG_MAX_PARAMS)
        return db_note(&db->base, EINVAL, "%zu parameters, over %d", n, PG_MAX_PARAMS);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        b->types[i] = 0;
        b->values[i] = NULL;
        b->lengths[i] = 0;
        b->formats[i] = 1;
        b->sig[i] = 'u';
        b->copies[i] = NULL;
        switch (v[i].type) {
        case DV_NULL:
            break;
        case DV_INT:
            b->binary[i] = htobe64((uint64_t)v[i].i);
            b->types[i] = INT8_OID, b->values[i] = (const char *)&b->binary[i], b->lengths[i] = 8;
            b->sig[i] = 'i';
            break;
        case DV_DOUBLE:
            memcpy(&b->binary[i], &v[i].d, sizeof(b->binary[i]));
            b->binary[i] = htobe64(b->binary[i]);
            b->types[i] = FLOAT8_OID, b->values[i] = (const char *)&b->binary[i], b->lengths[i] = 8;
            b->sig[i] = 'd';
            break;
        case DV_TEXT:
            /* Text goes as text: libpq reads it up to its NUL. */
            b->formats[i] = 0;
            b->values[i] = v[i].p;
            if (v[i].len && !(b->values[i] = b->copies[i] = strndup(v[i].p, v[i].len)))
                r = db_note(&db->base, ENOMEM, "%s", strerror(ENOMEM));
            break;
        case DV_BLOB:
            /* A NULL pointer would be SQL NULL: an empty blob is an empty bytea. */
            b->types[i] = BYTEA_OID, b->values[i] = v[i].p ? v[i].p : "",
            b->lengths[i] = (int)v[i].len;
            b->sig[i] = 'b';
            break;
        }
        b->n = i + 1;
    }
    b->sig[n] = '\0';
    return r;
}

/* sql's statement prepared for parameters of b's types, from the cache; NULL when not there. */
static struct prepared *cache_find(struct pg *db, const char *sql, const struct bound *b)
{
    uint64_t h = hash_of(sql, b->sig);
    for (size_t i = 0; i < PG_STMT_CACHE; i++) {
        struct prepared *c = &db->cache[i];
        if (c->sql && c->hash == h && streq(c->sig, b->sig) && streq(c->sql, sql))
            return c;
    }
    return NULL;
}

/* A slot of the cache for sql, under a new name, in place of the oldest, whose statement is the
 * caller's to deallocate (its name in evicted; "" when the slot was free). NULL after noting
 * ENOMEM. The caller prepares the statement, and drops the slot should that fail. */
static struct prepared *cache_take(struct pg *db, const char *sql, const struct bound *b,
                                   char evicted[static 16])
{
    char *copy = strdup(sql);
    if (!copy) {
        db_note(&db->base, ENOMEM, "%s", strerror(ENOMEM));
        return NULL;
    }
    struct prepared *c = &db->cache[db->cache_next++ % PG_STMT_CACHE];
    snprintf(evicted, 16, "%s", c->sql ? c->name : "");
    free(c->sql);
    c->sql = copy;
    c->hash = hash_of(sql, b->sig);
    snprintf(c->sig, sizeof(c->sig), "%s", b->sig);
    snprintf(c->name, sizeof(c->name), "ig%u", ++db->names);
    return c;
}

static void cache_drop(struct prepared *c)
{
    free(c->sql);
    c->sql = NULL;
}

/* The name of sql prepared for b's types: from the cache, or prepared into it (in place of the
 * oldest, deallocated). NULL after noting why not. */
static const char *prepared(struct pg *db, const char *sql, const struct bound *b)
{
    struct prepared *c = cache_find(db, sql, b);
    if (c)
        return c->name;
    char evicted[16];
    if (!(c = cache_take(db, sql, b, evicted)))
        return NULL;
    if (evicted[0]) {
        /* Its result is of no use: should it fail (in a failed transaction), the statement
         * stays on the server until the connection closes, under a name never used again. */
        char sql_dealloc[40];
        snprintf(sql_dealloc, sizeof(sql_dealloc), "DEALLOCATE %s", evicted);
        PQclear(answer(db, PQsendQuery(db->c, sql_dealloc)));
    }
    PGresult *res =
        db->lost ? NULL : answer(db, PQsendPrepare(db->c, c->name, sql, (int)b->n, b->types));
    int r = !res                                      ? -db->base.code
            : PQresultStatus(res) == PGRES_COMMAND_OK ? 0
                                                      : note_result(db, res);
    PQclear(res);
    if (r < 0) {
        cache_drop(c);
        return NULL;
    }
    return c->name;
}

/* Whether a lost connection stays lost for sql (after noting so), or may run it: one idle
 * through an outage that is over connects again first. */
static bool still_lost(struct pg *db, const char *sql)
{
    forget_if_stale(db);
    if (db->lost && !reconnect_if_due(db, sql)) {
        note_lost(db);
        return true;
    }
    return false;
}

/* Runs sql with v bound: its result (to clear) in *ret, or -errno after noting why. */
static int run(struct pg *db, const char *sql, const struct db_value *v, size_t n, PGresult **ret)
{
    if (still_lost(db, sql))
        return -ENOTCONN;
    /* COMMIT ends the transaction whatever becomes of it: after its loss, nothing of it is left
     * to cut. */
    db->tx_open = PQtransactionStatus(db->c) != PQTRANS_IDLE && !streq(sql, "COMMIT");
    struct bound b;
    int r = bind(db, v, n, &b);
    const char *name = r == 0 ? prepared(db, sql, &b) : NULL;
    PGresult *res = NULL;
    if (name) {
        res =
            answer(db, PQsendQueryPrepared(db->c, name, (int)n, b.values, b.lengths, b.formats, 0));
        ExecStatusType st = PQresultStatus(res);
        if (!res)
            r = -db->base.code;
        else if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
            *ret = res;
        else
            r = note_result(db, res);
    } else if (r == 0) {
        r = -db->base.code;
    }
    unbind(&b);
    if (r < 0)
        PQclear(res);
    return r;
}

/* The rows a statement's result says it changed; a query's rows are not (SQLite's count is 0
 * for a read). */
static int rows_changed(PGresult *res)
{
    return strncmp(PQcmdStatus(res), "SELECT", 6) ? atoi(PQcmdTuples(res)) : 0;
}

/* A COMMIT that succeeded: 0, or -EIO after noting it when it rolled back instead. A statement
 * failed inside the transaction, which PostgreSQL then rolls back whole (SQLite undoes the
 * statement alone): a caller that goes on past a failure puts it in a savepoint, as the journal
 * does. */
static int commit_result(struct pg *db, PGresult *res)
{
    if (streq(PQcmdStatus(res), "ROLLBACK"))
        return db_note(&db->base, EIO,
                       "the transaction was rolled back: a statement of it had failed");
    return 0;
}

static int pg_exec(struct db *base, const char *sql, const struct db_value *v, size_t n)
{
    struct pg *db = pg(base);
    PGresult *res;
    int r = run(db, sql, v, n, &res);
    if (r < 0)
        return r;
    r = streq(sql, "COMMIT") ? commit_result(db, res) : rows_changed(res);
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

/* What a result of a pipeline answers, in the order sent. */
struct step {
    enum { STEP_DEALLOCATE, STEP_PREPARE, STEP_EXEC, STEP_ABANDON } kind;
    size_t stmt;           /* its statement's index */
    struct prepared *slot; /* STEP_PREPARE's, under name (unless evicted since) */
    char name[16];
};

/* Queues a statement without parameters on the pipeline. */
static int queue_plain(struct pg *db, const char *sql, struct step step, struct step *steps,
                       size_t *n_steps)
{
    if (!PQsendQueryParams(db->c, sql, 0, NULL, NULL, NULL, NULL, 0))
        return note_send(db);
    steps[(*n_steps)++] = step;
    return 0;
}

/* Queues stmts[i] on the pipeline, prepared first when the cache does not hold it (the statement
 * it evicts deallocated): 0, or -errno after noting why. */
static int queue_stmt(struct pg *db, const struct db_stmt *stmt, size_t i, struct step *steps,
                      size_t *n_steps)
{
    struct bound b;
    int r = bind(db, stmt->values, stmt->n, &b);
    struct prepared *c = r == 0 ? cache_find(db, stmt->sql, &b) : NULL;
    if (r == 0 && !c) {
        char evicted[16], sql[40];
        if (!(c = cache_take(db, stmt->sql, &b, evicted))) {
            r = -ENOMEM;
        } else if (evicted[0]) {
            /* Executions of it queued before are done before it: the server runs them in
             * order. */
            snprintf(sql, sizeof(sql), "DEALLOCATE %s", evicted);
            r = queue_plain(db, sql, (struct step){.kind = STEP_DEALLOCATE, .stmt = i}, steps,
                            n_steps);
        }
        if (r == 0 && !PQsendPrepare(db->c, c->name, stmt->sql, (int)b.n, b.types))
            r = note_send(db);
        if (r == 0) {
            struct step *s = &steps[(*n_steps)++];
            *s = (struct step){.kind = STEP_PREPARE, .stmt = i, .slot = c};
            memcpy(s->name, c->name, sizeof(s->name));
        } else if (c) {
            cache_drop(c);
        }
    }
    if (r == 0 && !PQsendQueryPrepared(db->c, c->name, (int)b.n, b.values, b.lengths, b.formats, 0))
        r = note_send(db);
    if (r == 0)
        steps[(*n_steps)++] = (struct step){.kind = STEP_EXEC, .stmt = i};
    unbind(&b);
    return r;
}

/* Sends what the pipeline holds and reads its results back to its sync, noting the first
 * failure (unless r says one was noted already; a failure the commit at the sync meets is the
 * batch's n-th): r, that failure, or the connection's loss. The socket is non-blocking, so a
 * long pipeline's results are read while the rest is sent (libpq blocked on sending while the
 * server is blocked on sending its results would wait forever). */
static int read_back(struct pg *db, const struct step *steps, size_t n_steps, size_t n, int *rows,
                     size_t *failed, int r)
{
    size_t k = 0;
    for (;;) {
        int flushing = PQflush(db->c);
        if (flushing < 0 || PQstatus(db->c) == CONNECTION_BAD)
            return note_send(db);
        if (PQisBusy(db->c)) {
            struct pollfd p = {.fd = PQsocket(db->c), .events = POLLIN | (flushing ? POLLOUT : 0)};
            if (poll(&p, 1, -1) > 0 && (p.revents & ~POLLOUT) && !PQconsumeInput(db->c))
                return note_send(db);
            continue;
        }
        PGresult *res = PQgetResult(db->c);
        if (!res) /* the end of one statement's results */
            continue;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            return r;
        }
        const struct step *s = k < n_steps ? &steps[k++] : NULL;
        bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (s && s->kind == STEP_PREPARE && !ok && s->slot->sql && streq(s->slot->name, s->name))
            cache_drop(s->slot); /* never prepared */
        int q = 0;
        if (ok && s && s->kind == STEP_EXEC)
            rows[s->stmt] = rows_changed(res);
        /* The first failure says why; the statements after it are aborted, unrun. */
        else if (!ok && st != PGRES_PIPELINE_ABORTED && r == 0)
            q = note_result(db, res);
        PQclear(res);
        if (q < 0) {
            r = q;
            *failed = s ? s->stmt : n;
        }
        if (db->lost)
            return r;
    }
}

static int pg_exec_batch(struct db *base, const struct db_stmt *stmts, size_t n, int *ret_rows,
                         size_t *ret_failed)
{
    struct pg *db = pg(base);
    if (still_lost(db, "BEGIN"))
        return -ENOTCONN;
    /* At most a deallocation, a preparation and an execution each, and one abandon. */
    struct step *steps = malloc((3 * n + 1) * sizeof(*steps));
    if (!steps)
        return db_note(base, ENOMEM, "%s", strerror(ENOMEM));
    size_t n_steps = 0;
    /* No BEGIN or COMMIT: what a pipeline sends up to its sync is one transaction, committed at
     * the sync, and all rolled back when a statement of it fails (the extended query protocol's
     * implicit transaction). */
    db->tx_open = true; /* a loss from here on cuts the transaction */
    int r = 0;
    if (PQsetnonblocking(db->c, 1) < 0 || !PQenterPipelineMode(db->c))
        r = note_send(db);
    bool piped = r == 0;
    for (size_t i = 0; r == 0 && i < n; i++)
        if ((r = queue_stmt(db, &stmts[i], i, steps, &n_steps)) < 0)
            *ret_failed = i;
    /* A statement that could not be queued (a value not bound): the sync would commit those
     * queued before it, unless one fails. This one does, on purpose. */
    if (r < 0 && !db->lost && n_steps > 0)
        queue_plain(db, "SELECT 'the batch is abandoned'::int",
                    (struct step){.kind = STEP_ABANDON, .stmt = *ret_failed}, steps, &n_steps);
    if (piped && !db->lost)
        r = PQpipelineSync(db->c) ? read_back(db, steps, n_steps, n, ret_rows, ret_failed, r)
                                  : note_send(db);
    free(steps);
    if (db->lost)
        return r;
    PQexitPipelineMode(db->c);
    PQsetnonblocking(db->c, 0);
    db->tx_open = false;
    return r;
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
    PGresult *res = answer(db, PQsendQuery(db->c, "ROLLBACK"));
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
    PGresult *res = answer(db, PQsendQuery(db->c, sql));
    ExecStatusType st = PQresultStatus(res);
    int r = !res                                              ? -db->base.code
            : st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0
                                                              : note_result(db, res);
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
    .exec_batch = pg_exec_batch,
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
    if (!(db->conninfo = strdup(conninfo))) {
        free(db);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    /* Bounded, as a reconnection is: PQconnectdb waits as long as libpq's connect_timeout,
     * unset by default, so a server whose packets are dropped would hold the caller (the loop,
     * for the listener and the lock tries) for the kernel's connect timeout, minutes. */
    char why[256];
    int timeout_ms = flags & DB_CREATE   ? DB_OPEN_TIMEOUT_MS
                     : flags & DB_WRITER ? DB_WRITER_CONNECT_TIMEOUT_MS
                                         : DB_CONNECT_TIMEOUT_MS;
    int r;
    if (!(db->c = connect_within(conninfo, timeout_ms, why, sizeof(why)))) {
        /* What the error names: never the conninfo, which may hold a password. */
        char name[300];
        db_target_name_pg(conninfo, name, sizeof(name));
        r = ig_error_set(err, ENOTCONN, "opening %s: the store is unreachable: %s", name, why);
        free(db->conninfo);
        free(db);
        return r;
    }
    char what[300];
    snprintf(what, sizeof(what), "PostgreSQL database %s on %s:%s", PQdb(db->c),
             PQhost(db->c) ? PQhost(db->c) : "?", PQport(db->c));
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
