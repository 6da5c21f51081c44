/* The registry's tables in ignis.db: functions, function_versions, aliases and services. Each
 * function here is one thing the registry asks of the store, and each mutation is one transaction
 * (what must appear or vanish together does), so a second backend is a second file behind the same
 * functions. Loop thread only: it uses the store's own connection. Every mutation tells the
 * other hosts sharing the store which function or service changed (records/changes.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"

struct store;

/* A function's version as recorded (and loaded: there the strings may be NULL when the row is
 * damaged; the caller checks). */
struct functions_store_version {
    const char *name;
    uint32_t version;
    const char *digest;
    const char *manifest;  /* JSON text */
    uint64_t created_usec; /* wall clock: the function's first version */
    uint64_t updated_usec; /* wall clock: this version */
    uint64_t bundle_bytes;
    const char *service; /* the service it was deployed with; NULL for none */
    /* loaded by functions_store_load_functions: the highest version number the function ever
     * gave (pruned versions included); ignored when recording */
    uint32_t max_version;
};

/* One version an alias points at, with its weight (1..100; an alias's weights sum to 100). */
struct functions_store_alias {
    const char *function;
    const char *alias;
    uint32_t version;
    uint32_t weight;
};

struct functions_store_service {
    const char *name;
    const char *spec; /* service.json as the daemon keeps it */
    uint64_t created_usec, updated_usec;
};

/* Calls fn with every function at its current version (the strings are valid during the call);
 * with name not NULL, with that function alone (when there is one). A negative return from fn
 * stops the walk and is returned (fn fills err). */
int functions_store_load_functions(struct store *s, const char *name,
                                   int (*fn)(void *userdata,
                                             const struct functions_store_version *v,
                                             struct ig_error *err),
                                   void *userdata, struct ig_error *err);
/* Calls fn with every kept version of every function, oldest first per function (the current
 * one too); created_usec and updated_usec are both when that version was made, service NULL and
 * max_version 0.
 * As above otherwise. */
int functions_store_load_versions(struct store *s, const char *name,
                                  int (*fn)(void *userdata, const struct functions_store_version *v,
                                            struct ig_error *err),
                                  void *userdata, struct ig_error *err);
/* Calls fn with every service, as above. */
int functions_store_load_services(struct store *s,
                                  int (*fn)(void *userdata,
                                            const struct functions_store_service *sv,
                                            struct ig_error *err),
                                  void *userdata, struct ig_error *err);

/* Whether a version references the bundle; true when the store cannot tell (keep the bundle). */
bool functions_store_digest_referenced(struct store *s, const char *digest);

/* Makes the versions naming bundle digest from name digest to instead (an upgrade storing a
 * bundle kept only unpacked: its bytes are packed anew, so their digest is another). */
int functions_store_rename_digest(struct store *s, const char *from, const char *to,
                                  struct ig_error *err);

/* Calls fn with every alias's versions, by function, alias and version, as above. */
int functions_store_load_aliases(struct store *s, const char *name,
                                 int (*fn)(void *userdata, const struct functions_store_alias *a,
                                           struct ig_error *err),
                                 void *userdata, struct ig_error *err);

/* Records a new current version: the function's row, its version row and the default alias
 * pointing at it alone, in one transaction. */
int functions_store_record_version(struct store *s, const struct functions_store_version *v,
                                   struct ig_error *err);
/* Records a version of an existing function that does not become current (a push with
 * promote=false): its version row and the function's highest number, in one transaction. */
int functions_store_add_version(struct store *s, const struct functions_store_version *v,
                                struct ig_error *err);
/* Points the function's alias at versions[0..n) with weights[0..n) (replacing what it pointed
 * at), and when current is not 0 makes that the function's current version, in one
 * transaction. */
int functions_store_set_alias(struct store *s, const char *function, const char *alias,
                              const uint32_t *versions, const uint32_t *weights, size_t n,
                              uint32_t current, struct ig_error *err);
/* Removes the function's alias. */
int functions_store_delete_alias(struct store *s, const char *function, const char *alias,
                                 struct ig_error *err);
/* Deletes the function's versions[0..n) (pruned or deleted; never its current one, which the
 * caller checks) in one transaction. *ret_digests as functions_store_delete's. */
int functions_store_delete_versions(struct store *s, const char *function, const uint32_t *versions,
                                    size_t n, char ***ret_digests, size_t *ret_n,
                                    struct ig_error *err);

/* Deletes the functions names[0..n) with their versions, and the service's row when service is
 * not NULL, in one transaction. *ret_digests (functions_store_digests_free) are the digests
 * those versions used that no remaining version references: the bundles the caller may remove
 * (as stored: the caller checks they are digests). */
int functions_store_delete(struct store *s, const char *const *names, size_t n, const char *service,
                           char ***ret_digests, size_t *ret_n, struct ig_error *err);

/* A service deploy, in one transaction: the service's row (created_usec kept when it exists), a
 * version for each of versions[0..n_versions), and the deletion of the functions
 * pruned[0..n_pruned) with their versions. *ret_digests as functions_store_delete's. */
int functions_store_record_service(struct store *s, const struct functions_store_service *sv,
                                   const struct functions_store_version *versions,
                                   size_t n_versions, const char *const *pruned, size_t n_pruned,
                                   char ***ret_digests, size_t *ret_n, struct ig_error *err);

/* Frees a list of digests from the functions above. */
void functions_store_digests_free(char **digests, size_t n);
