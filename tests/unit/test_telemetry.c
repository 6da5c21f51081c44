/* The /metrics rendering over a dispatcher's state built by hand: every family once, the
 * counters and histograms fed by telemetry's calls, and labels escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

#include "api/auth.h"
#include "api/metrics.h"
#include "dispatch/dispatch-internal.h"
#include "records/telemetry.h"

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
    struct fn_state *fn = calloc(1, sizeof(*fn));
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
    telemetry_cold_start("hello", telemetry_seconds(inv.enqueued_us, inv.started_us),
                         telemetry_seconds(w.spawned_us, w.exec_us),
                         telemetry_seconds(w.exec_us, w.ready_us));
    telemetry_complete("hello", TELEMETRY_OK, telemetry_seconds(inv.started_us, now_usec()), 2,
                       inv.cold);
    inv.cold = false;
    telemetry_complete("hello", TELEMETRY_TIMEOUT, telemetry_seconds(inv.started_us, now_usec()),
                       30000, inv.cold);
    telemetry_usage("hello", 0.25, 1 << 20);
    telemetry_dead_letter("hello");

    char *text = NULL;
    size_t len = 0;
    assert_int_equal(api_metrics_render(d, NULL, NULL, "h1", now - 1000000, &text, &len), 0);
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
    assert_non_null(strstr(text, "ignis_host_info{host=\"h1\"} 1\n"));
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

/* The host-wide families (events, sinks, auth): each label value written, an out-of-range
 * status counted as "other", and the counters gone with telemetry_free (a new daemon's life). */
static void test_host_families(void **state)
{
    struct dispatch *d = calloc(1, sizeof(*d));
    struct fn_state *fn = calloc(1, sizeof(*fn));
    assert_non_null(d);
    assert_non_null(fn);
    snprintf(fn->name, sizeof(fn->name), "emitter");
    TAILQ_INIT(&fn->queue);
    d->fns = fn;
    assert_int_equal(telemetry_init(), 0);

    telemetry_event_accepted(TELEMETRY_EVENT_BINARY, false, 2);
    telemetry_event_accepted(TELEMETRY_EVENT_BINARY, false, 0);
    telemetry_event_accepted(TELEMETRY_EVENT_BATCH, true, 0);
    telemetry_event_refused(400);
    telemetry_event_refused(418);
    telemetry_event_emitted("emitter");
    telemetry_event_dead_letter(TELEMETRY_DEAD_HOP_LIMIT);
    telemetry_schedule_run("emitter", true);
    telemetry_sink_pending(+1);
    telemetry_sink_pending(+1);
    telemetry_sink_pending(-1);
    telemetry_sink_attempt();
    telemetry_sink_final(false);
    telemetry_auth_refused(TELEMETRY_AUTH_FORBIDDEN);
    telemetry_auth_allowed(AUTH_ROLE_OPERATOR);
    telemetry_auth_allowed(AUTH_NROLES); /* not a role: not counted */

    char *text = NULL;
    size_t len = 0;
    assert_int_equal(api_metrics_render(d, NULL, NULL, "h1", now_usec(), &text, &len), 0);
    static const char *const want[] = {
        "ignis_events_total{mode=\"binary\",outcome=\"delivered\"} 1\n",
        "ignis_events_total{mode=\"binary\",outcome=\"no_subscriber\"} 1\n",
        "ignis_events_total{mode=\"batch\",outcome=\"duplicate\"} 1\n",
        "ignis_events_total{mode=\"emitted\",outcome=\"delivered\"} 0\n",
        "ignis_event_deliveries_total 2\n",
        "ignis_events_refused_total{status=\"400\"} 1\n",
        "ignis_events_refused_total{status=\"other\"} 1\n",
        "ignis_events_refused_total{status=\"503\"} 0\n",
        "ignis_event_dead_letters_total{reason=\"hop_limit\"} 1\n",
        "ignis_event_dead_letters_total{reason=\"too_large\"} 0\n",
        "ignis_events_emitted_total{function=\"emitter\"} 1\n",
        "ignis_schedule_runs_total{function=\"emitter\",kind=\"makeup\"} 1\n",
        "ignis_schedule_runs_total{function=\"emitter\",kind=\"on_time\"} 0\n",
        "ignis_sink_pending 1\n",
        "ignis_sink_attempts_total 1\n",
        "ignis_sink_deliveries_total{status=\"failed\"} 1\n",
        "ignis_sink_deliveries_total{status=\"delivered\"} 0\n",
        "ignis_auth_refused_total{status=\"403\",reason=\"forbidden\"} 1\n",
        "ignis_auth_refused_total{status=\"401\",reason=\"no_token\"} 0\n",
        "ignis_auth_allowed_total{role=\"operator\"} 1\n",
        "ignis_auth_allowed_total{role=\"admin\"} 0\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        if (!strstr(text, want[i]))
            fail_msg("missing: %s", want[i]);
    /* No stock in the dispatcher (ignisd without root): no stock families. */
    assert_null(strstr(text, "ignis_container_stock"));
    free(text);
    telemetry_free();

    assert_int_equal(telemetry_init(), 0);
    assert_int_equal(api_metrics_render(d, NULL, NULL, "h1", now_usec(), &text, &len), 0);
    assert_non_null(strstr(text, "ignis_event_deliveries_total 0\n"));
    assert_non_null(strstr(text, "ignis_sink_pending 0\n"));
    free(text);
    telemetry_free();
    free(fn);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_host_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
