/* The store goes away and comes back (issue #16): one ignisd on a PostgreSQL server of this test's
 * own (pgserver.h), under load from three threads, each with its own client (async invocations
 * with idempotency keys from one, sync invocations from two), when the server is stopped as
 * `pg_ctl stop -m immediate` does, then started again. While it is away the daemon lives and
 * answers: what needs the store is 503 store_unavailable with Retry-After (async invocations,
 * idempotency keys, invocation records, /readyz, a new token, an alias, a push: the CLI says
 * so), sync invocations of a function it knows still run, and /metrics says ignis_store_up 0.
 * Once the server is back the daemon recovers by itself, with no restart: ignis_store_up 1 and one
 * disconnect counted, one log line each way, every async invocation that got a 202 succeeds (those
 * accepted as the store went away included), a replayed key returns the original id, and every
 * async invocation and every sync one that ran while the store was away has its record and its one
 * row in the usage ledger. Stopped while the store is away, it gives up what waits and exits 0. */
#include "harness.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgserver.h"
#include "records/db.h"

/* One reply a loader got. */
struct reply {
    long status;
    bool retry_after, store_unavailable;
    char id[64];  /* 202 and 200: the invocation's id */
    char key[32]; /* async: the Idempotency-Key sent */
};

enum { MAX_REPLIES = 8192 };

/* A thread sending invocations one after another on its own client until told to stop. */
struct loader {
    struct ignisd_proc *p;
    bool async;
    int index;
    atomic_bool *stop;
    pthread_t thread;
    struct reply *replies;
    atomic_size_t n;
};

static void one_request(struct loader *l, struct client *c, struct reply *out)
{
    char keyh[64];
    snprintf(out->key, sizeof(out->key), "away-%d-%zu", l->index, atomic_load(&l->n));
    snprintf(keyh, sizeof(keyh), "Idempotency-Key: %s", out->key);
    const char *headers[] = {l->async ? "Ignis-Invocation-Type: async"
                                      : "Ignis-Invocation-Type: sync",
                             l->async ? keyh : NULL, NULL};
    struct client_response r = {};
    struct ig_error err = {};
    if (client_request(c, "POST", "/v1/functions/away/invoke", headers, "{}", 2, &r, &err) < 0) {
        out->status = -1; /* no answer within the client's timeout: a hang */
        return;
    }
    char buf[64];
    out->status = r.status;
    out->retry_after = client_response_header(&r, "Retry-After", buf, sizeof(buf)) != NULL;
    out->store_unavailable = r.body && strstr(r.body, "\"store_unavailable\"");
    if (client_response_header(&r, "Ignis-Invocation-Id", buf, sizeof(buf)))
        snprintf(out->id, sizeof(out->id), "%s", buf);
    client_response_clear(&r);
}

static void *load(void *arg)
{
    struct loader *l = arg;
    struct client *c;
    if (client_new(l->p->url, &c) < 0)
        return NULL;
    /* Far past the outage: an async invocation accepted as the store went away waits for it. */
    client_set_timeout(c, 120 * 1000);
    while (!atomic_load(l->stop) && atomic_load(&l->n) < MAX_REPLIES) {
        size_t i = atomic_load(&l->n);
        one_request(l, c, &l->replies[i]);
        atomic_store(&l->n, i + 1);
        usleep(10 * 1000);
    }
    client_free(c);
    return NULL;
}

/* Replies of l with this status from index from on. */
static size_t count_status(struct loader *l, size_t from, long status)
{
    size_t n = 0, end = atomic_load(&l->n);
    for (size_t i = from; i < end; i++)
        n += l->replies[i].status == status;
    return n;
}

/* Waits until each loader has n replies of this status past its mark; fails the test if the
 * daemon died meanwhile or (a bound far past need) the replies never came. */
static void wait_replies(struct ignisd_proc *p, struct loader *l, size_t nl, const size_t *mark,
                         long status, size_t n)
{
    for (int tries = 0;; tries++) {
        bool all = true;
        for (size_t i = 0; i < nl; i++)
            all = all && count_status(&l[i], mark[i], status) >= n;
        if (all)
            return;
        assert_int_equal(kill(p->pid, 0), 0);
        if (tries > 6000) {
            harness_print_log(p);
            fail_msg("waited 60 s for %zu replies %ld from each loader", n, status);
        }
        usleep(10 * 1000);
    }
}

/* A request that needs the store, while it is away: 503 store_unavailable with Retry-After. */
static void expect_away(struct ignisd_proc *p, const char *method, const char *path,
                        const char *const *headers, const char *body)
{
    struct client_response r;
    assert_int_equal(harness_request(p, method, path, headers, body, body ? strlen(body) : 0, &r),
                     0);
    char buf[16];
    if (r.status != 503 || !strstr(r.body, "\"store_unavailable\"") ||
        !client_response_header(&r, "Retry-After", buf, sizeof(buf)))
        fail_msg("%s %s while the store is away: %ld %s", method, path, r.status, r.body);
    client_response_clear(&r);
}

static int64_t ledger_rows(struct db *db, const char *id)
{
    _cleanup_db_rows_ struct db_rows *rows = NULL;
    struct ig_error err = {};
    const struct db_value v[] = {DV_S(id)};
    if (db_query(db, "SELECT count(*) FROM usage WHERE id = $1", v, 1, &rows, &err) < 0)
        fail_msg("reading the ledger: %s", err.message);
    assert_int_equal(db_next(rows), 1);
    return db_int(rows, 0);
}

/* An ignisd on a new database of the shared server, with the function "away" (manifest: NULL or
 * the manifest's fields). */
static void start_away(struct ignisd_proc *p, char **conninfo, const char *manifest)
{
    assert_int_equal(pgserver_new_database(pgserver_shared, conninfo), 0);
    const char *args[] = {"--store", *conninfo, NULL};
    assert_int_equal(harness_start(p, args), 0);
    harness_push(p, "hello-exec", "away", manifest);
}

/* A sync invocation of "away": answered 200, whether the store is there or not. */
static void invoke_away(struct ignisd_proc *p)
{
    const char *sync[] = {"Ignis-Invocation-Type: sync", NULL};
    assert_int_equal(harness_invoke(p, "away", "{}", sync, NULL), 200);
}

/* start_away, one invocation run, then the server stopped under the daemon. */
static void start_then_lose_store(struct ignisd_proc *p, char **conninfo)
{
    start_away(p, conninfo, NULL);
    invoke_away(p);
    assert_int_equal(pgserver_stop_immediate(pgserver_shared), 0);
}

static void test_store_away_and_back(void **state)
{
    char *conninfo;
    struct ignisd_proc p;
    start_away(&p, &conninfo, "{\"max_scale\": 4}");
    assert_true(harness_metric(&p, "ignis_store_up") == 1);
    assert_true(harness_metric(&p, "ignis_store_disconnects_total") == 0);

    atomic_bool stop = false;
    struct loader l[3];
    for (int i = 0; i < 3; i++) {
        l[i] = (struct loader){.p = &p, .async = i == 0, .index = i, .stop = &stop};
        l[i].replies = calloc(MAX_REPLIES, sizeof(struct reply));
        assert_non_null(l[i].replies);
        assert_int_equal(pthread_create(&l[i].thread, NULL, load, &l[i]), 0);
    }
    size_t mark[3] = {};
    /* Under load: invocations of both kinds answered. */
    wait_replies(&p, l, 1, mark, 202, 20);
    wait_replies(&p, l + 1, 2, mark + 1, 200, 20);

    assert_int_equal(pgserver_stop_immediate(pgserver_shared), 0);
    for (int i = 0; i < 3; i++)
        mark[i] = atomic_load(&l[i].n);
    /* Async invocations are refused while the store is away, promptly; sync ones go on. From
     * the first refusal, the daemon knows: a sync invocation asked for after it (the loader's
     * next but one reply on) ran while the server was down, and what it wrote waited for the
     * server to come back. Those before may have been committed by the server just before its
     * crash and lost with it (crash-safe rows commit with synchronous_commit off: as a power
     * loss may take SQLite's last, docs/operations.md): the ledger is not checked for them. */
    wait_replies(&p, l, 1, mark, 503, 1);
    size_t away_from[3] = {0, atomic_load(&l[1].n) + 1, atomic_load(&l[2].n) + 1};
    /* Away for long enough that the connections' backoff reaches its longest step (2 s). */
    wait_replies(&p, l, 1, mark, 503, 200);
    wait_replies(&p, l + 1, 2, away_from + 1, 200, 20);
    assert_true(harness_metric(&p, "ignis_store_up") == 0);
    const char *async_key[] = {"Ignis-Invocation-Type: async", "Idempotency-Key: away-0-0", NULL};
    expect_away(&p, "POST", "/v1/functions/away/invoke", async_key, NULL);
    char path[128];
    snprintf(path, sizeof(path), "/v1/invocations/%s", l[1].replies[0].id);
    expect_away(&p, "GET", path, NULL, NULL);
    expect_away(&p, "GET", "/readyz", NULL, NULL);
    /* A new token, an alias and a push need the store: refused the same way, the CLI saying
     * so. */
    const char *token = "{\"role\": \"developer\", \"name\": \"away\"}",
               *alias = "{\"version\": 1}";
    expect_away(&p, "POST", "/v1/tokens", NULL, token);
    expect_away(&p, "PUT", "/v1/functions/away/aliases/live", NULL, alias);
    char dir[512], *out = NULL, *errout = NULL;
    snprintf(dir, sizeof(dir), "%s/runtime-images/examples/hello-exec", getenv("IGNIS_SOURCE_DIR"));
    int rc = harness_ignis(&p, &out, &errout, "push", dir, NULL);
    if (rc == 0 || !strstr(errout, "HTTP 503"))
        fail_msg("ignis push while the store is away: exit %d: %s%s", rc, out, errout);
    free(out);
    free(errout);
    assert_int_equal(kill(p.pid, 0), 0);

    assert_int_equal(pgserver_start(pgserver_shared), 0);
    for (int i = 0; i < 3; i++)
        mark[i] = atomic_load(&l[i].n);
    /* Back by itself: async invocations accepted again. */
    wait_replies(&p, l, 1, mark, 202, 10);
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(l[i].thread, NULL);
    assert_true(harness_metric(&p, "ignis_store_up") == 1);
    assert_true(harness_metric(&p, "ignis_store_disconnects_total") == 1);
    assert_int_equal(harness_log_count(&p, "msg=\"the store is unreachable\""), 1);
    assert_int_equal(harness_log_count(&p, "msg=\"the store is reachable again\" away_s="), 1);

    /* Every reply was an answer: 202 or 503 store_unavailable with Retry-After for async, 200
     * for sync (or the same 503, should one have needed the store). */
    size_t accepted = 0, refused = 0, ran = 0;
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < atomic_load(&l[i].n); k++) {
            const struct reply *r = &l[i].replies[k];
            if (r->status == 503 && r->store_unavailable && r->retry_after) {
                refused++;
                continue;
            }
            if (r->status != (l[i].async ? 202 : 200)) {
                harness_print_log(&p);
                fail_msg("loader %d reply %zu: %ld", i, k, r->status);
            }
            assert_true(r->id[0] != '\0');
            accepted += l[i].async;
            ran += !l[i].async;
        }
    fprintf(stderr, "async accepted %zu, sync ran %zu, refused %zu\n", accepted, ran, refused);

    /* Every 202 succeeds; every async invocation, and every sync one that ran while the store
     * was away, has its record and one ledger row. */
    struct db *db;
    struct ig_error err = {};
    if (db_open(conninfo, DB_READONLY, &db, &err) < 0)
        fail_msg("%s", err.message);
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < atomic_load(&l[i].n); k++) {
            const struct reply *r = &l[i].replies[k];
            if (r->status != (l[i].async ? 202 : 200) || k < away_from[i])
                continue;
            /* The read settles what the daemon's journal holds (sync records, usage). */
            cJSON *j = harness_wait_invocation(&p, r->id, "succeeded", 60);
            cJSON_Delete(j);
            if (ledger_rows(db, r->id) != 1)
                fail_msg("invocation %s (loader %d) has %lld ledger rows", r->id, i,
                         (long long)ledger_rows(db, r->id));
        }
    db_close(db);

    /* A key accepted before the store went away, and one accepted after: the original id. */
    size_t n0 = atomic_load(&l[0].n);
    const struct reply *first = NULL, *last = NULL;
    for (size_t k = 0; k < n0; k++)
        if (l[0].replies[k].status == 202) {
            first = first ? first : &l[0].replies[k];
            last = &l[0].replies[k];
        }
    assert_non_null(first);
    const struct reply *replayed[] = {first, last};
    for (size_t k = 0; k < ARRAY_SIZE(replayed); k++) {
        const struct reply *r = replayed[k];
        char keyh[64];
        snprintf(keyh, sizeof(keyh), "Idempotency-Key: %s", r->key);
        const char *headers[] = {"Ignis-Invocation-Type: async", keyh, NULL};
        struct client_response resp;
        assert_int_equal(harness_invoke(&p, "away", "{}", headers, &resp), 202);
        cJSON *j = harness_json(&resp);
        assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, r->id);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "duplicate")));
        cJSON_Delete(j);
        client_response_clear(&resp);
    }

    for (int i = 0; i < 3; i++)
        free(l[i].replies);
    free(conninfo);
    assert_int_equal(harness_finish(&p), 0);
}

/* Stopped while the store is away, with a sync invocation's record waiting for it: ignisd waits its
 * grace period and a second more for the store, then gives what waits up, says so, and exits 0
 * (within harness_stop's 15 s: no hang); with the server back it starts again on the same
 * database. */
static void test_stop_while_away(void **state)
{
    char *conninfo;
    struct ignisd_proc p;
    start_then_lose_store(&p, &conninfo);
    invoke_away(&p);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(
        harness_log_count(&p, "msg=\"statements not written: the store stayed unreachable"), 1);

    assert_int_equal(pgserver_start(pgserver_shared), 0);
    const char *args[] = {"--store", conninfo, NULL};
    assert_int_equal(harness_restart(&p, args), 0);
    invoke_away(&p);
    free(conninfo);
    assert_int_equal(harness_finish(&p), 0);
}

/* A drain of this host asked through its API while the store is away: this host is known
 * without the store, so the drain is taken (202) and the daemon stops as on SIGTERM, exiting 0. */
static void test_drain_while_away(void **state)
{
    char *conninfo, path[4200], *id = NULL;
    struct ignisd_proc p;
    start_then_lose_store(&p, &conninfo);
    snprintf(path, sizeof(path), "%s/host-id", p.state_dir);
    assert_int_equal(read_file(path, 256, &id, NULL), 0);
    id[strcspn(id, "\n")] = '\0';
    snprintf(path, sizeof(path), "/v1/hosts/%s/drain", id);
    struct client_response r;
    assert_int_equal(harness_request(&p, "POST", path, NULL, NULL, 0, &r), 0);
    if (r.status != 202)
        fail_msg("drain while the store is away: %ld %s", r.status, r.body);
    client_response_clear(&r);
    assert_int_equal(harness_wait_exit(&p, 30), 0);
    assert_int_equal(pgserver_start(pgserver_shared), 0);
    assert_int_equal(harness_cleanup(&p), 0);
    free(id);
    free(conninfo);
}

/* The request call makes while the store goes away under it: a row it writes waits (behind one
 * of the same key that this test's own transaction inserts, holder_sql, and holds), and the
 * server stops. The request is answered while the store stays away: 503 store_unavailable with
 * Retry-After. */
static void cut_by_loss(struct ignisd_proc *p, const char *conninfo, const char *holder_sql,
                        struct harness_call *call, const char *path, const char *const *headers,
                        const char *body)
{
    struct db *holder;
    struct ig_error err = {};
    if (db_open(conninfo, DB_WRITER, &holder, &err) < 0 || db_begin(holder, &err) < 0 ||
        db_exec(holder, holder_sql, NULL, 0, &err) < 0)
        fail_msg("holding the key: %s", err.message);
    harness_call_start_with(call, p, "POST", path, headers, body, 30 * 1000);
    int tries = 0;
    while (pgserver_query_int(conninfo, "SELECT count(*) FROM pg_stat_activity "
                                        "WHERE wait_event_type = 'Lock'") < 1) {
        assert_true(++tries < 3000);
        usleep(10 * 1000);
    }
    assert_int_equal(pgserver_stop_immediate(pgserver_shared), 0);
    harness_call_join(call);
    db_close(holder);
    char buf[16];
    if (call->status != 503 || !strstr(call->reply, "\"store_unavailable\"") ||
        !client_response_header(&call->response, "Retry-After", buf, sizeof(buf))) {
        harness_print_log(p);
        fail_msg("POST %s cut by the store's loss: %ld %s", path, call->status,
                 call->reply ? call->reply : "");
    }
}

/* The event's (source, id) accepted: 202 once what was cut is written (until then the same
 * event is refused as in progress). Whether it was a duplicate. */
static bool event_accepted(struct ignisd_proc *p, const char *event)
{
    const char *ce[] = {"Content-Type: application/cloudevents+json", NULL};
    for (int tries = 0;; tries++) {
        struct client_response r;
        assert_int_equal(harness_request(p, "POST", "/v1/events", ce, event, strlen(event), &r), 0);
        if (r.status == 202) {
            cJSON *j = harness_json(&r);
            bool dup = cJSON_IsTrue(cJSON_GetObjectItem(j, "duplicate"));
            cJSON_Delete(j);
            client_response_clear(&r);
            return dup;
        }
        if (tries > 600)
            fail_msg("the event is not accepted again: %ld %s", r.status, r.body);
        client_response_clear(&r);
        usleep(100 * 1000);
    }
}

/* The store goes away with an async invocation's row, then an event's, on its way (cut_by_loss):
 * each client is answered 503 while the store stays away, the invocation's with its id, not left
 * waiting for the store to come back. Once it is back the rows are written after all (the cut
 * batch runs again; the holding transaction died with the server): the invocation runs and its
 * key names it; the event, sent again, is a duplicate. */
static void test_accept_cut_by_loss(void **state)
{
    char *conninfo;
    struct ignisd_proc p;
    start_away(&p, &conninfo, NULL);

    struct harness_call call;
    const char *async[] = {"Ignis-Invocation-Type: async", "Idempotency-Key: held", NULL};
    cut_by_loss(&p, conninfo,
                "INSERT INTO invocations (id, function, version, async, status, idempotency_key, "
                "max_retries, created_us, expires_us) "
                "VALUES ('held', 'away', 1, 1, 'succeeded', 'held', 0, 0, 0)",
                &call, "/v1/functions/away/invoke", async, "{}");
    char id[64];
    assert_non_null(client_response_header(&call.response, "Ignis-Invocation-Id", id, sizeof(id)));
    harness_call_clear(&call);
    assert_int_equal(pgserver_start(pgserver_shared), 0);
    cJSON_Delete(harness_wait_invocation(&p, id, "succeeded", 60));
    char again[64];
    bool duplicate;
    harness_invoke_async(&p, "away", "{}", "held", again, &duplicate);
    assert_string_equal(again, id);
    assert_true(duplicate);

    const char *event = "{\"specversion\": \"1.0\", \"id\": \"held-1\", \"source\": "
                        "\"/test/held\", \"type\": \"test.held\", \"data\": {}}";
    const char *ce[] = {"Content-Type: application/cloudevents+json", NULL};
    cut_by_loss(
        &p, conninfo,
        "INSERT INTO event_ids (source, id, accepted_us) VALUES ('/test/held', 'held-1', 0)", &call,
        "/v1/events", ce, event);
    harness_call_clear(&call);
    assert_int_equal(pgserver_start(pgserver_shared), 0);
    assert_true(event_accepted(&p, event));
    free(conninfo);
    assert_int_equal(harness_finish(&p), 0);
}

/* A delete while the store is away: 503 store_unavailable, and the function is still there,
 * running, rather than gone from this host and kept in the store; once the server is back the
 * delete goes through, and a restart does not bring the function back. */
static void test_delete_while_away(void **state)
{
    char *conninfo;
    struct ignisd_proc p;
    start_then_lose_store(&p, &conninfo);
    expect_away(&p, "DELETE", "/v1/functions/away", NULL, NULL);
    invoke_away(&p);

    assert_int_equal(pgserver_start(pgserver_shared), 0);
    struct client_response r;
    for (int tries = 0;; tries++) {
        assert_int_equal(harness_request(&p, "DELETE", "/v1/functions/away", NULL, NULL, 0, &r), 0);
        if (r.status == 200)
            break;
        if (tries > 300 || r.status != 503)
            fail_msg("DELETE once the store is back: %ld %s", r.status, r.body);
        client_response_clear(&r);
        usleep(100 * 1000);
    }
    client_response_clear(&r);
    assert_int_equal(harness_stop(&p), 0);
    const char *args[] = {"--store", conninfo, NULL};
    assert_int_equal(harness_restart(&p, args), 0);
    assert_int_equal(harness_request(&p, "GET", "/v1/functions/away", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    client_response_clear(&r);
    free(conninfo);
    assert_int_equal(harness_finish(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_away_and_back), cmocka_unit_test(test_stop_while_away),
        cmocka_unit_test(test_drain_while_away),    cmocka_unit_test(test_accept_cut_by_loss),
        cmocka_unit_test(test_delete_while_away),
    };
    return cmocka_run_group_tests(tests, pgserver_group_setup, pgserver_group_teardown);
}
