#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>

#include "groups.h"

static CMFixtureFunction group_setup, group_teardown;
static bool group_fixture_failed;

static int counted_setup(void **state)
{
    int r = group_setup(state);
    group_fixture_failed |= r != 0;
    return r;
}

static int counted_teardown(void **state)
{
    int r = group_teardown(state);
    group_fixture_failed |= r != 0;
    return r;
}

int test_run_group(const char *name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction setup, CMFixtureFunction teardown)
{
    group_setup = setup;
    group_teardown = teardown;
    group_fixture_failed = false;
    int failed = _cmocka_run_group_tests(name, tests, n, setup ? counted_setup : NULL,
                                         teardown ? counted_teardown : NULL);
    return failed + group_fixture_failed;
}
