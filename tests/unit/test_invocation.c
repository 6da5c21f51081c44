/* Invocation ids, the backoff policy, and durable records: written through the journal into a
 * real store, read back, recovered after a "crash", found by idempotency key, purged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <string.h>

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
    assert_int_equal(result, 0);
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
    assert_int_equal(inv_store_insert(j, &a, 100000, on_done, NULL), 0);
    assert_int_equal(inv_store_insert(j, &b, 100000, on_done, NULL), 0);
    assert_int_equal(inv_store_insert(j, &c, 50, on_done, NULL), 0);
    loop_run(l);

    /* b runs and succeeds; a is running when the daemon "crashes". */
    pending_done = 2;
    assert_int_equal(inv_store_mark_running(j, a.id, 1, 5000, on_done, NULL), 0);
    b.status = INV_SUCCEEDED;
    b.attempts = 1;
    b.started_us = 4000;
    b.finished_us = 4500;
    b.result = "{\"ok\":true}";
    b.result_len = 11;
    b.billed_ms = 1;
    assert_int_equal(inv_store_finish(j, &b, 100000, on_done, NULL), 0);
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
    assert_int_equal(inv_store_finish(j, &c, 50, on_done, NULL), 0);
    assert_int_equal(inv_store_purge(j, 60, on_done, NULL), 0);
    loop_run(l);
    assert_int_equal(inv_store_get(s, c.id, &got), -ENOENT);
    assert_int_equal(inv_store_get(s, a.id, &got), 0);
    inv_record_clear(&got);

    journal_free(j);
    loop_free(l);
    store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_records),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
