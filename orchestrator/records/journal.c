#include "records/journal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"

/* A batch bigger than this is split: it bounds how long one transaction holds the write lock,
 * and (in bytes of statements and values) the memory a batch takes again in the engine's hands
 * (libpq copies a pipeline's values into what it sends), as when what waited through an outage
 * of the store is written at once. A statement bigger than that is a batch of its own. */
#define JOURNAL_BATCH_MAX       4096
#define JOURNAL_BATCH_MAX_BYTES (16u << 20)
/* While commits fail, the writer tries a probe write this often, so the health it reports
 * recovers by itself once space returns, even when nothing else is written. */
#define JOURNAL_PROBE_US (1000 * 1000)
/* A batch of only crash-safe statements (sync records, usage rows) commits at most this often,
 * unless it holds this many: a commit writes every page it touched (a dozen for one invocation's
 * record and usage row), so one commit per few ms instead of one per invocation writes a
 * fraction of the pages (docs/performance.md "The warm path"). On PostgreSQL a batch costs the
 * server more than its rows (its transaction, its statements, the rollup's trigger run), and
 * lingering longer there brought the server's CPU per warm sync invocation to 0.63-0.92 of what it
 * was (docs/performance.md "Lazy batches linger longer on PostgreSQL"). A durable statement, a
 * reader that must see what was written (journal_settle) and the stop commit at once. */
#define JOURNAL_LINGER_US    (2 * 1000)
#define JOURNAL_LINGER_PG_US (6 * 1000)
#define JOURNAL_LINGER_MAX   1024
/* While the store is away (PostgreSQL's server gone: ENOTCONN), the batch the loss cut is run
 * again this often; the connection itself tries to connect at most once per step of its backoff
 * (records/db.h), failing at once in between. */
#define JOURNAL_RERUN_US (50 * 1000)
/* Stopping while the store is away: what waits is given up (its callers told -ENOTCONN) once the
 * store has stayed away this long after the journal was told to stop. Short: the daemon's stop
 * has waited its grace period for invocations' records already (dispatch). */
#define JOURNAL_STOP_WAIT_US (1000 * 1000)

struct op {
    char *sql;
    journal_done_fn done;
    void *userdata;
    bool durable;
    bool counted;                    /* done's result on success: rows (journal_submit_counted) */
    bool once;                       /* journal_submit_once */
    bool repeat;                     /* once, and a repeat of one before it in its batch: not run */
    const struct journal_rows *kind; /* journal_submit_row's: a row of this kind */
    bool gathered;                   /* written with its kind's rows (gather: PostgreSQL's) */
    int result;
    int rows; /* the statement changed these many */
    char *message;
    struct op *next;
    size_t bytes; /* of sql and values, for JOURNAL_AWAY_MAX_BYTES */
    size_t nvalues;
    struct db_value values[]; /* nvalues of them */
};

struct journal {
    struct loop *loop;
    struct db *db; /* the writer thread's; it keeps the statements it runs prepared */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct op *head, *tail;
    size_t queued;
    size_t bytes; /* of the statements handed and not yet done (op.bytes) */
    /* The store is away: a batch waits to run again. Written under lock; read without it by
     * submissions, which take the lock only then. */
    atomic_bool away;
    bool stopping;
    bool urgent;                /* the queue holds a durable statement, or a reader waits */
    uint64_t last_commit_us;    /* monotonic */
    uint64_t handed, committed; /* statements handed to the writer, and done by it */
    pthread_cond_t settled;     /* committed moved */
    /* The loop thread's alone: statements submitted this loop turn, handed to the writer in one
     * go when the turn ends (flush), so that one wake-up and one commit serve them all. */
    struct op *turn_head, *turn_tail;
    size_t turn_count, turn_bytes;
    bool refusing; /* refused_while_away has, in this outage */
    bool turn_durable;
    struct journal_stats stats;
    struct journal_health health; /* under lock */
    /* The writer thread's alone. */
    bool full_sync; /* the connection's commits are durable (db_set_durable) */
};

static void op_free(struct op *op)
{
    if (!op)
        return;
    free(op->sql);
    for (size_t i = 0; i < op->nvalues; i++)
        if (op->values[i].type == DV_TEXT || op->values[i].type == DV_BLOB)
            free((void *)op->values[i].p);
    free(op->message);
    free(op);
}

/* 0, or -errno with op->message the engine's reason. */
static int run_op(struct journal *j, struct op *op)
{
    if (op->repeat)
        return 0;
    struct ig_error e = {};
    int r = db_exec(j->db, op->sql, op->values, op->nvalues, &e);
    if (r >= 0) {
        op->rows = r;
        return 0;
    }
    free(op->message);
    op->message = strdup(e.message);
    return r;
}

/* Runs on the loop thread: each op's callback, in submission order. */
static void deliver(struct loop *l, void *userdata)
{
    struct op *op = userdata;
    while (op) {
        struct op *next = op->next;
        if (op->done)
            op->done(l, op->result < 0 || !op->counted ? op->result : op->rows, op->message,
                     op->userdata);
        op_free(op);
        op = next;
    }
}

/* The batch of n statements is done: its outcomes go to the loop thread. */
static void hand_back(struct journal *j, struct op *batch, size_t n)
{
    size_t bytes = 0;
    for (struct op *op = batch; op; op = op->next)
        bytes += op->bytes;
    pthread_mutex_lock(&j->lock);
    j->committed += n;
    pthread_cond_broadcast(&j->settled);
    j->stats.statements += n;
    j->bytes -= bytes;
    pthread_mutex_unlock(&j->lock);
    if (loop_post(j->loop, deliver, batch) < 0) {
        log_error("journal cannot hand results back", "statements=%zu", n);
        deliver(NULL, batch); /* out of memory: better late on the wrong thread than never */
    }
}

/* Stopping while the store stays away: the batch is not written; its callers are told so.
 * Returns its statements' count. */
static size_t give_up(struct journal *j, struct op *batch)
{
    size_t n = 0;
    for (struct op *op = batch; op; op = op->next, n++) {
        op->result = -ENOTCONN;
        free(op->message);
        op->message = strdup("the store is unreachable: ignisd stopped before it came back");
    }
    hand_back(j, batch, n);
    return n;
}

/* Under lock: code 0 when a write committed, else its errno and message. */
static void note_health(struct journal *j, int code, const char *message)
{
    struct journal_health *h = &j->health;
    /* A store away (ENOTCONN) is logged where the connection finds it (records/db.c), once
     * for all the process's connections. */
    if (code == 0) {
        if (h->failing && h->code != ENOTCONN)
            log_info("the store writes again", "after_s=%.1f",
                     (double)((int64_t)wall_usec() - h->since_us) / 1e6);
        *h = (struct journal_health){0};
        return;
    }
    if (!h->failing) {
        h->since_us = (int64_t)wall_usec();
        if (code != ENOTCONN)
            log_error("the store cannot write", "error=\"%s\"", message ? message : strerror(code));
    }
    h->failing = true;
    h->code = code;
    snprintf(h->message, sizeof(h->message), "%s", message ? message : strerror(code));
}

/* While the store cannot write and nothing else is queued: one small write that needs new space
 * in the WAL like any other (a row of meta), so that health recovers by itself. */
static void probe(struct journal *j)
{
    const char *sql = "INSERT INTO meta (key, value) VALUES ('write_probe', $1) "
                      "ON CONFLICT (key) DO UPDATE SET value = $1";
    char now[32];
    snprintf(now, sizeof(now), "%llu", (unsigned long long)wall_usec());
    const struct db_value v[] = {{.type = DV_TEXT, .p = now}};
    struct ig_error e = {};
    int r = db_exec(j->db, sql, v, ARRAY_SIZE(v), &e);
    pthread_mutex_lock(&j->lock);
    note_health(j, r < 0 ? -r : 0, r < 0 ? e.message : NULL);
    pthread_mutex_unlock(&j->lock);
}

/* A batch cut by the store's loss (ENOTCONN at any step; its commit may or may not have
 * happened): nothing of it is reported, the store is noted away, and it is run again whole once
 * the store is back, which every statement the journal runs is written to allow (an insert keyed
 * by an id made before it, an upsert, an update to values of its own or fenced). */
static bool cut_by_loss(struct journal *j, struct op *batch, const char *message)
{
    db_rollback(j->db); /* nothing to roll back on a lost connection; lets it connect again */
    for (struct op *op = batch; op; op = op->next) {
        op->result = 0;
        free(op->message);
        op->message = NULL;
    }
    pthread_mutex_lock(&j->lock);
    j->away = true;
    note_health(j, ENOTCONN, message);
    pthread_cond_broadcast(&j->settled); /* a reader waiting goes on without it */
    pthread_mutex_unlock(&j->lock);
    return false;
}

static bool same_statement(const struct op *a, const struct op *b)
{
    if (a->nvalues != b->nvalues || strcmp(a->sql, b->sql) != 0)
        return false;
    for (size_t i = 0; i < a->nvalues; i++) {
        const struct db_value *x = &a->values[i], *y = &b->values[i];
        bool same = x->type == y->type;
        if (same && (x->type == DV_TEXT || x->type == DV_BLOB))
            same = x->len == y->len && (!x->len || memcmp(x->p, y->p, x->len) == 0);
        else if (same)
            same = x->i == y->i && x->d == y->d;
        if (!same)
            return false;
    }
    return true;
}

/* Marks the repeats among the batch's journal_submit_once statements. A batch holds few distinct
 * ones (a notification per function with async work accepted): past JOURNAL_ONCE_MAX of them,
 * the rest run as they are. */
#define JOURNAL_ONCE_MAX 32
static void mark_repeats(struct op *batch)
{
    const struct op *seen[JOURNAL_ONCE_MAX];
    size_t n = 0;
    for (struct op *op = batch; op; op = op->next) {
        if (!op->once)
            continue;
        for (size_t i = 0; i < n && !op->repeat; i++)
            op->repeat = same_statement(seen[i], op);
        if (!op->repeat && n < JOURNAL_ONCE_MAX)
            seen[n++] = op;
    }
}

/* The rows of one kind gathered from a batch (journal_submit_row): many_sql with its arrays. The
 * kinds are the program's own few; past JOURNAL_ROW_KINDS of them, a row is a statement. */
#define JOURNAL_ROW_KINDS 4
struct gathered {
    const struct journal_rows *kind;
    struct db_value arrays[JOURNAL_MAX_VALUES];
};

static void gathered_free(struct gathered *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < g[i].kind->n; c++)
            free((void *)g[i].arrays[c].p);
}

/* One element of an array literal (PostgreSQL's text form): text quoted, '"' and '\' escaped; a
 * blob in bytea's hex form (\x...), quoted, its backslash escaped. */
static void put_element(FILE *f, const struct db_value *v)
{
    switch (v->type) {
    case DV_INT:
        fprintf(f, "%" PRId64, v->i);
        break;
    case DV_DOUBLE:
        fprintf(f, "%.17g", v->d);
        break;
    case DV_TEXT:
        fputc('"', f);
        for (size_t i = 0; i < v->len; i++) {
            char c = ((const char *)v->p)[i];
            if (c == '"' || c == '\\')
                fputc('\\', f);
            fputc(c, f);
        }
        fputc('"', f);
        break;
    case DV_BLOB: {
        fputs("\"\\\\x", f);
        char hex[2 * 256 + 1];
        for (size_t i = 0; i < v->len; i += 256) {
            size_t n = v->len - i < 256 ? v->len - i : 256;
            hex_encode((const char *)v->p + i, n, hex);
            fwrite(hex, 1, 2 * n, f);
        }
        fputc('"', f);
        break;
    }
    default:
        fputs("NULL", f);
    }
}

/* Column c of kind's rows in batch, as an array literal. NULL: out of memory. */
static char *column_array(const struct op *batch, const struct journal_rows *kind, size_t c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputc('{', f);
    bool first = true;
    for (const struct op *op = batch; op; op = op->next)
        if (op->kind == kind) {
            if (!first)
                fputc(',', f);
            put_element(f, &op->values[c]);
            first = false;
        }
    fputc('}', f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* The batch's rows by kind into g (JOURNAL_ROW_KINDS of them), their ops marked gathered; the
 * kinds in *ret_n. 0, or -ENOMEM with nothing in g. */
static int gather(struct op *batch, struct gathered *g, size_t *ret_n)
{
    size_t kinds = 0;
    for (struct op *op = batch; op; op = op->next) {
        size_t k = 0;
        while (op->kind && k < kinds && g[k].kind != op->kind)
            k++;
        op->gathered = op->kind && k < JOURNAL_ROW_KINDS;
        if (!op->gathered || k < kinds)
            continue; /* not a row, past the kinds, or gathered with the first of its kind */
        g[kinds].kind = op->kind;
        for (size_t c = 0; c < op->kind->n; c++) {
            char *a = column_array(op, op->kind, c);
            if (!a) {
                gathered_free(g, kinds);
                for (size_t i = 0; i < c; i++)
                    free((void *)g[kinds].arrays[i].p);
                return -ENOMEM;
            }
            g[kinds].arrays[c] = (struct db_value){.type = DV_TEXT, .p = a, .len = strlen(a)};
        }
        kinds++;
    }
    *ret_n = kinds;
    return 0;
}

/* The batch again, each statement in a savepoint of its own, after one of them failed: only the
 * failing ones are undone (a savepoint each is two statements more, so only then). 0 once
 * committed, each op's result its own; -errno with err when the transaction could not begin or
 * commit, or the store was lost on the way. */
static int run_isolated(struct journal *j, struct op *batch, struct ig_error *err)
{
    int r = db_begin(j->db, err);
    for (struct op *op = batch; r == 0 && op; op = op->next) {
        free(op->message);
        op->message = NULL;
        db_savepoint(j->db, "op");
        int q = run_op(j, op);
        if (q == -ENOTCONN) {
            r = ig_error_set(err, ENOTCONN, "%s", op->message);
            break;
        }
        if (q < 0) {
            op->result = q;
            db_rollback_to(j->db, "op");
        }
        db_release(j->db, "op");
    }
    if (r == 0 && (r = db_commit(j->db, err)) < 0)
        db_rollback(j->db);
    return r;
}

/* Commits batch and hands its outcomes to the loop: true; false when the store's loss cut it
 * (cut_by_loss), to be run again. */
static bool commit_batch(struct journal *j, struct op *batch)
{
    size_t n = 0, m = 0;
    /* FULL only when a statement of the batch asked for it (a FULL commit also makes the WAL
     * frames before it durable); the setting is the connection's, so set it when it changes. */
    bool durable = false;
    for (struct op *op = batch; op; op = op->next) {
        n++;
        durable |= op->durable;
    }
    struct ig_error err = {};
    int r = 0;
    if (durable != j->full_sync) {
        /* Should it fail, the batch fails: durable statements must not commit without the fsync. */
        r = db_set_durable(j->db, durable, &err);
        if (r == 0)
            j->full_sync = durable;
    }
    /* First the whole batch as it is, the repeats left out, in one round trip; on PostgreSQL its
     * rows of each kind in one statement at its end. If a statement fails, the batch runs again
     * with a savepoint each. */
    struct gathered g[JOURNAL_ROW_KINDS];
    size_t kinds = 0;
    struct db_stmt *stmts = NULL;
    int *rows = NULL;
    if (r == 0 && ((db_on_postgresql(j->db) && gather(batch, g, &kinds) < 0) ||
                   !(stmts = calloc(n, sizeof(*stmts))) || !(rows = calloc(n, sizeof(*rows)))))
        r = ig_error_set(&err, ENOMEM, "out of memory");
    size_t failed = 0;
    if (r == 0) {
        for (struct op *op = batch; op; op = op->next)
            if (!op->repeat && !op->gathered)
                stmts[m++] = (struct db_stmt){op->sql, op->values, op->nvalues};
        for (size_t k = 0; k < kinds; k++)
            stmts[m++] = (struct db_stmt){g[k].kind->many_sql, g[k].arrays, g[k].kind->n};
        r = db_exec_batch(j->db, stmts, m, rows, &failed, &err);
    }
    if (r == 0) {
        m = 0;
        for (struct op *op = batch; op; op = op->next)
            if (!op->repeat && !op->gathered)
                op->rows = rows[m++];
    } else if (r != -ENOTCONN && failed < m) {
        r = run_isolated(j, batch, &err);
    }
    gathered_free(g, kinds);
    free(stmts);
    free(rows);
    if (r == -ENOTCONN)
        return cut_by_loss(j, batch, err.message);
    /* Nothing of the batch is written: every op fails, whatever it did inside. */
    for (struct op *op = batch; r < 0 && op; op = op->next) {
        op->result = r;
        free(op->message);
        op->message = strdup(err.message);
    }
    /* The store's health as a client may ask for it: a batch that could not be written, or a
     * statement refused for want of space, says the store cannot write (one statement refused
     * by a constraint says nothing of it); the next batch that commits says it can again. */
    int health = r < 0 ? -r : 0;
    const char *health_msg = r < 0 ? err.message : NULL;
    for (struct op *op = batch; op && !health; op = op->next)
        if (op->result == -ENOSPC || op->result == -EDQUOT) {
            health = -op->result;
            health_msg = op->message;
        }
    pthread_mutex_lock(&j->lock);
    j->stats.commits++;
    j->stats.full_commits += durable;
    j->away = false;
    note_health(j, health, health_msg);
    pthread_mutex_unlock(&j->lock);
    hand_back(j, batch, n);
    return true;
}

/* Under lock: waits for the cond until the monotonic time due_us; true when it timed out. */
static bool wait_until(struct journal *j, uint64_t due_us)
{
    struct timespec ts = {.tv_sec = (time_t)(due_us / 1000000),
                          .tv_nsec = (long)(due_us % 1000000) * 1000};
    return pthread_cond_timedwait(&j->cond, &j->lock, &ts) == ETIMEDOUT;
}

static void *writer(void *arg)
{
    struct journal *j = arg;
    struct op *cut = NULL; /* a batch the store's loss cut, to run again */
    uint64_t stop_deadline = 0;
    size_t given_up = 0;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        if (cut) {
            if (j->stopping && !stop_deadline)
                stop_deadline = now_usec() + JOURNAL_STOP_WAIT_US;
            if (stop_deadline && now_usec() >= stop_deadline) {
                pthread_mutex_unlock(&j->lock);
                given_up += give_up(j, TAKE_PTR(cut));
                pthread_mutex_lock(&j->lock);
                continue;
            }
            /* Submissions and the stop signal the cond: the step is waited out whole. */
            uint64_t due = now_usec() + JOURNAL_RERUN_US;
            while (now_usec() < due)
                wait_until(j, due);
            pthread_mutex_unlock(&j->lock);
            if (commit_batch(j, cut))
                cut = NULL;
            pthread_mutex_lock(&j->lock);
            continue;
        }
        while (!j->head && !j->stopping) {
            if (!j->health.failing) {
                pthread_cond_wait(&j->cond, &j->lock);
                continue;
            }
            if (wait_until(j, now_usec() + JOURNAL_PROBE_US) && !j->head && !j->stopping) {
                pthread_mutex_unlock(&j->lock);
                probe(j);
                pthread_mutex_lock(&j->lock);
            }
        }
        if (!j->head && j->stopping) {
            if (given_up)
                log_error("statements not written: the store stayed unreachable as ignisd stopped",
                          "statements=%zu", given_up);
            break;
        }
        uint64_t linger_until = j->last_commit_us + (db_on_postgresql(j->db) ? JOURNAL_LINGER_PG_US
                                                                             : JOURNAL_LINGER_US);
        while (j->head && !j->urgent && !j->stopping && j->queued < JOURNAL_LINGER_MAX &&
               now_usec() < linger_until)
            wait_until(j, linger_until);
        /* Take up to JOURNAL_BATCH_MAX: everything that arrived while the last commit's fsync
         * ran goes into this one. That is the group commit. */
        struct op *batch = j->head, *last = j->head;
        size_t n = 1, bytes = last->bytes;
        while (last->next && n < JOURNAL_BATCH_MAX &&
               bytes + last->next->bytes <= JOURNAL_BATCH_MAX_BYTES) {
            last = last->next;
            n++;
            bytes += last->bytes;
        }
        j->head = last->next;
        if (!j->head) {
            j->tail = NULL;
            j->urgent = false;
        }
        j->queued -= n;
        j->last_commit_us = now_usec();
        last->next = NULL;
        pthread_mutex_unlock(&j->lock);
        mark_repeats(batch);
        if (!commit_batch(j, batch))
            cut = batch;
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* On the loop thread, as its turn ends: the turn's statements join the writer's queue. */
static void flush_turn(struct loop *l, void *userdata)
{
    (void)l;
    struct journal *j = userdata;
    if (!j->turn_head)
        return;
    pthread_mutex_lock(&j->lock);
    /* The writer is woken when it has nothing, or when its lingering must end: not for every
     * turn while it lingers (a futex wake and a switch each). */
    bool wake = !j->head || (j->turn_durable && !j->urgent) ||
                (j->queued < JOURNAL_LINGER_MAX && j->queued + j->turn_count >= JOURNAL_LINGER_MAX);
    if (j->tail)
        j->tail->next = j->turn_head;
    else
        j->head = j->turn_head;
    j->tail = j->turn_tail;
    j->queued += j->turn_count;
    j->handed += j->turn_count;
    j->bytes += j->turn_bytes;
    j->urgent |= j->turn_durable;
    if (wake)
        pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    j->turn_head = j->turn_tail = NULL;
    j->turn_count = j->turn_bytes = 0;
    j->turn_durable = false;
}

void journal_settle(struct journal *j)
{
    flush_turn(j->loop, j);
    pthread_mutex_lock(&j->lock);
    uint64_t target = j->handed;
    /* Not while the store is away: the loop would wait for it to come back. The read that
     * follows finds it away too (ENOTCONN), or reads without what waits. */
    if (j->committed < target && !j->away) {
        j->urgent = true;
        pthread_cond_signal(&j->cond);
        while (j->committed < target && !j->away)
            pthread_cond_wait(&j->settled, &j->lock);
    }
    pthread_mutex_unlock(&j->lock);
}

int journal_new(struct loop *l, const char *db_path, struct journal **ret, struct ig_error *err)
{
    struct journal *j = calloc(1, sizeof(*j));
    if (!j)
        return ig_error_set(err, ENOMEM, "out of memory");
    j->loop = l;
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* wait_until takes now_usec's clock */
    pthread_cond_init(&j->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&j->settled, NULL);
    int r = db_open(db_path, DB_WRITER, &j->db, err);
    if (r < 0) {
        ig_error_prefix(err, "journal");
        free(j);
        return r;
    }
    j->full_sync = true;
    r = loop_add_flush(l, flush_turn, j);
    if (r < 0) {
        db_close(j->db);
        free(j);
        return ig_error_set(err, -r, "journal: cannot hook the loop: %s", strerror(-r));
    }
    r = pthread_create(&j->thread, NULL, writer, j);
    if (r != 0) {
        loop_del_flush(l, flush_turn, j);
        db_close(j->db);
        free(j);
        return ig_error_set(err, r, "journal: starting the writer: %s", strerror(r));
    }
    pthread_setname_np(j->thread, "ignis-journal"); /* in top -H, and for scripts/bench */
    *ret = j;
    return 0;
}

void journal_free(struct journal *j)
{
    if (!j)
        return;
    loop_del_flush(j->loop, flush_turn, j);
    flush_turn(j->loop, j);
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->thread, NULL);
    /* The writer committed everything queued and posted the outcomes; the loop runs no more at
     * this point, so deliver them here (we are on the loop's thread). */
    loop_run_posted(j->loop);
    db_close(j->db);
    pthread_cond_destroy(&j->cond);
    pthread_cond_destroy(&j->settled);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Whether a statement of these bytes is over what may wait while the store is away: counted
 * and logged (once per outage) when it is. */
static bool refused_while_away(struct journal *j, size_t bytes)
{
    if (!atomic_load_explicit(&j->away, memory_order_relaxed)) {
        j->refusing = false;
        return false;
    }
    pthread_mutex_lock(&j->lock);
    bool refused = j->away && j->bytes + j->turn_bytes + bytes > JOURNAL_AWAY_MAX_BYTES;
    if (refused) {
        if (!j->refusing)
            log_error("statements refused: too much waits for the unreachable store",
                      "max_bytes=%u", JOURNAL_AWAY_MAX_BYTES);
        j->stats.refused++;
    }
    j->refusing |= refused;
    pthread_mutex_unlock(&j->lock);
    return refused;
}

static int submit(struct journal *j, bool durable, bool counted, bool once,
                  const struct journal_rows *kind, const char *sql, const struct db_value *values,
                  size_t nvalues, journal_done_fn done, void *userdata)
{
    if (nvalues > JOURNAL_MAX_VALUES)
        return -E2BIG;
    struct op *op = calloc(1, sizeof(*op) + nvalues * sizeof(op->values[0]));
    if (!op)
        return -ENOMEM;
    size_t sql_len = strlen(sql);
    op->bytes = sql_len + 1;
    op->sql = strndup(sql, sql_len);
    op->durable = durable;
    op->counted = counted;
    op->once = once;
    op->kind = kind;
    op->done = done;
    op->userdata = userdata;
    op->nvalues = nvalues;
    bool oom = !op->sql;
    for (size_t i = 0; i < nvalues; i++) {
        op->values[i] = values[i];
        if (values[i].type == DV_TEXT) {
            op->values[i].len = values[i].len ? values[i].len : strlen(values[i].p);
            op->values[i].p = strndup(values[i].p, op->values[i].len);
            op->bytes += op->values[i].len;
            oom |= !op->values[i].p;
        } else if (values[i].type == DV_BLOB) {
            void *copy = malloc(values[i].len ? values[i].len : 1);
            if (copy && values[i].len)
                memcpy(copy, values[i].p, values[i].len);
            op->values[i].p = copy;
            op->bytes += values[i].len;
            oom |= !copy;
        }
    }
    /* Only while the store is away does what waits grow without the writer taking it. */
    int r = oom ? -ENOMEM : refused_while_away(j, op->bytes) ? -ENOBUFS : 0;
    if (r < 0) {
        op_free(op);
        return r;
    }
    if (j->turn_tail)
        j->turn_tail->next = op;
    else
        j->turn_head = op;
    j->turn_tail = op;
    j->turn_count++;
    j->turn_bytes += op->bytes;
    j->turn_durable |= durable;
    return 0;
}

int journal_submit(struct journal *j, const char *sql, const struct db_value *values,
                   size_t nvalues, journal_done_fn done, void *userdata)
{
    return submit(j, true, false, false, NULL, sql, values, nvalues, done, userdata);
}

int journal_submit_lazy(struct journal *j, const char *sql, const struct db_value *values,
                        size_t nvalues, journal_done_fn done, void *userdata)
{
    return submit(j, false, false, false, NULL, sql, values, nvalues, done, userdata);
}

int journal_submit_once(struct journal *j, const char *sql, const struct db_value *values,
                        size_t nvalues, journal_done_fn done, void *userdata)
{
    return submit(j, false, false, true, NULL, sql, values, nvalues, done, userdata);
}

int journal_submit_counted(struct journal *j, bool durable, const char *sql,
                           const struct db_value *values, size_t nvalues, journal_done_fn done,
                           void *userdata)
{
    return submit(j, durable, true, false, NULL, sql, values, nvalues, done, userdata);
}

int journal_submit_row(struct journal *j, const struct journal_rows *kind,
                       const struct db_value *values, journal_done_fn done, void *userdata)
{
    return submit(j, false, false, false, kind, kind->sql, values, kind->n, done, userdata);
}

void journal_get_health(struct journal *j, struct journal_health *ret)
{
    pthread_mutex_lock(&j->lock);
    *ret = j->health;
    pthread_mutex_unlock(&j->lock);
}

void journal_get_stats(struct journal *j, struct journal_stats *ret)
{
    pthread_mutex_lock(&j->lock);
    *ret = j->stats;
    pthread_mutex_unlock(&j->lock);
}
