/* The store's one statement API: a connection, statements by SQL text with positional `$n`
 * parameters, typed values, results row by row, transactions, and the engine's failure as an
 * errno and a message. The store (records/) speaks to its engine only through here, so that a
 * second engine (PostgreSQL, issue 16) is a second implementation file, not a second copy of
 * every store function (docs/architecture.md "The store"). Two implementations: db-sqlite.c and
 * db-pg.c (PostgreSQL 15 through libpq), behind db.c.
 *
 * SQL texts are written in the subset both engines run: `$1`..`$n` parameters (one may be used
 * more than once), `INSERT ... ON CONFLICT` rather than `INSERT OR IGNORE/REPLACE`, a `CASE`
 * rather than two-argument `max`, integers compared where used as booleans (`$3 <> 0`), subqueries
 * in FROM aliased, and `CAST($n AS TEXT)` where a parameter's type is otherwise unknown.
 *
 * A connection belongs to one thread at a time. */
#pragma once

#include "base/util.h"

struct db;
struct db_rows;

enum db_value_type { DV_NULL, DV_INT, DV_DOUBLE, DV_TEXT, DV_BLOB };

/* A value bound to a parameter. The pointers are the caller's: they must stay valid until the
 * statement is done (db_exec returns; db_rows_free for a query). */
struct db_value {
    enum db_value_type type;
    int64_t i;
    double d;
    const void *p;
    size_t len; /* for DV_BLOB; DV_TEXT uses strlen when 0 */
};

#define DV_I(v)    ((struct db_value){.type = DV_INT, .i = (int64_t)(v)})
#define DV_F(v)    ((struct db_value){.type = DV_DOUBLE, .d = (double)(v)})
#define DV_S(s)    ((struct db_value){.type = (s) ? DV_TEXT : DV_NULL, .p = (s)})
#define DV_B(b, n) ((struct db_value){.type = DV_BLOB, .p = (b), .len = (n)})
#define DV_NULL_V  ((struct db_value){.type = DV_NULL})

/* An integer whose 0 means none (a time not reached yet, a status not had): NULL then. */
static inline struct db_value db_opt_int(int64_t v)
{
    return v ? DV_I(v) : DV_NULL_V;
}

/* How a connection is opened: DB_CREATE makes the database when it does not exist (the loop's
 * connection, which migrates it); DB_WRITER is the journal's writer (its commits durable unless
 * db_set_durable says otherwise, and it waits longer for the loop's connection to let go);
 * DB_READONLY never writes. Without DB_WRITER, commits survive a crash of ignisd but not
 * necessarily a power loss (SQLite: WAL with synchronous=NORMAL). */
enum {
    DB_CREATE = 1 << 0,
    DB_WRITER = 1 << 1,
    DB_READONLY = 1 << 2,
};

/* Opens TARGET: a PostgreSQL database when it is a `postgresql://` or `postgres://` URL or a libpq
 * conninfo (`host=... dbname=...`: it begins with a keyword and '='), else the SQLite database at
 * that path. Failures: the errno of the cause (ENOSPC, EIO, ...; ENOTCONN when the PostgreSQL
 * server cannot be reached or refuses the connection) with "opening WHAT: the engine's message",
 * WHAT being the path, or the database, host and port (never a password). On PostgreSQL the
 * database must exist (DB_CREATE is SQLite's alone), and DB_READONLY makes its transactions
 * read only. */
int db_open(const char *target, int flags, struct db **ret, struct ig_error *err);
/* Whether db_open would read target as PostgreSQL's. */
bool db_is_postgresql(const char *target);
/* Checks a PostgreSQL target as libpq reads it, without connecting: EINVAL with libpq's reason
 * when it does not parse, and EINVAL when it holds a password (a URL's user:password@ or a
 * password= keyword): a password belongs in libpq's PGPASSFILE or ~/.pgpass, never in a command
 * line or a log. */
int db_check_target(const char *target, struct ig_error *err);
/* The target named without secrets, for logs: "sqlite:PATH", or
 * "postgresql://USER@HOST:PORT/DBNAME" with what the target gives of those (libpq's defaults
 * otherwise left out). */
void db_target_name(const char *target, char *buf, size_t size);
/* Whether the connection is to PostgreSQL (for the few texts that differ: migrations). */
bool db_on_postgresql(const struct db *db);
/* Accepts NULL. */
void db_close(struct db *db);

/* Runs one statement that returns no rows (or whose rows are not wanted): the number of rows it
 * changed, or -errno with err set to the engine's message (db_fail's errnos). Statements are
 * prepared once per connection and kept by their text, so a statement run often is parsed once.
 * err may be NULL: db_fail reports the same failure later. */
int db_exec(struct db *db, const char *sql, const struct db_value *v, size_t n,
            struct ig_error *err);
/* Runs a query; its rows come with db_next. v must stay valid until db_rows_free. */
int db_query(struct db *db, const char *sql, const struct db_value *v, size_t n,
             struct db_rows **ret, struct ig_error *err);
/* The next row: 1 when there is one, 0 when the rows are done, -errno (db_fail tells why). */
int db_next(struct db_rows *r);
/* Columns of the current row, from 0. A NULL reads as 0, and as NULL for text and blobs. Text
 * and blob pointers are valid until the next db_next or db_rows_free. */
bool db_is_null(struct db_rows *r, int col);
int64_t db_int(struct db_rows *r, int col);
double db_double(struct db_rows *r, int col);
const char *db_text(struct db_rows *r, int col);
const void *db_blob(struct db_rows *r, int col, size_t *ret_len);
/* Accepts NULL. */
void db_rows_free(struct db_rows *r);
static inline void db_rows_freep(struct db_rows **r)
{
    db_rows_free(*r);
}
#define _cleanup_db_rows_ _cleanup_(db_rows_freep)

/* A write transaction, which takes the database's write lock at once on SQLite (BEGIN
 * IMMEDIATE), so that it never fails halfway for want of it. */
int db_begin(struct db *db, struct ig_error *err);
/* A read transaction: its reads see one snapshot of the database. */
int db_begin_read(struct db *db, struct ig_error *err);
int db_commit(struct db *db, struct ig_error *err);
/* Rolls back the open transaction, if any. A failure is the engine's to report: it changes
 * nothing of the first error (db_fail reports the rollback's own failure, if that matters). */
int db_rollback(struct db *db);
/* Savepoints, by name (an identifier of the caller's, never user input): 0 or -errno. */
int db_savepoint(struct db *db, const char *name);
int db_release(struct db *db, const char *name);
int db_rollback_to(struct db *db, const char *name);
/* One statement of db_exec_batch. */
struct db_stmt {
    const char *sql;
    const struct db_value *values;
    size_t n;
};
/* Runs the n statements in one write transaction (db_begin ... db_commit), in order: 0 once
 * committed, with each statement's rows changed in ret_rows[i] (as db_exec's); else -errno with
 * err set, the transaction rolled back and *ret_failed the index of the statement that failed
 * (n when it was the begin or the commit). ENOTCONN: the store was lost on the way, and whether
 * the commit happened is not known (db_fail). On PostgreSQL the statements go in one pipeline,
 * read back at once: one round trip for the batch, one wake-up of the server's backend where a
 * statement each would take one each. */
int db_exec_batch(struct db *db, const struct db_stmt *stmts, size_t n, int *ret_rows,
                  size_t *ret_failed, struct ig_error *err);
/* Whether the commits that follow must survive a power loss (an fsync each: SQLite
 * synchronous=FULL) or a crash of ignisd only (NORMAL). Set between transactions; kept across
 * a reconnection. */
int db_set_durable(struct db *db, bool durable, struct ig_error *err);

/* Listening for notifications (PostgreSQL alone: SQLite has one host and no one to hear; there
 * they fail with EOPNOTSUPP). db_listen runs LISTEN channel (an identifier of the caller's,
 * never user input) and makes the connection non-blocking, for db_socket in the loop and
 * db_notifications when it is readable: those never wait. db_notifications reads what the
 * server sent and calls fn with each notification's payload (valid during the call): 0, or
 * -ENOTCONN when the connection is lost (as db_fail reports). A listening connection runs no
 * other statement. */
int db_listen(struct db *db, const char *channel, struct ig_error *err);
int db_socket(struct db *db);
int db_notifications(struct db *db, void (*fn)(void *userdata, const char *payload),
                     void *userdata);

/* Runs a text of several statements without parameters (a migration). */
int db_exec_script(struct db *db, const char *sql, struct ig_error *err);

/* The schema version the database says it has (0 for a new one), and setting it (inside the
 * migration's transaction). */
int db_user_version(struct db *db, int *ret, struct ig_error *err);
int db_set_user_version(struct db *db, int version, struct ig_error *err);

/* Sets err to the connection's last failure, "WHAT: the engine's message", and returns its
 * negative errno: ENOSPC (EDQUOT) when the disk (quota) is full, with " (No space left on
 * device)" after the message; EEXIST for a unique or primary key violation; EAGAIN when the
 * database was locked past the wait (PostgreSQL: a lock not available, a serialization failure
 * or a deadlock: the work may be run again); ENOTCONN when the PostgreSQL server went away (its
 * connection lost, or it shuts down), the message saying the store is unreachable; EIO
 * otherwise.
 *
 * A PostgreSQL connection that lost its server fails every statement with ENOTCONN, at once,
 * until it has connected again: it tries by itself, at a statement (or db_begin) that comes
 * DB_RECONNECT_MIN_US after the loss, then after twice as long each time it fails, up to
 * DB_RECONNECT_MAX_US; sooner when another connection of the process found the store back. A
 * connection attempt gives up after DB_CONNECT_TIMEOUT_MS (DB_WRITER's, off the loop, after
 * DB_WRITER_CONNECT_TIMEOUT_MS), so a statement never waits longer than that on a dead server;
 * so does db_open (DB_CREATE's, the daemon's first, after DB_OPEN_TIMEOUT_MS), whatever libpq's
 * connect_timeout says. A
 * connection idle through an outage another connection saw end connects again before its next
 * statement (outside a transaction), its server having likely restarted under it. A
 * connection lost inside a transaction connects again only at its db_rollback or the next db_begin:
 * never halfway through a transaction. Its statements are prepared again on the new connection, its
 * settings (db_set_durable) made again. Whether the statement that met the loss took effect is
 * unknown: a writer that goes on after a loss runs only statements safe to run twice. */
int db_fail(struct db *db, struct ig_error *err, const char *fmt, ...) _printf_(3, 4);

#define DB_RECONNECT_MIN_US          (50 * 1000)
#define DB_RECONNECT_MAX_US          (2 * 1000 * 1000)
#define DB_CONNECT_TIMEOUT_MS        1000
#define DB_WRITER_CONNECT_TIMEOUT_MS 5000
#define DB_OPEN_TIMEOUT_MS           10000
/* A PostgreSQL server that stops answering over TCP is taken for lost after this long (db-pg.c,
 * connect_within): the longest a statement waits on it, the event loop's included. */
#define DB_TCP_USER_TIMEOUT_MS 10000
/* One whose machine still answers TCP but which answers nothing (hung, stopped) is taken for
 * lost by a connection of the event loop after this long without an answer to a statement
 * (db-pg.c, answer_ms): the longest the loop waits on it. Those connections' statements are
 * cancelled by the server itself a second before (statement_timeout), so that a slow statement
 * fails as slow, not as a lost server. */
#define DB_ANSWER_TIMEOUT_MS 15000

/* Whether the store is reachable, as this process's connections last found it (SQLite's always
 * is): down since since_us (wall clock) when a connection found its server gone, with the
 * engine's reason; up again when one connected again. disconnects counts the times it went
 * down; a connection that finds, after the store came back, that it lost the server in that
 * same outage counts nothing. The log says when it goes down (with the reason) and comes back
 * (with how long it was away). */
struct db_reachability {
    bool up;
    uint64_t disconnects;
    int64_t since_us; /* when it last changed; 0: never */
    char reason[256];
};
void db_get_reachability(struct db_reachability *ret);
