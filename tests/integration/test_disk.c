/* A full disk at each place ignisd writes (issue #20, items 4, 5 and 7): the state dir is a small
 * tmpfs this test mounts, filled with a filler file, then freed. Each write site gives its clear
 * answer (507 insufficient_storage, or 503 store_unavailable with Retry-After), /healthz says
 * degraded and /readyz 503 meanwhile, nothing accepted is lost (every 202'd invocation ends
 * succeeded, once, after space returns and after a restart), a delete the store refused leaves
 * the function whole, and a start on the full disk says so. A PostgreSQL store is not on that
 * disk: its checks there are SQLite's (store_on_disk). */
#include "harness.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define TMPFS_SIZE "size=48m"
#define MAX_IDS    256
/* An async payload this big eats the store's free WAL pages in a few requests. */
#define PAD_BYTES (192 * 1024)

struct disk {
    char mnt[64];
    char state[96];
    char filler[96];
    struct ignisd_proc p;
    bool started;
    char ids[MAX_IDS][64];
    size_t nids;
};

static int setup(void **state)
{
    harness_require_root();
    struct disk *k = calloc(1, sizeof(*k));
    snprintf(k->mnt, sizeof(k->mnt), "/tmp/ignis-disk.XXXXXX");
    if (!mkdtemp(k->mnt))
        return -1;
    if (mount("tmpfs", k->mnt, "tmpfs", 0, TMPFS_SIZE) < 0) {
        rmdir(k->mnt);
        free(k);
        harness_skip("cannot mount a tmpfs: %s", strerror(errno));
    }
    snprintf(k->state, sizeof(k->state), "%s/state", k->mnt);
    snprintf(k->filler, sizeof(k->filler), "%s/filler", k->mnt);
    mkdir(k->state, 0700);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    struct disk *k = *state;
    int r = 0;
    unlink(k->filler);
    if (k->started && harness_finish(&k->p) < 0)
        r = -1;
    if (umount2(k->mnt, MNT_DETACH) < 0 || rmdir(k->mnt) < 0) {
        fprintf(stderr, "teardown: cannot remove %s: %s\n", k->mnt, strerror(errno));
        r = -1;
    }
    free(k);
    return r;
}

static void start(struct disk *k)
{
    assert_int_equal(harness_start_in(&k->p, k->state, NULL), 0);
    k->started = true;
}

/* Writes the filler until the tmpfs has no byte left. */
static void fill(struct disk *k)
{
    int fd = open(k->filler, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char buf[1 << 20];
    for (size_t chunk = sizeof(buf); chunk >= 512; chunk /= 8)
        while (write(fd, buf, chunk) == (ssize_t)chunk)
            ;
    assert_int_equal(errno, ENOSPC);
    close(fd);
}

static void free_space(struct disk *k)
{
    assert_int_equal(unlink(k->filler), 0);
}

static bool has_header(const struct client_response *r, const char *name)
{
    return r->headers && strcasestr(r->headers, name) != NULL;
}

static const char *error_code(cJSON *j)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    return cJSON_IsString(c) ? c->valuestring : "";
}

static const char *error_message(cJSON *j)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message");
    return cJSON_IsString(c) ? c->valuestring : "";
}

/* Async invocations of fn with a big payload until the store refuses one: each 202 is kept in
 * k->ids, and the refusal must be 503 store_unavailable, with Retry-After, naming the cause. */
static void exhaust_store(struct disk *k, const char *fn)
{
    char *body = malloc(PAD_BYTES + 64);
    int n = snprintf(body, 64, "{\"ms\": 10, \"pad\": \"");
    memset(body + n, 'x', PAD_BYTES);
    strcpy(body + n + PAD_BYTES, "\"}");
    const char *headers[] = {"Ignis-Invocation-Type: async", "Content-Type: application/json",
                             NULL};
    for (int i = 0; i < 200; i++) {
        struct client_response r;
        long status = harness_invoke(&k->p, fn, body, headers, &r);
        if (status == 202) {
            cJSON *j = harness_json(&r);
            assert_true(k->nids < MAX_IDS);
            snprintf(k->ids[k->nids++], sizeof(k->ids[0]), "%s",
                     cJSON_GetObjectItem(j, "id")->valuestring);
            cJSON_Delete(j);
            client_response_clear(&r);
            continue;
        }
        if (status != 503)
            fprintf(stderr, "async at a full disk: %ld %s\n", status, r.body);
        assert_int_equal(status, 503);
        cJSON *j = harness_json(&r);
        assert_string_equal(error_code(j), "store_unavailable");
        assert_non_null(strstr(error_message(j), "No space left on device"));
        assert_true(has_header(&r, "Retry-After:"));
        cJSON_Delete(j);
        client_response_clear(&r);
        free(body);
        return;
    }
    fail_msg("200 async invocations of %zu KiB were all accepted at a full disk", PAD_BYTES / 1024);
}

/* /healthz answers 200 with status `status`; /readyz 200 when ok, else 503 with Retry-After. */
static void expect_health(struct disk *k, const char *status)
{
    struct client_response r;
    assert_int_equal(harness_request(&k->p, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = harness_json(&r);
    const cJSON *s = cJSON_GetObjectItem(j, "status");
    if (!cJSON_IsString(s) || !streq(s->valuestring, status))
        fail_msg("/healthz: %s, expected status %s", r.body, status);
    if (streq(status, "degraded"))
        assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "message")));
    cJSON_Delete(j);
    client_response_clear(&r);
    assert_int_equal(harness_request(&k->p, "GET", "/readyz", NULL, NULL, 0, &r), 0);
    if (streq(status, "ok"))
        assert_int_equal(r.status, 200);
    else {
        assert_int_equal(r.status, 503);
        assert_true(has_header(&r, "Retry-After:"));
    }
    client_response_clear(&r);
}

/* Waits (20 s at most) until /healthz says ok again: the store's probe found space. */
static void wait_healthy(struct disk *k)
{
    for (int i = 0; i < 400; i++) {
        struct client_response r;
        assert_int_equal(harness_request(&k->p, "GET", "/healthz", NULL, NULL, 0, &r), 0);
        bool ok = r.status == 200 && strstr(r.body, "\"ok\"");
        client_response_clear(&r);
        if (ok) {
            expect_health(k, "ok");
            return;
        }
        usleep(50000);
    }
    fail_msg("/healthz did not recover within 20 s of space returning");
}

/* Every 202'd invocation ends succeeded, with one attempt. */
static void expect_all_succeeded(struct disk *k)
{
    for (size_t i = 0; i < k->nids; i++) {
        cJSON *j = harness_wait_invocation(&k->p, k->ids[i], "succeeded", 30);
        assert_int_equal(cJSON_GetObjectItem(j, "attempts")->valueint, 1);
        cJSON_Delete(j);
    }
}

/* Waits (30 s at most) until fn has nothing queued or running. */
static void wait_idle(struct disk *k, const char *fn)
{
    for (int i = 0; i < 600; i++) {
        if (harness_live_number(&k->p, fn, "queue_depth") == 0 &&
            harness_live_number(&k->p, fn, "in_flight") == 0)
            return;
        usleep(50000);
    }
    fail_msg("%s still has work after 30 s", fn);
}

static bool log_has(struct disk *k, const char *text)
{
    char *log = NULL;
    bool has = read_file(k->p.log_path, 64 << 20, &log, NULL) == 0 && strstr(log, text);
    free(log);
    return has;
}

/* A push whose bundle cannot be unpacked for want of space: 507 naming the cause, not
 * `500 internal "entry ./blob: Write failed"`; the same push works once space is back. */
static void test_push_at_full_disk(void **state)
{
    struct disk *k = *state;
    start(k);
    /* The bundle: hello-exec and 2 MiB that do not compress, built outside the tmpfs. */
    char dir[96], cmd[600];
    snprintf(dir, sizeof(dir), "%s/bigpush", harness_fixtures(&k->p));
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s && cp %s/runtime-images/examples/hello-exec/* %s && "
             "sed -i 's/\"hello-exec\"/\"bigpush\"/' %s/function.json && "
             "head -c 2097152 /dev/urandom > %s/blob && tar czf %s.tgz -C %s .",
             dir, getenv("IGNIS_SOURCE_DIR"), dir, dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    char tgz[128], *bundle = NULL;
    size_t len;
    snprintf(tgz, sizeof(tgz), "%s.tgz", dir);
    assert_int_equal(read_file(tgz, 16 << 20, &bundle, &len), 0);

    fill(k);
    struct client_response r;
    const char *headers[] = {"Content-Type: application/gzip", NULL};
    assert_int_equal(
        harness_request(&k->p, "PUT", "/v1/functions/bigpush", headers, bundle, len, &r), 0);
    if (r.status != 507)
        fprintf(stderr, "push at a full disk: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 507);
    cJSON *j = harness_json(&r);
    assert_string_equal(error_code(j), "insufficient_storage");
    assert_non_null(strstr(error_message(j), "No space left on device"));
    cJSON_Delete(j);
    client_response_clear(&r);
    /* A secret is written under the state dir too. */
    assert_int_equal(
        harness_request(&k->p, "PUT", "/v1/functions/bigpush/secrets/token", NULL, "s3cret", 6, &r),
        0);
    assert_int_equal(r.status, 507);
    client_response_clear(&r);
    /* And a deploy, whose bundles are unpacked under it: 507 too, naming the function. */
    char greetings[512], *out = NULL, *err = NULL;
    snprintf(greetings, sizeof(greetings), "%s/runtime-images/examples/greetings",
             getenv("IGNIS_SOURCE_DIR"));
    assert_int_not_equal(harness_ignis(&k->p, &out, &err, "deploy", greetings, NULL), 0);
    if (!err || !strstr(err, "HTTP 507") || !strstr(err, "No space left on device"))
        fail_msg("deploy at a full disk: %s", err ? err : "");
    free(out);
    free(err);
    expect_health(k, "degraded");

    free_space(k);
    assert_int_equal(
        harness_request(&k->p, "PUT", "/v1/functions/bigpush", headers, bundle, len, &r), 0);
    assert_int_equal(r.status, 201);
    client_response_clear(&r);
    assert_int_equal(harness_invoke(&k->p, "bigpush", "disk", NULL, NULL), 200);
    wait_healthy(k);
    free(bundle);
}

/* Whether the store lives on the state dir's disk, the one this test fills: SQLite's ignis.db.
 * A PostgreSQL store is the server's, elsewhere: a test of the store at a full disk says so and
 * checks nothing there. */
static bool store_on_disk(const char *test)
{
    if (!harness_on_postgresql())
        return true;
    fprintf(stderr, "# %s unchecked: the store is PostgreSQL, not on the filled disk\n", test);
    return false;
}

/* Async invocations accepted before and while the disk fills: the store refuses new ones with
 * 503 and Retry-After; those accepted complete while their records cannot be written, and must
 * still end succeeded (once) when space returns, and stay so across a restart. */
static void test_async_completion_at_full_disk(void **state)
{
    struct disk *k = *state;
    if (!store_on_disk(__func__))
        return;
    start(k);
    harness_push(&k->p, "sleep", "sleeper", "{\"max_concurrency\": 1}");
    /* Running and queued while the disk fills: they complete after it is full. */
    const char *headers[] = {"Ignis-Invocation-Type: async", "Content-Type: application/json",
                             NULL};
    for (int i = 0; i < 3; i++) {
        struct client_response r;
        assert_int_equal(harness_invoke(&k->p, "sleeper", "{\"ms\": 1500}", headers, &r), 202);
        cJSON *j = harness_json(&r);
        snprintf(k->ids[k->nids++], sizeof(k->ids[0]), "%s",
                 cJSON_GetObjectItem(j, "id")->valuestring);
        cJSON_Delete(j);
        client_response_clear(&r);
    }
    fill(k);
    exhaust_store(k, "sleeper");
    expect_health(k, "degraded");
    /* Everything ran; the records wait for space. The daemon keeps answering meanwhile. */
    wait_idle(k, "sleeper");
    assert_int_equal(harness_invoke(&k->p, "sleeper", "{\"ms\": 1}", NULL, NULL), 200);
    expect_health(k, "degraded");

    free_space(k);
    expect_all_succeeded(k);
    wait_healthy(k);

    /* Nothing runs again after a restart: every record is final in the store. */
    assert_int_equal(harness_stop(&k->p), 0);
    assert_int_equal(harness_restart(&k->p, NULL), 0);
    expect_all_succeeded(k);
    assert_false(log_has(k, "recovered queued invocations"));
}

/* A delete the store refuses: 507 naming the cause, and the function stays whole (listed and
 * invocable), then deletes once space is back. */
static void test_delete_at_full_disk(void **state)
{
    struct disk *k = *state;
    if (!store_on_disk(__func__))
        return;
    start(k);
    harness_push(&k->p, "hello-exec", "victim", NULL);
    harness_push(&k->p, "sleep", "pad", NULL);
    assert_int_equal(harness_invoke(&k->p, "victim", "one", NULL, NULL), 200);
    fill(k);
    exhaust_store(k, "pad");

    struct client_response r;
    assert_int_equal(harness_request(&k->p, "DELETE", "/v1/functions/victim", NULL, NULL, 0, &r),
                     0);
    if (r.status != 507)
        fprintf(stderr, "delete at a full disk: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 507);
    cJSON *j = harness_json(&r);
    assert_string_equal(error_code(j), "insufficient_storage");
    cJSON_Delete(j);
    client_response_clear(&r);
    /* Whole: listed, not deleting, and invocable. */
    j = harness_function(&k->p, "victim");
    const cJSON *st = cJSON_GetObjectItem(j, "state");
    assert_true(cJSON_IsString(st));
    assert_string_equal(st->valuestring, "active");
    cJSON_Delete(j);
    long status = harness_invoke(&k->p, "victim", "two", NULL, &r);
    if (status != 200)
        fprintf(stderr, "invoke after a refused delete: %ld %s\n", status, r.body);
    assert_int_equal(status, 200);
    client_response_clear(&r);
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&k->p, &out, &err, "ls", NULL), 0);
    assert_non_null(strstr(out, "victim"));
    free(out);
    free(err);

    free_space(k);
    wait_healthy(k);
    assert_int_equal(harness_request(&k->p, "DELETE", "/v1/functions/victim", NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
    assert_int_equal(harness_invoke(&k->p, "victim", "three", NULL, NULL), 404);
    expect_all_succeeded(k);
}

/* Function logs at a full disk: the invocation is answered, the daemon says why its logs are
 * lost, /healthz says degraded; once space is back, output reaches the logs again. The function
 * writes 256 KiB of output (its log cap) each time, so the log file must grow by whole pages:
 * a small record could still fit the page its file already has. */
static void test_logs_at_full_disk(void **state)
{
    struct disk *k = *state;
    start(k);
    harness_push_fixture(&k->p, "chatty", "talker", NULL);
    struct client_response r;
    assert_int_equal(harness_invoke(&k->p, "talker", "warm", NULL, &r), 200);
    client_response_clear(&r);
    fill(k);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(harness_invoke(&k->p, "talker", "full", NULL, &r), 200);
        assert_non_null(strstr(r.body, "done"));
        client_response_clear(&r);
    }
    expect_health(k, "degraded");
    bool said = false;
    for (int i = 0; i < 100 && !said; i++) {
        said = log_has(k, "writing function logs failed");
        usleep(50000);
    }
    assert_true(said);

    free_space(k);
    wait_healthy(k);
    assert_int_equal(harness_invoke(&k->p, "talker", "again", NULL, &r), 200);
    char path[160];
    char *hdr = strcasestr(r.headers, "Ignis-Invocation-Id: ");
    assert_non_null(hdr);
    char inv[64];
    snprintf(inv, sizeof(inv), "%.*s", (int)strcspn(hdr + 21, "\r\n"), hdr + 21);
    client_response_clear(&r);
    snprintf(path, sizeof(path), "/v1/functions/talker/logs?invocation=%s", inv);
    bool found = false;
    for (int i = 0; i < 100 && !found; i++) {
        assert_int_equal(harness_request(&k->p, "GET", path, NULL, NULL, 0, &r), 0);
        found = r.status == 200 && strstr(r.body, "REPORT");
        client_response_clear(&r);
        if (!found)
            usleep(50000);
    }
    assert_true(found);
}

/* A start on the full disk exits 1 saying so (not "disk I/O error"); freed, it starts. */
static void test_start_at_full_disk(void **state)
{
    struct disk *k = *state;
    start(k);
    harness_push(&k->p, "hello-exec", "survivor", NULL);
    assert_int_equal(harness_stop(&k->p), 0);
    fill(k);
    char *argv[] = {
        (char *)harness_ignisd(), "--state-dir", k->state, "--listen", "127.0.0.1:0", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_run(argv, &out, &err);
    char expected[200];
    snprintf(expected, sizeof(expected), "state dir %s: no space left on device", k->state);
    if (rc != 1 || !strstr(err, expected))
        fprintf(stderr, "start at a full disk: exit %d: %s\n", rc, err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, expected));
    assert_null(strstr(err, "disk I/O error"));
    free(out);
    free(err);

    free_space(k);
    assert_int_equal(harness_restart(&k->p, NULL), 0);
    assert_int_equal(harness_invoke(&k->p, "survivor", "back", NULL, NULL), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_at_full_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_completion_at_full_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_at_full_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs_at_full_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_at_full_disk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
