/* ignis-bench against a real ignisd: counts, statuses and its exit status are right. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <string.h>

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

static cJSON *bench(const char *path, char *const extra[], int expect_exit)
{
    char url[128], *out = NULL, *err = NULL;
    char *argv[16];
    size_t n = 0;
    snprintf(url, sizeof(url), "%s%s", daemon_proc.url, path);
    argv[n++] = getenv("IGNIS_BENCH");
    argv[n++] = "--json";
    for (size_t i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n++] = url;
    argv[n] = NULL;
    assert_non_null(argv[0]);
    assert_int_equal(harness_run(argv, &out, &err), expect_exit);
    cJSON *root = cJSON_Parse(out);
    if (!root)
        fprintf(stderr, "ignis-bench printed: %s / %s\n", out, err);
    assert_non_null(root);
    free(out);
    free(err);
    return root;
}

static double num(cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItem(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_fixed_count_closed_loop(void **state)
{
    char *extra[] = {"-c", "4", "-n", "300", NULL};
    cJSON *r = bench("/healthz", extra, 0);
    assert_int_equal((int)num(r, "requests"), 300);
    assert_int_equal((int)num(r, "ok"), 300);
    assert_int_equal((int)num(cJSON_GetObjectItem(r, "status"), "200"), 300);
    /* /healthz says nothing of cold starts: none are counted. */
    assert_int_equal((int)num(r, "cold_starts"), 0);
    assert_true(num(r, "p50_us") > 0);
    assert_true(num(r, "p50_us") <= num(r, "p99_us"));
    assert_true(num(r, "p99_us") <= num(r, "max_us"));
    cJSON_Delete(r);
}

static void test_rate_mode(void **state)
{
    char *extra[] = {"-r", "200", "-t", "0.5", NULL};
    cJSON *r = bench("/v1/version", extra, 0);
    /* 200/s for half a second is about 100 requests; the schedule, not the server, sets it. */
    assert_in_range((int)num(r, "requests"), 90, 101);
    cJSON_Delete(r);
}

static void test_errors_counted_and_exit_status(void **state)
{
    char *extra[] = {"-n", "20", "-c", "2", NULL};
    cJSON *r = bench("/nope", extra, 1);
    assert_int_equal((int)num(cJSON_GetObjectItem(r, "status"), "404"), 20);
    assert_int_equal((int)num(r, "ok"), 0);
    cJSON_Delete(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_count_closed_loop),
        cmocka_unit_test(test_rate_mode),
        cmocka_unit_test(test_errors_counted_and_exit_status),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
