/* GET /metrics through a real ignisd and real containers: scrapes before and after known
 * traffic and checks exact counter deltas, histogram consistency (cumulative buckets, +Inf equal
 * to _count), that no series appears twice, and promtool's approval of the text. The families of
 * events (CloudEvents posted in each mode, duplicates, refusals, a loop of emitted events
 * stopped at the hop limit), sinks (one that cannot be reached), auth (401 and 403) and the
 * container stock (fresh containers take from it) are checked the same way. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "api/auth.h"
#include "base/client.h"
#include "config.h"

/* Small, so that the loop of emitted events is short (the daemon's --event-hop-limit). */
#define HOP_LIMIT      2
#define HOP_LIMIT_TEXT "2"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    const char *args[] = {"--event-hop-limit", HOP_LIMIT_TEXT, NULL};
    return harness_start(&daemon_proc, args);
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

/* Invokes fn synchronously; returns the status and whether it was a cold start. */
static long invoke(const char *fn, const char *body, bool *ret_cold)
{
    char cold[16] = "";
    struct client_response r;
    long status = harness_invoke(&daemon_proc, fn, body, NULL, &r);
    client_response_header(&r, "Ignis-Cold-Start", cold, sizeof(cold));
    *ret_cold = streq(cold, "true");
    client_response_clear(&r);
    return status;
}

static void test_counters_histograms_and_promtool(void **state)
{
    harness_push(&daemon_proc, "hello-exec", "m-hello", NULL);
    harness_push(&daemon_proc, "crash", "m-crash", NULL);

    struct scrape *before = scrape();
    check_histograms(before);
    harness_promtool_check(&daemon_proc, before->text);

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
    harness_promtool_check(&daemon_proc, after->text);

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
    assert_true(value(after, "ignis_store_up") == 1);
    assert_true(present(after, "ignis_store_disconnects_total"));
    /* The invocations' records and ledger rows went to the store, in fewer commits (the last
     * ones may still linger in the journal: at least the first did not). */
    assert_true(DELTA("ignis_store_statements_total") >= 1);
    assert_true(DELTA("ignis_store_commits_total") >= 1);
    assert_true(DELTA("ignis_store_commits_total") <= DELTA("ignis_store_statements_total"));
    assert_true(value(after, "ignis_store_durable_commits_total") <=
                value(after, "ignis_store_commits_total"));
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

#define DELTA(series) (value(after, series) - value(before, series))

/* POST /v1/events with these headers and body; the status. */
static long post_event(const char *const *headers, const char *body)
{
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "POST", "/v1/events", headers, body, strlen(body), &r), 0);
    long status = r.status;
    client_response_clear(&r);
    return status;
}

static long post_binary(const char *type, const char *id)
{
    char t[128], i[128];
    snprintf(t, sizeof(t), "ce-type: %s", type);
    snprintf(i, sizeof(i), "ce-id: %s", id);
    const char *h[] = {"ce-specversion: 1.0",
                       t,
                       "ce-source: /metrics-test",
                       i,
                       "Content-Type: application/json",
                       NULL};
    return post_event(h, "{}");
}

/* Scrapes until cond holds for (before, a scrape), a minute at most: emitted events and
 * deliveries happen after the request that caused them returned. */
static struct scrape *scrape_until(const struct scrape *before,
                                   bool (*cond)(const struct scrape *before,
                                                const struct scrape *after))
{
    uint64_t deadline = now_usec() + 60 * 1000000ull;
    for (;;) {
        struct scrape *after = scrape();
        if (cond(before, after))
            return after;
        scrape_free(after);
        assert_true(now_usec() < deadline);
        usleep(50000);
    }
}

static bool loop_dead_lettered(const struct scrape *before, const struct scrape *after)
{
    return DELTA("ignis_event_dead_letters_total{reason=\"hop_limit\"}") >= 1 &&
           DELTA("ignis_events_total{mode=\"emitted\",outcome=\"delivered\"}") >= HOP_LIMIT;
}

static void test_event_families(void **state)
{
    harness_push_fixture(&daemon_proc, "relay", "m-rec",
                         "{\"events\": [{\"type\": \"com.metrics.a\"}]}");
    harness_push_fixture(&daemon_proc, "relay", "m-loop",
                         "{\"events\": [{\"type\": \"com.metrics.loop\"}],"
                         " \"env\": {\"EMIT_TYPE\": \"com.metrics.loop\"}}");
    struct scrape *before = scrape();

    /* Three binary events, one of them again: a duplicate. */
    assert_int_equal(post_binary("com.metrics.a", "m-1"), 202);
    assert_int_equal(post_binary("com.metrics.a", "m-2"), 202);
    assert_int_equal(post_binary("com.metrics.a", "m-3"), 202);
    assert_int_equal(post_binary("com.metrics.a", "m-2"), 202);
    /* A structured event nobody subscribes to. */
    const char *structured[] = {"Content-Type: application/cloudevents+json", NULL};
    assert_int_equal(post_event(structured, "{\"specversion\": \"1.0\", \"id\": \"m-s\", "
                                            "\"source\": \"/metrics-test\", "
                                            "\"type\": \"com.metrics.nobody\"}"),
                     202);
    /* A batch of two. */
    const char *batch[] = {"Content-Type: application/cloudevents-batch+json", NULL};
    assert_int_equal(
        post_event(batch, "[{\"specversion\": \"1.0\", \"id\": \"m-b1\", \"source\": \"/m\", "
                          "\"type\": \"com.metrics.a\"}, {\"specversion\": \"1.0\", "
                          "\"id\": \"m-b2\", \"source\": \"/m\", \"type\": \"com.metrics.a\"}]"),
        202);
    /* Refused twice: no ce-id (400). */
    const char *no_id[] = {"ce-specversion: 1.0", "ce-type: com.metrics.a", "ce-source: /m",
                           "Content-Type: application/json", NULL};
    assert_int_equal(post_event(no_id, "{}"), 400);
    assert_int_equal(post_event(no_id, "{}"), 400);
    /* The loop: the external event runs m-loop, whose emitted events run it again until the
     * one past the hop limit is dead-lettered: HOP_LIMIT + 1 emitted, HOP_LIMIT accepted. */
    assert_int_equal(post_binary("com.metrics.loop", "m-loop-1"), 202);

    struct scrape *after = scrape_until(before, loop_dead_lettered);
    check_histograms(after);
    harness_promtool_check(&daemon_proc, after->text);
    assert_true(DELTA("ignis_events_total{mode=\"binary\",outcome=\"delivered\"}") == 4);
    assert_true(DELTA("ignis_events_total{mode=\"binary\",outcome=\"duplicate\"}") == 1);
    assert_true(DELTA("ignis_events_total{mode=\"binary\",outcome=\"no_subscriber\"}") == 0);
    assert_true(DELTA("ignis_events_total{mode=\"structured\",outcome=\"no_subscriber\"}") == 1);
    assert_true(DELTA("ignis_events_total{mode=\"structured\",outcome=\"delivered\"}") == 0);
    assert_true(DELTA("ignis_events_total{mode=\"batch\",outcome=\"delivered\"}") == 2);
    assert_true(DELTA("ignis_events_total{mode=\"emitted\",outcome=\"delivered\"}") == HOP_LIMIT);
    assert_true(DELTA("ignis_events_total{mode=\"emitted\",outcome=\"duplicate\"}") == 0);
    /* One invocation per delivered event here: each has one subscriber. */
    assert_true(DELTA("ignis_event_deliveries_total") == 4 + 2 + HOP_LIMIT);
    assert_true(DELTA("ignis_events_refused_total{status=\"400\"}") == 2);
    assert_true(DELTA("ignis_events_refused_total{status=\"429\"}") == 0);
    assert_true(DELTA("ignis_event_dead_letters_total{reason=\"hop_limit\"}") == 1);
    assert_true(DELTA("ignis_event_dead_letters_total{reason=\"invalid\"}") == 0);
    assert_true(DELTA("ignis_events_emitted_total{function=\"m-loop\"}") == HOP_LIMIT + 1);
    assert_true(DELTA("ignis_events_emitted_total{function=\"m-rec\"}") == 0);
    assert_true(present(after, "ignis_schedule_runs_total{function=\"m-rec\",kind=\"on_time\"}"));
    assert_true(present(after, "ignis_schedule_runs_total{function=\"m-rec\",kind=\"makeup\"}"));
    scrape_free(before);
    scrape_free(after);
}

static bool sink_ended(const struct scrape *before, const struct scrape *after)
{
    return DELTA("ignis_sink_deliveries_total{status=\"failed\"}") >= 1;
}

/* A sink on a port nobody listens on, with one retry: two attempts, then failed. */
static void test_sink_families(void **state)
{
    char overrides[128];
    snprintf(overrides, sizeof(overrides),
             "{\"sink\": {\"url\": \"http://127.0.0.1:%u/\", \"retries\": 1}}",
             harness_free_port());
    harness_push(&daemon_proc, "hello-exec", "m-sink", overrides);
    struct scrape *before = scrape();
    bool cold;
    assert_int_equal(invoke("m-sink", "sink", &cold), 200);
    struct scrape *after = scrape_until(before, sink_ended);
    assert_true(DELTA("ignis_sink_deliveries_total{status=\"failed\"}") == 1);
    assert_true(DELTA("ignis_sink_deliveries_total{status=\"delivered\"}") == 0);
    assert_true(DELTA("ignis_sink_attempts_total") == 2);
    assert_true(value(after, "ignis_sink_pending") == 0);
    harness_promtool_check(&daemon_proc, after->text);
    scrape_free(before);
    scrape_free(after);
}

/* A request of a client with this token (NULL: none); its status. */
static long request_as(const char *token, const char *method, const char *path)
{
    struct client *c;
    struct client_response r;
    struct ig_error err = {};
    assert_int_equal(client_new(daemon_proc.url, &c), 0);
    assert_int_equal(client_set_token(c, token), 0); /* NULL: not even $IGNIS_TOKEN's */
    assert_int_equal(client_request(c, method, path, NULL, NULL, 0, &r, &err), 0);
    long status = r.status;
    client_response_clear(&r);
    client_free(c);
    return status;
}

/* Two 401s (no token, a bad one) and a 403 (an operator may not make tokens). */
static void test_auth_families(void **state)
{
    const char body[] = "{\"role\": \"operator\"}";
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "POST", "/v1/tokens", NULL, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 201);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    char *operator= strdup(cJSON_GetObjectItem(j, "token")->valuestring);
    cJSON_Delete(j);

    struct scrape *before = scrape();
    assert_int_equal(request_as(NULL, "GET", "/v1/functions"), 401);
    assert_int_equal(request_as("nonsense", "GET", "/v1/functions"), 401);
    assert_int_equal(request_as(operator, "GET", "/v1/tokens"), 403);
    assert_int_equal(request_as(operator, "GET", "/v1/functions"), 200);
    struct scrape *after = scrape();
    assert_true(DELTA("ignis_auth_refused_total{status=\"401\",reason=\"no_token\"}") == 1);
    assert_true(DELTA("ignis_auth_refused_total{status=\"401\",reason=\"invalid_token\"}") == 1);
    assert_true(DELTA("ignis_auth_refused_total{status=\"403\",reason=\"forbidden\"}") == 1);
    assert_true(DELTA("ignis_auth_refused_total{status=\"429\",reason=\"rate_limited\"}") == 0);
    assert_true(DELTA("ignis_auth_allowed_total{role=\"operator\"}") == 1);
    /* The admin's one: the scrape `after` itself (auth counts a request before it is served). */
    assert_true(DELTA("ignis_auth_allowed_total{role=\"admin\"}") == 1);
    /* No token id or name in any label. */
    char id[AUTH_TOKEN_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", operator+ 6);
    assert_null(strstr(after->text, id));
    free(operator);
    scrape_free(before);
    scrape_free(after);
}

/* Every spawn the scaler applied, every function. */
static double spawns(const struct scrape *sc)
{
    double n = 0;
    for (size_t i = 0; i < sc->n; i++)
        if (startswith(sc->s[i].series, "ignis_scaler_decisions_total{") &&
            strstr(sc->s[i].series, "action=\"spawn\""))
            n += sc->s[i].value;
    return n;
}

static bool stock_returned(const struct scrape *before, const struct scrape *after)
{
    return DELTA("ignis_container_stock_returns_total{resource=\"cgroup\",result=\"reused\"}") +
               DELTA("ignis_container_stock_returns_total{resource=\"cgroup\",result="
                     "\"discarded\"}") >=
           1;
}

/* Fresh containers: each one asks the stock for a namespace and a cgroup, and gets it or makes
 * it in place (or finds the stock busy): the takes move by exactly the containers the scaler
 * made (every function's, counted in the same scrape), and an ended container's cgroup goes
 * back to the stock's thread. */
static void test_stock_families(void **state)
{
    /* Pushed after the first scrape: every container it has (fresh ones kept ready too) is
     * made between the two. */
    struct scrape *before = scrape();
    harness_push(&daemon_proc, "hello-exec", "m-fresh", "{\"reuse\": false}");
    for (int i = 0; i < 3; i++) {
        bool cold;
        assert_int_equal(invoke("m-fresh", "stock", &cold), 200);
    }
    struct scrape *after = scrape_until(before, stock_returned);
    double made = spawns(after) - spawns(before), busy = DELTA("ignis_container_stock_busy_total");
    assert_true(made >= 3);
    assert_true(
        DELTA("ignis_container_stock_takes_total{resource=\"netns\",result=\"taken\"}") +
            DELTA("ignis_container_stock_takes_total{resource=\"netns\",result=\"missed\"}") +
            busy ==
        made);
    assert_true(
        DELTA("ignis_container_stock_takes_total{resource=\"cgroup\",result=\"taken\"}") +
            DELTA("ignis_container_stock_takes_total{resource=\"cgroup\",result=\"missed\"}") +
            busy ==
        made);
    assert_true(present(after, "ignis_container_stock_ready{resource=\"netns\"}"));
    assert_true(present(after, "ignis_container_stock_ready{resource=\"cgroup\"}"));
    assert_true(present(after, "ignis_container_stock_backlog"));
    harness_promtool_check(&daemon_proc, after->text);
    scrape_free(before);
    scrape_free(after);
}

#undef DELTA

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_histograms_and_promtool),
        cmocka_unit_test(test_event_families),
        cmocka_unit_test(test_sink_families),
        cmocka_unit_test(test_auth_families),
        cmocka_unit_test(test_stock_families),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
