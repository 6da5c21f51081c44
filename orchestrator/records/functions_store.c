#include "records/functions_store.h"

#include <sqlite3.h>
#include <string.h>

#include "records/store-internal.h"

/* Runs one statement with its parameters: 's' a string (NULL binds NULL), 'i' an int64. */
static int exec_bind(sqlite3 *db, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 's')
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    }
    va_end(ap);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? 0 : -EIO;
}

static const char *column_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Calls fn with each row of sql, whose columns are those of struct functions_store_version in
 * its order (name, version, digest, manifest, created, updated, bundle bytes, service,
 * max_version); what names the rows in an error. */
static int load_version_rows(struct store *s, const char *sql, const char *what,
                             int (*fn)(void *userdata, const struct functions_store_version *v,
                                       struct ig_error *err),
                             void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "store: loading %s: %s", what, sqlite3_errmsg(s->db));
    int q;
    while ((q = sqlite3_step(st)) == SQLITE_ROW) {
        const struct functions_store_version v = {
            .name = column_text(st, 0),
            .version = (uint32_t)sqlite3_column_int64(st, 1),
            .digest = column_text(st, 2),
            .manifest = column_text(st, 3),
            .created_usec = (uint64_t)sqlite3_column_int64(st, 4),
            .updated_usec = (uint64_t)sqlite3_column_int64(st, 5),
            .bundle_bytes = (uint64_t)sqlite3_column_int64(st, 6),
            .service = column_text(st, 7),
            .max_version = (uint32_t)sqlite3_column_int64(st, 8),
        };
        int r = fn(userdata, &v, err);
        if (r < 0) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    if (q != SQLITE_DONE)
        return ig_error_set(err, EIO, "store: loading %s: %s", what, sqlite3_errmsg(s->db));
    return 0;
}

int functions_store_load_functions(struct store *s,
                                   int (*fn)(void *userdata,
                                             const struct functions_store_version *v,
                                             struct ig_error *err),
                                   void *userdata, struct ig_error *err)
{
    return load_version_rows(s,
                             "SELECT f.name, v.version, v.digest, v.manifest, f.created_at, "
                             "v.created_at, v.bundle_bytes, f.service, f.max_version FROM "
                             "functions f JOIN function_versions v ON v.name = f.name AND "
                             "v.version = f.current_version",
                             "functions", fn, userdata, err);
}

int functions_store_load_versions(struct store *s,
                                  int (*fn)(void *userdata, const struct functions_store_version *v,
                                            struct ig_error *err),
                                  void *userdata, struct ig_error *err)
{
    return load_version_rows(s,
                             "SELECT name, version, digest, manifest, created_at, created_at, "
                             "bundle_bytes, NULL, 0 FROM function_versions ORDER BY name, version",
                             "versions", fn, userdata, err);
}

int functions_store_load_services(struct store *s,
                                  int (*fn)(void *userdata,
                                            const struct functions_store_service *sv,
                                            struct ig_error *err),
                                  void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT name, spec, created_at, updated_at FROM services", -1,
                           &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "store: loading services: %s", sqlite3_errmsg(s->db));
    int q;
    while ((q = sqlite3_step(st)) == SQLITE_ROW) {
        const struct functions_store_service sv = {
            .name = column_text(st, 0),
            .spec = column_text(st, 1),
            .created_usec = (uint64_t)sqlite3_column_int64(st, 2),
            .updated_usec = (uint64_t)sqlite3_column_int64(st, 3),
        };
        int r = fn(userdata, &sv, err);
        if (r < 0) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    if (q != SQLITE_DONE)
        return ig_error_set(err, EIO, "store: loading services: %s", sqlite3_errmsg(s->db));
    return 0;
}

bool functions_store_digest_referenced(struct store *s, const char *digest)
{
    sqlite3_stmt *st;
    bool ref = true; /* on error, keep the bundle */
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM function_versions WHERE digest = ? LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK)
        return true;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        ref = false;
    sqlite3_finalize(st);
    return ref;
}

/* The version's own row, inside the caller's transaction. */
static int insert_version_row(sqlite3 *db, const struct functions_store_version *v)
{
    return exec_bind(db,
                     "INSERT INTO function_versions (name, version, digest, manifest, "
                     "bundle_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                     "siss"
                     "ii",
                     v->name, (int64_t)v->version, v->digest, v->manifest, (int64_t)v->bundle_bytes,
                     (int64_t)v->updated_usec);
}

/* Points the alias at versions[0..n), inside the caller's transaction. */
static int replace_alias(sqlite3 *db, const char *function, const char *alias,
                         const uint32_t *versions, const uint32_t *weights, size_t n)
{
    int q = exec_bind(db, "DELETE FROM aliases WHERE function = ? AND alias = ?", "ss", function,
                      alias);
    for (size_t i = 0; q == 0 && i < n; i++)
        q = exec_bind(db,
                      "INSERT INTO aliases (function, alias, version, weight) VALUES (?, ?, ?, ?)",
                      "ssii", function, alias, (int64_t)versions[i], (int64_t)weights[i]);
    return q;
}

/* The rows of a new current version, inside the caller's transaction: the default alias points
 * at it alone. */
static int insert_version(sqlite3 *db, const struct functions_store_version *v)
{
    static const uint32_t all = 100;
    int q = exec_bind(db,
                      "INSERT INTO functions (name, current_version, created_at, updated_at, "
                      "service, max_version) VALUES (?1, ?2, ?3, ?4, ?5, ?2) ON CONFLICT (name) "
                      "DO UPDATE SET current_version = ?2, updated_at = ?4, service = ?5, "
                      "max_version = max(max_version, ?2)",
                      "sii"
                      "is",
                      v->name, (int64_t)v->version, (int64_t)v->created_usec,
                      (int64_t)v->updated_usec, v->service);
    if (q == 0)
        q = insert_version_row(db, v);
    if (q == 0)
        q = replace_alias(db, v->name, "default", &v->version, &all, 1);
    return q;
}

int functions_store_record_version(struct store *s, const struct functions_store_version *v,
                                   struct ig_error *err)
{
    sqlite3 *db = s->db;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(db, err, "store");
    int q = insert_version(db, v);
    if (q == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int r = store_fail(db, err, "store: recording %s version %u", v->name, v->version);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

int functions_store_add_version(struct store *s, const struct functions_store_version *v,
                                struct ig_error *err)
{
    sqlite3 *db = s->db;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(db, err, "store");
    int q = insert_version_row(db, v);
    if (q == 0)
        q = exec_bind(db,
                      "UPDATE functions SET max_version = max(max_version, ?2), updated_at = ?3 "
                      "WHERE name = ?1",
                      "sii", v->name, (int64_t)v->version, (int64_t)v->updated_usec);
    if (q == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int r = store_fail(db, err, "store: recording %s version %u", v->name, v->version);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

int functions_store_load_aliases(struct store *s,
                                 int (*fn)(void *userdata, const struct functions_store_alias *a,
                                           struct ig_error *err),
                                 void *userdata, struct ig_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT function, alias, version, weight FROM aliases ORDER BY "
                           "function, alias, version",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "store: loading aliases: %s", sqlite3_errmsg(s->db));
    int q;
    while ((q = sqlite3_step(st)) == SQLITE_ROW) {
        const struct functions_store_alias a = {
            .function = column_text(st, 0),
            .alias = column_text(st, 1),
            .version = (uint32_t)sqlite3_column_int64(st, 2),
            .weight = (uint32_t)sqlite3_column_int64(st, 3),
        };
        int r = fn(userdata, &a, err);
        if (r < 0) {
            sqlite3_finalize(st);
            return r;
        }
    }
    sqlite3_finalize(st);
    if (q != SQLITE_DONE)
        return ig_error_set(err, EIO, "store: loading aliases: %s", sqlite3_errmsg(s->db));
    return 0;
}

int functions_store_set_alias(struct store *s, const char *function, const char *alias,
                              const uint32_t *versions, const uint32_t *weights, size_t n,
                              uint32_t current, struct ig_error *err)
{
    sqlite3 *db = s->db;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(db, err, "store");
    int q = replace_alias(db, function, alias, versions, weights, n);
    if (q == 0 && current)
        q = exec_bind(db, "UPDATE functions SET current_version = ? WHERE name = ?", "is",
                      (int64_t)current, function);
    if (q == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int r = store_fail(db, err, "store: setting alias %s of %s", alias, function);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

int functions_store_delete_alias(struct store *s, const char *function, const char *alias,
                                 struct ig_error *err)
{
    if (exec_bind(s->db, "DELETE FROM aliases WHERE function = ? AND alias = ?", "ss", function,
                  alias) < 0)
        return store_fail(s->db, err, "store: deleting alias %s of %s", alias, function);
    return 0;
}

/* A growing list of digests (copies). */
struct digests {
    char **v;
    size_t n, cap;
};

static int digests_add(struct digests *l, const char *digest)
{
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 8;
        char **nv = realloc(l->v, c * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        l->v = nv;
        l->cap = c;
    }
    if (!(l->v[l->n] = strdup(digest)))
        return -ENOMEM;
    l->n++;
    return 0;
}

void functions_store_digests_free(char **digests, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(digests[i]);
    free(digests);
}

/* Deletes a function and its versions inside the caller's transaction, adding the digests its
 * versions used to the list. */
static int delete_function(sqlite3 *db, const char *name, struct digests *l)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT digest FROM function_versions WHERE name = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int q = 0;
    while (q == 0 && sqlite3_step(st) == SQLITE_ROW) {
        const char *d = column_text(st, 0);
        if (d)
            q = digests_add(l, d);
    }
    sqlite3_finalize(st);
    if (q == 0 && (exec_bind(db, "DELETE FROM function_versions WHERE name = ?", "s", name) < 0 ||
                   exec_bind(db, "DELETE FROM functions WHERE name = ?", "s", name) < 0))
        q = -EIO;
    return q;
}

/* Keeps the digests that no version references any more (inside the transaction: what is left
 * refers to the remaining functions only). */
static void keep_unreferenced(struct store *s, struct digests *l)
{
    size_t keep = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (functions_store_digest_referenced(s, l->v[i]))
            free(l->v[i]);
        else
            l->v[keep++] = l->v[i];
    }
    l->n = keep;
}

/* Deletes names[0..n) inside the caller's transaction; on success l holds the digests no version
 * references any more. */
static int delete_functions(struct store *s, const char *const *names, size_t n, struct digests *l)
{
    int q = 0;
    for (size_t i = 0; q == 0 && i < n; i++)
        q = delete_function(s->db, names[i], l);
    if (q == 0)
        keep_unreferenced(s, l);
    return q;
}

/* Commits, or rolls back with err naming what was done and the engine's reason. On success
 * hands the digests over. */
static int commit_or_rollback(struct store *s, int q, struct digests *l, char ***ret_digests,
                              size_t *ret_n, struct ig_error *err, const char *what)
{
    if (q == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK) {
        *ret_digests = l->v;
        *ret_n = l->n;
        return 0;
    }
    functions_store_digests_free(l->v, l->n);
    q = store_fail(s->db, err, "store: %s", what);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return q;
}

int functions_store_delete(struct store *s, const char *const *names, size_t n, const char *service,
                           char ***ret_digests, size_t *ret_n, struct ig_error *err)
{
    struct digests l = {};
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(s->db, err, "store");
    int q = delete_functions(s, names, n, &l);
    if (q == 0 && service)
        q = exec_bind(s->db, "DELETE FROM services WHERE name = ?", "s", service);
    char what[160];
    snprintf(what, sizeof(what), "deleting %s", service ? service : names[0]);
    return commit_or_rollback(s, q, &l, ret_digests, ret_n, err, what);
}

int functions_store_delete_versions(struct store *s, const char *function, const uint32_t *versions,
                                    size_t n, char ***ret_digests, size_t *ret_n,
                                    struct ig_error *err)
{
    struct digests l = {};
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(s->db, err, "store");
    int q = 0;
    for (size_t i = 0; q == 0 && i < n; i++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(s->db,
                               "DELETE FROM function_versions WHERE name = ? AND version = ? "
                               "RETURNING digest",
                               -1, &st, NULL) != SQLITE_OK) {
            q = -EIO;
            break;
        }
        sqlite3_bind_text(st, 1, function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)versions[i]);
        int r = SQLITE_DONE;
        while (q == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
            if (column_text(st, 0))
                q = digests_add(&l, column_text(st, 0));
        if (q == 0 && r != SQLITE_DONE)
            q = -EIO;
        sqlite3_finalize(st);
    }
    if (q == 0)
        keep_unreferenced(s, &l);
    char what[160];
    snprintf(what, sizeof(what), "deleting versions of %s", function);
    return commit_or_rollback(s, q, &l, ret_digests, ret_n, err, what);
}

int functions_store_record_service(struct store *s, const struct functions_store_service *sv,
                                   const struct functions_store_version *versions,
                                   size_t n_versions, const char *const *pruned, size_t n_pruned,
                                   char ***ret_digests, size_t *ret_n, struct ig_error *err)
{
    struct digests l = {};
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(s->db, err, "store");
    int q =
        exec_bind(s->db,
                  "INSERT INTO services (name, spec, created_at, updated_at) VALUES (?1, "
                  "?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET spec = ?2, updated_at = ?4",
                  "ssii", sv->name, sv->spec, (int64_t)sv->created_usec, (int64_t)sv->updated_usec);
    for (size_t i = 0; q == 0 && i < n_versions; i++)
        q = insert_version(s->db, &versions[i]);
    if (q == 0)
        q = delete_functions(s, pruned, n_pruned, &l);
    char what[160];
    snprintf(what, sizeof(what), "deploying service %s", sv->name);
    return commit_or_rollback(s, q, &l, ret_digests, ret_n, err, what);
}
