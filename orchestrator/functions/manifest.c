#include "functions/manifest.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>

#include "base/cloudevents.h"
#include "base/cron.h"

static const char *const runtime_names[] = {
    [MANIFEST_RUNTIME_EXEC] = "exec",
    [MANIFEST_RUNTIME_PYTHON3] = "python3",
    [MANIFEST_RUNTIME_NODE] = "node",
    [MANIFEST_RUNTIME_PROVIDED] = "provided",
};

/* Every field function.json may have; anything else is refused by name, so a typo
 * ("memory": 512) is an error rather than a silently ignored setting. */
static const char *const known_fields[] = {
    "name",   "runtime",     "handler",     "memory_mb",       "cpu_millis",     "timeout_ms",
    "reuse",  "concurrency", "min_scale",   "max_scale",       "idle_timeout_s", "env",
    "events", "schedule",    "max_retries", "max_concurrency", "secrets",        "sink",
};

static const char *const sink_on_names[] = {
    [MANIFEST_SINK_ALWAYS] = "always",
    [MANIFEST_SINK_SUCCESS] = "success",
    [MANIFEST_SINK_FAILURE] = "failure",
};

/* Variables the runtimes set themselves (runtime protocol, Lambda's custom-runtime contract):
 * letting a manifest override them would break the bootstrap, not configure the function. */
static const char *const reserved_env_prefixes[] = {"IGNIS_", "AWS_LAMBDA_"};
static const char *const reserved_env_names[] = {"_HANDLER", "LAMBDA_TASK_ROOT",
                                                 "LAMBDA_RUNTIME_DIR"};

bool manifest_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > MANIFEST_NAME_MAX || name[0] < 'a' || name[0] > 'z')
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

const char *manifest_runtime_name(enum manifest_runtime r)
{
    return (size_t)r < ARRAY_SIZE(runtime_names) ? runtime_names[r] : "unknown";
}

const char *manifest_sink_on_name(enum manifest_sink_on on)
{
    return (size_t)on < ARRAY_SIZE(sink_on_names) ? sink_on_names[on] : "unknown";
}

int manifest_runtime_from_name(const char *name, enum manifest_runtime *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(runtime_names); i++)
        if (streq(runtime_names[i], name)) {
            *ret = (enum manifest_runtime)i;
            return 0;
        }
    return -EINVAL;
}

void manifest_free(struct manifest *m)
{
    if (!m)
        return;
    free(m->handler);
    for (size_t i = 0; i < m->n_env; i++) {
        free(m->env[i].key);
        free(m->env[i].value);
    }
    free(m->env);
    for (size_t i = 0; i < m->n_events; i++) {
        free(m->events[i].type);
        free(m->events[i].source);
    }
    free(m->events);
    free(m->schedule);
    for (size_t i = 0; i < m->n_secrets; i++)
        free(m->secrets[i]);
    free(m->secrets);
    free(m->sink.url);
    free(m);
}

static void manifest_freep(struct manifest **m)
{
    manifest_free(*m);
}

/* "a string", "null", ...: for messages that say what was found instead. */
static const char *json_kind(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "invalid";
}

static bool printable(const char *s, bool allow_space)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < (allow_space ? 0x20 : 0x21) || *p > 0x7e)
            return false;
    return true;
}

static int get_uint(const cJSON *root, const char *field, uint32_t min, uint32_t max, uint32_t def,
                    uint32_t *ret, struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v) {
        *ret = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return ig_error_set(err, EINVAL, "%s: must be an integer from %u to %u, not %s", field, min,
                            max, json_kind(v));
    double x = v->valuedouble;
    /* Range first: a cast of an out-of-range double is undefined. */
    if (!(x >= min && x <= max) || x != (double)(uint32_t)x)
        return ig_error_set(err, EINVAL, "%s: must be an integer from %u to %u, got %g", field, min,
                            max, x);
    *ret = (uint32_t)x;
    return 0;
}

/* A string field: NULL in *ret when absent. */
static int get_string(const cJSON *root, const char *field, const char **ret, struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v) {
        *ret = NULL;
        return 0;
    }
    if (!cJSON_IsString(v))
        return ig_error_set(err, EINVAL, "%s: must be a string, not %s", field, json_kind(v));
    *ret = v->valuestring;
    return 0;
}

static int parse_name(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const char *s;
    int r = get_string(root, "name", &s, err);
    if (r < 0)
        return r;
    if (!s)
        return ig_error_set(err, EINVAL, "name: is required");
    if (!manifest_name_valid(s))
        return ig_error_set(err, EINVAL,
                            "name: must match [a-z][a-z0-9-]{0,62} (a lowercase letter, then up "
                            "to 62 lowercase letters, digits or '-')");
    snprintf(m->name, sizeof(m->name), "%s", s);
    return 0;
}

static int parse_runtime(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const char *s;
    int r = get_string(root, "runtime", &s, err);
    if (r < 0)
        return r;
    if (!s)
        return ig_error_set(err, EINVAL, "runtime: is required (exec, python3, node or provided)");
    if (manifest_runtime_from_name(s, &m->runtime) < 0)
        return ig_error_set(err, EINVAL,
                            "runtime: must be one of exec, python3, node, provided (got \"%.64s\")",
                            s);
    return 0;
}

/* The handler is resolved inside the bundle (/var/task): a path or module name relative to it,
 * never an absolute path or one that climbs out with "..". */
static int parse_handler(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const char *s;
    int r = get_string(root, "handler", &s, err);
    if (r < 0)
        return r;
    if (!s) {
        if (m->runtime != MANIFEST_RUNTIME_PROVIDED)
            return ig_error_set(err, EINVAL, "handler: is required for the %s runtime",
                                manifest_runtime_name(m->runtime));
        s = "";
    } else {
        size_t len = strlen(s);
        if (len == 0 || len > MANIFEST_HANDLER_MAX)
            return ig_error_set(err, EINVAL, "handler: must be 1 to %d characters long",
                                MANIFEST_HANDLER_MAX);
        if (!printable(s, false))
            return ig_error_set(err, EINVAL,
                                "handler: must be printable ASCII without spaces or control "
                                "characters");
        if (s[0] == '/')
            return ig_error_set(err, EINVAL,
                                "handler: must be relative to the bundle, not an absolute path");
        for (const char *p = s; p; p = strchr(p, '/')) {
            if (*p == '/')
                p++;
            if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == '\0'))
                return ig_error_set(err, EINVAL, "handler: must not contain a '..' component");
        }
    }
    m->handler = strdup(s);
    return m->handler ? 0 : ig_error_set(err, ENOMEM, "out of memory");
}

static int parse_bool(const cJSON *root, const char *field, bool def, bool *ret,
                      struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v) {
        *ret = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return ig_error_set(err, EINVAL, "%s: must be true or false, not %s", field, json_kind(v));
    *ret = cJSON_IsTrue(v);
    return 0;
}

static bool env_key_valid(const char *k)
{
    size_t len = strlen(k);
    if (len == 0 || len > MANIFEST_ENV_KEY_MAX || (k[0] >= '0' && k[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static int parse_env(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "env");
    size_t total = 0;

    if (!v)
        return 0;
    if (!cJSON_IsObject(v))
        return ig_error_set(err, EINVAL, "env: must be an object of strings, not %s", json_kind(v));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MANIFEST_ENV_MAX)
        return ig_error_set(err, EINVAL, "env: at most %d variables, got %zu", MANIFEST_ENV_MAX, n);
    if (n == 0)
        return 0;
    m->env = calloc(n, sizeof(*m->env));
    if (!m->env)
        return ig_error_set(err, ENOMEM, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        const char *k = item->string;
        if (!env_key_valid(k))
            return ig_error_set(err, EINVAL,
                                "env: key \"%.64s\" must match [A-Za-z_][A-Za-z0-9_]* and be at "
                                "most %d characters",
                                k, MANIFEST_ENV_KEY_MAX);
        for (size_t i = 0; i < ARRAY_SIZE(reserved_env_prefixes); i++)
            if (startswith(k, reserved_env_prefixes[i]))
                return ig_error_set(err, EINVAL,
                                    "env: key \"%s\" is reserved (names starting with %s are set "
                                    "by Ignis)",
                                    k, reserved_env_prefixes[i]);
        for (size_t i = 0; i < ARRAY_SIZE(reserved_env_names); i++)
            if (streq(k, reserved_env_names[i]))
                return ig_error_set(err, EINVAL, "env: key \"%s\" is reserved (set by the runtime)",
                                    k);
        for (size_t i = 0; i < m->n_env; i++)
            if (streq(m->env[i].key, k))
                return ig_error_set(err, EINVAL, "env: key \"%s\" appears twice", k);
        if (!cJSON_IsString(item))
            return ig_error_set(err, EINVAL, "env: value of \"%s\" must be a string, not %s", k,
                                json_kind(item));
        size_t vlen = strlen(item->valuestring);
        if (vlen > MANIFEST_ENV_VALUE_MAX)
            return ig_error_set(err, EINVAL, "env: value of \"%s\" is over %d bytes", k,
                                MANIFEST_ENV_VALUE_MAX);
        total += strlen(k) + 1 + vlen + 1;
        if (total > MANIFEST_ENV_TOTAL_MAX)
            return ig_error_set(err, EINVAL, "env: variables total over %d bytes",
                                MANIFEST_ENV_TOTAL_MAX);
        struct manifest_env *e = &m->env[m->n_env];
        e->key = strdup(k);
        e->value = strdup(item->valuestring);
        m->n_env++;
        if (!e->key || !e->value)
            return ig_error_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

/* CloudEvents types are free-form strings; ours are printable without spaces, and the pattern
 * rules ('*' only alone or as a final ".*", a prefix subscription) are the matcher's own
 * (cloudevents.h), so what is accepted here is what the events code can match. */
static bool event_type_valid(const char *t)
{
    size_t len = strlen(t);
    return len > 0 && len <= MANIFEST_EVENT_TYPE_MAX && printable(t, false) &&
           ce_type_pattern_valid(t);
}

static int parse_events(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "events");
    if (!v)
        return 0;
    if (!cJSON_IsArray(v))
        return ig_error_set(err, EINVAL, "events: must be an array of {type, source}, not %s",
                            json_kind(v));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MANIFEST_EVENTS_MAX)
        return ig_error_set(err, EINVAL, "events: at most %d subscriptions, got %zu",
                            MANIFEST_EVENTS_MAX, n);
    if (n == 0)
        return 0;
    m->events = calloc(n, sizeof(*m->events));
    if (!m->events)
        return ig_error_set(err, ENOMEM, "out of memory");
    const cJSON *item;
    size_t i = 0;
    cJSON_ArrayForEach(item, v)
    {
        if (!cJSON_IsObject(item))
            return ig_error_set(err, EINVAL, "events[%zu]: must be an object, not %s", i,
                                json_kind(item));
        const cJSON *f;
        cJSON_ArrayForEach(f, item)
        {
            if (!streq(f->string, "type") && !streq(f->string, "source"))
                return ig_error_set(err, EINVAL, "events[%zu]: unknown field \"%.64s\"", i,
                                    f->string);
        }
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
        const cJSON *source = cJSON_GetObjectItemCaseSensitive(item, "source");
        if (!type)
            return ig_error_set(err, EINVAL, "events[%zu].type: is required", i);
        if (!cJSON_IsString(type))
            return ig_error_set(err, EINVAL, "events[%zu].type: must be a string, not %s", i,
                                json_kind(type));
        if (!event_type_valid(type->valuestring))
            return ig_error_set(err, EINVAL,
                                "events[%zu].type: must be 1 to %d printable characters without "
                                "spaces; '*' only alone or as a final \".*\"",
                                i, MANIFEST_EVENT_TYPE_MAX);
        if (source) {
            if (!cJSON_IsString(source))
                return ig_error_set(err, EINVAL, "events[%zu].source: must be a string, not %s", i,
                                    json_kind(source));
            size_t len = strlen(source->valuestring);
            if (len == 0 || len > MANIFEST_EVENT_SOURCE_MAX ||
                !printable(source->valuestring, true))
                return ig_error_set(err, EINVAL,
                                    "events[%zu].source: must be 1 to %d printable characters", i,
                                    MANIFEST_EVENT_SOURCE_MAX);
        }
        struct manifest_event *e = &m->events[m->n_events++];
        e->type = strdup(type->valuestring);
        e->source = source ? strdup(source->valuestring) : NULL;
        if (!e->type || (source && !e->source))
            return ig_error_set(err, ENOMEM, "out of memory");
        i++;
    }
    return 0;
}

/* The schedule is checked with the scheduler's own parser (cron.h), so a push is refused now
 * rather than the schedule failing later; the scheduler parses the kept text again. */
static int parse_schedule(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const char *s;
    int r = get_string(root, "schedule", &s, err);
    if (r < 0 || !s)
        return r;
    size_t len = strlen(s);
    if (len == 0 || len > MANIFEST_SCHEDULE_MAX || !printable(s, true) || strspn(s, " ") == len)
        return ig_error_set(err, EINVAL,
                            "schedule: must be a cron expression of 1 to %d printable characters",
                            MANIFEST_SCHEDULE_MAX);
    struct cron_schedule parsed;
    struct ig_error cerr = {};
    if (cron_parse(s, &parsed, &cerr) < 0)
        return ig_error_set(err, EINVAL, "schedule: %s", cerr.message);
    m->schedule = strdup(s);
    return m->schedule ? 0 : ig_error_set(err, ENOMEM, "out of memory");
}

bool manifest_secret_name_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > MANIFEST_SECRET_NAME_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int parse_secrets(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "secrets");
    if (!v)
        return 0;
    if (!cJSON_IsArray(v))
        return ig_error_set(err, EINVAL, "secrets: must be an array of names, not %s",
                            json_kind(v));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MANIFEST_SECRETS_MAX)
        return ig_error_set(err, EINVAL, "secrets: at most %d names, got %zu", MANIFEST_SECRETS_MAX,
                            n);
    if (n == 0)
        return 0;
    m->secrets = calloc(n, sizeof(*m->secrets));
    if (!m->secrets)
        return ig_error_set(err, ENOMEM, "out of memory");
    const cJSON *item;
    size_t i = 0;
    cJSON_ArrayForEach(item, v)
    {
        if (!cJSON_IsString(item))
            return ig_error_set(err, EINVAL, "secrets[%zu]: must be a string, not %s", i,
                                json_kind(item));
        if (!manifest_secret_name_valid(item->valuestring))
            return ig_error_set(err, EINVAL,
                                "secrets[%zu]: must be 1 to %d of A-Z a-z 0-9 _ - . and not start "
                                "with '.' or '-'",
                                i, MANIFEST_SECRET_NAME_MAX);
        for (size_t j = 0; j < m->n_secrets; j++)
            if (streq(m->secrets[j], item->valuestring))
                return ig_error_set(err, EINVAL, "secrets[%zu]: \"%s\" appears twice", i,
                                    item->valuestring);
        m->secrets[m->n_secrets] = strdup(item->valuestring);
        if (!m->secrets[m->n_secrets++])
            return ig_error_set(err, ENOMEM, "out of memory");
        i++;
    }
    return 0;
}

/* A sink URL: absolute http or https with a host, as libcurl parses it (curl_url is pure: no
 * I/O), so what is accepted here is what the delivery can send to. */
static int sink_url_check(const char *url, struct ig_error *err)
{
    size_t len = strlen(url);
    if (len == 0 || len > MANIFEST_SINK_URL_MAX || !printable(url, false))
        return ig_error_set(err, EINVAL,
                            "sink.url: must be 1 to %d printable characters without spaces",
                            MANIFEST_SINK_URL_MAX);
    CURLU *u = curl_url();
    if (!u)
        return ig_error_set(err, ENOMEM, "out of memory");
    char *scheme = NULL, *host = NULL;
    int r = 0;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        r = ig_error_set(err, EINVAL, "sink.url: \"%.80s\" is not an absolute URL with a host",
                         url);
    else if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        r = ig_error_set(err, EINVAL, "sink.url: the scheme must be http or https, not %.16s",
                         scheme);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return r;
}

/* "sink": "http://..." or {"url": ..., "on": "always|success|failure", "retries": N}. */
static int parse_sink(const cJSON *root, struct manifest *m, struct ig_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "sink");
    const cJSON *url = v;
    m->sink.on = MANIFEST_SINK_ALWAYS;
    m->sink.retries = MANIFEST_SINK_RETRIES_DEF;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsObject(v)) {
        static const char *const sink_fields[] = {"url", "on", "retries"};
        int r = manifest_check_members(v, sink_fields, ARRAY_SIZE(sink_fields), "sink.", "", err);
        if (r < 0)
            return r;
        url = cJSON_GetObjectItemCaseSensitive(v, "url");
        if (!url)
            return ig_error_set(err, EINVAL, "sink.url: is required");
        const cJSON *on = cJSON_GetObjectItemCaseSensitive(v, "on");
        if (on) {
            size_t i = 0;
            while (i < ARRAY_SIZE(sink_on_names) &&
                   !(cJSON_IsString(on) && streq(on->valuestring, sink_on_names[i])))
                i++;
            if (i == ARRAY_SIZE(sink_on_names))
                return ig_error_set(err, EINVAL,
                                    "sink.on: must be \"always\", \"success\" or \"failure\"");
            m->sink.on = (enum manifest_sink_on)i;
        }
        struct ig_error rerr = {};
        if (get_uint(v, "retries", 0, MANIFEST_SINK_RETRIES_MAX, MANIFEST_SINK_RETRIES_DEF,
                     &m->sink.retries, &rerr) < 0)
            return ig_error_set(err, EINVAL, "sink.%s", rerr.message);
    } else if (!cJSON_IsString(v))
        return ig_error_set(err, EINVAL,
                            "sink: must be a URL or an object {url, on, retries}, not %s",
                            json_kind(v));
    if (!cJSON_IsString(url))
        return ig_error_set(err, EINVAL, "sink.url: must be a string, not %s", json_kind(url));
    int r = sink_url_check(url->valuestring, err);
    if (r < 0)
        return r;
    m->sink.url = strdup(url->valuestring);
    return m->sink.url ? 0 : ig_error_set(err, ENOMEM, "out of memory");
}

int manifest_check_members(const cJSON *obj, const char *const *known, size_t n, const char *prefix,
                           const char *hint, struct ig_error *err)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, obj)
    {
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++)
            ok = streq(known[i], f->string);
        if (!ok)
            return ig_error_set(err, EINVAL, "%s%.64s: unknown field%s", prefix, f->string, hint);
        for (const cJSON *g = obj->child; g != f; g = g->next)
            if (streq(g->string, f->string))
                return ig_error_set(err, EINVAL, "%s%.64s: appears twice", prefix, f->string);
    }
    return 0;
}

int manifest_from_json(const cJSON *root, struct manifest **ret, struct ig_error *err)
{
    _cleanup_(manifest_freep) struct manifest *m = NULL;
    int r;

    if (!cJSON_IsObject(root))
        return ig_error_set(err, EINVAL, "function.json: must be a JSON object, not %s",
                            json_kind(root));
    r = manifest_check_members(root, known_fields, ARRAY_SIZE(known_fields), "",
                               " (see docs/api.md for the fields of function.json)", err);
    if (r < 0)
        return r;
    m = calloc(1, sizeof(*m));
    if (!m)
        return ig_error_set(err, ENOMEM, "out of memory");
    if ((r = parse_name(root, m, err)) < 0 || (r = parse_runtime(root, m, err)) < 0 ||
        (r = parse_handler(root, m, err)) < 0 ||
        (r = get_uint(root, "memory_mb", 64, 10240, 128, &m->memory_mb, err)) < 0 ||
        (r = get_uint(root, "cpu_millis", 10, 64000, 1000, &m->cpu_millis, err)) < 0 ||
        (r = get_uint(root, "timeout_ms", 1, 900000, 30000, &m->timeout_ms, err)) < 0 ||
        (r = parse_bool(root, "reuse", false, &m->reuse, err)) < 0 ||
        (r = get_uint(root, "concurrency", 1, 1000, 1, &m->concurrency, err)) < 0 ||
        (r = get_uint(root, "min_scale", 0, 1000, 0, &m->min_scale, err)) < 0 ||
        (r = get_uint(root, "max_scale", 1, 1000, 100, &m->max_scale, err)) < 0 ||
        (r = get_uint(root, "idle_timeout_s", 1, 86400, 60, &m->idle_timeout_s, err)) < 0 ||
        (r = parse_env(root, m, err)) < 0 || (r = parse_events(root, m, err)) < 0 ||
        (r = parse_schedule(root, m, err)) < 0 ||
        (r = get_uint(root, "max_retries", 0, 20, 2, &m->max_retries, err)) < 0 ||
        (r = get_uint(root, "max_concurrency", 0, 1000000, 0, &m->max_concurrency, err)) < 0 ||
        (r = parse_secrets(root, m, err)) < 0 || (r = parse_sink(root, m, err)) < 0)
        return r;
    if (m->min_scale > m->max_scale)
        return ig_error_set(err, EINVAL, "min_scale: must not exceed max_scale (%u > %u)",
                            m->min_scale, m->max_scale);
    /* A fresh container serves exactly one invocation (design brief, container lifecycles):
     * more than one at a time only means something for a reused one. */
    if (m->concurrency > 1 && !m->reuse)
        return ig_error_set(err, EINVAL,
                            "concurrency: must be 1 unless reuse is true (a fresh container "
                            "serves one invocation)");
    *ret = TAKE_PTR(m);
    return 0;
}

cJSON *manifest_json_parse(const char *text, size_t len, const char *file, struct ig_error *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        ig_error_set(err, EINVAL, "%s: not valid JSON (near byte %zu)", file, off);
        return NULL;
    }
    /* Trailing garbage after the value is an error too, not something to ignore. */
    while (end && (size_t)(end - text) < len && strchr(" \t\r\n", *end) && *end)
        end++;
    if (end && (size_t)(end - text) < len) {
        cJSON_Delete(root);
        ig_error_set(err, EINVAL, "%s: unexpected data after the JSON value (byte %zu)", file,
                     (size_t)(end - text));
        return NULL;
    }
    return root;
}

int manifest_parse(const char *text, size_t len, struct manifest **ret, struct ig_error *err)
{
    if (len > MANIFEST_FILE_MAX)
        return ig_error_set(err, EINVAL, "function.json: over %u bytes", MANIFEST_FILE_MAX);
    cJSON *root = manifest_json_parse(text, len, "function.json", err);
    if (!root)
        return -EINVAL;
    int r = manifest_from_json(root, ret, err);
    cJSON_Delete(root);
    return r;
}

cJSON *manifest_to_json(const struct manifest *m)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;

    ok = ok && cJSON_AddStringToObject(root, "name", m->name);
    ok = ok && cJSON_AddStringToObject(root, "runtime", manifest_runtime_name(m->runtime));
    if (m->handler && *m->handler)
        ok = ok && cJSON_AddStringToObject(root, "handler", m->handler);
    ok = ok && cJSON_AddNumberToObject(root, "memory_mb", m->memory_mb);
    ok = ok && cJSON_AddNumberToObject(root, "cpu_millis", m->cpu_millis);
    ok = ok && cJSON_AddNumberToObject(root, "timeout_ms", m->timeout_ms);
    ok = ok && cJSON_AddBoolToObject(root, "reuse", m->reuse);
    ok = ok && cJSON_AddNumberToObject(root, "concurrency", m->concurrency);
    ok = ok && cJSON_AddNumberToObject(root, "min_scale", m->min_scale);
    ok = ok && cJSON_AddNumberToObject(root, "max_scale", m->max_scale);
    ok = ok && cJSON_AddNumberToObject(root, "idle_timeout_s", m->idle_timeout_s);
    cJSON *env = ok ? cJSON_AddObjectToObject(root, "env") : NULL;
    ok = ok && env;
    for (size_t i = 0; ok && i < m->n_env; i++)
        ok = cJSON_AddStringToObject(env, m->env[i].key, m->env[i].value) != NULL;
    cJSON *events = ok ? cJSON_AddArrayToObject(root, "events") : NULL;
    ok = ok && events;
    for (size_t i = 0; ok && i < m->n_events; i++) {
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(events, e);
        ok = ok && cJSON_AddStringToObject(e, "type", m->events[i].type);
        if (ok && m->events[i].source)
            ok = cJSON_AddStringToObject(e, "source", m->events[i].source) != NULL;
    }
    if (ok && m->schedule)
        ok = cJSON_AddStringToObject(root, "schedule", m->schedule) != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "max_retries", m->max_retries);
    ok = ok && cJSON_AddNumberToObject(root, "max_concurrency", m->max_concurrency);
    cJSON *secrets = ok ? cJSON_AddArrayToObject(root, "secrets") : NULL;
    ok = ok && secrets;
    for (size_t i = 0; ok && i < m->n_secrets; i++)
        ok = cJSON_AddItemToArray(secrets, cJSON_CreateString(m->secrets[i]));
    if (ok && m->sink.url) {
        cJSON *sink = cJSON_AddObjectToObject(root, "sink");
        ok = sink && cJSON_AddStringToObject(sink, "url", m->sink.url) &&
             cJSON_AddStringToObject(sink, "on", manifest_sink_on_name(m->sink.on)) &&
             cJSON_AddNumberToObject(sink, "retries", m->sink.retries);
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

uint64_t manifest_max_concurrency(const struct manifest *m)
{
    if (m->max_concurrency)
        return m->max_concurrency;
    return (uint64_t)m->max_scale * m->concurrency;
}

const char *manifest_env_get(const struct manifest *m, const char *key)
{
    for (size_t i = 0; i < m->n_env; i++)
        if (streq(m->env[i].key, key))
            return m->env[i].value;
    return NULL;
}
