/* The registry's contract with the dispatcher, in process: the updated hook on a new version,
 * describe filling GET's "live", and DELETE waiting for the drain hook's done (meanwhile the
 * function shows "deleting", and pushes and deletes of it are 409). test_hooks runs the daemon's
 * routes on a real loop and HTTP server on a loopback port, requests from client threads; the
 * tests after it call registry_push, _delete, _deploy and _undeploy directly on a loop, with no
 * HTTP, and check the errno and reason each failure reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "functions/bundle.h"
#include "base/client.h"
#include "daemon/daemon.h"
#include "functions/registry.h"
#include "functions/service.h"
#include "records/functions_store.h"

static char dir[64];
static struct daemon d;
static struct api api; /* the routes' context: the registry alone */
static char url[64];

/* What the hooks saw, and the drain's done waiting to be called. Guarded by lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int updated_calls;
static uint32_t updated_version;
static const struct registry_function *updated_first;
static bool updated_same_pointer = true;
static int drain_calls;
static void (*drain_done)(void *ctx);
static void *drain_ctx;
static bool delete_replied;

static void on_updated(void *userdata, const struct registry_function *f)
{
    pthread_mutex_lock(&lock);
    updated_calls++;
    updated_version = f->version;
    if (!updated_first)
        updated_first = f;
    else if (f != updated_first)
        updated_same_pointer = false;
    pthread_mutex_unlock(&lock);
}

static void on_describe(void *userdata, const struct registry_function *f, cJSON *live)
{
    cJSON_AddNumberToObject(live, "queue_depth", 7);
    cJSON_AddNumberToObject(live, "ready", 2);
}

static void on_drain(void *userdata, const struct registry_function *f, void (*done)(void *ctx),
                     void *ctx)
{
    assert_true(f->deleting);
    pthread_mutex_lock(&lock);
    drain_calls++;
    drain_done = done;
    drain_ctx = ctx;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void call_done(struct loop *l, void *userdata)
{
    drain_done(drain_ctx);
}

static void quit(struct loop *l, void *userdata)
{
    loop_quit(l);
}

static long req(struct client *c, const char *method, const char *path, const void *body,
                size_t len, cJSON **ret)
{
    struct client_response resp;
    struct ig_error err = {};
    if (client_request(c, method, path, NULL, body, len, &resp, &err) < 0)
        fail_msg("%s %s: %s", method, path, err.message);
    long status = resp.status;
    if (ret)
        *ret = cJSON_Parse(resp.body);
    client_response_clear(&resp);
    return status;
}

static void *deleter(void *userdata)
{
    struct client *c = userdata;
    cJSON *r = NULL;
    long status = req(c, "DELETE", "/v1/functions/hooked", NULL, 0, &r);
    assert_int_equal(status, 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "deleted")));
    assert_int_equal(cJSON_GetObjectItem(r, "bundles_removed")->valueint, 2);
    cJSON_Delete(r);
    pthread_mutex_lock(&lock);
    delete_replied = true;
    pthread_mutex_unlock(&lock);
    return NULL;
}

struct clients {
    struct client *a, *b;
    char *bundle, *bundle2;
    size_t len, len2;
};

static void *driver(void *userdata)
{
    struct clients *cs = userdata;
    cJSON *r = NULL;

    assert_int_equal(req(cs->a, "PUT", "/v1/functions/hooked", cs->bundle, cs->len, &r), 201);
    cJSON_Delete(r);
    pthread_mutex_lock(&lock);
    assert_int_equal(updated_calls, 1);
    assert_int_equal(updated_version, 1);
    pthread_mutex_unlock(&lock);

    /* A second version: the same struct, updated in place. */
    assert_int_equal(req(cs->a, "PUT", "/v1/functions/hooked", cs->bundle2, cs->len2, &r), 201);
    assert_int_equal(cJSON_GetObjectItem(r, "version")->valueint, 2);
    cJSON_Delete(r);
    pthread_mutex_lock(&lock);
    assert_int_equal(updated_calls, 2);
    assert_int_equal(updated_version, 2);
    assert_true(updated_same_pointer);
    pthread_mutex_unlock(&lock);

    assert_int_equal(req(cs->a, "GET", "/v1/functions/hooked", NULL, 0, &r), 200);
    cJSON *live = cJSON_GetObjectItem(r, "live");
    assert_int_equal(cJSON_GetObjectItem(live, "queue_depth")->valueint, 7);
    assert_int_equal(cJSON_GetObjectItem(live, "ready")->valueint, 2);
    cJSON_Delete(r);

    /* DELETE from another thread: it must wait for the drain. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, deleter, cs->b), 0);
    pthread_mutex_lock(&lock);
    while (drain_calls == 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);

    assert_int_equal(req(cs->a, "GET", "/v1/functions/hooked", NULL, 0, &r), 200);
    assert_string_equal(cJSON_GetObjectItem(r, "state")->valuestring, "deleting");
    cJSON_Delete(r);
    assert_int_equal(req(cs->a, "PUT", "/v1/functions/hooked", cs->bundle, cs->len, &r), 409);
    cJSON_Delete(r);
    assert_int_equal(req(cs->a, "DELETE", "/v1/functions/hooked", NULL, 0, &r), 409);
    cJSON_Delete(r);
    pthread_mutex_lock(&lock);
    assert_false(delete_replied); /* still draining */
    assert_int_equal(drain_calls, 1);
    pthread_mutex_unlock(&lock);

    /* The dispatcher is done: the DELETE completes. */
    loop_post(d.loop, call_done, NULL);
    pthread_join(t, NULL);
    assert_int_equal(req(cs->a, "GET", "/v1/functions/hooked", NULL, 0, &r), 404);
    cJSON_Delete(r);
    loop_post(d.loop, quit, NULL);
    return NULL;
}

static void test_hooks(void **state)
{
    char path[256], src[128];
    struct ig_error err = {};
    struct clients cs = {};

    strcpy(dir, "/tmp/ignis-registry-test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    assert_int_equal(store_open(path, &d.store, &err), 0);
    assert_int_equal(loop_new(&d.loop), 0);
    assert_int_equal(registry_new(d.loop, d.store, dir, &d.registry, &err), 0);
    api.registry = d.registry;
    if (http_server_new(d.loop, "127.0.0.1", 0, api_routes, api_nroutes, &api, NULL, &d.http,
                        &err) < 0)
        fail_msg("%s", err.message);
    struct registry_hooks hooks = {
        .describe = on_describe, .updated = on_updated, .drain = on_drain};
    registry_set_hooks(d.registry, &hooks);

    snprintf(src, sizeof(src), "%s/src", dir);
    assert_int_equal(mkdir_p(src, 0755), 0);
    snprintf(path, sizeof(path), "%s/function.json", src);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const char *m = "{\"name\":\"hooked\",\"runtime\":\"provided\"}";
    assert_int_equal(write(fd, m, strlen(m)), (ssize_t)strlen(m));
    close(fd);
    assert_int_equal(bundle_pack_dir(src, 1 << 20, &cs.bundle, &cs.len, &err), 0);
    snprintf(path, sizeof(path), "%s/bootstrap", src);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd);
    assert_int_equal(bundle_pack_dir(src, 1 << 20, &cs.bundle2, &cs.len2, &err), 0);

    snprintf(url, sizeof(url), "http://127.0.0.1:%u", http_server_port(d.http));
    assert_int_equal(client_new(url, &cs.a), 0);
    assert_int_equal(client_new(url, &cs.b), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, driver, &cs), 0);
    assert_int_equal(loop_run(d.loop), 0);
    pthread_join(t, NULL);

    client_free(cs.a);
    client_free(cs.b);
    free(cs.bundle);
    free(cs.bundle2);
    http_server_free(d.http);
    registry_free(d.registry);
    loop_free(d.loop);
    store_free(d.store);
    rm_rf(dir);
}

/* ---- the domain functions, without HTTP ---- */

/* A registry on a loop, in a temporary state dir. */
struct fx {
    char dir[64];
    struct store *store;
    struct loop *loop;
    struct registry *reg;
    /* the drain hook's calls, and its done waiting for the test to call it */
    int drains;
    char drained[8][MANIFEST_NAME_MAX + 1];
    void (*drain_done)(void *ctx);
    void *drain_ctx[8];
    int updated;
};

/* What a done callback reported (copied: the result is valid during the call only). */
struct reported {
    bool called;
    int code; /* 0: success */
    const char *reason;
    char message[512];
    char name[MANIFEST_NAME_MAX + 1];
    uint32_t version;
    char digest[BUNDLE_DIGEST_LEN + 1];
    bool created;
    size_t bundles_removed;
    size_t n_deployed, n_removed;
    bool deployed_created[4];
    char removed[4][MANIFEST_NAME_MAX + 1];
    size_t n_pruned;
    uint32_t pruned[4];
    struct loop *loop;
};

static void fx_drain(void *userdata, const struct registry_function *f, void (*done)(void *ctx),
                     void *ctx)
{
    struct fx *fx = userdata;
    assert_true(f->deleting);
    assert_true(fx->drains < 8);
    snprintf(fx->drained[fx->drains], sizeof(fx->drained[0]), "%s", f->name);
    fx->drain_ctx[fx->drains++] = ctx;
    fx->drain_done = done;
    loop_quit(fx->loop); /* a deploy's prune drains from the loop: the test takes over */
}

static void fx_updated(void *userdata, const struct registry_function *f)
{
    ((struct fx *)userdata)->updated++;
}

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct ig_error err = {};
    char path[128];
    strcpy(fx->dir, "/tmp/ignis-registry-test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(path, sizeof(path), "%s/ignis.db", fx->dir);
    assert_int_equal(store_open(path, &fx->store, &err), 0);
    assert_int_equal(loop_new(&fx->loop), 0);
    assert_int_equal(registry_new(fx->loop, fx->store, fx->dir, &fx->reg, &err), 0);
    struct registry_hooks hooks = {.updated = fx_updated, .drain = fx_drain, .userdata = fx};
    registry_set_hooks(fx->reg, &hooks);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    registry_free(fx->reg);
    loop_free(fx->loop);
    store_free(fx->store);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

static void on_done(void *userdata, const struct ig_error *err, const struct registry_result *res)
{
    struct reported *o = userdata;
    assert_false(o->called); /* exactly once */
    o->called = true;
    assert_true((err == NULL) != (res == NULL));
    if (err) {
        o->code = err->code;
        o->reason = err->reason;
        snprintf(o->message, sizeof(o->message), "%s", err->message);
    } else {
        snprintf(o->name, sizeof(o->name), "%s", res->name);
        o->version = res->version;
        snprintf(o->digest, sizeof(o->digest), "%s", res->digest ? res->digest : "");
        o->created = res->created;
        o->bundles_removed = res->bundles_removed;
        o->n_deployed = res->n_deployed;
        for (size_t i = 0; i < res->n_deployed && i < 4; i++)
            o->deployed_created[i] = res->deployed[i].created;
        o->n_pruned = res->n_pruned;
        for (size_t i = 0; i < res->n_pruned && i < 4; i++)
            o->pruned[i] = res->pruned[i];
        o->n_removed = res->n_removed;
        for (size_t i = 0; i < res->n_removed && i < 4; i++)
            snprintf(o->removed[i], sizeof(o->removed[i]), "%s", res->removed[i]);
    }
    loop_quit(o->loop);
}

/* Runs the loop until the op's done was called. */
static void wait_done(struct fx *fx, struct reported *o)
{
    if (!o->called)
        assert_int_equal(loop_run(fx->loop), 0);
    assert_true(o->called);
}

/* Creates path with text (the test's own files). */
static void put_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* A bundle whose function.json is json, packed from a fresh directory; extra adds a file so the
 * bytes differ. */
static void make_bundle(struct fx *fx, const char *json, const char *extra, char **ret,
                        size_t *ret_len)
{
    static int n;
    char src[128], path[256];
    struct ig_error err = {};
    snprintf(src, sizeof(src), "%s/src%d", fx->dir, n++);
    assert_int_equal(mkdir_p(src, 0755), 0);
    snprintf(path, sizeof(path), "%s/function.json", src);
    put_file(path, json);
    if (extra) {
        snprintf(path, sizeof(path), "%s/%s", src, extra);
        put_file(path, "x\n");
    }
    assert_int_equal(bundle_pack_dir(src, 1 << 20, ret, ret_len, &err), 0);
}

static void push(struct fx *fx, const char *name, const char *bundle, size_t len,
                 struct reported *o)
{
    struct ig_error err = {};
    *o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_push(fx->reg, name, bundle, len, on_done, o, &err), 0);
    wait_done(fx, o);
}

#define GOOD "{\"name\":\"good\",\"runtime\":\"provided\"}"

static void test_push(void **state)
{
    struct fx *fx = *state;
    _cleanup_free_ char *b = NULL;
    size_t len;
    struct reported o;
    char digest[BUNDLE_DIGEST_LEN + 1];

    make_bundle(fx, GOOD, NULL, &b, &len);
    bundle_digest(b, len, digest);
    push(fx, "good", b, len, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.name, "good");
    assert_int_equal(o.version, 1);
    assert_string_equal(o.digest, digest);
    assert_true(o.created);
    assert_int_equal(fx->updated, 1);
    const struct registry_function *f = registry_lookup(fx->reg, "good");
    assert_non_null(f);
    assert_int_equal(f->version, 1);

    /* The same bytes again: the current version, nothing recorded. */
    push(fx, "good", b, len, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.version, 1);
    assert_string_equal(o.digest, digest);
    assert_false(o.created);
    assert_int_equal(fx->updated, 1);

    /* Refused at once, done not called: a name that cannot be one, an empty bundle, one over
     * the limit (whoever calls: the HTTP route's body limit is not the only guard). */
    struct ig_error err = {};
    assert_int_equal(registry_push(fx->reg, "Bad_Name", b, len, on_done, &o, &err), -EINVAL);
    assert_string_equal(err.reason, "invalid_name");
    ig_error_clear(&err);
    assert_int_equal(registry_push(fx->reg, "good", b, 0, on_done, &o, &err), -EINVAL);
    assert_string_equal(err.reason, "invalid_bundle");
    ig_error_clear(&err);
    assert_int_equal(
        registry_push(fx->reg, "good", b, REGISTRY_MAX_BUNDLE + 1ul, on_done, &o, &err), -EFBIG);
    ig_error_clear(&err);
    assert_int_equal(
        registry_deploy(fx->reg, "svc", b, SERVICE_ARCHIVE_MAX + 1ul, on_done, &o, &err), -EFBIG);
    assert_int_equal(fx->updated, 1);
}

/* Every version stays in memory, the older ones with their own manifests, and comes back at a
 * restart; a route names one by number or takes the default alias's. */
static void test_versions_kept(void **state)
{
    struct fx *fx = *state;
    _cleanup_free_ char *b1 = NULL, *b2 = NULL;
    size_t l1, l2;
    struct reported o;
    struct ig_error err = {};
    const struct registry_version *v;
    const char *alias;

    make_bundle(fx, "{\"name\":\"good\",\"runtime\":\"provided\",\"memory_mb\":128}", NULL, &b1,
                &l1);
    make_bundle(fx, "{\"name\":\"good\",\"runtime\":\"provided\",\"memory_mb\":256}", NULL, &b2,
                &l2);
    push(fx, "good", b1, l1, &o);
    push(fx, "good", b2, l2, &o);
    assert_int_equal(o.version, 2);

    for (int restart = 0; restart < 2; restart++) {
        const struct registry_function *f = registry_lookup(fx->reg, "good");
        assert_int_equal(f->n_versions, 2);
        assert_int_equal(f->versions[0]->version, 1);
        assert_int_equal(f->versions[0]->manifest->memory_mb, 128);
        assert_int_equal(f->versions[1]->version, 2);
        assert_ptr_equal(f->versions[1]->manifest, f->manifest);
        assert_string_not_equal(f->versions[0]->bundle_dir, f->versions[1]->bundle_dir);

        assert_int_equal(registry_route(f, NULL, &v, &alias, &err), 0);
        assert_int_equal(v->version, 2);
        assert_string_equal(alias, REGISTRY_DEFAULT_ALIAS);
        assert_int_equal(registry_route(f, "1", &v, &alias, &err), 0);
        assert_int_equal(v->version, 1);
        assert_null(alias);
        assert_int_equal(registry_route(f, "3", &v, &alias, &err), -ENOENT);
        assert_string_equal(err.reason, "version_not_found");
        ig_error_clear(&err);
        assert_int_equal(registry_route(f, "01", &v, &alias, &err), -EINVAL);
        assert_string_equal(err.reason, "invalid_alias");
        ig_error_clear(&err);

        registry_free(fx->reg);
        assert_int_equal(registry_new(fx->loop, fx->store, fx->dir, &fx->reg, &err), 0);
    }
}

/* ---- versions and aliases ---- */

static uint32_t drained_versions[16];
static size_t n_drained_versions;

/* The dispatcher's drain of one version, done at once. */
static void fx_drain_version(void *userdata, const struct registry_function *f,
                             const struct registry_version *v, void (*done)(void *ctx), void *ctx)
{
    assert_int_not_equal(v->version, f->version);
    assert_true(n_drained_versions < ARRAY_SIZE(drained_versions));
    drained_versions[n_drained_versions++] = v->version;
    done(ctx);
}

static void fx_version_hooks(struct fx *fx)
{
    struct registry_hooks hooks = {.updated = fx_updated,
                                   .drain = fx_drain,
                                   .drain_version = fx_drain_version,
                                   .userdata = fx};
    registry_set_hooks(fx->reg, &hooks);
    fx->updated = 0;
    n_drained_versions = 0;
}

/* Pushes n versions of "good" (each with its own memory_mb, so each bundle differs). */
static void push_versions(struct fx *fx, int n, bool promote, struct reported *o)
{
    static int seq;
    for (int i = 0; i < n; i++) {
        char json[128];
        _cleanup_free_ char *b = NULL;
        size_t len;
        struct ig_error err = {};
        snprintf(json, sizeof(json),
                 "{\"name\":\"good\",\"runtime\":\"provided\",\"memory_mb\":%d}", 128 + ++seq);
        make_bundle(fx, json, NULL, &b, &len);
        *o = (struct reported){.loop = fx->loop};
        assert_int_equal(registry_push_version(fx->reg, "good", b, len, promote, on_done, o, &err),
                         0);
        wait_done(fx, o);
        assert_int_equal(o->code, 0);
    }
}

static void set_alias(struct fx *fx, const char *alias, const uint32_t *v, const uint32_t *w,
                      size_t n, struct reported *o)
{
    struct ig_error err = {};
    *o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_set_alias(fx->reg, "good", alias, v, w, n, on_done, o, &err), 0);
    wait_done(fx, o);
}

static const struct registry_function *good(struct fx *fx)
{
    return registry_lookup(fx->reg, "good");
}

/* A function has at most REGISTRY_ALIASES_MAX aliases, default included; one that exists may
 * still be moved. */
static void test_alias_cap(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    const uint32_t one = 1, all = 100;
    char name[32];
    push_versions(fx, 1, true, &o);
    for (int i = 1; i < REGISTRY_ALIASES_MAX; i++) {
        snprintf(name, sizeof(name), "a%d", i);
        set_alias(fx, name, &one, &all, 1, &o);
        assert_int_equal(o.code, 0);
    }
    assert_int_equal(good(fx)->n_aliases, REGISTRY_ALIASES_MAX);
    set_alias(fx, "one-more", &one, &all, 1, &o);
    assert_int_equal(o.code, EBUSY);
    assert_string_equal(o.reason, "too_many_aliases");
    set_alias(fx, "a1", &one, &all, 1, &o);
    assert_int_equal(o.code, 0);
}

/* Malformed aliases are refused at once with their reason; a version that is not kept when the
 * op runs. */
static void test_alias_validation(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    struct ig_error err = {};
    push_versions(fx, 2, true, &o);
    const uint32_t v12[] = {1, 2}, v5[] = {1, 2, 3, 4, 5};
    const struct {
        const char *alias;
        const uint32_t *v;
        uint32_t w[5];
        size_t n;
        const char *reason;
    } bad[] = {
        {"canary", v12, {90, 20}, 2, "invalid_weights"}, /* 110 */
        {"canary", v12, {90, 5}, 2, "invalid_weights"},  /* 95 */
        {"canary", v12, {100, 0}, 2, "invalid_weights"}, /* a zero weight */
        {"canary", v5, {20, 20, 20, 20, 20}, 5, "invalid_weights"},
        {"canary", v12, {50, 50}, 0, "invalid_weights"}, /* no version */
        {"3", v12, {50, 50}, 2, "invalid_alias"},        /* a version number */
        {"Canary", v12, {50, 50}, 2, "invalid_alias"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(registry_set_alias(fx->reg, "good", bad[i].alias, bad[i].v, bad[i].w,
                                            bad[i].n, on_done, &o, &err),
                         -EINVAL);
        assert_string_equal(err.reason, bad[i].reason);
        ig_error_clear(&err);
    }
    const uint32_t v19[] = {1, 9}, w[] = {50, 50};
    set_alias(fx, "canary", v19, w, 2, &o);
    assert_int_equal(o.code, ENOENT);
    assert_string_equal(o.reason, "version_not_found");
    assert_null(registry_alias(good(fx), "canary"));
    assert_int_equal(registry_delete_alias(fx->reg, "good", "default", on_done, &o, &err), -EBUSY);
    assert_string_equal(err.reason, "conflict");
    ig_error_clear(&err);
    /* A function that does not exist is not found, before its default is refused. */
    assert_int_equal(registry_delete_alias(fx->reg, "nope", "default", on_done, &o, &err), -ENOENT);
    assert_string_equal(err.reason, "not_found");
    ig_error_clear(&err);
    assert_int_equal(registry_set_alias(fx->reg, "nope", "canary", v12, w, 2, on_done, &o, &err),
                     -ENOENT);
}

/* Any 100 consecutive routes of an alias give each version exactly its weight. */
static void test_alias_round_robin(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    struct ig_error err = {};
    const struct registry_version *v;
    const char *alias;
    push_versions(fx, 3, true, &o);
    const uint32_t vs[] = {2, 3}, ws[] = {90, 10}, v3[] = {1, 2, 3}, w3[] = {33, 33, 34};
    set_alias(fx, "canary", vs, ws, 2, &o);
    assert_int_equal(o.code, 0);
    int count[4] = {};
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(registry_route(good(fx), "canary", &v, &alias, &err), 0);
        assert_string_equal(alias, "canary");
        count[v->version]++;
        if (i == 99) {
            assert_int_equal(count[2], 90);
            assert_int_equal(count[3], 10);
        }
    }
    assert_int_equal(count[2], 900);
    assert_int_equal(count[3], 100);
    /* The weights come back at a restart, and the round-robin starts afresh. */
    registry_free(fx->reg);
    assert_int_equal(registry_new(fx->loop, fx->store, fx->dir, &fx->reg, &err), 0);
    fx_version_hooks(fx);
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(registry_route(good(fx), "canary", &v, &alias, &err), 0);
        count[v->version]++;
    }
    assert_int_equal(count[2], 90);
    assert_int_equal(count[3], 10);
    /* From any starting point too: a window of 100 in the middle of a three-way split. */
    set_alias(fx, "canary", v3, w3, 3, &o);
    for (int i = 0; i < 37; i++)
        registry_route(good(fx), "canary", &v, &alias, &err);
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(registry_route(good(fx), "canary", &v, &alias, &err), 0);
        count[v->version]++;
    }
    assert_int_equal(count[1], 33);
    assert_int_equal(count[2], 33);
    assert_int_equal(count[3], 34);
    /* The unqualified route is the default alias's; unknown aliases are named. */
    assert_int_equal(registry_route(good(fx), NULL, &v, &alias, &err), 0);
    assert_int_equal(v->version, 3);
    assert_string_equal(alias, "default");
    assert_int_equal(registry_route(good(fx), "stable", &v, &alias, &err), -ENOENT);
    assert_string_equal(err.reason, "alias_not_found");
}

/* At a restart, an alias that lost a version (its stored manifest, a newer ignisd's, does not
 * load here) points at its remaining primary alone, never off-weight; the others load whole. */
static void test_alias_repair(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    struct ig_error err = {};
    const struct registry_version *v;
    const char *alias;
    push_versions(fx, 2, true, &o);
    const uint32_t v12[] = {1, 2}, w12[] = {40, 60};
    set_alias(fx, "whole", v12, w12, 2, &o);
    assert_int_equal(o.code, 0);
    const struct functions_store_version row = {
        .name = "good",
        .version = 3,
        .digest = good(fx)->digest,
        .manifest = "{\"name\":\"good\",\"runtime\":\"provided\",\"from_the_future\":1}",
        .created_usec = 1,
        .updated_usec = 2,
        .bundle_bytes = 3,
    };
    assert_int_equal(functions_store_add_version(fx->store, &row, &err), 0);
    const uint32_t v123[] = {1, 2, 3}, w123[] = {20, 30, 50}, v23[] = {2, 3}, w23[] = {90, 10};
    assert_int_equal(functions_store_set_alias(fx->store, "good", "canary", v123, w123, 3, 0, &err),
                     0);
    assert_int_equal(functions_store_set_alias(fx->store, "good", "edge", v23, w23, 2, 0, &err), 0);

    registry_free(fx->reg);
    assert_int_equal(registry_new(fx->loop, fx->store, fx->dir, &fx->reg, &err), 0);
    fx_version_hooks(fx);
    assert_int_equal(good(fx)->version, 2);
    assert_null(registry_version(good(fx), 3));
    const char *names[] = {"canary", "edge"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        const struct registry_alias *a = registry_alias(good(fx), names[i]);
        assert_non_null(a);
        assert_int_equal(a->n, 1);
        assert_int_equal(a->versions[0], 2); /* canary's 30 outweighs its 20 */
        assert_int_equal(a->weights[0], ALIAS_TOTAL_WEIGHT);
        for (int j = 0; j < 100; j++) {
            assert_int_equal(registry_route(good(fx), names[i], &v, &alias, &err), 0);
            assert_int_equal(v->version, 2);
        }
    }
    const struct registry_alias *whole = registry_alias(good(fx), "whole");
    assert_int_equal(whole->n, 2);
    assert_int_equal(whole->weights[0], 40);
    assert_int_equal(whole->weights[1], 60);
    assert_int_equal(registry_alias(good(fx), "default")->versions[0], 2);
}

/* The default's primary (highest weight, a tie to the newer) is the current version. */
static void test_default_weighted(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    push_versions(fx, 2, true, &o);
    fx_version_hooks(fx);
    const uint32_t vs[] = {1, 2}, tie[] = {50, 50}, old[] = {60, 40};
    set_alias(fx, "default", vs, tie, 2, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(good(fx)->version, 2);
    assert_int_equal(fx->updated, 0); /* unchanged */
    set_alias(fx, "default", vs, old, 2, &o);
    assert_int_equal(good(fx)->version, 1);
    assert_int_equal(good(fx)->manifest->memory_mb, good(fx)->versions[0]->manifest->memory_mb);
    assert_int_equal(fx->updated, 1);
}

/* Rollback moves the default at once; numbers go on past the highest ever given, across a
 * restart; a push without promote leaves the default where it was. */
static void test_rollback_numbering(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    struct ig_error err = {};
    push_versions(fx, 4, true, &o);
    fx_version_hooks(fx);
    o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_rollback(fx->reg, "good", 0, on_done, &o, &err), 0);
    wait_done(fx, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.version, 3);
    assert_int_equal(good(fx)->version, 3);
    assert_int_equal(fx->updated, 1);
    o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_rollback(fx->reg, "good", 7, on_done, &o, &err), 0);
    wait_done(fx, &o);
    assert_int_equal(o.code, ENOENT);
    assert_string_equal(o.reason, "version_not_found");

    registry_free(fx->reg);
    assert_int_equal(registry_new(fx->loop, fx->store, fx->dir, &fx->reg, &err), 0);
    fx_version_hooks(fx);
    assert_int_equal(good(fx)->version, 3);
    assert_int_equal(registry_alias(good(fx), "default")->versions[0], 3);
    push_versions(fx, 1, true, &o);
    assert_int_equal(o.version, 5);
    assert_int_equal(good(fx)->version, 5);
    push_versions(fx, 1, false, &o);
    assert_int_equal(o.version, 6);
    assert_true(o.created);
    assert_int_equal(good(fx)->version, 5);
    assert_non_null(registry_version(good(fx), 6));
    assert_int_equal(registry_alias(good(fx), "default")->versions[0], 5);
}

/* keep_versions: the oldest go after a new version, drained first, their bundles removed; an
 * alias's target and the current one stay. */
static void test_prune_keeps_alias_targets(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    struct ig_error err = {};
    char bundles[128];
    snprintf(bundles, sizeof(bundles), "%s/bundles", fx->dir);
    registry_set_keep_versions(fx->reg, 2);
    fx_version_hooks(fx);
    push_versions(fx, 2, true, &o);
    const uint32_t one = 1, all = 100;
    set_alias(fx, "pinned", &one, &all, 1, &o);
    push_versions(fx, 1, true, &o); /* 3: 1 is over, but pinned */
    assert_int_equal(o.n_pruned, 0);
    char d2[BUNDLE_DIGEST_LEN + 1];
    snprintf(d2, sizeof(d2), "%s", registry_version(good(fx), 2)->digest);
    push_versions(fx, 1, true, &o); /* 4: 1 and 2 are over; 2 goes */
    assert_int_equal(o.n_pruned, 1);
    assert_int_equal(o.pruned[0], 2);
    assert_int_equal(n_drained_versions, 1);
    assert_int_equal(drained_versions[0], 2);
    const struct registry_function *f = good(fx);
    assert_int_equal(f->n_versions, 3);
    assert_non_null(registry_version(f, 1));
    assert_null(registry_version(f, 2));
    assert_false(bundle_exists(bundles, d2));
    /* And after a restart. */
    registry_free(fx->reg);
    assert_int_equal(registry_new(fx->loop, fx->store, fx->dir, &fx->reg, &err), 0);
    assert_int_equal(good(fx)->n_versions, 3);
    assert_null(registry_version(good(fx), 2));
    assert_int_equal(registry_alias(good(fx), "pinned")->versions[0], 1);
}

/* A drain of a version the test finishes itself, as the dispatcher does once what runs it ends. */
static void (*held_done)(void *ctx);
static void *held_ctx;

static void fx_hold_version(void *userdata, const struct registry_function *f,
                            const struct registry_version *v, void (*done)(void *ctx), void *ctx)
{
    held_done = done;
    held_ctx = ctx;
    loop_quit(((struct fx *)userdata)->loop);
}

/* While a pruned version drains, no route reaches it (a new run of it would outlive its
 * manifest and bundle); the prune ends once the drain is done. */
static void test_prune_unroutable_while_draining(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    struct ig_error err = {};
    const struct registry_version *v;
    const char *alias;
    push_versions(fx, 1, true, &o);
    registry_set_keep_versions(fx->reg, 1);
    struct registry_hooks hooks = {.drain_version = fx_hold_version, .userdata = fx};
    registry_set_hooks(fx->reg, &hooks);
    char json[] = "{\"name\":\"good\",\"runtime\":\"provided\",\"memory_mb\":512}";
    _cleanup_free_ char *b = NULL;
    size_t len;
    make_bundle(fx, json, NULL, &b, &len);
    o = (struct reported){.loop = fx->loop};
    held_done = NULL;
    assert_int_equal(registry_push(fx->reg, "good", b, len, on_done, &o, &err), 0);
    assert_int_equal(loop_run(fx->loop), 0); /* until the drain of version 1 */
    assert_non_null(held_done);
    assert_false(o.called);
    assert_null(registry_version(good(fx), 1));
    assert_int_equal(registry_route(good(fx), "1", &v, &alias, &err), -ENOENT);
    assert_string_equal(err.reason, "version_not_found");
    ig_error_clear(&err);
    held_done(held_ctx);
    wait_done(fx, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.n_pruned, 1);
    assert_int_equal(good(fx)->n_versions, 1);
}

static void delete_version(struct fx *fx, uint32_t version, struct reported *o)
{
    struct ig_error err = {};
    *o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_delete_version(fx->reg, "good", version, on_done, o, &err), 0);
    wait_done(fx, o);
}

/* A version's delete is refused for the current one and an alias's target. */
static void test_delete_version(void **state)
{
    struct fx *fx = *state;
    struct reported o;
    push_versions(fx, 3, true, &o);
    fx_version_hooks(fx);
    const uint32_t one = 1, all = 100;
    set_alias(fx, "pinned", &one, &all, 1, &o);
    delete_version(fx, 3, &o);
    assert_int_equal(o.code, EBUSY);
    assert_string_equal(o.reason, "conflict");
    delete_version(fx, 1, &o);
    assert_int_equal(o.code, EBUSY);
    assert_non_null(strstr(o.message, "pinned"));
    delete_version(fx, 9, &o);
    assert_int_equal(o.code, ENOENT);
    assert_string_equal(o.reason, "version_not_found");
    assert_int_equal(n_drained_versions, 0);
    delete_version(fx, 2, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.version, 2);
    assert_int_equal(o.bundles_removed, 1);
    assert_int_equal(n_drained_versions, 1);
    assert_null(registry_version(good(fx), 2));
    assert_int_equal(good(fx)->n_versions, 2);
}

static void test_push_bad_manifest(void **state)
{
    struct fx *fx = *state;
    _cleanup_free_ char *b = NULL;
    size_t len;
    struct reported o;
    char digest[BUNDLE_DIGEST_LEN + 1], bundles[128];

    make_bundle(fx, "{\"name\":\"good\",\"runtime\":\"cobol\"}", NULL, &b, &len);
    push(fx, "good", b, len, &o);
    assert_int_equal(o.code, EINVAL);
    assert_string_equal(o.reason, "invalid_manifest");
    assert_null(registry_lookup(fx->reg, "good"));
    /* Nothing of it is left in the bundle store. */
    bundle_digest(b, len, digest);
    snprintf(bundles, sizeof(bundles), "%s/bundles", fx->dir);
    assert_false(bundle_exists(bundles, digest));
}

static void test_push_name_mismatch(void **state)
{
    struct fx *fx = *state;
    _cleanup_free_ char *b = NULL;
    size_t len;
    struct reported o;

    make_bundle(fx, GOOD, NULL, &b, &len);
    push(fx, "other", b, len, &o);
    assert_int_equal(o.code, EEXIST);
    assert_string_equal(o.reason, "name_mismatch");
    assert_non_null(strstr(o.message, "\"good\""));
    assert_null(registry_lookup(fx->reg, "other"));
}

/* Calls the drain hook's done for its i-th call, as the dispatcher does once drained. */
static void drained(struct fx *fx, int i)
{
    fx->drain_done(fx->drain_ctx[i]);
}

static void test_delete(void **state)
{
    struct fx *fx = *state;
    _cleanup_free_ char *b = NULL;
    size_t len;
    struct reported o, del = {.loop = fx->loop};
    struct ig_error err = {};
    char digest[BUNDLE_DIGEST_LEN + 1], bundles[128];

    assert_int_equal(registry_delete(fx->reg, "nobody", on_done, &del, &err), -ENOENT);
    assert_string_equal(err.reason, "not_found");
    ig_error_clear(&err);

    make_bundle(fx, GOOD, NULL, &b, &len);
    push(fx, "good", b, len, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(registry_delete(fx->reg, "good", on_done, &del, &err), 0);
    assert_int_equal(fx->drains, 1);
    assert_string_equal(fx->drained[0], "good");
    assert_true(registry_lookup(fx->reg, "good")->deleting);

    /* While it drains: another delete and a push are conflicts, and the delete waits. */
    struct reported other = {.loop = fx->loop};
    assert_int_equal(registry_delete(fx->reg, "good", on_done, &other, &err), -EBUSY);
    assert_string_equal(err.reason, "conflict");
    ig_error_clear(&err);
    assert_int_equal(registry_push(fx->reg, "good", b, len, on_done, &other, &err), -EBUSY);
    assert_string_equal(err.reason, "conflict");
    assert_false(del.called);
    assert_false(other.called);

    drained(fx, 0);
    wait_done(fx, &del);
    assert_int_equal(del.code, 0);
    assert_string_equal(del.name, "good");
    assert_int_equal(del.version, 1);
    assert_int_equal(del.bundles_removed, 1);
    assert_null(registry_lookup(fx->reg, "good"));
    bundle_digest(b, len, digest);
    snprintf(bundles, sizeof(bundles), "%s/bundles", fx->dir);
    assert_false(bundle_exists(bundles, digest));
}

/* A deploy archive of service "svc" listing the functions names[0..n), with their bundles. */
static void make_archive(const char *const *names, char *const *bundles, const size_t *lens,
                         size_t n, char **ret, size_t *ret_len)
{
    char json[256];
    struct ig_error err = {};
    int k = snprintf(json, sizeof(json), "{\"name\":\"svc\",\"functions\":{");
    for (size_t i = 0; i < n; i++)
        k += snprintf(json + k, sizeof(json) - (size_t)k, "%s\"%s\":{}", i ? "," : "", names[i]);
    snprintf(json + k, sizeof(json) - (size_t)k, "}}");
    assert_int_equal(
        service_archive_pack(json, strlen(json), names, bundles, lens, n, ret, ret_len, &err), 0);
}

static void deploy(struct fx *fx, const char *body, size_t len, struct reported *o)
{
    struct ig_error err = {};
    *o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_deploy(fx->reg, "svc", body, len, on_done, o, &err), 0);
}

/* A deploy's new versions are pruned to keep_versions as a push's are, each function on its own,
 * after the deploy (its done says nothing of them). */
static void test_deploy_prunes_versions(void **state)
{
    struct fx *fx = *state;
    static const char *const names[] = {"a"};
    struct reported o;
    registry_set_keep_versions(fx->reg, 2);
    fx_version_hooks(fx);
    for (int i = 1; i <= 3; i++) {
        char json[128], *bundle, *archive;
        size_t len, alen;
        snprintf(json, sizeof(json), "{\"name\":\"a\",\"runtime\":\"provided\",\"memory_mb\":%d}",
                 128 * i);
        make_bundle(fx, json, NULL, &bundle, &len);
        make_archive(names, &bundle, &len, 1, &archive, &alen);
        deploy(fx, archive, alen, &o);
        wait_done(fx, &o);
        assert_int_equal(o.code, 0);
        assert_true(o.deployed_created[0]);
        /* The same archive again: nothing new, and its done comes after the prune the deploy
         * before it queued. */
        deploy(fx, archive, alen, &o);
        wait_done(fx, &o);
        assert_false(o.deployed_created[0]);
        free(bundle);
        free(archive);
    }
    const struct registry_function *f = registry_lookup(fx->reg, "a");
    assert_int_equal(f->version, 3);
    assert_int_equal(f->n_versions, 2);
    assert_null(registry_version(f, 1));
    assert_int_equal(n_drained_versions, 1);
    assert_int_equal(drained_versions[0], 1);
}

static void test_deploy_prunes(void **state)
{
    struct fx *fx = *state;
    static const char *const names[] = {"a", "b"};
    char *bundles[2];
    size_t lens[2];
    _cleanup_free_ char *ab = NULL, *a = NULL;
    size_t ab_len, a_len;
    struct reported o;
    struct ig_error err = {};

    make_bundle(fx, "{\"name\":\"a\",\"runtime\":\"provided\"}", NULL, &bundles[0], &lens[0]);
    make_bundle(fx, "{\"name\":\"b\",\"runtime\":\"provided\"}", NULL, &bundles[1], &lens[1]);
    make_archive(names, bundles, lens, 2, &ab, &ab_len);
    deploy(fx, ab, ab_len, &o);
    wait_done(fx, &o);
    assert_int_equal(o.code, 0);
    assert_string_equal(o.name, "svc");
    assert_int_equal(o.n_deployed, 2);
    assert_true(o.deployed_created[0] && o.deployed_created[1]);
    assert_int_equal(o.n_removed, 0);
    assert_string_equal(registry_lookup(fx->reg, "b")->service, "svc");

    /* service.json lists only a now: b drains like a delete, then the deploy is done. */
    make_archive(names, bundles, lens, 1, &a, &a_len);
    free(bundles[0]);
    free(bundles[1]);
    deploy(fx, a, a_len, &o);
    assert_int_equal(loop_run(fx->loop), 0); /* until the drain hook */
    assert_int_equal(fx->drains, 1);
    assert_string_equal(fx->drained[0], "b");
    assert_false(o.called);
    drained(fx, 0);
    wait_done(fx, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.n_deployed, 1);
    assert_false(o.deployed_created[0]); /* a did not change */
    assert_int_equal(o.n_removed, 1);
    assert_string_equal(o.removed[0], "b");
    assert_null(registry_lookup(fx->reg, "b"));
    assert_non_null(registry_lookup(fx->reg, "a"));
    assert_non_null(registry_find_service(fx->reg, "svc", &err));

    /* The service goes, with a. */
    o = (struct reported){.loop = fx->loop};
    assert_int_equal(registry_undeploy(fx->reg, "svc", on_done, &o, &err), 0);
    assert_int_equal(fx->drains, 2);
    assert_string_equal(fx->drained[1], "a");
    drained(fx, 1);
    wait_done(fx, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.n_removed, 1);
    assert_string_equal(o.removed[0], "a");
    assert_int_equal(o.bundles_removed, 1);
    assert_null(registry_lookup(fx->reg, "a"));
    assert_null(registry_find_service(fx->reg, "svc", &err));
    assert_int_equal(err.code, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hooks),
        cmocka_unit_test_setup_teardown(test_push, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_versions_kept, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_alias_validation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_alias_round_robin, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_alias_repair, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_default_weighted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rollback_numbering, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_alias_targets, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prune_unroutable_while_draining, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_version, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_alias_cap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_push_bad_manifest, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_push_name_mismatch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_deploy_prunes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_deploy_prunes_versions, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
