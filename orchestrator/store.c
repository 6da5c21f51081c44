#include "store.h"

#include <string.h>

#include "log.h"

/* Append only: a released migration is never edited, since databases in the field already ran
 * it. Each later issue adds its tables as a new entry. */
static const struct store_migration migrations[] = {
    {"meta", "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
             "INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ'));"},
    {"invocations",
     /* One row per invocation. Async ones are inserted before their 202 (durable) and keep
      * their payload until they can no longer run; sync ones are recorded for status and logs.
      * Times are wall-clock microseconds. */
     "CREATE TABLE invocations ("
     "  id TEXT PRIMARY KEY,"
     "  function TEXT NOT NULL,"
     "  version INTEGER NOT NULL,"
     "  async INTEGER NOT NULL,"
     "  status TEXT NOT NULL,"
     "  payload BLOB,"
     "  content_type TEXT,"
     "  idempotency_key TEXT,"
     "  attempts INTEGER NOT NULL DEFAULT 0,"
     "  max_retries INTEGER NOT NULL,"
     "  created_us INTEGER NOT NULL,"
     "  started_us INTEGER,"
     "  finished_us INTEGER,"
     "  next_attempt_us INTEGER,"
     "  result BLOB,"
     "  error_type TEXT,"
     "  error_message TEXT,"
     "  billed_ms INTEGER,"
     "  cold INTEGER,"
     "  expires_us INTEGER NOT NULL"
     ") STRICT;"
     "CREATE INDEX invocations_pending ON invocations (created_us) "
     "  WHERE status IN ('queued', 'running');"
     "CREATE INDEX invocations_idempotency ON invocations (function, idempotency_key) "
     "  WHERE idempotency_key IS NOT NULL;"
     "CREATE INDEX invocations_expiry ON invocations (expires_us);"},
    /* The registry (registry.c): a function points at its current version; each version
     * keeps the bundle's digest (its directory under STATE_DIR/bundles) and the manifest as
     * validated, defaults written out. Times are wall-clock microseconds. */
    {"functions", "CREATE TABLE functions ("
                  " name TEXT PRIMARY KEY,"
                  " current_version INTEGER NOT NULL,"
                  " created_at INTEGER NOT NULL,"
                  " updated_at INTEGER NOT NULL) STRICT;"
                  "CREATE TABLE function_versions ("
                  " name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,"
                  " version INTEGER NOT NULL,"
                  " digest TEXT NOT NULL,"
                  " manifest TEXT NOT NULL,"
                  " bundle_bytes INTEGER NOT NULL,"
                  " created_at INTEGER NOT NULL,"
                  " PRIMARY KEY (name, version)) STRICT;"
                  "CREATE INDEX function_versions_digest ON function_versions (digest);"},
};

int store_schema_version(void)
{
    return (int)ARRAY_SIZE(migrations);
}

int store_get_version(sqlite3 *db, int *ret)
{
    sqlite3_stmt *st;
    int r = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (r != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return -EIO;
    }
    *ret = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int store_migrate(sqlite3 *db, const struct store_migration *list, size_t n, struct ig_error *err)
{
    int version;
    char *msg = NULL;

    if (store_get_version(db, &version) < 0)
        return ig_error_set(err, EIO, "reading schema version: %s", sqlite3_errmsg(db));
    if (version > (int)n)
        return ig_error_set(err, EPROTO,
                            "database schema version %d is newer than this ignisd supports (%zu); "
                            "refusing to downgrade: run a newer ignisd or restore a backup",
                            version, n);
    for (size_t i = (size_t)version; i < n; i++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %zu;", i + 1);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE;", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, list[i].sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, bump, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT;", NULL, NULL, &msg) != SQLITE_OK) {
            int r = ig_error_set(err, EIO, "migration %zu (%s) failed: %s", i + 1, list[i].name,
                                 msg ? msg : sqlite3_errmsg(db));
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
            return r;
        }
        log_info("store migrated", "version=%zu migration=%s", i + 1, list[i].name);
    }
    return 0;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    sqlite3_close_v2(s->db);
    free(s);
}

int store_open(const char *path, struct store **ret, struct ig_error *err)
{
    struct store *s = calloc(1, sizeof(*s));
    char *msg = NULL;
    int r;

    if (!s)
        return ig_error_set(err, ENOMEM, "out of memory");
    snprintf(s->path, sizeof(s->path), "%s", path);
    r = sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                            SQLITE_OPEN_EXRESCODE,
                        NULL);
    if (r != SQLITE_OK) {
        r = ig_error_set(err, EIO, "opening %s: %s", path,
                         s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(r));
        store_free(s);
        return r;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL: readers never block the writer. synchronous=NORMAL survives a process crash; commits
     * that must survive power loss (async invocations) ask for FULL themselves. */
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                     NULL, NULL, &msg) != SQLITE_OK) {
        r = ig_error_set(err, EIO, "setting up %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        store_free(s);
        return r;
    }
    r = store_migrate(s->db, migrations, ARRAY_SIZE(migrations), err);
    if (r < 0) {
        ig_error_prefix(err, "%s", path);
        store_free(s);
        return r;
    }
    *ret = s;
    return 0;
}
