/* Retention (retention.h): one timer runs every registered purge, first when the loop starts;
 * and the audit log's purge, on a real store, deletes only what is older than the cutoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "records/audit_store.h"
#include "records/journal.h"
#include "records/retention.h"
#include "records/store-internal.h"
#include "base/util.h"

struct calls {
    struct loop *loop;
    int n[2];
    int64_t now[2];
};

static void purge_a(void *userdata, int64_t now_us)
{
    struct calls *c = userdata;
    c->n[0]++;
    c->now[0] = now_us;
}

static void purge_b(void *userdata, int64_t now_us)
{
    struct calls *c = userdata;
    c->n[1]++;
    c->now[1] = now_us;
    loop_quit(c->loop);
}

static void test_every_purge_runs_when_the_loop_starts(void **state)
{
    struct calls c = {};
    struct retention *r;
    assert_int_equal(loop_new(&c.loop), 0);
    assert_int_equal(retention_new(c.loop, &r), 0);
    assert_int_equal(retention_add(r, purge_a, &c), 0);
    assert_int_equal(retention_add(r, purge_b, &c), 0);
    /* Nothing runs before the loop does: owners register after retention_new. */
    assert_int_equal(c.n[0] + c.n[1], 0);
    int64_t before = (int64_t)wall_usec();
    assert_int_equal(loop_run(c.loop), 0);
    assert_int_equal(c.n[0], 1);
    assert_int_equal(c.n[1], 1);
    assert_true(c.now[0] >= before && c.now[0] == c.now[1]);
    retention_run(r);
    assert_int_equal(c.n[0], 2);
    assert_int_equal(c.n[1], 2);
    retention_free(r);
    retention_free(NULL);
    loop_free(c.loop);
}

static void test_audit_purge_keeps_what_is_newer(void **state)
{
    char dir[] = "/tmp/ignis-retention.XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    struct store *s;
    struct ig_error err = {};
    assert_int_equal(store_open(path, &s, &err), 0);
    for (int64_t t = 1000; t <= 5000; t += 1000) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO audit (time_us, action, path, peer, status) "
                 "VALUES (%lld, 'PUT /v1/functions/{}', '/v1/functions/f', '127.0.0.1', 201)",
                 (long long)t);
        assert_int_equal(db_exec(s->db, sql, NULL, 0, NULL), 1);
    }
    struct loop *l;
    struct journal *j;
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);
    assert_int_equal(audit_store_purge(j, 3000), 0);
    journal_free(j); /* commits what is queued */
    loop_free(l);
    struct db_rows *st;
    assert_int_equal(
        db_query(s->db, "SELECT min(time_us), count(*) FROM audit", NULL, 0, &st, NULL), 0);
    assert_int_equal(db_next(st), 1);
    assert_int_equal(db_int(st, 0), 3000);
    assert_int_equal(db_int(st, 1), 3);
    db_rows_free(st);
    store_free(s);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_purge_runs_when_the_loop_starts),
        cmocka_unit_test(test_audit_purge_keeps_what_is_newer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
