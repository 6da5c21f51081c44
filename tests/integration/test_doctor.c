/* ignis doctor on this host: ignisd --doctor before a daemon runs, and ignis doctor asking the
 * running daemon. Each line says ok, degraded or failing; failing makes the exit status 1. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "records/store.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* Every line starts with a status word and names a check. */
static void assert_lines(const char *out)
{
    int lines = 0;
    for (const char *l = out; *l; l = strchr(l, '\n') + 1) {
        assert_true(startswith(l, "ok ") || startswith(l, "degraded ") ||
                    startswith(l, "failing "));
        lines++;
        if (!strchr(l, '\n'))
            break;
    }
    assert_true(lines >= 10);
}

/* ignisd --doctor, on the daemon's store when it is PostgreSQL (SQLite's is the state dir's). */
static int doctor(const char *state_dir, const char *images, char **out)
{
    char *err = NULL, target[4200];
    harness_store_target(&daemon_proc, target, sizeof(target));
    char *argv[] = {(char *)harness_ignisd(),
                    "--doctor",
                    "--state-dir",
                    (char *)state_dir,
                    "--images-dir",
                    (char *)images,
                    "--store",
                    target,
                    NULL};
    if (!harness_on_postgresql())
        argv[6] = NULL;
    int r = harness_run(argv, out, &err);
    free(err);
    return r;
}

static void test_ignisd_doctor_on_this_host(void **state)
{
    char *out = NULL;
    /* This host (root, hybrid cgroups, images built by scripts/test) has everything. */
    assert_int_equal(doctor(daemon_proc.state_dir, getenv("IGNIS_IMAGES_DIR"), &out), 0);
    assert_lines(out);
    const char *want[] = {"ok        privileges",     "ok        kernel",    "ok        namespaces",
                          "ok        cgroups",        "ok        seccomp",   "ok        shim",
                          "ok        runtime images", "ok        state dir", "ok        store"};
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        if (!strstr(out, want[i])) {
            fprintf(stderr, "missing '%s' in:\n%s", want[i], out);
            fail();
        }
    free(out);
}

static void test_doctor_says_what_is_wrong(void **state)
{
    char empty[] = "/tmp/ignis-doctor-images.XXXXXX", file[] = "/tmp/ignis-doctor-file.XXXXXX";
    assert_non_null(mkdtemp(empty));
    int fd = mkstemp(file);
    close(fd);
    char *out = NULL;
    /* No images: degraded, still exit 0. */
    assert_int_equal(doctor(daemon_proc.state_dir, empty, &out), 0);
    assert_non_null(strstr(out, "degraded  runtime images"));
    assert_non_null(strstr(out, "scripts/build-images"));
    free(out);
    /* A state dir that is a file: failing, exit 1, with the fix. */
    assert_int_equal(doctor(file, empty, &out), 1);
    assert_non_null(strstr(out, "failing   state dir"));
    assert_non_null(strstr(out, "fix: "));
    free(out);
    rm_rf(empty);
    unlink(file);

    /* A store that cannot be reached: failing, with the reason and the fix. */
    char *err = NULL;
    char *argv[] = {(char *)harness_ignisd(),
                    "--doctor",
                    "--state-dir",
                    daemon_proc.state_dir,
                    "--store",
                    "host=/nonexistent-ignis-pg dbname=x connect_timeout=2",
                    NULL};
    assert_int_equal(harness_run(argv, &out, &err), 1);
    assert_non_null(strstr(out, "failing   store"));
    assert_non_null(strstr(out, "engine=postgresql"));
    assert_non_null(strstr(out, "unreachable"));
    assert_non_null(strstr(out, "fix: start the database"));
    free(out);
    free(err);
}

static void test_ignis_doctor_asks_the_daemon(void **state)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "doctor", NULL), 0);
    assert_lines(out);
    /* The daemon reports its own cgroup manager: on this host, every feature usable; and its
     * store, at this ignisd's schema. */
    assert_non_null(strstr(out, "every feature usable"));
    char store[128];
    snprintf(store, sizeof(store), "engine=%s", harness_on_postgresql() ? "postgresql" : "sqlite");
    const char *line = strstr(out, "ok        store");
    assert_non_null(line);
    assert_non_null(strstr(line, store));
    snprintf(store, sizeof(store), "schema=%d\n", store_schema_version());
    assert_non_null(strstr(line, store));
    free(out);
    free(err);
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/doctor", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "checks")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "status")));
    cJSON_Delete(j);
    client_response_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ignisd_doctor_on_this_host),
        cmocka_unit_test(test_doctor_says_what_is_wrong),
        cmocka_unit_test(test_ignis_doctor_asks_the_daemon),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
