/* The per-second series behind the console's charts: counters become per-second figures, the
 * ring wraps after 15 minutes keeping the newest, a restarted daemon starts empty (and its first
 * reading sets a base rather than a burst), a deleted function's ring is dropped, and the
 * per-second p50/p99 come from the histogram's growth in that second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "records/series.h"

static const double bounds[] = {1, 10, 100}; /* ms; a fourth bucket is +Inf */

static struct series_reading reading(uint64_t invocations, uint64_t queued)
{
    return (struct series_reading){
        .queued = queued, .ready = 1, .desired = 2, .invocations = invocations};
}

static void test_rates(void **state)
{
    struct series *s;
    assert_int_equal(series_new(&s), 0);
    uint64_t counts[4] = {0, 0, 0, 0};
    struct series_reading r = reading(1000, 3); /* counted before the series began */
    r.bounds_ms = bounds, r.counts = counts, r.nbuckets = 4;
    assert_int_equal(series_record(s, "f", 100, &r), 0);
    const struct series_fn *f = series_find(s, "f");
    assert_non_null(f);
    assert_int_equal(series_count(f), 1);
    /* The first reading is a base: no burst of 1000 at start. */
    assert_int_equal(series_at(f, 0)->invocations, 0);
    assert_int_equal(series_at(f, 0)->queued, 3);
    assert_int_equal(series_at(f, 0)->desired, 2);

    r = reading(1010, 5);
    r.errors = 2, r.cold_starts = 2, r.cold_setup_ms = 30, r.cold_init_ms = 10;
    r.billed_ms = 40, r.cpu_ms = 12.4;
    counts[1] = 10; /* ten between 1 and 10 ms */
    r.bounds_ms = bounds, r.counts = counts, r.nbuckets = 4;
    assert_int_equal(series_record(s, "f", 101, &r), 0);
    const struct series_sample *x = series_at(f, 1);
    assert_int_equal(x->at_s, 101);
    assert_int_equal(x->invocations, 10);
    assert_int_equal(x->errors, 2);
    assert_int_equal(x->cold_starts, 2);
    assert_int_equal(x->cold_setup_ms, 15);
    assert_int_equal(x->cold_init_ms, 5);
    assert_int_equal(x->billed_ms, 40);
    assert_int_equal(x->cpu_ms, 12);
    assert_int_equal(x->p50_us, 5500); /* halfway through the 1-10 ms bucket */
    assert_int_equal(x->p99_us, 9910);

    /* A quiet second: no durations, no p99. */
    assert_int_equal(series_record(s, "f", 102, &r), 0);
    assert_int_equal(series_at(f, 2)->invocations, 0);
    assert_int_equal(series_at(f, 2)->p99_us, 0);
    series_free(s);
}

static void test_wraps_keeping_newest(void **state)
{
    struct series *s;
    assert_int_equal(series_new(&s), 0);
    for (uint32_t t = 0; t < SERIES_SECONDS + 100; t++) {
        struct series_reading r = reading((uint64_t)t * (t + 1) / 2, t % 7); /* +t each second */
        assert_int_equal(series_record(s, "f", 1000 + t, &r), 0);
    }
    const struct series_fn *f = series_find(s, "f");
    assert_int_equal(series_count(f), SERIES_SECONDS);
    /* Oldest first, the first 100 seconds gone. */
    assert_int_equal(series_at(f, 0)->at_s, 1100);
    assert_int_equal(series_at(f, 0)->invocations, 100);
    assert_int_equal(series_at(f, SERIES_SECONDS - 1)->at_s, 1000 + SERIES_SECONDS + 99);
    assert_int_equal(series_at(f, SERIES_SECONDS - 1)->invocations, SERIES_SECONDS + 99);
    for (size_t i = 1; i < SERIES_SECONDS; i++)
        assert_int_equal(series_at(f, i)->at_s, series_at(f, i - 1)->at_s + 1);
    assert_null(series_at(f, SERIES_SECONDS));
    /* Bounded: one function's series is its ring and a base, about 40 KB. */
    assert_true(series_fn_bytes() < 41 * 1000);
    series_free(s);
}

static void test_restart_starts_empty(void **state)
{
    struct series *s;
    assert_int_equal(series_new(&s), 0);
    struct series_reading r = reading(5, 1);
    assert_int_equal(series_record(s, "f", 10, &r), 0);
    r = reading(9, 1);
    assert_int_equal(series_record(s, "f", 11, &r), 0);
    series_free(s);

    /* A new daemon: nothing held; the counters (which restarted from 0 too) set the base. */
    assert_int_equal(series_new(&s), 0);
    assert_null(series_find(s, "f"));
    assert_null(series_first(s));
    r = reading(2, 0);
    assert_int_equal(series_record(s, "f", 20, &r), 0);
    assert_int_equal(series_count(series_find(s, "f")), 1);
    assert_int_equal(series_at(series_find(s, "f"), 0)->invocations, 0);
    /* A counter that goes back (a function deleted and pushed again within a second) counts
     * from 0. */
    r = reading(1, 0);
    assert_int_equal(series_record(s, "f", 21, &r), 0);
    assert_int_equal(series_at(series_find(s, "f"), 1)->invocations, 1);
    series_free(s);
}

static void test_deleted_function_dropped(void **state)
{
    struct series *s;
    assert_int_equal(series_new(&s), 0);
    struct series_reading r = reading(0, 0);
    assert_int_equal(series_record(s, "a", 50, &r), 0);
    assert_int_equal(series_record(s, "b", 50, &r), 0);
    series_sweep(s, 50);
    assert_non_null(series_find(s, "a"));
    assert_non_null(series_find(s, "b"));
    /* b was deleted: the next tick records only a. */
    assert_int_equal(series_record(s, "a", 51, &r), 0);
    series_sweep(s, 51);
    assert_non_null(series_find(s, "a"));
    assert_null(series_find(s, "b"));
    size_t n = 0;
    for (const struct series_fn *f = series_first(s); f; f = series_next(f))
        n++, assert_string_equal(series_name(f), "a");
    assert_int_equal(n, 1);
    /* Pushed again: a new ring, with a fresh base. */
    r = reading(100, 0);
    assert_int_equal(series_record(s, "b", 52, &r), 0);
    assert_int_equal(series_count(series_find(s, "b")), 1);
    assert_int_equal(series_at(series_find(s, "b"), 0)->invocations, 0);
    /* Names are bounded. */
    char long_name[80];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    assert_int_equal(series_record(s, long_name, 52, &r), -EINVAL);
    series_free(s);
}

static void test_same_second_twice(void **state)
{
    struct series *s;
    assert_int_equal(series_new(&s), 0);
    struct series_reading r = reading(0, 0);
    assert_int_equal(series_record(s, "f", 7, &r), 0);
    r = reading(4, 2);
    assert_int_equal(series_record(s, "f", 8, &r), 0);
    r = reading(6, 9);
    assert_int_equal(series_record(s, "f", 8, &r), 0);
    const struct series_fn *f = series_find(s, "f");
    assert_int_equal(series_count(f), 2);
    assert_int_equal(series_at(f, 1)->invocations, 6);
    assert_int_equal(series_at(f, 1)->queued, 9);
    series_free(s);
}

static void test_quantile(void **state)
{
    const uint64_t none[4] = {};
    assert_true(series_quantile(bounds, none, 4, 0.99) == 0);
    const uint64_t inf[4] = {0, 0, 0, 3};
    assert_true(series_quantile(bounds, inf, 4, 0.5) == 100);
    const uint64_t low[4] = {4, 0, 0, 0};
    assert_true(series_quantile(bounds, low, 4, 0.5) == 0.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_wraps_keeping_newest),
        cmocka_unit_test(test_restart_starts_empty),
        cmocka_unit_test(test_deleted_function_dropped),
        cmocka_unit_test(test_same_second_twice),
        cmocka_unit_test(test_quantile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
