/* The placement policy of sync invocations across hosts (dispatch/placement.h, issue #17): the
 * order of its steps, rendezvous hashing's stability (a host that goes moves only the functions
 * it was home to; one that comes takes only its own), and the split of a cluster-wide count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "dispatch/placement.h"

#define N 5
static const char *const ids[N] = {"h1", "h2", "h3", "h4", "h5"};

static void hosts(struct placement_host v[N])
{
    for (int i = 0; i < N; i++)
        v[i] = (struct placement_host){.id = ids[i], .live = true, .memory_free = 1ll << 30};
}

static void test_steps_in_order(void **state)
{
    struct placement_host v[N];
    hosts(v);
    /* Free here: here, whatever the peers say. */
    v[3].warm = true;
    assert_int_equal(placement_decide("f", LOCAL_FREE, v, N, 0, 1 << 20, 0).kind, PLACE_HERE);
    /* Else the warm peer; the pick spreads over several. */
    struct placement p = placement_decide("f", LOCAL_NONE, v, N, 0, 1 << 20, 0);
    assert_int_equal(p.kind, PLACE_WARM_PEER);
    assert_int_equal(p.host, 3);
    v[1].warm = true;
    assert_int_equal(placement_decide("f", LOCAL_NONE, v, N, 0, 1 << 20, 0).host, 1);
    assert_int_equal(placement_decide("f", LOCAL_NONE, v, N, 0, 1 << 20, 1).host, 3);
    /* A gone peer is no warm peer, nor is this host itself. */
    v[1].live = v[3].live = false;
    v[0].warm = true;
    p = placement_decide("f", LOCAL_NONE, v, N, 0, 1 << 20, 0);
    assert_int_not_equal(p.kind, PLACE_WARM_PEER);
    v[0].warm = false;
    /* Then the home host, unless it is this one. */
    ssize_t home = placement_home("f", v, N, 1 << 20);
    assert_true(home >= 0 && home != 1 && home != 3);
    p = placement_decide("f", LOCAL_NONE, v, N, (size_t)home, 1 << 20, 0);
    assert_int_equal(p.kind, PLACE_HERE);
    size_t other = home == 0 ? 2 : 0;
    p = placement_decide("f", LOCAL_NONE, v, N, other, 1 << 20, 0);
    assert_int_equal(p.kind, PLACE_HOME);
    assert_int_equal(p.host, (size_t)home);
    /* A host with containers of it, all busy, grows its own rather than ask the home host. */
    assert_int_equal(placement_decide("f", LOCAL_BUSY, v, N, other, 1 << 20, 0).kind, PLACE_HERE);
    /* No host with the memory: here. */
    assert_int_equal(placement_home("f", v, N, 1ll << 31), -1);
    assert_int_equal(placement_decide("f", LOCAL_NONE, v, N, other, 1ll << 31, 0).kind, PLACE_HERE);
}

static void test_home_moves_only_what_it_must(void **state)
{
    struct placement_host v[N];
    hosts(v);
    int per_host[N] = {0}, moved = 0, moved_wrongly = 0;
    char name[16];
    for (int f = 0; f < 1000; f++) {
        snprintf(name, sizeof(name), "fn-%d", f);
        ssize_t before = placement_home(name, v, N, 0);
        per_host[before]++;
        v[2].live = false; /* h3 goes */
        ssize_t after = placement_home(name, v, N, 0);
        v[2].live = true;
        moved += before != after;
        moved_wrongly += before != after && before != 2;
    }
    assert_int_equal(moved, per_host[2]);
    assert_int_equal(moved_wrongly, 0);
    for (int i = 0; i < N; i++) /* spread: 200 each expected */
        assert_true(per_host[i] > 120 && per_host[i] < 280);
}

static void test_share_splits_the_count(void **state)
{
    struct placement_host v[N];
    hosts(v);
    for (unsigned total = 0; total <= 12; total++) {
        unsigned sum = 0, max = 0, min = ~0u;
        for (size_t i = 0; i < N; i++) {
            unsigned s = placement_share("f", v, N, i, total);
            sum += s;
            max = s > max ? s : max;
            min = s < min ? s : min;
        }
        assert_int_equal(sum, total);
        assert_true(max - min <= 1);
    }
    /* One: on the home host. */
    ssize_t home = placement_home("f", v, N, 0);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(placement_share("f", v, N, i, 1), i == (size_t)home);
    /* Gone hosts get none, and the live split all of it; a host asking counts itself live. */
    v[0].live = v[1].live = false;
    unsigned sum = 0;
    for (size_t i = 2; i < N; i++)
        sum += placement_share("f", v, N, i, 7);
    assert_int_equal(sum, 7);
    assert_true(placement_share("f", v, N, 0, 7) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_in_order),
        cmocka_unit_test(test_home_moves_only_what_it_must),
        cmocka_unit_test(test_share_splits_the_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
