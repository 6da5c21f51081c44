/* The /metrics rendering over a dispatcher's state built by hand: every family once, the
 * counters and histograms fed by telemetry's calls, and labels escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "pool.h"
#include "telemetry.h"

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_render(void **state)
{
    struct dispatch *d = calloc(1, sizeof(*d));
    struct fn *fn = calloc(1, sizeof(*fn));
    assert_non_null(d);
    assert_non_null(fn);
    fn->d = d;
    snprintf(fn->name, sizeof(fn->name), "hello");
    TAILQ_INIT(&fn->queue);
    fn->nready = 2;
    fn->throttles = 3;
    fn->cold_starts = 1;
    fn->decisions[SCALER_SPAWN][SCALER_REASON_QUEUE] = 4;
    d->fns = fn;
    d->live_workers = 2;
    assert_int_equal(telemetry_init(), 0);

    uint64_t now = now_usec();
    struct worker w = {.spawned_us = now - 3000, .exec_us = now - 2000, .ready_us = now - 1000};
    struct inv inv = {.fn = fn, .enqueued_us = now - 4000, .started_us = now - 500, .cold = true};
    telemetry_cold_start(&inv, &w);
    telemetry_complete(&inv, OUTCOME_OK, 2);
    inv.cold = false;
    telemetry_complete(&inv, OUTCOME_TIMEOUT, 30000);
    telemetry_usage("hello", 0.25, 1 << 20);
    telemetry_dead_letter(fn);

    char *text = NULL;
    size_t len = 0;
    assert_int_equal(telemetry_render(d, now - 1000000, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "ignis_invocations_total{function=\"hello\",status=\"ok\"} 1\n"));
    assert_non_null(
        strstr(text, "ignis_invocations_total{function=\"hello\",status=\"timeout\"} 1\n"));
    assert_non_null(
        strstr(text, "ignis_invocation_duration_seconds_count{function=\"hello\"} 2\n"));
    assert_non_null(strstr(text, "ignis_billed_seconds_total{function=\"hello\"} 30.002\n"));
    assert_non_null(strstr(text, "ignis_cpu_seconds_total{function=\"hello\"} 0.25\n"));
    assert_non_null(strstr(text, "ignis_memory_peak_bytes{function=\"hello\"} 1048576\n"));
    assert_non_null(strstr(text, "ignis_containers{function=\"hello\",state=\"ready\"} 2\n"));
    assert_non_null(strstr(text, "ignis_throttled_total{function=\"hello\"} 3\n"));
    assert_non_null(strstr(text, "ignis_dead_letters_total 1\n"));
    assert_non_null(strstr(text, "ignis_scaler_decisions_total{function=\"hello\",action=\"spawn\","
                                 "reason=\"queue\"} 4\n"));
    assert_non_null(strstr(text, "ignis_cold_start_phase_seconds_count{function=\"hello\","
                                 "phase=\"setup\"} 1\n"));
    assert_non_null(strstr(text, "ignis_cold_start_phase_seconds_bucket{function=\"hello\","
                                 "phase=\"first_byte\",le=\"+Inf\"} 1\n"));
    /* One TYPE per family. */
    assert_int_equal(count(text, "# TYPE ignis_invocations_total "), 1);
    assert_int_equal(count(text, "# TYPE ignis_cold_start_phase_seconds "), 1);
    free(text);
    telemetry_free();
    free(fn);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
