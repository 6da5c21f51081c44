/* The function registry: which functions exist, their versions, manifests and bundles. It owns
 * the in-memory function table (loop thread only), the functions/function_versions tables of
 * the store, the bundle store under STATE_DIR/bundles, and the /v1/functions routes.
 *
 * Mutations (push, delete) run one at a time, in arrival order: bundle work (hashing, the
 * extracting child, removing trees) happens on a worker thread while the request is deferred,
 * and the result comes back to the loop through loop_post. Running them one at a time means a
 * bundle is never removed while a push that found it is still on its way to the store. */
#pragma once

#include <cjson/cJSON.h>
#include <stdint.h>

#include "functions/bundle.h"
#include "base/http.h"
#include "base/loop.h"
#include "functions/manifest.h"

struct registry;
struct store;

/* A function as the rest of the daemon sees it: its current version. Owned by the registry;
 * the pointer stays valid until the function is removed (after the drain hook said done). A new
 * version is written into the same struct (then the updated hook runs): copy what must outlive
 * it, such as bundle_dir for containers already started. */
struct registry_function {
    char name[MANIFEST_NAME_MAX + 1];
    uint32_t version;
    char digest[BUNDLE_DIGEST_LEN + 1];
    struct manifest *manifest;
    char bundle_dir[4200]; /* STATE_DIR/bundles/<digest>: what the shim mounts at /var/task */
    uint64_t created_usec; /* wall clock: first version */
    uint64_t updated_usec; /* wall clock: this version */
    uint64_t bundle_bytes; /* size of the pushed bundle (compressed) */
    bool deleting;         /* DELETE accepted; draining */
    char service[MANIFEST_NAME_MAX + 1]; /* the service it was deployed with; "" for none */
};

/* What the dispatcher plugs in. Every hook runs on the loop thread; all are optional.
 *
 * - describe: adds the function's live state to its "live" object in GET /v1/functions/{name}
 *   and in each entry of GET /v1/functions (ready, busy, spawning, queue_depth, ...). Without it
 *   those are reported as 0.
 * - updated: a new version became current (also called at start-up for each function). The
 *   dispatcher starts new containers from f->bundle_dir from now on.
 * - drain: DELETE was accepted for f (f->deleting is already set: refuse new invocations). The
 *   dispatcher lets in-flight invocations finish (or times them out), fails queued ones,
 *   destroys the function's containers, then calls done(ctx) exactly once, from the loop
 *   thread, possibly before drain returns. Only then are the function, its versions and its
 *   unreferenced bundles removed, and the DELETE answered. done must not be called after
 *   registry_free. */
struct registry_hooks {
    void (*describe)(void *userdata, const struct registry_function *f, cJSON *live);
    void (*updated)(void *userdata, const struct registry_function *f);
    void (*drain)(void *userdata, const struct registry_function *f, void (*done)(void *ctx),
                  void *ctx);
    void *userdata;
};

#define REGISTRY_MAX_BUNDLE (64u << 20) /* compressed bundle, the PUT body */

/* Loads the functions from the store, clears what an interrupted push left under
 * STATE_DIR/bundles/tmp and removes bundles no version references. */
int registry_new(struct loop *loop, struct store *store, const char *state_dir,
                 struct registry **ret, struct ig_error *err);
/* Waits for the worker (an extraction is bounded by the bundle limits), answers nothing: the
 * HTTP server answers the requests still waiting with 503. */
void registry_free(struct registry *r);

void registry_set_hooks(struct registry *r, const struct registry_hooks *hooks);

/* The function's current version, or NULL. */
const struct registry_function *registry_lookup(const struct registry *r, const char *name);
size_t registry_count(const struct registry *r);
/* The i-th function in name order (i < registry_count). */
const struct registry_function *registry_at(const struct registry *r, size_t i);

/* Route handlers; userdata is the struct daemon (api.c's table). */
void registry_http_put(struct http_request *req, void *userdata);
void registry_http_list(struct http_request *req, void *userdata);
void registry_http_get(struct http_request *req, void *userdata);
void registry_http_delete(struct http_request *req, void *userdata);
/* Services (docs/api.md "Services"): PUT takes a deploy archive (service.h). */
void registry_http_service_put(struct http_request *req, void *userdata);
void registry_http_service_list(struct http_request *req, void *userdata);
void registry_http_service_get(struct http_request *req, void *userdata);
void registry_http_service_delete(struct http_request *req, void *userdata);
