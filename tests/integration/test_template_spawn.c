/* How python3 containers are forked from their version's template while the loop goes on
 * (docs/architecture.md, "Templates"), through a real ignisd: a burst of first invocations of a
 * new version waits for the template it starts, so every container of it is forked (none
 * exec'd); and a fork that fails mid-way (the template killed between the request and the forked
 * pid 1's pidfd) still answers its invocation, from a container made the usual way. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <string.h>

static struct ignisd_proc daemon_proc;

/* Whether the process's cmdline is a template's interpreter (it ends "--template"). */
static bool is_template(const char *pid)
{
    char path[64], *cmd = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    bool yes = read_file(path, 4096, &cmd, &n) == 0 && n > 11 &&
               memcmp(cmd + n - 11, "--template", 10) == 0;
    free(cmd);
    return yes;
}

/* Whether the process's environment names function fn. */
static bool runs_function(const char *pid, const char *fn)
{
    char path[64], want[96], *env = NULL;
    size_t n = 0;
    bool yes = false;
    snprintf(path, sizeof(path), "/proc/%s/environ", pid);
    snprintf(want, sizeof(want), "AWS_LAMBDA_FUNCTION_NAME=%s", fn);
    if (read_file(path, 65536, &env, &n) == 0)
        for (size_t i = 0; i < n && !yes; i += strlen(env + i) + 1)
            yes = streq(env + i, want);
    free(env);
    return yes;
}

/* The process's parent, as a string for the two above. */
static void parent_of(const char *pid, char ret[16])
{
    char path[64], *st = NULL;
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    ret[0] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces, not ')' followed by a space. */
    const char *p = read_file(path, 4096, &st, NULL) == 0 ? strrchr(st, ')') : NULL;
    if (p)
        snprintf(ret, 16, "%d", atoi(p + 4));
    free(st);
}

/* The host pid of fn's template interpreter, or -1: a template process of fn whose parent is
 * not one (the processes it forks for each container, A, have the same cmdline). */
static pid_t template_interpreter(const char *fn)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = -1;
    while (d && found < 0 && (de = readdir(d))) {
        char ppid[16];
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || !is_template(de->d_name) ||
            !runs_function(de->d_name, fn))
            continue;
        parent_of(de->d_name, ppid);
        if (ppid[0] && !is_template(ppid))
            found = atoi(de->d_name);
    }
    if (d)
        closedir(d);
    return found;
}

/* Queues an async invocation of fn; its id goes to id. */
static void async_invoke(const char *fn, char id[64])
{
    const char *headers[] = {"Ignis-Invocation-Type: async", NULL};
    struct client_response r;
    long status = harness_invoke(&daemon_proc, fn, "{}", headers, &r);
    if (status != 202)
        fail_msg("async %s: %ld %s", fn, status, r.body);
    cJSON *j = harness_json(&r);
    snprintf(id, 64, "%s", cJSON_GetObjectItem(j, "id")->valuestring);
    cJSON_Delete(j);
    client_response_clear(&r);
}

/* Whether the succeeded invocation id ran in a container forked from a template (the probe's
 * interpreter runs in isolated mode, -I, there only). */
static bool ran_forked(const char *id)
{
    cJSON *j = harness_wait_invocation(&daemon_proc, id, "succeeded", 120);
    const cJSON *res = cJSON_GetObjectItem(j, "result");
    if (!cJSON_IsObject(res))
        fail_msg("invocation %s: no result object", id);
    bool forked = cJSON_IsTrue(cJSON_GetObjectItem(res, "isolated"));
    cJSON_Delete(j);
    return forked;
}

static int setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* N first invocations of a new version at once: the first spawn starts the template and the
 * spawns wait for it instead of going the exec'd way, so all N were forked. */
static void test_burst_of_first_invocations_all_forked(void **state)
{
    enum { N = 8 };
    char fn[32], ids[N][64];
    snprintf(fn, sizeof(fn), "tburst%d", (int)getpid());
    harness_push_fixture(&daemon_proc, "tplprobe", fn, "{\"max_scale\": 16}");
    for (int i = 0; i < N; i++)
        async_invoke(fn, ids[i]);
    int forked = 0;
    for (int i = 0; i < N; i++)
        forked += ran_forked(ids[i]);
    assert_int_equal(forked, N);
}

/* The template is stopped, a spawn sends it a fork request, and it is killed before it read it:
 * the request's fds go with it, the fork fails (EOF on the control socket), and the container
 * is made the usual way: the invocation succeeds, exec'd. */
static void test_fork_failing_midway_falls_back(void **state)
{
    char fn[32], id[64];
    snprintf(fn, sizeof(fn), "tfail%d", (int)getpid());
    harness_push_fixture(&daemon_proc, "tplprobe", fn, NULL);
    async_invoke(fn, id);
    assert_true(ran_forked(id)); /* the template is ready */
    pid_t tpl = template_interpreter(fn);
    assert_true(tpl > 0);
    assert_int_equal(kill(tpl, SIGSTOP), 0);
    /* Containers forked before it stopped (the scaler spawns fresh ones ahead) serve their one
     * invocation each; none can be forked now. */
    int i;
    for (i = 0; i < 100 && harness_live_number(&daemon_proc, fn, "ready") > 0; i++) {
        async_invoke(fn, id);
        ran_forked(id);
    }
    assert_true(i < 100);
    async_invoke(fn, id);
    /* It waits for a container whose fork request the stopped template holds (sent in the loop
     * turn that made the worker). */
    for (i = 0; i < 500 && harness_live_number(&daemon_proc, fn, "spawning") < 1; i++)
        usleep(10000);
    assert_true(i < 500);
    assert_int_equal(kill(tpl, SIGKILL), 0);
    assert_false(ran_forked(id));
    /* The version's next containers are forked again, from a new template. */
    async_invoke(fn, id);
    for (i = 0; i < 100 && !ran_forked(id); i++)
        async_invoke(fn, id);
    assert_true(i < 100);
    assert_true(template_interpreter(fn) != tpl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_of_first_invocations_all_forked),
        cmocka_unit_test(test_fork_failing_midway_falls_back),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
