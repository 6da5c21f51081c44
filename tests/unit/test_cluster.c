/* The cluster's view of the hosts (dispatch/cluster.h) on a store of the test's own (SQLite: the
 * hosts and warm_capacity tables are the same on both engines): three hosts registered, one of
 * them warm for a function; a sync invocation this host has no container of goes to that peer,
 * not after a forward found it cold; a count is split over the three live hosts; a gone host is
 * forgotten with its warm rows, a live one not. A host without
 * any warm function is read too (its list empty: sorting it once passed qsort a NULL, which
 * UBSan refuses, as the sanitizer tier runs this). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dispatch/cluster.h"
#include "records/hosts_store.h"
#include "records/store.h"

/* warm[0]: host-b's rows, warm[1]: host-x's. */
static int count_warm(void *userdata, const char *host_id, const char *function)
{
    int *warm = userdata;
    warm[0] += streq(host_id, "host-b");
    warm[1] += streq(host_id, "host-x");
    return 0;
}

static void test_view_places_and_splits(void **state)
{
    char dir[] = "/tmp/ignis-cluster-test.XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    struct ig_error err = {};
    struct store *s;
    struct loop *l;
    struct journal *j;
    assert_int_equal(store_open(path, &s, &err), 0);
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(journal_new(l, path, &j, &err), 0);

    int64_t now = (int64_t)wall_usec();
    static const char *const ids[] = {"host-a", "host-b", "host-c"};
    static const char *const urls[] = {"http://127.0.0.1:1", "http://127.0.0.1:2",
                                       "http://127.0.0.1:3"};
    for (size_t i = 0; i < 3; i++) {
        const struct host_row h = {.host_id = ids[i],
                                   .advertise = urls[i],
                                   .version = "0.1.0",
                                   .started_us = now,
                                   .heartbeat_us = now,
                                   .figures = {.memory_budget = 1 << 30}};
        assert_int_equal(hosts_store_register(s, &h, &err), 0);
    }
    assert_int_equal(hosts_store_warm(j, "host-b", "f", true), 0);
    journal_settle(j);

    struct cluster *c;
    assert_int_equal(cluster_new(l, s, j, "host-a", &c, &err), 0);
    struct cluster_peer peer = {};
    struct placement p = cluster_place(c, "f", LOCAL_NONE, 0, 0, &peer);
    assert_int_equal(p.kind, PLACE_WARM_PEER);
    assert_string_equal(peer.id, "host-b");
    assert_string_equal(peer.advertise, "http://127.0.0.1:2");
    /* A function no host is warm for: its home host or here, never a warm peer. */
    assert_int_not_equal(cluster_place(c, "g", LOCAL_NONE, 0, 0, &peer).kind, PLACE_WARM_PEER);
    cluster_forget_warm(c, "host-b", "f");
    assert_int_not_equal(cluster_place(c, "f", LOCAL_NONE, 0, 0, &peer).kind, PLACE_WARM_PEER);
    /* Three live hosts: a count of three is one each. */
    assert_int_equal(cluster_share(c, "g", 3), 1);

    /* Forgetting: a live host keeps its row and warm rows; a gone one loses both. */
    const struct host_row gone = {.host_id = "host-x",
                                  .advertise = "http://127.0.0.1:4",
                                  .version = "0.1.0",
                                  .started_us = now - 60000000,
                                  .heartbeat_us = now - 60000000};
    assert_int_equal(hosts_store_register(s, &gone, &err), 0);
    assert_int_equal(hosts_store_warm(j, "host-x", "f", true), 0);
    journal_settle(j);
    int64_t before = now - HOSTS_GONE_AFTER_US;
    assert_int_equal(hosts_store_forget(s, "host-b", before, &err), 0);
    assert_int_equal(hosts_store_forget(s, "host-x", before, &err), 1);
    int warm[2] = {};
    assert_int_equal(hosts_store_warm_list(s, count_warm, warm, &err), 0);
    assert_int_equal(warm[0], 1); /* host-b's */
    assert_int_equal(warm[1], 0);

    cluster_free(c);
    journal_free(j);
    loop_free(l);
    store_free(s);
    assert_int_equal(rm_rf(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_places_and_splits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
