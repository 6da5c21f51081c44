/* The latency record behind p50/p99 in the live state: empty, filling, nearest-rank
 * percentiles, the ring forgetting its oldest samples, and clamping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "dispatch/latency.h"

static void test_empty(void **state)
{
    struct latency l = {};
    assert_int_equal(latency_percentile(&l, 50), 0);
    assert_int_equal(latency_percentile(&l, 99), 0);
}

static void test_nearest_rank(void **state)
{
    struct latency l = {};
    /* 100 samples 1..100 added in reverse: percentiles do not depend on order. */
    for (int i = 100; i >= 1; i--)
        latency_add(&l, (uint64_t)i);
    assert_int_equal(latency_percentile(&l, 50), 50);
    assert_int_equal(latency_percentile(&l, 99), 99);
    assert_int_equal(latency_percentile(&l, 100), 100);
    assert_int_equal(latency_percentile(&l, 0.001), 1);

    struct latency one = {};
    latency_add(&one, 7);
    assert_int_equal(latency_percentile(&one, 50), 7);
    assert_int_equal(latency_percentile(&one, 99), 7);
}

static void test_ring_forgets_oldest(void **state)
{
    struct latency l = {};
    /* A slow past followed by a full ring of fast invocations: only the fast ones remain. */
    for (int i = 0; i < 100; i++)
        latency_add(&l, 1000000);
    for (int i = 0; i < LATENCY_SAMPLES; i++)
        latency_add(&l, 10);
    assert_int_equal(l.n, LATENCY_SAMPLES);
    assert_int_equal(latency_percentile(&l, 99), 10);
    assert_int_equal(latency_percentile(&l, 100), 10);
    /* One slow sample among LATENCY_SAMPLES shows at the maximum, not at p99. */
    latency_add(&l, 5000);
    assert_int_equal(latency_percentile(&l, 100), 5000);
    assert_int_equal(latency_percentile(&l, 99), 10);
}

static void test_clamped(void **state)
{
    struct latency l = {};
    latency_add(&l, UINT64_MAX);
    assert_int_equal(latency_percentile(&l, 50), UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_nearest_rank),
        cmocka_unit_test(test_ring_forgets_oldest),
        cmocka_unit_test(test_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
