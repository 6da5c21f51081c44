/* Invocation ids, the backoff policy, and durable records: written through the journal into a
 * real store, read back, recovered after a "crash", found by idempotency key, purged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>
#include <time.h>

#include "groups.h"
#include "records/invocation.h"
#include "records/store-internal.h"

static char dir[64], path[128];

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-inv-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    return 0;
}

static int teardown(void **state)
{
    return rm_rf(dir);
}

static void test_ids(void **state)
{
    char a[INV_ID_LEN + 1], b[INV_ID_LEN + 1];
    inv_id_new(a);
    inv_id_new(b);
    assert_int_equal(strlen(a), INV_ID_LEN);
    assert_true(inv_id_valid(a));
    assert_string_not_equal(a, b);
    assert_false(inv_id_valid(""));
    assert_false(inv_id_valid("../../etc/passwd"));
    assert_false(inv_id_valid("0123456789ABCDEF0123456789abcdef")); /* upper case */
    assert_false(inv_id_valid("0123456789abcdef0123456789abcde"));  /* short */

    /* The first 12 digits are the wall clock's milliseconds, so a later id sorts after; the
     * random part differs between ids of the same millisecond (and across a pool refill). */
    uint64_t before_ms = wall_usec() / 1000;
    char ids[200][INV_ID_LEN + 1];
    for (int i = 0; i < 200; i++)
        inv_id_new(ids[i]);
    uint64_t after_ms = wall_usec() / 1000;
    for (int i = 0; i < 200; i++) {
        char head[13];
        memcpy(head, ids[i], 12);
        head[12] = '\0';
        uint64_t ms = strtoull(head, NULL, 16);
        assert_true(ms >= before_ms && ms <= after_ms);
        if (i > 0) {
            assert_true(strncmp(ids[i - 1], ids[i], 12) <= 0);
            assert_string_not_equal(ids[i - 1] + 12, ids[i] + 12);
        }
    }
    struct timespec pause = {.tv_nsec = 2 * 1000 * 1000};
    nanosleep(&pause, NULL);
    inv_id_new(b);
    assert_true(strcmp(ids[199], b) < 0);
}

static void test_backoff(void **state)
{
    /* Doubles from the base, capped, with the upper half random. */
    for (uint64_t rnd = 0; rnd < 1000; rnd += 37) {
        uint64_t d1 = inv_backoff_ms(1, 100, 10000, rnd);
        uint64_t d2 = inv_backoff_ms(2, 100, 10000, rnd);
        uint64_t d3 = inv_backoff_ms(3, 100, 10000, rnd);
        uint64_t d20 = inv_backoff_ms(20, 100, 10000, rnd);
        assert_in_range(d1, 50, 100);
        assert_in_range(d2, 100, 200);
        assert_in_range(d3, 200, 400);
        assert_in_range(d20, 5000, 10000);
    }
    assert_int_equal(inv_backoff_ms(1, 0, 100, 7), 0);
    assert_int_equal(inv_backoff_ms(1, 1, 100, 7), 1);
}

static void test_status_names(void **state)
{
    enum inv_status s;
    for (int i = INV_QUEUED; i <= INV_DEAD; i++) {
        assert_int_equal(inv_status_parse(inv_status_name((enum inv_status)i), &s), 0);
        assert_int_equal(s, i);
    }
    assert_int_equal(inv_status_parse("bogus", &s), -EINVAL);
    assert_false(inv_status_final(INV_QUEUED));
    assert_false(inv_status_final(INV_RUNNING));
    assert_true(inv_status_final(INV_DEAD));
}

static int pending_done;

static void on_done(struct loop *l, int result, const char *message, void *userdata)
{
    assert_true(result >= 0); /* inserts and finishes count their rows */
    if (--pending_done == 0)
        loop_quit(l);
}

static void make(struct inv_record *r, const char *function, const char *key, int64_t created)
{
    memset(r, 0, sizeof(*r));
    inv_id_new(r->id);
    r->function = (char *)function;
    r->version = 3;
    r->async = true;
    r->status = INV_QUEUED;
    r->payload = "{\"n\": 1}";
    r->payload_len = 8;
    r->content_type = "application/json";
    r->idempotency_key = (char *)key;
    r->max_retries = 2;
    r->created_us = created;
}

static int collect(struct inv_record *r, void *userdata)
{
    char(*ids)[INV_ID_LEN + 1] = userdata;
    for (int i = 0; i < 8; i++)
        if (!ids[i][0]) {
            strcpy(ids[i], r->id);
            break;
        }
    assert_non_null(r->payload);
    return 0;
}

static void test_records(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);

    struct inv_record a, b, c;
    make(&a, "fa", "key-1", 1000);
    make(&b, "fa", NULL, 2000);
    make(&c, "fb", "key-1", 3000);
    pending_done = 3;
    assert_int_equal(inv_store_insert(j, &a, 100000, NULL, on_done, NULL), 0);
    assert_int_equal(inv_store_insert(j, &b, 100000, NULL, on_done, NULL), 0);
    assert_int_equal(inv_store_insert(j, &c, 50, NULL, on_done, NULL), 0);
    loop_run(l);

    /* b runs and succeeds; a is running when the daemon "crashes". */
    pending_done = 2;
    assert_int_equal(inv_store_mark_running(j, a.id, 1, 5000, NULL, 0, on_done, NULL), 0);
    b.status = INV_SUCCEEDED;
    b.attempts = 1;
    b.started_us = 4000;
    b.finished_us = 4500;
    b.result = "{\"ok\":true}";
    b.result_len = 11;
    b.billed_ms = 1;
    assert_int_equal(inv_store_finish(j, &b, 100000, NULL, NULL, on_done, NULL), 0);
    loop_run(l);

    struct inv_record got;
    assert_int_equal(inv_store_get(s, b.id, &got), 0);
    assert_int_equal(got.status, INV_SUCCEEDED);
    assert_null(got.payload); /* dropped once final */
    assert_int_equal(got.result_len, 11);
    cJSON *json = inv_record_to_json(&got);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(json, "result"), "ok")));
    assert_string_equal(cJSON_GetObjectItem(json, "status")->valuestring, "succeeded");
    assert_int_equal(cJSON_GetObjectItem(json, "billed_ms")->valueint, 1);
    cJSON_Delete(json);
    inv_record_clear(&got);
    assert_int_equal(inv_store_get(s, "00000000000000000000000000000000", &got), -ENOENT);

    /* Recovery: a (running) and c (queued) come back, oldest first; b does not. */
    char ids[8][INV_ID_LEN + 1] = {};
    assert_int_equal(inv_store_load_pending(s, collect, ids), 0);
    assert_string_equal(ids[0], a.id);
    assert_string_equal(ids[1], c.id);
    assert_int_equal(ids[2][0], '\0');

    /* Idempotency is per function and within the window. */
    char id[INV_ID_LEN + 1];
    assert_int_equal(inv_store_find_idempotent(s, "fa", "key-1", 0, id), 0);
    assert_string_equal(id, a.id);
    assert_int_equal(inv_store_find_idempotent(s, "fb", "key-1", 0, id), 0);
    assert_string_equal(id, c.id);
    assert_int_equal(inv_store_find_idempotent(s, "fa", "key-1", 1001, id), -ENOENT);
    assert_int_equal(inv_store_find_idempotent(s, "fa", "key-2", 0, id), -ENOENT);

    /* Purge removes only final records past their retention. */
    c.status = INV_DEAD;
    c.error_type = "Timeout";
    c.error_message = "timed out";
    pending_done = 2;
    assert_int_equal(inv_store_finish(j, &c, 50, NULL, NULL, on_done, NULL), 0);
    assert_int_equal(inv_store_purge(j, 60, on_done, NULL), 0);
    loop_run(l);
    assert_int_equal(inv_store_get(s, c.id, &got), -ENOENT);
    assert_int_equal(inv_store_get(s, a.id, &got), 0);
    inv_record_clear(&got);

    journal_free(j);
    loop_free(l);
    store_free(s);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static cJSON *stored_json(struct store *s, const char *id)
{
    struct inv_record got;
    assert_int_equal(inv_store_get(s, id, &got), 0);
    cJSON *json = inv_record_to_json(&got);
    inv_record_clear(&got);
    return json;
}

/* What the last attempt used: written as given, kept when an outcome has none, shown in ms with
 * µs precision, and null (not 0) when unknown. */
static void test_record_usage(void **state)
{
    struct store *s;
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);

    /* An async invocation is stored before it runs: no figures yet. Its first attempt fails and
     * is retried (a cold one), the second succeeds warm. */
    struct inv_record a, sync;
    make(&a, "fa", NULL, 1000);
    pending_done = 1;
    assert_int_equal(inv_store_insert(j, &a, 100000, NULL, on_done, NULL), 0);
    loop_run(l);
    cJSON *json = stored_json(s, a.id);
    assert_null(cJSON_GetObjectItem(json, "cpu_ms")); /* not finished: no figures at all */
    cJSON_Delete(json);

    a.status = INV_QUEUED;
    a.attempts = 1;
    a.started_us = 2000;
    a.finished_us = 3000;
    a.next_attempt_us = 4000;
    a.error_type = "Runtime.ExitError";
    a.measured = true;
    a.cpu_us = 1234;
    a.mem_peak_bytes = 9003008;
    a.init_us = 80001;
    pending_done = 1;
    assert_int_equal(inv_store_finish(j, &a, 100000, NULL, NULL, on_done, NULL), 0);
    loop_run(l);
    json = stored_json(s, a.id);
    assert_true(num(json, "cpu_ms") == 1.234);
    assert_true(num(json, "peak_memory_bytes") == 9003008);
    assert_true(num(json, "init_ms") == 80.001);
    cJSON_Delete(json);

    a.status = INV_SUCCEEDED;
    a.attempts = 2;
    a.next_attempt_us = 0;
    a.error_type = NULL;
    a.cpu_us = 500;
    a.mem_peak_bytes = 4096;
    a.init_us = 0;
    pending_done = 1;
    assert_int_equal(inv_store_finish(j, &a, 100000, NULL, NULL, on_done, NULL), 0);
    loop_run(l);
    json = stored_json(s, a.id);
    assert_true(num(json, "cpu_ms") == 0.5);
    assert_true(num(json, "peak_memory_bytes") == 4096);
    assert_true(num(json, "init_ms") == 0); /* warm: no init was paid */
    cJSON_Delete(json);

    /* An outcome no attempt ran for (the function deleted while it waited) keeps the last
     * attempt's figures. */
    a.status = INV_DEAD;
    a.measured = false;
    a.cpu_us = a.mem_peak_bytes = a.init_us = 0;
    pending_done = 1;
    assert_int_equal(inv_store_finish(j, &a, 100000, NULL, NULL, on_done, NULL), 0);
    loop_run(l);
    json = stored_json(s, a.id);
    assert_true(num(json, "cpu_ms") == 0.5);
    assert_true(num(json, "peak_memory_bytes") == 4096);
    cJSON_Delete(json);

    /* A sync invocation is recorded once, final, with its figures; one without any (as records
     * written before ignisd kept them) shows null. */
    make(&sync, "fa", NULL, 5000);
    sync.async = false;
    sync.status = INV_SUCCEEDED;
    sync.payload = NULL;
    sync.attempts = 1;
    sync.started_us = 5000;
    sync.finished_us = 6000;
    sync.measured = true;
    sync.cpu_us = 777;
    sync.mem_peak_bytes = 1 << 20;
    sync.init_us = 120500;
    struct inv_record old = sync;
    inv_id_new(old.id);
    old.measured = false;
    pending_done = 2;
    assert_int_equal(inv_store_insert(j, &sync, 100000, NULL, on_done, NULL), 0);
    assert_int_equal(inv_store_insert(j, &old, 100000, NULL, on_done, NULL), 0);
    loop_run(l);
    json = stored_json(s, sync.id);
    assert_true(num(json, "cpu_ms") == 0.777);
    assert_true(num(json, "peak_memory_bytes") == 1 << 20);
    assert_true(num(json, "init_ms") == 120.5);
    cJSON_Delete(json);
    json = stored_json(s, old.id);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(json, "cpu_ms")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(json, "peak_memory_bytes")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(json, "init_ms")));
    assert_true(num(json, "billed_ms") == 0); /* the rest of the record is as it was */
    cJSON_Delete(json);

    journal_free(j);
    loop_free(l);
    store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),          cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_status_names), cmocka_unit_test(test_records),
        cmocka_unit_test(test_record_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
