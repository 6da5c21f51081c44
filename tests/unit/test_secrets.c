/* Sealing a secret for the store (functions/secrets.h, #16): what secrets_seal makes opens with
 * the same key for the same (function, name), and nothing else does: not a ciphertext, tag or
 * nonce changed by one bit, not another key, not another secret's or another function's
 * associated data (a row moved in the database). The nonce is fresh each time. And the key
 * file: 32 bytes or 64 hex digits, mode 0600; anything else refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/secrets.h"

static const char value[] = "postgres://user:hunter2@db/app";
#define LEN (sizeof(value) - 1)

struct sealed {
    uint8_t nonce[SECRETS_NONCE_BYTES];
    uint8_t bytes[LEN + SECRETS_TAG_BYTES];
};

static void seal(const uint8_t *key, const char *fn, const char *name, struct sealed *ret)
{
    secrets_seal(key, fn, name, value, LEN, ret->nonce, ret->bytes);
}

static int open_as(const uint8_t *key, const char *fn, const char *name, const struct sealed *s)
{
    uint8_t out[LEN];
    int r = secrets_open(key, fn, name, s->nonce, s->bytes, sizeof(s->bytes), out);
    if (r == 0)
        assert_memory_equal(out, value, LEN);
    return r;
}

static void test_round_trip_and_refusals(void **state)
{
    uint8_t key[SECRETS_KEY_BYTES], other[SECRETS_KEY_BYTES];
    memset(key, 0x11, sizeof(key));
    memset(other, 0x11, sizeof(other));
    other[31] ^= 1;
    struct sealed s, again;
    seal(key, "billing", "DB_URL", &s);
    assert_int_equal(open_as(key, "billing", "DB_URL", &s), 0);
    /* Not in the clear, and a fresh nonce (so a fresh ciphertext) each time. */
    assert_null(memmem(s.bytes, sizeof(s.bytes), "hunter2", 7));
    seal(key, "billing", "DB_URL", &again);
    assert_memory_not_equal(s.nonce, again.nonce, SECRETS_NONCE_BYTES);
    assert_memory_not_equal(s.bytes, again.bytes, LEN);

    assert_int_equal(open_as(other, "billing", "DB_URL", &s), -EBADMSG);
    assert_int_equal(open_as(key, "billing", "DB_URL2", &s), -EBADMSG);
    assert_int_equal(open_as(key, "billing2", "DB_URL", &s), -EBADMSG);
    /* The names' boundary counts: "ab"+"c" is not "a"+"bc". */
    struct sealed b;
    seal(key, "ab", "c", &b);
    assert_int_equal(open_as(key, "a", "bc", &b), -EBADMSG);
    for (size_t i = 0; i < sizeof(s.bytes); i += 7) {
        struct sealed t = s;
        t.bytes[i] ^= 0x01;
        assert_int_equal(open_as(key, "billing", "DB_URL", &t), -EBADMSG);
    }
    struct sealed t = s;
    t.nonce[0] ^= 0x80;
    assert_int_equal(open_as(key, "billing", "DB_URL", &t), -EBADMSG);
    uint8_t out[1];
    assert_int_equal(secrets_open(key, "billing", "DB_URL", s.nonce, s.bytes, 3, out), -EBADMSG);
}

static void write_key(const char *path, const void *bytes, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, n), (ssize_t)n);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_key_file(void **state)
{
    char dir[] = "/tmp/ignis-secrets-test.XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    uint8_t raw[SECRETS_KEY_BYTES], got[SECRETS_KEY_BYTES];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(i * 7 + 1);
    struct ig_error err = {};

    write_key(path, raw, sizeof(raw), 0600);
    assert_int_equal(secrets_key_load(path, got, &err), 0);
    assert_memory_equal(got, raw, sizeof(raw));
    write_key(path, raw, sizeof(raw), 0400);
    assert_int_equal(secrets_key_load(path, got, &err), 0);

    char hex[2 * SECRETS_KEY_BYTES + 2];
    hex_encode(raw, sizeof(raw), hex);
    strcat(hex, "\n");
    memset(got, 0, sizeof(got));
    write_key(path, hex, strlen(hex), 0600);
    assert_int_equal(secrets_key_load(path, got, &err), 0);
    assert_memory_equal(got, raw, sizeof(raw));

    /* Readable by the group, or others: refused. */
    write_key(path, raw, sizeof(raw), 0640);
    assert_int_equal(secrets_key_load(path, got, &err), -EPERM);
    assert_non_null(strstr(err.message, "chmod 600"));
    ig_error_clear(&err);
    write_key(path, raw, sizeof(raw), 0604);
    assert_int_equal(secrets_key_load(path, got, &err), -EPERM);
    ig_error_clear(&err);
    /* The wrong size, or not hex. */
    write_key(path, raw, sizeof(raw) - 1, 0600);
    assert_int_equal(secrets_key_load(path, got, &err), -EINVAL);
    assert_non_null(strstr(err.message, "head -c 32 /dev/urandom"));
    ig_error_clear(&err);
    hex[5] = 'g';
    write_key(path, hex, strlen(hex), 0600);
    assert_int_equal(secrets_key_load(path, got, &err), -EINVAL);
    ig_error_clear(&err);
    unlink(path);
    assert_int_equal(secrets_key_load(path, got, &err), -ENOENT);
    ig_error_clear(&err);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_refusals),
        cmocka_unit_test(test_key_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
