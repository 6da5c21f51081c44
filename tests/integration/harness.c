#include "harness.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/util.h"
#include "pgserver.h"

void harness_skip(const char *fmt, ...)
{
    va_list ap;
    const char *must = getenv("IGNIS_MUST_WORK");
    bool fail = must && streq(must, "1");

    fprintf(stderr, fail ? "FAIL (IGNIS_MUST_WORK=1 forbids skipping): " : "SKIP: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(fail ? 1 : 77);
}

void harness_require_root(void)
{
    if (geteuid() != 0)
        harness_skip("needs root (namespaces, cgroups)");
}

static const char *env_or_die(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "%s is not set: run the tests through meson test\n", name);
        exit(1);
    }
    return v;
}

const char *harness_ignisd(void)
{
    return env_or_die("IGNISD");
}

const char *harness_cli(void)
{
    return env_or_die("IGNIS_CLI");
}

uint16_t harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("harness_free_port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

void harness_print_log(const struct ignisd_proc *p)
{
    char *text = NULL;
    if (read_file(p->log_path, 1 << 20, &text, NULL) == 0) {
        fprintf(stderr, "---- ignisd log (%s) ----\n%s---- end of log ----\n", p->log_path, text);
        free(text);
    }
}

bool harness_file_contains(const char *path, const char *needle)
{
    char *text = NULL;
    size_t len;
    if (read_file(path, 64 << 20, &text, &len) < 0)
        return false;
    bool found = memmem(text, len, needle, strlen(needle)) != NULL;
    free(text);
    return found;
}

int harness_wait_exit(struct ignisd_proc *p, unsigned seconds)
{
    int wstatus;
    for (unsigned i = 0; i < seconds * 100; i++) {
        if (waitpid(p->pid, &wstatus, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
        }
        usleep(10 * 1000);
    }
    harness_print_log(p);
    fail_msg("the daemon did not exit of itself within %u s", seconds);
    return -1;
}

int harness_log_count(const struct ignisd_proc *p, const char *text)
{
    FILE *f = fopen(p->log_path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, text) != NULL;
    fclose(f);
    return n;
}

bool harness_log_has(const struct ignisd_proc *p, const char *text)
{
    return harness_file_contains(p->log_path, text);
}

char *harness_log_line(const struct ignisd_proc *p, const char *text)
{
    FILE *f = fopen(p->log_path, "r");
    char line[4096], *found = NULL;
    while (f && !found && fgets(line, sizeof(line), f))
        if (strstr(line, text))
            found = strdup(line);
    if (f)
        fclose(f);
    return found;
}

/* Calls fn with every cgroup directory this process is in, one per hierarchy (v1 controllers,
 * named hierarchies, and the cgroup2 mount on hybrid or unified hosts). */
static int for_each_own_cgroup(int (*fn)(const char *dir, void *userdata), void *userdata)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
    char line[1024];
    int n = 0;

    while (f && fgets(line, sizeof(line), f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        char *path = c2 + 1;
        path[strcspn(path, "\n")] = '\0';
        const char *ctrl = c1 + 1;
        char base[2048];
        if (!*ctrl) {
            snprintf(base, sizeof(base), "/sys/fs/cgroup/unified%s", path);
            if (access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) < 0)
                snprintf(base, sizeof(base), "/sys/fs/cgroup%s", path); /* pure v2 */
        } else if (startswith(ctrl, "name="))
            snprintf(base, sizeof(base), "/sys/fs/cgroup/%s%s", ctrl + 5, path);
        else {
            /* A comma-joined hierarchy ("cpu,cpuacct") is mounted under that joined name. */
            snprintf(base, sizeof(base), "/sys/fs/cgroup/%s%s", ctrl, path);
        }
        n += fn(base, userdata);
    }
    return n;
}

static int check_subtree_gone(const char *dir, void *userdata)
{
    char path[2200];
    snprintf(path, sizeof(path), "%s/ignis-%s", dir, (const char *)userdata);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "leak: cgroup %s is still there\n", path);
        return 1;
    }
    return 0;
}

/* The daemon writes its first admin token before it serves: read it for p->client and
 * harness_push, and export it when the process has none yet. */
static int pick_up_token(struct ignisd_proc *p)
{
    char path[300], *text = NULL;
    snprintf(path, sizeof(path), "%s/admin.token", p->state_dir);
    if (read_file(path, sizeof(p->token) - 1, &text, NULL) < 0) {
        fprintf(stderr, "no admin token at %s\n", path);
        return -1;
    }
    text[strcspn(text, "\r\n")] = '\0';
    snprintf(p->token, sizeof(p->token), "%s", text);
    free(text);
    const char *env = getenv("IGNIS_TOKEN");
    if (!env || !*env)
        setenv("IGNIS_TOKEN", p->token, 1);
    return client_set_token(p->client, p->token) < 0 ? -1 : 0;
}

/* A daemon on a new state dir adopts the token the test process already uses, so that CLI
 * children with $IGNIS_TOKEN reach every daemon the harness started. */
static void provision_token(struct ignisd_proc *p)
{
    const char *env = getenv("IGNIS_TOKEN");
    char path[300];
    snprintf(path, sizeof(path), "%s/admin.token", p->state_dir);
    if (!env || !*env || access(path, F_OK) == 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, env, strlen(env)) != (ssize_t)strlen(env)) {
        perror("provisioning admin.token");
        exit(1);
    }
    close(fd);
}

struct count_cgroups {
    const char *id, *prefix;
    int n;
};

static int count_in_subtree(const char *dir, void *userdata)
{
    struct count_cgroups *c = userdata;
    char path[2200];
    snprintf(path, sizeof(path), "%s/ignis-%s", dir, c->id);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_type == DT_DIR && startswith(de->d_name, c->prefix))
            c->n++;
    if (d)
        closedir(d);
    return 0;
}

int harness_count_cgroups(const struct ignisd_proc *p, const char *prefix)
{
    char id[17];
    if (instance_id(p->state_dir, id) < 0)
        return 0;
    struct count_cgroups c = {.id = id, .prefix = prefix};
    for_each_own_cgroup(count_in_subtree, &c);
    return c.n;
}

int harness_wait_healthy(struct ignisd_proc *p)
{
    if (!p->client && client_new(p->url, &p->client) < 0)
        return -1;
    uint64_t deadline = now_usec() + 10000000;
    while (now_usec() < deadline) {
        struct client_response resp;
        struct ig_error err = {};
        if (client_request(p->client, "GET", "/healthz", NULL, NULL, 0, &resp, &err) == 0) {
            long status = resp.status;
            client_response_clear(&resp);
            if (status == 200)
                return pick_up_token(p);
        }
        int wstatus;
        if (p->pid > 0 && waitpid(p->pid, &wstatus, WNOHANG) == p->pid) {
            p->pid = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

static struct rlimit nofile_for_daemons;

void harness_set_nofile(unsigned long soft, unsigned long hard)
{
    nofile_for_daemons = (struct rlimit){soft, hard};
}

/* The test process's PostgreSQL server (harness_on_postgresql), and the process that started
 * it: a child the test forked that exits runs the atexit handlers too, and must leave it be. */
static struct pgserver *test_pg;
static pid_t test_pg_owner;

bool harness_on_postgresql(void)
{
    const char *store = getenv("IGNIS_TEST_STORE");
    return store && streq(store, "postgresql");
}

void harness_store_target(const struct ignisd_proc *p, char *buf, size_t size)
{
    if (p->store[0])
        snprintf(buf, size, "%s", p->store);
    else
        snprintf(buf, size, "%s/ignis.db", p->state_dir);
}

static void stop_test_pg(void)
{
    if (test_pg && getpid() == test_pg_owner && pgserver_free(test_pg) < 0)
        fprintf(stderr, "the tests' PostgreSQL server did not stop cleanly\n");
    test_pg = NULL;
}

/* A fresh database for p's daemon, on PostgreSQL; nothing on SQLite. */
static int make_store(struct ignisd_proc *p)
{
    const char *store = getenv("IGNIS_TEST_STORE");
    if (!store || !*store || streq(store, "sqlite"))
        return 0;
    if (!harness_on_postgresql()) {
        fprintf(stderr, "IGNIS_TEST_STORE=%s: expected sqlite or postgresql\n", store);
        return -1;
    }
    if (!test_pg) {
        if (pgserver_new(&test_pg) < 0)
            return -1;
        test_pg_owner = getpid();
        atexit(stop_test_pg);
    }
    char *conninfo;
    if (pgserver_new_database(test_pg, &conninfo) < 0)
        return -1;
    snprintf(p->store, sizeof(p->store), "%s", conninfo);
    free(conninfo);
    return 0;
}

static int start_daemon(struct ignisd_proc *p, const char *const *extra_args)
{
    const char *argv[32];
    size_t n = 0;
    char listen[64];

    for (int attempt = 0; attempt < 5; attempt++) {
        p->port = harness_free_port();
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", p->port);
        /* With a certificate it serves HTTPS (verified with $IGNIS_CACERT, client.h). */
        bool tls = false;
        for (const char *const *a = extra_args; a && *a; a++)
            tls = tls || streq(*a, "--tls-cert");
        snprintf(p->url, sizeof(p->url), "%s://127.0.0.1:%u", tls ? "https" : "http", p->port);
        n = 0;
        argv[n++] = harness_ignisd();
        argv[n++] = "--listen";
        argv[n++] = listen;
        argv[n++] = "--state-dir";
        argv[n++] = p->state_dir;
        argv[n++] = "--log-level";
        argv[n++] = "debug";
        /* Tests share one set of images built by meson's test setup (scripts/build-images). */
        const char *images = getenv("IGNIS_IMAGES_DIR");
        if (images && *images) {
            argv[n++] = "--images-dir";
            argv[n++] = images;
        }
        if (p->store[0]) {
            argv[n++] = "--store";
            argv[n++] = p->store;
        }
        for (const char *const *a = extra_args; a && *a && n < ARRAY_SIZE(argv) - 1; a++)
            argv[n++] = *a;
        argv[n] = NULL;
        provision_token(p);

        p->pid = fork();
        if (p->pid < 0)
            return -1;
        if (p->pid == 0) {
            /* A test that fails an assertion never reaches harness_finish: its daemon then stops
             * (and cleans up) when the test process ends, instead of running on. */
            if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
                _exit(127);
            if (nofile_for_daemons.rlim_max && setrlimit(RLIMIT_NOFILE, &nofile_for_daemons) < 0)
                _exit(127);
            int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd >= 0) {
                dup2(fd, STDERR_FILENO);
                dup2(fd, STDOUT_FILENO);
            }
            execv(argv[0], (char *const *)argv);
            _exit(127);
        }
        if (harness_wait_healthy(p) == 0)
            return 0;
        /* It exited (maybe the port was taken meanwhile: try another) or never answered. */
        client_free(p->client);
        p->client = NULL;
        if (p->pid > 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            p->pid = 0;
            break;
        }
    }
    fprintf(stderr, "ignisd did not come up\n");
    harness_print_log(p);
    return -1;
}

int harness_start(struct ignisd_proc *p, const char *const *extra_args)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->state_dir, sizeof(p->state_dir), "/tmp/ignis-test.XXXXXX");
    if (!mkdtemp(p->state_dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(p->log_path, sizeof(p->log_path), "%s.log", p->state_dir);
    if (make_store(p) < 0)
        return -1;
    return start_daemon(p, extra_args);
}

int harness_start_in(struct ignisd_proc *p, const char *state_dir, const char *const *extra_args)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->state_dir, sizeof(p->state_dir), "%s", state_dir);
    snprintf(p->fixtures, sizeof(p->fixtures), "/tmp/ignis-test.XXXXXX");
    if (!mkdtemp(p->fixtures)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(p->log_path, sizeof(p->log_path), "%s.log", p->fixtures);
    if (make_store(p) < 0)
        return -1;
    return start_daemon(p, extra_args);
}

int harness_restart(struct ignisd_proc *p, const char *const *extra_args)
{
    if (p->pid > 0) {
        fprintf(stderr, "harness_restart: ignisd %d is still running\n", (int)p->pid);
        return -1;
    }
    client_free(p->client);
    p->client = NULL;
    return start_daemon(p, extra_args);
}

int harness_stop(struct ignisd_proc *p)
{
    int wstatus;

    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    uint64_t deadline = now_usec() + 15000000;
    while (now_usec() < deadline) {
        pid_t r = waitpid(p->pid, &wstatus, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            if (WIFEXITED(wstatus))
                return WEXITSTATUS(wstatus);
            fprintf(stderr, "ignisd died of signal %d\n", WTERMSIG(wstatus));
            harness_print_log(p);
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "ignisd did not stop within 15 s of SIGTERM\n");
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    harness_print_log(p);
    return -1;
}

/* Processes whose command line or root mentions the state dir: containers of this daemon. */
static int leaked_processes(const char *state_dir)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int leaks = 0;

    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], *text = NULL;
        size_t len;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        if (read_file(path, 1 << 16, &text, &len) < 0)
            continue;
        for (size_t i = 0; i < len; i++)
            if (text[i] == '\0')
                text[i] = ' ';
        if (strstr(text, state_dir)) {
            fprintf(stderr, "leak: process %s (%s) is still running\n", de->d_name, text);
            leaks++;
        }
        free(text);
    }
    if (d)
        closedir(d);
    return leaks;
}

static int leaked_mounts(const char *state_dir)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    int leaks = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, state_dir)) {
            fprintf(stderr, "leak: mount %s", line);
            leaks++;
        }
    return leaks;
}

/* The daemon's cgroup subtree (cgroup.h) must be gone from every hierarchy once it stopped. */
static int leaked_cgroups(const char *state_dir)
{
    char id[17];
    if (instance_id(state_dir, id) < 0)
        return 0;
    return for_each_own_cgroup(check_subtree_gone, id);
}

int harness_cleanup(struct ignisd_proc *p)
{
    int leaks = 0;

    if (p->pid > 0)
        harness_stop(p);
    client_free(p->client);
    p->client = NULL;
    leaks += leaked_processes(p->state_dir);
    leaks += leaked_mounts(p->state_dir);
    leaks += leaked_cgroups(p->state_dir);
    /* A bug the loop reports wherever it happens (loop_del_io). */
    if (harness_log_has(p, "an fd was closed before its watch was removed")) {
        fprintf(stderr, "ignisd closed an fd it still watched\n");
        leaks++;
    }
    if (leaks)
        harness_print_log(p);
    rm_rf(p->state_dir);
    if (p->fixtures[0])
        rm_rf(p->fixtures);
    unlink(p->log_path);
    return leaks ? -1 : 0;
}

const char *harness_fixtures(struct ignisd_proc *p)
{
    if (!p->fixtures[0]) {
        snprintf(p->fixtures, sizeof(p->fixtures), "%s.fixtures", p->state_dir);
        assert_int_equal(mkdir_p(p->fixtures, 0755), 0);
    }
    return p->fixtures;
}

int harness_finish(struct ignisd_proc *p)
{
    int status = harness_stop(p);
    if (status != 0)
        fprintf(stderr, "ignisd exited with %d on SIGTERM, expected 0\n", status);
    int leaks = harness_cleanup(p);
    return status == 0 && leaks == 0 ? 0 : -1;
}

int harness_request(struct ignisd_proc *p, const char *method, const char *path,
                    const char *const *headers, const void *body, size_t len,
                    struct client_response *ret)
{
    struct ig_error err = {};
    int r = client_request(p->client, method, path, headers, body, len, ret, &err);
    if (r < 0)
        fprintf(stderr, "%s %s: %s\n", method, path, err.message);
    return r;
}

long harness_invoke(struct ignisd_proc *p, const char *fn, const char *body,
                    const char *const *headers, struct client_response *ret)
{
    char path[256];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", fn);
    assert_int_equal(
        harness_request(p, "POST", path, headers, body, body ? strlen(body) : 0, ret ? ret : &r),
        0);
    long status = (ret ? ret : &r)->status;
    if (!ret)
        client_response_clear(&r);
    return status;
}

void harness_wait_until(bool (*fn)(void *arg), void *arg, unsigned seconds, const char *what,
                        struct ignisd_proc *procs, size_t n)
{
    for (unsigned i = 0; i < seconds * 20; i++) {
        if (fn(arg))
            return;
        usleep(50 * 1000);
    }
    for (size_t i = 0; i < n; i++)
        if (procs[i].pid)
            harness_print_log(&procs[i]);
    fail_msg("%s: not within %u s", what, seconds);
}

void harness_invoke_async(struct ignisd_proc *p, const char *fn, const char *body, const char *key,
                          char ret_id[64], bool *ret_duplicate)
{
    char keyh[300];
    snprintf(keyh, sizeof(keyh), "Idempotency-Key: %s", key ? key : "");
    const char *headers[] = {"Ignis-Invocation-Type: async", key ? keyh : NULL, NULL};
    struct client_response r = {};
    long status = harness_invoke(p, fn, body, headers, &r);
    if (status != 202)
        fail_msg("async %s on %s: %ld %s", fn, p->url, status, r.body);
    cJSON *j = harness_json(&r);
    snprintf(ret_id, 64, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "id")));
    if (ret_duplicate)
        *ret_duplicate = cJSON_IsTrue(cJSON_GetObjectItem(j, "duplicate"));
    cJSON_Delete(j);
    client_response_clear(&r);
}

static void *call_thread(void *arg)
{
    struct harness_call *c = arg;
    struct client *cl = NULL;
    struct client_response r;
    struct ig_error err = {};
    if (client_new(c->p->url, &cl) == 0) {
        if (c->p->token[0])
            client_set_token(cl, c->p->token);
        if (c->timeout_ms)
            client_set_timeout(cl, c->timeout_ms);
        if (client_request(cl, c->method, c->path, c->headers, c->body,
                           c->body ? strlen(c->body) : 0, &r, &err) == 0) {
            c->status = r.status;
            c->response = r;
            c->reply = r.body;
        }
    }
    client_free(cl);
    return NULL;
}

void harness_call_start(struct harness_call *c, struct ignisd_proc *p, const char *method,
                        const char *path, const char *body, long timeout_ms)
{
    harness_call_start_with(c, p, method, path, NULL, body, timeout_ms);
}

void harness_call_start_with(struct harness_call *c, struct ignisd_proc *p, const char *method,
                             const char *path, const char *const *headers, const char *body,
                             long timeout_ms)
{
    *c = (struct harness_call){.status = -1,
                               .p = p,
                               .method = method,
                               .body = body,
                               .headers = headers,
                               .timeout_ms = timeout_ms};
    snprintf(c->path, sizeof(c->path), "%s", path);
    assert_int_equal(pthread_create(&c->thread, NULL, call_thread, c), 0);
}

void harness_invoke_start(struct harness_call *c, struct ignisd_proc *p, const char *fn,
                          const char *body, long timeout_ms)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", fn);
    harness_call_start(c, p, "POST", path, body, timeout_ms);
}

void harness_call_join(struct harness_call *c)
{
    assert_int_equal(pthread_join(c->thread, NULL), 0);
}

void harness_call_clear(struct harness_call *c)
{
    client_response_clear(&c->response);
    c->reply = NULL;
}

int harness_listen_loopback(char port[16])
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(port, 16, "%u", ntohs(sa.sin_port));
    return fd;
}

double harness_metric(struct ignisd_proc *p, const char *series)
{
    struct client_response r;
    assert_int_equal(harness_request(p, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    double v = 0;
    size_t n = strlen(series);
    const char *line = r.body;
    while (line && *line) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            v = strtod(line + n + 1, NULL);
            break;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    client_response_clear(&r);
    return v;
}

static void drain(int fd, char **ret)
{
    size_t cap = 65536, len = 0;
    char *buf = calloc(1, cap + 1);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - len)) > 0)
        len += (size_t)n;
    if (ret)
        *ret = buf;
    else
        free(buf);
}

int harness_run(char *const argv[], char **ret_out, char **ret_err)
{
    int out[2], errp[2], wstatus;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(errp[1], STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(errp[1]);
    /* Outputs here are small; read stdout fully, then stderr. */
    drain(out[0], ret_out);
    drain(errp[0], ret_err);
    close(out[0]);
    close(errp[0]);
    if (waitpid(pid, &wstatus, 0) < 0)
        return -1;
    return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}

int harness_ignis(struct ignisd_proc *p, char **ret_out, char **ret_err, ...)
{
    char *argv[32] = {(char *)harness_cli(), "--server", p->url, "--token", p->token};
    size_t n = 5;
    va_list ap;
    va_start(ap, ret_err);
    for (char *a; (a = va_arg(ap, char *)) && n < ARRAY_SIZE(argv) - 1;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return harness_run(argv, ret_out, ret_err);
}

void harness_push_fixture(struct ignisd_proc *p, const char *fixture, const char *name,
                          const char *overrides)
{
    char src[512];
    snprintf(src, sizeof(src), "%s/tests/fixtures/functions/%s", getenv("IGNIS_SOURCE_DIR"),
             fixture);
    harness_push(p, src, name, overrides);
}

void harness_push(struct ignisd_proc *p, const char *example, const char *name,
                  const char *overrides)
{
    char src[512], dst[512], cmd[1200];
    if (example[0] == '/')
        snprintf(src, sizeof(src), "%s", example);
    else
        snprintf(src, sizeof(src), "%s/runtime-images/examples/%s", getenv("IGNIS_SOURCE_DIR"),
                 example);
    snprintf(dst, sizeof(dst), "%s/%s", harness_fixtures(p), name);
    rm_rf(dst);
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    char path[600], *text = NULL;
    snprintf(path, sizeof(path), "%s/function.json", dst);
    assert_int_equal(read_file(path, 1 << 16, &text, NULL), 0);
    cJSON *m = cJSON_Parse(text);
    free(text);
    assert_non_null(m);
    cJSON_ReplaceItemInObject(m, "name", cJSON_CreateString(name));
    cJSON *o = overrides ? cJSON_Parse(overrides) : NULL;
    for (cJSON *f = o ? o->child : NULL; f; f = f->next) {
        cJSON_DeleteItemFromObject(m, f->string);
        cJSON_AddItemToObject(m, f->string, cJSON_Duplicate(f, true));
    }
    cJSON_Delete(o);
    char *out = cJSON_Print(m);
    cJSON_Delete(m);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(out, fp);
    fclose(fp);
    free(out);
    char *so = NULL, *se = NULL;
    int rc = harness_ignis(p, &so, &se, "push", dst, NULL);
    if (rc != 0)
        fprintf(stderr, "ignis push %s: %s%s\n", name, so, se);
    assert_int_equal(rc, 0);
    free(so);
    free(se);
}

cJSON *harness_function(struct ignisd_proc *p, const char *name)
{
    struct client_response r;
    char path[256];
    snprintf(path, sizeof(path), "/v1/functions/%s", name);
    assert_int_equal(harness_request(p, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    if (!j)
        fprintf(stderr, "not JSON: %s\n", r.body);
    assert_non_null(j);
    client_response_clear(&r);
    return j;
}

double harness_live_number(struct ignisd_proc *p, const char *name, const char *key)
{
    cJSON *j = harness_function(p, name);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "live"), key);
    assert_true(cJSON_IsNumber(v));
    double n = v->valuedouble;
    cJSON_Delete(j);
    return n;
}

cJSON *harness_json(const struct client_response *r)
{
    cJSON *j = cJSON_Parse(r->body);
    if (!j)
        fprintf(stderr, "not JSON: %s\n", r->body);
    assert_non_null(j);
    return j;
}

cJSON *harness_wait_invocation(struct ignisd_proc *p, const char *id, const char *status,
                               int seconds)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/invocations/%s", id);
    uint64_t deadline = now_usec() + (uint64_t)seconds * 1000000;
    for (;;) {
        struct client_response r;
        assert_int_equal(harness_request(p, "GET", path, NULL, NULL, 0, &r), 0);
        cJSON *j = r.status == 200 ? cJSON_Parse(r.body) : NULL;
        client_response_clear(&r);
        const cJSON *s = cJSON_GetObjectItem(j, "status");
        if (cJSON_IsString(s) && streq(s->valuestring, status))
            return j;
        if (now_usec() > deadline) {
            char *text = j ? cJSON_Print(j) : NULL;
            fprintf(stderr, "invocation %s not %s in %d s: %s\n", id, status, seconds,
                    text ? text : "(none)");
            free(text);
            fail();
        }
        cJSON_Delete(j);
        usleep(20000);
    }
}

void harness_promtool_check(struct ignisd_proc *p, const char *text)
{
    const char *promtool = getenv("IGNIS_PROMTOOL");
    struct stat st;
    if (!promtool || stat(promtool, &st) < 0) {
        if (getenv("IGNIS_MUST_WORK") && streq(getenv("IGNIS_MUST_WORK"), "1"))
            fail_msg("promtool is missing (scripts/test installs it)");
        fprintf(stderr, "promtool is missing: the scrape is not checked by it\n");
        return;
    }
    char path[700];
    snprintf(path, sizeof(path), "%s/scrape.txt", harness_fixtures(p));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s'", promtool, path);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "promtool check metrics failed on:\n%s\n", text);
    assert_int_equal(rc, 0);
}
