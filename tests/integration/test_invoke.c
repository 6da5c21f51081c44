/* Invocations end to end through a real ignisd and real containers: sync invoke of each
 * runtime, timeouts, crashes, function errors, the queue bound, oversize bodies, a client that
 * goes away, durable async with retries, dead letters and idempotency, a graceful stop, and a
 * kill -9 with 1,000 accepted async invocations outstanding. Functions are the examples under
 * runtime-images/examples, pushed with the CLI as a developer would. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "records/invocation.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    const char *args[] = {"--queue-max", "3", NULL};
    return harness_start(&daemon_proc, args);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

static const char *error_code(cJSON *j)
{
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    return cJSON_IsString(c) ? c->valuestring : "";
}

static void test_sync_each_runtime(void **state)
{
    static const struct {
        const char *example, *name, *body, *expect;
    } cases[] = {
        {"hello-exec", "h-exec", "ignis", "Hello, ignis!"},
        {"hello-python", "h-python", "{\"name\": \"py\"}", "Hello, py!"},
        {"hello-node", "h-node", "{\"name\": \"js\"}", "js"},
        {"hello-provided", "h-provided", "{\"name\": \"bash\"}", "bash"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        harness_push(&daemon_proc, cases[i].example, cases[i].name, NULL);
        for (int round = 0; round < 2; round++) {
            struct client_response r;
            long status = harness_invoke(&daemon_proc, cases[i].name, cases[i].body, NULL, &r);
            if (status != 200)
                fprintf(stderr, "%s: %ld %s\n", cases[i].name, status, r.body);
            assert_int_equal(status, 200);
            assert_non_null(strstr(r.body, cases[i].expect));
            char h[64];
            assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", h, sizeof(h)));
            assert_int_equal(strlen(h), 32);
            assert_non_null(client_response_header(&r, "Ignis-Cold-Start", h, sizeof(h)));
            /* reuse: true (all of these): the second call runs in the warm container */
            if (round == 1)
                assert_string_equal(h, "false");
            assert_non_null(client_response_header(&r, "Ignis-Billed-Ms", h, sizeof(h)));
            assert_true(atoi(h) >= 1);
            client_response_clear(&r);
        }
    }
}

/* A sync invocation's record and usage row reach the store up to 2 ms after its reply (the
 * journal batches them): a client that asks right after the reply still finds both, every time
 * (the reads settle the journal first). */
static void test_record_readable_right_after_reply(void **state)
{
    harness_push(&daemon_proc, "hello-exec", "ryw", NULL);
    for (int i = 1; i <= 20; i++) {
        struct client_response r;
        assert_int_equal(harness_invoke(&daemon_proc, "ryw", "x", NULL, &r), 200);
        char id[64], path[128];
        assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
        client_response_clear(&r);
        snprintf(path, sizeof(path), "/v1/invocations/%s", id);
        assert_int_equal(harness_request(&daemon_proc, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        cJSON *j = harness_json(&r);
        assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "succeeded");
        cJSON_Delete(j);
        client_response_clear(&r);
        assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/usage?function=ryw&since=1h",
                                         NULL, NULL, 0, &r),
                         0);
        assert_int_equal(r.status, 200);
        j = harness_json(&r);
        char *text = cJSON_PrintUnformatted(j);
        char want[64];
        snprintf(want, sizeof(want), "\"invocations\":%d,", i);
        const char *found = text ? strstr(text, want) : NULL;
        if (!found)
            fprintf(stderr, "after %d invocations: %s\n", i, text ? text : "(no JSON)");
        assert_non_null(found);
        free(text);
        cJSON_Delete(j);
        client_response_clear(&r);
    }
}

static void test_fresh_container_per_invocation(void **state)
{
    harness_push(&daemon_proc, "hello-python", "fresh-py", "{\"reuse\": false}");
    double started[3];
    for (int i = 0; i < 3; i++) {
        struct client_response r;
        assert_int_equal(harness_invoke(&daemon_proc, "fresh-py", "{}", NULL, &r), 200);
        cJSON *j = harness_json(&r);
        started[i] = cJSON_GetObjectItem(j, "container_started")->valuedouble;
        cJSON_Delete(j);
        client_response_clear(&r);
    }
    /* Module code ran in three different containers. */
    assert_true(started[0] != started[1] && started[1] != started[2]);
}

/* A function with the longest name a manifest allows (63 characters) runs, fresh and warm, from
 * an exec'd container and a forked one: its containers' names (the function's and a number)
 * are longer than the name. */
static void test_longest_name_runs(void **state)
{
    char name[64];
    memset(name, 'l', 63);
    name[63] = '\0';
    harness_push(&daemon_proc, "hello-python", name, "{\"reuse\": false}");
    for (int i = 0; i < 3; i++)
        assert_int_equal(harness_invoke(&daemon_proc, name, "{}", NULL, NULL), 200);
    memcpy(name, "exec", 4);
    harness_push(&daemon_proc, "hello-exec", name, NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(harness_invoke(&daemon_proc, name, "{}", NULL, NULL), 200);
}

static void test_timeout_is_504_and_container_replaced(void **state)
{
    harness_push(&daemon_proc, "timeout", "slowpoke", NULL);
    struct client_response r;
    assert_int_equal(harness_invoke(&daemon_proc, "slowpoke", "{}", NULL, &r), 504);
    cJSON *j = harness_json(&r);
    assert_string_equal(error_code(j), "function_timeout");
    cJSON_Delete(j);
    client_response_clear(&r);
    assert_int_equal(harness_live_number(&daemon_proc, "slowpoke", "busy"), 0);
    assert_int_equal(harness_live_number(&daemon_proc, "slowpoke", "in_flight"), 0);
}

static void test_crash_is_502(void **state)
{
    harness_push(&daemon_proc, "crash", "crasher", "{\"max_retries\": 0}");
    struct client_response r;
    assert_int_equal(harness_invoke(&daemon_proc, "crasher", "{}", NULL, &r), 502);
    cJSON *j = harness_json(&r);
    assert_string_equal(error_code(j), "function_crashed");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "type")->valuestring,
                        "Runtime.ExitError");
    cJSON_Delete(j);
    client_response_clear(&r);
}

static void test_function_error_is_502_with_type(void **state)
{
    /* hello-python on a body that is not an object still works; lambda-python raises on... no:
     * exec with a non-zero exit is the simplest function error. */
    harness_push(&daemon_proc, "hello-exec", "failing-exec", "{\"handler\": \"missing.sh\"}");
    struct client_response r;
    long status = harness_invoke(&daemon_proc, "failing-exec", "x", NULL, &r);
    assert_int_equal(status, 502);
    cJSON *j = harness_json(&r);
    assert_true(streq(error_code(j), "function_error") ||
                streq(error_code(j), "function_init_error"));
    assert_true(
        strlen(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message")->valuestring) > 0);
    cJSON_Delete(j);
    client_response_clear(&r);
}

static void test_unknown_and_oversize(void **state)
{
    struct client_response r;
    assert_int_equal(harness_invoke(&daemon_proc, "no-such-function", "{}", NULL, &r), 404);
    client_response_clear(&r);
    size_t big = 6u * 1024 * 1024 + 1;
    char *body = malloc(big + 1);
    memset(body, 'a', big);
    body[big] = '\0';
    assert_int_equal(harness_invoke(&daemon_proc, "h-exec", body, NULL, &r), 413);
    client_response_clear(&r);
    free(body);
    const char *bad[] = {"Ignis-Invocation-Type: sometimes", NULL};
    assert_int_equal(harness_invoke(&daemon_proc, "h-exec", "x", bad, &r), 400);
    client_response_clear(&r);
}

static void wait_for_live(struct ignisd_proc *p, const char *fn, const char *key, double want)
{
    uint64_t deadline = now_usec() + 10000000;
    while (now_usec() < deadline && harness_live_number(p, fn, key) != want)
        usleep(10000);
    assert_true(harness_live_number(p, fn, key) == want);
}

static void test_queue_full_and_client_disconnect(void **state)
{
    /* One container, one at a time: the first call holds it, the next three queue (the daemon
     * runs with --queue-max 3), the fifth is refused. */
    harness_push(&daemon_proc, "sleep", "single", "{\"max_scale\": 1, \"concurrency\": 1}");
    struct harness_call held;
    harness_invoke_start(&held, &daemon_proc, "single", "{\"ms\": 1500}", 0);
    wait_for_live(&daemon_proc, "single", "in_flight", 1);
    struct harness_call queued[3];
    for (int i = 0; i < 3; i++) /* the last one gives up after 300 ms: it must leave the queue */
        harness_invoke_start(&queued[i], &daemon_proc, "single", "{\"ms\": 1}", i == 2 ? 300 : 0);
    wait_for_live(&daemon_proc, "single", "queue_depth", 3);
    struct client_response r;
    assert_int_equal(harness_invoke(&daemon_proc, "single", "{}", NULL, &r), 429);
    char h[16];
    assert_non_null(client_response_header(&r, "Retry-After", h, sizeof(h)));
    client_response_clear(&r);
    harness_call_join(&queued[2]);
    assert_int_equal(queued[2].status, -1); /* it timed out on the client side */
    wait_for_live(&daemon_proc, "single", "queue_depth", 2);
    harness_call_join(&held);
    assert_int_equal(held.status, 200);
    harness_call_clear(&held);
    for (int i = 0; i < 2; i++) {
        harness_call_join(&queued[i]);
        assert_int_equal(queued[i].status, 200);
        harness_call_clear(&queued[i]);
    }
    /* 1 held + 2 served: the cancelled one never ran. */
    assert_int_equal(harness_live_number(&daemon_proc, "single", "invocations"), 3);
}

static void test_async_success_retry_dead_letter_idempotency(void **state)
{
    char ok[64], dead[64], a[64], b[64];
    harness_invoke_async(&daemon_proc, "h-python", "{\"name\": \"later\"}", NULL, ok, NULL);
    cJSON *j = harness_wait_invocation(&daemon_proc, ok, "succeeded", 20);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "result"), "message")->valuestring,
        "Hello, later!");
    assert_int_equal(cJSON_GetObjectItem(j, "attempts")->valueint, 1);
    cJSON_Delete(j);

    harness_push(&daemon_proc, "crash", "crash-retry", "{\"max_retries\": 2}");
    harness_invoke_async(&daemon_proc, "crash-retry", "{}", NULL, dead, NULL);
    j = harness_wait_invocation(&daemon_proc, dead, "dead", 30);
    assert_int_equal(cJSON_GetObjectItem(j, "attempts")->valueint, 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "type")->valuestring,
                        "Runtime.ExitError");
    cJSON_Delete(j);

    harness_invoke_async(&daemon_proc, "h-python", "{}", "order-42", a, NULL);
    harness_invoke_async(&daemon_proc, "h-python", "{}", "order-42", b, NULL);
    assert_string_equal(a, b);
    harness_invoke_async(&daemon_proc, "h-python", "{}", "order-43", b, NULL);
    assert_string_not_equal(a, b);

    /* Keys beginning with /ignis/ are ignisd's own (a schedule's runs). */
    struct client_response r;
    const char *reserved[] = {"Ignis-Invocation-Type: async",
                              "Idempotency-Key: /ignis/schedules/h-python@2026-01-01T00:00:00Z",
                              NULL};
    assert_int_equal(harness_invoke(&daemon_proc, "h-python", "{}", reserved, &r), 400);
    assert_non_null(strstr(r.body, "reserved"));
    client_response_clear(&r);

    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/invocations/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    client_response_clear(&r);
}

/* kill -9 with 1,000 accepted async invocations outstanding; after a restart every one of them
 * completes. */
static void test_kill9_loses_nothing(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    harness_push(&p, "hello-exec", "durable", "{\"max_scale\": 2}");
    enum { N = 1000 };
    char(*ids)[64] = calloc(N, 64);
    for (int i = 0; i < N; i++)
        harness_invoke_async(&p, "durable", "x", NULL, ids[i], NULL);
    kill(p.pid, SIGKILL);
    waitpid(p.pid, NULL, 0);
    p.pid = 0;
    assert_int_equal(harness_restart(&p, NULL), 0);
    /* Each must succeed: harness_wait_invocation fails the test otherwise. */
    for (int i = 0; i < N; i++)
        cJSON_Delete(harness_wait_invocation(&p, ids[i], "succeeded", 120));
    free(ids);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

/* SIGTERM: the running invocation finishes, the queued one is told 503, the daemon exits 0. */
static void test_graceful_stop(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    harness_push(&p, "sleep", "drain", "{\"max_scale\": 1}");
    struct harness_call running, queued;
    harness_invoke_start(&running, &p, "drain", "{\"ms\": 800}", 0);
    wait_for_live(&p, "drain", "in_flight", 1);
    harness_invoke_start(&queued, &p, "drain", "{\"ms\": 1}", 0);
    wait_for_live(&p, "drain", "queue_depth", 1);
    kill(p.pid, SIGTERM);
    harness_call_join(&running);
    harness_call_join(&queued);
    assert_int_equal(running.status, 200);
    assert_int_equal(queued.status, 503);
    harness_call_clear(&running);
    harness_call_clear(&queued);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

static int cli(char **out, char **err, const char *fmt, ...) _printf_(3, 4);
static int cli(char **out, char **err, const char *fmt, ...)
{
    char cmd[2048], full[2300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "%s --server %s %s", harness_cli(), daemon_proc.url, cmd);
    char *argv[] = {"/bin/sh", "-c", full, NULL};
    return harness_run(argv, out, err);
}

static void test_cli_invoke_and_result(void **state)
{
    char *out, *err;
    assert_int_equal(cli(&out, &err, "invoke h-exec -d ignis"), 0);
    assert_non_null(strstr(out, "Hello, ignis!"));
    free(out);
    free(err);
    char file[] = "/tmp/ignis-invoke-data.XXXXXX";
    int fd = mkstemp(file);
    assert_int_equal(write(fd, "from-a-file", 11), 11);
    close(fd);
    assert_int_equal(cli(&out, &err, "invoke h-exec -d @%s", file), 0);
    assert_non_null(strstr(out, "Hello, from-a-file!"));
    free(out);
    free(err);
    unlink(file);
    char full[512];
    snprintf(full, sizeof(full), "echo from-stdin | %s --server %s invoke h-exec -d -",
             harness_cli(), daemon_proc.url);
    char *argv[] = {"/bin/sh", "-c", full, NULL};
    assert_int_equal(harness_run(argv, &out, &err), 0);
    assert_non_null(strstr(out, "from-stdin"));
    free(out);
    free(err);

    /* A failing function: exit status 1, one line naming the error. */
    assert_int_equal(cli(&out, &err, "invoke crasher"), 1);
    assert_non_null(strstr(err, "ignis: "));
    assert_int_equal(strchr(err, '\n')[1], '\0');
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "invoke crasher --json"), 1);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 502);
    cJSON_Delete(j);
    free(out);
    free(err);

    /* --async prints the id; result --wait follows it to the end. */
    assert_int_equal(cli(&out, &err, "invoke h-python --async -d '{\"name\": \"cli\"}'"), 0);
    out[strcspn(out, "\n")] = '\0';
    assert_true(inv_id_valid(out));
    char *id = out;
    free(err);
    assert_int_equal(cli(&out, &err, "result %s --wait", id), 0);
    assert_non_null(strstr(out, "succeeded"));
    assert_non_null(strstr(out, "Hello, cli!"));
    free(out);
    free(err);
    assert_int_equal(cli(&out, &err, "result %s --json", id), 0);
    j = cJSON_Parse(out);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "succeeded");
    cJSON_Delete(j);
    free(out);
    free(err);
    free(id);
    assert_int_equal(cli(&out, &err, "result 00000000000000000000000000000000"), 1);
    assert_non_null(strstr(err, "no invocation"));
    free(out);
    free(err);
}

/* DELETE drains: the invocation running when the delete arrives completes; then the function
 * is gone. */
static void test_delete_drains(void **state)
{
    harness_push(&daemon_proc, "sleep", "doomed", "{\"max_scale\": 1}");
    struct harness_call running;
    harness_invoke_start(&running, &daemon_proc, "doomed", "{\"ms\": 700}", 0);
    wait_for_live(&daemon_proc, "doomed", "in_flight", 1);
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, "DELETE", "/v1/functions/doomed", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
    harness_call_join(&running);
    assert_int_equal(running.status, 200);
    harness_call_clear(&running);
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/functions/doomed", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    client_response_clear(&r);
    assert_int_equal(harness_invoke(&daemon_proc, "doomed", "{}", NULL, &r), 404);
    client_response_clear(&r);
}

/* ./scripts/run starts ignisd with --state-dir ./var: relative paths must work all the way to
 * the containers (the shim takes only absolute ones). */
static void test_relative_state_dir(void **state)
{
    char dir[] = "/tmp/ignis-relative.XXXXXX", listen[64], url[64];
    assert_non_null(mkdtemp(dir));
    uint16_t port = harness_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) < 0)
            _exit(127);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        execl(harness_ignisd(), "ignisd", "--listen", listen, "--state-dir", "./var",
              "--images-dir", getenv("IGNIS_IMAGES_DIR"), NULL);
        _exit(127);
    }
    struct ignisd_proc p = {.pid = pid, .port = port};
    snprintf(p.url, sizeof(p.url), "%s", url);
    snprintf(p.state_dir, sizeof(p.state_dir), "%s/var", dir);
    assert_int_equal(harness_wait_healthy(&p), 0);
    harness_push(&p, "hello-exec", "relative", NULL);
    struct client_response r;
    assert_int_equal(harness_invoke(&p, "relative", "rel", NULL, &r), 200);
    assert_non_null(strstr(r.body, "Hello, rel!"));
    client_response_clear(&r);
    assert_int_equal(harness_stop(&p), 0);
    client_free(p.client);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_each_runtime),
        cmocka_unit_test(test_record_readable_right_after_reply),
        cmocka_unit_test(test_fresh_container_per_invocation),
        cmocka_unit_test(test_longest_name_runs),
        cmocka_unit_test(test_timeout_is_504_and_container_replaced),
        cmocka_unit_test(test_crash_is_502),
        cmocka_unit_test(test_function_error_is_502_with_type),
        cmocka_unit_test(test_unknown_and_oversize),
        cmocka_unit_test(test_queue_full_and_client_disconnect),
        cmocka_unit_test(test_async_success_retry_dead_letter_idempotency),
        cmocka_unit_test(test_cli_invoke_and_result),
        cmocka_unit_test(test_relative_state_dir),
        cmocka_unit_test(test_delete_drains),
        cmocka_unit_test(test_kill9_loses_nothing),
        cmocka_unit_test(test_graceful_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
