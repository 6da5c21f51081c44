/* GET /metrics through a real ignisd and real containers: scrapes before and after known
 * traffic and checks exact counter deltas, histogram consistency (cumulative buckets, +Inf equal
 * to _count), that no series appears twice, and promtool's approval of the text. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* A scrape: each sample line's series (name and labels, as written) and value. */
struct scrape {
    char *text;
    size_t n;
    struct {
        char series[512];
        double value;
    } s[4096];
};

static struct scrape *scrape(void)
{
    struct scrape *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_non_null(client_response_header(&r, "Content-Type", ct, sizeof(ct)));
    assert_non_null(strstr(ct, "version=0.0.4"));
    sc->text = strdup(r.body);
    client_response_clear(&r);
    char *save = NULL, *copy = strdup(sc->text);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        *sp = '\0';
        /* No series twice (promtool does not check this). */
        for (size_t i = 0; i < sc->n; i++)
            if (streq(sc->s[i].series, line)) {
                fprintf(stderr, "duplicate series: %s\n", line);
                fail();
            }
        assert_true(sc->n < ARRAY_SIZE(sc->s));
        snprintf(sc->s[sc->n].series, sizeof(sc->s[sc->n].series), "%s", line);
        sc->s[sc->n].value = strtod(sp + 1, NULL);
        sc->n++;
    }
    free(copy);
    return sc;
}

static void scrape_free(struct scrape *sc)
{
    free(sc->text);
    free(sc);
}

/* The value of a series; 0 if absent (a counter not yet exported has counted nothing). */
static double value(const struct scrape *sc, const char *series)
{
    for (size_t i = 0; i < sc->n; i++)
        if (streq(sc->s[i].series, series))
            return sc->s[i].value;
    return 0;
}

static bool present(const struct scrape *sc, const char *series)
{
    for (size_t i = 0; i < sc->n; i++)
        if (streq(sc->s[i].series, series))
            return true;
    return false;
}

/* Every histogram series: buckets cumulative in le order, +Inf present and equal to _count. */
static void check_histograms(const struct scrape *sc)
{
    size_t checked = 0;
    for (size_t i = 0; i < sc->n; i++) {
        const char *name = sc->s[i].series;
        const char *suffix = strstr(name, "_count");
        if (!suffix || !strstr(sc->text, "histogram"))
            continue;
        /* The family and the labels of this _count. */
        char family[256], labels[400];
        snprintf(family, sizeof(family), "%.*s", (int)(suffix - name), name);
        snprintf(labels, sizeof(labels), "%s", suffix + 6); /* "" or "{...}" */
        char type_line[300];
        snprintf(type_line, sizeof(type_line), "# TYPE %s histogram\n", family);
        if (!strstr(sc->text, type_line))
            continue;
        /* The bucket prefix: family_bucket{labels,le=" or family_bucket{le=" */
        char prefix[700];
        if (labels[0])
            snprintf(prefix, sizeof(prefix), "%s_bucket%.*s,le=\"", family, (int)strlen(labels) - 1,
                     labels);
        else
            snprintf(prefix, sizeof(prefix), "%s_bucket{le=\"", family);
        double last = -1, last_le = -INFINITY, inf = -1;
        size_t nb = 0;
        for (size_t j = 0; j < sc->n; j++) {
            if (!startswith(sc->s[j].series, prefix))
                continue;
            const char *le = sc->s[j].series + strlen(prefix);
            double lev = startswith(le, "+Inf") ? INFINITY : strtod(le, NULL);
            assert_true(lev > last_le);          /* written in increasing le */
            assert_true(sc->s[j].value >= last); /* cumulative */
            last_le = lev;
            last = sc->s[j].value;
            if (isinf(lev))
                inf = sc->s[j].value;
            nb++;
        }
        assert_true(nb > 1);
        assert_true(inf == sc->s[i].value);
        char sum[700];
        snprintf(sum, sizeof(sum), "%s_sum%s", family, labels);
        assert_true(present(sc, sum));
        checked++;
    }
    assert_true(checked > 0);
}

static void promtool_check(const struct scrape *sc)
{
    const char *promtool = getenv("IGNIS_PROMTOOL");
    struct stat st;
    if (!promtool || stat(promtool, &st) < 0) {
        if (getenv("IGNIS_MUST_WORK") && streq(getenv("IGNIS_MUST_WORK"), "1"))
            fail_msg("promtool is missing (scripts/test installs it)");
        fprintf(stderr, "promtool is missing: the scrape is not checked by it\n");
        return;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/scrape.txt", harness_fixtures(&daemon_proc));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(sc->text, f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s'", promtool, path);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "promtool check metrics failed on:\n%s\n", sc->text);
    assert_int_equal(rc, 0);
}

static void push_example(const char *example, const char *name, const char *overrides)
{
    char src[512];
    snprintf(src, sizeof(src), "%s/runtime-images/examples/%s", getenv("IGNIS_SOURCE_DIR"),
             example);
    harness_push(&daemon_proc, src, name, overrides);
}

/* Invokes fn synchronously; returns the status and whether it was a cold start. */
static long invoke(const char *fn, const char *body, bool *ret_cold)
{
    char path[256], cold[16] = "";
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", fn);
    assert_int_equal(harness_request(&daemon_proc, "POST", path, NULL, body, strlen(body), &r), 0);
    client_response_header(&r, "Ignis-Cold-Start", cold, sizeof(cold));
    *ret_cold = streq(cold, "true");
    long status = r.status;
    client_response_clear(&r);
    return status;
}

static void test_counters_histograms_and_promtool(void **state)
{
    push_example("hello-exec", "m-hello", NULL);
    push_example("crash", "m-crash", NULL);

    struct scrape *before = scrape();
    check_histograms(before);
    promtool_check(before);

    unsigned colds = 0, crash_colds = 0;
    for (int i = 0; i < 5; i++) {
        bool cold;
        assert_int_equal(invoke("m-hello", "metrics", &cold), 200);
        colds += cold;
    }
    for (int i = 0; i < 2; i++) {
        bool cold;
        assert_int_equal(invoke("m-crash", "{}", &cold), 502);
        crash_colds += cold;
    }

    struct scrape *after = scrape();
    check_histograms(after);
    promtool_check(after);

#define DELTA(series) (value(after, series) - value(before, series))
    assert_true(DELTA("ignis_invocations_total{function=\"m-hello\",status=\"ok\"}") == 5);
    assert_true(DELTA("ignis_invocations_total{function=\"m-hello\",status=\"crash\"}") == 0);
    assert_true(DELTA("ignis_invocations_total{function=\"m-crash\",status=\"crash\"}") == 2);
    assert_true(DELTA("ignis_invocations_total{function=\"m-crash\",status=\"ok\"}") == 0);
    assert_true(DELTA("ignis_invocation_duration_seconds_count{function=\"m-hello\"}") == 5);
    assert_true(DELTA("ignis_invocation_duration_seconds_count{function=\"m-crash\"}") == 2);
    assert_true(DELTA("ignis_cold_starts_total{function=\"m-hello\"}") == colds);
    assert_true(DELTA("ignis_cold_starts_total{function=\"m-crash\"}") == crash_colds);
    /* Every cold start observed each phase once. */
    const char *phases[] = {"queue_wait", "setup", "runtime_init", "first_byte"};
    for (size_t i = 0; i < ARRAY_SIZE(phases); i++) {
        char series[256];
        snprintf(series, sizeof(series),
                 "ignis_cold_start_phase_seconds_count{function=\"m-hello\",phase=\"%s\"}",
                 phases[i]);
        assert_true(DELTA(series) == colds);
    }
    /* Billed ms are rounded up per attempt: at least 1 each. */
    assert_true(DELTA("ignis_billed_seconds_total{function=\"m-hello\"}") >= 0.005 - 1e-9);
    assert_true(DELTA("ignis_throttled_total{function=\"m-hello\"}") == 0);
    assert_true(present(after, "ignis_cpu_seconds_total{function=\"m-hello\"}"));
    assert_true(value(after, "ignis_memory_peak_bytes{function=\"m-hello\"}") > 0);
    assert_true(present(after, "ignis_queue_depth{function=\"m-hello\"}"));
    assert_true(present(after, "ignis_containers{function=\"m-hello\",state=\"ready\"}"));
    assert_true(present(after, "ignis_containers{function=\"m-hello\",state=\"busy\"}"));
    assert_true(present(after, "ignis_containers{function=\"m-hello\",state=\"spawning\"}"));
    assert_true(value(after, "ignis_build_info{version=\"" IGNIS_VERSION "\"}") == 1);
    assert_true(value(after, "ignis_uptime_seconds") > 0);
    assert_true(present(after, "ignis_live_containers"));
    assert_true(present(after, "ignis_memory_budget_used_bytes"));
    assert_true(present(after, "ignis_async_backlog"));
    assert_true(present(after, "ignis_dead_letters_total"));
    /* Scaler decisions: the spawns that made the containers are counted. */
    bool any_spawn = false;
    for (size_t i = 0; i < after->n; i++)
        if (startswith(after->s[i].series,
                       "ignis_scaler_decisions_total{function=\"m-hello\",action=\"spawn\""))
            any_spawn = true;
    assert_true(any_spawn);
    /* Labels stay bounded: no invocation id anywhere. */
    assert_null(strstr(after->text, "invocation="));
#undef DELTA
    scrape_free(before);
    scrape_free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_histograms_and_promtool),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
