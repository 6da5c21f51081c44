/* db.h's front: the opener that picks the engine by the target's form, and every call handed to
 * the connection's engine (db-internal.h). */
#include "records/db-internal.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#include "base/log.h"

/* The store's reachability: the process's, as its connections (the loop's, the journal's, any
 * other) find it, each on its own thread. */
static pthread_mutex_t reach_lock = PTHREAD_MUTEX_INITIALIZER;
static struct db_reachability reach = {.up = true};
/* reach's disconnects and up, (disconnects << 1) | up, for db_reach_stale on every statement
 * without the lock. */
static _Atomic uint64_t reach_state = 1;

/* Under reach_lock: reach changed. */
static void publish(void)
{
    atomic_store(&reach_state, reach.disconnects << 1 | reach.up);
}

bool db_reach_lost(uint64_t *epoch, bool failed_connect, const char *reason)
{
    pthread_mutex_lock(&reach_lock);
    if (reach.up && (failed_connect || *epoch == reach.disconnects)) {
        reach.up = false;
        reach.disconnects++;
        reach.since_us = (int64_t)wall_usec();
        snprintf(reach.reason, sizeof(reach.reason), "%s", reason);
        publish();
        log_error("the store is unreachable", "error=\"%s\"", reach.reason);
    }
    bool up = reach.up;
    pthread_mutex_unlock(&reach_lock);
    return up;
}

void db_reach_back(uint64_t *epoch)
{
    pthread_mutex_lock(&reach_lock);
    if (!reach.up) {
        int64_t now = (int64_t)wall_usec();
        log_info("the store is reachable again", "away_s=%.1f",
                 (double)(now - reach.since_us) / 1e6);
        reach.up = true;
        reach.since_us = now;
        reach.reason[0] = '\0';
        publish();
    }
    *epoch = reach.disconnects;
    pthread_mutex_unlock(&reach_lock);
}

bool db_reach_up(void)
{
    return atomic_load(&reach_state) & 1;
}

bool db_reach_stale(uint64_t epoch)
{
    uint64_t s = atomic_load_explicit(&reach_state, memory_order_relaxed);
    return (s & 1) && s >> 1 != epoch;
}

void db_get_reachability(struct db_reachability *ret)
{
    pthread_mutex_lock(&reach_lock);
    *ret = reach;
    pthread_mutex_unlock(&reach_lock);
}

int db_note(struct db *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->message, sizeof(db->message), fmt, ap);
    va_end(ap);
    db->code = code;
    return -code;
}

static void clear(struct db *db)
{
    db->code = 0;
    db->message[0] = '\0';
}

/* The failure just noted, in err (when not NULL): the engine's message alone. */
static int fail(struct db *db, struct ig_error *err)
{
    return ig_error_set(err, db->code ? db->code : EIO, "%s", db->message);
}

int db_fail(struct db *db, struct ig_error *err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return ig_error_set(err, db->code ? db->code : EIO, "%s: %s", what,
                        db->message[0] ? db->message : db->engine->last_message(db));
}

bool db_is_postgresql(const char *target)
{
    if (!strncmp(target, "postgresql://", 13) || !strncmp(target, "postgres://", 11))
        return true;
    /* A libpq conninfo begins with a keyword and '=' ("host=... dbname=..."); a path never
     * does, unless a relative one begins so: such a path is written "./name". */
    const char *p = target;
    while (isalpha((unsigned char)*p) || *p == '_')
        p++;
    if (p == target)
        return false;
    while (*p == ' ')
        p++;
    return *p == '=';
}

int db_check_target(const char *target, struct ig_error *err)
{
    return db_is_postgresql(target) ? db_check_target_pg(target, err) : 0;
}

void db_target_name(const char *target, char *buf, size_t size)
{
    if (db_is_postgresql(target))
        db_target_name_pg(target, buf, size);
    else
        snprintf(buf, size, "sqlite:%s", target);
}

bool db_on_postgresql(const struct db *db)
{
    return db->engine->postgresql;
}

int db_open(const char *target, int flags, struct db **ret, struct ig_error *err)
{
    return db_is_postgresql(target) ? db_open_pg(target, flags, ret, err)
                                    : db_open_sqlite(target, flags, ret, err);
}

void db_close(struct db *db)
{
    if (db)
        db->engine->close(db);
}

int db_exec(struct db *db, const char *sql, const struct db_value *v, size_t n,
            struct ig_error *err)
{
    clear(db);
    int r = db->engine->exec(db, sql, v, n);
    return r < 0 ? fail(db, err) : r;
}

int db_query(struct db *db, const char *sql, const struct db_value *v, size_t n,
             struct db_rows **ret, struct ig_error *err)
{
    clear(db);
    int r = db->engine->query(db, sql, v, n, ret);
    return r < 0 ? fail(db, err) : 0;
}

int db_next(struct db_rows *r)
{
    return r->db->engine->next(r);
}

bool db_is_null(struct db_rows *r, int col)
{
    return r->db->engine->is_null(r, col);
}

int64_t db_int(struct db_rows *r, int col)
{
    return r->db->engine->get_int(r, col);
}

double db_double(struct db_rows *r, int col)
{
    return r->db->engine->get_double(r, col);
}

const char *db_text(struct db_rows *r, int col)
{
    return r->db->engine->get_text(r, col);
}

const void *db_blob(struct db_rows *r, int col, size_t *ret_len)
{
    return r->db->engine->get_blob(r, col, ret_len);
}

void db_rows_free(struct db_rows *r)
{
    if (r)
        r->db->engine->rows_free(r);
}

/* A statement without values or rows, through the engine's cache: 0 or -errno. */
static int exec0(struct db *db, const char *sql, struct ig_error *err)
{
    int r = db_exec(db, sql, NULL, 0, err);
    return r < 0 ? r : 0;
}

int db_begin(struct db *db, struct ig_error *err)
{
    return exec0(db, db->engine->begin_sql, err);
}

int db_exec_batch(struct db *db, const struct db_stmt *stmts, size_t n, int *ret_rows,
                  size_t *ret_failed, struct ig_error *err)
{
    *ret_failed = n;
    if (db->engine->exec_batch) {
        clear(db);
        int r = db->engine->exec_batch(db, stmts, n, ret_rows, ret_failed);
        return r < 0 ? fail(db, err) : 0;
    }
    int r = db_begin(db, err);
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = db_exec(db, stmts[i].sql, stmts[i].values, stmts[i].n, err);
        if (r < 0) {
            *ret_failed = i;
        } else {
            ret_rows[i] = r;
            r = 0;
        }
    }
    if (r == 0)
        r = db_commit(db, err);
    if (r < 0)
        db_rollback(db);
    return r;
}

int db_begin_read(struct db *db, struct ig_error *err)
{
    return exec0(db, db->engine->begin_read_sql, err);
}

int db_commit(struct db *db, struct ig_error *err)
{
    return exec0(db, "COMMIT", err);
}

int db_rollback(struct db *db)
{
    return db->engine->rollback(db);
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
    int r = exec0(db, db->engine->durable_sql[durable], err);
    if (r == 0) {
        db->durable_set = true;
        db->durable = durable;
    }
    return r;
}

int db_listen(struct db *db, const char *channel, struct ig_error *err)
{
    clear(db);
    if (!db->engine->listen)
        return ig_error_set(err, EOPNOTSUPP, "this store has no notifications");
    return db->engine->listen(db, channel) < 0 ? fail(db, err) : 0;
}

int db_socket(struct db *db)
{
    return db->engine->socket ? db->engine->socket(db) : -EOPNOTSUPP;
}

int db_notifications(struct db *db, void (*fn)(void *userdata, const char *payload), void *userdata)
{
    clear(db);
    if (!db->engine->notifications)
        return -EOPNOTSUPP;
    return db->engine->notifications(db, fn, userdata);
}

int db_exec_script(struct db *db, const char *sql, struct ig_error *err)
{
    clear(db);
    return db->engine->exec_script(db, sql) < 0 ? fail(db, err) : 0;
}

int db_user_version(struct db *db, int *ret, struct ig_error *err)
{
    clear(db);
    return db->engine->user_version(db, ret) < 0 ? fail(db, err) : 0;
}

int db_set_user_version(struct db *db, int version, struct ig_error *err)
{
    clear(db);
    return db->engine->set_user_version(db, version) < 0 ? fail(db, err) : 0;
}
