/* The engines behind db.h, for records/db*.c alone: db.c dispatches every call to the engine of
 * its connection (db-sqlite.c, db-pg.c), as the cgroup backends sit behind cgroup.c. */
#pragma once

#include "records/db.h"

/* An engine's operations. Those returning int give 0 (exec: the rows changed) or -errno, after
 * noting the failure in the connection (db_note); the column getters follow db.h's contracts. */
struct db_engine {
    bool postgresql;
    void (*close)(struct db *db);
    int (*exec)(struct db *db, const char *sql, const struct db_value *v, size_t n);
    int (*query)(struct db *db, const char *sql, const struct db_value *v, size_t n,
                 struct db_rows **ret);
    int (*next)(struct db_rows *r);
    bool (*is_null)(struct db_rows *r, int col);
    int64_t (*get_int)(struct db_rows *r, int col);
    double (*get_double)(struct db_rows *r, int col);
    const char *(*get_text)(struct db_rows *r, int col);
    const void *(*get_blob)(struct db_rows *r, int col, size_t *ret_len);
    void (*rows_free)(struct db_rows *r);
    /* db_exec_batch's, the rows and the failed index as it says; NULL where one statement after
     * another is as good (db.c runs them so: SQLite, in the process). */
    int (*exec_batch)(struct db *db, const struct db_stmt *stmts, size_t n, int *ret_rows,
                      size_t *ret_failed);
    /* The statements that open a write and a read transaction, and that make the commits that
     * follow durable or not ([true] and [false]). */
    const char *begin_sql, *begin_read_sql, *durable_sql[2];
    /* Rolls back the open transaction, if any, without noting its own failure over the first. */
    int (*rollback)(struct db *db);
    int (*exec_script)(struct db *db, const char *sql);
    int (*user_version)(struct db *db, int *ret);
    int (*set_user_version)(struct db *db, int version);
    /* db.h's listening calls; NULL on an engine without notifications (SQLite). */
    int (*listen)(struct db *db, const char *channel);
    int (*socket)(struct db *db);
    int (*notifications)(struct db *db, void (*fn)(void *userdata, const char *payload),
                         void *userdata);
    /* The engine's own word on its last failure, for db_fail when none was noted. */
    const char *(*last_message)(struct db *db);
};

/* What every connection and every result starts with; an engine's own structs embed it first. */
struct db {
    const struct db_engine *engine;
    /* The last failure, as db_fail reports it; cleared when the next operation starts. */
    int code;
    char message[512];
    /* The last db_set_durable's setting, for an engine that connects again (durable_set:
     * there was one). */
    bool durable_set, durable;
};

struct db_rows {
    struct db *db;
};

/* Notes a failure of the connection: its errno and the engine's message. Returns -code. */
int db_note(struct db *db, int code, const char *fmt, ...) _printf_(3, 4);

/* The store's reachability (db_get_reachability), as a connection finds it. epoch is the
 * connection's own: the count of disconnects when it last connected. db_reach_lost: the
 * connection lost its server (failed_connect: an attempt to connect failed, which says the store
 * is down now; else a statement failed, which says so only if the connection was made since the
 * last disconnect, rather than lost in an outage already over). Returns whether the store is
 * up even so (the connection is stale: it may connect again at once). db_reach_back: the
 * connection connected again. */
bool db_reach_lost(uint64_t *epoch, bool failed_connect, const char *reason);
void db_reach_back(uint64_t *epoch);
bool db_reach_up(void);
/* Whether a connection made at epoch is from before an outage that is over: the store went
 * away and came back since, and this connection did not see it (it was idle). Its server has
 * likely restarted under it. Cheap: read before every statement. */
bool db_reach_stale(uint64_t epoch);

/* The engines' openers (db_open picks one by the target's form). */
int db_open_sqlite(const char *path, int flags, struct db **ret, struct ig_error *err);
int db_open_pg(const char *conninfo, int flags, struct db **ret, struct ig_error *err);
int db_check_target_pg(const char *conninfo, struct ig_error *err);
void db_target_name_pg(const char *conninfo, char *buf, size_t size);
