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

int secrets_check_names(const char *function, const char *secret, struct ig_error *err)
{
    if (!manifest_name_valid(function))
        return ig_error_set_reason(err, EINVAL, "invalid_name",
                                   "'%s' is not a function name ([a-z][a-z0-9-]{0,62})", function);
    if (secret && !manifest_secret_name_valid(secret))
        return ig_error_set_reason(err, EINVAL, "invalid_name",
                                   "'%s' is not a secret name (1 to 128 of A-Z a-z 0-9 _ - ., "
                                   "not starting with . or -)",
                                   secret);
    return 0;
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

int secrets_put(const char *state_dir, const char *function, const char *secret, const void *value,
                size_t len, bool *ret_created, struct ig_error *err)
{
    if (secrets_check_names(function, secret, err) < 0)
        return -EINVAL;
    if (len == 0)
        return ig_error_set_reason(err, EINVAL, "bad_request",
                                   "the body (the secret's value) is empty");
    if (len > SECRET_MAX_BYTES)
        return ig_error_set(err, EFBIG, "the secret's value is %zu bytes, over the limit of %u",
                            len, (unsigned)SECRET_MAX_BYTES);
    char dir[4200], path[4600];
    bool created = false;
    secrets_path(state_dir, function, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, secret);
    if (access(path, F_OK) < 0 && count_secrets(dir) >= SECRETS_MAX_PER_FUNCTION)
        return ig_error_set_reason(err, EBUSY, "too_many_secrets",
                                   "'%s' already has %d secrets: remove one first", function,
                                   SECRETS_MAX_PER_FUNCTION);
    int r = write_secret(dir, secret, value, len, &created);
    if (r < 0) {
        log_error("storing a secret failed", "function=%s secret=%s error=\"%s\"", function, secret,
                  strerror(-r));
        /* A full disk keeps its errno (507, which a client can wait out); else 500. */
        bool full = r == -ENOSPC || r == -EDQUOT;
        return ig_error_set(err, full ? -r : EIO, "storing secret '%s': %s", secret, strerror(-r));
    }
    log_info("secret set", "function=%s secret=%s bytes=%zu", function, secret, len);
    *ret_created = created;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void secrets_list_free(struct secret_info *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i].name);
    free(list);
}

/* The names in d (not starting with '.'), at most SECRETS_MAX_PER_FUNCTION, sorted. */
static size_t read_names(DIR *d, char **names)
{
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < SECRETS_MAX_PER_FUNCTION)
        if (de->d_name[0] != '.' && (names[n] = strdup(de->d_name)))
            n++;
    qsort(names, n, sizeof(names[0]), cmp_names);
    return n;
}

int secrets_list(const char *state_dir, const char *function, struct secret_info **ret,
                 size_t *ret_n, struct ig_error *err)
{
    if (secrets_check_names(function, NULL, err) < 0)
        return -EINVAL;
    char dir[4200];
    secrets_path(state_dir, function, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d && errno != ENOENT)
        return ig_error_set_reason(err, EIO, "internal", "reading the secrets of '%s': %s",
                                   function, strerror(errno));
    char *names[SECRETS_MAX_PER_FUNCTION];
    size_t n = read_names(d, names), k = 0;
    struct secret_info *list = calloc(n + 1, sizeof(*list));
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (list && d && fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode)) {
            list[k].name = TAKE_PTR(names[i]);
            list[k].bytes = (uint64_t)st.st_size;
            list[k].updated_usec =
                (uint64_t)st.st_mtim.tv_sec * 1000000u + (uint64_t)st.st_mtim.tv_nsec / 1000u;
            k++;
        }
        free(names[i]);
    }
    if (d)
        closedir(d);
    if (!list)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    *ret = list;
    *ret_n = k;
    return 0;
}

int secrets_delete(const char *state_dir, const char *function, const char *secret,
                   struct ig_error *err)
{
    if (secrets_check_names(function, secret, err) < 0)
        return -EINVAL;
    char dir[4200], path[4600];
    secrets_path(state_dir, function, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, secret);
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return ig_error_set_reason(err, ENOENT, "not_found", "function '%s' has no secret '%s'",
                                       function, secret);
        return ig_error_set_reason(err, EIO, "internal", "removing secret '%s': %s", secret,
                                   strerror(errno));
    }
    rmdir(dir); /* the last one: fails (ENOTEMPTY) otherwise, which is fine */
    log_info("secret removed", "function=%s secret=%s", function, secret);
    return 0;
}
