/* The function registry: which functions exist, their versions, manifests and bundles. It owns
 * the in-memory function table (loop thread only), the functions/function_versions tables of
 * the store (through records/functions_store.h), the bundle store under STATE_DIR/bundles, and
 * services (service.h). It knows no HTTP: api/functions.c serves it.
 *
 * Mutations (push, delete, deploy, undeploy, aliases, rollback, a version's delete) run one at a
 * time, in arrival order: bundle work (hashing, the extracting child, removing trees) happens on a
 * worker thread while the caller waits for done, and the result comes back to the loop through
 * loop_post. Running them one at a time means a bundle is never removed while a push that found it
 * is still on its way to the store. */
#pragma once

#include <cjson/cJSON.h>
#include <stdint.h>

#include "functions/alias.h"
#include "functions/bundle.h"
#include "base/loop.h"
#include "functions/manifest.h"

struct registry;
struct store;

/* The alias every function has: what an unqualified invocation, the function's events and its
 * schedule go through (docs/architecture.md "Versions and aliases"). */
#define REGISTRY_DEFAULT_ALIAS "default"
/* Aliases a function may have, default included (409 too_many_aliases past it). */
#define REGISTRY_ALIASES_MAX 64

/* One kept version of a function. Owned by the registry; the pointer stays valid until the
 * version is pruned or deleted (after the drain_version hook said done) or its function is
 * removed. */
struct registry_version {
    uint32_t version;
    char digest[BUNDLE_DIGEST_LEN + 1];
    struct manifest *manifest;
    char bundle_dir[4200]; /* STATE_DIR/bundles/<digest> */
    uint64_t created_usec; /* wall clock: when this version was made */
    uint64_t bundle_bytes;
    /* Being pruned or deleted (draining): registry_version and registry_route no longer find
     * it, so nothing new starts on it while what runs it drains. */
    bool removing;
    /* Its bundle is not in this host's cache yet: being read from the store, checked against
     * its digest and unpacked (fetching), or refused ("" otherwise: the reason). registry_route
     * routes to neither. */
    bool fetching;
    char bundle_error[256];
    /* The last fetch failed for a reason of this host's (its disk full, its memory, the store out
     * of reach), not of the store's copy (bytes that do not match their digest): a peer may well
     * run the version, and this host fetches it again at its next re-read. */
    bool fetch_failed_here;
};

/* A function as the rest of the daemon sees it: its current version (the default alias's
 * primary one), and every version it keeps. Owned by the registry; the pointer stays valid until
 * the function is removed (after the drain hook said done). A new current version is written
 * into the same struct (then the updated hook runs): copy what must outlive it, such as
 * bundle_dir for containers already started. manifest is the current version's entry's. */
struct registry_function {
    char name[MANIFEST_NAME_MAX + 1];
    uint32_t version;
    char digest[BUNDLE_DIGEST_LEN + 1];
    struct manifest *manifest;
    char bundle_dir[4200]; /* STATE_DIR/bundles/<digest>: what the shim mounts at /var/task */
    uint64_t created_usec; /* wall clock: first version */
    uint64_t updated_usec; /* wall clock: this version */
    uint64_t bundle_bytes; /* size of the pushed bundle (compressed) */
    bool deleting;         /* a delete was accepted; draining */
    char service[MANIFEST_NAME_MAX + 1]; /* the service it was deployed with; "" for none */
    struct registry_version **versions;  /* every kept version, oldest first, the current too */
    size_t n_versions;
    /* its aliases by name, `default` among them; an alias's pointer stays valid until it is
     * removed (a change is written into it) */
    struct registry_alias **aliases;
    size_t n_aliases;
    uint32_t max_version; /* the highest number it ever gave: the next version is one more */
};

/* What the dispatcher plugs in. Every hook runs on the loop thread; all are optional.
 *
 * - describe: adds the function's live state to its "live" object in GET /v1/functions/{name}
 *   and in each entry of GET /v1/functions (ready, busy, spawning, queue_depth, ...). Without it
 *   those are reported as 0.
 * - updated: a new version became current (also called at start-up for each function), or its
 *   bundle, fetched from a shared store, arrived. The dispatcher starts new containers from
 *   f->bundle_dir from now on, once the current version is not fetching (registry_version).
 * - drain: a delete was accepted for f (f->deleting is already set: refuse new invocations). The
 *   dispatcher lets in-flight invocations finish (or times them out), fails queued ones,
 *   destroys the function's containers, then calls done(ctx) exactly once, from the loop
 *   thread, possibly before drain returns. Only then are the function, its versions and its
 *   unreferenced bundles removed, and the delete's done called. done must not be called after
 *   registry_free. */
struct registry_hooks {
    void (*describe)(void *userdata, const struct registry_function *f, cJSON *live);
    void (*updated)(void *userdata, const struct registry_function *f);
    void (*drain)(void *userdata, const struct registry_function *f, void (*done)(void *ctx),
                  void *ctx);
    /* drain_version: version v of f (not its current one) is about to be pruned or deleted. As
     * drain, for what runs that version; v, its manifest and bundle stay until done. */
    void (*drain_version)(void *userdata, const struct registry_function *f,
                          const struct registry_version *v, void (*done)(void *ctx), void *ctx);
    void *userdata;
};

#define REGISTRY_MAX_BUNDLE (64u << 20) /* compressed bundle, the PUT body */

/* Loads the functions from the store, clears what an interrupted push left under
 * STATE_DIR/bundles/tmp and removes bundles no version references. A version whose bundle this
 * host has not unpacked (another host pushed it) has its bytes read from the store, checked
 * against its digest and unpacked on the worker; until then registry_route refuses it. A bundle
 * kept unpacked but not in the store (a state dir from before the store held bundles) is packed
 * and stored first, its versions renamed to the new bytes' digest. */
int registry_new(struct loop *loop, struct store *store, const char *state_dir,
                 struct registry **ret, struct ig_error *err);
/* Waits for the worker (an extraction is bounded by the bundle limits) and calls no done: the
 * callers still waiting are told by their own means (the HTTP server answers 503), and must not
 * call registry_detach afterwards. */
void registry_free(struct registry *r);

void registry_set_hooks(struct registry *r, const struct registry_hooks *hooks);
/* Where the runtime images are (IMAGES_DIR/<runtime>/). From then on a bundle is refused
 * (invalid_bundle) when it holds a native module its runtime's image cannot load, as that image
 * records (bundle_check_abi); an image that records nothing is not checked. Without it (the
 * unit tests), nothing is. Call it before the first mutation. */
void registry_set_images_dir(struct registry *r, const char *images_dir);

/* The function's current version, or NULL. */
const struct registry_function *registry_lookup(const struct registry *r, const char *name);
size_t registry_count(const struct registry *r);
/* The i-th function in name order (i < registry_count). */
const struct registry_function *registry_at(const struct registry *r, size_t i);

/* 0, or -EINVAL (invalid_name) when name is not a function or service name; kind ("function",
 * "service") names which in the message. */
int registry_check_name(const char *kind, const char *name, struct ig_error *err);
/* The function's current version; NULL with err: -EINVAL (invalid_name) for a name that cannot
 * be one, ENOENT when there is none. */
const struct registry_function *registry_find(const struct registry *r, const char *name,
                                              struct ig_error *err);
/* f's kept version numbered version, or NULL (also while it is being removed). */
const struct registry_version *registry_version(const struct registry_function *f,
                                                uint32_t version);
/* A version number as a selector or a path segment gives it: 1 to 9 decimal digits, no sign, no
 * leading zero. True with *ret; false (ret untouched) for anything else, an alias name too. */
bool registry_parse_version(const char *s, uint32_t *ret);
/* Where an invocation of f goes. selector: NULL or "" for the default alias; decimal digits for
 * that version; else an alias of f. Among an alias's versions it chooses by weight with a smooth
 * weighted round-robin, so any 100 consecutive routes of one alias give each version exactly its
 * weight. 0 with *ret (valid as registry_version's) and *ret_alias (the alias's name, valid until
 * the alias changes; NULL for a version number); or -errno with err: ENOENT version_not_found or
 * alias_not_found, EINVAL invalid_alias (not a version number nor an alias name), EAGAIN
 * bundle_unavailable (the version's bundle is not in this host's cache: being fetched from the
 * store, or refused there, the message saying why). */
int registry_route(const struct registry_function *f, const char *selector,
                   const struct registry_version **ret, const char **ret_alias,
                   struct ig_error *err);
/* registry_route without its EAGAIN: for an invocation any host sharing the store may run (an
 * async one on a shared queue), which a bundle missing from this host's cache does not stop. */
int registry_resolve(const struct registry_function *f, const char *selector,
                     const struct registry_version **ret, const char **ret_alias,
                     struct ig_error *err);
/* f's alias named name, or NULL. */
const struct registry_alias *registry_alias(const struct registry_function *f, const char *name);
/* Versions kept per function (1..1000; default 10): after each new version, the oldest beyond the
 * newest n are pruned, except the current one and alias targets, which are kept besides (the
 * current one counts among the newest n when it is one of them, as it is after a push). */
void registry_set_keep_versions(struct registry *r, uint32_t n);
/* Fills live with the function's live state (the describe hook; zeros without one). */
void registry_live(const struct registry *r, const struct registry_function *f, cJSON *live);

/* A service: its service.json as deployed. Its functions are those whose service it is. The
 * pointer is valid until the registry changes (loop thread). */
struct registry_service {
    char name[MANIFEST_NAME_MAX + 1];
    char *spec; /* JSON text */
    uint64_t created_usec, updated_usec;
    bool deleting; /* a delete (undeploy) was accepted; draining */
};

size_t registry_service_count(const struct registry *r);
/* The i-th service (i < registry_service_count), in no particular order. */
const struct registry_service *registry_service_at(const struct registry *r, size_t i);
/* As registry_find, for a service. */
const struct registry_service *registry_find_service(const struct registry *r, const char *name,
                                                     struct ig_error *err);

/* ---- mutations ----
 *
 * Each takes a done callback. It returns 0 when the mutation is under way: done then runs
 * exactly once on the loop thread, with err NULL and what was done, or err (an errno and a
 * reason, below) and result NULL; a delete whose drains finish at once may call it before the
 * call returns. Or it returns -errno with err (done is not called) when the mutation is refused
 * at once. The result is valid during the call only.
 *
 * Reasons: invalid_name (EINVAL), invalid_bundle (EINVAL: the bundle's content),
 * invalid_manifest (EINVAL), invalid_service (EINVAL), payload_too_large (EFBIG: a bundle
 * over REGISTRY_MAX_BUNDLE, a deploy archive over SERVICE_ARCHIVE_MAX or too big inside),
 * name_mismatch (EEXIST: function.json or service.json names another), conflict
 * (EBUSY: being deleted, owned by a service, ...; EEXIST: exists outside the service),
 * not_found (ENOENT), version_not_found (ENOENT: not a kept version), invalid_alias (EINVAL),
 * alias_not_found (ENOENT), invalid_weights (EINVAL: not 1..4 versions weighted 1..100 summing
 * to 100), insufficient_storage (ENOSPC or EDQUOT: the state dir's disk or quota is
 * full; a
 * delete that fails so leaves its functions whole, listed and invocable),
 * internal (EIO or ENOMEM: the daemon's own failure, disk, memory, threads;
 * the message says which). */

/* One function of a deploy as it was recorded. */
struct registry_deployed {
    const char *name;
    uint32_t version;
    const char *digest;
    bool created; /* a new version (its bundle or manifest changed) */
};

struct registry_result {
    const char *name; /* the function (push, delete) or service (deploy, undeploy) */
    /* push: the new version (promote=false too), or the current one when unchanged; delete: the
     * one removed */
    uint32_t version;
    const char *digest;     /* push: that version's */
    bool created;           /* push: a new version (false: the bytes of the current one) */
    size_t bundles_removed; /* delete, undeploy: bundles nothing references any more */
    /* deploy: each function service.json lists, in its order */
    const struct registry_deployed *deployed;
    size_t n_deployed;
    /* deploy: the functions it removed (the service lists them no more); undeploy: the
     * service's functions */
    const char (*removed)[MANIFEST_NAME_MAX + 1];
    size_t n_removed;
    /* push: the versions pruned after it (keep_versions), oldest first */
    const uint32_t *pruned;
    size_t n_pruned;
    /* alias set, rollback: the alias as it is now (rollback: default). version is the current
     * version afterwards for these and for an alias's delete; the one deleted for a version's. */
    const struct registry_alias *alias;
};

typedef void (*registry_done_fn)(void *userdata, const struct ig_error *err,
                                 const struct registry_result *result);

/* Pushes a bundle (a gzip tar, at most REGISTRY_MAX_BUNDLE bytes) as the function's new version:
 * hashed, unpacked and checked on a worker thread, recorded on the loop. bundle stays the
 * caller's and must stay valid until done runs or registry_detach. created is false when the
 * bytes are those of the current version (nothing recorded). */
int registry_push(struct registry *r, const char *name, const void *bundle, size_t len,
                  registry_done_fn done, void *userdata, struct ig_error *err);
/* registry_push; with promote false, a new version of an existing function is kept but the
 * default alias stays where it was (a function's first version always becomes current). */
int registry_push_version(struct registry *r, const char *name, const void *bundle, size_t len,
                          bool promote, registry_done_fn done, void *userdata,
                          struct ig_error *err);
/* Points f's alias at versions[0..n) with weights[0..n) (alias_check_weights), creating it; the
 * default alias's primary version becomes the current one (the updated hook runs when it
 * changes). Refused: invalid_alias, invalid_weights at once; version_not_found, not_found when
 * it runs. */
int registry_set_alias(struct registry *r, const char *name, const char *alias,
                       const uint32_t *versions, const uint32_t *weights, size_t n,
                       registry_done_fn done, void *userdata, struct ig_error *err);
/* Removes f's alias (alias_not_found; conflict for `default`, which always exists). */
int registry_delete_alias(struct registry *r, const char *name, const char *alias,
                          registry_done_fn done, void *userdata, struct ig_error *err);
/* Points the default alias at version to alone, at once, with no push; to 0: the newest kept
 * version older than the current one (version_not_found when there is none). */
int registry_rollback(struct registry *r, const char *name, uint32_t to, registry_done_fn done,
                      void *userdata, struct ig_error *err);
/* Deletes one kept version: drained through drain_version, then its row and its bundle when
 * nothing else references it. conflict (EBUSY) for the current version or an alias's target. */
int registry_delete_version(struct registry *r, const char *name, uint32_t version,
                            registry_done_fn done, void *userdata, struct ig_error *err);
/* Deletes a function: marks it deleting, has the drain hook drain it, then removes it, its
 * versions and its unreferenced bundles. */
int registry_delete(struct registry *r, const char *name, registry_done_fn done, void *userdata,
                    struct ig_error *err);
/* Deploys a service from its deploy archive (service.h; bytes as registry_push's): a version
 * for each function that changed, and the removal (drained like a delete) of the functions the
 * service no longer lists, recorded together. */
int registry_deploy(struct registry *r, const char *name, const void *archive, size_t len,
                    registry_done_fn done, void *userdata, struct ig_error *err);
/* Deletes a service and its functions (each drained). */
int registry_undeploy(struct registry *r, const char *name, registry_done_fn done, void *userdata,
                      struct ig_error *err);
/* Another host sharing the store changed function (records/changes.h); NULL: anything may have
 * changed. Queued behind the mutations under way, the function (every one) is read again from
 * the store, and memory made to say the same: a new function or version is added, the current
 * version, aliases and service follow the store (the updated hook runs when the current version
 * changes), a deleted function is drained and removed as a delete does, versions removed are
 * drained as a pruned one. The services are read again too. One that already says what the
 * store says (this host's own change) changes nothing. A version's bundle is not fetched: one
 * not unpacked here is missing as after a lost file. 0, or -ENOMEM. */
int registry_sync(struct registry *r, const char *function);
/* registry_sync of the services alone (a deploy that changed no function). */
int registry_sync_services(struct registry *r);

/* The caller of a mutation under way with this userdata goes away: its done is not called and
 * its bytes are not read any more (waits for the worker reading them, bounded by the bundle
 * limits). The mutation itself goes on. */
void registry_detach(struct registry *r, void *userdata);
