/* The Prometheus text writer: families, escaping, and histograms that are consistent by
 * construction (cumulative buckets, +Inf equal to _count). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "base/metrics.h"

static void test_counter_and_gauge(void **state)
{
    struct metrics_buf b = {};
    metrics_family(&b, "ignis_invocations_total", METRIC_COUNTER, "Invocations.\nBy status.");
    const char *l1[] = {"function", "hello", "status", "ok", NULL};
    const char *l2[] = {"function", "we\"ird\\na\nme", "status", "error", NULL};
    metrics_sample(&b, l1, 42);
    metrics_sample(&b, l2, 1.5);
    metrics_family(&b, "ignis_uptime_seconds", METRIC_GAUGE, "Uptime.");
    metrics_sample(&b, NULL, 3.25);
    size_t len;
    char *text = metrics_take(&b, &len);
    assert_non_null(text);
    assert_string_equal(text, "# HELP ignis_invocations_total Invocations.\\nBy status.\n"
                              "# TYPE ignis_invocations_total counter\n"
                              "ignis_invocations_total{function=\"hello\",status=\"ok\"} 42\n"
                              "ignis_invocations_total{function=\"we\\\"ird\\\\na\\nme\","
                              "status=\"error\"} 1.5\n"
                              "# HELP ignis_uptime_seconds Uptime.\n"
                              "# TYPE ignis_uptime_seconds gauge\n"
                              "ignis_uptime_seconds 3.25\n");
    assert_int_equal(len, strlen(text));
    free(text);
}

static void test_histogram(void **state)
{
    static const double bounds[] = {0.1, 1, 10};
    struct metrics_histogram h;
    assert_int_equal(metrics_histogram_init(&h, bounds, 3), 0);
    const double obs[] = {0.05, 0.1, 0.5, 2, 20, 30};
    for (size_t i = 0; i < 6; i++)
        metrics_histogram_observe(&h, obs[i]);
    struct metrics_buf b = {};
    metrics_family(&b, "d_seconds", METRIC_HISTOGRAM, "D.");
    const char *l[] = {"function", "f", NULL};
    metrics_histogram(&b, l, &h);
    char *text = metrics_take(&b, NULL);
    /* 0.1 falls in le="0.1" (upper bounds are inclusive). */
    assert_non_null(strstr(text, "d_seconds_bucket{function=\"f\",le=\"0.1\"} 2\n"));
    assert_non_null(strstr(text, "d_seconds_bucket{function=\"f\",le=\"1\"} 3\n"));
    assert_non_null(strstr(text, "d_seconds_bucket{function=\"f\",le=\"10\"} 4\n"));
    assert_non_null(strstr(text, "d_seconds_bucket{function=\"f\",le=\"+Inf\"} 6\n"));
    assert_non_null(strstr(text, "d_seconds_sum{function=\"f\"} 52.65\n"));
    assert_non_null(strstr(text, "d_seconds_count{function=\"f\"} 6\n"));
    free(text);
    metrics_histogram_done(&h);
}

static void test_values(void **state)
{
    struct metrics_buf b = {};
    metrics_family(&b, "g", METRIC_GAUGE, "G.");
    metrics_sample(&b, NULL, 1.0 / 0.0);
    metrics_sample(&b, NULL, -1.0 / 0.0);
    metrics_sample(&b, NULL, 0.0 / 0.0);
    metrics_sample(&b, NULL, 1e20);
    metrics_sample(&b, NULL, -7);
    char *text = metrics_take(&b, NULL);
    assert_non_null(strstr(text, "g +Inf\ng -Inf\ng NaN\ng 1e+20\ng -7\n"));
    free(text);
    struct metrics_buf empty = {};
    text = metrics_take(&empty, NULL);
    assert_string_equal(text, "");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
