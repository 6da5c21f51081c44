/* python3 containers forked from a template (docs/architecture.md, "Templates"), through a real
 * ignisd: a `reuse: false` function's containers are forked (the interpreter is in isolated
 * mode, -I, which an exec'd runtime's is not) and see nothing of each other (a module-level
 * value, /tmp), draw different randoms; a killed template fails no invocation and is replaced;
 * a new version replaces the template; with --python-templates off containers are exec'd as
 * before.
 *
 * And test_isolation.c, whole, through the template path: each attempt of
 * tests/fixtures/hostile.c made by the probe (tplprobe, its "action") in a container that
 * said it was forked (its reply, or its log for one that died). test_isolation's numbering:
 *  1 host processes (pids 1 2): done (test_isolation_through_template)
 *  2 interfaces (lo only), 3 host loopback refused, own loopback works: done (network)
 *  4 root and image read-only: done (read_only), EROFS for new and existing files alike, so
 *    the image's modes are not widened as there (a read-only mount refuses before any mode)
 *  5 /var/task read-only, 6 /proc/sys: done (read_only)
 *  7 host files, /proc/1/root, /proc/1/environ, `/` holds the image's entries only: done
 *    (host_files; the python image has its own /etc/passwd, so that one is not asked)
 *  8 mounts by every API, 9 unshare, raw clone with namespace flags, setns, clone3 ENOSYS,
 *    fork ok, 10 modules, 12 setuid 0, mknod, sethostname, 13 Docker's refused syscalls: done
 *    (refused); 12's capabilities, uid/gid, no_new_privs, seccomp: test_isolation_through_template
 * 11 ptrace and kill of a host process, ptrace of pid 1, SIGKILL to pid 1 dropped; 21 pid 1's
 *    memory and fds: done (pid1_and_host)
 * 13b int 0x80 kills with SIGSYS (a forked child's death seen by the probe), the x86_64
 *    syscall from the same kind of page works; in the runtime itself a 502: done (other_abi)
 * 14 OOM past memory_mb: 502 function_crashed Runtime.OutOfMemory, none under it: done
 *    (memory_limit)
 * 15 fork bomb held, all of it in the container's own cgroup, the template's cgroup untouched,
 *    the host forks: done (fork_bomb). What stops it is the container's pids.max (1024): its
 *    RLIMIT_NPROC, counted per uid and user namespace and so shared, is ignisd's hard limit
 *    (docs/security.md)
 * 16 /tmp size: done (fork_bomb's function, whose memory_mb leaves room for 64 MiB of tmpfs)
 * 17 CPU quota, by the probe's clocks and the ledger's: done (cpu_quota)
 * 18 fds 0-3 (printed: the runtime's own 0-3 only), rlimits, hostname; 19 /dev; 22 cgroup
 *    paths: done (container_view)
 * 20 nothing left: no process in the container's pid or mount namespace after it: done
 *    (nothing_left); its cgroup: the daemon's teardown check (harness_finish). */
#include "harness.h"
#include "base/container_spec.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

static char fn[32];

/* Whether host process pid runs python3 in template mode (its cmdline ends "--template") with
 * function name's environment: name's template interpreter, or a process forked from it (a
 * container's A, B or runtime). */
static bool of_template(const char *pid, const char *name)
{
    char path[64], want[64], *cmd = NULL, *env = NULL;
    size_t n = 0, m = 0;
    bool found = false;
    snprintf(want, sizeof(want), "AWS_LAMBDA_FUNCTION_NAME=%s", name);
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    if (read_file(path, 4096, &cmd, &n) == 0 && n > 11 &&
        memcmp(cmd + n - 11, "--template", 10) == 0) {
        snprintf(path, sizeof(path), "/proc/%s/environ", pid);
        if (read_file(path, 65536, &env, &m) == 0)
            for (size_t i = 0; i < m && !found; i += strlen(env + i) + 1)
                found = streq(env + i, want);
    }
    free(cmd);
    free(env);
    return found;
}

/* Whether pid runs a program: a zombie, or a process on its way out, has no command line. */
static bool running_program(const char *pid)
{
    char path[64], *cmd = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    bool yes = read_file(path, 4096, &cmd, &n) == 0 && n > 0;
    free(cmd);
    return yes;
}

/* The first host process (its pid as /proc names it) that match takes, or 0. */
static pid_t find_process(bool (*match)(const char *pid, const void *arg), const void *arg)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;
    while (d && !found && (de = readdir(d)))
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && match(de->d_name, arg))
            found = atoi(de->d_name);
    if (d)
        closedir(d);
    return found;
}

/* Whether pid is name's template interpreter (of_template, and its parent, the template
 * container's pid 1, is not; nor is it on its way out: a container's processes whose pid 1 is
 * exiting, as a destroyed container's are for a moment, would pass otherwise). */
static bool is_template(const char *pid, const void *name)
{
    char path[64], *status = NULL, ppid[16] = "";
    if (!of_template(pid, name))
        return false;
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    const char *s = read_file(path, 8192, &status, NULL) == 0 ? strstr(status, "PPid:\t") : NULL;
    bool yes = s && sscanf(s, "PPid:\t%15s", ppid) == 1 && !of_template(ppid, name) &&
               running_program(ppid);
    free(status);
    return yes;
}

/* The host pid of name's template interpreter, or -1. */
static pid_t template_pid_of(const char *name)
{
    pid_t pid = find_process(is_template, name);
    return pid ? pid : -1;
}

/* name's template's pid, looked for again for up to 5 s: /proc is read while processes come
 * and go (a replaced template's zombie, forks under way), and a scan can miss the one it wants. */
static pid_t template_pid_named(const char *name)
{
    pid_t pid = template_pid_of(name);
    for (int i = 0; i < 250 && pid <= 0; i++) {
        usleep(20000);
        pid = template_pid_of(name);
    }
    return pid;
}

static pid_t template_pid(void)
{
    return template_pid_named(fn);
}

/* Invokes name with body; the reply, which must have status want, as JSON. */
static cJSON *invoke_json(struct ignisd_proc *p, const char *name, const char *body, long want)
{
    struct client_response r;
    long status = harness_invoke(p, name, body, NULL, &r);
    if (status != want)
        fail_msg("invoke %s %s: %ld %s (expected %ld)", name, body, status, r.body, want);
    cJSON *j = harness_json(&r);
    client_response_clear(&r);
    return j;
}

static cJSON *probe_of(struct ignisd_proc *p, const char *name)
{
    return invoke_json(p, name, "{}", 200);
}

static cJSON *probe(struct ignisd_proc *p)
{
    return probe_of(p, fn);
}

static bool forked(const cJSON *j)
{
    return cJSON_IsTrue(cJSON_GetObjectItem(j, "isolated"));
}

/* Invokes until a container was forked from a template (bounded, not timed): a container is
 * exec'd when its template failed. */
static cJSON *probe_forked_of(struct ignisd_proc *p, const char *name)
{
    for (int i = 0; i < 500; i++) {
        cJSON *j = probe_of(p, name);
        if (forked(j))
            return j;
        cJSON_Delete(j);
        usleep(20000);
    }
    fail_msg("no container of %s was forked from a template", name);
    return NULL;
}

static cJSON *probe_forked(struct ignisd_proc *p)
{
    return probe_forked_of(p, fn);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
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
    /* Templates need a user namespace: where the host makes none (a chroot, or
     * user.max_user_namespaces 0), ignisd starts every container the usual way and `ignis
     * doctor` says so; nothing here can be tried. */
    pid_t probe = fork();
    if (probe == 0)
        _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
    int status;
    if (probe < 0 || waitpid(probe, &status, 0) != probe || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        harness_skip("this host makes no user namespaces: python3 templates are off here");
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
    cJSON *a = probe_forked(p);
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
    assert_string_equal(str(a, "write_task"), "EROFS");
    assert_string_equal(str(a, "write_root"), "EROFS");
    assert_string_equal(str(a, "hostname"), "ignis");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(a, "secrets")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "loopback")));
    /* Only its own processes (its reaper, pid 1, and itself): not the template, not a
     * sibling. */
    const cJSON *pids = cJSON_GetObjectItem(a, "pids");
    assert_int_equal(cJSON_GetArraySize(pids), 2);
    assert_int_equal(cJSON_GetArrayItem(pids, 0)->valueint, 1);
    assert_int_equal(cJSON_GetArrayItem(pids, 1)->valueint, 2);
    /* Its own namespaces, not the template's (the user namespace is the template's, where it
     * has no capability). Not compared with b's: b ran after a ended, and the kernel reuses a
     * freed namespace's inode number (seen: both "pid:[4026532430]"); that they share nothing
     * is test_fresh_containers_share_nothing's, and the pids above show it sees no other. */
    static const char *const own[] = {"pid", "mnt", "net", "ipc", "uts"};
    for (size_t i = 0; i < ARRAY_SIZE(own); i++) {
        char path[64], link[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)tpl, own[i]);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        assert_true(n > 0);
        link[n] = '\0';
        const char *na = str(cJSON_GetObjectItem(a, "ns"), own[i]);
        assert_string_not_equal(na, link);
    }
    cJSON_Delete(a);
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

/* The rest of test_isolation.c, each attempt made by the probe (its "action") in a container of
 * name forked from the template, asserted as there. */

/* Whether invocation id of name logged that its action ran forked from the template (the
 * probe's first line). */
static bool logged_forked(struct ignisd_proc *p, const char *name, const char *id)
{
    char path[256];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/logs?invocation=%s", name, id);
    assert_int_equal(harness_request(p, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    bool found = strstr(r.body, "isolated=True") != NULL;
    client_response_clear(&r);
    return found;
}

/* {"action": ACTION, "arg": ARG} for name; the reply, which must have status want, as JSON.
 * It must have run in a container forked from the template (its reply or, for one that died,
 * its log says so): the scaler prewarms containers, and one made the usual way while the
 * template was starting may still be waiting, so a reply from such a one is put aside and the
 * attempt made again (bounded). */
static cJSON *attempt_of(struct ignisd_proc *p, const char *name, const char *action,
                         const char *arg, long want)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "action", action);
    if (arg)
        cJSON_AddStringToObject(body, "arg", arg);
    char *text = cJSON_PrintUnformatted(body);
    cJSON *j = NULL;
    for (int i = 0; i < 50 && !j; i++) {
        struct client_response r;
        char id[64];
        long status = harness_invoke(p, name, text, NULL, &r);
        if (status != want)
            fail_msg("%s %s of %s: %ld %s (expected %ld)", action, arg ? arg : "", name, status,
                     r.body, want);
        assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
        j = harness_json(&r);
        client_response_clear(&r);
        if (want == 200 ? !forked(j) : !logged_forked(p, name, id)) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (!j)
        fail_msg("%s %s never ran in a container forked from the template", action, arg ? arg : "");
    free(text);
    cJSON_Delete(body);
    return j;
}

/* The "out" of ACTION ARG in a forked container of name, as text (strings as they are, anything
 * else as compact JSON); free it. */
static char *attempt_in(struct ignisd_proc *p, const char *name, const char *action,
                        const char *arg)
{
    cJSON *j = attempt_of(p, name, action, arg, 200);
    const cJSON *out = cJSON_GetObjectItem(j, "out");
    char *text = cJSON_IsString(out) ? strdup(out->valuestring) : cJSON_PrintUnformatted(out);
    cJSON_Delete(j);
    return text;
}

static char *attempt(struct ignisd_proc *p, const char *action, const char *arg)
{
    return attempt_in(p, fn, action, arg);
}

static void expect(struct ignisd_proc *p, const char *action, const char *arg, const char *want)
{
    char *out = attempt(p, action, arg);
    if (!streq(out, want))
        fail_msg("%s %s: \"%s\", expected \"%s\"", action, arg ? arg : "", out, want);
    free(out);
}

/* As expect, accepting either of two outcomes (where the kernel's check order decides). */
static void expect_either(struct ignisd_proc *p, const char *action, const char *arg, const char *a,
                          const char *b)
{
    char *out = attempt(p, action, arg);
    if (!streq(out, a) && !streq(out, b))
        fail_msg("%s %s: \"%s\", expected %s or %s", action, arg ? arg : "", out, a, b);
    free(out);
}

static void put_secret(struct ignisd_proc *p, const char *name, const char *secret,
                       const char *value)
{
    char path[256];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/secrets/%s", name, secret);
    assert_int_equal(harness_request(p, "PUT", path, NULL, value, strlen(value), &r), 0);
    if (r.status != 200 && r.status != 201)
        fail_msg("PUT %s: %ld %s", path, r.status, r.body);
    client_response_clear(&r);
}

/* A function with secrets is forked from a template too, and each container gets what an
 * exec'd one gets (test_auth's test_secrets_only_for_their_function): the listed secrets that
 * are set, 0400 and its own uid's, read-only, with the values of its start; the template holds
 * none of them. */
static void test_secrets_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    char name[48];
    snprintf(name, sizeof(name), "%ssec", fn);
    put_secret(p, name, "API_KEY", "first-value");
    put_secret(p, name, "NOT_LISTED", "not-for-it");
    harness_push_fixture(p, "tplprobe", name, "{\"secrets\": [\"API_KEY\", \"UNSET\"]}");
    static const char *const want[][3] = {
        {"cat", "/run/secrets/API_KEY", "first-value"},
        {"ls", "/run/secrets", "[\"API_KEY\"]"},
        {"stat", "/run/secrets/API_KEY", "400 65534 65534"},
        {"stat", "/run/secrets", "500 65534 65534"},
        {"write", "/run/secrets/API_KEY", "EROFS"},
        {"write", "/run/secrets/planted", "EROFS"},
        {"remount-rw", NULL, "EPERM"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        char *out = attempt_in(p, name, want[i][0], want[i][1]);
        if (!streq(out, want[i][2]))
            fail_msg("%s %s: \"%s\", expected \"%s\"", want[i][0], want[i][1] ? want[i][1] : "",
                     out, want[i][2]);
        free(out);
    }
    /* The template's /run/secrets is the empty place its containers mount theirs on. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/root/run/secrets", (int)template_pid_named(name));
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));)
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            fail_msg("the template holds a secret: %s", de->d_name);
    closedir(d);
    /* A changed secret reaches the containers started after it (those made ahead have theirs). */
    put_secret(p, name, "API_KEY", "second-value");
    char *out = NULL;
    for (int i = 0; i < 50 && (!out || !streq(out, "second-value")); i++) {
        free(out);
        out = attempt_in(p, name, "cat", "/run/secrets/API_KEY");
    }
    assert_string_equal(out, "second-value");
    free(out);
}

/* test_isolation 2 and 3: loopback only; the host's 127.0.0.1 unreachable, the container's own
 * works. */
static void test_network_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    expect(p, "netdevs", NULL, "[\"lo\"]");
    char port[16];
    int fd = harness_listen_loopback(port);
    expect(p, "connect", port, "ECONNREFUSED");
    expect(p, "loopback", NULL, "ok");
    close(fd);
}

/* test_isolation 4, 5, 6: the root, the image and /var/task are read-only (new files and
 * existing ones: a read-only mount answers EROFS before any permission check), /proc/sys too,
 * and the host's hostname is unchanged. */
static void test_read_only_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    expect(p, "write", "/usr/bin/planted", "EROFS");
    expect(p, "write", "/etc/passwd", "EROFS");
    expect(p, "mkdir", "/planted", "EROFS");
    expect(p, "write", "/var/task/probe.py", "EROFS");
    expect(p, "write", "/var/task/new", "EROFS");
    char *before = NULL, *after = NULL;
    assert_int_equal(read_file("/proc/sys/kernel/hostname", 256, &before, NULL), 0);
    expect_either(p, "write", "/proc/sys/kernel/hostname", "EROFS", "EACCES");
    expect_either(p, "write", "/proc/sys/vm/drop_caches", "EROFS", "EACCES");
    expect_either(p, "write", "/proc/sys/kernel/core_pattern", "EROFS", "EACCES");
    assert_int_equal(read_file("/proc/sys/kernel/hostname", 256, &after, NULL), 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* test_isolation 7: no host file (the daemon's store, the images, /etc/shadow, through
 * /proc/1/root); the root holds the image's entries, nothing else. */
static void test_host_files_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    char db[400], image[300];
    /* The daemon's store file, on SQLite; on PostgreSQL the store's files are the server's,
     * and the state dir's secret is the admin token. */
    snprintf(db, sizeof(db), "%s/%s", p->state_dir,
             harness_on_postgresql() ? "admin.token" : "ignis.db");
    snprintf(image, sizeof(image), "%s/python3", getenv("IGNIS_IMAGES_DIR"));
    assert_int_equal(access(db, F_OK), 0);
    expect(p, "read", db, "ENOENT");
    expect(p, "read", image, "ENOENT");
    expect(p, "read", "/etc/shadow", "ENOENT");
    expect_either(p, "read", "/proc/1/root/etc/shadow", "EACCES", "ENOENT");
    expect_either(p, "read", "/proc/1/environ", "EACCES", "EPERM");
    /* pid 1 (B) has the runtime's uid: only its being non-dumpable from before it forks the
     * runtime keeps its memory out of reach. */
    expect_either(p, "read", "/proc/1/mem", "EACCES", "EPERM");
    /* The image's own entries, as the host sees its directory, sorted as the probe does. */
    DIR *d = opendir(image);
    assert_non_null(d);
    struct dirent *de;
    cJSON *want = cJSON_CreateArray();
    char *names[64];
    size_t n = 0;
    while ((de = readdir(d)) && n < ARRAY_SIZE(names))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(want, cJSON_CreateString(names[i]));
        free(names[i]);
    }
    char *text = cJSON_PrintUnformatted(want);
    expect(p, "ls", "/", text);
    free(text);
    cJSON_Delete(want);
}

/* test_isolation 8, 9, 10, 12, 13: mounts by every API, new or joined namespaces, modules, the
 * ids, a device, the hostname and the syscalls Docker's profile refuses; clone3 says ENOSYS
 * and plain fork works. */
static void test_refused_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    static const char *const eperm[] = {
        "mount",       "mount-proc", "remount-rw", "umount",      "fsopen", "chroot", "setns",
        "module",      "setuid0",    "mknod",      "sethostname", "bpf",    "perf",   "keyctl",
        "userfaultfd", "io_uring",   "reboot",     "kexec",       "settime"};
    for (size_t i = 0; i < ARRAY_SIZE(eperm); i++)
        expect(p, eperm[i], NULL, "EPERM");
    static const int flags[] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID};
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
        char flag[32];
        snprintf(flag, sizeof(flag), "%d", flags[i]);
        expect(p, "unshare", flag, "EPERM");
        expect(p, "clone-ns", flag, "EPERM");
    }
    expect(p, "clone3", NULL, "ENOSYS");
    expect(p, "fork", NULL, "ok");
}

/* test_isolation 11 and 21: a host process can be neither traced nor signalled, pid 1 (B, the
 * container's reaper, of the runtime's own uid) can be neither traced nor killed, and its
 * memory and fds are out of reach (not dumpable). */
static void test_pid1_and_host_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    pid_t victim = fork();
    if (victim == 0) {
        pause();
        _exit(0);
    }
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)victim);
    expect(p, "ptrace", pid, "EPERM");
    expect(p, "kill", pid, "ESRCH");
    assert_int_equal(kill(victim, 0), 0); /* still alive */
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    expect(p, "ptrace", "1", "EPERM");
    expect(p, "kill1", NULL, "ok, pid 1 alive");
    expect_either(p, "read", "/proc/1/mem", "EACCES", "EPERM");
    expect_either(p, "ls", "/proc/1/fd", "EACCES", "EPERM");
}

/* test_isolation 13b: a syscall through the i386 ABI kills the process (the filter's bad-arch
 * action). The same page with the x86_64 `syscall` instruction works, so it is the ABI that is
 * refused, not the machine code: in a forked child the probe sees SIGSYS; in the runtime
 * itself, the invocation fails as a crash and the template and the next container are fine. */
static void test_other_abi_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    pid_t tpl = template_pid();
    expect(p, "syscall64", NULL, "ok");
    expect(p, "int80-child", NULL, "SIGSYS");
    cJSON *j = attempt_of(p, fn, "int80", NULL, 502);
    assert_string_equal(str(cJSON_GetObjectItem(j, "error"), "code"), "function_crashed");
    cJSON_Delete(j);
    cJSON_Delete(probe_forked(p));
    if (template_pid() != tpl) {
        harness_print_log(p);
        fail_msg("the template %d was replaced by %d", (int)tpl, (int)template_pid());
    }
}

/* test_isolation 16, 18, 19, 22: /tmp, the fds and limits, /dev, the cgroup paths. */
static void test_container_view_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    char *fds = attempt(p, "fds", NULL);
    cJSON *f = cJSON_Parse(fds);
    print_message("fds: %s\n", fds);
    assert_int_equal(cJSON_GetArraySize(f), 4);
    for (int i = 0; i < 4; i++) {
        char n[4];
        snprintf(n, sizeof(n), "%d", i);
        assert_non_null(cJSON_GetObjectItem(f, n));
    }
    cJSON_Delete(f);
    free(fds);
    /* nproc: ignisd's own hard limit (it inherited this test's), which the pool gives where the
     * pids controller is the per-container limit (docs/security.md). */
    struct rlimit nproc;
    char want[96];
    assert_int_equal(getrlimit(RLIMIT_NPROC, &nproc), 0);
    snprintf(want, sizeof(want), "nofile 1024 nproc %llu core 0",
             (unsigned long long)(nproc.rlim_max < CONTAINER_SPEC_NPROC_MAX
                                      ? nproc.rlim_max
                                      : CONTAINER_SPEC_NPROC_MAX));
    expect(p, "rlimits", NULL, want);
    expect(p, "hostname", NULL, "ignis");
    expect(p, "ls", "/dev",
           "[\"fd\",\"full\",\"null\",\"random\",\"stderr\",\"stdin\",\"stdout\",\"urandom\","
           "\"zero\"]");
    expect(p, "devs", NULL, "4 4 ENOSPC");
    char *cg = attempt(p, "cat", "/proc/self/cgroup");
    assert_null(strstr(cg, "ignis-"));
    assert_null(strstr(cg, "process_api"));
    assert_non_null(strstr(cg, "memory:/\n"));
    assert_non_null(strstr(cg, "0::/\n"));
    free(cg);
}

/* The directory of host process pid's cgroup in controller's v1 hierarchy (or the unified one
 * where the controller has none), into buf; false if pid is gone. */
static bool cgroup_dir(pid_t pid, const char *controller, char *buf, size_t len)
{
    char path[64], *text = NULL, want[32];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    if (read_file(path, 4096, &text, NULL) < 0)
        return false;
    snprintf(want, sizeof(want), ":%s:", controller);
    const char *v1 = strstr(text, want), *v2 = strstr(text, "0::");
    bool ok = v1 || v2;
    if (v1)
        snprintf(buf, len, "/sys/fs/cgroup/%s%.*s", controller,
                 (int)strcspn(v1 + strlen(want), "\n"), v1 + strlen(want));
    else if (v2)
        snprintf(buf, len, "/sys/fs/cgroup%.*s", (int)strcspn(v2 + 3, "\n"), v2 + 3);
    free(text);
    return ok;
}

/* The number in dir/file (after `key ` when key is not NULL), or -1. */
static long cgroup_number(const char *dir, const char *file, const char *key)
{
    char path[600], *text = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (read_file(path, 4096, &text, NULL) < 0)
        return -1;
    const char *s = key ? strstr(text, key) : text;
    long n = s ? strtol(s + (key ? strlen(key) + 1 : 0), NULL, 10) : -1;
    free(text);
    return n;
}

/* test_isolation 14: past memory_mb the runtime is OOM-killed (502 function_crashed,
 * Runtime.OutOfMemory: the OOM kill counted in the container's own cgroup, which the template's
 * would not be); under it, no kill; the template and the next container are fine. */
static void test_memory_limit_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    char name[40];
    snprintf(name, sizeof(name), "tplmem%d", (int)getpid());
    harness_push_fixture(p, "tplprobe", name,
                         "{\"memory_mb\": 64, \"max_retries\": 0, \"max_scale\": 1}");
    cJSON_Delete(probe_forked_of(p, name));
    pid_t tpl = template_pid_of(name);
    assert_true(tpl > 0);
    cJSON *j = attempt_of(p, name, "alloc", "128", 502);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    print_message("alloc 128 MiB under 64: %s %s\n", str(e, "code"), str(e, "type"));
    assert_string_equal(str(e, "code"), "function_crashed");
    assert_string_equal(str(e, "type"), "Runtime.OutOfMemory");
    cJSON_Delete(j);
    j = attempt_of(p, name, "alloc", "8", 200);
    assert_string_equal(str(j, "out"), "allocated 8 MiB");
    cJSON_Delete(j);
    assert_int_equal(template_pid_of(name), tpl);
}

/* test_isolation 15: a fork bomb is held in the container's own cgroup (every process of it is
 * there, none in the template's) and stops at the limit; the template, the host and the next
 * container are fine. The probe holds its processes until the test releases it (a file it
 * makes in the container's /tmp through the host's /proc/PID/root). */
static void test_fork_bomb_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    char name[40], path[256];
    snprintf(name, sizeof(name), "tplbomb%d", (int)getpid());
    /* Each forked python child costs a few hundred KiB: room for 1024 of them. */
    harness_push_fixture(p, "tplprobe", name,
                         "{\"memory_mb\": 1024, \"timeout_ms\": 120000, \"max_scale\": 1}");
    cJSON_Delete(probe_forked_of(p, name));
    pid_t tpl = template_pid_of(name);
    char tpl_cg[512], cg[512] = "";
    assert_true(tpl > 0 && cgroup_dir(tpl, "pids", tpl_cg, sizeof(tpl_cg)));

    const char *async[] = {"Ignis-Invocation-Type: async", NULL};
    const char body[] = "{\"action\": \"forkbomb\", \"arg\": \"100000\"}";
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", name);
    assert_int_equal(harness_request(p, "POST", path, async, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 202);
    char id[64];
    assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
    client_response_clear(&r);

    /* The container's cgroup: that of the bomb's processes (forked from the template, so
     * of_template, but not in its cgroup), once the probe said it stopped forking; a bound on
     * the wait, not a timing. */
    pid_t member = -1;
    char *forked_out = NULL;
    for (int i = 0; i < 3000 && !forked_out; i++) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        while ((de = readdir(d)) && !forked_out) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9' || atoi(de->d_name) == tpl ||
                !of_template(de->d_name, name) ||
                !cgroup_dir(atoi(de->d_name), "pids", cg, sizeof(cg)) || streq(cg, tpl_cg))
                continue;
            member = atoi(de->d_name);
            snprintf(path, sizeof(path), "/proc/%d/root/tmp/forked", (int)member);
            if (read_file(path, 256, &forked_out, NULL) < 0)
                forked_out = NULL;
        }
        closedir(d);
        if (!forked_out)
            usleep(20000);
    }
    assert_non_null(forked_out);
    long current = cgroup_number(cg, "pids.current", NULL),
         max = cgroup_number(cg, "pids.max", NULL);
    long tpl_current = cgroup_number(tpl_cg, "pids.current", NULL);
    print_message("fork bomb: forked %s; container cgroup pids.current %ld pids.max %ld "
                  "pids.events max %ld; template's pids.current %ld\n",
                  forked_out, current, max, cgroup_number(cg, "pids.events", "max"), tpl_current);
    free(forked_out);
    assert_int_equal(max, 1024);
    assert_true(current >= 1000 && current <= max);
    assert_true(tpl_current < 64);
    /* The host can still fork. */
    pid_t child = fork();
    if (child == 0)
        _exit(7);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(WEXITSTATUS(status), 7);

    /* The release file, made as the container's uid: the container's /tmp belongs to the
     * template's user namespace, where the host's root has no id (EOVERFLOW). */
    uid_t uid = 0;
    gid_t gid = 0;
    char *st = NULL;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)member);
    assert_int_equal(read_file(path, 8192, &st, NULL), 0);
    assert_int_equal(sscanf(strstr(st, "Uid:"), "Uid:\t%u", &uid), 1);
    assert_int_equal(sscanf(strstr(st, "Gid:"), "Gid:\t%u", &gid), 1);
    free(st);
    setfsgid(gid);
    setfsuid(uid);
    snprintf(path, sizeof(path), "/proc/%d/root/tmp/release", (int)member);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int open_errno = errno;
    setfsuid(0);
    setfsgid(0);
    if (fd < 0)
        fail_msg("%s: %s", path, strerror(open_errno));
    close(fd);
    cJSON *rec = harness_wait_invocation(p, id, "succeeded", 60);
    const char *out = str(cJSON_GetObjectItem(rec, "result"), "out");
    long n = -1;
    char why[32] = "";
    assert_non_null(out);
    print_message("fork bomb: %s\n", out);
    assert_int_equal(sscanf(out, "forked %ld, then %31s", &n, why), 2);
    assert_true(n >= 1 && n < 1024);
    assert_string_equal(why, "EAGAIN");
    cJSON_Delete(rec);

    /* The template is the same and forks the next container. */
    cJSON_Delete(probe_forked_of(p, name));
    assert_int_equal(template_pid_of(name), tpl);
    /* test_isolation 16: /tmp holds no more than its size (64 MiB; memory_mb leaves room). */
    cJSON *j = attempt_of(p, name, "filltmp", NULL, 200);
    long long wrote = -1;
    assert_int_equal(sscanf(str(j, "out"), "wrote %lld then %31s", &wrote, why), 2);
    print_message("/tmp: %s\n", str(j, "out"));
    assert_true(wrote > 0 && wrote <= (64ll << 20));
    assert_string_equal(why, "ENOSPC");
    cJSON_Delete(j);
}

static double number(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* test_isolation 17: a busy loop is held to cpu_millis (200: a fifth of a core) by the
 * container's own cgroup: its CPU time against the wall time it ran, by its own clocks and by
 * the ledger's, with test_isolation's bound (one CFS period of burst, 50% slack; on a busy
 * machine usage only comes out lower, so this is not a timing assertion). The ledger's CPU
 * (read from the container's cgroup) holds at least what the process measured of itself: it
 * ran there. */
static void test_cpu_quota_through_template(void **state)
{
    struct ignisd_proc *p = *state;
    char name[40];
    snprintf(name, sizeof(name), "tplcpu%d", (int)getpid());
    harness_push_fixture(p, "tplprobe", name, "{\"cpu_millis\": 200, \"max_scale\": 1}");
    cJSON_Delete(probe_forked_of(p, name));
    struct client_response r;
    assert_int_equal(harness_invoke(p, name, "{\"action\": \"spin\", \"arg\": \"1.5\"}", NULL, &r),
                     200);
    cJSON *j = harness_json(&r);
    char id[64];
    assert_non_null(client_response_header(&r, "Ignis-Invocation-Id", id, sizeof(id)));
    client_response_clear(&r);
    assert_true(forked(j));
    const cJSON *out = cJSON_GetObjectItem(j, "out");
    double wall = number(out, "wall_ms"), cpu = number(out, "cpu_ms");
    cJSON_Delete(j);
    /* The record's figures are the ledger row's, written off the loop: wait for them. */
    double rec_cpu = -1, rec_wall = -1;
    for (int i = 0; i < 500 && rec_cpu < 0; i++) {
        cJSON *rec = harness_wait_invocation(p, id, "succeeded", 30);
        rec_cpu = number(rec, "cpu_ms");
        rec_wall = number(rec, "duration_ms");
        cJSON_Delete(rec);
        if (rec_cpu < 0)
            usleep(20000);
    }
    print_message("cpu quota: the probe used %.1f ms of CPU in %.1f ms; the ledger %.1f ms in "
                  "%.1f ms (quota 20%%)\n",
                  cpu, wall, rec_cpu, rec_wall);
    assert_true(wall >= 1500);
    assert_true(cpu > 0 && cpu <= wall * 0.2 * 1.5 + 100);
    assert_true(rec_cpu <= rec_wall * 0.2 * 1.5 + 100);
    assert_true(rec_cpu + 1 >= cpu);
}

struct ns_link {
    const char *kind, *link;
};

/* Whether pid is in the namespace ns->link (a /proc/PID/ns/KIND target). */
static bool in_namespace(const char *pid, const void *arg)
{
    const struct ns_link *ns = arg;
    char path[64], target[64] = "";
    snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, ns->kind);
    return readlink(path, target, sizeof(target) - 1) > 0 && streq(target, ns->link);
}

/* Whether any host process is in the namespace link of kind; the first one's status is printed
 * when report. */
static bool namespace_in_use(const char *kind, const char *link, bool report)
{
    pid_t pid = find_process(in_namespace, &(struct ns_link){kind, link});
    if (pid && report) {
        char path[64], *st = NULL;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (read_file(path, 8192, &st, NULL) == 0)
            print_message("in %s: process %d:\n%.300s\n", link, (int)pid, st);
        free(st);
    }
    return pid != 0;
}

/* Whether pid is named mark (/proc/PID/comm). */
static bool named(const char *pid, const void *mark)
{
    char path[64], *comm = NULL;
    size_t n = strlen(mark);
    snprintf(path, sizeof(path), "/proc/%s/comm", pid);
    bool yes =
        read_file(path, 64, &comm, NULL) == 0 && strncmp(comm, mark, n) == 0 && comm[n] == '\n';
    free(comm);
    return yes;
}

/* test_isolation 20: once a forked container is done, nothing of it is left, not even a process
 * it left running in the background: no process anywhere is in its pid or mount namespace. The
 * test holds both namespaces open (fds of the background process's /proc/PID/ns) from before the
 * container ends: the kernel numbers namespaces with the least free number, so a freed one's
 * number goes at once to the next container's, which CI once took for this one's. */
static void test_nothing_left_through_template(void **state)
{
    static const char *const kinds[] = {"pid", "mnt"};
    struct ignisd_proc *p = *state;
    cJSON_Delete(probe_forked(p));
    for (int attempt = 0; attempt < 50; attempt++) {
        char mark[16], body[128];
        snprintf(mark, sizeof(mark), "lb%d-%d", (int)getpid() % 100000, attempt);
        snprintf(body, sizeof(body), "{\"action\": \"leave-behind\", \"arg\": \"%s\"}", mark);
        struct harness_call call;
        harness_invoke_start(&call, p, fn, body, 30000);
        /* The invocation lasts a second after its background process took the mark. */
        int held[ARRAY_SIZE(kinds)] = {-1, -1};
        pid_t pid = 0;
        for (int i = 0; i < 100 && !(pid = find_process(named, mark)); i++)
            usleep(10000);
        for (size_t k = 0; pid && k < ARRAY_SIZE(kinds); k++) {
            char path[64];
            snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, kinds[k]);
            held[k] = open(path, O_RDONLY | O_CLOEXEC);
        }
        harness_call_join(&call);
        if (call.status != 200)
            fail_msg("leave-behind: %ld %s", call.status, call.reply ? call.reply : "");
        cJSON *j = cJSON_Parse(call.reply);
        assert_non_null(j);
        harness_call_clear(&call);
        bool ours = forked(j) && held[0] >= 0 && held[1] >= 0;
        for (size_t k = 0; ours && k < ARRAY_SIZE(kinds); k++) {
            const char *link = str(cJSON_GetObjectItem(j, "out"), kinds[k]);
            char fdpath[64], target[64] = "";
            snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", held[k]);
            assert_non_null(link);
            assert_true(readlink(fdpath, target, sizeof(target) - 1) > 0);
            assert_string_equal(target, link); /* the process found was the container's */
            /* The container is destroyed after its reply left: a bound on the wait. */
            int i;
            for (i = 0; i < 500 && namespace_in_use(kinds[k], link, false); i++)
                usleep(20000);
            if (i == 500 && namespace_in_use(kinds[k], link, true))
                fail_msg("a process is still in the container's %s namespace %s", kinds[k], link);
        }
        cJSON_Delete(j);
        for (size_t k = 0; k < ARRAY_SIZE(kinds); k++)
            if (held[k] >= 0)
                close(held[k]);
        if (ours)
            return;
    }
    fail_msg("leave-behind never ran in a container forked from the template, found in time");
}

#define BURST 8

/* An invocation of name given up after 200 ms: its status, or -1 when none came by then. */
static long refused_status(struct ignisd_proc *p, const char *name)
{
    struct harness_call c;
    harness_invoke_start(&c, p, name, "{}", 200);
    harness_call_join(&c);
    harness_call_clear(&c);
    return c.status;
}

/* n invocations of name with body at once, each on its own connection. */
static void burst_start_n(struct ignisd_proc *p, const char *name, struct harness_call *calls,
                          int n, const char *body)
{
    for (int i = 0; i < n; i++)
        harness_invoke_start(&calls[i], p, name, body, 0);
}

static void burst_start(struct ignisd_proc *p, const char *name, struct harness_call calls[BURST])
{
    burst_start_n(p, name, calls, BURST, "{}");
}

/* Waits for the n calls; each must have answered want. How many ran in a forked container. */
static int burst_join_n(struct harness_call *calls, int n, long want)
{
    int n_forked = 0;
    for (int i = 0; i < n; i++) {
        harness_call_join(&calls[i]);
        if (calls[i].status != want)
            fail_msg("invocation %d of the burst: %ld (expected %ld)", i, calls[i].status, want);
        cJSON *j = calls[i].status == 200 && calls[i].reply ? cJSON_Parse(calls[i].reply) : NULL;
        n_forked += j && forked(j);
        cJSON_Delete(j);
        harness_call_clear(&calls[i]);
    }
    return n_forked;
}

static int burst_join(struct harness_call calls[BURST], long want)
{
    return burst_join_n(calls, BURST, want);
}

/* BURST first invocations of a fresh version at once, right after its push, all succeed and
 * were all forked: their spawns found the version's template starting (the first one started
 * it) and waited for it, none was exec'd meanwhile. Then bursts once the template is ready,
 * whose forks are under way together while the loop goes on, all succeed too, and forked
 * containers served them. */
static void test_burst_of_fresh_invocations(void **state)
{
    struct ignisd_proc *p = *state;
    char name[32];
    struct harness_call calls[BURST];
    snprintf(name, sizeof(name), "tb%d", (int)getpid());
    harness_push_fixture(p, "tplprobe", name, "{\"max_scale\": 16}");
    burst_start(p, name, calls);
    assert_int_equal(burst_join(calls, 200), BURST);
    cJSON_Delete(probe_forked_of(p, name));
    int forked = 0;
    for (int round = 0; round < 5; round++) {
        burst_start(p, name, calls);
        forked += burst_join(calls, 200);
    }
    assert_true(forked > 0);
}

/* Forks pending while the function goes (deleted) or gets a new version: the template is
 * stopped, so the forks of a burst's containers wait; then the change, then the template goes
 * on. Every accepted invocation is answered, and ignisd lives on (the forks of containers the
 * change destroyed were cancelled with them). */
static void forks_pending_through(struct ignisd_proc *p, const char *name, bool delete)
{
    struct harness_call calls[BURST], del;
    harness_push_fixture(p, "tplprobe", name, "{\"max_scale\": 16}");
    cJSON_Delete(probe_forked_of(p, name));
    pid_t tpl = template_pid_named(name);
    assert_true(tpl > 0);
    assert_int_equal(kill(tpl, SIGSTOP), 0);
    burst_start(p, name, calls);
    int i;
    /* An invocation waits for a container whose fork is pending (others of the burst may have
     * found a container made before the template stopped, or come later). */
    for (i = 0; i < 500 && (harness_live_number(p, name, "spawning") < 1 ||
                            harness_live_number(p, name, "queue_depth") < 1);
         i++)
        usleep(10000);
    assert_true(i < 500);
    char path[128];
    snprintf(path, sizeof(path), "/v1/functions/%s", name);
    if (delete)
        harness_call_start(&del, p, "DELETE", path, NULL, 0); /* answered once the burst was */
    else
        harness_push_fixture(p, "tplprobe", name, "{\"max_scale\": 16, \"memory_mb\": 96}");
    /* The delete reached the dispatcher (new invocations get 404) before the template goes on;
     * an invocation that came first is one more accepted, given up by its client only. */
    for (i = 0; delete &&i < 100 && refused_status(p, name) != 404; i++)
        ;
    assert_true(i < 100);
    assert_int_equal(kill(tpl, SIGCONT), 0);
    if (delete) {
        /* Accepted before the delete: answered 200; after it: 404. */
        int ok = 0;
        for (i = 0; i < BURST; i++) {
            harness_call_join(&calls[i]);
            if (calls[i].status != 200 && calls[i].status != 404)
                fail_msg("invocation %d of the burst: %ld", i, calls[i].status);
            ok += calls[i].status == 200;
            harness_call_clear(&calls[i]);
        }
        assert_true(ok > 0);
        harness_call_join(&del);
        assert_int_equal(del.status, 200);
        harness_call_clear(&del);
    } else {
        burst_join(calls, 200);
        cJSON_Delete(probe_forked_of(p, name));
    }
    struct client_response r;
    assert_int_equal(harness_request(p, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
}

/* Many containers forked from one template live at once (each holds its invocation for a
 * while): each leaves its A in the template's cgroup, and with the function's limits alone the
 * template's processes were OOM-killed at ~25 (its forks failed, and containers were exec'd
 * instead). All of them are forked. */
static void test_many_live_forked_containers(void **state)
{
    enum { N = 32 };
    struct ignisd_proc *p = *state;
    char name[32];
    struct harness_call calls[N];
    snprintf(name, sizeof(name), "tm%d", (int)getpid());
    harness_push_fixture(p, "tplprobe", name, "{\"max_scale\": 40}");
    cJSON_Delete(probe_forked_of(p, name));
    /* Containers made before the template was ready (the scaler spawns ahead) may serve some. */
    int before =
        (int)(harness_live_number(p, name, "ready") + harness_live_number(p, name, "spawning"));
    burst_start_n(p, name, calls, N, "{\"action\": \"sleep\", \"arg\": \"2\"}");
    assert_true(burst_join_n(calls, N, 200) >= N - before);
}

static void test_forks_pending_when_deleted(void **state)
{
    char name[32];
    snprintf(name, sizeof(name), "td%d", (int)getpid());
    forks_pending_through(*state, name, true);
}

static void test_forks_pending_when_new_version(void **state)
{
    char name[32];
    snprintf(name, sizeof(name), "tv%d", (int)getpid());
    forks_pending_through(*state, name, false);
}

/* Whether the daemon's log has text. */
static bool logged(const struct ignisd_proc *p, const char *text)
{
    char *log = NULL;
    bool found = read_file(p->log_path, 64 << 20, &log, NULL) == 0 && strstr(log, text);
    free(log);
    return found;
}

/* Pushes name (a template slowed to a twentieth of a core: its start takes a second or more)
 * and starts BURST invocations of it, whose containers wait for the template; stops the
 * template's interpreter while it still starts and returns its pid. It still starts when it has
 * not loaded libignis-child.so, which it does before it says R (bootstrap.py template_main);
 * when it had, the burst is let through and another function tried (bounded). */
static pid_t burst_waiting(struct ignisd_proc *p, const char *prefix, char name[32],
                           struct harness_call calls[BURST])
{
    for (int attempt = 0; attempt < 5; attempt++) {
        snprintf(name, 32, "%s%d-%d", prefix, (int)getpid(), attempt);
        harness_push_fixture(p, "tplprobe", name, "{\"max_scale\": 16, \"cpu_millis\": 50}");
        burst_start(p, name, calls);
        pid_t tpl = template_pid_named(name);
        assert_true(tpl > 0);
        assert_int_equal(kill(tpl, SIGSTOP), 0);
        char path[64], *maps = NULL;
        snprintf(path, sizeof(path), "/proc/%d/maps", (int)tpl);
        assert_int_equal(read_file(path, 1 << 20, &maps, NULL), 0);
        bool starting = !strstr(maps, "libignis-child.so");
        free(maps);
        /* The burst's invocations are queued, and its containers wait. */
        int i;
        for (i = 0; starting && i < 500 &&
                    (harness_live_number(p, name, "spawning") < 1 ||
                     harness_live_number(p, name, "queue_depth") < 1);
             i++)
            usleep(10000);
        assert_true(i < 500);
        if (starting)
            return tpl;
        print_message("the template of %s was ready before it was stopped: again\n", name);
        assert_int_equal(kill(tpl, SIGCONT), 0);
        burst_join(calls, 200);
    }
    fail_msg("no template was stopped while it started");
    return -1;
}

/* The template dies while a burst's containers wait for it: they are made the usual way, and
 * every invocation succeeds (none waits for its init deadline). */
static void test_template_dies_while_waited_for(void **state)
{
    struct ignisd_proc *p = *state;
    char name[32];
    struct harness_call calls[BURST];
    pid_t tpl = burst_waiting(p, "tk", name, calls);
    assert_int_equal(kill(tpl, SIGKILL), 0);
    burst_join(calls, 200);
    assert_true(logged(p, "the containers waiting for it start the usual way"));
}

/* The function is deleted, or gets a new version, while a burst's containers wait for its
 * template: every accepted invocation is answered, and ignisd lives on. A delete destroys the
 * waiting containers and retires the template (the sanitize build: nothing freed is touched,
 * nothing leaks); a new version moves them to the old version's state while the template stays
 * the function's, and once the template goes on they are all forked from it. */
static void waiting_through(struct ignisd_proc *p, const char *prefix, bool delete)
{
    char name[32], path[128];
    struct harness_call calls[BURST], del;
    pid_t tpl = burst_waiting(p, prefix, name, calls);
    snprintf(path, sizeof(path), "/v1/functions/%s", name);
    int i;
    if (delete) {
        harness_call_start(&del, p, "DELETE", path, NULL, 0);
        for (i = 0; i < 100 && refused_status(p, name) != 404; i++)
            ;
        assert_true(i < 100);
    } else {
        /* A version on another runtime is not templated: its spawns leave the first version's
         * template alone (another template key would retire it, and hand the containers waiting
         * for it over to the usual way). */
        harness_push(p, "hello-exec", name, "{\"max_scale\": 16}");
    }
    assert_int_equal(kill(tpl, SIGCONT), 0);
    if (delete) {
        for (i = 0; i < BURST; i++) {
            harness_call_join(&calls[i]);
            if (calls[i].status != 200 && calls[i].status != 404)
                fail_msg("invocation %d of the burst: %ld", i, calls[i].status);
            harness_call_clear(&calls[i]);
        }
        harness_call_join(&del);
        assert_int_equal(del.status, 200);
        harness_call_clear(&del);
    } else {
        assert_int_equal(burst_join(calls, 200), BURST);
        assert_int_equal(harness_invoke(p, name, "{}", NULL, NULL), 200); /* the new version */
    }
    struct client_response r;
    assert_int_equal(harness_request(p, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);
}

static void test_deleted_while_template_waited_for(void **state)
{
    waiting_through(*state, "tw", true);
}

static void test_new_version_while_template_waited_for(void **state)
{
    waiting_through(*state, "tn", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_containers_share_nothing),
        cmocka_unit_test(test_isolation_through_template),
        cmocka_unit_test(test_network_through_template),
        cmocka_unit_test(test_read_only_through_template),
        cmocka_unit_test(test_host_files_through_template),
        cmocka_unit_test(test_refused_through_template),
        cmocka_unit_test(test_pid1_and_host_through_template),
        cmocka_unit_test(test_other_abi_through_template),
        cmocka_unit_test(test_container_view_through_template),
        cmocka_unit_test(test_secrets_through_template),
        cmocka_unit_test(test_nothing_left_through_template),
        cmocka_unit_test(test_memory_limit_through_template),
        cmocka_unit_test(test_fork_bomb_through_template),
        cmocka_unit_test(test_cpu_quota_through_template),
        cmocka_unit_test(test_killed_template_is_replaced),
        cmocka_unit_test(test_new_version_replaces_template),
        cmocka_unit_test(test_templates_off),
        cmocka_unit_test(test_burst_of_fresh_invocations),
        cmocka_unit_test(test_many_live_forked_containers),
        cmocka_unit_test(test_forks_pending_when_deleted),
        cmocka_unit_test(test_forks_pending_when_new_version),
        cmocka_unit_test(test_template_dies_while_waited_for),
        cmocka_unit_test(test_deleted_while_template_waited_for),
        cmocka_unit_test(test_new_version_while_template_waited_for),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
