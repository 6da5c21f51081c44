/* The registry's contract with the dispatcher, in process: the updated hook on a new version,
 * describe filling GET's "live", and DELETE waiting for the drain hook's done (meanwhile the
 * function shows "deleting", and pushes and deletes of it are 409). The daemon's routes run on a
 * real loop and HTTP server on a loopback port; requests come from client threads. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
