/* `ignis init` end to end. Without a daemon: what it writes (function.json with every default
 * as manifest.c has it, executable handlers) and what it refuses (a bad name, an unknown
 * runtime, a directory that is not empty or not a directory), exit status 2 with nothing
 * written. With a real ignisd and real containers: each runtime's template, and the service
 * template, goes through the three lines of the README it wrote, run as written from its
 * directory (push or deploy, invoke with event.json, logs), and answers the test event. */
#include "harness.h"

#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/manifest.h"

static struct ignisd_proc daemon_proc;
static char scratch[] = "/tmp/ignis-init.XXXXXX";

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

/* `ignis init ARGS...` run from dir (NULL: the test's cwd); its exit status, output in ret_*. */
static int init_in(const char *dir, char **ret_out, char **ret_err, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "cd '%s' && exec '%s' init %s", dir ? dir : ".", harness_cli(),
             args);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return harness_run(argv, ret_out, ret_err);
}

static bool exists(const char *dir, const char *name)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

static int scratch_setup(void **state)
{
    if (!mkdtemp(scratch))
        return -1;
    return 0;
}

static int scratch_teardown(void **state)
{
    return rm_rf(scratch) == 0 ? 0 : -1;
}

/* Each refusal: exit status 2, one line saying why, and nothing written. */
static void test_refusals(void **state)
{
    static const struct {
        const char *args, *message;
    } cases[] = {
        {"Bad --runtime exec --dir bad", "\"Bad\" is not a function name"},
        {"-x --runtime exec --dir bad", "usage: ignis init NAME"},
        {"ok --runtime cobol --dir bad", "unknown runtime \"cobol\""},
        {"ok --runtime service --dir bad", "unknown runtime \"service\""},
        {"ok --dir bad", "usage: ignis init NAME"},
        {"ok --runtime exec --bogus --dir bad", "usage: ignis init NAME"},
        {"ok extra --runtime exec --dir bad", "usage: ignis init NAME"},
        {"ok --runtime exec --json --dir bad", "usage: ignis init NAME"}, /* nothing to print */
        {"ok --runtime exec --dir mine", "mine exists and is not empty"},
        {"ok --runtime exec --service --dir mine", "mine exists and is not empty"},
        {"ok --runtime exec --dir mine/keep", "mine/keep exists and is not a directory"},
        {"keep --runtime exec --dir mine/keep", "mine/keep exists and is not a directory"},
    };
    char mine[1024], keep[1100];
    snprintf(mine, sizeof(mine), "%s/mine", scratch);
    snprintf(keep, sizeof(keep), "%s/keep", mine);
    assert_int_equal(mkdir_p(mine, 0755), 0);
    FILE *f = fopen(keep, "w");
    assert_non_null(f);
    fputs("the user's own file\n", f);
    assert_int_equal(fclose(f), 0);

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        int rc = init_in(scratch, &out, &err, cases[i].args);
        if (rc != 2)
            fail_msg("ignis init %s: exit %d, not 2: %s%s", cases[i].args, rc, out, err);
        assert_contains(err, cases[i].message);
        assert_true(startswith(err, "ignis: "));
        assert_int_equal(strchr(err, '\n')[1], '\0');
        assert_string_equal(out, "");
        assert_false(exists(scratch, "bad"));
        assert_false(exists(scratch, "ok"));
    }
    /* The file in the way is as it was, and nothing joined it. */
    _cleanup_free_ char *text = NULL;
    assert_int_equal(read_file(keep, 1024, &text, NULL), 0);
    assert_string_equal(text, "the user's own file\n");
    assert_false(exists(mine, "function.json"));
    assert_false(exists(mine, "function"));
}

/* function.json spells out every field at manifest.c's defaults (exactly what manifest_to_json
 * writes for the template's name, runtime and handler); handlers that the runtime runs as
 * programs are executable; the name is in every file that names the function. */
static void test_what_it_writes(void **state)
{
    static const struct {
        const char *runtime, *handler, *program;
    } cases[] = {
        {"exec", "handler.sh", "handler.sh"},
        {"python3", "app.handler", NULL},
        {"node", "index.handler", NULL},
        {"provided", NULL, "bootstrap"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char name[64], dir[1100], path[1200], min[256];
        _cleanup_free_ char *out = NULL, *err = NULL, *text = NULL, *readme = NULL;
        snprintf(name, sizeof(name), "fn-%s", cases[i].runtime);
        snprintf(dir, sizeof(dir), "%s/%s", scratch, name);
        char args[256];
        snprintf(args, sizeof(args), "%s --runtime %s", name, cases[i].runtime);
        /* Without --dir: ./NAME. */
        int rc = init_in(scratch, &out, &err, args);
        if (rc != 0)
            fail_msg("ignis init %s: exit %d: %s", args, rc, err);
        assert_contains(out, "created fn-");
        assert_contains(out, "/function.json");

        snprintf(path, sizeof(path), "%s/function.json", dir);
        assert_int_equal(read_file(path, MANIFEST_FILE_MAX, &text, NULL), 0);
        cJSON *written = cJSON_Parse(text);
        assert_non_null(written);
        snprintf(min, sizeof(min), "{\"name\": \"%s\", \"runtime\": \"%s\"%s%s%s}", name,
                 cases[i].runtime, cases[i].handler ? ", \"handler\": \"" : "",
                 cases[i].handler ? cases[i].handler : "", cases[i].handler ? "\"" : "");
        struct manifest *m = NULL;
        struct ig_error e = {};
        assert_int_equal(manifest_parse(min, strlen(min), &m, &e), 0);
        cJSON *expected = manifest_to_json(m);
        manifest_free(m);
        if (!cJSON_Compare(written, expected, true))
            fail_msg("%s's function.json is not the defaults: %s", cases[i].runtime, text);
        assert_non_null(cJSON_GetObjectItem(written, "max_scale"));
        cJSON_Delete(written);
        cJSON_Delete(expected);

        if (cases[i].program) {
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", dir, cases[i].program);
            assert_int_equal(stat(path, &st), 0);
            assert_true(st.st_mode & S_IXUSR);
        }
        assert_true(exists(dir, "event.json"));
        snprintf(path, sizeof(path), "%s/README.md", dir);
        assert_int_equal(read_file(path, 4096, &readme, NULL), 0);
        assert_contains(readme, "ignis invoke fn-");
        assert_null(strstr(readme, "{{name}}"));
    }
}

static int daemon_setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

static int daemon_teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* Runs the README.md that init wrote in dir, line by line as a shell would, from dir, with the
 * CLI on PATH and pointed at the daemon; stops at the first failing line. */
static void run_readme(const char *dir, char **ret_out)
{
    char cli[512], cmd[4096];
    snprintf(cli, sizeof(cli), "%s", harness_cli());
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && PATH='%s':$PATH IGNIS_URL='%s' IGNIS_TOKEN='%s' sh -e README.md", dir,
             dirname(cli), daemon_proc.url, daemon_proc.token);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    _cleanup_free_ char *err = NULL;
    int rc = harness_run(argv, ret_out, &err);
    if (rc != 0)
        fail_msg("%s/README.md: exit %d: %s%s", dir, rc, *ret_out, err);
}

/* `ignis init NAME --runtime RUNTIME EXTRA --dir FIXTURES/NAME`: the directory. */
static const char *init_fixture(const char *name, const char *runtime, const char *extra)
{
    static char dir[1024];
    snprintf(dir, sizeof(dir), "%s/%s", harness_fixtures(&daemon_proc), name);
    _cleanup_free_ char *out = NULL, *err = NULL;
    int rc = extra ? harness_ignis(&daemon_proc, &out, &err, "init", name, "--runtime", runtime,
                                   extra, "--dir", dir, NULL)
                   : harness_ignis(&daemon_proc, &out, &err, "init", name, "--runtime", runtime,
                                   "--dir", dir, NULL);
    if (rc != 0)
        fail_msg("ignis init %s: exit %d: %s", name, rc, err);
    return dir;
}

static void test_each_runtime_template(void **state)
{
    static const struct {
        const char *runtime, *result, *log;
    } cases[] = {
        {"exec", "{\"message\": \"Hello from tpl-exec!\", \"event\": {\"name\": \"Ignis\"}}",
         "tpl-exec received 17 bytes"},
        {"python3", "\"message\": \"Hello, Ignis!\"", "tpl-python3: greeting Ignis"},
        {"node", "\"message\":\"Hello, Ignis!\"", "tpl-node: greeting Ignis"},
        {"provided", "{\"message\": \"Hello, Ignis!\", \"function\": \"tpl-provided\"}",
         "tpl-provided: greeting Ignis"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char name[64], pushed[128];
        snprintf(name, sizeof(name), "tpl-%s", cases[i].runtime);
        const char *dir = init_fixture(name, cases[i].runtime, NULL);
        _cleanup_free_ char *out = NULL;
        run_readme(dir, &out);
        snprintf(pushed, sizeof(pushed), "%s version 1 pushed", name);
        assert_contains(out, pushed);
        assert_contains(out, cases[i].result);
        assert_contains(out, cases[i].log);
    }
}

static void test_service_template(void **state)
{
    const char *dir = init_fixture("tpl-shop", "node", "--service");
    _cleanup_free_ char *out = NULL;
    run_readme(dir, &out);
    assert_contains(out, "service tpl-shop deployed");
    assert_contains(out, "\"message\":\"Hello, Ignis!\"");
    assert_contains(out, "tpl-shop: greeting Ignis");
    /* The function is the service's, subscribed as service.json says. */
    cJSON *f = harness_function(&daemon_proc, "tpl-shop");
    assert_string_equal(cJSON_GetObjectItem(f, "service")->valuestring, "tpl-shop");
    cJSON *events = cJSON_GetObjectItem(cJSON_GetObjectItem(f, "manifest"), "events");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(events, 0), "type")->valuestring,
                        "com.example.tpl-shop");
    cJSON_Delete(f);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_what_it_writes),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_each_runtime_template),
        cmocka_unit_test(test_service_template),
    };
    int r =
        cmocka_run_group_tests_name("without a daemon", offline, scratch_setup, scratch_teardown);
    if (r != 0)
        return r;
    return cmocka_run_group_tests_name("with a daemon", live, daemon_setup, daemon_teardown);
}
