#include "functions/secrets.h"

#include <dirent.h>
#include <fcntl.h>
#include <nettle/base16.h>
#include <nettle/gcm.h>
#include <nettle/memops.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "functions/manifest.h"
#include "records/secrets_store.h"

_Static_assert(SECRETS_NONCE_BYTES == GCM_IV_SIZE &&
                   SECRETS_NONCE_BYTES == SECRETS_STORE_NONCE_BYTES &&
                   SECRETS_TAG_BYTES == GCM_DIGEST_SIZE && SECRETS_KEY_BYTES == AES256_KEY_SIZE,
               "the sealing's sizes are GCM's with AES-256");

struct secrets {
    char state_dir[4096];
    struct store *store; /* NULL: this host's files alone */
    uint8_t key[SECRETS_KEY_BYTES];
    /* Shared, and this host's files were imported (the marker file exists): a file whose secret
     * the store lacks is removed. Before, only those the store has are written. */
    bool imported;
    /* The last values (by nonce) that did not open with this host's key and were logged: each is
     * logged once, not at every re-read. */
    uint8_t told[64][SECRETS_NONCE_BYTES];
    unsigned ntold;
};

/* Whether the value sealed with nonce was logged as unopenable already; remembers it if not. */
static bool told_already(struct secrets *s, const uint8_t nonce[SECRETS_NONCE_BYTES])
{
    unsigned n = s->ntold < ARRAY_SIZE(s->told) ? s->ntold : ARRAY_SIZE(s->told);
    for (unsigned i = 0; i < n; i++)
        if (memcmp(s->told[i], nonce, SECRETS_NONCE_BYTES) == 0)
            return true;
    memcpy(s->told[s->ntold++ % ARRAY_SIZE(s->told)], nonce, SECRETS_NONCE_BYTES);
    return false;
}

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

int secrets_key_load(const char *path, uint8_t ret[SECRETS_KEY_BYTES], struct ig_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return ig_error_set(err, errno, "secrets_key %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ig_error_set(err, EINVAL, "secrets_key %s: not a regular file", path);
    /* Whoever reads the key reads every secret of the cluster from the store. */
    if (st.st_mode & 077)
        return ig_error_set(err, EPERM,
                            "secrets_key %s: mode %03o lets others than its owner at it "
                            "(chmod 600 it)",
                            path, (unsigned)(st.st_mode & 0777));
    uint8_t buf[2 * SECRETS_KEY_BYTES + 2];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0)
        return ig_error_set(err, errno, "secrets_key %s: %s", path, strerror(errno));
    int r = 0;
    if (n == SECRETS_KEY_BYTES) {
        memcpy(ret, buf, SECRETS_KEY_BYTES);
    } else if (n == 2 * SECRETS_KEY_BYTES ||
               (n == 2 * SECRETS_KEY_BYTES + 1 && buf[n - 1] == '\n')) {
        struct base16_decode_ctx ctx;
        uint8_t key[BASE16_DECODE_LENGTH(2 * SECRETS_KEY_BYTES)];
        size_t got;
        base16_decode_init(&ctx);
        if (base16_decode_update(&ctx, &got, key, 2 * SECRETS_KEY_BYTES, (const char *)buf) &&
            base16_decode_final(&ctx) && got == SECRETS_KEY_BYTES)
            memcpy(ret, key, SECRETS_KEY_BYTES);
        else
            r = -EINVAL;
        explicit_bzero(key, sizeof(key));
    } else {
        r = -EINVAL;
    }
    explicit_bzero(buf, sizeof(buf));
    if (r < 0)
        return ig_error_set(err, EINVAL,
                            "secrets_key %s: not 32 bytes or 64 hex digits (make one with: head "
                            "-c 32 /dev/urandom > FILE)",
                            path);
    return 0;
}

/* The associated data: a label, then both names, each NUL-terminated (neither holds a NUL), so
 * that no two (function, name) pairs give the same bytes. Returns its length. */
static size_t associated_data(const char *function, const char *name, uint8_t ret[256])
{
    static const char label[] = "ignis secret v1";
    size_t fl = strnlen(function, 64), nl = strnlen(name, 256 - sizeof(label) - 64 - 2);
    memcpy(ret, label, sizeof(label));
    memcpy(ret + sizeof(label), function, fl);
    ret[sizeof(label) + fl] = '\0';
    memcpy(ret + sizeof(label) + fl + 1, name, nl);
    ret[sizeof(label) + fl + 1 + nl] = '\0';
    return sizeof(label) + fl + nl + 2;
}

static void gcm_start(struct gcm_aes256_ctx *ctx, const uint8_t key[SECRETS_KEY_BYTES],
                      const char *function, const char *name,
                      const uint8_t nonce[SECRETS_NONCE_BYTES])
{
    uint8_t ad[256];
    gcm_aes256_set_key(ctx, key);
    gcm_aes256_set_iv(ctx, SECRETS_NONCE_BYTES, nonce);
    gcm_aes256_update(ctx, associated_data(function, name, ad), ad);
}

void secrets_seal(const uint8_t key[SECRETS_KEY_BYTES], const char *function, const char *name,
                  const void *value, size_t len, uint8_t ret_nonce[SECRETS_NONCE_BYTES],
                  uint8_t *ret_sealed)
{
    struct gcm_aes256_ctx ctx;
    /* Random 96-bit nonces: GCM stays safe for 2^32 values under one key (NIST SP 800-38D
     * 8.3), far more than any cluster sets. */
    random_bytes(ret_nonce, SECRETS_NONCE_BYTES);
    gcm_start(&ctx, key, function, name, ret_nonce);
    gcm_aes256_encrypt(&ctx, len, ret_sealed, value);
    gcm_aes256_digest(&ctx, SECRETS_TAG_BYTES, ret_sealed + len);
    explicit_bzero(&ctx, sizeof(ctx));
}

int secrets_open(const uint8_t key[SECRETS_KEY_BYTES], const char *function, const char *name,
                 const uint8_t nonce[SECRETS_NONCE_BYTES], const uint8_t *sealed, size_t sealed_len,
                 uint8_t *ret_value)
{
    struct gcm_aes256_ctx ctx;
    uint8_t tag[SECRETS_TAG_BYTES];
    if (sealed_len < SECRETS_TAG_BYTES)
        return -EBADMSG;
    size_t len = sealed_len - SECRETS_TAG_BYTES;
    gcm_start(&ctx, key, function, name, nonce);
    gcm_aes256_decrypt(&ctx, len, ret_value, sealed);
    gcm_aes256_digest(&ctx, SECRETS_TAG_BYTES, tag);
    explicit_bzero(&ctx, sizeof(ctx));
    return memeql_sec(tag, sealed + len, SECRETS_TAG_BYTES) ? 0 : -EBADMSG;
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

static int write_secret(const char *dir, const char *name, const void *value, size_t len,
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

/* ---- shared through the store ---- */

/* STATE_DIR/secrets/.imported: this host's files went into the store (no function is named with
 * a '.'). */
static void marker_path(const struct secrets *s, char *buf, size_t size)
{
    snprintf(buf, size, "%s/secrets/.imported", s->state_dir);
}

/* Writes one function's secrets out: the names written (or already right) are kept. */
struct sync_state {
    struct secrets *s;
    char function[64];
    char *kept[SECRETS_MAX_PER_FUNCTION];
    size_t n_kept;
    int error;   /* the first file that could not be written */
    char **seen; /* sync_all: the functions the store has secrets of */
    size_t n_seen;
};

static void sync_kept_clear(struct sync_state *st)
{
    for (size_t i = 0; i < st->n_kept; i++)
        free(st->kept[i]);
    st->n_kept = 0;
}

/* Writes value out as the file of st's function's secret name, unless it holds it already. */
static int write_if_changed(const char *dir, const char *name, const uint8_t *value, size_t len)
{
    char path[4600];
    _cleanup_free_ char *old = NULL;
    size_t old_len;
    bool created;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int r = read_file(path, SECRET_MAX_BYTES + 1, &old, &old_len);
    bool same = r == 0 && old_len == len && memcmp(old, value, len) == 0;
    if (r == 0)
        explicit_bzero(old, old_len);
    return same ? 0 : write_secret(dir, name, value, len, &created);
}

static int sync_row(void *userdata, const struct secret_row *row)
{
    struct sync_state *st = userdata;
    char dir[4200];
    secrets_path(st->s->state_dir, row->function, dir, sizeof(dir));
    if (secrets_check_names(row->function, row->name, NULL) < 0 ||
        st->n_kept == SECRETS_MAX_PER_FUNCTION)
        return 0; /* no ignisd stores one */
    size_t len = row->sealed_len - (row->sealed_len >= SECRETS_TAG_BYTES ? SECRETS_TAG_BYTES : 0);
    _cleanup_free_ uint8_t *value = malloc(len + 1);
    if (!value)
        return -ENOMEM;
    int r = secrets_open(st->s->key, row->function, row->name, row->nonce, row->sealed,
                         row->sealed_len, value);
    if (r == 0)
        r = write_if_changed(dir, row->name, value, len);
    explicit_bzero(value, len);
    if (r == -EBADMSG) {
        char path[4600];
        if (!told_already(st->s, row->nonce))
            log_error("a secret does not open with this host's secrets_key: absent on this host",
                      "function=%s secret=%s", row->function, row->name);
        snprintf(path, sizeof(path), "%s/%s", dir, row->name);
        unlink(path);
        return 0;
    }
    if (r < 0) {
        log_error("writing out a secret failed", "function=%s secret=%s error=\"%s\"",
                  row->function, row->name, strerror(-r));
        if (!st->error)
            st->error = r;
        return 0;
    }
    if (!(st->kept[st->n_kept] = strdup(row->name)))
        return -ENOMEM;
    st->n_kept++;
    return 0;
}

static bool kept(const struct sync_state *st, const char *name)
{
    for (size_t i = 0; i < st->n_kept; i++)
        if (streq(st->kept[i], name))
            return true;
    return false;
}

/* Removes function's files the store did not have (those sync_row kept stay), once imported. */
static void prune(struct sync_state *st, const char *function)
{
    char dir[4200], path[4600];
    secrets_path(st->s->state_dir, function, dir, sizeof(dir));
    DIR *d = st->s->imported ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && !kept(st, de->d_name)) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            if (unlink(path) == 0)
                log_info("secret removed", "function=%s secret=%s", function, de->d_name);
        }
    if (d)
        closedir(d);
    rmdir(dir); /* when it is empty */
}

/* Each row of a read of every function's, in function order: a new function's first row ends
 * the one before, whose name is kept in seen. */
static int sync_any_row(void *userdata, const struct secret_row *row)
{
    struct sync_state *st = userdata;
    if (!manifest_name_valid(row->function))
        return 0; /* no ignisd stores one, and it would make a path */
    if (!streq(st->function, row->function)) {
        if (st->function[0])
            prune(st, st->function);
        sync_kept_clear(st);
        char **seen = reallocarray(st->seen, st->n_seen + 1, sizeof(*seen));
        if (!seen)
            return -ENOMEM;
        st->seen = seen;
        if (!(seen[st->n_seen] = strdup(row->function)))
            return -ENOMEM;
        st->n_seen++;
        snprintf(st->function, sizeof(st->function), "%s", row->function);
    }
    return sync_row(st, row);
}

static bool seen(const struct sync_state *st, const char *function)
{
    for (size_t i = 0; i < st->n_seen; i++)
        if (streq(st->seen[i], function))
            return true;
    return false;
}

static int sync_all(struct secrets *s, struct sync_state *st, struct ig_error *err)
{
    char root[4200];
    int r = secrets_store_load(s->store, NULL, sync_any_row, st, err);
    if (r == -ENOMEM)
        return ig_error_set(err, ENOMEM, "out of memory");
    if (r < 0)
        return r;
    if (st->function[0])
        prune(st, st->function);
    sync_kept_clear(st);
    /* A function with files here and no secret in the store has none left. */
    snprintf(root, sizeof(root), "%s/secrets", s->state_dir);
    DIR *d = opendir(root);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && !seen(st, de->d_name))
            prune(st, de->d_name);
    if (d)
        closedir(d);
    return 0;
}

int secrets_sync(struct secrets *s, const char *function, struct ig_error *err)
{
    if (!s->store)
        return 0;
    /* A name from a notification makes a path: it must be a function's. */
    if (function && !manifest_name_valid(function))
        return ig_error_set(err, EINVAL, "'%.64s' is not a function name", function);
    struct sync_state *st = calloc(1, sizeof(*st));
    if (!st)
        return ig_error_set(err, ENOMEM, "out of memory");
    st->s = s;
    int r;
    if (!function) {
        r = sync_all(s, st, err);
    } else {
        r = secrets_store_load(s->store, function, sync_row, st, err);
        if (r == -ENOMEM)
            ig_error_set(err, ENOMEM, "out of memory");
        if (r == 0)
            prune(st, function);
    }
    sync_kept_clear(st);
    for (size_t i = 0; i < st->n_seen; i++)
        free(st->seen[i]);
    free(st->seen);
    if (r == 0 && st->error)
        r = ig_error_set(err, -st->error, "writing out secrets: %s", strerror(-st->error));
    free(st);
    return r;
}

/* Whether the store's secrets open with s's key: none stored, or one that does. */
struct key_probe {
    const struct secrets *s;
    size_t opened, refused;
};

static int probe_row(void *userdata, const struct secret_row *row)
{
    struct key_probe *p = userdata;
    uint8_t *value = malloc(row->sealed_len + 1);
    if (!value)
        return -ENOMEM;
    int r = secrets_open(p->s->key, row->function, row->name, row->nonce, row->sealed,
                         row->sealed_len, value);
    explicit_bzero(value, row->sealed_len);
    free(value);
    if (r < 0) {
        p->refused++;
        return 0;
    }
    p->opened++;
    return -ECANCELED; /* one is enough */
}

/* Seals and stores value as function's secret name (replace: even if the store has one). */
static int store_secret(struct secrets *s, const char *function, const char *name,
                        const void *value, size_t len, bool replace, bool *ret_created,
                        struct ig_error *err)
{
    uint8_t nonce[SECRETS_NONCE_BYTES];
    _cleanup_free_ uint8_t *sealed = malloc(len + SECRETS_TAG_BYTES);
    if (!sealed)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    secrets_seal(s->key, function, name, value, len, nonce, sealed);
    const struct secret_row row = {.function = function,
                                   .name = name,
                                   .nonce = nonce,
                                   .sealed = sealed,
                                   .sealed_len = len + SECRETS_TAG_BYTES,
                                   .updated_us = (int64_t)wall_usec()};
    int r = secrets_store_put(s->store, &row, replace, SECRETS_MAX_PER_FUNCTION, ret_created, err);
    if (r == -EBUSY)
        return ig_error_set_reason(err, EBUSY, "too_many_secrets",
                                   "'%s' already has %d secrets: remove one first", function,
                                   SECRETS_MAX_PER_FUNCTION);
    return r;
}

/* Puts this host's files of function into the store, those it has not got. */
static int import_function(struct secrets *s, const char *function, struct ig_error *err)
{
    char dir[4200], path[4600];
    secrets_path(s->state_dir, function, dir, sizeof(dir));
    DIR *d = opendir(dir);
    struct dirent *de;
    int r = 0;
    while (r == 0 && d && (de = readdir(d))) {
        _cleanup_free_ char *value = NULL;
        size_t len;
        bool created = false;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (secrets_check_names(function, de->d_name, NULL) < 0 ||
            read_file(path, SECRET_MAX_BYTES, &value, &len) < 0 || len == 0)
            continue;
        r = store_secret(s, function, de->d_name, value, len, false, &created, err);
        explicit_bzero(value, len);
        if (r == -EBUSY) {
            log_warn("a secret of this host not imported: its function has too many",
                     "function=%s secret=%s", function, de->d_name);
            ig_error_clear(err);
            r = 0;
        } else if (r == 0 && created) {
            log_info("secret imported into the store", "function=%s secret=%s", function,
                     de->d_name);
        }
    }
    if (d)
        closedir(d);
    return r;
}

/* The first start sharing: this host's files go into the store (the store's own win), so that
 * turning sharing on loses none; once, since afterwards a file the store lacks was removed
 * through another host. Not when the store's secrets do not open with this host's key: they
 * were sealed under another, and what this host added no other could read. */
static int import_files(struct secrets *s, struct ig_error *err)
{
    char root[4200], marker[4200];
    marker_path(s, marker, sizeof(marker));
    if (access(marker, F_OK) == 0) {
        s->imported = true;
        return 0;
    }
    struct key_probe p = {.s = s};
    int r = secrets_store_load(s->store, NULL, probe_row, &p, err);
    if (r < 0 && r != -ECANCELED)
        return r == -ENOMEM ? ig_error_set(err, ENOMEM, "out of memory") : r;
    if (p.refused > 0 && p.opened == 0) {
        log_error("the store's secrets do not open with this host's secrets_key (another key "
                  "than the other hosts'?): this host's own secret files not imported",
                  "refused=%zu", p.refused);
        return 0;
    }
    snprintf(root, sizeof(root), "%s/secrets", s->state_dir);
    DIR *d = opendir(root);
    struct dirent *de;
    r = 0;
    while (r == 0 && d && (de = readdir(d)))
        if (manifest_name_valid(de->d_name))
            r = import_function(s, de->d_name, err);
    if (d)
        closedir(d);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = -1;
    if ((r = mkdir_p(root, 0700)) < 0 ||
        (fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return ig_error_set(err, r < 0 ? -r : errno, "%s: %s", marker,
                            strerror(r < 0 ? -r : errno));
    s->imported = true;
    return 0;
}

int secrets_new(const char *state_dir, struct store *store, const uint8_t *key,
                struct secrets **ret, struct ig_error *err)
{
    struct secrets *s = calloc(1, sizeof(*s));
    char marker[4200];
    if (!s)
        return ig_error_set(err, ENOMEM, "out of memory");
    snprintf(s->state_dir, sizeof(s->state_dir), "%s", state_dir);
    int r = 0;
    if (store) {
        s->store = store;
        memcpy(s->key, key, SECRETS_KEY_BYTES);
        r = import_files(s, err);
        if (r == 0)
            r = secrets_sync(s, NULL, err);
    } else {
        /* Not shared now: what is set here meanwhile is this host's alone, imported again if
         * sharing is turned back on. */
        marker_path(s, marker, sizeof(marker));
        unlink(marker);
    }
    if (r < 0) {
        secrets_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

void secrets_free(struct secrets *s)
{
    if (!s)
        return;
    explicit_bzero(s->key, sizeof(s->key));
    free(s);
}

bool secrets_shared(const struct secrets *s)
{
    return s->store != NULL;
}

/* ---- set, list, remove ---- */

/* Shared: after a change through this host, its files at once (the notification comes too). */
static void sync_after_change(struct secrets *s, const char *function)
{
    struct ig_error e = {};
    if (secrets_sync(s, function, &e) < 0)
        log_error("writing out a function's secrets failed (the next re-read tries again)",
                  "function=%s error=\"%s\"", function, e.message);
}

static int put_file(struct secrets *s, const char *function, const char *secret, const void *value,
                    size_t len, bool *ret_created, struct ig_error *err)
{
    char dir[4200], path[4600];
    secrets_path(s->state_dir, function, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, secret);
    if (access(path, F_OK) < 0 && count_secrets(dir) >= SECRETS_MAX_PER_FUNCTION)
        return ig_error_set_reason(err, EBUSY, "too_many_secrets",
                                   "'%s' already has %d secrets: remove one first", function,
                                   SECRETS_MAX_PER_FUNCTION);
    int r = write_secret(dir, secret, value, len, ret_created);
    if (r < 0) {
        log_error("storing a secret failed", "function=%s secret=%s error=\"%s\"", function, secret,
                  strerror(-r));
        /* A full disk keeps its errno (507, which a client can wait out); else 500. */
        bool full = r == -ENOSPC || r == -EDQUOT;
        return ig_error_set(err, full ? -r : EIO, "storing secret '%s': %s", secret, strerror(-r));
    }
    return 0;
}

int secrets_put(struct secrets *s, const char *function, const char *secret, const void *value,
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
    bool created = false;
    int r = s->store ? store_secret(s, function, secret, value, len, true, &created, err)
                     : put_file(s, function, secret, value, len, &created, err);
    if (r < 0)
        return r;
    if (s->store)
        sync_after_change(s, function);
    log_info("secret set", "function=%s secret=%s bytes=%zu shared=%s", function, secret, len,
             s->store ? "true" : "false");
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

static int list_files(struct secrets *s, const char *function, struct secret_info *list,
                      size_t *ret_n, struct ig_error *err)
{
    char dir[4200];
    secrets_path(s->state_dir, function, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d && errno != ENOENT)
        return ig_error_set_reason(err, EIO, "internal", "reading the secrets of '%s': %s",
                                   function, strerror(errno));
    char *names[SECRETS_MAX_PER_FUNCTION];
    size_t n = read_names(d, names), k = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (d && fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode)) {
            list[k].name = TAKE_PTR(names[i]);
            list[k].bytes = (uint64_t)st.st_size;
            list[k].updated_usec =
                (uint64_t)st.st_mtim.tv_sec * 1000000u + (uint64_t)st.st_mtim.tv_nsec / 1000u;
            list[k].usable = true;
            k++;
        }
        free(names[i]);
    }
    if (d)
        closedir(d);
    *ret_n = k;
    return 0;
}

struct list_state {
    const struct secrets *s;
    struct secret_info *list;
    size_t n;
};

/* Each stored secret, with whether this host's key opens it. */
static int list_row(void *userdata, const struct secret_row *row)
{
    struct list_state *ls = userdata;
    if (ls->n == SECRETS_MAX_PER_FUNCTION)
        return 0;
    uint8_t *value = malloc(row->sealed_len + 1);
    if (!value || !(ls->list[ls->n].name = strdup(row->name))) {
        free(value);
        return -ENOMEM;
    }
    struct secret_info *i = &ls->list[ls->n++];
    i->usable = secrets_open(ls->s->key, row->function, row->name, row->nonce, row->sealed,
                             row->sealed_len, value) == 0;
    explicit_bzero(value, row->sealed_len);
    free(value);
    i->bytes = row->sealed_len >= SECRETS_TAG_BYTES ? row->sealed_len - SECRETS_TAG_BYTES : 0;
    i->updated_usec = (uint64_t)row->updated_us;
    return 0;
}

int secrets_list(struct secrets *s, const char *function, struct secret_info **ret, size_t *ret_n,
                 struct ig_error *err)
{
    if (secrets_check_names(function, NULL, err) < 0)
        return -EINVAL;
    struct list_state ls = {.s = s, .list = calloc(SECRETS_MAX_PER_FUNCTION + 1, sizeof(*ls.list))};
    if (!ls.list)
        return ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    int r = s->store ? secrets_store_load(s->store, function, list_row, &ls, err)
                     : list_files(s, function, ls.list, &ls.n, err);
    if (r == -ENOMEM)
        ig_error_set_reason(err, ENOMEM, "internal", "out of memory");
    if (r < 0) {
        secrets_list_free(ls.list, ls.n);
        return r;
    }
    *ret = ls.list;
    *ret_n = ls.n;
    return 0;
}

static int delete_file(struct secrets *s, const char *function, const char *secret,
                       struct ig_error *err)
{
    char dir[4200], path[4600];
    secrets_path(s->state_dir, function, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, secret);
    if (unlink(path) < 0)
        return errno == ENOENT
                   ? -ENOENT
                   : ig_error_set_reason(err, EIO, "internal", "removing secret '%s': %s", secret,
                                         strerror(errno));
    rmdir(dir); /* the last one: fails (ENOTEMPTY) otherwise, which is fine */
    return 0;
}

int secrets_delete(struct secrets *s, const char *function, const char *secret,
                   struct ig_error *err)
{
    if (secrets_check_names(function, secret, err) < 0)
        return -EINVAL;
    int r = s->store ? secrets_store_delete(s->store, function, secret, err)
                     : delete_file(s, function, secret, err);
    if (r == -ENOENT)
        return ig_error_set_reason(err, ENOENT, "not_found", "function '%s' has no secret '%s'",
                                   function, secret);
    if (r < 0)
        return r;
    if (s->store)
        sync_after_change(s, function);
    log_info("secret removed", "function=%s secret=%s", function, secret);
    return 0;
}
