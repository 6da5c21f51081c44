/* The pure parts of auth.c: token shape, hashing, roles, durations, the token bucket; and the
 * first start's admin token against a real store. The checks against real requests are
 * tests/integration/test_auth.c. */
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

#include "api/auth.h"
#include "records/store-internal.h"

static const char good[] =
    "ignis_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static void test_token_shape(void **state)
{
    char id[AUTH_TOKEN_ID_LEN + 1], secret[65];
    assert_int_equal(strlen(good), AUTH_TOKEN_LEN);
    assert_int_equal(auth_token_parse(good, id, secret), 0);
    assert_string_equal(id, "0123456789abcdef");
    assert_string_equal(secret, good + 23);
    static const char *const bad[] = {
        "",
        "ignis_",
        "Ignis_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "ignis_0123456789ABCDEF_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "ignis_0123456789abcdef-00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "ignis_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
        "ignis_0123456789abcdef_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeffa",
        "ignis_0123456789abcdef_0011223344556677889 aabbccddeeff00112233445566778899aabbccddeeff",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(auth_token_parse(bad[i], id, secret), -EINVAL);
}

static void test_hash_is_salted(void **state)
{
    uint8_t s1[16] = {1}, s2[16] = {2}, h1[32], h2[32], h3[32];
    auth_hash(s1, "secret", h1);
    auth_hash(s2, "secret", h2);
    auth_hash(s1, "secret", h3);
    assert_memory_not_equal(h1, h2, 32);
    assert_memory_equal(h1, h3, 32);
}

static void test_roles(void **state)
{
    enum auth_role r;
    for (int i = 0; i < AUTH_NROLES; i++) {
        assert_int_equal(auth_role_parse(auth_role_name((enum auth_role)i), &r), 0);
        assert_int_equal(r, i);
    }
    assert_int_equal(auth_role_parse("root", &r), -EINVAL);
    assert_int_equal(auth_role_parse("Admin", &r), -EINVAL);
}

static void test_durations(void **state)
{
    int64_t s;
    assert_int_equal(auth_parse_duration("30d", &s), 0);
    assert_int_equal(s, 30 * 86400);
    assert_int_equal(auth_parse_duration("90m", &s), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(auth_parse_duration("1s", &s), 0);
    assert_int_equal(s, 1);
    static const char *const bad[] = {"", "30", "d", "0s", "-1d", "1w", "1.5h", "36700d", "1dd"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(auth_parse_duration(bad[i], &s), -EINVAL);
}

static void test_bucket(void **state)
{
    struct auth_bucket b = {};
    unsigned retry = 0;
    uint64_t t = 1000000;
    /* A burst of 3 at 1 a second: three go, the fourth waits a second. */
    for (int i = 0; i < 3; i++)
        assert_true(auth_bucket_take(&b, t, 1, 3, &retry));
    assert_false(auth_bucket_take(&b, t, 1, 3, &retry));
    assert_int_equal(retry, 1);
    /* Half a second later still empty; a second later one more. */
    assert_false(auth_bucket_take(&b, t + 500000, 1, 3, &retry));
    assert_true(auth_bucket_take(&b, t + 1000000, 1, 3, &retry));
    /* A long pause refills to the burst, not beyond. */
    for (int i = 0; i < 3; i++)
        assert_true(auth_bucket_take(&b, t + 100000000, 1, 3, &retry));
    assert_false(auth_bucket_take(&b, t + 100000000, 1, 3, &retry));
    /* A slow rate says how long: 0.1 a second is 10 s for one. */
    struct auth_bucket slow = {};
    assert_true(auth_bucket_take(&slow, t, 0.1, 1, &retry));
    assert_false(auth_bucket_take(&slow, t, 0.1, 1, &retry));
    assert_int_equal(retry, 10);
}

/* The first admin token: made and written 0600 when there is no admin.token; a provisioned one
 * is adopted; one that is not a private regular file, or cannot be opened, stops the start with
 * a message naming the file. */
static void test_first_admin_token(void **state)
{
    static const char *const cases[] = {"none", "provisioned", "symlink", "mode 0644"};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char dir[] = "/tmp/ignis-auth-test.XXXXXX", db[64], token[64], *text = NULL;
        struct store *s;
        struct auth *a = NULL;
        struct ig_error err = {};
        struct auth_options o = {.rate = 0};
        assert_non_null(mkdtemp(dir));
        snprintf(db, sizeof(db), "%s/ignis.db", dir);
        snprintf(token, sizeof(token), "%s/admin.token", dir);
        snprintf(o.state_dir, sizeof(o.state_dir), "%s", dir);
        assert_int_equal(store_open(db, &s, &err), 0);
        if (streq(cases[i], "provisioned") || streq(cases[i], "mode 0644")) {
            int fd = open(token, O_WRONLY | O_CREAT | O_EXCL, 0600);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
            close(fd);
            if (streq(cases[i], "mode 0644"))
                assert_int_equal(chmod(token, 0644), 0);
        } else if (streq(cases[i], "symlink"))
            assert_int_equal(symlink("/etc/hostname", token), 0);
        int r = auth_new(s, &o, &a, &err);
        if (streq(cases[i], "none") || streq(cases[i], "provisioned")) {
            if (r < 0)
                fail_msg("%s: %s", cases[i], err.message);
            struct stat st;
            assert_int_equal(lstat(token, &st), 0);
            assert_int_equal(st.st_mode & 0777, 0600);
            assert_int_equal(read_file(token, 200, &text, NULL), 0);
            assert_int_equal(strncmp(text, "ignis_", 6), 0);
            if (streq(cases[i], "provisioned"))
                assert_int_equal(strncmp(text, good, strlen(good)), 0);
            free(text);
        } else if (r >= 0 || !strstr(err.message, token))
            fail_msg("%s: %d, '%s' does not name the file", cases[i], r, err.message);
        auth_free(a);
        store_free(s);
        assert_int_equal(rm_rf(dir), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_shape), cmocka_unit_test(test_hash_is_salted),
        cmocka_unit_test(test_roles),       cmocka_unit_test(test_durations),
        cmocka_unit_test(test_bucket),      cmocka_unit_test(test_first_admin_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
