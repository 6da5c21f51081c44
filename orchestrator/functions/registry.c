#include "functions/registry.h"

#include <dirent.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/log.h"
#include "functions/service.h"
#include "records/bundles_store.h"
#include "records/functions_store.h"

/* A push of one function; a delete of one function or of a whole service (its functions and
 * its row); a service deploy (service.h), which records every function of the service and
 * removes those it no longer lists, in one transaction; an alias set or removed (a rollback is
 * the default alias set); a version deleted. */
/* OP_PRUNE: the versions of one function beyond keep_versions, after a deploy made a new one
 * (a push prunes within its own op); no caller waits for it. */
/* OP_SYNC: another host changed a function (or all may have changed, sync_all; or only services,
 * an empty name): read again from the store (registry_sync); OP_FORGET: versions another host
 * removed, drained and dropped here; OP_FETCH: a bundle this host has not unpacked, read from the
 * store (op->digest); none has a caller waiting. */
enum op_kind {
    OP_PUSH,
    OP_DELETE,
    OP_SERVICE,
    OP_ALIAS,
    OP_VERSION_DELETE,
    OP_PRUNE,
    OP_SYNC,
    OP_FORGET,
    OP_FETCH
};

/* One function of a service deploy, as the worker found it. */
struct svc_fn {
    char name[MANIFEST_NAME_MAX + 1];
    char digest[BUNDLE_DIGEST_LEN + 1];
    struct manifest *manifest;
    size_t bundle_len;
    char *dir; /* unpacked and not yet committed; NULL when the store held the bundle */
};

/* One mutation. It waits in the queue, runs (its bundle work on the worker thread), and is
 * reported (done) and freed when finished. */
struct op {
    struct registry *reg;
    enum op_kind kind;
    registry_done_fn done; /* NULL once the caller went away (registry_detach) */
    void *userdata;
    char name[MANIFEST_NAME_MAX + 1];
    /* push, deploy: the caller's bytes. Read only by the worker; registry_detach waits for the
     * worker before the caller may free them. */
    const char *body;
    size_t body_len;
    /* results of the worker */
    bool failed;
    struct ig_error err; /* when failed: the errno and reason done reports */
    char digest[BUNDLE_DIGEST_LEN + 1];
    struct manifest *manifest;
    /* bundles to remove on the worker (delete; a push that could not be recorded) */
    char (*remove)[BUNDLE_DIGEST_LEN + 1];
    size_t n_remove, cap_remove;
    /* delete: the functions to remove (one, or a service's); service_name set for a service */
    char (*names)[MANIFEST_NAME_MAX + 1];
    size_t n_names;
    char service_name[MANIFEST_NAME_MAX + 1];
    size_t drains_pending; /* functions whose drain has not said done yet */
    /* service deploy */
    struct service *svc;
    struct svc_fn *sfns;
    size_t n_sfns;
    /* push: whether the new version becomes current; the highest number the store said the
     * function has, after another host's push took the one this push tried (number_taken) */
    bool promote;
    uint32_t stored_max;
    int renumbered;
    /* alias: set (routes), removed (alias_delete) or the default rolled back (rollback, to
     * target; 0: the version before the current one); version delete: target */
    char alias[MANIFEST_NAME_MAX + 1];
    bool alias_delete, rollback;
    uint32_t target;
    uint32_t versions[ALIAS_MAX_VERSIONS], weights[ALIAS_MAX_VERSIONS];
    size_t n_routes;
    /* push: the versions pruned after it; version delete: the one deleted. Drained first. */
    uint32_t *prune;
    size_t n_prune;
    /* what done reports on success, made before the removal of bundles that follows */
    struct registry_result result;
    struct registry_deployed *deployed;
    bool removing; /* the worker's job is op->remove (not the push's bundle work) */
    /* sync: every function; delete: another host deleted the functions (the store has done) */
    bool sync_all, remote;
    bool running; /* the worker thread runs for this op */
    pthread_t thread;
    struct op *next;
};

struct registry {
    struct loop *loop;
    struct store *store;
    char bundles_dir[4096];
    char images_dir[4096]; /* "": bundles are not checked against the images */
    struct registry_hooks hooks;
    struct registry_function **fns; /* sorted by name */
    size_t n_fns, cap_fns;
    struct op *queue_head, *queue_tail; /* head is the running op, when active */
    bool active;
    struct op *draining; /* deletes waiting for the dispatcher's drain */
    struct registry_service *services;
    size_t n_services;
    uint32_t keep_versions; /* registry_set_keep_versions */
};

static void version_free(struct registry_version *v)
{
    if (!v)
        return;
    manifest_free(v->manifest);
    free(v);
}

/* Until f is in the table it owns its manifest; from then on its versions own theirs, f's
 * manifest being the current one's. */
static void registry_function_free(struct registry_function *f)
{
    if (!f)
        return;
    if (f->n_versions == 0)
        manifest_free(f->manifest);
    for (size_t i = 0; i < f->n_versions; i++)
        version_free(f->versions[i]);
    free(f->versions);
    for (size_t i = 0; i < f->n_aliases; i++)
        free(f->aliases[i]);
    free(f->aliases);
    free(f);
}

static void svc_fns_free(struct svc_fn *fns, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        manifest_free(fns[i].manifest);
        if (fns[i].dir)
            rm_rf(fns[i].dir);
        free(fns[i].dir);
    }
    free(fns);
}

static void op_free(struct op *op)
{
    if (!op)
        return;
    manifest_free(op->manifest);
    free(op->remove);
    free(op->names);
    service_free(op->svc);
    svc_fns_free(op->sfns, op->n_sfns);
    free(op->deployed);
    free(op->prune);
    free(op);
}

/* Binary search in the sorted table: the index of name, or where it would go. */
static size_t fn_index(const struct registry *r, const char *name, bool *ret_found)
{
    size_t lo = 0, hi = r->n_fns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->fns[mid]->name, name);
        if (c == 0) {
            *ret_found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *ret_found = false;
    return lo;
}

const struct registry_function *registry_lookup(const struct registry *r, const char *name)
{
    bool found;
    size_t i = fn_index(r, name, &found);
    return found ? r->fns[i] : NULL;
}

static struct registry_function *find_fn(struct registry *r, const char *name)
{
    return (struct registry_function *)registry_lookup(r, name);
}

static struct registry_service *find_service(struct registry *r, const char *name)
{
    for (size_t i = 0; i < r->n_services; i++)
        if (streq(r->services[i].name, name))
            return &r->services[i];
    return NULL;
}

/* Adds or updates a service (spec is taken). */
static int service_put(struct registry *r, const char *name, char *spec, uint64_t created,
                       uint64_t updated)
{
    struct registry_service *sv = find_service(r, name);
    if (!sv) {
        struct registry_service *n = realloc(r->services, (r->n_services + 1) * sizeof(*n));
        if (!n) {
            free(spec);
            return -ENOMEM;
        }
        r->services = n;
        sv = &r->services[r->n_services++];
        memset(sv, 0, sizeof(*sv));
        snprintf(sv->name, sizeof(sv->name), "%s", name);
        sv->created_usec = created;
    }
    free(sv->spec);
    sv->spec = spec;
    sv->updated_usec = updated;
    return 0;
}

static void service_remove(struct registry *r, const char *name)
{
    struct registry_service *sv = find_service(r, name);
    if (!sv)
        return;
    free(sv->spec);
    size_t i = (size_t)(sv - r->services);
    memmove(sv, sv + 1, (r->n_services - i - 1) * sizeof(*sv));
    r->n_services--;
}

/* Appends a digest to a list (op->remove), unless it is there. */
static int digests_add(char (**list)[BUNDLE_DIGEST_LEN + 1], size_t *n, size_t *cap,
                       const char *digest)
{
    for (size_t i = 0; i < *n; i++)
        if (streq((*list)[i], digest))
            return 0;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        void *nl = realloc(*list, c * sizeof(**list));
        if (!nl)
            return -ENOMEM;
        *list = nl;
        *cap = c;
    }
    snprintf((*list)[(*n)++], BUNDLE_DIGEST_LEN + 1, "%s", digest);
    return 0;
}

size_t registry_count(const struct registry *r)
{
    return r->n_fns;
}

const struct registry_function *registry_at(const struct registry *r, size_t i)
{
    return i < r->n_fns ? r->fns[i] : NULL;
}

/* Adds v to f's versions, in number order (v is taken on success). */
static int versions_insert(struct registry_function *f, struct registry_version *v)
{
    struct registry_version **n = realloc(f->versions, (f->n_versions + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    f->versions = n;
    size_t i = f->n_versions;
    while (i > 0 && n[i - 1]->version > v->version) {
        n[i] = n[i - 1];
        i--;
    }
    n[i] = v;
    f->n_versions++;
    return 0;
}

/* A version entry (m becomes its own once the caller keeps the entry), or NULL without
 * memory. */
static struct registry_version *version_new(uint32_t version, const char *digest,
                                            struct manifest *m, const char *bundles_dir,
                                            uint64_t created, uint64_t bytes)
{
    struct registry_version *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->version = version;
    snprintf(v->digest, sizeof(v->digest), "%s", digest);
    v->manifest = m;
    bundle_path(bundles_dir, digest, v->bundle_dir, sizeof(v->bundle_dir));
    /* Not in this host's cache: fetch_missing, which follows every load, takes it from the store.
     * Said from the start, so no container is started from it before (the updated hook runs
     * first). */
    v->fetching = !bundle_exists(bundles_dir, digest);
    v->created_usec = created;
    v->bundle_bytes = bytes;
    return v;
}

/* Inserts f, or when its name is there, moves f's version into the existing entry so that
 * pointers the dispatcher holds stay valid across versions; f's version joins the kept ones.
 * Takes ownership of f on success; *ret is the entry in the table. */
static int table_put(struct registry *r, struct registry_function *f,
                     struct registry_function **ret)
{
    bool found;
    size_t i = fn_index(r, f->name, &found);
    struct registry_version *v = version_new(f->version, f->digest, f->manifest, r->bundles_dir,
                                             f->updated_usec, f->bundle_bytes);
    if (!v)
        return -ENOMEM;
    if (found) {
        struct registry_function *cur = r->fns[i];
        if (versions_insert(cur, v) < 0) {
            free(v);
            return -ENOMEM;
        }
        struct registry_version **versions = cur->versions;
        size_t n_versions = cur->n_versions;
        struct registry_alias **aliases = cur->aliases;
        size_t n_aliases = cur->n_aliases;
        uint32_t max_version = cur->max_version > f->version ? cur->max_version : f->version;
        *cur = *f;
        cur->versions = versions;
        cur->n_versions = n_versions;
        cur->aliases = aliases;
        cur->n_aliases = n_aliases;
        cur->max_version = max_version;
        free(f);
        *ret = cur;
        return 0;
    }
    if (versions_insert(f, v) < 0) {
        free(v);
        return -ENOMEM;
    }
    if (r->n_fns == r->cap_fns) {
        size_t cap = r->cap_fns ? r->cap_fns * 2 : 16;
        struct registry_function **n = realloc(r->fns, cap * sizeof(*n));
        if (!n) {
            /* f as it came: its manifest its own again */
            f->n_versions = 0;
            free(TAKE_PTR(f->versions));
            free(v);
            return -ENOMEM;
        }
        r->fns = n;
        r->cap_fns = cap;
    }
    memmove(r->fns + i + 1, r->fns + i, (r->n_fns - i) * sizeof(*r->fns));
    r->fns[i] = f;
    r->n_fns++;
    *ret = f;
    return 0;
}

static void table_remove(struct registry *r, const char *name)
{
    bool found;
    size_t i = fn_index(r, name, &found);
    if (!found)
        return;
    registry_function_free(r->fns[i]);
    memmove(r->fns + i, r->fns + i + 1, (r->n_fns - i - 1) * sizeof(*r->fns));
    r->n_fns--;
}

static struct registry_function *function_new(struct registry *r, const char *name,
                                              uint32_t version, const char *digest,
                                              struct manifest *m, uint64_t created,
                                              uint64_t updated, uint64_t bytes, const char *service)
{
    struct registry_function *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->service, sizeof(f->service), "%s", service ? service : "");
    f->version = version;
    f->max_version = version;
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    f->manifest = m;
    bundle_path(r->bundles_dir, digest, f->bundle_dir, sizeof(f->bundle_dir));
    f->created_usec = created;
    f->updated_usec = updated;
    f->bundle_bytes = bytes;
    return f;
}

/* ---- aliases and versions in memory ---- */

static struct registry_alias *alias_find(const struct registry_function *f, const char *name)
{
    for (size_t i = 0; i < f->n_aliases; i++)
        if (streq(f->aliases[i]->name, name))
            return f->aliases[i];
    return NULL;
}

const struct registry_alias *registry_alias(const struct registry_function *f, const char *name)
{
    return alias_find(f, name);
}

/* f's alias named name, made (pointing at nothing yet) in name order when f has none; NULL
 * without memory. */
static struct registry_alias *alias_get(struct registry_function *f, const char *name)
{
    struct registry_alias *a = alias_find(f, name);
    if (a)
        return a;
    struct registry_alias **n = realloc(f->aliases, (f->n_aliases + 1) * sizeof(*n));
    if (!n)
        return NULL;
    f->aliases = n;
    if (!(a = calloc(1, sizeof(*a))))
        return NULL;
    snprintf(a->name, sizeof(a->name), "%s", name);
    size_t i = f->n_aliases;
    while (i > 0 && strcmp(n[i - 1]->name, name) > 0) {
        n[i] = n[i - 1];
        i--;
    }
    n[i] = a;
    f->n_aliases++;
    return a;
}

static void alias_remove(struct registry_function *f, const char *name)
{
    for (size_t i = 0; i < f->n_aliases; i++)
        if (streq(f->aliases[i]->name, name)) {
            free(f->aliases[i]);
            memmove(f->aliases + i, f->aliases + i + 1,
                    (f->n_aliases - i - 1) * sizeof(*f->aliases));
            f->n_aliases--;
            return;
        }
}

/* The first alias of f pointing at version, or NULL. */
static const struct registry_alias *alias_pointing_at(const struct registry_function *f,
                                                      uint32_t version)
{
    for (size_t i = 0; i < f->n_aliases; i++)
        if (alias_has(f->aliases[i], version))
            return f->aliases[i];
    return NULL;
}

/* Points f's default alias at version alone (a new current version), as the store did. */
static void point_default(struct registry_function *f, uint32_t version)
{
    static const uint32_t all = ALIAS_TOTAL_WEIGHT;
    struct registry_alias *a = alias_get(f, REGISTRY_DEFAULT_ALIAS);
    if (!a) {
        log_error("default alias not kept in memory", "function=%s", f->name);
        return;
    }
    alias_assign(a, &version, &all, 1);
}

/* Makes v, one of f's kept versions, its current one, and tells the dispatcher. */
static void make_current(struct registry *r, struct registry_function *f,
                         const struct registry_version *v)
{
    f->version = v->version;
    snprintf(f->digest, sizeof(f->digest), "%s", v->digest);
    f->manifest = v->manifest;
    snprintf(f->bundle_dir, sizeof(f->bundle_dir), "%s", v->bundle_dir);
    f->updated_usec = v->created_usec;
    f->bundle_bytes = v->bundle_bytes;
    if (r->hooks.updated)
        r->hooks.updated(r->hooks.userdata, f);
}

/* Removes a kept version (never the current one) from f. */
static void versions_remove(struct registry_function *f, uint32_t version)
{
    for (size_t i = 0; i < f->n_versions; i++)
        if (f->versions[i]->version == version) {
            version_free(f->versions[i]);
            memmove(f->versions + i, f->versions + i + 1,
                    (f->n_versions - i - 1) * sizeof(*f->versions));
            f->n_versions--;
            return;
        }
}

/* ---- the store ---- */

/* The store's row for f, its manifest as manifest_json. */
static struct functions_store_version version_row(const struct registry_function *f,
                                                  const char *manifest_json)
{
    return (struct functions_store_version){
        .name = f->name,
        .version = f->version,
        .digest = f->digest,
        .manifest = manifest_json,
        .created_usec = f->created_usec,
        .updated_usec = f->updated_usec,
        .bundle_bytes = f->bundle_bytes,
        .service = f->service[0] ? f->service : NULL,
    };
}

/* Records f as its function's new current version (one transaction). */
static int db_record_version(struct registry *r, const struct registry_function *f,
                             const char *manifest_json, struct ig_error *err)
{
    const struct functions_store_version row = version_row(f, manifest_json);
    return functions_store_record_version(r->store, &row, err);
}

/* op->names as the store takes them (pointers into op->names), or NULL without memory. */
static const char **op_name_list(const struct op *op)
{
    const char **v = calloc(op->n_names + 1, sizeof(*v));
    for (size_t i = 0; v && i < op->n_names; i++)
        v[i] = op->names[i];
    return v;
}

/* Keeps in op->remove the digests the store said nothing references any more (those that are
 * digests: a damaged row names no bundle), then frees the store's list. */
static void op_take_digests(struct op *op, char **digests, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (bundle_digest_valid(digests[i]))
            digests_add(&op->remove, &op->n_remove, &op->cap_remove, digests[i]);
    functions_store_digests_free(digests, n);
}

/* Deletes op's functions and their versions (and the service's row, when service_name is set)
 * in one transaction; op->remove gets the digests they used that no other version references. */
static int db_delete_functions(struct registry *r, struct op *op, struct ig_error *err)
{
    _cleanup_free_ const char **names = op_name_list(op);
    char **digests;
    size_t n;
    if (!names)
        return ig_error_set(err, ENOMEM, "out of memory");
    int q =
        functions_store_delete(r->store, names, op->n_names,
                               op->service_name[0] ? op->service_name : NULL, &digests, &n, err);
    if (q < 0)
        return q;
    op_take_digests(op, digests, n);
    return 0;
}

static int load_service(void *userdata, const struct functions_store_service *row,
                        struct ig_error *err)
{
    struct registry *r = userdata;
    char *spec = strdup(row->spec);
    if (!spec || service_put(r, row->name, spec, row->created_usec, row->updated_usec) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    return 0;
}

static int load_function(void *userdata, const struct functions_store_version *row,
                         struct ig_error *err)
{
    struct registry *r = userdata;
    struct manifest *m = NULL;
    struct ig_error merr = {};
    if (!row->name || !bundle_digest_valid(row->digest) || !row->manifest ||
        manifest_parse(row->manifest, strlen(row->manifest), &m, &merr) < 0) {
        /* Only a newer ignisd's manifest (a field this build does not know) gets here. */
        log_error("function not loaded: its stored manifest is not valid here",
                  "function=%s error=\"%s\"", row->name ? row->name : "?", merr.message);
        return 0;
    }
    struct registry_function *f =
        function_new(r, row->name, row->version, row->digest, m, row->created_usec,
                     row->updated_usec, row->bundle_bytes, row->service);
    if (f && row->max_version > f->max_version)
        f->max_version = row->max_version;
    struct registry_function *entry;
    if (!f || table_put(r, f, &entry) < 0) {
        if (f)
            registry_function_free(f);
        else
            manifest_free(m);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

/* A kept version other than the current one (load_function made that) joins its function. */
static int load_version(void *userdata, const struct functions_store_version *row,
                        struct ig_error *err)
{
    struct registry *r = userdata;
    struct registry_function *f = row->name ? find_fn(r, row->name) : NULL;
    struct manifest *m = NULL;
    struct ig_error merr = {};
    if (!f || row->version == f->version)
        return 0;
    if (!bundle_digest_valid(row->digest) || !row->manifest ||
        manifest_parse(row->manifest, strlen(row->manifest), &m, &merr) < 0) {
        log_error("version not loaded: its stored manifest is not valid here",
                  "function=%s version=%u error=\"%s\"", row->name, row->version, merr.message);
        return 0;
    }
    struct registry_version *v = version_new(row->version, row->digest, m, r->bundles_dir,
                                             row->created_usec, row->bundle_bytes);
    if (!v || versions_insert(f, v) < 0) {
        free(v);
        manifest_free(m);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

/* One version an alias points at joins it (rows come by function, alias and version). */
static int load_alias(void *userdata, const struct functions_store_alias *row, struct ig_error *err)
{
    struct registry *r = userdata;
    struct registry_function *f = row->function ? find_fn(r, row->function) : NULL;
    if (!f || !row->alias || !registry_version(f, row->version) || row->weight < 1 ||
        row->weight > ALIAS_TOTAL_WEIGHT) {
        log_error("alias entry not loaded", "function=%s alias=%s version=%u",
                  row->function ? row->function : "?", row->alias ? row->alias : "?", row->version);
        return 0;
    }
    struct registry_alias *a = alias_get(f, row->alias);
    if (!a)
        return ig_error_set(err, ENOMEM, "out of memory");
    if (a->n < ALIAS_MAX_VERSIONS) {
        a->versions[a->n] = row->version;
        a->weights[a->n] = row->weight;
        a->n++;
    }
    return 0;
}

/* An alias whose loaded versions do not weigh 100 in all (one of its versions dropped out
 * because its stored manifest does not load here, or the store held more than an alias does)
 * would route off-weight: it points at its remaining primary alone instead. In memory only: the
 * build that wrote that version finds the alias as it was, and the next change of the alias
 * rewrites its rows anyway. The default's primary is the current version, whose manifest did
 * load, so the current version stays. */
static void repair_alias(const struct registry_function *f, struct registry_alias *a)
{
    static const uint32_t all = ALIAS_TOTAL_WEIGHT;
    struct ig_error e = {};
    if (alias_check_weights(a->versions, a->weights, a->n, &e) == 0)
        return;
    uint32_t primary = alias_primary(a);
    log_error("alias repaired: it points at its primary version alone",
              "function=%s alias=%s "
              "version=%u error=\"%s\"",
              f->name, a->name, primary, e.message);
    alias_assign(a, &primary, &all, 1);
}

/* Every function has its default alias: one that has none (a row lost) points at its current
 * version, as functions.current_version says; and every alias weighs 100 in all. */
static void check_aliases(struct registry *r)
{
    for (size_t i = 0; i < r->n_fns; i++) {
        struct registry_function *f = r->fns[i];
        const struct registry_alias *d = alias_find(f, REGISTRY_DEFAULT_ALIAS);
        if (!d || d->n == 0)
            point_default(f, f->version);
        for (size_t j = 0; j < f->n_aliases; j++)
            repair_alias(f, f->aliases[j]);
    }
}

/* Removes bundles that no version references: left by a crash between storing a bundle and
 * recording its version, or between deleting a function and removing its bundles. */
static void collect_garbage(struct registry *r)
{
    DIR *d = opendir(r->bundles_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!bundle_digest_valid(de->d_name) ||
            functions_store_digest_referenced(r->store, de->d_name))
            continue;
        log_info("removing an unreferenced bundle", "digest=%s", de->d_name);
        bundle_remove(r->bundles_dir, de->d_name);
    }
    if (d)
        closedir(d);
}

/* Loads function name's rows (NULL: every function's) and every service from the store. */
static int load_rows(struct registry *r, const char *name, struct ig_error *err)
{
    int q = functions_store_load_functions(r->store, name, load_function, r, err);
    if (q == 0)
        q = functions_store_load_versions(r->store, name, load_version, r, err);
    if (q == 0)
        q = functions_store_load_aliases(r->store, name, load_alias, r, err);
    if (q == 0)
        q = functions_store_load_services(r->store, load_service, r, err);
    if (q == 0)
        check_aliases(r);
    return q;
}

/* The digests named by versions (collect_digests' list). */
struct digest_list {
    char (*v)[BUNDLE_DIGEST_LEN + 1];
    size_t n, cap;
};

static int collect_digest(void *userdata, const struct functions_store_version *row,
                          struct ig_error *err)
{
    struct digest_list *l = userdata;
    if (bundle_digest_valid(row->digest) && digests_add(&l->v, &l->n, &l->cap, row->digest) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    return 0;
}

/* A bundle kept unpacked that the store does not hold: a state dir from before the store held
 * bundles kept the tree only, not the pushed bytes. The tree is packed anew and stored, and its
 * versions and cached tree take the new bytes' digest, so that other hosts (and this one, should
 * its cache go) unpack what this host checked when it was pushed. */
static void store_unstored(struct registry *r, const char *digest)
{
    char dir[4200], to[4200], got[BUNDLE_DIGEST_LEN + 1];
    _cleanup_free_ char *data = NULL;
    size_t len;
    struct ig_error e = {};
    bundle_path(r->bundles_dir, digest, dir, sizeof(dir));
    if (bundle_pack_dir(dir, REGISTRY_MAX_BUNDLE, &data, &len, &e) < 0)
        goto fail;
    bundle_digest(data, len, got);
    if (bundles_store_put(r->store, got, data, len, &e) < 0)
        goto fail;
    if (!streq(got, digest)) {
        if (functions_store_rename_digest(r->store, digest, got, &e) < 0)
            goto fail;
        /* Left where it was, the tree is removed as unreferenced and unpacked again from the
         * store: slower, not wrong. */
        bundle_path(r->bundles_dir, got, to, sizeof(to));
        if (!bundle_exists(r->bundles_dir, got) && rename(dir, to) < 0)
            log_warn("renaming a stored bundle's tree failed", "from=%s to=%s error=\"%s\"", digest,
                     got, strerror(errno));
    }
    log_info("bundle stored in the database", "digest=%s was=%s bytes=%zu", got, digest, len);
    return;
fail:
    log_error("bundle not stored in the database: only this host can run its versions",
              "digest=%s error=\"%s\"", digest, e.message);
}

/* Stores the bundles kept unpacked here that the store does not hold (store_unstored), before
 * the functions load. */
static int store_all_unstored(struct registry *r, struct ig_error *err)
{
    struct digest_list l = {};
    int q = functions_store_load_versions(r->store, NULL, collect_digest, &l, err);
    for (size_t i = 0; q == 0 && i < l.n; i++)
        if (bundle_exists(r->bundles_dir, l.v[i]) && !bundles_store_has(r->store, l.v[i]))
            store_unstored(r, l.v[i]);
    free(l.v);
    return q;
}

static void fetch_missing(struct registry *r);

int registry_new(struct loop *loop, struct store *store, const char *state_dir,
                 struct registry **ret, struct ig_error *err)
{
    struct registry *r = calloc(1, sizeof(*r));
    int q;

    if (!r)
        return ig_error_set(err, ENOMEM, "out of memory");
    r->loop = loop;
    r->store = store;
    r->keep_versions = 10;
    snprintf(r->bundles_dir, sizeof(r->bundles_dir), "%s/bundles", state_dir);
    q = mkdir_p(r->bundles_dir, 0700);
    if (q < 0) {
        free(r);
        return ig_error_set(err, q, "creating %s: %s", state_dir, strerror(-q));
    }
    bundle_clean_tmp(r->bundles_dir);
    q = store_all_unstored(r, err);
    if (q == 0)
        q = load_rows(r, NULL, err);
    if (q < 0) {
        registry_free(r);
        return q;
    }
    collect_garbage(r);
    fetch_missing(r);
    log_info("registry loaded", "functions=%zu", r->n_fns);
    *ret = r;
    return 0;
}

void registry_free(struct registry *r)
{
    if (!r)
        return;
    for (struct op *op = r->queue_head; op; op = op->next)
        if (op->running) {
            pthread_join(op->thread, NULL);
            op->running = false;
        }
    /* Callers still waiting are not called back: they are told by their own means (the HTTP
     * server answers 503) and know not to detach from ops freed here. */
    struct op *lists[] = {r->queue_head, r->draining};
    for (size_t l = 0; l < ARRAY_SIZE(lists); l++)
        for (struct op *op = lists[l], *next; op; op = next) {
            next = op->next;
            op_free(op);
        }
    for (size_t i = 0; i < r->n_fns; i++)
        registry_function_free(r->fns[i]);
    free(r->fns);
    for (size_t i = 0; i < r->n_services; i++)
        free(r->services[i].spec);
    free(r->services);
    free(r);
}

void registry_set_keep_versions(struct registry *r, uint32_t n)
{
    r->keep_versions = n ? n : 1;
}

void registry_set_hooks(struct registry *r, const struct registry_hooks *hooks)
{
    r->hooks = *hooks;
    if (r->hooks.updated)
        for (size_t i = 0; i < r->n_fns; i++)
            r->hooks.updated(r->hooks.userdata, r->fns[i]);
}

void registry_set_images_dir(struct registry *r, const char *images_dir)
{
    snprintf(r->images_dir, sizeof(r->images_dir), "%s", images_dir);
}

/* ---- lookups ---- */

int registry_check_name(const char *kind, const char *name, struct ig_error *err)
{
    if (manifest_name_valid(name))
        return 0;
    return ig_error_set_reason(err, EINVAL, "invalid_name",
                               "name: \"%.80s\" is not a %s name ([a-z][a-z0-9-]{0,62})", name,
                               kind);
}

const struct registry_function *registry_find(const struct registry *r, const char *name,
                                              struct ig_error *err)
{
    if (registry_check_name("function", name, err) < 0)
        return NULL;
    const struct registry_function *f = registry_lookup(r, name);
    if (!f)
        ig_error_set_reason(err, ENOENT, "not_found", "no function named %s", name);
    return f;
}

/* f's kept version numbered version, one being removed too; NULL when there is none. */
static struct registry_version *version_find(const struct registry_function *f, uint32_t version)
{
    for (size_t i = 0; i < f->n_versions; i++)
        if (f->versions[i]->version == version)
            return f->versions[i];
    return NULL;
}

const struct registry_version *registry_version(const struct registry_function *f, uint32_t version)
{
    const struct registry_version *v = version_find(f, version);
    return v && !v->removing ? v : NULL;
}

bool registry_parse_version(const char *s, uint32_t *ret)
{
    if (s[0] < '1' || s[0] > '9' || strlen(s) > 9)
        return false;
    uint32_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint32_t)(*s - '0');
    }
    *ret = v;
    return true;
}

/* -EAGAIN with err when v's bundle is not in this host's cache (registry_route), else 0. */
static int bundle_unavailable(const struct registry_function *f, const struct registry_version *v,
                              struct ig_error *err)
{
    if (v->fetching)
        return ig_error_set_reason(err, EAGAIN, "bundle_unavailable",
                                   "function %s version %u: its bundle is being fetched from the "
                                   "store; try again shortly",
                                   f->name, v->version);
    if (v->bundle_error[0])
        return ig_error_set_reason(err, EAGAIN, "bundle_unavailable", "function %s version %u: %s",
                                   f->name, v->version, v->bundle_error);
    return 0;
}

/* registry_route, and registry_resolve without check_bundle. */
static int route(const struct registry_function *f, const char *selector, bool check_bundle,
                 const struct registry_version **ret, const char **ret_alias, struct ig_error *err)
{
    uint32_t n;
    const char *name = selector && selector[0] ? selector : REGISTRY_DEFAULT_ALIAS;
    if (registry_parse_version(name, &n)) {
        const struct registry_version *v = registry_version(f, n);
        if (!v)
            return ig_error_set_reason(err, ENOENT, "version_not_found",
                                       "function %s has no version %u (ignis show %s lists them)",
                                       f->name, n, f->name);
        if (check_bundle && bundle_unavailable(f, v, err) < 0)
            return -EAGAIN;
        *ret = v;
        *ret_alias = NULL;
        return 0;
    }
    if (!manifest_name_valid(name))
        return ig_error_set_reason(err, EINVAL, "invalid_alias",
                                   "\"%.80s\" is neither a version number nor an alias name "
                                   "([a-z][a-z0-9-]{0,62})",
                                   name);
    struct registry_alias *a = alias_find(f, name);
    if (!a)
        return ig_error_set_reason(err, ENOENT, "alias_not_found", "function %s has no alias %s",
                                   f->name, name);
    /* Alias targets are never pruned nor deleted: the version is kept. */
    const struct registry_version *v = registry_version(f, alias_pick(a));
    if (!v)
        return ig_error_set_reason(err, ENOENT, "version_not_found",
                                   "alias %s of %s points at a version no longer kept", name,
                                   f->name);
    if (check_bundle && bundle_unavailable(f, v, err) < 0)
        return -EAGAIN;
    *ret = v;
    *ret_alias = a->name;
    return 0;
}

int registry_route(const struct registry_function *f, const char *selector,
                   const struct registry_version **ret, const char **ret_alias,
                   struct ig_error *err)
{
    return route(f, selector, true, ret, ret_alias, err);
}

int registry_resolve(const struct registry_function *f, const char *selector,
                     const struct registry_version **ret, const char **ret_alias,
                     struct ig_error *err)
{
    return route(f, selector, false, ret, ret_alias, err);
}

/* Live state belongs to the dispatcher; until it fills it in, nothing is running. */
void registry_live(const struct registry *r, const struct registry_function *f, cJSON *live)
{
    if (r->hooks.describe) {
        r->hooks.describe(r->hooks.userdata, f, live);
        return;
    }
    cJSON_AddNumberToObject(live, "ready", 0);
    cJSON_AddNumberToObject(live, "busy", 0);
    cJSON_AddNumberToObject(live, "spawning", 0);
    cJSON_AddNumberToObject(live, "queue_depth", 0);
}

size_t registry_service_count(const struct registry *r)
{
    return r->n_services;
}

const struct registry_service *registry_service_at(const struct registry *r, size_t i)
{
    return i < r->n_services ? &r->services[i] : NULL;
}

const struct registry_service *registry_find_service(const struct registry *r, const char *name,
                                                     struct ig_error *err)
{
    if (registry_check_name("service", name, err) < 0)
        return NULL;
    const struct registry_service *sv = find_service((struct registry *)r, name);
    if (!sv)
        ig_error_set_reason(err, ENOENT, "not_found", "no service named %s", name);
    return sv;
}

/* ---- the op queue ---- */

static void op_start(struct op *op);

/* Reports and frees the running op, then starts the next. */
static void op_finish(struct op *op)
{
    struct registry *r = op->reg;

    if (op->done) {
        registry_done_fn done = TAKE_PTR(op->done);
        done(op->userdata, op->failed ? &op->err : NULL, op->failed ? NULL : &op->result);
    }
    r->queue_head = op->next;
    if (!r->queue_head)
        r->queue_tail = NULL;
    r->active = false;
    op_free(op);
    if (r->queue_head)
        op_start(r->queue_head);
}

static struct op *op_new(struct registry *r, enum op_kind kind, const char *name,
                         registry_done_fn done, void *userdata)
{
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->reg = r;
    op->kind = kind;
    op->done = done;
    op->userdata = userdata;
    snprintf(op->name, sizeof(op->name), "%s", name);
    return op;
}

static void op_enqueue(struct op *op)
{
    struct registry *r = op->reg;
    op->next = NULL;
    if (r->queue_tail)
        r->queue_tail->next = op;
    else
        r->queue_head = op;
    r->queue_tail = op;
    if (!r->active)
        op_start(op);
}

/* Fails the op with e's message, as code and reason (registry.h lists them). The daemon's own
 * failures go through op_fail_own. */
static void op_fail(struct op *op, int code, const char *reason, const struct ig_error *e)
{
    if (e != &op->err)
        op->err = *e;
    op->err.code = code;
    op->err.reason = reason;
    op->failed = true;
}

/* The daemon's own failure: a full disk or quota, and a store whose server is away, keep their
 * errno (api/ answers 507 insufficient_storage and 503 store_unavailable, which a client can
 * wait out); anything else is EIO (500 internal). */
static void op_fail_own(struct op *op, const struct ig_error *e)
{
    bool kept = e->code == ENOSPC || e->code == EDQUOT || e->code == ENOTCONN;
    op_fail(op, kept ? e->code : EIO, NULL, e);
}

/* A bundle that could not be read or stored: the client's fault when its content is bad. */
static void op_fail_bundle(struct op *op, int q, const struct ig_error *e)
{
    if (bundle_error_is_content(q))
        op_fail(op, EINVAL, "invalid_bundle", e);
    else
        op_fail_own(op, e);
}

static void op_fail_oom(struct op *op)
{
    ig_error_set(&op->err, ENOMEM, "out of memory");
    op_fail(op, ENOMEM, "internal", &op->err);
}

/* Hands the op back to the loop; loop_post only fails without memory, so try again. */
static void post_back(struct op *op, loop_call_fn fn)
{
    while (loop_post(op->reg->loop, fn, op) < 0)
        usleep(1000);
}

static void op_thread_done(struct loop *l, void *userdata);

static void *remove_thread(void *userdata)
{
    struct op *op = userdata;
    for (size_t i = 0; i < op->n_remove; i++) {
        int q = bundle_remove(op->reg->bundles_dir, op->remove[i]);
        if (q < 0)
            log_warn("removing a bundle failed", "digest=%s error=\"%s\"", op->remove[i],
                     strerror(-q));
    }
    op->n_remove = 0;
    post_back(op, op_thread_done);
    return NULL;
}

static int op_run_thread(struct op *op, void *(*fn)(void *))
{
    int q = pthread_create(&op->thread, NULL, fn, op);
    if (q != 0)
        return -q;
    op->running = true;
    return 0;
}

/* Removes op->remove on the worker, then finishes; or finishes at once. */
static void op_remove_then_finish(struct op *op)
{
    op->removing = true;
    if (op->n_remove > 0 && op_run_thread(op, remove_thread) == 0)
        return;
    op_finish(op);
}

/* Finds a bundle in the store or unpacks it (*ret_dir, not yet committed), and reads its
 * function.json. On the worker thread. */
static int bundle_find_or_unpack(struct registry *r, const void *data, size_t len,
                                 const char *digest, char **ret_dir, char **ret_text,
                                 size_t *ret_len, struct ig_error *err)
{
    if (bundle_exists(r->bundles_dir, digest)) {
        /* Same bytes, same tree: validated when it was first pushed, but perhaps for another
         * function or by an older build, so the manifest is checked again. */
        char path[4200];
        bundle_path(r->bundles_dir, digest, path, sizeof(path));
        return bundle_read_manifest(path, ret_text, ret_len, err);
    }
    int q = bundle_unpack(r->bundles_dir, data, len, &bundle_default_limits, ret_dir, err);
    if (q >= 0)
        q = bundle_read_manifest(*ret_dir, ret_text, ret_len, err);
    return q;
}

/* Refuses a native module that the function's runtime image cannot load (bundle_check_abi),
 * in the unpacked dir or, when the store held the bundle, in the stored tree: the image may have
 * changed since it was first pushed. An image that records no ABI (not built, or built before
 * images recorded one) is not checked: guessing its version is what the record is there to
 * avoid. On the worker thread. */
static int check_native_modules(const struct registry *r, const struct manifest *m, const char *dir,
                                const char *digest, struct ig_error *err)
{
    char image[4200], stored[4200];
    struct bundle_abi abi;
    struct ig_error e = {};
    if (!r->images_dir[0])
        return 0;
    snprintf(image, sizeof(image), "%s/%s", r->images_dir, manifest_runtime_name(m->runtime));
    int q = bundle_abi_read(image, &abi, &e);
    if (q == -ENOENT)
        return 0;
    if (q < 0)
        return ig_error_set(err, EIO, "%s", e.message);
    if (!dir && bundle_path(r->bundles_dir, digest, stored, sizeof(stored)) == 0)
        dir = stored;
    return dir ? bundle_check_abi(dir, &abi, err) : 0;
}

/* The push's bundle work, on the worker thread: hash, find or unpack, read and validate the
 * manifest, check its name, move into the store. Nothing here touches loop state. */
static void *push_thread(void *userdata)
{
    struct op *op = userdata;
    struct registry *r = op->reg;
    _cleanup_free_ char *dir = NULL, *text = NULL;
    size_t len;
    int q;

    bundle_digest(op->body, op->body_len, op->digest);
    q = bundle_find_or_unpack(r, op->body, op->body_len, op->digest, &dir, &text, &len, &op->err);
    if (q < 0) {
        op_fail_bundle(op, q, &op->err);
        goto out;
    }
    if (manifest_parse(text, len, &op->manifest, &op->err) < 0) {
        op_fail(op, EINVAL, "invalid_manifest", &op->err);
        goto out;
    }
    if (!streq(op->manifest->name, op->name)) {
        ig_error_set(&op->err, EEXIST,
                     "name: function.json names \"%s\" but the bundle was pushed to \"%s\"",
                     op->manifest->name, op->name);
        op_fail(op, EEXIST, "name_mismatch", &op->err);
        goto out;
    }
    if ((q = check_native_modules(r, op->manifest, dir, op->digest, &op->err)) < 0) {
        op_fail_bundle(op, q, &op->err);
        goto out;
    }
    if (dir && bundle_commit(r->bundles_dir, dir, op->digest, &op->err) < 0) {
        op_fail_own(op, &op->err);
        goto out;
    }
    /* The bytes, for the other hosts, before the version that names them is recorded. */
    if (bundles_store_put(r->store, op->digest, op->body, op->body_len, &op->err) < 0)
        op_fail_own(op, &op->err);
out:
    if (dir && op->failed)
        rm_rf(dir);
    post_back(op, op_thread_done);
    return NULL;
}

/* The number a pushed version takes: past the highest the function ever had, as this host knows
 * it (cur: NULL for a function new here) and as the store last said. */
static uint32_t next_number(const struct op *op, const struct registry_function *cur)
{
    uint32_t max = cur && cur->max_version > op->stored_max ? cur->max_version : op->stored_max;
    return max + 1;
}

static int read_max_version(void *userdata, const struct functions_store_version *v,
                            struct ig_error *err)
{
    *(uint32_t *)userdata = v->max_version;
    return 0;
}

/* The store refused number n for a version of op's function (op->err): on a shared store another
 * host's push took it, before this host heard of that push (within a second). true when the
 * store says so (its highest number is n or past it): op->stored_max is set and op->err cleared,
 * for the push to try the next. false, op->err standing, for any other failure, or after a few
 * tries (pushes racing on more hosts than that). */
static bool number_taken(struct op *op, uint32_t n)
{
    uint32_t max = 0;
    struct ig_error err = {};
    if (op->err.code != EEXIST || op->renumbered >= 4 ||
        functions_store_load_functions(op->reg->store, op->name, read_max_version, &max, &err) <
            0 ||
        max < n)
        return false;
    log_info("version number taken by a push on another host: trying the next",
             "function=%s version=%u", op->name, n);
    op->stored_max = max;
    op->renumbered++;
    ig_error_clear(&op->err);
    return true;
}

/* A push with promote=false: the pushed bundle joins cur's kept versions (store, then memory)
 * as its next number; the default alias stays. Fails the op when it cannot. */
static void push_add_version(struct op *op, struct registry_function *cur, const char *text,
                             uint64_t now)
{
    struct registry *r = op->reg;
    uint32_t n = next_number(op, cur);
    const struct functions_store_version row = {
        .name = cur->name,
        .version = n,
        .digest = op->digest,
        .manifest = text,
        .created_usec = cur->created_usec,
        .updated_usec = now,
        .bundle_bytes = op->body_len,
    };
    struct registry_version *v =
        version_new(n, op->digest, op->manifest, r->bundles_dir, now, op->body_len);
    if (!v) {
        op_fail_oom(op);
        return;
    }
    if (functions_store_add_version(r->store, &row, &op->err) < 0) {
        free(v);
        if (number_taken(op, n))
            push_add_version(op, cur, text, now);
        else
            op_fail_own(op, &op->err);
        return;
    }
    op->manifest = NULL; /* now v's */
    cur->max_version = n;
    if (versions_insert(cur, v) < 0) {
        /* Recorded but not in memory: the next start-up loads it. */
        version_free(v);
        op_fail_oom(op);
        return;
    }
    op->result.version = n;
    op->result.created = true;
    log_info("function version pushed, not promoted", "function=%s version=%u digest=%s", cur->name,
             n, op->digest);
}

static void push_new_version(struct op *op, struct registry_function *cur)
{
    struct registry *r = op->reg;
    uint64_t now = wall_usec();
    cJSON *mj = manifest_to_json(op->manifest);
    _cleanup_free_ char *text = mj ? cJSON_PrintUnformatted(mj) : NULL;
    cJSON_Delete(mj);
    if (text && cur && !op->promote) {
        push_add_version(op, cur, text, now);
        return;
    }
    /* Numbers are never reused: after a rollback (or a prune) the next is past the highest. */
    struct registry_function *f =
        text ? function_new(r, op->name, next_number(op, cur), op->digest, op->manifest,
                            cur ? cur->created_usec : now, now, op->body_len, NULL)
             : NULL;
    struct registry_function *entry;
    if (!f) {
        op_fail_oom(op);
        return;
    }
    if (db_record_version(r, f, text, &op->err) < 0) {
        uint32_t n = f->version;
        f->manifest = NULL;
        registry_function_free(f);
        if (number_taken(op, n))
            push_new_version(op, cur);
        else
            op_fail_own(op, &op->err);
        return;
    }
    op->manifest = NULL; /* now f's */
    if (table_put(r, f, &entry) < 0) {
        /* Recorded but not in memory: the next start-up loads it. */
        registry_function_free(f);
        op_fail_oom(op);
        return;
    }
    point_default(entry, entry->version);
    op->result.version = entry->version;
    op->result.created = true;
    log_info("function version pushed", "function=%s version=%u digest=%s", entry->name,
             entry->version, entry->digest);
    if (r->hooks.updated)
        r->hooks.updated(r->hooks.userdata, entry);
}

static void prune_over_keep(struct op *op);

/* On the loop, after the push's bundle work: record the version. */
static void push_record(struct op *op)
{
    struct registry *r = op->reg;
    struct registry_function *cur = find_fn(r, op->name);

    if (op->failed) {
        op_finish(op);
        return;
    }
    if (cur && cur->deleting) {
        ig_error_set(&op->err, EBUSY, "function %s is being deleted", op->name);
        op_fail(op, EBUSY, "conflict", &op->err);
    } else if (cur && cur->service[0]) {
        ig_error_set(&op->err, EBUSY,
                     "function %s belongs to service %s: deploy the service (ignis deploy) to "
                     "change it",
                     op->name, cur->service);
        op_fail(op, EBUSY, "conflict", &op->err);
    } else if (cur && streq(cur->digest, op->digest)) {
        /* The same content as the current version: not a new version. */
        op->result.version = cur->version;
    } else
        push_new_version(op, cur);
    if (op->failed) {
        /* Not recorded: the bundle just stored may now be referenced by nothing. */
        if (!functions_store_digest_referenced(r->store, op->digest)) {
            bundles_store_forget(r->store, op->digest);
            op->remove = calloc(1, sizeof(*op->remove));
            if (op->remove) {
                memcpy(op->remove[0], op->digest, sizeof(op->digest));
                op->n_remove = 1;
            }
        }
        op_remove_then_finish(op);
        return;
    }
    op->result.name = op->name;
    op->result.digest = op->digest;
    if (op->result.created)
        prune_over_keep(op);
    else
        op_finish(op);
}

/* Another host deleted op's functions, and with them the store's word on which bundles they
 * alone used: the bundles of their versions here that no version in the store references. */
static void add_unreferenced_bundles(struct op *op)
{
    for (size_t i = 0; i < op->n_names; i++) {
        const struct registry_function *f = find_fn(op->reg, op->names[i]);
        for (size_t j = 0; f && j < f->n_versions; j++)
            if (!functions_store_digest_referenced(op->reg->store, f->versions[j]->digest))
                digests_add(&op->remove, &op->n_remove, &op->cap_remove, f->versions[j]->digest);
    }
}

/* On the loop, once drained: remove the functions (and the service) from the store and the
 * table, then their unreferenced bundles on the worker. */
static void delete_run(struct op *op)
{
    struct registry *r = op->reg;
    struct registry_function *f = find_fn(r, op->names[0]);
    uint32_t version = f ? f->version : 0;

    if (db_delete_functions(r, op, &op->err) < 0) {
        /* Not deleted: the functions stay, whole. The drain already took them from the
         * dispatcher, so it is told of them again (as at start-up): listed and invocable, as
         * before the delete, which the client may retry once the cause is gone. */
        log_error("deleting failed: the functions stay", "function=%s error=\"%s\"",
                  op->service_name[0] ? op->service_name : op->names[0], op->err.message);
        for (size_t i = 0; i < op->n_names; i++)
            if ((f = find_fn(r, op->names[i]))) {
                f->deleting = false;
                if (r->hooks.updated)
                    r->hooks.updated(r->hooks.userdata, f);
            }
        struct registry_service *sv = find_service(r, op->service_name);
        if (sv)
            sv->deleting = false;
        op_fail_own(op, &op->err);
        op_finish(op);
        return;
    }
    if (op->remote)
        add_unreferenced_bundles(op);
    for (size_t i = 0; i < op->n_names; i++)
        table_remove(r, op->names[i]);
    op->result.bundles_removed = op->n_remove;
    if (op->service_name[0]) {
        service_remove(r, op->service_name);
        log_info("service deleted", "service=%s functions=%zu bundles_removed=%zu",
                 op->service_name, op->n_names, op->n_remove);
        op->result.name = op->service_name;
        op->result.removed = (const char(*)[MANIFEST_NAME_MAX + 1]) op->names;
        op->result.n_removed = op->n_names;
    } else {
        log_info("function deleted", "function=%s bundles_removed=%zu", op->names[0], op->n_remove);
        op->result.name = op->names[0];
        op->result.version = version;
    }
    op_remove_then_finish(op);
}

/* ---- service deploys ---- */

/* Fails the deploy for one function, the message naming it. */
/* One function's bundle, on the worker: hash, find or unpack, read function.json, apply the
 * service's triggers. Nothing is committed yet. Returns 0 or -1 after failing the op. */
static int svc_fn_prepare(struct op *op, const struct service_function *sf,
                          const struct service_archive_entry *b, struct svc_fn *out)
{
    _cleanup_free_ char *text = NULL;
    struct ig_error e = {};
    size_t len;

    snprintf(out->name, sizeof(out->name), "%s", sf->name);
    out->bundle_len = b->len;
    bundle_digest(b->data, b->len, out->digest);
    int q =
        bundle_find_or_unpack(op->reg, b->data, b->len, out->digest, &out->dir, &text, &len, &e);
    if (q < 0) {
        ig_error_prefix(&e, "function %s", sf->name);
        op_fail_bundle(op, q, &e);
        return -1;
    }
    if (service_function_manifest(sf, text, len, &out->manifest, &e) < 0) {
        ig_error_prefix(&e, "function %s", sf->name);
        op_fail(op, EINVAL, "invalid_manifest", &e);
        return -1;
    }
    if ((q = check_native_modules(op->reg, out->manifest, out->dir, out->digest, &e)) < 0) {
        ig_error_prefix(&e, "function %s", sf->name);
        op_fail_bundle(op, q, &e);
        return -1;
    }
    return 0;
}

/* Checks the archive's service.json and that its bundles are those it lists. Returns 0 or -1
 * after failing the op. */
static int svc_check_archive(struct op *op, const struct service_archive *a)
{
    struct ig_error e = {};
    if (service_parse(a->service_json, a->service_json_len, &op->svc, &e) < 0) {
        ig_error_set(&op->err, EINVAL, "service.json: %s", e.message);
        op_fail(op, EINVAL, "invalid_service", &op->err);
        return -1;
    }
    if (!streq(op->svc->name, op->name)) {
        ig_error_set(&op->err, EEXIST,
                     "name: service.json names \"%s\" but it was deployed to \"%s\"", op->svc->name,
                     op->name);
        op_fail(op, EEXIST, "name_mismatch", &op->err);
        return -1;
    }
    for (size_t i = 0; i < a->n_bundles; i++)
        if (!service_find(op->svc, a->bundles[i].name)) {
            ig_error_set(&op->err, EINVAL, "function %s: a bundle that service.json does not list",
                         a->bundles[i].name);
            op_fail(op, EINVAL, "invalid_service", &op->err);
            return -1;
        }
    return 0;
}

/* The deploy's bundle work, on the worker thread: read the archive, check service.json, prepare
 * every function, and only when all of them are valid, commit their bundles to the store. */
static void *service_thread(void *userdata)
{
    struct op *op = userdata;
    struct registry *r = op->reg;
    struct service_archive a = {};
    struct ig_error e = {};

    if (service_archive_read(op->body, op->body_len, &a, &e) < 0) {
        if (e.code == EFBIG)
            op_fail(op, EFBIG, "payload_too_large", &e);
        else
            op_fail(op, EINVAL, "invalid_service", &e);
        goto out;
    }
    if (svc_check_archive(op, &a) < 0)
        goto out;
    op->sfns = calloc(op->svc->n_fns, sizeof(*op->sfns));
    if (!op->sfns) {
        op_fail_oom(op);
        goto out;
    }
    for (size_t i = 0; i < op->svc->n_fns; i++) {
        const struct service_function *sf = &op->svc->fns[i];
        const struct service_archive_entry *b = service_archive_find(&a, sf->name);
        if (!b) {
            ig_error_set(&op->err, EINVAL, "function %s: its bundle is missing from the archive",
                         sf->name);
            op_fail(op, EINVAL, "invalid_service", &op->err);
            goto out;
        }
        op->n_sfns++;
        if (svc_fn_prepare(op, sf, b, &op->sfns[i]) < 0)
            goto out;
    }
    /* Everything is valid: into the store. A commit that fails leaves the ones before it
     * referenced by nothing; the loop removes them. */
    for (size_t i = 0; i < op->n_sfns; i++) {
        struct svc_fn *f = &op->sfns[i];
        const struct service_archive_entry *b = service_archive_find(&a, f->name);
        if ((f->dir && bundle_commit(r->bundles_dir, f->dir, f->digest, &e) < 0) ||
            bundles_store_put(r->store, f->digest, b->data, b->len, &e) < 0) {
            ig_error_prefix(&e, "function %s", f->name);
            op_fail_own(op, &e);
            goto out;
        }
        free(TAKE_PTR(f->dir));
    }
out:
    service_archive_clear(&a);
    post_back(op, op_thread_done);
    return NULL;
}

/* The deploy's store work, one transaction: the service's row, a version for each function
 * whose bundle or manifest changed (fs[i] not NULL), and the removal of the functions it no
 * longer lists (op->names). */
static int db_record_service(struct registry *r, struct op *op, const char *spec,
                             struct registry_function **fs, uint64_t created, uint64_t now,
                             struct ig_error *err)
{
    _cleanup_free_ struct functions_store_version *rows = calloc(op->n_sfns + 1, sizeof(*rows));
    _cleanup_free_ char **texts = calloc(op->n_sfns + 1, sizeof(*texts));
    _cleanup_free_ const char **names = op_name_list(op);
    size_t n_rows = 0;
    int q = rows && texts && names ? 0 : -ENOMEM;
    for (size_t i = 0; q == 0 && i < op->n_sfns; i++) {
        if (!fs[i])
            continue;
        cJSON *mj = manifest_to_json(fs[i]->manifest);
        texts[n_rows] = mj ? cJSON_PrintUnformatted(mj) : NULL;
        cJSON_Delete(mj);
        if (!texts[n_rows]) {
            q = -ENOMEM;
            break;
        }
        rows[n_rows] = version_row(fs[i], texts[n_rows]);
        n_rows++;
    }
    char **digests;
    size_t n;
    if (q == 0) {
        const struct functions_store_service sv = {
            .name = op->name, .spec = spec, .created_usec = created, .updated_usec = now};
        q = functions_store_record_service(r->store, &sv, rows, n_rows, names, op->n_names,
                                           &digests, &n, err);
    } else
        q = ig_error_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; texts && i < n_rows; i++)
        free(texts[i]);
    if (q < 0)
        return q;
    op_take_digests(op, digests, n);
    return 0;
}

/* Whether the function as deployed now differs from its current version. */
static bool svc_fn_changed(const struct registry_function *cur, const struct svc_fn *f)
{
    if (!cur || !streq(cur->digest, f->digest))
        return true;
    cJSON *a = manifest_to_json(cur->manifest), *b = manifest_to_json(f->manifest);
    bool same = a && b && cJSON_Compare(a, b, true);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return !same;
}

/* Checks that every function listed may be deployed with this service: a conflict for one that
 * belongs to another service or exists on its own (EEXIST), or is being deleted (EBUSY). */
static bool svc_check_conflicts(struct registry *r, struct op *op)
{
    struct registry_service *sv = find_service(r, op->name);
    if (sv && sv->deleting) {
        ig_error_set(&op->err, EBUSY, "service %s is being deleted", op->name);
        op_fail(op, EBUSY, "conflict", &op->err);
        return false;
    }
    for (size_t i = 0; i < op->n_sfns; i++) {
        const struct registry_function *cur = registry_lookup(r, op->sfns[i].name);
        if (!cur)
            continue;
        if (cur->deleting)
            ig_error_set(&op->err, EBUSY, "function %s is being deleted", cur->name);
        else if (!cur->service[0])
            ig_error_set(&op->err, EEXIST,
                         "function %s exists outside any service: remove it (ignis rm %s) or "
                         "rename it in service.json",
                         cur->name, cur->name);
        else if (!streq(cur->service, op->name))
            ig_error_set(&op->err, EEXIST, "function %s belongs to service %s", cur->name,
                         cur->service);
        else
            continue;
        op_fail(op, op->err.code, "conflict", &op->err);
        return false;
    }
    return true;
}

/* Lists, in op->names, the service's functions that the new service.json no longer names. */
static int svc_collect_pruned(struct registry *r, struct op *op)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_fns; i++)
        if (streq(r->fns[i]->service, op->name) && !service_find(op->svc, r->fns[i]->name) &&
            !r->fns[i]->deleting)
            n++;
    if (n == 0)
        return 0;
    op->names = calloc(n, sizeof(*op->names));
    if (!op->names)
        return -ENOMEM;
    for (size_t i = 0; i < r->n_fns; i++)
        if (streq(r->fns[i]->service, op->name) && !service_find(op->svc, r->fns[i]->name) &&
            !r->fns[i]->deleting)
            snprintf(op->names[op->n_names++], MANIFEST_NAME_MAX + 1, "%s", r->fns[i]->name);
    return 0;
}

/* Marks op's names deleting and has dispatch drain each; done(op) runs once all have, and once
 * more for op itself (drains_pending counts both), so it runs last after the loop. */
static void drain_names(struct op *op, void (*done)(void *))
{
    struct registry *r = op->reg;
    op->drains_pending = 1 + op->n_names;
    for (size_t i = 0; i < op->n_names; i++) {
        struct registry_function *f = find_fn(r, op->names[i]);
        f->deleting = true;
        if (r->hooks.drain)
            r->hooks.drain(r->hooks.userdata, f, done, op);
        else
            done(op);
    }
    done(op);
}

/* Every pruned function has drained: out of the table, then their bundles. */
static void svc_pruned_drained(void *ctx)
{
    struct op *op = ctx;
    if (--op->drains_pending > 0)
        return;
    for (size_t i = 0; i < op->n_names; i++)
        table_remove(op->reg, op->names[i]);
    op_remove_then_finish(op);
}

/* The deploy's new versions, made but not yet in the table: fs[i] NULL for a function that did
 * not change. Returns 0, or -1 after failing the op. */
static int svc_make_versions(struct op *op, struct registry_function **fs, uint64_t now)
{
    for (size_t i = 0; i < op->n_sfns; i++) {
        struct svc_fn *f = &op->sfns[i];
        const struct registry_function *cur = registry_lookup(op->reg, f->name);
        if (!svc_fn_changed(cur, f))
            continue;
        fs[i] =
            function_new(op->reg, f->name, cur ? cur->max_version + 1 : 1, f->digest, f->manifest,
                         cur ? cur->created_usec : now, now, f->bundle_len, op->name);
        if (!fs[i]) {
            op_fail_oom(op);
            return -1;
        }
        f->manifest = NULL; /* fs[i]'s now */
    }
    return 0;
}

/* Prunes name's versions after the running op (a deploy: its functions are pruned one by one,
 * each as a push prunes). Without memory they stay until the next new version. */
static void enqueue_prune(struct registry *r, const char *name)
{
    struct op *op = op_new(r, OP_PRUNE, name, NULL, NULL);
    if (op)
        op_enqueue(op);
}

/* The deploy is recorded: its versions go into the table (fs[i] taken), and op->result says
 * what each function is now. What cannot be put in memory is loaded at the next start. */
static void svc_apply(struct op *op, struct registry_function **fs)
{
    struct registry *r = op->reg;
    for (size_t i = 0; i < op->n_sfns; i++) {
        struct registry_function *entry = NULL;
        bool created = fs[i] != NULL;
        if (fs[i] && table_put(r, TAKE_PTR(fs[i]), &entry) < 0)
            log_error("function recorded but not kept in memory", "function=%s", op->sfns[i].name);
        if (entry)
            point_default(entry, entry->version);
        if (entry && r->hooks.updated)
            r->hooks.updated(r->hooks.userdata, entry);
        if (entry && entry->n_versions > r->keep_versions)
            enqueue_prune(r, entry->name);
        const struct registry_function *f = registry_lookup(r, op->sfns[i].name);
        op->deployed[i] = (struct registry_deployed){
            .name = op->sfns[i].name,
            .version = f ? f->version : 0,
            .digest = op->sfns[i].digest,
            .created = created,
        };
    }
    op->result.name = op->name;
    op->result.deployed = op->deployed;
    op->result.n_deployed = op->n_sfns;
    op->result.removed = (const char(*)[MANIFEST_NAME_MAX + 1]) op->names;
    op->result.n_removed = op->n_names;
    log_info("service deployed", "service=%s functions=%zu removed=%zu", op->name, op->n_sfns,
             op->n_names);
}

/* The deploy failed: the versions made go (their manifests back to the op), and so do bundles
 * this deploy stored that nothing references. */
static void svc_abandon(struct op *op, struct registry_function **fs)
{
    struct registry *r = op->reg;
    for (size_t i = 0; fs && i < op->n_sfns; i++) {
        if (fs[i]) {
            op->sfns[i].manifest = fs[i]->manifest;
            fs[i]->manifest = NULL;
        }
        registry_function_free(fs[i]);
    }
    op->n_remove = 0;
    for (size_t i = 0; i < op->n_sfns; i++) {
        if (op->sfns[i].dir || functions_store_digest_referenced(r->store, op->sfns[i].digest))
            continue;
        bundles_store_forget(r->store, op->sfns[i].digest);
        if (bundle_exists(r->bundles_dir, op->sfns[i].digest))
            digests_add(&op->remove, &op->n_remove, &op->cap_remove, op->sfns[i].digest);
    }
    op_remove_then_finish(op);
}

/* On the loop, after the deploy's bundle work: record it in one transaction, then drain the
 * functions it no longer lists like a delete. */
static void service_record(struct op *op)
{
    struct registry *r = op->reg;
    uint64_t now = wall_usec();
    _cleanup_free_ struct registry_function **fs = NULL;
    _cleanup_free_ char *spec = NULL;

    if (op->failed || !svc_check_conflicts(r, op)) {
        svc_abandon(op, NULL);
        return;
    }
    cJSON *spec_json = service_to_json(op->svc);
    spec = spec_json ? cJSON_PrintUnformatted(spec_json) : NULL;
    cJSON_Delete(spec_json);
    fs = calloc(op->n_sfns + 1, sizeof(*fs));
    op->deployed = calloc(op->n_sfns + 1, sizeof(*op->deployed));
    if (!spec || !fs || !op->deployed || svc_collect_pruned(r, op) < 0) {
        op_fail_oom(op);
        svc_abandon(op, fs);
        return;
    }
    if (svc_make_versions(op, fs, now) < 0) {
        svc_abandon(op, fs);
        return;
    }
    const struct registry_service *sv = find_service(r, op->name);
    uint64_t created = sv ? sv->created_usec : now;
    if (db_record_service(r, op, spec, fs, created, now, &op->err) < 0) {
        op_fail_own(op, &op->err);
        svc_abandon(op, fs);
        return;
    }
    if (service_put(r, op->name, TAKE_PTR(spec), created, now) < 0)
        log_error("service recorded but not kept in memory", "service=%s", op->name);
    svc_apply(op, fs);
    drain_names(op, svc_pruned_drained);
}

/* ---- versions and aliases ---- */

/* Every version of op->prune has drained: out of the store, then of memory, then their
 * bundles nothing references any more. A prune that cannot be recorded leaves the versions
 * (the next push prunes them); a version's delete fails. */
static void prune_drained(void *ctx)
{
    struct op *op = ctx;
    struct registry *r = op->reg;
    struct ig_error e = {};
    char **digests;
    size_t n;
    if (--op->drains_pending > 0)
        return;
    struct registry_function *f = find_fn(r, op->name);
    if (functions_store_delete_versions(r->store, op->name, op->prune, op->n_prune, &digests, &n,
                                        &e) < 0) {
        log_error("removing versions failed: they stay", "function=%s error=\"%s\"", op->name,
                  e.message);
        if (op->kind == OP_VERSION_DELETE)
            op_fail_own(op, &e);
        for (size_t i = 0; f && i < op->n_prune; i++)
            version_find(f, op->prune[i])->removing = false;
        op->n_prune = 0;
        op_finish(op);
        return;
    }
    for (size_t i = 0; f && i < op->n_prune; i++)
        versions_remove(f, op->prune[i]);
    op_take_digests(op, digests, n);
    op->result.pruned = op->prune;
    op->result.n_pruned = op->n_prune;
    op->result.bundles_removed = op->n_remove;
    log_info("function versions removed", "function=%s versions=%zu bundles_removed=%zu", op->name,
             op->n_prune, op->n_remove);
    op_remove_then_finish(op);
}

/* Has the dispatcher drain each version of op->prune (drain_version), then removes them. As
 * drain_names, drains_pending counts op itself too, so the removal runs once, last. */
static void prune_start(struct op *op)
{
    struct registry *r = op->reg;
    const struct registry_function *f = find_fn(r, op->name);
    op->drains_pending = 1 + op->n_prune;
    /* From now on no route reaches them, so a drained version stays drained. */
    for (size_t i = 0; i < op->n_prune; i++)
        version_find(f, op->prune[i])->removing = true;
    for (size_t i = 0; i < op->n_prune; i++) {
        const struct registry_version *v = version_find(f, op->prune[i]);
        if (r->hooks.drain_version)
            r->hooks.drain_version(r->hooks.userdata, f, v, prune_drained, op);
        else
            prune_drained(op);
    }
    prune_drained(op);
}

/* After a new version of op->name: the oldest beyond the newest keep_versions go, except the
 * current one and alias targets (which do not make room for others: they are simply kept
 * besides). */
static void prune_over_keep(struct op *op)
{
    struct registry *r = op->reg;
    const struct registry_function *f = find_fn(r, op->name);
    if (!f || f->n_versions <= r->keep_versions) {
        op_finish(op);
        return;
    }
    size_t over = f->n_versions - r->keep_versions;
    if (!(op->prune = calloc(over, sizeof(*op->prune)))) {
        log_error("pruning skipped: out of memory", "function=%s", f->name);
        op_finish(op);
        return;
    }
    for (size_t i = 0; i < over; i++) {
        uint32_t v = f->versions[i]->version;
        if (v != f->version && !alias_pointing_at(f, v))
            op->prune[op->n_prune++] = v;
    }
    if (op->n_prune == 0) {
        op_finish(op);
        return;
    }
    prune_start(op);
}

/* The newest kept version of f older than its current one, or 0. */
static uint32_t version_before_current(const struct registry_function *f)
{
    uint32_t best = 0;
    for (size_t i = 0; i < f->n_versions; i++)
        if (f->versions[i]->version < f->version)
            best = f->versions[i]->version;
    return best;
}

/* Fails op unless its function exists and is not being deleted; returns it. */
static struct registry_function *op_function(struct op *op)
{
    struct registry_function *f = find_fn(op->reg, op->name);
    if (!f)
        ig_error_set_reason(&op->err, ENOENT, "not_found", "no function named %s", op->name);
    else if (f->deleting)
        ig_error_set_reason(&op->err, EBUSY, "conflict", "function %s is being deleted", op->name);
    else
        return f;
    op->failed = true;
    return NULL;
}

/* A rollback's routes: to (or the version before the current one) alone, on the default. */
static int rollback_routes(struct op *op, const struct registry_function *f)
{
    uint32_t to = op->target ? op->target : version_before_current(f);
    if (!to)
        return ig_error_set_reason(&op->err, ENOENT, "version_not_found",
                                   "function %s keeps no version older than %u to roll back to",
                                   f->name, f->version);
    snprintf(op->alias, sizeof(op->alias), "%s", REGISTRY_DEFAULT_ALIAS);
    op->versions[0] = to;
    op->weights[0] = ALIAS_TOTAL_WEIGHT;
    op->n_routes = 1;
    return 0;
}

/* Points the alias at op's routes, in the store then in memory; the default's primary becomes
 * current. Returns 0, or -errno with op->err. */
static int alias_apply(struct op *op, struct registry_function *f)
{
    struct registry *r = op->reg;
    for (size_t i = 0; i < op->n_routes; i++)
        if (!registry_version(f, op->versions[i]))
            return ig_error_set_reason(&op->err, ENOENT, "version_not_found",
                                       "function %s has no version %u (ignis versions %s lists "
                                       "them)",
                                       f->name, op->versions[i], f->name);
    /* Each routed invocation looks its alias up, and each alias is a row: bounded, as a
     * function's secrets are. */
    if (!alias_find(f, op->alias) && f->n_aliases >= REGISTRY_ALIASES_MAX)
        return ig_error_set_reason(&op->err, EBUSY, "too_many_aliases",
                                   "function %s has %d aliases already: remove one first", f->name,
                                   REGISTRY_ALIASES_MAX);
    struct registry_alias next = {};
    alias_assign(&next, op->versions, op->weights, op->n_routes);
    bool is_default = streq(op->alias, REGISTRY_DEFAULT_ALIAS);
    uint32_t current = is_default ? alias_primary(&next) : 0;
    int q = functions_store_set_alias(r->store, f->name, op->alias, op->versions, op->weights,
                                      op->n_routes, current, &op->err);
    if (q < 0) {
        op_fail_own(op, &op->err);
        return q;
    }
    struct registry_alias *a = alias_get(f, op->alias);
    if (!a)
        return ig_error_set_reason(&op->err, ENOMEM, "internal", "out of memory");
    alias_assign(a, op->versions, op->weights, op->n_routes);
    op->result.alias = a;
    log_info("alias set", "function=%s alias=%s versions=%zu primary=%u", f->name, a->name, a->n,
             alias_primary(a));
    if (is_default && current != f->version)
        make_current(r, f, registry_version(f, current));
    return 0;
}

static int alias_delete(struct op *op, struct registry_function *f)
{
    if (!alias_find(f, op->alias))
        return ig_error_set_reason(&op->err, ENOENT, "alias_not_found",
                                   "function %s has no alias %s", f->name, op->alias);
    if (functions_store_delete_alias(op->reg->store, f->name, op->alias, &op->err) < 0) {
        op_fail_own(op, &op->err);
        return -EIO;
    }
    alias_remove(f, op->alias);
    log_info("alias deleted", "function=%s alias=%s", f->name, op->alias);
    return 0;
}

/* On the loop, when the op's turn comes: set, remove or roll back an alias. */
static void alias_run(struct op *op)
{
    struct registry_function *f = op_function(op);
    int q = f ? 0 : -1;
    if (q == 0 && op->rollback)
        q = rollback_routes(op, f);
    if (q == 0)
        q = op->alias_delete ? alias_delete(op, f) : alias_apply(op, f);
    if (q < 0)
        op->failed = true;
    else {
        op->result.name = f->name;
        op->result.version = f->version;
    }
    op_finish(op);
}

/* Whether version may be deleted from f: kept, not current, no alias's target. 0, or -errno
 * with err. */
static int version_deletable(const struct registry_function *f, uint32_t version,
                             struct ig_error *err)
{
    const struct registry_alias *a = alias_pointing_at(f, version);
    if (!registry_version(f, version))
        return ig_error_set_reason(err, ENOENT, "version_not_found",
                                   "function %s has no version %u", f->name, version);
    if (version == f->version)
        return ig_error_set_reason(err, EBUSY, "conflict",
                                   "version %u is the current version of %s: roll back or push "
                                   "first",
                                   version, f->name);
    if (a)
        return ig_error_set_reason(err, EBUSY, "conflict",
                                   "alias %s of %s points at version %u: move the alias first",
                                   a->name, f->name, version);
    return 0;
}

/* On the loop, when the op's turn comes: delete one version, unless something routes to it. */
static void version_delete_run(struct op *op)
{
    struct registry_function *f = op_function(op);
    if (f && version_deletable(f, op->target, &op->err) == 0) {
        if ((op->prune = calloc(1, sizeof(*op->prune)))) {
            op->prune[op->n_prune++] = op->target;
            op->result.name = f->name;
            op->result.version = op->target;
            prune_start(op);
            return;
        }
        ig_error_set_reason(&op->err, ENOMEM, "internal", "out of memory");
    }
    op->failed = true;
    op_finish(op);
}

/* ---- changes made by other hosts ---- */

static void start_drains(struct op *op);

/* Another host deleted function name: drained and removed here as a local delete is, with no
 * one waiting (its store rows are gone already). */
static void sync_deleted(struct registry *r, const char *name)
{
    struct op *op = op_new(r, OP_DELETE, name, NULL, NULL);
    if (op && !(op->names = calloc(1, sizeof(*op->names))))
        op_free(TAKE_PTR(op));
    if (!op) {
        log_error("function deleted elsewhere kept: out of memory", "function=%s", name);
        return;
    }
    snprintf(op->names[0], sizeof(op->names[0]), "%s", name);
    op->n_names = 1;
    op->remote = true;
    log_info("function deleted on another host: draining", "function=%s", name);
    start_drains(op);
}

static bool alias_same(const struct registry_alias *a, const struct registry_alias *b)
{
    return a->n == b->n && !memcmp(a->versions, b->versions, a->n * sizeof(*a->versions)) &&
           !memcmp(a->weights, b->weights, a->n * sizeof(*a->weights));
}

/* f's aliases become sf's (the round-robin of an unchanged one goes on). */
static void sync_aliases(struct registry_function *f, const struct registry_function *sf)
{
    for (size_t i = f->n_aliases; i-- > 0;)
        if (!alias_find(sf, f->aliases[i]->name))
            alias_remove(f, f->aliases[i]->name);
    for (size_t i = 0; i < sf->n_aliases; i++) {
        const struct registry_alias *sa = sf->aliases[i];
        struct registry_alias *a = alias_get(f, sa->name);
        if (!a)
            log_error("alias not kept in memory", "function=%s alias=%s", f->name, sa->name);
        else if (!alias_same(a, sa))
            alias_assign(a, sa->versions, sa->weights, sa->n);
    }
}

/* An op forgetting f's versions that the store no longer has (forget_run drains them in its
 * turn, once nothing routes to them), or NULL when there are none (or without memory: they stay
 * until the next re-read). */
static struct op *sync_gone_versions(struct registry *r, const struct registry_function *f,
                                     const struct registry_function *sf)
{
    struct op *op = NULL;
    for (size_t i = 0; i < f->n_versions; i++) {
        const struct registry_version *v = f->versions[i];
        if (v->removing || version_find(sf, v->version))
            continue;
        if (!op && (!(op = op_new(r, OP_FORGET, f->name, NULL, NULL)) ||
                    !(op->prune = calloc(f->n_versions, sizeof(*op->prune))))) {
            op_free(op);
            log_error("versions removed elsewhere kept: out of memory", "function=%s", f->name);
            return NULL;
        }
        op->prune[op->n_prune++] = v->version;
    }
    return op;
}

/* f, kept here, takes what the store has in sf: new versions (moved from sf), aliases, the
 * current version, its service and numbers; versions gone go (drained). */
static void sync_merge(struct registry *r, struct registry_function *f,
                       struct registry_function *sf)
{
    struct op *forget = sync_gone_versions(r, f, sf);
    for (size_t i = 0; i < sf->n_versions; i++) {
        struct registry_version *v = sf->versions[i];
        if (!v || version_find(f, v->version))
            continue;
        if (versions_insert(f, v) < 0) {
            log_error("version not kept in memory", "function=%s version=%u", f->name, v->version);
            continue;
        }
        sf->versions[i] = NULL;
        log_info("version made on another host", "function=%s version=%u", f->name, v->version);
    }
    sync_aliases(f, sf);
    f->created_usec = sf->created_usec;
    snprintf(f->service, sizeof(f->service), "%s", sf->service);
    if (sf->max_version > f->max_version)
        f->max_version = sf->max_version;
    const struct registry_version *cur = version_find(f, sf->version);
    if (cur && cur->version != f->version) {
        log_info("current version changed on another host", "function=%s version=%u", f->name,
                 cur->version);
        make_current(r, f, cur);
    }
    if (forget)
        op_enqueue(forget);
}

/* Function name as the store has it in shadow: added, changed or deleted here alike. */
static void sync_function(struct registry *r, struct registry *shadow, const char *name)
{
    struct registry_function *f = find_fn(r, name);
    bool found;
    size_t i = fn_index(shadow, name, &found);
    if (f && f->deleting)
        return; /* a delete drains it: the store's rows go with it */
    if (!found) {
        if (f)
            sync_deleted(r, name);
        return;
    }
    struct registry_function *sf = shadow->fns[i];
    if (f) {
        sync_merge(r, f, sf);
        return;
    }
    bool at;
    size_t to = fn_index(r, name, &at);
    if (r->n_fns == r->cap_fns) {
        size_t cap = r->cap_fns ? r->cap_fns * 2 : 16;
        struct registry_function **n = realloc(r->fns, cap * sizeof(*n));
        if (!n) {
            log_error("function made on another host not kept: out of memory", "function=%s", name);
            return;
        }
        r->fns = n;
        r->cap_fns = cap;
    }
    memmove(r->fns + to + 1, r->fns + to, (r->n_fns - to) * sizeof(*r->fns));
    r->fns[to] = sf; /* shadow_free leaves it */
    r->n_fns++;
    log_info("function made on another host", "function=%s version=%u", name, sf->version);
    if (r->hooks.updated)
        r->hooks.updated(r->hooks.userdata, sf);
}

/* The services as the store has them (those being deleted here aside). */
static void sync_services(struct registry *r, struct registry *shadow)
{
    for (size_t i = r->n_services; i-- > 0;)
        if (!r->services[i].deleting && !find_service(shadow, r->services[i].name))
            service_remove(r, r->services[i].name);
    for (size_t i = 0; i < shadow->n_services; i++) {
        struct registry_service *s = &shadow->services[i], *cur = find_service(r, s->name);
        if (cur && cur->deleting)
            continue;
        if (service_put(r, s->name, TAKE_PTR(s->spec), s->created_usec, s->updated_usec) < 0)
            log_error("service not kept in memory", "service=%s", s->name);
    }
}

/* Frees shadow but what r took of it: the functions now in r's table, and versions (NULL in
 * shadow's lists). */
static void shadow_free(struct registry *r, struct registry *shadow)
{
    for (size_t i = 0; shadow && i < shadow->n_fns; i++)
        if (registry_lookup(r, shadow->fns[i]->name) == shadow->fns[i])
            shadow->fns[i] = NULL;
    registry_free(shadow);
}

/* The names in r that shadow does not have (copies; free the list), or NULL without memory. */
static char (*names_gone(struct registry *r, struct registry *shadow,
                         size_t *ret_n))[MANIFEST_NAME_MAX + 1]
{
    char(*gone)[MANIFEST_NAME_MAX + 1] = calloc(r->n_fns + 1, sizeof(*gone));
    size_t n = 0;
    for (size_t i = 0; gone && i < r->n_fns; i++)
        if (!registry_lookup(shadow, r->fns[i]->name))
            snprintf(gone[n++], sizeof(*gone), "%s", r->fns[i]->name);
    *ret_n = n;
    return gone;
}

/* On the loop, in its turn: reads op's function (every one with sync_all; none with an empty
 * name) and the services from the store, and makes memory say the same. */
static void sync_run(struct op *op)
{
    struct registry *r = op->reg, *shadow = calloc(1, sizeof(*shadow));
    struct ig_error e = {};
    if (shadow) {
        shadow->store = r->store;
        memcpy(shadow->bundles_dir, r->bundles_dir, sizeof(r->bundles_dir));
    }
    const char *only = op->sync_all ? NULL : op->name;
    if (!shadow || load_rows(shadow, only, &e) < 0) {
        /* The next notification, or the backstop's re-read, tries again. */
        log_error("reading changes made on another host failed", "function=%s error=\"%s\"",
                  op->sync_all ? "*" : op->name, shadow ? e.message : "out of memory");
        shadow_free(r, shadow);
        op_finish(op);
        return;
    }
    if (op->sync_all) {
        size_t n_gone = 0;
        char(*gone)[MANIFEST_NAME_MAX + 1] = names_gone(r, shadow, &n_gone);
        for (size_t i = 0; i < shadow->n_fns; i++)
            sync_function(r, shadow, shadow->fns[i]->name);
        for (size_t i = 0; i < n_gone; i++)
            sync_function(r, shadow, gone[i]);
        free(gone);
    } else if (op->name[0]) {
        sync_function(r, shadow, op->name);
    }
    sync_services(r, shadow);
    shadow_free(r, shadow);
    /* Versions made elsewhere run here once their bundles are taken from the store. */
    fetch_missing(r);
    op_finish(op);
}

/* On the loop, in its turn: drains and drops the versions another host removed, those still
 * kept here and routed to by nothing. */
static void forget_run(struct op *op)
{
    const struct registry_function *f = find_fn(op->reg, op->name);
    size_t keep = 0;
    for (size_t i = 0; f && !f->deleting && i < op->n_prune; i++) {
        const struct registry_version *v = version_find(f, op->prune[i]);
        if (v && !v->removing && v->version != f->version && !alias_pointing_at(f, v->version))
            op->prune[keep++] = op->prune[i];
    }
    op->n_prune = keep;
    if (keep == 0) {
        op_finish(op);
        return;
    }
    log_info("versions removed on another host: draining", "function=%s versions=%zu", op->name,
             keep);
    prune_start(op);
}

int registry_sync(struct registry *r, const char *function)
{
    /* A sync not started yet that covers this one makes it needless (a burst of
     * notifications). */
    for (struct op *op = r->queue_head; op; op = op->next)
        if (op->kind == OP_SYNC && !(r->active && op == r->queue_head) &&
            (op->sync_all || (function && streq(op->name, function))))
            return 0;
    struct op *op = op_new(r, OP_SYNC, function ? function : "", NULL, NULL);
    if (!op)
        return -ENOMEM;
    op->sync_all = !function;
    op_enqueue(op);
    return 0;
}

int registry_sync_services(struct registry *r)
{
    return registry_sync(r, "");
}

/* ---- bundles from the store ---- */

/* A bundle this host has not unpacked, on the worker: its bytes read from the store, checked
 * against their digest (a host never runs bytes it did not check), unpacked and moved into the
 * cache. */
static void *fetch_thread(void *userdata)
{
    struct op *op = userdata;
    struct registry *r = op->reg;
    _cleanup_free_ char *data = NULL, *dir = NULL;
    char got[BUNDLE_DIGEST_LEN + 1];
    size_t len;
    int q = bundles_store_get(r->store, op->digest, REGISTRY_MAX_BUNDLE, &data, &len, &op->err);
    if (q == 0) {
        bundle_digest(data, len, got);
        if (!streq(got, op->digest))
            q = ig_error_set(&op->err, EBADMSG,
                             "bundle refused: its bytes in the store hash to %s, not to its "
                             "digest (push the function again)",
                             got);
    }
    if (q == 0)
        q = bundle_unpack(r->bundles_dir, data, len, &bundle_default_limits, &dir, &op->err);
    if (q == 0 && (q = bundle_commit(r->bundles_dir, dir, op->digest, &op->err)) < 0)
        rm_rf(dir);
    op->failed = q < 0;
    post_back(op, op_thread_done);
    return NULL;
}

/* Whether a fetch that failed with errno code failed for a reason of this host's: another host,
 * or this one later, may well succeed. */
static bool failed_here(int code)
{
    switch (code) {
    case ENOSPC:
    case EDQUOT:
    case EIO:
    case EROFS:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOTCONN:
    case EAGAIN:
        return true;
    default:
        return false;
    }
}

/* On the loop, after the fetch: the versions of its digest can run, or say why they cannot. */
static void fetch_done(struct op *op)
{
    struct registry *r = op->reg;
    if (op->failed)
        log_error("a bundle could not be taken from the store: its versions do not run here",
                  "digest=%s error=\"%s\"", op->digest, op->err.message);
    else
        log_info("bundle unpacked from the store", "digest=%s", op->digest);
    for (size_t i = 0; i < r->n_fns; i++)
        for (size_t j = 0; j < r->fns[i]->n_versions; j++) {
            struct registry_version *v = r->fns[i]->versions[j];
            if (!streq(v->digest, op->digest))
                continue;
            v->fetching = false;
            v->fetch_failed_here = op->failed && failed_here(op->err.code);
            snprintf(v->bundle_error, sizeof(v->bundle_error), "%s",
                     op->failed ? op->err.message : "");
        }
    /* A current version's containers wait for their bundle (the updated hook's documentation). */
    for (size_t i = 0; i < r->n_fns && r->hooks.updated; i++)
        if (streq(r->fns[i]->digest, op->digest))
            r->hooks.updated(r->hooks.userdata, r->fns[i]);
    op->failed = false; /* no caller waits: nothing to report */
    op_finish(op);
}

/* Whether an OP_FETCH of digest is queued. */
static bool fetch_queued(const struct registry *r, const char *digest)
{
    for (const struct op *op = r->queue_head; op; op = op->next)
        if (op->kind == OP_FETCH && streq(op->digest, digest))
            return true;
    return false;
}

/* Queues a fetch of every bundle a version names that this host has not unpacked. */
static void fetch_missing(struct registry *r)
{
    for (size_t i = 0; i < r->n_fns; i++)
        for (size_t j = 0; j < r->fns[i]->n_versions; j++) {
            struct registry_version *v = r->fns[i]->versions[j];
            if (bundle_exists(r->bundles_dir, v->digest))
                continue;
            v->fetching = true;
            if (fetch_queued(r, v->digest))
                continue;
            struct op *op = op_new(r, OP_FETCH, r->fns[i]->name, NULL, NULL);
            if (!op) {
                v->fetching = false;
                snprintf(v->bundle_error, sizeof(v->bundle_error), "out of memory");
                continue;
            }
            memcpy(op->digest, v->digest, sizeof(op->digest));
            op_enqueue(op);
        }
}

static void op_thread_done(struct loop *l, void *userdata)
{
    struct op *op = userdata;
    if (op->running) {
        pthread_join(op->thread, NULL);
        op->running = false;
    }
    if (op->kind == OP_FETCH)
        fetch_done(op);
    else if (op->kind == OP_PUSH && !op->removing)
        push_record(op);
    else if (op->kind == OP_SERVICE && !op->removing)
        service_record(op);
    else
        op_finish(op);
}

static void op_start(struct op *op)
{
    struct registry *r = op->reg;
    r->active = true;
    if (op->kind == OP_DELETE) {
        delete_run(op);
        return;
    }
    if (op->kind == OP_ALIAS) {
        alias_run(op);
        return;
    }
    if (op->kind == OP_VERSION_DELETE) {
        version_delete_run(op);
        return;
    }
    if (op->kind == OP_PRUNE) {
        prune_over_keep(op);
        return;
    }
    if (op->kind == OP_SYNC) {
        sync_run(op);
        return;
    }
    if (op->kind == OP_FORGET) {
        forget_run(op);
        return;
    }
    int q = op_run_thread(op, op->kind == OP_SERVICE ? service_thread
                              : op->kind == OP_FETCH ? fetch_thread
                                                     : push_thread);
    if (q < 0) {
        ig_error_set(&op->err, q, "starting the bundle worker: %s", strerror(-q));
        op_fail(op, EIO, "internal", &op->err);
        if (op->kind == OP_FETCH)
            fetch_done(op);
        else
            op_finish(op);
    }
}

/* ---- the mutations ---- */

void registry_detach(struct registry *r, void *userdata)
{
    struct op *lists[] = {r->queue_head, r->draining};
    for (size_t l = 0; l < ARRAY_SIZE(lists); l++)
        for (struct op *op = lists[l]; op; op = op->next) {
            if (!op->done || op->userdata != userdata)
                continue;
            /* The worker may still read the caller's bytes. */
            if (op->running) {
                pthread_join(op->thread, NULL);
                op->running = false;
            }
            op->done = NULL;
            op->body = NULL;
            op->body_len = 0;
            return;
        }
}

int registry_push(struct registry *r, const char *name, const void *bundle, size_t len,
                  registry_done_fn done, void *userdata, struct ig_error *err)
{
    return registry_push_version(r, name, bundle, len, true, done, userdata, err);
}

int registry_push_version(struct registry *r, const char *name, const void *bundle, size_t len,
                          bool promote, registry_done_fn done, void *userdata, struct ig_error *err)
{
    if (registry_check_name("function", name, err) < 0)
        return -EINVAL;
    if (len == 0)
        return ig_error_set_reason(err, EINVAL, "invalid_bundle",
                                   "the body is empty: send the bundle (a gzip tar with "
                                   "function.json at its root)");
    if (len > REGISTRY_MAX_BUNDLE)
        return ig_error_set(err, EFBIG, "the bundle is %zu bytes, over the limit of %u bytes", len,
                            REGISTRY_MAX_BUNDLE);
    const struct registry_function *f = registry_lookup(r, name);
    if (f && f->deleting)
        return ig_error_set_reason(err, EBUSY, "conflict", "function %s is being deleted", name);
    struct op *op = op_new(r, OP_PUSH, name, done, userdata);
    if (!op)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    op->body = bundle;
    op->body_len = len;
    op->promote = promote;
    op_enqueue(op); /* done runs when the op finishes */
    return 0;
}

/* Each function of the delete has drained: the removal is queued. */
static void delete_drained(void *ctx)
{
    struct op *op = ctx;
    struct registry *r = op->reg;
    if (--op->drains_pending > 0)
        return;
    for (struct op **p = &r->draining; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    op_enqueue(op);
}

/* Marks the delete's functions deleting and asks the dispatcher to drain each. */
static void start_drains(struct op *op)
{
    op->next = op->reg->draining;
    op->reg->draining = op;
    drain_names(op, delete_drained);
}

int registry_delete(struct registry *r, const char *name, registry_done_fn done, void *userdata,
                    struct ig_error *err)
{
    const struct registry_function *f = registry_find(r, name, err);
    if (!f)
        return -err->code;
    if (f->deleting)
        return ig_error_set_reason(err, EBUSY, "conflict", "function %s is already being deleted",
                                   name);
    struct op *op = op_new(r, OP_DELETE, name, done, userdata);
    if (op && !(op->names = calloc(1, sizeof(*op->names))))
        op_free(TAKE_PTR(op));
    if (!op)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    snprintf(op->names[0], sizeof(op->names[0]), "%s", name);
    op->n_names = 1;
    start_drains(op);
    return 0;
}

int registry_deploy(struct registry *r, const char *name, const void *archive, size_t len,
                    registry_done_fn done, void *userdata, struct ig_error *err)
{
    if (registry_check_name("service", name, err) < 0)
        return -EINVAL;
    if (len == 0)
        return ig_error_set_reason(err, EINVAL, "invalid_service",
                                   "the body is empty: send the deploy archive (a tar of "
                                   "service.json and functions/NAME.tar.gz; ignis deploy makes "
                                   "it)");
    if (len > SERVICE_ARCHIVE_MAX)
        return ig_error_set(err, EFBIG,
                            "the deploy archive is %zu bytes, over the limit of %u bytes", len,
                            SERVICE_ARCHIVE_MAX);
    struct op *op = op_new(r, OP_SERVICE, name, done, userdata);
    if (!op)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    op->body = archive;
    op->body_len = len;
    op_enqueue(op);
    return 0;
}

static size_t service_member_count(const struct registry *r, const char *service)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_fns; i++)
        n += streq(r->fns[i]->service, service);
    return n;
}

int registry_undeploy(struct registry *r, const char *name, registry_done_fn done, void *userdata,
                      struct ig_error *err)
{
    /* The registry's own entry (registry_find_service hands it out const). */
    struct registry_service *sv = (struct registry_service *)registry_find_service(r, name, err);
    if (!sv)
        return -err->code;
    if (sv->deleting)
        return ig_error_set_reason(err, EBUSY, "conflict", "service %s is already being deleted",
                                   sv->name);
    struct op *op = op_new(r, OP_DELETE, sv->name, done, userdata);
    size_t n = service_member_count(r, sv->name);
    if (op && !(op->names = calloc(n + 1, sizeof(*op->names))))
        op_free(TAKE_PTR(op));
    if (!op)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    snprintf(op->service_name, sizeof(op->service_name), "%s", sv->name);
    /* Its functions that a delete of their own is already draining go with that one. */
    for (size_t i = 0; i < r->n_fns; i++)
        if (streq(r->fns[i]->service, sv->name) && !r->fns[i]->deleting)
            snprintf(op->names[op->n_names++], MANIFEST_NAME_MAX + 1, "%s", r->fns[i]->name);
    sv->deleting = true;
    start_drains(op);
    return 0;
}

/* An alias op on name, once the function is known (name's own checks done). */
static struct op *alias_op(struct registry *r, const char *name, enum op_kind kind,
                           registry_done_fn done, void *userdata, struct ig_error *err)
{
    const struct registry_function *f = registry_find(r, name, err);
    if (!f)
        return NULL;
    if (f->deleting) {
        ig_error_set_reason(err, EBUSY, "conflict", "function %s is being deleted", name);
        return NULL;
    }
    struct op *op = op_new(r, kind, name, done, userdata);
    if (!op)
        ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    return op;
}

int registry_set_alias(struct registry *r, const char *name, const char *alias,
                       const uint32_t *versions, const uint32_t *weights, size_t n,
                       registry_done_fn done, void *userdata, struct ig_error *err)
{
    if (alias_check_name(alias, err) < 0 || alias_check_weights(versions, weights, n, err) < 0)
        return -EINVAL;
    struct op *op = alias_op(r, name, OP_ALIAS, done, userdata, err);
    if (!op)
        return -err->code;
    snprintf(op->alias, sizeof(op->alias), "%s", alias);
    memcpy(op->versions, versions, n * sizeof(*versions));
    memcpy(op->weights, weights, n * sizeof(*weights));
    op->n_routes = n;
    op_enqueue(op);
    return 0;
}

int registry_delete_alias(struct registry *r, const char *name, const char *alias,
                          registry_done_fn done, void *userdata, struct ig_error *err)
{
    /* A function that does not exist has no default alias to refuse to delete: not_found. */
    if (alias_check_name(alias, err) < 0 || !registry_find(r, name, err))
        return -err->code;
    if (streq(alias, REGISTRY_DEFAULT_ALIAS))
        return ig_error_set_reason(err, EBUSY, "conflict",
                                   "the default alias always exists: point it elsewhere "
                                   "(ignis rollback, ignis alias set) instead");
    struct op *op = alias_op(r, name, OP_ALIAS, done, userdata, err);
    if (!op)
        return -err->code;
    snprintf(op->alias, sizeof(op->alias), "%s", alias);
    op->alias_delete = true;
    op_enqueue(op);
    return 0;
}

int registry_rollback(struct registry *r, const char *name, uint32_t to, registry_done_fn done,
                      void *userdata, struct ig_error *err)
{
    struct op *op = alias_op(r, name, OP_ALIAS, done, userdata, err);
    if (!op)
        return -err->code;
    op->rollback = true;
    op->target = to;
    op_enqueue(op);
    return 0;
}

int registry_delete_version(struct registry *r, const char *name, uint32_t version,
                            registry_done_fn done, void *userdata, struct ig_error *err)
{
    struct op *op = alias_op(r, name, OP_VERSION_DELETE, done, userdata, err);
    if (!op)
        return -err->code;
    op->target = version;
    op_enqueue(op);
    return 0;
}
