/* service.json: several functions deployed, listed and removed as one (docs/api.md "Services").
 * Pure: the format's checks, applying a service's triggers to a function's manifest, and the
 * deploy archive (a tar in memory) that `ignis deploy` sends and the daemon reads. No I/O. */
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "functions/manifest.h"
#include "base/util.h"

#define SERVICE_FILE_MAX      (256u * 1024u) /* service.json */
#define SERVICE_FUNCTIONS_MAX 64
#define SERVICE_PATH_MAX      1024
/* The deploy archive: the PUT /v1/services/{name} body. Each bundle in it is still held to
 * REGISTRY_MAX_BUNDLE. */
#define SERVICE_ARCHIVE_MAX (256u << 20)

struct service_function {
    char name[MANIFEST_NAME_MAX + 1];
    char *path; /* the function's directory, relative to service.json's; default its name */
    /* The function.json fields the service sets (events, schedule, sink), as written; each one
     * present replaces the function's own, null removes it. Never NULL. */
    cJSON *triggers;
};

struct service {
    char name[MANIFEST_NAME_MAX + 1];
    struct service_function *fns; /* in the order service.json lists them */
    size_t n_fns;
};

/* Validates service.json (at most SERVICE_FILE_MAX bytes). On failure -EINVAL with err's
 * message starting with the field at fault ("functions.orders.schedule: ..."). */
int service_parse(const char *text, size_t len, struct service **ret, struct ig_error *err);
void service_free(struct service *s);
const struct service_function *service_find(const struct service *s, const char *name);
/* service.json as the daemon keeps and shows it (paths and triggers as given). */
cJSON *service_to_json(const struct service *s);

/* The function's manifest: function.json's text validated on its own, then with sf's triggers
 * applied, and its name checked against sf's. -EINVAL with err naming the field (errors in
 * function.json itself are as manifest_parse gives them; a name mismatch starts "name:"). */
int service_function_manifest(const struct service_function *sf, const char *text, size_t len,
                              struct manifest **ret, struct ig_error *err);

/* The deploy archive: an uncompressed tar holding "service.json" and one
 * "functions/NAME.tar.gz" (the function's bundle) for each function. */
struct service_archive_entry {
    char name[MANIFEST_NAME_MAX + 1];
    char *data;
    size_t len;
};

struct service_archive {
    char *service_json;
    size_t service_json_len;
    struct service_archive_entry *bundles;
    size_t n_bundles;
};

/* Packs service.json and the bundles (names[i] with bundles[i] of lens[i] bytes). */
int service_archive_pack(const char *service_json, size_t service_json_len,
                         const char *const *names, char *const *bundles, const size_t *lens,
                         size_t n, char **ret, size_t *ret_len, struct ig_error *err);
/* Reads a deploy archive from memory, copying its entries out. -EINVAL with err for anything
 * but the entries above (each at most once), -EFBIG past the size limits. */
int service_archive_read(const void *data, size_t len, struct service_archive *ret,
                         struct ig_error *err);
void service_archive_clear(struct service_archive *a);
const struct service_archive_entry *service_archive_find(const struct service_archive *a,
                                                         const char *name);
