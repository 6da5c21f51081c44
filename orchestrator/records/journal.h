/* The journal: durable writes with group commit, off the event loop.
 *
 * The loop thread submits statements, which are handed to a writer thread once per loop turn
 * (when the turn ends: loop_add_flush); the writer, with its own SQLite connection
 * (durable commits), runs everything queued so far in one transaction, fsyncs once, and hands
 * each statement's outcome back to the loop thread through loop_post. A caller that must not
 * answer before its data is durable (an async invocation's 202) replies from the callback.
 * Each statement runs in its own savepoint: one failing statement does not undo the others. */
#pragma once

#include "base/loop.h"
#include "base/util.h"
#include "records/db.h"

struct journal;

/* Values are the statement API's (records/db.h: DV_I, DV_S, DV_B, DV_F, DV_NULL_V), copied at
 * submit. A sync invocation's record takes 27. */
#define JOURNAL_MAX_VALUES 32
/* What may wait in memory while the store is away (journal_submit). */
#define JOURNAL_AWAY_MAX_BYTES (256u << 20)

/* Called on the loop thread once the statement is durable (result 0) or failed (-errno, with
 * the message: db_fail's errnos, -ENOSPC or -EDQUOT when the disk is full). */
typedef void (*journal_done_fn)(struct loop *l, int result, const char *message, void *userdata);

struct journal_stats {
    uint64_t statements, commits; /* commits ≤ statements: the difference is group commit */
    uint64_t full_commits;        /* of commits: with synchronous=FULL (an fsync) */
    uint64_t refused;             /* submitted while the store was away, past what may wait */
};

/* Whether the store can write, as the last commit found: failing from since_us (wall clock)
 * with code (ENOSPC, EDQUOT, EIO; ENOTCONN while the store is away) and the engine's message. While
 * it fails, the writer probes with a small write every second, so this turns healthy by itself once
 * space returns. */
struct journal_health {
    bool failing;
    int code;
    int64_t since_us;
    char message[256];
};

int journal_new(struct loop *l, const char *db_path, struct journal **ret, struct ig_error *err);
/* Commits whatever is queued, runs its callbacks, and stops the writer. Accepts NULL. */
void journal_free(struct journal *j);

/* While the store is away (ENOTCONN: PostgreSQL's server gone), the batch the loss cut is kept,
 * with everything submitted after it, and run again whole once the connection is back (every
 * statement submitted must be safe to run twice: an insert keyed by an id made before it, an
 * upsert, an update fenced or to values of its own); done runs then. What waits is bounded:
 * past JOURNAL_AWAY_MAX_BYTES of statements and values, a submission fails at once with -ENOBUFS
 * and is not written (journal_stats.refused counts them).
 * Stopping while the store stays away gives up after a second: done gets -ENOTCONN.
 *
 * Queues sql with its bound values (copied). done may be NULL. The statement is durable when
 * done runs: its batch is committed with synchronous=FULL (an fsync). */
int journal_submit(struct journal *j, const char *sql, const struct db_value *values,
                   size_t nvalues, journal_done_fn done, void *userdata);
/* The same for a statement that must survive a crash of ignisd but not a power loss (a sync
 * invocation's record, usage rows): a batch of only such statements commits with
 * synchronous=NORMAL, which in WAL mode needs no fsync, and at most once per 2 ms (the writer
 * lingers for more), so that under load one commit serves many statements. */
int journal_submit_lazy(struct journal *j, const char *sql, const struct db_value *values,
                        size_t nvalues, journal_done_fn done, void *userdata);

/* journal_submit_lazy of a statement whose effect once per transaction is all it has (a
 * notification: PostgreSQL delivers one of identical ones a transaction sends): in a batch, a
 * repeat of one before it (the same SQL and values) is not run, and done gets 0 with it. */
int journal_submit_once(struct journal *j, const char *sql, const struct db_value *values,
                        size_t nvalues, journal_done_fn done, void *userdata);

/* Either of the above (durable or not), where done's result on success is the number of rows the
 * statement changed: an insert that met its ON CONFLICT, or an update fenced by a lease it no
 * longer holds, changed none (0). */
int journal_submit_counted(struct journal *j, bool durable, const char *sql,
                           const struct db_value *values, size_t nvalues, journal_done_fn done,
                           void *userdata);

/* A kind of row a batch may write many of in one statement: its insert of one row, sql (values
 * $1..$n), and of many, many_sql: the same insert with $1..$n each an array literal of one
 * column's values, its rows' in order (INSERT ... SELECT * FROM unnest($1::text[], ...)). Both
 * strings are the program's own, kept, not copied. */
struct journal_rows {
    const char *sql;
    const char *many_sql;
    size_t n;
};

/* journal_submit_lazy of kind's sql with its n values, where on PostgreSQL a batch's rows of one
 * kind are written by one many_sql at its end, in the same transaction: a statement costs the
 * server its own execution and each of its statement triggers' runs (the ledger's rollup,
 * accountant.h), whatever its rows. Should a statement of the batch fail, its rows are written one
 * by one (sql), as every statement then is. On SQLite (one process, no round trip) each row is its
 * sql. */
int journal_submit_row(struct journal *j, const struct journal_rows *kind,
                       const struct db_value *values, journal_done_fn done, void *userdata);

/* On the loop thread: returns once every statement submitted so far is committed (or failed),
 * committing a lingering batch of crash-safe statements at once. For a read that must see what
 * the loop wrote before it (a sync invocation's record, its usage, the audit trail). While the
 * store is away (PostgreSQL's server gone), it returns at once: what waits is written once the
 * store is back. */
void journal_settle(struct journal *j);

void journal_get_health(struct journal *j, struct journal_health *ret);
void journal_get_stats(struct journal *j, struct journal_stats *ret);
