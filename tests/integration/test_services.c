/* Services end to end through a real ignisd and the CLI: a service of three functions deploys in
 * one step (its triggers in each manifest) and is removed as one; `ignis ls` groups by service;
 * an invalid service (a function.json, a trigger in service.json, a bundle missing from the
 * archive) is refused with nothing pushed, by the CLI before sending and by the daemon when sent
 * anyway; a name owned by another service or by no service is a 409; a redeploy changes only
 * what changed and removes what the service no longer lists; services survive a restart. No
 * function is invoked here, so no containers: it runs without root. */
#include "harness.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/bundle.h"
#include "functions/service.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* DIR/SUBDIR with a function.json (fields EXTRA after name, runtime and handler) and its
 * handler. */
static void make_function(const char *dir, const char *subdir, const char *name, const char *extra)
{
    char fdir[1024], json[2048];
    snprintf(fdir, sizeof(fdir), "%s/%s", dir, subdir);
    assert_int_equal(mkdir_p(fdir, 0755), 0);
    snprintf(json, sizeof(json),
             "{\"name\": \"%s\", \"runtime\": \"exec\", \"handler\": \"run.sh\"%s%s}", name,
             extra ? ", " : "", extra ? extra : "");
    put_file(fdir, "function.json", json);
    put_file(fdir, "run.sh", "#!/bin/sh\ncat\n");
}

/* A fresh service directory under the fixtures: harness_fixtures(p)/LABEL. */
static const char *service_dir(const char *label)
{
    static char dir[1024];
    snprintf(dir, sizeof(dir), "%s/%s", harness_fixtures(&daemon_proc), label);
    rm_rf(dir);
    assert_int_equal(mkdir_p(dir, 0755), 0);
    return dir;
}

static long request(const char *method, const char *path, const void *body, size_t len, cJSON **ret)
{
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, method, path, NULL, body, len, &r), 0);
    long status = r.status;
    if (ret) {
        *ret = cJSON_Parse(r.body);
        if (!*ret)
            fail_msg("%s %s: not JSON: %s", method, path, r.body);
    }
    client_response_clear(&r);
    return status;
}

static size_t function_count(void)
{
    cJSON *j;
    assert_int_equal(request("GET", "/v1/functions", NULL, 0, &j), 200);
    size_t n = (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(j, "functions"));
    cJSON_Delete(j);
    return n;
}

/* Bundles in the store (directories named by a digest). */
static size_t bundle_count(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/bundles", daemon_proc.state_dir);
    DIR *d = opendir(path);
    struct dirent *de;
    size_t n = 0;
    while (d && (de = readdir(d)))
        n += bundle_digest_valid(de->d_name);
    if (d)
        closedir(d);
    return n;
}

static const char *error_message(cJSON *j)
{
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message");
    return cJSON_IsString(m) ? m->valuestring : "";
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

static const char *THREE = "{\"name\": \"shop\", \"functions\": {"
                           " \"orders\": {\"events\": [{\"type\": \"com.shop.order.*\"}]},"
                           " \"billing\": {\"path\": \"fns/billing\", \"schedule\": \"@every 1h\"},"
                           " \"mailer\": {\"sink\": null}}}";

static const char *make_three(void)
{
    const char *dir = service_dir("shop");
    put_file(dir, "service.json", THREE);
    /* orders' own subscription is replaced by the service's; mailer's sink is removed. */
    make_function(dir, "orders", "orders", "\"events\": [{\"type\": \"own.type\"}]");
    make_function(dir, "fns/billing", "billing", "\"memory_mb\": 256");
    make_function(dir, "mailer", "mailer", "\"sink\": \"http://127.0.0.1:9/x\"");
    return dir;
}

static void test_deploy_three_and_remove_as_one(void **state)
{
    _cleanup_free_ char *out = NULL, *err = NULL;
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", make_three());
    size_t bundles_before = bundle_count();

    int rc = harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL);
    if (rc != 0)
        fail_msg("deploy failed: %s", err);
    assert_contains(out, "service shop deployed");
    for (const char *const *n = (const char *const[]){"orders", "billing", "mailer", NULL}; *n;
         n++) {
        cJSON *f = harness_function(&daemon_proc, *n);
        assert_string_equal(cJSON_GetObjectItem(f, "service")->valuestring, "shop");
        assert_int_equal(cJSON_GetObjectItem(f, "version")->valueint, 1);
        cJSON_Delete(f);
    }
    assert_int_equal((int)(strstr(out, "changed") ? 1 : 0), 1);
    assert_null(strstr(out, "unchanged"));
    assert_int_equal(bundle_count(), bundles_before + 3);

    /* The service's triggers are in the manifests. */
    cJSON *f = harness_function(&daemon_proc, "orders");
    cJSON *ev =
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(f, "manifest"), "events"), 0);
    assert_string_equal(cJSON_GetObjectItem(ev, "type")->valuestring, "com.shop.order.*");
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(f, "manifest"), "events")), 1);
    cJSON_Delete(f);
    f = harness_function(&daemon_proc, "billing");
    cJSON *m = cJSON_GetObjectItem(f, "manifest");
    assert_string_equal(cJSON_GetObjectItem(m, "schedule")->valuestring, "@every 1h");
    assert_int_equal(cJSON_GetObjectItem(m, "memory_mb")->valueint, 256);
    cJSON_Delete(f);
    f = harness_function(&daemon_proc, "mailer");
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(f, "manifest"), "sink"));
    cJSON_Delete(f);

    /* The service as the daemon shows it. */
    cJSON *j;
    assert_int_equal(request("GET", "/v1/services", NULL, 0, &j), 200);
    cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "services"), 0);
    assert_string_equal(cJSON_GetObjectItem(s, "name")->valuestring, "shop");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(s, "functions")), 3);
    cJSON_Delete(j);
    assert_int_equal(request("GET", "/v1/services/shop", NULL, 0, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "functions")), 3);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), "functions"),
                            "billing")
            ->child->valuestring,
        "@every 1h");
    cJSON_Delete(j);

    /* The same again changes nothing. */
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL), 0);
    assert_non_null(strstr(out, "unchanged"));
    assert_null(strstr(out, " changed"));

    /* Removed as one. */
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    rc = harness_ignis(&daemon_proc, &out, &err, "rm", "--service", "shop", NULL);
    if (rc != 0)
        fail_msg("rm --service failed: %s", err);
    assert_contains(out, "service shop deleted (3 function(s); 3 bundle(s) removed)");
    assert_int_equal(function_count(), 0);
    assert_int_equal(bundle_count(), bundles_before);
    assert_int_equal(request("GET", "/v1/services/shop", NULL, 0, &j), 404);
    cJSON_Delete(j);
    assert_int_equal(request("DELETE", "/v1/services/shop", NULL, 0, &j), 404);
    cJSON_Delete(j);
}

static void test_ls_groups_by_service(void **state)
{
    _cleanup_free_ char *out = NULL, *err = NULL;
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", make_three());
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL), 0);
    const char *other = service_dir("other");
    put_file(other, "service.json", "{\"name\": \"accounts\", \"functions\": {\"users\": {}}}");
    make_function(other, "users", "users", NULL);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", other, NULL), 0);
    harness_push(&daemon_proc, "hello-exec", "alone", NULL);
    /* "aardvark" sorts first by name but has no service: it is listed after the services. */
    harness_push(&daemon_proc, "hello-exec", "aardvark", NULL);

    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "ls", NULL), 0);
    /* Rows: the header, then accounts' one, shop's three (by name), then the two alone. */
    const char *want[][2] = {{"accounts", "users"}, {"shop", "billing"}, {"shop", "mailer"},
                             {"shop", "orders"},    {"-", "aardvark"},   {"-", "alone"}};
    char *save = NULL, *line = strtok_r(out, "\n", &save);
    assert_non_null(line);
    assert_true(startswith(line, "SERVICE"));
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        line = strtok_r(NULL, "\n", &save);
        assert_non_null(line);
        char svc[64], name[64];
        assert_int_equal(sscanf(line, "%63s %63s", svc, name), 2);
        assert_string_equal(svc, want[i][0]);
        assert_string_equal(name, want[i][1]);
    }
    assert_null(strtok_r(NULL, "\n", &save));

    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "service", "ls", NULL), 0);
    assert_contains(out, "billing,mailer,orders");

    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "service", "rm", "shop", NULL), 0);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "service", "rm", "accounts", NULL), 0);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "rm", "alone", NULL), 0);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "rm", "aardvark", NULL), 0);
    assert_int_equal(function_count(), 0);
}

/* The CLI refuses before sending: exit 1, the message naming the function and field. */
static void refused_by_cli(const char *service_json, const char *bad_extra, const char *expect)
{
    _cleanup_free_ char *out = NULL, *err = NULL;
    const char *dir = service_dir("invalid");
    put_file(dir, "service.json", service_json);
    make_function(dir, "a", "a", NULL);
    make_function(dir, "b", "b", NULL);
    make_function(dir, "c", "c", bad_extra);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL), 1);
    assert_contains(err, expect);
    assert_int_equal(function_count(), 0);
}

/* The deploy archive of three functions, a and b valid, c with function.json EXTRA. */
static void archive_of(const char *service_json, const char *c_extra, bool with_c, char **ret,
                       size_t *ret_len)
{
    const char *dir = service_dir("archive");
    make_function(dir, "a", "a", NULL);
    make_function(dir, "b", "b", NULL);
    make_function(dir, "c", "c", c_extra);
    const char *names[] = {"a", "b", "c"};
    char *data[3];
    size_t lens[3];
    struct ig_error e = {};
    for (size_t i = 0; i < 3; i++) {
        char fdir[1024];
        snprintf(fdir, sizeof(fdir), "%s/%s", dir, names[i]);
        assert_int_equal(bundle_pack_dir(fdir, 1 << 20, &data[i], &lens[i], &e), 0);
    }
    assert_int_equal(service_archive_pack(service_json, strlen(service_json), names, data, lens,
                                          with_c ? 3 : 2, ret, ret_len, &e),
                     0);
    for (size_t i = 0; i < 3; i++)
        free(data[i]);
}

static void refused_by_daemon(const char *name, const char *service_json, const char *c_extra,
                              bool with_c, long status, const char *expect)
{
    _cleanup_free_ char *body = NULL;
    size_t len;
    char path[128];
    cJSON *j;
    archive_of(service_json, c_extra, with_c, &body, &len);
    snprintf(path, sizeof(path), "/v1/services/%s", name);
    assert_int_equal(request("PUT", path, body, len, &j), status);
    assert_contains(error_message(j), expect);
    cJSON_Delete(j);
    assert_int_equal(function_count(), 0);
}

static void test_invalid_service_pushes_nothing(void **state)
{
    static const char *abc =
        "{\"name\": \"bad\", \"functions\": {\"a\": {}, \"b\": {}, \"c\": {}}}";
    size_t bundles = bundle_count();

    refused_by_cli(abc, "\"memory_mb\": 1", "function c: ");
    refused_by_cli(abc, "\"memory_mb\": 1", "memory_mb: must be an integer from 64 to 10240");
    refused_by_cli("{\"name\": \"bad\", \"functions\": {\"a\": {}, \"c\": {\"schedule\": "
                   "\"61 * * * *\"}}}",
                   NULL, "functions.c.schedule: minute field");
    refused_by_cli("{\"name\": \"bad\", \"functions\": {\"a\": {\"memory_mb\": 256}}}", NULL,
                   "functions.a.memory_mb: unknown field");
    refused_by_cli("{\"name\": \"bad\", \"functions\": {\"a\": {\"path\": \"../a\"}}}", NULL,
                   "functions.a.path");
    refused_by_cli("{\"name\": \"bad\", \"functions\": {}}", NULL, "functions: must name 1");
    refused_by_cli("{\"name\": \"Bad\", \"functions\": {\"a\": {}}}", NULL, "name: must be");
    refused_by_cli("{\"name\": \"bad\", \"functions\": {\"a\": {\"path\": \"b\"}}}", NULL,
                   "name: function.json names \"b\" but service.json \"a\"");
    refused_by_cli("{\"name\": \"bad\", \"functions\": {\"a\": {}, \"zz\": {}}}", NULL,
                   "function zz: ");
    refused_by_cli("not json", NULL, "service.json: not valid JSON");

    /* The daemon checks all of it again: the same refusals when the archive is sent anyway. */
    refused_by_daemon("bad", abc, "\"memory_mb\": 1", true, 400,
                      "function c: memory_mb: must be an integer");
    refused_by_daemon("bad", abc, "\"runtime\": \"cobol\"", true, 400, "function c: ");
    refused_by_daemon("bad", abc, NULL, false, 400,
                      "function c: its bundle is missing from the archive");
    refused_by_daemon("bad", "{\"name\": \"bad\", \"functions\": {\"a\": {}, \"b\": {}}}", NULL,
                      true, 400, "function c: a bundle that service.json does not list");
    refused_by_daemon("bad",
                      "{\"name\": \"bad\", \"functions\": {\"a\": {\"events\": [{\"type\": "
                      "\"a*b\"}]}, \"b\": {}, \"c\": {}}}",
                      NULL, true, 400, "service.json: functions.a.events[0].type");
    refused_by_daemon("good", abc, NULL, true, 409, "service.json names \"bad\"");
    /* Nothing was stored: not a function, not a bundle. */
    assert_int_equal(bundle_count(), bundles);

    cJSON *j;
    assert_int_equal(request("PUT", "/v1/services/bad", "garbage", 7, &j), 400);
    assert_contains(error_message(j), "not a deploy archive");
    cJSON_Delete(j);
    assert_int_equal(request("PUT", "/v1/services/bad", NULL, 0, &j), 400);
    cJSON_Delete(j);
    assert_int_equal(request("PUT", "/v1/services/BAD", "x", 1, &j), 400);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring,
                        "invalid_name");
    cJSON_Delete(j);
    struct ig_error e = {};
    _cleanup_free_ char *only = NULL;
    size_t olen;
    const char *names[] = {"a"};
    char *data[] = {"not a bundle"};
    size_t lens[] = {12};
    assert_int_equal(service_archive_pack(abc, strlen(abc), names, data, lens, 1, &only, &olen, &e),
                     0);
    assert_int_equal(request("PUT", "/v1/services/bad", only, olen, &j), 400);
    assert_contains(error_message(j), "function a: ");
    cJSON_Delete(j);
    assert_int_equal(bundle_count(), bundles);
    assert_int_equal(request("GET", "/v1/services", NULL, 0, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "services")), 0);
    cJSON_Delete(j);
}

static void test_conflicts(void **state)
{
    _cleanup_free_ char *out = NULL, *err = NULL;
    harness_push(&daemon_proc, "hello-exec", "lonely", NULL);

    const char *a = service_dir("svc-a");
    put_file(a, "service.json",
             "{\"name\": \"svc-a\", \"functions\": {\"shared\": {}, \"mine\": {}}}");
    make_function(a, "shared", "shared", NULL);
    make_function(a, "mine", "mine", NULL);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", a, NULL), 0);

    /* Another service may not take svc-a's function, nor one pushed on its own. */
    const char *b = service_dir("svc-b");
    put_file(b, "service.json", "{\"name\": \"svc-b\", \"functions\": {\"shared\": {}}}");
    make_function(b, "shared", "shared", "\"memory_mb\": 512");
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", b, NULL), 1);
    assert_contains(err, "function shared belongs to service svc-a (HTTP 409)");
    put_file(b, "service.json", "{\"name\": \"svc-b\", \"functions\": {\"lonely\": {}}}");
    make_function(b, "lonely", "lonely", NULL);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", b, NULL), 1);
    assert_contains(err, "function lonely exists outside any service");
    assert_contains(err, "(HTTP 409)");
    cJSON *j;
    assert_int_equal(request("GET", "/v1/services/svc-b", NULL, 0, &j), 404);
    cJSON_Delete(j);

    /* A service's function is changed through its service, not pushed on its own. */
    char fdir[1024];
    snprintf(fdir, sizeof(fdir), "%s/shared", a);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "push", fdir, NULL), 1);
    assert_contains(err, "function shared belongs to service svc-a");
    cJSON *f = harness_function(&daemon_proc, "shared");
    assert_int_equal(cJSON_GetObjectItem(f, "version")->valueint, 1);
    cJSON_Delete(f);

    /* Deleting one function of a service takes it out of the service. */
    assert_int_equal(request("DELETE", "/v1/functions/mine", NULL, 0, &j), 200);
    cJSON_Delete(j);
    assert_int_equal(request("GET", "/v1/services/svc-a", NULL, 0, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "functions")), 1);
    cJSON_Delete(j);

    assert_int_equal(request("DELETE", "/v1/services/svc-a", NULL, 0, &j), 200);
    cJSON_Delete(j);
    assert_int_equal(request("DELETE", "/v1/functions/lonely", NULL, 0, &j), 200);
    cJSON_Delete(j);
    assert_int_equal(function_count(), 0);
}

static void test_redeploy_prunes_and_survives_restart(void **state)
{
    _cleanup_free_ char *out = NULL, *err = NULL;
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", make_three());
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL), 0);
    size_t bundles = bundle_count();

    /* mailer is no longer listed; orders' trigger changes (a new version of the same bundle);
     * billing is as it was. */
    put_file(dir, "service.json",
             "{\"name\": \"shop\", \"functions\": {"
             " \"orders\": {\"events\": [{\"type\": \"com.shop.order.paid\"}]},"
             " \"billing\": {\"path\": \"fns/billing\", \"schedule\": \"@every 1h\"}}}");
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", dir, "--json", NULL), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    cJSON *fns = cJSON_GetObjectItem(j, "functions");
    assert_int_equal(cJSON_GetArraySize(fns), 2);
    for (int i = 0; i < 2; i++) {
        cJSON *f = cJSON_GetArrayItem(fns, i);
        bool orders = streq(cJSON_GetObjectItem(f, "name")->valuestring, "orders");
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(f, "created")), orders);
        assert_int_equal(cJSON_GetObjectItem(f, "version")->valueint, orders ? 2 : 1);
    }
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "removed"), 0)->valuestring,
                        "mailer");
    cJSON_Delete(j);
    assert_int_equal(request("GET", "/v1/functions/mailer", NULL, 0, &j), 404);
    cJSON_Delete(j);
    assert_int_equal(bundle_count(), bundles - 1);

    /* What was deployed is what a restart loads. */
    assert_int_equal(harness_stop(&daemon_proc), 0);
    assert_int_equal(harness_restart(&daemon_proc, NULL), 0);
    cJSON *f = harness_function(&daemon_proc, "orders");
    assert_string_equal(cJSON_GetObjectItem(f, "service")->valuestring, "shop");
    cJSON *ev =
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(f, "manifest"), "events"), 0);
    assert_string_equal(cJSON_GetObjectItem(ev, "type")->valuestring, "com.shop.order.paid");
    cJSON_Delete(f);
    assert_int_equal(request("GET", "/v1/services/shop", NULL, 0, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "functions")), 2);
    cJSON_Delete(j);
    free(TAKE_PTR(out));
    free(TAKE_PTR(err));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", dir, NULL), 0);
    assert_null(strstr(out, " changed"));
    assert_int_equal(request("DELETE", "/v1/services/shop", NULL, 0, &j), 200);
    cJSON_Delete(j);
    assert_int_equal(function_count(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deploy_three_and_remove_as_one),
        cmocka_unit_test(test_ls_groups_by_service),
        cmocka_unit_test(test_invalid_service_pushes_nothing),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_redeploy_prunes_and_survives_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
