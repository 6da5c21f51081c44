/* The container spec: defaults, round trip, and every refusal naming its field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/container_spec.h"

static void test_minimal_and_defaults(void **state)
{
    struct container_spec s;
    struct ig_error err = {};
    assert_int_equal(
        container_spec_parse("{\"image\":\"/img\",\"args\":[\"/bin/true\"]}", &s, &err), 0);
    assert_string_equal(s.image, "/img");
    assert_null(s.bundle);
    assert_string_equal(s.args[0], "/bin/true");
    assert_null(s.args[1]);
    assert_null(s.env);
    assert_int_equal(s.uid, 65534);
    assert_int_equal(s.gid, 65534);
    assert_int_equal(s.tmp_size, 64ull << 20);
    assert_int_equal(s.rlimit_nofile, 1024);
    assert_int_equal(s.rlimit_nproc, 1024);
    assert_false(s.user_namespace);
    assert_null(s.cgroups);
    container_spec_clear(&s);
}

static void test_full_round_trip(void **state)
{
    const char *text =
        "{\"image\":\"/img\",\"bundle\":\"/b\",\"args\":[\"/bin/sh\",\"-c\",\"echo \\\"hi\\\"\"],"
        "\"env\":[\"A=1\",\"B=x=y\"],\"cwd\":\"/tmp\",\"hostname\":\"fn-1.example\",\"uid\":1000,"
        "\"gid\":1001,\"tmp_size\":1048576,\"rlimits\":{\"nofile\":64,\"nproc\":32},"
        "\"cgroups\":[\"/sys/fs/cgroup/memory/x\",\"/sys/fs/cgroup/unified/x\"],"
        "\"user_namespace\":{\"uid_base\":100000,\"gid_base\":200000,\"count\":65536},"
        "\"netns\":\"/proc/self/fd/6\",\"template\":true}";
    struct container_spec s, t;
    struct ig_error err = {};
    char *out = NULL, *out2 = NULL;

    assert_int_equal(container_spec_parse(text, &s, &err), 0);
    assert_string_equal(s.args[2], "echo \"hi\"");
    assert_string_equal(s.env[1], "B=x=y");
    assert_string_equal(s.cwd, "/tmp");
    assert_string_equal(s.hostname, "fn-1.example");
    assert_int_equal(s.uid, 1000);
    assert_int_equal(s.gid, 1001);
    assert_int_equal(s.tmp_size, 1048576);
    assert_int_equal(s.rlimit_nofile, 64);
    assert_int_equal(s.rlimit_nproc, 32);
    assert_string_equal(s.cgroups[1], "/sys/fs/cgroup/unified/x");
    assert_true(s.user_namespace);
    assert_int_equal(s.userns_uid_base, 100000);
    assert_int_equal(s.userns_gid_base, 200000);
    assert_string_equal(s.netns, "/proc/self/fd/6");
    assert_true(s.template_mode);
    assert_int_equal(container_spec_format(&s, &out, &err), 0);
    assert_int_equal(container_spec_parse(out, &t, &err), 0);
    assert_int_equal(container_spec_format(&t, &out2, &err), 0);
    assert_string_equal(out, out2);
    free(out);
    free(out2);
    container_spec_clear(&s);
    container_spec_clear(&t);
}

/* Each bad spec must fail with EINVAL and a message naming the field. */
static void test_refusals(void **state)
{
    static const struct {
        const char *text, *names;
    } cases[] = {
        {"[]", "JSON object"},
        {"{", "JSON"},
        {"{\"args\":[\"/x\"]}", "\"image\""},
        {"{\"image\":\"img\",\"args\":[\"/x\"]}", "\"image\""},
        {"{\"image\":\"/i\"}", "\"args\""},
        {"{\"image\":\"/i\",\"args\":[]}", "\"args\""},
        {"{\"image\":\"/i\",\"args\":[\"x\"]}", "\"args\"[0]"},
        {"{\"image\":\"/i\",\"args\":[1]}", "\"args\"[0]"},
        {"{\"image\":\"/i\",\"args\":\"/x\"}", "\"args\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"env\":[\"NOEQUALS\"]}", "\"env\"[0]"},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"env\":[\"=x\"]}", "\"env\"[0]"},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"bogus\":1}", "\"bogus\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"uid\":0}", "\"uid\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"gid\":0}", "\"gid\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"uid\":-1}", "\"uid\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"uid\":1.5}", "\"uid\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"uid\":\"1\"}", "\"uid\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"hostname\":\"a b\"}", "\"hostname\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"hostname\":\"\"}", "\"hostname\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"tmp_size\":1}", "\"tmp_size\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"rlimits\":{\"nofile\":1}}", "\"nofile\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"rlimits\":{\"core\":1}}", "\"core\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"rlimits\":{\"nproc\":0}}", "\"nproc\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"cgroups\":[\"rel\"]}", "\"cgroups\"[0]"},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"cwd\":\"rel\"}", "\"cwd\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"netns\":\"net\"}", "\"netns\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"bundle\":\"rel\"}", "\"bundle\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"user_namespace\":{\"uid_base\":0,"
         "\"gid_base\":1}}",
         "\"user_namespace\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"user_namespace\":{\"uid_base\":1,"
         "\"gid_base\":1,\"count\":10}}",
         "\"uid\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"user_namespace\":{\"what\":1}}", "\"what\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"user_namespace\":true}", "\"user_namespace\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"template\":true}", "\"template\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"template\":1}", "\"template\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"secrets\":[\"K\"]}", "\"secrets_dir\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"secrets_dir\":\"rel\",\"secrets\":[\"K\"]}",
         "\"secrets_dir\""},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"secrets_dir\":\"/s\",\"secrets\":[\"a/b\"]}",
         "\"secrets\"[0]"},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"secrets_dir\":\"/s\",\"secrets\":[\"..\"]}",
         "\"secrets\"[0]"},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"secrets_dir\":\"/s\",\"secrets\":[\"\"]}",
         "\"secrets\"[0]"},
        {"{\"image\":\"/i\",\"args\":[\"/x\"],\"secrets_dir\":\"/s\",\"secrets\":\"K\"}",
         "\"secrets\""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct container_spec s;
        struct ig_error err = {};
        int r = container_spec_parse(cases[i].text, &s, &err);
        if (r != -EINVAL || !strstr(err.message, cases[i].names))
            fail_msg("case %zu (%s): r=%d message \"%s\", expected it to name %s", i, cases[i].text,
                     r, err.message, cases[i].names);
    }
}

/* The secrets a container sees go to the shim by name, with their directory. */
static void test_secrets_round_trip(void **state)
{
    struct container_spec s, back;
    struct ig_error err = {};
    char *args[] = {"/x", NULL}, *names[] = {"API_KEY", "db.password", NULL}, *text = NULL;
    container_spec_init(&s);
    s.image = "/i";
    s.args = args;
    s.secrets_dir = "/var/lib/ignis/secrets/f";
    s.secrets = names;
    assert_int_equal(container_spec_format(&s, &text, &err), 0);
    assert_int_equal(container_spec_parse(text, &back, &err), 0);
    assert_string_equal(back.secrets_dir, "/var/lib/ignis/secrets/f");
    assert_string_equal(back.secrets[0], "API_KEY");
    assert_string_equal(back.secrets[1], "db.password");
    assert_null(back.secrets[2]);
    container_spec_clear(&back);
    free(text);
}

static void test_user_namespace_allows_root(void **state)
{
    struct container_spec s;
    struct ig_error err = {};
    assert_int_equal(container_spec_parse("{\"image\":\"/i\",\"args\":[\"/x\"],\"uid\":0,\"gid\":0,"
                                          "\"user_namespace\":{\"uid_base\":100000,"
                                          "\"gid_base\":100000}}",
                                          &s, &err),
                     0);
    assert_int_equal(s.userns_count, 65536);
    container_spec_clear(&s);
    assert_int_equal(container_spec_parse("{\"image\":\"/i\",\"args\":[\"/x\"],"
                                          "\"user_namespace\":false}",
                                          &s, &err),
                     0);
    assert_false(s.user_namespace);
    container_spec_clear(&s);
}

static void test_limits(void **state)
{
    struct container_spec s;
    struct ig_error err = {};
    /* Over the size limit: refused before parsing. */
    size_t n = CONTAINER_SPEC_MAX + 100;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = '\0';
    assert_int_equal(container_spec_parse(big, &s, &err), -EFBIG);
    free(big);
    /* Too many args. */
    size_t cap = 64 + (CONTAINER_SPEC_MAX_ARGS + 1) * 5;
    char *text = malloc(cap), *p = text;
    p += sprintf(p, "{\"image\":\"/i\",\"args\":[\"/x\"");
    for (size_t i = 0; i < CONTAINER_SPEC_MAX_ARGS; i++)
        p += sprintf(p, ",\"a\"");
    sprintf(p, "]}");
    ig_error_clear(&err);
    assert_int_equal(container_spec_parse(text, &s, &err), -EINVAL);
    assert_non_null(strstr(err.message, "\"args\""));
    free(text);
    /* The formatter validates too. */
    container_spec_init(&s);
    char *out = NULL;
    ig_error_clear(&err);
    assert_int_equal(container_spec_format(&s, &out, &err), -EINVAL);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_and_defaults),
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_user_namespace_allows_root),
        cmocka_unit_test(test_secrets_round_trip),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
