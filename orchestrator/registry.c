#include "registry.h"

#include <dirent.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon.h"
#include "log.h"

enum op_kind { OP_PUSH, OP_DELETE };

/* One mutation. It waits in the queue, runs (its bundle work on the worker thread), and is
 * answered and freed when done. */
struct op {
    struct registry *reg;
    enum op_kind kind;
    struct http_request *req; /* NULL once the request is gone (shutdown) */
    char name[MANIFEST_NAME_MAX + 1];
    /* push: the body stays owned by req. It is read only by the worker, and a request is
     * only freed before its reply at shutdown, when op_on_close first waits for the worker. */
    const char *body;
    size_t body_len;
    /* results of the worker */
    unsigned status; /* 0: success */
    const char *code;
    struct ig_error err;
    char digest[BUNDLE_DIGEST_LEN + 1];
    struct manifest *manifest;
    /* bundles to remove on the worker (delete; a push that could not be recorded) */
    char (*remove)[BUNDLE_DIGEST_LEN + 1];
    size_t n_remove;
    cJSON *reply; /* a success reply waiting for the removal to finish */
    unsigned reply_status;
    bool removing; /* the worker's job is op->remove (not the push's bundle work) */
    bool running;  /* the worker thread runs for this op */
    pthread_t thread;
    struct op *next;
};

struct registry {
    struct loop *loop;
    struct store *store;
    char bundles_dir[4096];
    struct bundle_limits limits;
    struct registry_hooks hooks;
    struct registry_function **fns; /* sorted by name */
    size_t n_fns, cap_fns;
    struct op *queue_head, *queue_tail; /* head is the running op, when active */
    bool active;
    struct op *draining; /* deletes waiting for the dispatcher's drain */
};

static void registry_function_free(struct registry_function *f)
{
    if (!f)
        return;
    manifest_free(f->manifest);
    free(f);
}

static void op_free(struct op *op)
{
    if (!op)
        return;
    manifest_free(op->manifest);
    free(op->remove);
    cJSON_Delete(op->reply);
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

size_t registry_count(const struct registry *r)
{
    return r->n_fns;
}

const struct registry_function *registry_at(const struct registry *r, size_t i)
{
    return i < r->n_fns ? r->fns[i] : NULL;
}

/* Inserts f, or when its name is there, moves f's version into the existing entry so that
 * pointers the dispatcher holds stay valid across versions. Takes ownership of f either way;
 * *ret is the entry in the table. */
static int table_put(struct registry *r, struct registry_function *f,
                     struct registry_function **ret)
{
    bool found;
    size_t i = fn_index(r, f->name, &found);
    if (found) {
        struct registry_function *cur = r->fns[i];
        manifest_free(cur->manifest);
        *cur = *f;
        free(f);
        *ret = cur;
        return 0;
    }
    if (r->n_fns == r->cap_fns) {
        size_t cap = r->cap_fns ? r->cap_fns * 2 : 16;
        struct registry_function **n = realloc(r->fns, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
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
                                              uint64_t updated, uint64_t bytes)
{
    struct registry_function *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->version = version;
    snprintf(f->digest, sizeof(f->digest), "%s", digest);
    f->manifest = m;
    bundle_path(r->bundles_dir, digest, f->bundle_dir, sizeof(f->bundle_dir));
    f->created_usec = created;
    f->updated_usec = updated;
    f->bundle_bytes = bytes;
    return f;
}

/* ---- the store ---- */

static int db_exec_bind(sqlite3 *db, const char *sql, const char *fmt, ...)
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

static bool digest_referenced(sqlite3 *db, const char *digest)
{
    sqlite3_stmt *st;
    bool ref = true; /* on error, keep the bundle */
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM function_versions WHERE digest = ? LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        return true;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE)
        ref = false;
    sqlite3_finalize(st);
    return ref;
}

/* Records a new current version. One transaction: the function's row and its version appear
 * together or not at all. */
static int db_record_version(struct registry *r, const struct registry_function *f,
                             const char *manifest_json, struct ig_error *err)
{
    sqlite3 *db = r->store->db;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "store: %s", sqlite3_errmsg(db));
    int q = db_exec_bind(db,
                         "INSERT INTO functions (name, current_version, created_at, updated_at) "
                         "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET "
                         "current_version = ?2, updated_at = ?4",
                         "siii", f->name, (int64_t)f->version, (int64_t)f->created_usec,
                         (int64_t)f->updated_usec);
    if (q == 0)
        q = db_exec_bind(db,
                         "INSERT INTO function_versions (name, version, digest, manifest, "
                         "bundle_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         "siss"
                         "ii",
                         f->name, (int64_t)f->version, f->digest, manifest_json,
                         (int64_t)f->bundle_bytes, (int64_t)f->updated_usec);
    if (q == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int r2 = ig_error_set(err, EIO, "store: recording %s version %u: %s", f->name, f->version,
                          sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r2;
}

/* Deletes a function and its versions; returns the digests they used that no other version
 * references any more (malloc'd array). */
static int db_delete_function(struct registry *r, const char *name,
                              char (**ret_digests)[BUNDLE_DIGEST_LEN + 1], size_t *ret_n,
                              struct ig_error *err)
{
    sqlite3 *db = r->store->db;
    sqlite3_stmt *st;
    char(*digests)[BUNDLE_DIGEST_LEN + 1] = NULL;
    size_t n = 0, cap = 0;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "store: %s", sqlite3_errmsg(db));
    if (sqlite3_prepare_v2(db, "SELECT DISTINCT digest FROM function_versions WHERE name = ?", -1,
                           &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 0);
        if (!bundle_digest_valid(d))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            void *nd = realloc(digests, cap * sizeof(*digests));
            if (!nd) {
                sqlite3_finalize(st);
                goto fail;
            }
            digests = nd;
        }
        snprintf(digests[n++], BUNDLE_DIGEST_LEN + 1, "%s", d);
    }
    sqlite3_finalize(st);
    if (db_exec_bind(db, "DELETE FROM function_versions WHERE name = ?", "s", name) < 0 ||
        db_exec_bind(db, "DELETE FROM functions WHERE name = ?", "s", name) < 0)
        goto fail;
    /* Within the transaction: what is left refers to the other functions only. */
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (!digest_referenced(db, digests[i]))
            memcpy(digests[keep++], digests[i], sizeof(digests[i]));
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    *ret_digests = digests;
    *ret_n = keep;
    return 0;
fail:;
    int q = ig_error_set(err, EIO, "store: deleting %s: %s", name, sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    free(digests);
    return q;
}

static int load_functions(struct registry *r, struct ig_error *err)
{
    sqlite3_stmt *st;
    sqlite3 *db = r->store->db;
    if (sqlite3_prepare_v2(db,
                           "SELECT f.name, v.version, v.digest, v.manifest, f.created_at, "
                           "v.created_at, v.bundle_bytes FROM functions f JOIN function_versions "
                           "v ON v.name = f.name AND v.version = f.current_version",
                           -1, &st, NULL) != SQLITE_OK)
        return ig_error_set(err, EIO, "store: loading functions: %s", sqlite3_errmsg(db));
    int q;
    while ((q = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *digest = (const char *)sqlite3_column_text(st, 2);
        const char *json = (const char *)sqlite3_column_text(st, 3);
        struct manifest *m = NULL;
        struct ig_error merr = {};
        if (!name || !bundle_digest_valid(digest) || !json ||
            manifest_parse(json, strlen(json), &m, &merr) < 0) {
            /* Only a newer ignisd's manifest (a field this build does not know) gets here. */
            log_error("function not loaded: its stored manifest is not valid here",
                      "function=%s error=\"%s\"", name ? name : "?", merr.message);
            continue;
        }
        if (!bundle_exists(r->bundles_dir, digest))
            log_error("function's bundle is missing from the store", "function=%s digest=%s", name,
                      digest);
        struct registry_function *f = function_new(r, name, (uint32_t)sqlite3_column_int64(st, 1),
                                                   digest, m, (uint64_t)sqlite3_column_int64(st, 4),
                                                   (uint64_t)sqlite3_column_int64(st, 5),
                                                   (uint64_t)sqlite3_column_int64(st, 6));
        struct registry_function *entry;
        if (!f || table_put(r, f, &entry) < 0) {
            if (f)
                registry_function_free(f);
            else
                manifest_free(m);
            sqlite3_finalize(st);
            return ig_error_set(err, ENOMEM, "out of memory");
        }
    }
    sqlite3_finalize(st);
    if (q != SQLITE_DONE)
        return ig_error_set(err, EIO, "store: loading functions: %s", sqlite3_errmsg(db));
    return 0;
}

/* Removes bundles that no version references: left by a crash between storing a bundle and
 * recording its version, or between deleting a function and removing its bundles. */
static void collect_garbage(struct registry *r)
{
    DIR *d = opendir(r->bundles_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!bundle_digest_valid(de->d_name) || digest_referenced(r->store->db, de->d_name))
            continue;
        log_info("removing an unreferenced bundle", "digest=%s", de->d_name);
        bundle_remove(r->bundles_dir, de->d_name);
    }
    if (d)
        closedir(d);
}

int registry_new(struct loop *loop, struct store *store, const char *state_dir,
                 struct registry **ret, struct ig_error *err)
{
    struct registry *r = calloc(1, sizeof(*r));
    int q;

    if (!r)
        return ig_error_set(err, ENOMEM, "out of memory");
    r->loop = loop;
    r->store = store;
    r->limits = bundle_default_limits;
    snprintf(r->bundles_dir, sizeof(r->bundles_dir), "%s/bundles", state_dir);
    q = mkdir_p(r->bundles_dir, 0700);
    if (q < 0) {
        free(r);
        return ig_error_set(err, q, "creating %s: %s", state_dir, strerror(-q));
    }
    bundle_clean_tmp(r->bundles_dir);
    q = load_functions(r, err);
    if (q < 0) {
        registry_free(r);
        return q;
    }
    collect_garbage(r);
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
    /* Requests still waiting are answered 503 by the HTTP server; they must not call back into
     * ops freed here. */
    struct op *lists[] = {r->queue_head, r->draining};
    for (size_t l = 0; l < ARRAY_SIZE(lists); l++)
        for (struct op *op = lists[l], *next; op; op = next) {
            next = op->next;
            if (op->req)
                http_request_set_context(op->req, NULL, NULL);
            op_free(op);
        }
    for (size_t i = 0; i < r->n_fns; i++)
        registry_function_free(r->fns[i]);
    free(r->fns);
    free(r);
}

void registry_set_hooks(struct registry *r, const struct registry_hooks *hooks)
{
    r->hooks = *hooks;
    if (r->hooks.updated)
        for (size_t i = 0; i < r->n_fns; i++)
            r->hooks.updated(r->hooks.userdata, r->fns[i]);
}

void registry_set_limits(struct registry *r, const struct bundle_limits *lim)
{
    r->limits = *lim;
}

/* ---- the op queue ---- */

static void op_start(struct op *op);

/* Answers and frees the running op, then starts the next. */
static void op_finish(struct op *op)
{
    struct registry *r = op->reg;
    struct http_request *req = op->req;

    if (req) {
        http_request_set_context(req, NULL, NULL);
        if (op->status)
            http_reply_error(req, op->status, op->code, "%s", op->err.message);
        else {
            http_reply_json(req, op->reply_status, TAKE_PTR(op->reply));
        }
    }
    r->queue_head = op->next;
    if (!r->queue_head)
        r->queue_tail = NULL;
    r->active = false;
    op_free(op);
    if (r->queue_head)
        op_start(r->queue_head);
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

static void op_fail(struct op *op, unsigned status, const char *code, const struct ig_error *e)
{
    op->status = status;
    op->code = code;
    if (e != &op->err)
        op->err = *e;
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
    bool stored = bundle_exists(r->bundles_dir, op->digest);
    if (stored) {
        /* Same bytes, same tree: validated when it was first pushed, but perhaps for another
         * function or by an older build, so the manifest is checked again. */
        char path[4200];
        bundle_path(r->bundles_dir, op->digest, path, sizeof(path));
        q = bundle_read_manifest(path, &text, &len, &op->err);
    } else {
        q = bundle_unpack(r->bundles_dir, op->body, op->body_len, &r->limits, &dir, &op->err);
        if (q >= 0)
            q = bundle_read_manifest(dir, &text, &len, &op->err);
    }
    if (q < 0) {
        op_fail(op, bundle_error_is_content(q) ? 400 : 500,
                bundle_error_is_content(q) ? "invalid_bundle" : "internal", &op->err);
        goto out;
    }
    if (manifest_parse(text, len, &op->manifest, &op->err) < 0) {
        op_fail(op, 400, "invalid_manifest", &op->err);
        goto out;
    }
    if (!streq(op->manifest->name, op->name)) {
        ig_error_set(&op->err, EEXIST,
                     "name: function.json names \"%s\" but the bundle was pushed to \"%s\"",
                     op->manifest->name, op->name);
        op_fail(op, 409, "name_mismatch", &op->err);
        goto out;
    }
    if (!stored && bundle_commit(r->bundles_dir, dir, op->digest, &op->err) < 0) {
        op_fail(op, 500, "internal", &op->err);
        goto out;
    }
out:
    if (dir && op->status)
        rm_rf(dir);
    post_back(op, op_thread_done);
    return NULL;
}

/* On the loop, after the push's bundle work: record the version. */
static void push_record(struct op *op)
{
    struct registry *r = op->reg;
    struct registry_function *cur = find_fn(r, op->name);

    if (op->status) {
        op_finish(op);
        return;
    }
    if (cur && cur->deleting) {
        ig_error_set(&op->err, EBUSY, "function %s is being deleted", op->name);
        op_fail(op, 409, "conflict", &op->err);
    } else if (cur && streq(cur->digest, op->digest)) {
        /* The same content as the current version: not a new version. */
        op->reply_status = 200;
    } else {
        uint64_t now = wall_usec();
        cJSON *mj = manifest_to_json(op->manifest);
        _cleanup_free_ char *text = mj ? cJSON_PrintUnformatted(mj) : NULL;
        cJSON_Delete(mj);
        struct registry_function *f =
            text ? function_new(r, op->name, cur ? cur->version + 1 : 1, op->digest, op->manifest,
                                cur ? cur->created_usec : now, now, op->body_len)
                 : NULL;
        if (!f) {
            ig_error_set(&op->err, ENOMEM, "out of memory");
            op_fail(op, 500, "internal", &op->err);
        } else if (db_record_version(r, f, text, &op->err) < 0) {
            f->manifest = NULL;
            registry_function_free(f);
            op_fail(op, 500, "internal", &op->err);
        } else {
            op->manifest = NULL; /* now f's */
            struct registry_function *entry;
            if (table_put(r, f, &entry) < 0) {
                /* Recorded but not in memory: the next start-up loads it. */
                registry_function_free(f);
                ig_error_set(&op->err, ENOMEM, "out of memory");
                op_fail(op, 500, "internal", &op->err);
            } else {
                cur = entry;
                op->reply_status = 201;
                log_info("function version pushed", "function=%s version=%u digest=%s", cur->name,
                         cur->version, cur->digest);
                if (r->hooks.updated)
                    r->hooks.updated(r->hooks.userdata, cur);
            }
        }
    }
    if (op->status) {
        /* Not recorded: the bundle just stored may now be referenced by nothing. */
        if (!digest_referenced(r->store->db, op->digest)) {
            op->remove = calloc(1, sizeof(*op->remove));
            if (op->remove) {
                memcpy(op->remove[0], op->digest, sizeof(op->digest));
                op->n_remove = 1;
            }
        }
        op_remove_then_finish(op);
        return;
    }
    op->reply = cJSON_CreateObject();
    cJSON_AddStringToObject(op->reply, "name", cur->name);
    cJSON_AddNumberToObject(op->reply, "version", cur->version);
    cJSON_AddStringToObject(op->reply, "digest", cur->digest);
    cJSON_AddBoolToObject(op->reply, "created", op->reply_status == 201);
    op_finish(op);
}

/* On the loop, once drained: remove the function from the store and the table, then its
 * unreferenced bundles on the worker. */
static void delete_run(struct op *op)
{
    struct registry *r = op->reg;
    struct registry_function *f = find_fn(r, op->name);
    uint32_t version = f ? f->version : 0;

    if (db_delete_function(r, op->name, &op->remove, &op->n_remove, &op->err) < 0) {
        if (f)
            f->deleting = false;
        op_fail(op, 500, "internal", &op->err);
        op_finish(op);
        return;
    }
    table_remove(r, op->name);
    log_info("function deleted", "function=%s bundles_removed=%zu", op->name, op->n_remove);
    op->reply_status = 200;
    op->reply = cJSON_CreateObject();
    cJSON_AddStringToObject(op->reply, "name", op->name);
    cJSON_AddNumberToObject(op->reply, "version", version);
    cJSON_AddBoolToObject(op->reply, "deleted", true);
    cJSON_AddNumberToObject(op->reply, "bundles_removed", (double)op->n_remove);
    op_remove_then_finish(op);
}

static void op_thread_done(struct loop *l, void *userdata)
{
    struct op *op = userdata;
    if (op->running) {
        pthread_join(op->thread, NULL);
        op->running = false;
    }
    if (op->kind == OP_PUSH && !op->removing)
        push_record(op);
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
    int q = op_run_thread(op, push_thread);
    if (q < 0) {
        ig_error_set(&op->err, q, "starting the bundle worker: %s", strerror(-q));
        op_fail(op, 500, "internal", &op->err);
        op_finish(op);
    }
}

/* The request went away before its answer: only at shutdown, since suspended requests are not
 * timed out. The worker may still read the request's body: wait for it (bounded by the bundle
 * limits). */
static void op_on_close(struct http_request *req, void *userdata)
{
    struct op *op = http_request_context(req);
    if (!op)
        return;
    if (op->running) {
        pthread_join(op->thread, NULL);
        op->running = false;
    }
    op->req = NULL;
    op->body = NULL;
    op->body_len = 0;
}

static struct op *op_new(struct registry *r, enum op_kind kind, struct http_request *req,
                         const char *name)
{
    struct op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->reg = r;
    op->kind = kind;
    op->req = req;
    snprintf(op->name, sizeof(op->name), "%s", name);
    http_request_set_context(req, op, op_on_close);
    return op;
}

/* ---- routes ---- */

static struct registry *registry_of(void *userdata)
{
    return ((struct daemon *)userdata)->registry;
}

static bool check_name(struct http_request *req, const char *name)
{
    if (manifest_name_valid(name))
        return true;
    http_reply_error(req, 400, "invalid_name",
                     "name: \"%.80s\" is not a function name ([a-z][a-z0-9-]{0,62})", name);
    return false;
}

void registry_http_put(struct http_request *req, void *userdata)
{
    struct registry *r = registry_of(userdata);
    const char *name = http_request_param(req, 0);
    size_t len;
    const char *body = http_request_body(req, &len);

    if (!check_name(req, name))
        return;
    if (len == 0) {
        http_reply_error(req, 400, "invalid_bundle",
                         "the body is empty: send the bundle (a gzip tar with function.json at "
                         "its root)");
        return;
    }
    const struct registry_function *f = registry_lookup(r, name);
    if (f && f->deleting) {
        http_reply_error(req, 409, "conflict", "function %s is being deleted", name);
        return;
    }
    struct op *op = op_new(r, OP_PUSH, req, name);
    if (!op) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    op->body = body;
    op->body_len = len;
    op_enqueue(op); /* the reply comes when the op finishes */
}

static cJSON *function_summary(const struct registry_function *f)
{
    char created[32], updated[32];
    cJSON *o = cJSON_CreateObject();
    format_time_ms(f->created_usec, created);
    format_time_ms(f->updated_usec, updated);
    cJSON_AddStringToObject(o, "name", f->name);
    cJSON_AddNumberToObject(o, "version", f->version);
    cJSON_AddStringToObject(o, "digest", f->digest);
    cJSON_AddStringToObject(o, "runtime", manifest_runtime_name(f->manifest->runtime));
    cJSON_AddStringToObject(o, "state", f->deleting ? "deleting" : "active");
    cJSON_AddStringToObject(o, "created_at", created);
    cJSON_AddStringToObject(o, "updated_at", updated);
    return o;
}

/* Live state belongs to the dispatcher; until it fills it in, nothing is running. */
static void add_live(const struct registry *r, const struct registry_function *f, cJSON *o)
{
    cJSON *live = cJSON_AddObjectToObject(o, "live");
    if (r->hooks.describe)
        r->hooks.describe(r->hooks.userdata, f, live);
    else {
        cJSON_AddNumberToObject(live, "ready", 0);
        cJSON_AddNumberToObject(live, "busy", 0);
        cJSON_AddNumberToObject(live, "spawning", 0);
        cJSON_AddNumberToObject(live, "queue_depth", 0);
    }
}

void registry_http_list(struct http_request *req, void *userdata)
{
    struct registry *r = registry_of(userdata);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "functions");
    /* Each with its live state, so `ignis top` sees every function in one request. */
    for (size_t i = 0; i < r->n_fns; i++) {
        cJSON *o = function_summary(r->fns[i]);
        add_live(r, r->fns[i], o);
        cJSON_AddItemToArray(arr, o);
    }
    http_reply_json(req, 200, root);
}

void registry_http_get(struct http_request *req, void *userdata)
{
    struct registry *r = registry_of(userdata);
    const char *name = http_request_param(req, 0);
    if (!check_name(req, name))
        return;
    const struct registry_function *f = registry_lookup(r, name);
    if (!f) {
        http_reply_error(req, 404, "not_found", "no function named %s", name);
        return;
    }
    cJSON *root = function_summary(f);
    cJSON_AddNumberToObject(root, "bundle_bytes", (double)f->bundle_bytes);
    cJSON_AddItemToObject(root, "manifest", manifest_to_json(f->manifest));
    add_live(r, f, root);
    http_reply_json(req, 200, root);
}

static void delete_drained(void *ctx)
{
    struct op *op = ctx;
    struct registry *r = op->reg;
    for (struct op **p = &r->draining; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    op_enqueue(op);
}

void registry_http_delete(struct http_request *req, void *userdata)
{
    struct registry *r = registry_of(userdata);
    const char *name = http_request_param(req, 0);
    if (!check_name(req, name))
        return;
    struct registry_function *f = find_fn(r, name);
    if (!f) {
        http_reply_error(req, 404, "not_found", "no function named %s", name);
        return;
    }
    if (f->deleting) {
        http_reply_error(req, 409, "conflict", "function %s is already being deleted", name);
        return;
    }
    struct op *op = op_new(r, OP_DELETE, req, name);
    if (!op) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    f->deleting = true;
    op->next = r->draining;
    r->draining = op;
    if (r->hooks.drain)
        r->hooks.drain(r->hooks.userdata, f, delete_drained, op);
    else
        delete_drained(op);
}
