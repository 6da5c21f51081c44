/* function.json: the manifest of a function. Pure validation and conversion, no I/O, so the
 * daemon, the CLI and the unit tests share one definition of what a valid manifest is.
 *
 * Ranges (docs/api.md repeats them for users):
 *   name            [a-z][a-z0-9-]{0,62}                       required
 *   runtime         exec | python3 | node | provided          required
 *   handler         1..255 printable characters, relative      required (optional for provided)
 *   memory_mb       64..10240                                  128
 *   cpu_millis      10..64000                                  1000
 *   timeout_ms      1..900000                                  30000
 *   reuse           boolean                                    false
 *   concurrency     1..1000; must be 1 unless reuse            1
 *   min_scale       0..1000, <= max_scale                      0
 *   max_scale       1..1000                                    100
 *   idle_timeout_s  1..86400                                   60
 *   env             object of at most 256 string values        {}
 *   events          at most 64 of {type, source?}              []
 *   schedule        1..256 printable characters                none
 *   max_retries     0..20                                      2
 *   max_concurrency 0..1000000 (0: max_scale * concurrency)    0
 *   secrets         at most 64 distinct names                  []
 *   sink            "http(s)://..." or {url, on?, retries?}    none
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"

#define MANIFEST_NAME_MAX         63
#define MANIFEST_HANDLER_MAX      255
#define MANIFEST_ENV_MAX          256
#define MANIFEST_ENV_KEY_MAX      128
#define MANIFEST_ENV_VALUE_MAX    32768
#define MANIFEST_ENV_TOTAL_MAX    65536
#define MANIFEST_EVENTS_MAX       64
#define MANIFEST_EVENT_TYPE_MAX   255
#define MANIFEST_EVENT_SOURCE_MAX 1024
#define MANIFEST_SCHEDULE_MAX     256
#define MANIFEST_SECRETS_MAX      64
#define MANIFEST_SECRET_NAME_MAX  128
#define MANIFEST_SINK_URL_MAX     2048
#define MANIFEST_SINK_RETRIES_MAX 10
#define MANIFEST_SINK_RETRIES_DEF 3
/* function.json itself may be at most this large. */
#define MANIFEST_FILE_MAX (256u * 1024u)

enum manifest_runtime {
    MANIFEST_RUNTIME_EXEC,
    MANIFEST_RUNTIME_PYTHON3,
    MANIFEST_RUNTIME_NODE,
    MANIFEST_RUNTIME_PROVIDED,
};

struct manifest_env {
    char *key;
    char *value;
};

struct manifest_event {
    char *type;   /* "com.example.upload" or a prefix subscription "com.example.*" */
    char *source; /* NULL: any source */
};

/* Which outcomes the sink receives (docs/api.md "Sinks"). */
enum manifest_sink_on { MANIFEST_SINK_ALWAYS, MANIFEST_SINK_SUCCESS, MANIFEST_SINK_FAILURE };

/* Where a function's results are forwarded as CloudEvents (sink.h delivers them). */
struct manifest_sink {
    char *url; /* NULL: no sink */
    enum manifest_sink_on on;
    uint32_t retries; /* deliveries retried this many times after the first attempt */
};

struct manifest {
    char name[MANIFEST_NAME_MAX + 1];
    enum manifest_runtime runtime;
    char *handler; /* "" for a provided runtime without one */
    uint32_t memory_mb;
    uint32_t cpu_millis;
    uint32_t timeout_ms;
    bool reuse;
    uint32_t concurrency;
    uint32_t min_scale;
    uint32_t max_scale;
    uint32_t idle_timeout_s;
    struct manifest_env *env;
    size_t n_env;
    struct manifest_event *events;
    size_t n_events;
    char *schedule; /* NULL: none */
    uint32_t max_retries;
    uint32_t max_concurrency; /* as written; see manifest_max_concurrency() */
    char **secrets;
    size_t n_secrets;
    struct manifest_sink sink;
};

const char *manifest_sink_on_name(enum manifest_sink_on on);

/* Whether name is a valid function name ([a-z][a-z0-9-]{0,62}). */
bool manifest_name_valid(const char *name);
/* A secret's name: 1-128 of A-Z a-z 0-9 _ - ., not starting with '.' or '-' (so never '.', '..'
 * or an option). */
bool manifest_secret_name_valid(const char *s);

const char *manifest_runtime_name(enum manifest_runtime r);
int manifest_runtime_from_name(const char *name, enum manifest_runtime *ret);

/* Validates a parsed function.json and fills a new manifest, defaults included. On failure
 * returns -EINVAL with err's message starting with the field at fault ("memory_mb: ..."). */
int manifest_from_json(const cJSON *root, struct manifest **ret, struct ig_error *err);
/* Refuses a member of obj not in known (n names) and one given twice (cJSON keeps both copies
 * of a duplicate and finds the first, so a second one would otherwise be silently ignored),
 * naming it after prefix ("functions.orders.", "sink."): "PREFIXNAME: unknown field", then
 * hint (may be ""). */
int manifest_check_members(const cJSON *obj, const char *const *known, size_t n, const char *prefix,
                           const char *hint, struct ig_error *err);
/* One JSON value from text (need not be NUL-terminated), nothing after it but white space;
 * NULL with err naming file ("function.json: not valid JSON (near byte 12)"). */
cJSON *manifest_json_parse(const char *text, size_t len, const char *file, struct ig_error *err);
/* The same from text (at most MANIFEST_FILE_MAX bytes; need not be NUL-terminated). */
int manifest_parse(const char *text, size_t len, struct manifest **ret, struct ig_error *err);
/* Every field, defaults written out: what GET /v1/functions/{name} shows and the store keeps.
 * manifest_from_json(manifest_to_json(m)) gives back an equal manifest. NULL without memory. */
cJSON *manifest_to_json(const struct manifest *m);
void manifest_free(struct manifest *m);

/* The effective cap on simultaneous invocations: max_concurrency, or max_scale * concurrency
 * when it is 0. */
uint64_t manifest_max_concurrency(const struct manifest *m);
/* The environment value for key, or NULL. */
const char *manifest_env_get(const struct manifest *m, const char *key);
