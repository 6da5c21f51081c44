/* The pure parts of auth.c: token shape, hashing, roles, durations, the token bucket. The
 * checks against real requests are tests/integration/test_auth.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "auth.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_shape), cmocka_unit_test(test_hash_is_salted),
        cmocka_unit_test(test_roles),       cmocka_unit_test(test_durations),
        cmocka_unit_test(test_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
