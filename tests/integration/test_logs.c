/* Function logs through a real ignisd and real containers: a chatty function's output is
 * complete up to the per-invocation cap and then marked truncated; a function writing 100 MiB
 * to stdout stalls neither the daemon nor another function; follow mode delivers a line of an
 * invocation that is still running; platform events are in the same stream. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <string.h>

#include "records/fnlog.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

/* A follower still connected when the daemon stops (test_follow_... starts it): its stream
 * must end, and the daemon still stop cleanly. */
struct lingering {
    pthread_t thread;
    bool started;
    long status;
    int rc;
    volatile bool reading; /* it has records: connected and streaming */
};
static struct lingering lingering;

static bool keep_reading(const char *p, size_t n, void *userdata)
{
    lingering.reading = true;
    return true;
}

static void *lingering_follow(void *arg)
{
    struct client *c;
    struct client_response r;
    struct ig_error err = {};
    if (client_new(daemon_proc.url, &c) < 0)
        return NULL;
    lingering.rc =
        client_stream(c, "/v1/functions/ticker/logs?follow=true", keep_reading, NULL, &r, &err);
    if (lingering.rc == 0) {
        lingering.status = r.status;
        client_response_clear(&r);
    }
    client_free(c);
    return NULL;
}

static int teardown(void **state)
{
    int status = harness_stop(&daemon_proc);
    if (lingering.started) {
        /* harness_stop returned: the daemon is gone, so the stream has ended. */
        pthread_join(lingering.thread, NULL);
        if (lingering.rc != 0 || lingering.status != 200) {
            fprintf(stderr, "the follower at shutdown: rc %d, HTTP %ld\n", lingering.rc,
                    lingering.status);
            status = -1;
        }
    }
    int leaks = harness_cleanup(&daemon_proc);
    return status == 0 && leaks == 0 ? 0 : -1;
}

/* Sync invoke; the invocation id into id. Returns the status. */
static long invoke(struct client *c, const char *fn, const char *body, char id[64])
{
    char path[256];
    struct client_response r;
    struct ig_error err = {};
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", fn);
    assert_int_equal(client_request(c, "POST", path, NULL, body, strlen(body), &r, &err), 0);
    if (id)
        assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, 64));
    long status = r.status;
    client_response_clear(&r);
    return status;
}

/* The records of GET .../logs?query, parsed. */
static cJSON *logs(const char *fn, const char *query)
{
    char path[512];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/logs?%s", fn, query);
    assert_int_equal(harness_request(&daemon_proc, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *all = cJSON_CreateArray();
    char *save = NULL;
    for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *rec = cJSON_Parse(line);
        if (!rec)
            fprintf(stderr, "not JSON: %s\n", line);
        assert_non_null(rec);
        cJSON_AddItemToArray(all, rec);
    }
    client_response_clear(&r);
    return all;
}

static const char *str(const cJSON *rec, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(rec, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_chatty_is_complete_up_to_the_cap(void **state)
{
    harness_push_fixture(&daemon_proc, "chatty", "chatty", NULL);
    char id[64];
    assert_int_equal(invoke(daemon_proc.client, "chatty", "", id), 200);

    char query[128];
    snprintf(query, sizeof(query), "invocation=%s", id);
    cJSON *recs = logs("chatty", query);
    size_t bytes = 0, lines = 0;
    bool truncated = false;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, recs)
    {
        assert_string_equal(str(rec, "invocation"), id);
        assert_non_null(str(rec, "time"));
        const char *stream = str(rec, "stream"), *text = str(rec, "text");
        if (streq(stream, "platform")) {
            if (cJSON_IsTrue(cJSON_GetObjectItem(rec, "truncated"))) {
                assert_false(truncated);
                truncated = true;
            }
            continue;
        }
        assert_string_equal(stream, "stderr");
        assert_false(truncated); /* nothing of the function's after the marker */
        char want[32];
        snprintf(want, sizeof(want), "chatty %06zu", lines + 1);
        if (strlen(text) == strlen(want)) {
            assert_string_equal(text, want); /* every line, in order */
            bytes += strlen(text) + 1;       /* and its newline */
            lines++;
        } else {
            /* The cap cut the last line: its start is all there is. */
            assert_true(strncmp(want, text, strlen(text)) == 0);
            bytes += strlen(text);
        }
    }
    assert_true(truncated);
    assert_int_equal(bytes, FNLOG_DEFAULT_INVOCATION_CAP);
    assert_int_equal(lines, FNLOG_DEFAULT_INVOCATION_CAP / 14);
    cJSON_Delete(recs);
}

/* tail=N: the last N of what the other parameters select, over HTTP and from the CLI. */
static void test_tail(void **state)
{
    char id[64], query[160];
    assert_int_equal(invoke(daemon_proc.client, "chatty", "", id), 200);
    snprintf(query, sizeof(query), "invocation=%s", id);
    cJSON *all = logs("chatty", query);
    int n = cJSON_GetArraySize(all);
    assert_true(n > 100);
    snprintf(query, sizeof(query), "invocation=%s&tail=3", id);
    cJSON *last = logs("chatty", query);
    assert_int_equal(cJSON_GetArraySize(last), 3);
    for (int i = 0; i < 3; i++)
        assert_true(
            cJSON_Compare(cJSON_GetArrayItem(last, i), cJSON_GetArrayItem(all, n - 3 + i), true));
    cJSON_Delete(last);
    cJSON_Delete(all);

    static const char *const bad[] = {"tail=x", "tail=-1", "tail=100001", "tail="};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char path[128];
        struct client_response r;
        snprintf(path, sizeof(path), "/v1/functions/chatty/logs?%s", bad[i]);
        assert_int_equal(harness_request(&daemon_proc, "GET", path, NULL, NULL, 0, &r), 0);
        if (r.status != 400 || !strstr(r.body, "tail must be a number from 0 to 100000"))
            fail_msg("%s: %ld %s", bad[i], r.status, r.body);
        client_response_clear(&r);
    }

    char *out = NULL, *err = NULL;
    assert_int_equal(
        harness_ignis(&daemon_proc, &out, &err, "logs", "chatty", "--tail", "2", "--json", NULL),
        0);
    size_t lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 2);
    free(out);
    free(err);
}

struct flood_call {
    int n;
    long status[3];
};

static void *flood_thread(void *arg)
{
    struct flood_call *fc = arg;
    struct client *c;
    assert_int_equal(client_new(daemon_proc.url, &c), 0);
    for (int i = 0; i < fc->n; i++)
        fc->status[i] = invoke(c, "flood", "{}", NULL);
    client_free(c);
    return NULL;
}

static void test_flood_stalls_nothing(void **state)
{
    harness_push_fixture(&daemon_proc, "flood", "flood", NULL);
    harness_push_fixture(&daemon_proc, "chatty", "neighbour", NULL);
    struct flood_call fc = {.n = 3};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flood_thread, &fc), 0);
    /* While 300 MiB go through the daemon: another function's invocations and /healthz. */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(invoke(daemon_proc.client, "neighbour", "", NULL), 200);
        struct client_response r;
        assert_int_equal(harness_request(&daemon_proc, "GET", "/healthz", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        client_response_clear(&r);
    }
    pthread_join(t, NULL);
    for (int i = 0; i < fc.n; i++)
        assert_int_equal(fc.status[i], 200);

    /* Each flood invocation's log is its first 256 KiB of stdout, then the marker. */
    cJSON *recs = logs("flood", "");
    size_t markers = 0, stdout_bytes = 0;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, recs)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItem(rec, "truncated")))
            markers++;
        if (streq(str(rec, "stream"), "stdout"))
            stdout_bytes += strlen(str(rec, "text"));
    }
    assert_int_equal(markers, 3);
    /* 64 KiB lines: 4 whole ones (newlines not in the text) per invocation. */
    assert_int_equal(stdout_bytes, 3 * 4 * 65535);
    cJSON_Delete(recs);
}

struct follow {
    char buf[65536];
    size_t len;
    bool seen;
};

static bool on_follow_data(const char *p, size_t n, void *userdata)
{
    struct follow *f = userdata;
    if (f->len + n >= sizeof(f->buf))
        return false;
    memcpy(f->buf + f->len, p, n);
    f->len += n;
    f->buf[f->len] = '\0';
    f->seen = strstr(f->buf, "tick 1") != NULL;
    return !f->seen; /* stop once the line is in */
}

static void test_follow_delivers_a_running_invocations_lines(void **state)
{
    harness_push_fixture(&daemon_proc, "ticker", "ticker", NULL);
    const char *headers[] = {"Ignis-Invocation-Type: async", NULL};
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "POST", "/v1/functions/ticker/invoke", headers, "{}", 2, &r),
        0);
    assert_int_equal(r.status, 202);
    cJSON *j = cJSON_Parse(r.body);
    char id[64];
    snprintf(id, sizeof(id), "%s", cJSON_GetObjectItem(j, "id")->valuestring);
    cJSON_Delete(j);
    client_response_clear(&r);

    /* Follow from the start of the invocation; the line arrives while it runs. */
    struct client *c;
    assert_int_equal(client_new(daemon_proc.url, &c), 0);
    struct follow *f = calloc(1, sizeof(*f));
    char path[256];
    snprintf(path, sizeof(path), "/v1/functions/ticker/logs?follow=true&invocation=%s", id);
    struct ig_error err = {};
    assert_int_equal(client_stream(c, path, on_follow_data, f, &r, &err), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
    client_free(c);
    assert_true(f->seen);
    assert_non_null(strstr(f->buf, "\"stream\":\"stderr\""));
    free(f);

    /* ticker sleeps after its line: the invocation is still running (it ends when the daemon
     * stops). */
    snprintf(path, sizeof(path), "/v1/invocations/%s", id);
    assert_int_equal(harness_request(&daemon_proc, "GET", path, NULL, NULL, 0, &r), 0);
    j = cJSON_Parse(r.body);
    /* Not over: the record says running, or still queued when the journal has not written the
     * start yet (it is written behind the hand-off). */
    const char *status = str(j, "status");
    assert_non_null(status);
    assert_true(streq(status, "running") || streq(status, "queued"));
    cJSON_Delete(j);
    client_response_clear(&r);

    /* The same line through the CLI. */
    char *out = NULL, *errout = NULL;
    char *argv[] = {(char *)harness_cli(),
                    "--server",
                    daemon_proc.url,
                    "logs",
                    "ticker",
                    "--invocation",
                    id,
                    NULL};
    assert_int_equal(harness_run(argv, &out, &errout), 0);
    assert_non_null(strstr(out, "stderr tick 1"));
    free(out);
    free(errout);

    /* Platform events are in the same stream, marked as such. */
    cJSON *recs = logs("ticker", "");
    bool spawned = false;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, recs) if (streq(str(rec, "stream"), "platform") &&
                                      strstr(str(rec, "text"), "spawned")) spawned = true;
    assert_true(spawned);
    cJSON_Delete(recs);

    /* A follower left connected: teardown stops the daemon under it. */
    assert_int_equal(pthread_create(&lingering.thread, NULL, lingering_follow, NULL), 0);
    lingering.started = true;
    for (int i = 0; i < 3000 && !lingering.reading; i++)
        usleep(10000);
    assert_true(lingering.reading);

    /* Unknown functions and bad parameters. */
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/functions/nope/logs", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    client_response_clear(&r);
    assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/functions/ticker/logs?since=x", NULL,
                                     NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 400);
    client_response_clear(&r);
}

/* The first record of fn's invocation id whose stream is platform and whose text has needle. */
static bool has_platform_event(const char *fn, const char *id, const char *needle)
{
    char query[128];
    snprintf(query, sizeof(query), "invocation=%s", id);
    cJSON *recs = logs(fn, query);
    bool found = false;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, recs) if (streq(str(rec, "stream"), "platform") &&
                                      strstr(str(rec, "text"), needle)) found = true;
    if (!found) {
        char *text = cJSON_Print(recs);
        fprintf(stderr, "no platform event '%s' for %s: %s\n", needle, id, text);
        free(text);
    }
    cJSON_Delete(recs);
    return found;
}

static void test_timeout_and_oom_are_platform_events(void **state)
{
    char id[64];
    harness_push(&daemon_proc, "timeout", "l-timeout", NULL);
    assert_int_equal(invoke(daemon_proc.client, "l-timeout", "{}", id), 504);
    assert_true(has_platform_event("l-timeout", id, "timeout: killed container"));
    /* Every attempt's REPORT line, as Lambda writes it, timed out or not. */
    char report[128];
    snprintf(report, sizeof(report), "REPORT RequestId: %s\tDuration: ", id);
    assert_true(has_platform_event("l-timeout", id, report));
    assert_true(has_platform_event("l-timeout", id, "Billed Duration: "));

    harness_push(&daemon_proc, "alloc-memory", "l-oom", "{\"memory_mb\": 64}");
    assert_int_equal(invoke(daemon_proc.client, "l-oom", "{\"mb\": 256}", id), 502);
    assert_true(has_platform_event("l-oom", id, "OOM kill: container"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatty_is_complete_up_to_the_cap),
        cmocka_unit_test(test_tail),
        cmocka_unit_test(test_flood_stalls_nothing),
        cmocka_unit_test(test_timeout_and_oom_are_platform_events),
        cmocka_unit_test(test_follow_delivers_a_running_invocations_lines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
