/* cmocka prints a failed group setup or teardown (a teardown's check for leftovers, a server
 * that would not stop) but leaves it out of the count it returns, so the run would pass. Every
 * test that has group fixtures includes this after <cmocka.h>: its groups run through
 * test_run_group, which counts a failed fixture as a failed test. */
#pragma once

int test_run_group(const char *name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction setup, CMFixtureFunction teardown);
#undef cmocka_run_group_tests
#define cmocka_run_group_tests(tests, setup, teardown)                                             \
    test_run_group(#tests, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)
#undef cmocka_run_group_tests_name
#define cmocka_run_group_tests_name(name, tests, setup, teardown)                                  \
    test_run_group(name, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)
