/* Sinks end to end through a real ignisd and real containers: a webhook (a small HTTP server in
 * this test, on 127.0.0.1) receives a function's results and errors as CloudEvents in binary
 * mode with the right attributes; a sink that answers 500 is retried and the invocation's record
 * says failed, with the attempts and the reason; a sink that never answers does not hold up
 * invocations. */
#include "harness.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "events/sink.h"

static struct ignisd_proc daemon_proc;

/* ---- a webhook: one thread, one connection at a time, answers every request with status ---- */

#define HOOK_MAX 16

struct hook_request {
    char headers[4096];
    char body[4096];
};

struct hook {
    int fd;
    uint16_t port;
    int status;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    struct hook_request reqs[HOOK_MAX];
    atomic_int n;
};

/* Reads one request (headers, then Content-Length bytes of body). */
static bool read_request(int c, struct hook_request *r)
{
    char buf[8192];
    size_t len = 0;
    char *end = NULL;
    while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return false;
        len += (size_t)n;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    snprintf(r->headers, sizeof(r->headers), "%.*s", (int)hlen, buf);
    const char *cl = strcasestr(r->headers, "\r\ncontent-length:");
    size_t want = cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    while (len - hlen < want) {
        ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return false;
        len += (size_t)n;
    }
    snprintf(r->body, sizeof(r->body), "%.*s", (int)want, buf + hlen);
    return true;
}

static void *hook_thread(void *userdata)
{
    struct hook *h = userdata;
    while (!atomic_load(&h->stop)) {
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        struct hook_request r;
        if (read_request(c, &r)) {
            int i = atomic_load(&h->n);
            if (i < HOOK_MAX) {
                h->reqs[i] = r;
                atomic_store(&h->n, i + 1);
            }
            char reply[128];
            int n = snprintf(reply, sizeof(reply),
                             "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                             h->status);
            (void)!write(c, reply, (size_t)n);
        }
        close(c);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1; serve: answer with status from a thread, else never accept
 * (connections complete in the backlog and then wait forever). */
static void hook_start(struct hook *h, int status, bool serve)
{
    memset(h, 0, sizeof(*h));
    h->status = status;
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(h->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(h->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(h->fd, 64), 0);
    assert_int_equal(getsockname(h->fd, (struct sockaddr *)&a, &alen), 0);
    h->port = ntohs(a.sin_port);
    if (serve)
        assert_int_equal(pthread_create(&h->thread, NULL, hook_thread, h), 0);
}

static void hook_stop(struct hook *h, bool serve)
{
    atomic_store(&h->stop, true);
    if (serve)
        pthread_join(h->thread, NULL);
    close(h->fd);
}

/* The value of header name in a request's raw headers ("" when absent). */
static const char *header(const struct hook_request *r, const char *name, char *buf, size_t size)
{
    char key[128];
    snprintf(key, sizeof(key), "\r\n%s:", name);
    const char *p = strcasestr(r->headers, key);
    buf[0] = '\0';
    if (!p)
        return buf;
    p += strlen(key);
    p += strspn(p, " ");
    size_t n = strcspn(p, "\r\n");
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), p);
    return buf;
}

/* ---- the daemon ---- */

static int setup(void **state)
{
    harness_require_root();
    /* The webhooks here listen on 127.0.0.1, which sinks may not reach by default. */
    static const char *const args[] = {"--sink-allow-loopback", "true", NULL};
    return harness_start(&daemon_proc, args);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* A sync invocation; returns its id. */
static void invoke_sync(struct ignisd_proc *p, const char *fn, const char *body, long want_status,
                        char id[64])
{
    char buf[128];
    struct client_response r;
    if (harness_invoke(p, fn, body, NULL, &r) != want_status)
        fail_msg("invoke %s: %ld %s", fn, r.status, r.body);
    const char *h = client_response_header(&r, "Ignis-Invocation-Id", buf, sizeof(buf));
    assert_non_null(h);
    snprintf(id, 64, "%s", h);
    client_response_clear(&r);
}

/* The invocation's record; NULL while it is not written yet (a sync invocation's record is
 * written after its reply, through the journal). */
static cJSON *record(struct ignisd_proc *p, const char *id)
{
    char path[128];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/invocations/%s", id);
    assert_int_equal(harness_request(p, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status == 404) {
        client_response_clear(&r);
        return NULL;
    }
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    client_response_clear(&r);
    return j;
}

/* Waits (up to a minute: the machine is shared and slow at times) until the invocation's sink
 * delivery has status; returns the record. */
static cJSON *wait_sink(struct ignisd_proc *p, const char *id, const char *status)
{
    for (int i = 0; i < 600; i++) {
        cJSON *j = record(p, id);
        cJSON *s = j ? cJSON_GetObjectItem(cJSON_GetObjectItem(j, "sink"), "status") : NULL;
        if (cJSON_IsString(s) && streq(s->valuestring, status))
            return j;
        cJSON_Delete(j);
        usleep(100 * 1000);
    }
    fail_msg("the sink of %s never became %s", id, status);
    return NULL;
}

static void wait_requests(struct hook *h, int n)
{
    for (int i = 0; i < 600 && atomic_load(&h->n) < n; i++)
        usleep(100 * 1000);
    assert_int_equal(atomic_load(&h->n), n);
}

static void test_results_and_errors_as_cloudevents(void **state)
{
    struct hook h;
    hook_start(&h, 200, true);
    char overrides[256], id[64], buf[256];
    const char delivered[] = "ignis_sink_deliveries_total{status=\"delivered\"}",
               attempts[] = "ignis_sink_attempts_total";
    double delivered0 = harness_metric(&daemon_proc, delivered),
           attempts0 = harness_metric(&daemon_proc, attempts);
    snprintf(overrides, sizeof(overrides), "{\"sink\": \"http://127.0.0.1:%u/hook\"}", h.port);
    harness_push(&daemon_proc, "hello-exec", "greeter", overrides);
    invoke_sync(&daemon_proc, "greeter", "sinks", 200, id);

    cJSON *j = wait_sink(&daemon_proc, id, "delivered");
    cJSON *s = cJSON_GetObjectItem(j, "sink");
    assert_int_equal(cJSON_GetObjectItem(s, "attempts")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(s, "http_status")->valueint, 200);
    assert_string_equal(cJSON_GetObjectItem(s, "type")->valuestring, SINK_TYPE_RESULT);
    cJSON_Delete(j);
    wait_requests(&h, 1);
    const struct hook_request *r = &h.reqs[0];
    assert_true(startswith(r->headers, "POST /hook HTTP/1.1\r\n"));
    assert_string_equal(header(r, "ce-specversion", buf, sizeof(buf)), "1.0");
    assert_string_equal(header(r, "ce-type", buf, sizeof(buf)), "dev.ignis.function.result");
    assert_string_equal(header(r, "ce-source", buf, sizeof(buf)), "/ignis/functions/greeter");
    assert_string_equal(header(r, "ce-id", buf, sizeof(buf)), id);
    /* RFC 3339 in UTC: 2026-11-28T04:10:46.646123Z */
    header(r, "ce-time", buf, sizeof(buf));
    assert_int_equal(strlen(buf), 27);
    assert_true(buf[4] == '-' && buf[10] == 'T' && buf[26] == 'Z');
    char want[128];
    snprintf(want, sizeof(want), "Hello, sinks! (invocation %s)\n", id);
    assert_string_equal(r->body, want);

    /* A function error goes as dev.ignis.function.error with {type, message}; with "on":
     * "failure" a success is not sent. */
    snprintf(overrides, sizeof(overrides),
             "{\"sink\": {\"url\": \"http://127.0.0.1:%u/errors\", \"on\": \"failure\"}}", h.port);
    harness_push(&daemon_proc, "crash", "crasher", overrides);
    char crash_id[64];
    invoke_sync(&daemon_proc, "crasher", "{\"mode\": \"raise\"}", 502, crash_id);
    j = wait_sink(&daemon_proc, crash_id, "delivered");
    cJSON_Delete(j);
    wait_requests(&h, 2);
    r = &h.reqs[1];
    assert_true(startswith(r->headers, "POST /errors HTTP/1.1\r\n"));
    assert_string_equal(header(r, "ce-type", buf, sizeof(buf)), "dev.ignis.function.error");
    assert_string_equal(header(r, "ce-source", buf, sizeof(buf)), "/ignis/functions/crasher");
    assert_string_equal(header(r, "ce-id", buf, sizeof(buf)), crash_id);
    assert_string_equal(header(r, "content-type", buf, sizeof(buf)), "application/json");
    /* GET /metrics counted both, each delivered at its first attempt (the counters move before
     * the record says delivered). */
    assert_true(harness_metric(&daemon_proc, delivered) - delivered0 == 2);
    assert_true(harness_metric(&daemon_proc, attempts) - attempts0 == 2);
    assert_true(harness_metric(&daemon_proc, "ignis_sink_pending") == 0);
    cJSON *body = cJSON_Parse(r->body);
    assert_non_null(body);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(body, "type")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(body, "message")));
    cJSON_Delete(body);
    hook_stop(&h, true);
}

static void test_failing_sink_is_retried_then_failed(void **state)
{
    struct hook h;
    hook_start(&h, 500, true);
    char overrides[256], id[64];
    snprintf(overrides, sizeof(overrides),
             "{\"sink\": {\"url\": \"http://127.0.0.1:%u/down\", \"retries\": 2}}", h.port);
    harness_push(&daemon_proc, "hello-exec", "unlucky", overrides);
    invoke_sync(&daemon_proc, "unlucky", "x", 200, id);
    cJSON *j = wait_sink(&daemon_proc, id, "failed");
    cJSON *s = cJSON_GetObjectItem(j, "sink");
    assert_int_equal(cJSON_GetObjectItem(s, "attempts")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(s, "max_attempts")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(s, "http_status")->valueint, 500);
    assert_string_equal(cJSON_GetObjectItem(s, "error")->valuestring, "HTTP 500");
    /* The invocation itself succeeded: the sink's failure is the sink's. */
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "succeeded");
    cJSON_Delete(j);
    wait_requests(&h, 3);
    char a[64], b[64];
    assert_string_equal(header(&h.reqs[0], "ce-id", a, sizeof(a)),
                        header(&h.reqs[2], "ce-id", b, sizeof(b)));
    hook_stop(&h, true);

    /* Nothing listening at all: connection refused, retried the same way. */
    uint16_t closed = harness_free_port();
    snprintf(overrides, sizeof(overrides),
             "{\"sink\": {\"url\": \"http://127.0.0.1:%u/\", \"retries\": 1}}", closed);
    harness_push(&daemon_proc, "hello-exec", "unlucky", overrides);
    invoke_sync(&daemon_proc, "unlucky", "x", 200, id);
    j = wait_sink(&daemon_proc, id, "failed");
    s = cJSON_GetObjectItem(j, "sink");
    assert_int_equal(cJSON_GetObjectItem(s, "attempts")->valueint, 2);
    assert_null(cJSON_GetObjectItem(s, "http_status"));
    assert_non_null(strstr(cJSON_GetObjectItem(s, "error")->valuestring, "onnect"));
    cJSON_Delete(j);
}

static void test_unreachable_sink_does_not_stall(void **state)
{
    /* Accepted by the kernel, never read: each attempt waits for its 10 s timeout. */
    struct hook h;
    hook_start(&h, 200, false);
    char overrides[256], first[64], id[64];
    snprintf(overrides, sizeof(overrides), "{\"sink\": \"http://127.0.0.1:%u/\"}", h.port);
    harness_push(&daemon_proc, "hello-exec", "stuck", overrides);
    invoke_sync(&daemon_proc, "stuck", "1", 200, first);
    /* More invocations, of this function and another, complete while the first delivery is
     * still waiting for an answer. */
    harness_push(&daemon_proc, "hello-exec", "free", NULL);
    for (int i = 0; i < 5; i++) {
        invoke_sync(&daemon_proc, "stuck", "again", 200, id);
        invoke_sync(&daemon_proc, "free", "again", 200, id);
    }
    cJSON *j = NULL;
    for (int i = 0; i < 600; i++) {
        if ((j = record(&daemon_proc, first)) && cJSON_GetObjectItem(j, "sink"))
            break;
        cJSON_Delete(TAKE_PTR(j));
        usleep(100 * 1000);
    }
    cJSON *s = cJSON_GetObjectItem(j, "sink");
    assert_non_null(s);
    assert_string_equal(cJSON_GetObjectItem(s, "status")->valuestring, "pending");
    cJSON_Delete(j);
    /* The daemon stops cleanly with those transfers open (harness_finish expects exit 0). */
    hook_stop(&h, false);
}

/* By default a sink may not reach the host's loopback (its other services, ignisd itself) or a
 * link-local address (a cloud's instance metadata at 169.254.169.254): checked on the address
 * each connection would go to, so "localhost" is refused like 127.0.0.1. Nothing is sent. */
static void test_loopback_and_link_local_refused(void **state)
{
    struct ignisd_proc p;
    struct hook h;
    assert_int_equal(harness_start(&p, NULL), 0);
    hook_start(&h, 200, true);
    static const struct {
        const char *host, *said;
    } cases[] = {
        {"127.0.0.1", "127.0.0.1 is a loopback address"},
        {"localhost", "is a loopback address"},
        {"[::1]", "::1 is a loopback address"},
        {"169.254.169.254", "169.254.169.254 is a link-local address"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char overrides[256], id[64];
        snprintf(overrides, sizeof(overrides),
                 "{\"sink\": {\"url\": \"http://%s:%u/\", \"retries\": 0}}", cases[i].host, h.port);
        harness_push(&p, "hello-exec", "guarded", overrides);
        invoke_sync(&p, "guarded", "x", 200, id);
        cJSON *j = wait_sink(&p, id, "failed");
        const char *error =
            cJSON_GetObjectItem(cJSON_GetObjectItem(j, "sink"), "error")->valuestring;
        if (!strstr(error, cases[i].said) || !strstr(error, "sink_allow_loopback"))
            fail_msg("%s: %s", cases[i].host, error);
        cJSON_Delete(j);
    }
    hook_stop(&h, true);
    assert_int_equal(atomic_load(&h.n), 0);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_and_errors_as_cloudevents),
        cmocka_unit_test(test_failing_sink_is_retried_then_failed),
        cmocka_unit_test(test_unreachable_sink_does_not_stall),
        cmocka_unit_test(test_loopback_and_link_local_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
