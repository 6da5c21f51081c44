/* Versions and aliases end to end (docs/api.md "Versions and aliases"), on a daemon started with
 * --keep-versions 2: aliases set, listed and removed over HTTP and the CLI; every bad input with
 * its status and code; pruning that keeps an alias's target; a version's delete refused while an
 * alias points at it; rollback moving the unqualified invocation at once; push --no-promote
 * leaving the default where it was, but not on a function's first version. Each version's handler
 * prints its own tag, so an invocation shows which version ran. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    const char *args[] = {"--keep-versions", "2", NULL};
    return harness_start(&daemon_proc, args);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

static void write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* Pushes "ver" with the CLI, its handler printing "tag TAG" (extra: more push options); what
 * the CLI printed in *ret_out (free it) unless ret_out is NULL. */
static void push_tag_out(const char *tag, const char *extra, char **ret_out)
{
    char dir[400], json[256], *out, *err;
    snprintf(dir, sizeof(dir), "%s/ver", harness_fixtures(&daemon_proc));
    mkdir(dir, 0755);
    snprintf(json, sizeof(json),
             "{\"name\":\"ver\",\"runtime\":\"exec\",\"handler\":\"run.sh\",\"env\":{\"TAG\":"
             "\"%s\"}}",
             tag);
    write_text(dir, "function.json", json, 0644);
    write_text(dir, "run.sh", "#!/bin/sh\ncat >/dev/null\nprintf 'tag %s' \"$TAG\"\n", 0755);
    int rc = extra ? harness_ignis(&daemon_proc, &out, &err, "push", dir, extra, NULL)
                   : harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL);
    if (rc != 0)
        fail_msg("push %s: %s", tag, err);
    if (ret_out)
        *ret_out = out;
    else
        free(out);
    free(err);
}

static void push_tag(const char *tag, const char *extra)
{
    push_tag_out(tag, extra, NULL);
}

/* method path body: the status must be expect; the reply's JSON (free it). */
static cJSON *call(const char *method, const char *path, const char *body, long expect)
{
    struct client_response r;
    assert_int_equal(
        harness_request(&daemon_proc, method, path, NULL, body, body ? strlen(body) : 0, &r), 0);
    if (r.status != expect)
        fail_msg("%s %s %s: expected %ld, got %ld: %s", method, path, body ? body : "", expect,
                 r.status, r.body);
    cJSON *root = harness_json(&r);
    client_response_clear(&r);
    return root;
}

static void refused(const char *method, const char *path, const char *body, long status,
                    const char *code)
{
    cJSON *r = call(method, path, body, status);
    const char *got = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code")->valuestring;
    if (!streq(got, code))
        fail_msg("%s %s %s: expected %s, got %s", method, path, body ? body : "", code, got);
    cJSON_Delete(r);
}

/* The kept version numbers, as "1,3,4". */
static void kept(char *buf, size_t size)
{
    cJSON *r = call("GET", "/v1/functions/ver/versions", NULL, 200), *v;
    buf[0] = '\0';
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "versions"))
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%d", buf[0] ? "," : "",
                 cJSON_GetObjectItem(v, "version")->valueint);
    cJSON_Delete(r);
}

static void assert_invoke(const char *expect)
{
    struct client_response r;
    assert_int_equal(harness_invoke(&daemon_proc, "ver", "{}", NULL, &r), 200);
    if (!strstr(r.body, expect))
        fail_msg("expected \"%s\", got %s", expect, r.body);
    client_response_clear(&r);
}

static int current(void)
{
    cJSON *f = harness_function(&daemon_proc, "ver");
    int v = cJSON_GetObjectItem(f, "version")->valueint;
    cJSON_Delete(f);
    return v;
}

static void test_aliases_prune_delete(void **state)
{
    char list[64];
    push_tag("v1", NULL);
    cJSON_Delete(call("PUT", "/v1/functions/ver/aliases/pinned", "{\"version\": 1}", 200));
    push_tag("v2", NULL);
    push_tag("v3", NULL);
    kept(list, sizeof(list));
    assert_string_equal(list, "1,2,3"); /* 1 is over keep_versions, but pinned */
    push_tag("v4", NULL);
    kept(list, sizeof(list));
    assert_string_equal(list, "1,3,4"); /* 2 pruned */

    /* Bad input, each with its status and code. */
    refused("PUT", "/v1/functions/ver/aliases/canary", "{\"versions\": {\"3\": 90, \"4\": 20}}",
            400, "invalid_weights");
    refused("PUT", "/v1/functions/ver/aliases/canary", "{\"version\": 2}", 404,
            "version_not_found");
    refused("PUT", "/v1/functions/ver/aliases/3", "{\"version\": 3}", 400, "invalid_alias");
    refused("PUT", "/v1/functions/ver/aliases/canary", "{\"version\": 3, \"weight\": 1}", 400,
            "bad_request");
    refused("PUT", "/v1/functions/ver/aliases/canary", "[]", 400, "bad_request");
    refused("DELETE", "/v1/functions/ver/versions/1", NULL, 409, "conflict"); /* pinned */
    refused("DELETE", "/v1/functions/ver/versions/4", NULL, 409, "conflict"); /* current */
    refused("DELETE", "/v1/functions/ver/versions/2", NULL, 404, "version_not_found");
    refused("DELETE", "/v1/functions/ver/aliases/default", NULL, 409, "conflict");
    refused("DELETE", "/v1/functions/nope/aliases/default", NULL, 404, "not_found");
    refused("GET", "/v1/functions/ver/aliases/nope", NULL, 404, "alias_not_found");

    /* A weighted alias, listed on the function and on its versions. */
    cJSON *r = call("PUT", "/v1/functions/ver/aliases/canary",
                    "{\"versions\": {\"3\": 90, \"4\": 10}}", 200);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "versions"), "3")->valueint, 90);
    cJSON_Delete(r);
    r = harness_function(&daemon_proc, "ver");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "aliases")), 3);
    cJSON *v3 = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "versions"), 1);
    assert_int_equal(cJSON_GetObjectItem(v3, "version")->valueint, 3);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(v3, "aliases"), 0)->valuestring,
                        "canary");
    cJSON_Delete(r);

    /* Once no alias points at it, a version can be deleted. */
    cJSON_Delete(call("DELETE", "/v1/functions/ver/aliases/pinned", NULL, 200));
    refused("GET", "/v1/functions/ver/aliases/pinned", NULL, 404, "alias_not_found");
    r = call("DELETE", "/v1/functions/ver/versions/1", NULL, 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "deleted")));
    cJSON_Delete(r);
    kept(list, sizeof(list));
    assert_string_equal(list, "3,4");
}

static void test_rollback_and_no_promote(void **state)
{
    assert_invoke("tag v4");
    /* Rollback: the unqualified invocation runs the version before at once, with no push. */
    cJSON *r = call("POST", "/v1/functions/ver/rollback", NULL, 200);
    assert_int_equal(cJSON_GetObjectItem(r, "current_version")->valueint, 3);
    cJSON_Delete(r);
    assert_int_equal(current(), 3);
    assert_invoke("tag v3");
    refused("POST", "/v1/functions/ver/rollback", "{\"to\": 9}", 404, "version_not_found");
    refused("POST", "/v1/functions/ver/rollback", "{\"too\": 4}", 400, "bad_request");

    /* A push without promote: a new number past the highest, the default unmoved. */
    push_tag("v5", "--no-promote");
    assert_int_equal(current(), 3);
    assert_invoke("tag v3");
    char list[64];
    kept(list, sizeof(list));
    assert_string_equal(list, "3,4,5");
    r = call("POST", "/v1/functions/ver/rollback", "{\"to\": 5}", 200);
    cJSON_Delete(r);
    assert_invoke("tag v5");
}

static void test_cli(void **state)
{
    char *out, *err;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "alias", "set", "ver", "canary",
                                   "4=90", "5=10", NULL),
                     0);
    assert_non_null(strstr(out, "ver@canary -> 4=90% 5=10%"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "alias", "ls", "ver", NULL), 0);
    assert_non_null(strstr(out, "canary"));
    assert_non_null(strstr(out, "4=90% 5=10%"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "alias", "set", "ver", "canary",
                                   "4=90", "5=20", NULL),
                     1);
    assert_non_null(strstr(err, "sum to 110"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "rollback", "ver", "--to", "4", NULL),
                     0);
    assert_non_null(strstr(out, "version 4"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "versions", "ver", NULL), 0);
    assert_true(startswith(out, "VERSION"));
    assert_non_null(strstr(out, "canary,default"));
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "show", "ver", NULL), 0);
    if (!strstr(out, "version:  4") || !strstr(out, "\n  runtime: exec\n") ||
        !strstr(out, "\n  env:\n    TAG: v4\n") || !strstr(out, "ALIAS"))
        fail_msg("ignis show: %s", out);
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "alias", "rm", "ver", "canary", NULL),
                     0);
    free(out);
    free(err);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "alias", "ls", "ver", "--json", NULL),
                     0);
    cJSON *r = cJSON_Parse(out);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "aliases")), 1);
    cJSON_Delete(r);
    free(out);
    free(err);
    cJSON_Delete(call("DELETE", "/v1/functions/ver", NULL, 200));
}

/* promote=false on a function's first version: it becomes current all the same (there is no
 * default to stay where it was), and the CLI says "not promoted" only when that is true. */
static void test_first_version_no_promote(void **state)
{
    char dir[400], *out, *err;
    push_tag_out("f1", "--no-promote", &out);
    if (!strstr(out, "ver version 1 pushed") || strstr(out, "not promoted"))
        fail_msg("first push --no-promote: %s", out);
    free(out);
    assert_int_equal(current(), 1);
    assert_invoke("tag f1");
    cJSON *r = call("GET", "/v1/functions/ver/aliases/default", NULL, 200);
    assert_int_equal(cJSON_GetObjectItem(r, "primary")->valueint, 1);
    cJSON_Delete(r);

    /* The same files again (untouched: the bundle keeps mtimes): unchanged, nothing to
     * promote. */
    snprintf(dir, sizeof(dir), "%s/ver", harness_fixtures(&daemon_proc));
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "push", dir, "--no-promote", NULL), 0);
    if (!strstr(out, "ver version 1 unchanged") || strstr(out, "not promoted"))
        fail_msg("unchanged push --no-promote: %s", out);
    free(out);
    free(err);

    push_tag_out("f2", "--no-promote", &out);
    if (!strstr(out, "ver version 2 pushed") || !strstr(out, "not promoted"))
        fail_msg("second push --no-promote: %s", out);
    free(out);
    assert_int_equal(current(), 1);
    assert_invoke("tag f1");
    cJSON_Delete(call("DELETE", "/v1/functions/ver", NULL, 200));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aliases_prune_delete),
        cmocka_unit_test(test_rollback_and_no_promote),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_first_version_no_promote),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
