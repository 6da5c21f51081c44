/* python3 containers forked from a template (docs/architecture.md, "Templates"), through a real
 * ignisd: a `reuse: false` function's containers are forked (the interpreter is in isolated
 * mode, -I, which an exec'd runtime's is not) and see nothing of each other (a
 * module-level value, /tmp), draw different randoms, and hold what test_isolation.c checks of
 * an exec'd container (no capability, uid 65534, the seccomp filter, no mount/unshare/setns,
 * only their own processes and namespaces, /var/task read-only, no secrets); a killed template
 * fails no invocation and is replaced; a new version replaces the template; with
 * --python-templates off containers are exec'd as before. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <string.h>

static char fn[32];

/* The host pid of fn's template interpreter (its cmdline ends "--template" and its environment
 * names fn), or -1. */
static pid_t template_pid(void)
{
    char path[64], want[64];
    snprintf(want, sizeof(want), "AWS_LAMBDA_FUNCTION_NAME=%s", fn);
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = -1;
    while (d && found < 0 && (de = readdir(d))) {
        char *cmd = NULL, *env = NULL;
        size_t n = 0, m = 0;
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        if (read_file(path, 4096, &cmd, &n) == 0 && n > 11 &&
            memcmp(cmd + n - 11, "--template", 10) == 0) {
            snprintf(path, sizeof(path), "/proc/%s/environ", de->d_name);
            if (read_file(path, 65536, &env, &m) == 0)
                for (size_t i = 0; i < m; i += strlen(env + i) + 1)
                    if (streq(env + i, want))
                        found = atoi(de->d_name);
        }
        free(cmd);
        free(env);
    }
    if (d)
        closedir(d);
    return found;
}

static cJSON *probe(struct ignisd_proc *p)
{
    struct client_response r;
    if (harness_invoke(p, fn, "{}", NULL, &r) != 200)
        fail_msg("invoke %s: %ld %s", fn, r.status, r.body);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    return j;
}

static bool forked(const cJSON *j)
{
    return cJSON_IsTrue(cJSON_GetObjectItem(j, "isolated"));
}

/* Invokes until a container was forked from a template (the first spawn of a version starts it
 * and is exec'd; bounded, not timed). */
static cJSON *probe_forked(struct ignisd_proc *p)
{
    for (int i = 0; i < 500; i++) {
        cJSON *j = probe(p);
        if (forked(j))
            return j;
        cJSON_Delete(j);
        usleep(20000);
    }
    fail_msg("no container of %s was forked from a template", fn);
    return NULL;
}

static const char *str(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *status_of(const cJSON *j, const char *k)
{
    return str(cJSON_GetObjectItem(j, "status"), k);
}

static int setup(void **state)
{
    harness_require_root();
    snprintf(fn, sizeof(fn), "tpl%d", (int)getpid());
    static struct ignisd_proc p;
    if (harness_start(&p, NULL) < 0)
        return -1;
    *state = &p;
    return 0;
}

static int teardown(void **state)
{
    return harness_finish(*state);
}

/* Two fresh containers see neither the other's module-level value nor its /tmp file, and draw
 * different randoms, though both were forked from one template. */
static void test_fresh_containers_share_nothing(void **state)
{
    struct ignisd_proc *p = *state;
    harness_push_fixture(p, "tplprobe", fn, NULL);
    cJSON *a = probe_forked(p), *b = probe_forked(p);
    for (cJSON *j = a; j; j = j == a ? b : NULL) {
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "prev_mod")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "prev_tmp")));
    }
    assert_string_not_equal(str(a, "secret"), str(b, "secret"));
    assert_true(cJSON_GetObjectItem(a, "random")->valuedouble !=
                cJSON_GetObjectItem(b, "random")->valuedouble);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* What test_isolation.c checks of an exec'd container, of a forked one. */
static void test_isolation_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON *a = probe_forked(p), *b = probe_forked(p);
    pid_t tpl = template_pid();
    assert_true(tpl > 0);
    static const char *const zero[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    for (size_t i = 0; i < ARRAY_SIZE(zero); i++)
        assert_string_equal(status_of(a, zero[i]), "0000000000000000");
    assert_string_equal(status_of(a, "Uid"), "65534\t65534\t65534\t65534");
    assert_string_equal(status_of(a, "Gid"), "65534\t65534\t65534\t65534");
    assert_string_equal(status_of(a, "Seccomp"), "2");
    assert_string_equal(status_of(a, "NoNewPrivs"), "1");
    assert_string_equal(str(a, "mount"), strerror(EPERM));
    assert_string_equal(str(a, "unshare"), strerror(EPERM));
    assert_string_equal(str(a, "setns"), strerror(EPERM));
    assert_string_equal(str(a, "write_task"), strerror(EROFS));
    assert_string_equal(str(a, "write_root"), strerror(EROFS));
    assert_string_equal(str(a, "hostname"), "ignis");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(a, "secrets")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "loopback")));
    /* Only its own processes (its reaper, pid 1, and itself): not the template, not a
     * sibling. */
    const cJSON *pids = cJSON_GetObjectItem(a, "pids");
    assert_int_equal(cJSON_GetArraySize(pids), 2);
    assert_int_equal(cJSON_GetArrayItem(pids, 0)->valueint, 1);
    assert_int_equal(cJSON_GetArrayItem(pids, 1)->valueint, 2);
    /* Its own namespaces, neither the template's nor a sibling's (the user namespace is the
     * template's, where it has no capability). */
    static const char *const own[] = {"pid", "mnt", "net", "ipc", "uts"};
    for (size_t i = 0; i < ARRAY_SIZE(own); i++) {
        char path[64], link[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)tpl, own[i]);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        assert_true(n > 0);
        link[n] = '\0';
        const char *na = str(cJSON_GetObjectItem(a, "ns"), own[i]);
        assert_string_not_equal(na, link);
        assert_string_not_equal(na, str(cJSON_GetObjectItem(b, "ns"), own[i]));
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* A template killed while invocations arrive fails none of them, and another is started. */
static void test_killed_template_is_replaced(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    pid_t old = template_pid();
    assert_true(old > 0);
    assert_int_equal(kill(old, SIGKILL), 0);
    for (int i = 0; i < 10; i++)
        cJSON_Delete(probe(p)); /* each must answer 200 */
    cJSON_Delete(probe_forked(p));
    pid_t now = template_pid();
    assert_true(now > 0 && now != old);
}

/* A new version gets a template of its own; the old one goes. */
static void test_new_version_replaces_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    pid_t old = template_pid();
    assert_true(old > 0);
    harness_push_fixture(p, "tplprobe", fn, "{\"memory_mb\": 96}");
    cJSON_Delete(probe_forked(p));
    int i;
    for (i = 0; i < 500 && kill(old, 0) == 0; i++)
        usleep(20000);
    assert_true(kill(old, 0) < 0);
    pid_t now = template_pid();
    assert_true(now > 0 && now != old);
}

/* With --python-templates off every container is exec'd, and works. */
static void test_templates_off(void **state)
{
    struct ignisd_proc q;
    const char *const args[] = {"--python-templates", "off", NULL};
    assert_int_equal(harness_start(&q, args), 0);
    harness_push_fixture(&q, "tplprobe", fn, NULL);
    for (int i = 0; i < 3; i++) {
        cJSON *j = probe(&q);
        assert_false(forked(j));
        cJSON_Delete(j);
    }
    assert_int_equal(harness_finish(&q), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_containers_share_nothing),
        cmocka_unit_test(test_isolation_through_template),
        cmocka_unit_test(test_killed_template_is_replaced),
        cmocka_unit_test(test_new_version_replaces_template),
        cmocka_unit_test(test_templates_off),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
