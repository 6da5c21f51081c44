#include "functions/secrets.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "functions/manifest.h"

void secrets_path(const char *state_dir, const char *function, char *buf, size_t size)
{
    snprintf(buf, size, "%s/secrets/%s", state_dir, function);
}

/* The URL's function and secret names: replies 400 and returns false when one is not valid. */
static bool check_names(struct http_request *req, bool with_secret)
{
    const char *fn = http_request_param(req, 0), *name = http_request_param(req, 1);
    if (!manifest_name_valid(fn)) {
        http_reply_error(req, 400, "invalid_name",
                         "'%s' is not a function name ([a-z][a-z0-9-]{0,62})", fn);
        return false;
    }
    if (with_secret && !manifest_secret_name_valid(name)) {
        http_reply_error(req, 400, "invalid_name",
                         "'%s' is not a secret name (1 to 128 of A-Z a-z 0-9 _ - ., not "
                         "starting with . or -)",
                         name);
        return false;
    }
    return true;
}

/* The secrets stored in dir (its files not starting with '.'); 0 when it does not exist. */
static size_t count_secrets(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static int write_secret(const char *dir, const char *name, const char *value, size_t len,
                        bool *ret_created)
{
    char path[4600], tmp[4600];
    int r = mkdir_p(dir, 0700);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    /* Secret names never start with '.': the temporary name cannot be one. */
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s", dir, name);
    unlink(tmp);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (write(fd, value, len) != (ssize_t)len || fsync(fd) < 0) {
        r = errno ? -errno : -EIO;
        unlink(tmp);
        return r;
    }
    *ret_created = access(path, F_OK) < 0;
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

void secrets_http_put(struct http_request *req, const char *state_dir)
{
    if (!check_names(req, true))
        return;
    const char *fn = http_request_param(req, 0), *name = http_request_param(req, 1);
    size_t len;
    const char *value = http_request_body(req, &len);
    if (len == 0) {
        http_reply_error(req, 400, "bad_request", "the body (the secret's value) is empty");
        return;
    }
    char dir[4200], detail[200];
    bool created = false;
    secrets_path(state_dir, fn, dir, sizeof(dir));
    snprintf(detail, sizeof(detail), "secret=%s bytes=%zu", name, len);
    http_request_set_audit_detail(req, detail);
    char path[4600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, F_OK) < 0 && count_secrets(dir) >= SECRETS_MAX_PER_FUNCTION) {
        http_reply_error(req, 409, "too_many_secrets",
                         "'%s' already has %d secrets: remove one first", fn,
                         SECRETS_MAX_PER_FUNCTION);
        return;
    }
    int r = write_secret(dir, name, value, len, &created);
    if (r < 0) {
        log_error("storing a secret failed", "function=%s secret=%s error=\"%s\"", fn, name,
                  strerror(-r));
        http_reply_error(req, 500, "internal", "storing secret '%s': %s", name, strerror(-r));
        return;
    }
    log_info("secret set", "function=%s secret=%s bytes=%zu", fn, name, len);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", fn);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "bytes", (double)len);
    cJSON_AddBoolToObject(o, "created", created);
    http_reply_json(req, created ? 201 : 200, o);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void secrets_http_list(struct http_request *req, const char *state_dir)
{
    if (!check_names(req, false))
        return;
    const char *fn = http_request_param(req, 0);
    char dir[4200];
    secrets_path(state_dir, fn, dir, sizeof(dir));
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "function", fn);
    cJSON *arr = cJSON_AddArrayToObject(root, "secrets");
    DIR *d = opendir(dir);
    if (!d && errno != ENOENT) {
        cJSON_Delete(root);
        http_reply_error(req, 500, "internal", "reading the secrets of '%s': %s", fn,
                         strerror(errno));
        return;
    }
    char *names[SECRETS_MAX_PER_FUNCTION];
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < ARRAY_SIZE(names))
        if (de->d_name[0] != '.' && (names[n] = strdup(de->d_name)))
            n++;
    qsort(names, n, sizeof(names[0]), cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (d && fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode)) {
            cJSON *o = cJSON_CreateObject();
            char when[32];
            format_time_ms((uint64_t)st.st_mtim.tv_sec * 1000000u +
                               (uint64_t)st.st_mtim.tv_nsec / 1000u,
                           when);
            cJSON_AddStringToObject(o, "name", names[i]);
            cJSON_AddNumberToObject(o, "bytes", (double)st.st_size);
            cJSON_AddStringToObject(o, "updated_at", when);
            cJSON_AddItemToArray(arr, o);
        }
        free(names[i]);
    }
    if (d)
        closedir(d);
    http_reply_json(req, 200, root);
}

void secrets_http_delete(struct http_request *req, const char *state_dir)
{
    if (!check_names(req, true))
        return;
    const char *fn = http_request_param(req, 0), *name = http_request_param(req, 1);
    char dir[4200], path[4600], detail[200];
    secrets_path(state_dir, fn, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(detail, sizeof(detail), "secret=%s", name);
    http_request_set_audit_detail(req, detail);
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            http_reply_error(req, 404, "not_found", "function '%s' has no secret '%s'", fn, name);
        else
            http_reply_error(req, 500, "internal", "removing secret '%s': %s", name,
                             strerror(errno));
        return;
    }
    rmdir(dir); /* the last one: fails (ENOTEMPTY) otherwise, which is fine */
    log_info("secret removed", "function=%s secret=%s", fn, name);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", fn);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "deleted", true);
    http_reply_json(req, 200, o);
}
