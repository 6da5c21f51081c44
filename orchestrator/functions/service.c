#include "functions/service.h"

#include <archive.h>
#include <archive_entry.h>
#include <string.h>

#include "functions/registry.h"

/* What service.json may say about a function, beyond where it is: the fields that wire it to
 * the rest of the application. Everything else (memory, runtime, ...) is the function's own. */
static const char *const trigger_fields[] = {"events", "schedule", "sink"};

#define BUNDLE_PREFIX "functions/"
#define BUNDLE_SUFFIX ".tar.gz"

void service_free(struct service *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_fns; i++) {
        free(s->fns[i].path);
        cJSON_Delete(s->fns[i].triggers);
    }
    free(s->fns);
    free(s);
}

static void service_freep(struct service **s)
{
    service_free(*s);
}

const struct service_function *service_find(const struct service *s, const char *name)
{
    for (size_t i = 0; i < s->n_fns; i++)
        if (streq(s->fns[i].name, name))
            return &s->fns[i];
    return NULL;
}

/* Applies triggers to a function.json object: each present replaces, null removes. */
static int apply_triggers(cJSON *fn, const cJSON *triggers)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, triggers)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(fn, t->string);
        if (cJSON_IsNull(t))
            continue;
        cJSON *copy = cJSON_Duplicate(t, true);
        if (!copy || !cJSON_AddItemToObject(fn, t->string, copy)) {
            cJSON_Delete(copy);
            return -ENOMEM;
        }
    }
    return 0;
}

/* The triggers are checked by the manifest's own validator, on a minimal function that has
 * them, so service.json accepts exactly what function.json would. */
static int check_triggers(const char *fname, const cJSON *triggers, struct ig_error *err)
{
    cJSON *probe = cJSON_CreateObject();
    if (!probe || !cJSON_AddStringToObject(probe, "name", "probe") ||
        !cJSON_AddStringToObject(probe, "runtime", "exec") ||
        !cJSON_AddStringToObject(probe, "handler", "probe") ||
        apply_triggers(probe, triggers) < 0) {
        cJSON_Delete(probe);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    struct manifest *m = NULL;
    struct ig_error merr = {};
    int r = manifest_from_json(probe, &m, &merr);
    cJSON_Delete(probe);
    manifest_free(m);
    if (r < 0)
        return ig_error_set(err, -r, "functions.%s.%s", fname, merr.message);
    return 0;
}

static bool path_valid(const char *p)
{
    size_t len = strlen(p);
    if (len == 0 || len > SERVICE_PATH_MAX || p[0] == '/')
        return false;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return false;
    /* No ".." component: a service names directories beneath its own. */
    for (const char *s = p; s;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return false;
        s = slash ? slash + 1 : NULL;
    }
    return true;
}

static int parse_function(const cJSON *item, struct service_function *sf, struct ig_error *err)
{
    static const char *const known[] = {"path", "events", "schedule", "sink"};
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "functions.%s.", item->string);

    if (!manifest_name_valid(item->string))
        return ig_error_set(err, EINVAL,
                            "functions.%.80s: not a function name ([a-z][a-z0-9-]{0,62})",
                            item->string);
    snprintf(sf->name, sizeof(sf->name), "%s", item->string);
    if (!cJSON_IsObject(item))
        return ig_error_set(err, EINVAL, "functions.%s: must be an object {path, events, ...}",
                            sf->name);
    int r = manifest_check_members(item, known, ARRAY_SIZE(known), prefix, "", err);
    if (r < 0)
        return r;
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "path");
    if (path && !(cJSON_IsString(path) && path_valid(path->valuestring)))
        return ig_error_set(err, EINVAL,
                            "functions.%s.path: must be a relative directory of 1 to %d "
                            "characters without a \"..\" component",
                            sf->name, SERVICE_PATH_MAX);
    sf->path = strdup(path ? path->valuestring : sf->name);
    sf->triggers = cJSON_CreateObject();
    if (!sf->path || !sf->triggers)
        return ig_error_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < ARRAY_SIZE(trigger_fields); i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(item, trigger_fields[i]);
        if (t && !cJSON_AddItemToObject(sf->triggers, trigger_fields[i], cJSON_Duplicate(t, true)))
            return ig_error_set(err, ENOMEM, "out of memory");
    }
    return check_triggers(sf->name, sf->triggers, err);
}

int service_parse(const char *text, size_t len, struct service **ret, struct ig_error *err)
{
    static const char *const known[] = {"name", "functions"};
    _cleanup_(service_freep) struct service *s = NULL;

    if (len > SERVICE_FILE_MAX)
        return ig_error_set(err, EINVAL, "service.json: over %u bytes", SERVICE_FILE_MAX);
    cJSON *root = manifest_json_parse(text, len, "service.json", err);
    if (!root)
        return -EINVAL;
    int r = 0;
    if (!cJSON_IsObject(root))
        r = ig_error_set(err, EINVAL, "service.json: must be a JSON object");
    if (r == 0)
        r = manifest_check_members(root, known, ARRAY_SIZE(known), "", "", err);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *fns = cJSON_GetObjectItemCaseSensitive(root, "functions");
    if (r == 0 && !name)
        r = ig_error_set(err, EINVAL, "name: is required");
    else if (r == 0 && !(cJSON_IsString(name) && manifest_name_valid(name->valuestring)))
        r = ig_error_set(err, EINVAL, "name: must be a service name ([a-z][a-z0-9-]{0,62})");
    else if (r == 0 && !cJSON_IsObject(fns))
        r = ig_error_set(err, EINVAL, "functions: must be an object of NAME: {path, ...}");
    size_t n = r == 0 ? (size_t)cJSON_GetArraySize(fns) : 0;
    if (r == 0 && (n == 0 || n > SERVICE_FUNCTIONS_MAX))
        r = ig_error_set(err, EINVAL, "functions: must name 1 to %d functions, got %zu",
                         SERVICE_FUNCTIONS_MAX, n);
    if (r == 0 && (!(s = calloc(1, sizeof(*s))) || !(s->fns = calloc(n, sizeof(*s->fns)))))
        r = ig_error_set(err, ENOMEM, "out of memory");
    if (r == 0) {
        snprintf(s->name, sizeof(s->name), "%s", name->valuestring);
        const cJSON *item;
        cJSON_ArrayForEach(item, fns)
        {
            if (r == 0)
                r = parse_function(item, &s->fns[s->n_fns++], err);
        }
    }
    /* Two functions in one directory would be one bundle pushed under two names. */
    for (size_t i = 0; r == 0 && i < s->n_fns; i++)
        for (size_t j = 0; r == 0 && j < i; j++)
            if (streq(s->fns[i].path, s->fns[j].path))
                r = ig_error_set(err, EINVAL, "functions.%s.path: \"%s\" is %s's path too",
                                 s->fns[i].name, s->fns[i].path, s->fns[j].name);
    cJSON_Delete(root);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(s);
    return 0;
}

cJSON *service_to_json(const struct service *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *fns = root ? cJSON_AddObjectToObject(root, "functions") : NULL;
    bool ok = fns && cJSON_AddStringToObject(root, "name", s->name);
    for (size_t i = 0; ok && i < s->n_fns; i++) {
        cJSON *f = cJSON_Duplicate(s->fns[i].triggers, true);
        ok = f && cJSON_AddItemToObject(fns, s->fns[i].name, f) &&
             cJSON_AddStringToObject(f, "path", s->fns[i].path);
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int service_function_manifest(const struct service_function *sf, const char *text, size_t len,
                              struct manifest **ret, struct ig_error *err)
{
    struct manifest *own = NULL;
    if (len > MANIFEST_FILE_MAX)
        return ig_error_set(err, EINVAL, "function.json: over %u bytes", MANIFEST_FILE_MAX);
    cJSON *root = manifest_json_parse(text, len, "function.json", err);
    if (!root)
        return -EINVAL;
    /* function.json on its own first, so its errors read as they would for `ignis push`. */
    int r = manifest_from_json(root, &own, err);
    if (r == 0 && !streq(own->name, sf->name))
        r = ig_error_set(err, EINVAL, "name: function.json names \"%s\" but service.json \"%s\"",
                         own->name, sf->name);
    manifest_free(own);
    if (r == 0 && apply_triggers(root, sf->triggers) < 0)
        r = ig_error_set(err, ENOMEM, "out of memory");
    if (r == 0)
        r = manifest_from_json(root, ret, err);
    cJSON_Delete(root);
    return r;
}

/* ---- the deploy archive ---- */

static int add_entry(struct archive *a, const char *path, const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return -ENOMEM;
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    int r = archive_write_header(a, e) == ARCHIVE_OK &&
                    (len == 0 || archive_write_data(a, data, len) == (la_ssize_t)len)
                ? 0
                : -EIO;
    archive_entry_free(e);
    return r;
}

int service_archive_pack(const char *service_json, size_t service_json_len,
                         const char *const *names, char *const *bundles, const size_t *lens,
                         size_t n, char **ret, size_t *ret_len, struct ig_error *err)
{
    /* A tar's size is known: a 512-byte header per entry (pax adds one more header block and
     * its data for long names), the data padded to 512, two zero blocks and the record's
     * padding to 10240. */
    size_t cap = 10240 * 2 + service_json_len + 4 * 512;
    for (size_t i = 0; i < n; i++)
        cap += lens[i] + 4 * 512;
    if (cap > SERVICE_ARCHIVE_MAX)
        return ig_error_set(err, EFBIG, "the service is over the %u MiB deploy limit",
                            SERVICE_ARCHIVE_MAX >> 20);
    _cleanup_free_ char *buf = malloc(cap);
    size_t used = 0;
    struct archive *a = archive_write_new();
    if (!buf || !a) {
        archive_write_free(a);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    int r = archive_write_set_format_pax_restricted(a) == ARCHIVE_OK &&
                    archive_write_open_memory(a, buf, cap, &used) == ARCHIVE_OK
                ? 0
                : -EIO;
    if (r == 0)
        r = add_entry(a, "service.json", service_json, service_json_len);
    for (size_t i = 0; r == 0 && i < n; i++) {
        char path[128];
        snprintf(path, sizeof(path), BUNDLE_PREFIX "%s" BUNDLE_SUFFIX, names[i]);
        r = add_entry(a, path, bundles[i], lens[i]);
    }
    if (r == 0 && archive_write_close(a) != ARCHIVE_OK)
        r = -EIO;
    if (r < 0)
        ig_error_set(err, EIO, "packing the service: %s", archive_error_string(a));
    archive_write_free(a);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(buf);
    *ret_len = used;
    return 0;
}

void service_archive_clear(struct service_archive *a)
{
    free(a->service_json);
    for (size_t i = 0; i < a->n_bundles; i++)
        free(a->bundles[i].data);
    free(a->bundles);
    memset(a, 0, sizeof(*a));
}

const struct service_archive_entry *service_archive_find(const struct service_archive *a,
                                                         const char *name)
{
    for (size_t i = 0; i < a->n_bundles; i++)
        if (streq(a->bundles[i].name, name))
            return &a->bundles[i];
    return NULL;
}

/* Reads the current entry's data, counting bytes as they come (a header's size is not to be
 * trusted), at most max. */
static int read_data(struct archive *a, const char *path, size_t max, char **ret, size_t *ret_len,
                     struct ig_error *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;
    char chunk[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, chunk, sizeof(chunk))) > 0) {
        if (len + (size_t)n > max)
            return ig_error_set(err, EFBIG, "%s: over %zu bytes", path, max);
        if (grow_buffer(&buf, &cap, len + (size_t)n + 1) < 0)
            return ig_error_set(err, ENOMEM, "out of memory");
        memcpy(buf + len, chunk, (size_t)n);
        len += (size_t)n;
    }
    if (n < 0)
        return ig_error_set(err, EINVAL, "%s: %s", path, archive_error_string(a));
    if (!buf && !(buf = malloc(1)))
        return ig_error_set(err, ENOMEM, "out of memory");
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    *ret_len = len;
    return 0;
}

/* "functions/NAME.tar.gz" → NAME, or false. */
static bool bundle_entry_name(const char *path, char name[MANIFEST_NAME_MAX + 1])
{
    size_t plen = strlen(BUNDLE_PREFIX), slen = strlen(BUNDLE_SUFFIX), len = strlen(path);
    if (len <= plen + slen || !startswith(path, BUNDLE_PREFIX) ||
        !streq(path + len - slen, BUNDLE_SUFFIX) || len - plen - slen > MANIFEST_NAME_MAX)
        return false;
    memcpy(name, path + plen, len - plen - slen);
    name[len - plen - slen] = '\0';
    return manifest_name_valid(name);
}

static int read_entries(struct archive *a, struct service_archive *out, struct ig_error *err)
{
    struct archive_entry *e;
    int q;
    while ((q = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *path = archive_entry_pathname(e);
        char name[MANIFEST_NAME_MAX + 1];
        if (!path || archive_entry_filetype(e) != AE_IFREG)
            return ig_error_set(err, EINVAL, "%.200s: not a regular file", path ? path : "?");
        if (streq(path, "service.json")) {
            if (out->service_json)
                return ig_error_set(err, EINVAL, "service.json: appears twice");
            int r = read_data(a, path, SERVICE_FILE_MAX, &out->service_json, &out->service_json_len,
                              err);
            if (r < 0)
                return r;
        } else if (bundle_entry_name(path, name)) {
            if (service_archive_find(out, name))
                return ig_error_set(err, EINVAL, "%s: appears twice", path);
            if (out->n_bundles == SERVICE_FUNCTIONS_MAX)
                return ig_error_set(err, EINVAL, "at most %d bundles", SERVICE_FUNCTIONS_MAX);
            if (!out->bundles &&
                !(out->bundles = calloc(SERVICE_FUNCTIONS_MAX, sizeof(*out->bundles))))
                return ig_error_set(err, ENOMEM, "out of memory");
            struct service_archive_entry *b = &out->bundles[out->n_bundles];
            int r = read_data(a, path, REGISTRY_MAX_BUNDLE, &b->data, &b->len, err);
            if (r < 0)
                return r;
            snprintf(b->name, sizeof(b->name), "%s", name);
            out->n_bundles++;
        } else
            return ig_error_set(err, EINVAL,
                                "%.200s: unexpected entry (only service.json and "
                                "functions/NAME.tar.gz)",
                                path);
    }
    if (q != ARCHIVE_EOF)
        return ig_error_set(err, EINVAL, "not a deploy archive (a tar): %s",
                            archive_error_string(a));
    if (!out->service_json)
        return ig_error_set(err, EINVAL, "service.json: missing from the deploy archive");
    return 0;
}

int service_archive_read(const void *data, size_t len, struct service_archive *ret,
                         struct ig_error *err)
{
    struct service_archive out = {};
    struct archive *a = archive_read_new();
    if (!a)
        return ig_error_set(err, ENOMEM, "out of memory");
    /* Only tar, and no decompression: the bundles inside are gzip already, and without a filter
     * the archive's data can be no larger than the body it came in. */
    int r = 0;
    if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_open_memory(a, data, len) != ARCHIVE_OK)
        r = ig_error_set(err, EINVAL, "not a deploy archive (a tar): %s", archive_error_string(a));
    if (r == 0)
        r = read_entries(a, &out, err);
    archive_read_free(a);
    if (r < 0) {
        service_archive_clear(&out);
        return r;
    }
    *ret = out;
    return 0;
}
