#include "records/functions_store.h"

#include <string.h>

#include "records/changes.h"
#include "records/bundles_store.h"
#include "records/store-internal.h"

/* Calls fn with each row of sql, whose columns are those of struct functions_store_version in
 * its order (name, version, digest, manifest, created, updated, bundle bytes, service,
 * max_version); what names the rows in an error. */
static int load_version_rows(struct store *s, const char *sql, const char *name, const char *what,
                             int (*fn)(void *userdata, const struct functions_store_version *v,
                                       struct ig_error *err),
                             void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value key[] = {DV_S(name)};
    if (db_query(s->db, sql, key, ARRAY_SIZE(key), &rows, NULL) < 0)
        return db_fail(s->db, err, "store: loading %s", what);
    int q;
    while ((q = db_next(rows)) > 0) {
        const struct functions_store_version v = {
            .name = db_text(rows, 0),
            .version = (uint32_t)db_int(rows, 1),
            .digest = db_text(rows, 2),
            .manifest = db_text(rows, 3),
            .created_usec = (uint64_t)db_int(rows, 4),
            .updated_usec = (uint64_t)db_int(rows, 5),
            .bundle_bytes = (uint64_t)db_int(rows, 6),
            .service = db_text(rows, 7),
            .max_version = (uint32_t)db_int(rows, 8),
        };
        int r = fn(userdata, &v, err);
        if (r < 0)
            return r;
    }
    if (q < 0)
        return db_fail(s->db, err, "store: loading %s", what);
    return 0;
}

int functions_store_load_functions(struct store *s, const char *name,
                                   int (*fn)(void *userdata,
                                             const struct functions_store_version *v,
                                             struct ig_error *err),
                                   void *userdata, struct ig_error *err)
{
    return load_version_rows(s,
                             "SELECT f.name, v.version, v.digest, v.manifest, f.created_at, "
                             "v.created_at, v.bundle_bytes, f.service, f.max_version FROM "
                             "functions f JOIN function_versions v ON v.name = f.name AND "
                             "v.version = f.current_version WHERE CAST($1 AS TEXT) IS NULL OR "
                             "f.name = $1",
                             name, "functions", fn, userdata, err);
}

int functions_store_load_versions(struct store *s, const char *name,
                                  int (*fn)(void *userdata, const struct functions_store_version *v,
                                            struct ig_error *err),
                                  void *userdata, struct ig_error *err)
{
    return load_version_rows(s,
                             "SELECT name, version, digest, manifest, created_at, created_at, "
                             "bundle_bytes, NULL, 0 FROM function_versions WHERE CAST($1 AS TEXT) "
                             "IS NULL OR name = $1 ORDER BY name, version",
                             name, "versions", fn, userdata, err);
}

int functions_store_load_services(struct store *s,
                                  int (*fn)(void *userdata,
                                            const struct functions_store_service *sv,
                                            struct ig_error *err),
                                  void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    if (db_query(s->db, "SELECT name, spec, created_at, updated_at FROM services", NULL, 0, &rows,
                 NULL) < 0)
        return db_fail(s->db, err, "store: loading services");
    int q;
    while ((q = db_next(rows)) > 0) {
        const struct functions_store_service sv = {
            .name = db_text(rows, 0),
            .spec = db_text(rows, 1),
            .created_usec = (uint64_t)db_int(rows, 2),
            .updated_usec = (uint64_t)db_int(rows, 3),
        };
        int r = fn(userdata, &sv, err);
        if (r < 0)
            return r;
    }
    if (q < 0)
        return db_fail(s->db, err, "store: loading services");
    return 0;
}

bool functions_store_digest_referenced(struct store *s, const char *digest)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(digest)};
    if (db_query(s->db, "SELECT 1 FROM function_versions WHERE digest = $1 LIMIT 1", v,
                 ARRAY_SIZE(v), &rows, NULL) < 0)
        return true; /* on error, keep the bundle */
    return db_next(rows) != 0;
}

/* The version's own row, inside the caller's transaction. */
static int insert_version_row(struct db *db, const struct functions_store_version *v)
{
    const struct db_value val[] = {
        DV_S(v->name),     DV_I(v->version),      DV_S(v->digest),
        DV_S(v->manifest), DV_I(v->bundle_bytes), DV_I(v->updated_usec),
    };
    return db_exec(db,
                   "INSERT INTO function_versions (name, version, digest, manifest, "
                   "bundle_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                   val, ARRAY_SIZE(val), NULL);
}

/* Points the alias at versions[0..n), inside the caller's transaction. */
static int replace_alias(struct db *db, const char *function, const char *alias,
                         const uint32_t *versions, const uint32_t *weights, size_t n)
{
    const struct db_value key[] = {DV_S(function), DV_S(alias)};
    int q = db_exec(db, "DELETE FROM aliases WHERE function = $1 AND alias = $2", key,
                    ARRAY_SIZE(key), NULL);
    for (size_t i = 0; q >= 0 && i < n; i++) {
        const struct db_value v[] = {DV_S(function), DV_S(alias), DV_I(versions[i]),
                                     DV_I(weights[i])};
        q = db_exec(db,
                    "INSERT INTO aliases (function, alias, version, weight) "
                    "VALUES ($1, $2, $3, $4)",
                    v, ARRAY_SIZE(v), NULL);
    }
    return q < 0 ? q : 0;
}

/* The rows of a new current version, inside the caller's transaction: the default alias points
 * at it alone. */
static int insert_version(struct db *db, const struct functions_store_version *v)
{
    static const uint32_t all = 100;
    const struct db_value val[] = {
        DV_S(v->name),         DV_I(v->version), DV_I(v->created_usec),
        DV_I(v->updated_usec), DV_S(v->service),
    };
    int q = db_exec(db,
                    "INSERT INTO functions (name, current_version, created_at, updated_at, "
                    "service, max_version) VALUES ($1, $2, $3, $4, $5, $2) ON CONFLICT (name) "
                    "DO UPDATE SET current_version = $2, updated_at = $4, service = $5, "
                    "max_version = CASE WHEN functions.max_version > $2 "
                    "THEN functions.max_version ELSE $2 END",
                    val, ARRAY_SIZE(val), NULL);
    if (q >= 0)
        q = insert_version_row(db, v);
    if (q >= 0)
        q = replace_alias(db, v->name, "default", &v->version, &all, 1);
    if (q >= 0)
        q = changes_notify(db, CHANGES_FUNCTION, v->name);
    return q < 0 ? q : 0;
}

/* Ends the caller's transaction: commits when q (what the transaction did) is 0, else, or when
 * the commit fails, rolls back with err naming what and the engine's reason. */
static int commit_or_fail(struct db *db, int q, struct ig_error *err, const char *fmt, ...)
    _printf_(4, 5);
static int commit_or_fail(struct db *db, int q, struct ig_error *err, const char *fmt, ...)
{
    if (q >= 0 && db_commit(db, NULL) == 0)
        return 0;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    int r = db_fail(db, err, "%s", what);
    db_rollback(db);
    return r;
}

int functions_store_record_version(struct store *s, const struct functions_store_version *v,
                                   struct ig_error *err)
{
    struct db *db = s->db;
    if (db_begin(db, NULL) < 0)
        return db_fail(db, err, "store");
    return commit_or_fail(db, insert_version(db, v), err, "store: recording %s version %u", v->name,
                          v->version);
}

int functions_store_add_version(struct store *s, const struct functions_store_version *v,
                                struct ig_error *err)
{
    struct db *db = s->db;
    if (db_begin(db, NULL) < 0)
        return db_fail(db, err, "store");
    int q = insert_version_row(db, v);
    const struct db_value val[] = {DV_S(v->name), DV_I(v->version), DV_I(v->updated_usec)};
    if (q >= 0)
        q = db_exec(db,
                    "UPDATE functions SET max_version = CASE WHEN max_version > $2 "
                    "THEN max_version ELSE $2 END, updated_at = $3 WHERE name = $1",
                    val, ARRAY_SIZE(val), NULL);
    if (q >= 0)
        q = changes_notify(db, CHANGES_FUNCTION, v->name);
    return commit_or_fail(db, q, err, "store: recording %s version %u", v->name, v->version);
}

int functions_store_load_aliases(struct store *s, const char *name,
                                 int (*fn)(void *userdata, const struct functions_store_alias *a,
                                           struct ig_error *err),
                                 void *userdata, struct ig_error *err)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    const struct db_value v[] = {DV_S(name)};
    if (db_query(s->db,
                 "SELECT function, alias, version, weight FROM aliases WHERE CAST($1 AS TEXT) IS "
                 "NULL OR function = $1 ORDER BY function, alias, version",
                 v, ARRAY_SIZE(v), &rows, NULL) < 0)
        return db_fail(s->db, err, "store: loading aliases");
    int q;
    while ((q = db_next(rows)) > 0) {
        const struct functions_store_alias a = {
            .function = db_text(rows, 0),
            .alias = db_text(rows, 1),
            .version = (uint32_t)db_int(rows, 2),
            .weight = (uint32_t)db_int(rows, 3),
        };
        int r = fn(userdata, &a, err);
        if (r < 0)
            return r;
    }
    if (q < 0)
        return db_fail(s->db, err, "store: loading aliases");
    return 0;
}

int functions_store_set_alias(struct store *s, const char *function, const char *alias,
                              const uint32_t *versions, const uint32_t *weights, size_t n,
                              uint32_t current, struct ig_error *err)
{
    struct db *db = s->db;
    if (db_begin(db, NULL) < 0)
        return db_fail(db, err, "store");
    int q = replace_alias(db, function, alias, versions, weights, n);
    const struct db_value v[] = {DV_I(current), DV_S(function)};
    if (q == 0 && current)
        q = db_exec(db, "UPDATE functions SET current_version = $1 WHERE name = $2", v,
                    ARRAY_SIZE(v), NULL);
    if (q >= 0)
        q = changes_notify(db, CHANGES_FUNCTION, function);
    return commit_or_fail(db, q, err, "store: setting alias %s of %s", alias, function);
}

int functions_store_delete_alias(struct store *s, const char *function, const char *alias,
                                 struct ig_error *err)
{
    struct db *db = s->db;
    const struct db_value v[] = {DV_S(function), DV_S(alias)};
    if (db_begin(db, NULL) < 0)
        return db_fail(db, err, "store");
    int q = db_exec(db, "DELETE FROM aliases WHERE function = $1 AND alias = $2", v, ARRAY_SIZE(v),
                    NULL);
    if (q >= 0)
        q = changes_notify(db, CHANGES_FUNCTION, function);
    return commit_or_fail(db, q, err, "store: deleting alias %s of %s", alias, function);
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
static int delete_function(struct db *db, const char *name, struct digests *l)
{
    const struct db_value v[] = {DV_S(name)};
    struct db_rows *rows;
    int q = db_query(db, "SELECT DISTINCT digest FROM function_versions WHERE name = $1", v,
                     ARRAY_SIZE(v), &rows, NULL);
    if (q < 0)
        return q;
    while (q == 0 && db_next(rows) > 0) {
        const char *d = db_text(rows, 0);
        if (d)
            q = digests_add(l, d);
    }
    db_rows_free(rows);
    if (q == 0 &&
        (db_exec(db, "DELETE FROM function_versions WHERE name = $1", v, ARRAY_SIZE(v), NULL) < 0 ||
         db_exec(db, "DELETE FROM functions WHERE name = $1", v, ARRAY_SIZE(v), NULL) < 0 ||
         changes_notify(db, CHANGES_FUNCTION, name) < 0))
        q = -EIO;
    return q;
}

/* Keeps the digests that no version references any more (inside the transaction: what is left
 * refers to the remaining functions only), and deletes their bytes from the store in the same
 * transaction. 0 or -errno. */
static int keep_unreferenced(struct store *s, struct digests *l)
{
    size_t keep = 0;
    int q = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (functions_store_digest_referenced(s, l->v[i]))
            free(l->v[i]);
        else
            l->v[keep++] = l->v[i];
    }
    l->n = keep;
    for (size_t i = 0; q == 0 && i < l->n; i++)
        q = bundles_store_forget(s, l->v[i]);
    return q;
}

/* Deletes names[0..n) inside the caller's transaction; on success l holds the digests no version
 * references any more. */
static int delete_functions(struct store *s, const char *const *names, size_t n, struct digests *l)
{
    int q = 0;
    for (size_t i = 0; q == 0 && i < n; i++)
        q = delete_function(s->db, names[i], l);
    if (q == 0)
        q = keep_unreferenced(s, l);
    return q;
}

/* Commits, or rolls back with err naming what was done and the engine's reason. On success
 * hands the digests over. */
static int commit_or_rollback(struct store *s, int q, struct digests *l, char ***ret_digests,
                              size_t *ret_n, struct ig_error *err, const char *what)
{
    q = commit_or_fail(s->db, q, err, "store: %s", what);
    if (q < 0) {
        functions_store_digests_free(l->v, l->n);
        return q;
    }
    *ret_digests = l->v;
    *ret_n = l->n;
    return 0;
}

int functions_store_delete(struct store *s, const char *const *names, size_t n, const char *service,
                           char ***ret_digests, size_t *ret_n, struct ig_error *err)
{
    struct digests l = {};
    if (db_begin(s->db, NULL) < 0)
        return db_fail(s->db, err, "store");
    int q = delete_functions(s, names, n, &l);
    const struct db_value v[] = {DV_S(service)};
    if (q == 0 && service &&
        (db_exec(s->db, "DELETE FROM services WHERE name = $1", v, ARRAY_SIZE(v), NULL) < 0 ||
         changes_notify(s->db, CHANGES_SERVICE, service) < 0))
        q = -EIO;
    char what[160];
    snprintf(what, sizeof(what), "deleting %s", service ? service : names[0]);
    return commit_or_rollback(s, q, &l, ret_digests, ret_n, err, what);
}

int functions_store_delete_versions(struct store *s, const char *function, const uint32_t *versions,
                                    size_t n, char ***ret_digests, size_t *ret_n,
                                    struct ig_error *err)
{
    struct digests l = {};
    if (db_begin(s->db, NULL) < 0)
        return db_fail(s->db, err, "store");
    int q = 0;
    for (size_t i = 0; q == 0 && i < n; i++) {
        const struct db_value v[] = {DV_S(function), DV_I(versions[i])};
        struct db_rows *rows;
        q = db_query(s->db,
                     "DELETE FROM function_versions WHERE name = $1 AND version = $2 "
                     "RETURNING digest",
                     v, ARRAY_SIZE(v), &rows, NULL);
        if (q < 0)
            break;
        int r;
        while (q == 0 && (r = db_next(rows)) > 0)
            if (db_text(rows, 0))
                q = digests_add(&l, db_text(rows, 0));
        if (q == 0 && r < 0)
            q = r;
        db_rows_free(rows);
    }
    if (q == 0)
        q = changes_notify(s->db, CHANGES_FUNCTION, function);
    if (q == 0)
        q = keep_unreferenced(s, &l);
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
    if (db_begin(s->db, NULL) < 0)
        return db_fail(s->db, err, "store");
    const struct db_value v[] = {DV_S(sv->name), DV_S(sv->spec), DV_I(sv->created_usec),
                                 DV_I(sv->updated_usec)};
    int q = db_exec(s->db,
                    "INSERT INTO services (name, spec, created_at, updated_at) VALUES ($1, "
                    "$2, $3, $4) ON CONFLICT (name) DO UPDATE SET spec = $2, updated_at = $4",
                    v, ARRAY_SIZE(v), NULL);
    if (q >= 0)
        q = changes_notify(s->db, CHANGES_SERVICE, sv->name);
    q = q < 0 ? q : 0;
    for (size_t i = 0; q == 0 && i < n_versions; i++)
        q = insert_version(s->db, &versions[i]);
    if (q == 0)
        q = delete_functions(s, pruned, n_pruned, &l);
    char what[160];
    snprintf(what, sizeof(what), "deploying service %s", sv->name);
    return commit_or_rollback(s, q, &l, ret_digests, ret_n, err, what);
}

int functions_store_rename_digest(struct store *s, const char *from, const char *to,
                                  struct ig_error *err)
{
    const struct db_value v[] = {DV_S(to), DV_S(from)};
    if (db_exec(s->db, "UPDATE function_versions SET digest = $1 WHERE digest = $2", v,
                ARRAY_SIZE(v), NULL) < 0)
        return db_fail(s->db, err, "store: renaming bundle %s", from);
    return 0;
}
