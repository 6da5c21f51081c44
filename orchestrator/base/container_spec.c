#include "base/container_spec.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/resource.h>

#define PATH_MAX_LEN 4095u
#define STRING_MAX   4096u

void container_spec_init(struct container_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->uid = 65534;
    s->gid = 65534;
    s->tmp_size = 64ull << 20;
    /* Never above what the daemon can give: raising a hard limit needs CAP_SYS_RESOURCE, which
     * the shim does not use, so under a lower one every spawn would fail "setting rlimit
     * nofile: Operation not permitted". */
    struct rlimit rl;
    s->rlimit_nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < s->rlimit_nofile)
        s->rlimit_nofile = rl.rlim_max < 16 ? 16 : rl.rlim_max;
    s->rlimit_nproc = 1024;
    s->userns_count = 65536;
}

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

void container_spec_clear(struct container_spec *s)
{
    free(s->image);
    free(s->bundle);
    strv_free(s->args);
    strv_free(s->env);
    free(s->cwd);
    free(s->hostname);
    strv_free(s->cgroups);
    free(s->netns);
    free(s->secrets_dir);
    strv_free(s->secrets);
    container_spec_init(s);
}

static size_t strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static bool valid_hostname(const char *h)
{
    size_t len = strlen(h);
    if (len == 0 || len > CONTAINER_HOSTNAME_MAX || h[0] == '-' || h[0] == '.')
        return false;
    for (const char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return false;
    return true;
}

static bool valid_abs_path(const char *p)
{
    return p && p[0] == '/' && strlen(p) <= PATH_MAX_LEN;
}

int container_spec_validate(const struct container_spec *s, struct ig_error *err)
{
    if (!valid_abs_path(s->image))
        return ig_error_set(err, EINVAL, "spec: \"image\" must be an absolute path");
    if (s->bundle && !valid_abs_path(s->bundle))
        return ig_error_set(err, EINVAL, "spec: \"bundle\" must be an absolute path");
    size_t nargs = strv_len(s->args);
    if (nargs == 0 || nargs > CONTAINER_SPEC_MAX_ARGS)
        return ig_error_set(err, EINVAL, "spec: \"args\" must hold 1 to %u strings",
                            CONTAINER_SPEC_MAX_ARGS);
    if (!valid_abs_path(s->args[0]))
        return ig_error_set(err, EINVAL, "spec: \"args\"[0] must be an absolute path");
    size_t nenv = strv_len(s->env);
    if (nenv > CONTAINER_SPEC_MAX_ENV)
        return ig_error_set(err, EINVAL, "spec: \"env\" holds more than %u entries",
                            CONTAINER_SPEC_MAX_ENV);
    for (size_t i = 0; i < nenv; i++)
        if (!strchr(s->env[i], '=') || s->env[i][0] == '=')
            return ig_error_set(err, EINVAL, "spec: \"env\"[%zu] is not KEY=value", i);
    if (s->netns && !valid_abs_path(s->netns))
        return ig_error_set(err, EINVAL, "spec: \"netns\" must be an absolute path");
    if (s->cwd && !valid_abs_path(s->cwd))
        return ig_error_set(err, EINVAL, "spec: \"cwd\" must be an absolute path");
    if (s->hostname && !valid_hostname(s->hostname))
        return ig_error_set(err, EINVAL,
                            "spec: \"hostname\" must be 1 to %u letters, digits, '-' or '.'",
                            CONTAINER_HOSTNAME_MAX);
    /* Root in the container without a user namespace would be root on the host's files. */
    if ((s->uid == 0 || s->gid == 0) && !s->user_namespace)
        return ig_error_set(err, EINVAL,
                            "spec: \"uid\" and \"gid\" must not be 0 without a user namespace");
    if (s->user_namespace && (s->uid >= s->userns_count || s->gid >= s->userns_count))
        return ig_error_set(err, EINVAL, "spec: \"uid\"/\"gid\" lie outside the user namespace");
    if (s->user_namespace &&
        (s->userns_count == 0 || s->userns_uid_base == 0 || s->userns_gid_base == 0))
        return ig_error_set(err, EINVAL, "spec: \"user_namespace\" must map to non-root host ids");
    /* Only root of its own user namespace may keep capabilities: never on the host. */
    if (s->template_mode && (!s->user_namespace || s->userns_count < 65536))
        return ig_error_set(err, EINVAL,
                            "spec: \"template\" needs a \"user_namespace\" of 65536 ids");
    if (s->tmp_size < 4096 || s->tmp_size > (64ull << 30))
        return ig_error_set(err, EINVAL, "spec: \"tmp_size\" must be 4 KiB to 64 GiB");
    if (s->rlimit_nofile < 16 || s->rlimit_nofile > (1u << 20))
        return ig_error_set(err, EINVAL, "spec: \"rlimits\".\"nofile\" must be 16 to 1048576");
    if (s->rlimit_nproc < 1 || s->rlimit_nproc > CONTAINER_SPEC_NPROC_MAX)
        return ig_error_set(err, EINVAL, "spec: \"rlimits\".\"nproc\" must be 1 to 4194304");
    size_t ncg = strv_len(s->cgroups);
    if (ncg > CONTAINER_SPEC_MAX_CGROUPS)
        return ig_error_set(err, EINVAL, "spec: \"cgroups\" holds more than %u paths",
                            CONTAINER_SPEC_MAX_CGROUPS);
    for (size_t i = 0; i < ncg; i++)
        if (!valid_abs_path(s->cgroups[i]))
            return ig_error_set(err, EINVAL, "spec: \"cgroups\"[%zu] must be an absolute path", i);
    if (s->secrets_dir && !valid_abs_path(s->secrets_dir))
        return ig_error_set(err, EINVAL, "spec: \"secrets_dir\" must be an absolute path");
    if (s->secrets && !s->secrets_dir)
        return ig_error_set(err, EINVAL, "spec: \"secrets\" needs \"secrets_dir\"");
    size_t nsec = strv_len(s->secrets);
    if (nsec > CONTAINER_SPEC_MAX_SECRETS)
        return ig_error_set(err, EINVAL, "spec: \"secrets\" holds more than %u names",
                            CONTAINER_SPEC_MAX_SECRETS);
    /* A file name in one directory: never a path, never hidden (the copy is by name). */
    for (size_t i = 0; i < nsec; i++)
        if (!s->secrets[i][0] || s->secrets[i][0] == '.' || strchr(s->secrets[i], '/') ||
            strlen(s->secrets[i]) > 255)
            return ig_error_set(err, EINVAL, "spec: \"secrets\"[%zu] must be a file name", i);
    return 0;
}

static int get_string(const cJSON *item, const char *name, char **ret, struct ig_error *err)
{
    if (!cJSON_IsString(item))
        return ig_error_set(err, EINVAL, "spec: \"%s\" must be a string", name);
    if (strlen(item->valuestring) > STRING_MAX)
        return ig_error_set(err, EINVAL, "spec: \"%s\" is longer than %u bytes", name, STRING_MAX);
    char *copy = strdup(item->valuestring);
    if (!copy)
        return ig_error_set(err, ENOMEM, "out of memory");
    free(*ret);
    *ret = copy;
    return 0;
}

static int get_strv(const cJSON *item, const char *name, size_t max, char ***ret,
                    struct ig_error *err)
{
    if (!cJSON_IsArray(item))
        return ig_error_set(err, EINVAL, "spec: \"%s\" must be an array of strings", name);
    size_t n = (size_t)cJSON_GetArraySize(item);
    if (n > max)
        return ig_error_set(err, EINVAL, "spec: \"%s\" holds more than %zu entries", name, max);
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return ig_error_set(err, ENOMEM, "out of memory");
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, item)
    {
        if (!cJSON_IsString(e) || strlen(e->valuestring) > STRING_MAX ||
            !(v[i] = strdup(e->valuestring))) {
            strv_free(v);
            return ig_error_set(err, EINVAL,
                                "spec: \"%s\"[%zu] must be a string of at most %u "
                                "bytes",
                                name, i, STRING_MAX);
        }
        i++;
    }
    strv_free(*ret);
    *ret = v;
    return 0;
}

/* JSON numbers are doubles: accept only whole numbers in [min, max]. */
static int get_u64(const cJSON *item, const char *name, uint64_t min, uint64_t max, uint64_t *ret,
                   struct ig_error *err)
{
    if (!cJSON_IsNumber(item) || item->valuedouble < (double)min ||
        item->valuedouble > (double)max || item->valuedouble != (double)(uint64_t)item->valuedouble)
        return ig_error_set(err, EINVAL, "spec: \"%s\" must be a whole number from %llu to %llu",
                            name, (unsigned long long)min, (unsigned long long)max);
    *ret = (uint64_t)item->valuedouble;
    return 0;
}

static int get_u32(const cJSON *item, const char *name, uint32_t *ret, struct ig_error *err)
{
    uint64_t v = 0;
    int r = get_u64(item, name, 0, UINT32_MAX - 1, &v, err);
    if (r == 0)
        *ret = (uint32_t)v;
    return r;
}

static int parse_rlimits(const cJSON *obj, struct container_spec *s, struct ig_error *err)
{
    const cJSON *e;
    int r;
    if (!cJSON_IsObject(obj))
        return ig_error_set(err, EINVAL, "spec: \"rlimits\" must be an object");
    cJSON_ArrayForEach(e, obj)
    {
        if (streq(e->string, "nofile"))
            r = get_u64(e, "rlimits.nofile", 0, UINT32_MAX, &s->rlimit_nofile, err);
        else if (streq(e->string, "nproc"))
            r = get_u64(e, "rlimits.nproc", 0, UINT32_MAX, &s->rlimit_nproc, err);
        else
            r = ig_error_set(err, EINVAL, "spec: unknown field \"rlimits\".\"%s\"", e->string);
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_userns(const cJSON *obj, struct container_spec *s, struct ig_error *err)
{
    const cJSON *e;
    int r;
    if (cJSON_IsFalse(obj) || cJSON_IsNull(obj)) {
        s->user_namespace = false;
        return 0;
    }
    if (!cJSON_IsObject(obj))
        return ig_error_set(err, EINVAL, "spec: \"user_namespace\" must be an object or false");
    s->user_namespace = true;
    cJSON_ArrayForEach(e, obj)
    {
        if (streq(e->string, "uid_base"))
            r = get_u32(e, "user_namespace.uid_base", &s->userns_uid_base, err);
        else if (streq(e->string, "gid_base"))
            r = get_u32(e, "user_namespace.gid_base", &s->userns_gid_base, err);
        else if (streq(e->string, "count"))
            r = get_u32(e, "user_namespace.count", &s->userns_count, err);
        else
            r = ig_error_set(err, EINVAL, "spec: unknown field \"user_namespace\".\"%s\"",
                             e->string);
        if (r < 0)
            return r;
    }
    return 0;
}

int container_spec_parse(const char *text, struct container_spec *ret, struct ig_error *err)
{
    struct container_spec s;
    const cJSON *e;
    int r = 0;

    if (strlen(text) > CONTAINER_SPEC_MAX)
        return ig_error_set(err, EFBIG, "spec: longer than %u bytes", CONTAINER_SPEC_MAX);
    cJSON *root = cJSON_Parse(text);
    if (!root)
        return ig_error_set(err, EINVAL, "spec: not valid JSON");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ig_error_set(err, EINVAL, "spec: must be a JSON object");
    }
    container_spec_init(&s);
    cJSON_ArrayForEach(e, root)
    {
        const char *k = e->string;
        if (streq(k, "image"))
            r = get_string(e, k, &s.image, err);
        else if (streq(k, "bundle"))
            r = cJSON_IsNull(e) ? 0 : get_string(e, k, &s.bundle, err);
        else if (streq(k, "args"))
            r = get_strv(e, k, CONTAINER_SPEC_MAX_ARGS, &s.args, err);
        else if (streq(k, "env"))
            r = get_strv(e, k, CONTAINER_SPEC_MAX_ENV, &s.env, err);
        else if (streq(k, "cwd"))
            r = get_string(e, k, &s.cwd, err);
        else if (streq(k, "hostname"))
            r = get_string(e, k, &s.hostname, err);
        else if (streq(k, "uid"))
            r = get_u32(e, k, &s.uid, err);
        else if (streq(k, "gid"))
            r = get_u32(e, k, &s.gid, err);
        else if (streq(k, "tmp_size"))
            r = get_u64(e, k, 0, UINT64_C(1) << 50, &s.tmp_size, err);
        else if (streq(k, "rlimits"))
            r = parse_rlimits(e, &s, err);
        else if (streq(k, "cgroups"))
            r = get_strv(e, k, CONTAINER_SPEC_MAX_CGROUPS, &s.cgroups, err);
        else if (streq(k, "netns"))
            r = cJSON_IsNull(e) ? 0 : get_string(e, k, &s.netns, err);
        else if (streq(k, "secrets_dir"))
            r = cJSON_IsNull(e) ? 0 : get_string(e, k, &s.secrets_dir, err);
        else if (streq(k, "secrets"))
            r = get_strv(e, k, CONTAINER_SPEC_MAX_SECRETS, &s.secrets, err);
        else if (streq(k, "user_namespace"))
            r = parse_userns(e, &s, err);
        else if (streq(k, "template"))
            r = cJSON_IsBool(e) ? (s.template_mode = cJSON_IsTrue(e), 0)
                                : ig_error_set(err, EINVAL, "spec: \"template\" must be a boolean");
        else
            r = ig_error_set(err, EINVAL, "spec: unknown field \"%s\"", k);
        if (r < 0)
            break;
    }
    cJSON_Delete(root);
    if (r == 0)
        r = container_spec_validate(&s, err);
    if (r < 0) {
        container_spec_clear(&s);
        return r;
    }
    *ret = s;
    return 0;
}

static cJSON *strv_to_json(char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && v && v[i]; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateString(v[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

int container_spec_format(const struct container_spec *s, char **ret, struct ig_error *err)
{
    int r = container_spec_validate(s, err);
    if (r < 0)
        return r;
    cJSON *root = cJSON_CreateObject(), *rl = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "image", s->image) &&
              (!s->bundle || cJSON_AddStringToObject(root, "bundle", s->bundle)) &&
              cJSON_AddItemToObject(root, "args", strv_to_json(s->args)) &&
              (!s->env || cJSON_AddItemToObject(root, "env", strv_to_json(s->env))) &&
              (!s->cwd || cJSON_AddStringToObject(root, "cwd", s->cwd)) &&
              (!s->hostname || cJSON_AddStringToObject(root, "hostname", s->hostname)) &&
              cJSON_AddNumberToObject(root, "uid", s->uid) &&
              cJSON_AddNumberToObject(root, "gid", s->gid) &&
              cJSON_AddNumberToObject(root, "tmp_size", (double)s->tmp_size) &&
              (rl = cJSON_AddObjectToObject(root, "rlimits")) &&
              cJSON_AddNumberToObject(rl, "nofile", (double)s->rlimit_nofile) &&
              cJSON_AddNumberToObject(rl, "nproc", (double)s->rlimit_nproc) &&
              (!s->cgroups || cJSON_AddItemToObject(root, "cgroups", strv_to_json(s->cgroups))) &&
              (!s->netns || cJSON_AddStringToObject(root, "netns", s->netns)) &&
              (!s->secrets_dir || cJSON_AddStringToObject(root, "secrets_dir", s->secrets_dir)) &&
              (!s->secrets || cJSON_AddItemToObject(root, "secrets", strv_to_json(s->secrets))) &&
              (!s->template_mode || cJSON_AddTrueToObject(root, "template"));
    if (ok && s->user_namespace) {
        cJSON *u = cJSON_AddObjectToObject(root, "user_namespace");
        ok = u && cJSON_AddNumberToObject(u, "uid_base", s->userns_uid_base) &&
             cJSON_AddNumberToObject(u, "gid_base", s->userns_gid_base) &&
             cJSON_AddNumberToObject(u, "count", s->userns_count);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return ig_error_set(err, ENOMEM, "out of memory");
    if (strlen(text) > CONTAINER_SPEC_MAX) {
        free(text);
        return ig_error_set(err, EFBIG, "spec: longer than %u bytes", CONTAINER_SPEC_MAX);
    }
    *ret = text;
    return 0;
}
