/* ignisd's skeleton end to end: health, version, JSON errors, the CLI, start-up failures that
 * name their cause, and clean shutdown on SIGTERM and SIGINT. */
#include "harness.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "config.h"
#include "records/store-internal.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    int status = harness_stop(&daemon_proc);
    int leaks = harness_cleanup(&daemon_proc);
    if (status != 0)
        fprintf(stderr, "ignisd exited with %d on SIGTERM, expected 0\n", status);
    return status == 0 && leaks == 0 ? 0 : -1;
}

static cJSON *get_json(const char *method, const char *path, long expect_status)
{
    struct client_response resp;
    assert_int_equal(harness_request(&daemon_proc, method, path, NULL, NULL, 0, &resp), 0);
    assert_int_equal(resp.status, expect_status);
    char ct[128];
    assert_non_null(client_response_header(&resp, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/json");
    cJSON *root = cJSON_Parse(resp.body);
    client_response_clear(&resp);
    assert_non_null(root);
    return root;
}

static void test_healthz(void **state)
{
    cJSON *root = get_json("GET", "/healthz", 200);
    assert_string_equal(cJSON_GetObjectItem(root, "status")->valuestring, "ok");
    cJSON_Delete(root);
}

static void test_version(void **state)
{
    cJSON *root = get_json("GET", "/v1/version", 200);
    assert_string_equal(cJSON_GetObjectItem(root, "version")->valuestring, IGNIS_VERSION);
    assert_int_equal(cJSON_GetObjectItem(root, "schema")->valueint, store_schema_version());
    cJSON_Delete(root);
}

static void assert_error(cJSON *root, const char *code)
{
    cJSON *e = cJSON_GetObjectItem(root, "error");
    assert_non_null(e);
    assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, code);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
    assert_true(strlen(cJSON_GetObjectItem(e, "message")->valuestring) > 0);
}

static void test_unknown_route_is_json_404(void **state)
{
    const char *paths[] = {"/", "/nope", "/v1", "/v1/version/extra", "/healthz/", "/v2/version"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        cJSON *root = get_json("GET", paths[i], 404);
        assert_error(root, "not_found");
        cJSON_Delete(root);
    }
}

static void test_wrong_method_is_405(void **state)
{
    cJSON *root = get_json("DELETE", "/healthz", 405);
    assert_error(root, "method_not_allowed");
    cJSON_Delete(root);
}

static void test_body_on_bodiless_route_is_413(void **state)
{
    struct client_response resp;
    assert_int_equal(
        harness_request(&daemon_proc, "GET", "/v1/version", NULL, "0123456789", 10, &resp), 0);
    assert_int_equal(resp.status, 413);
    client_response_clear(&resp);
    /* The daemon still answers afterwards. */
    cJSON_Delete(get_json("GET", "/healthz", 200));
}

static void test_cli_version(void **state)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "version", NULL), 0);
    char want_client[64], want_server[64];
    snprintf(want_client, sizeof(want_client), "ignis %s\n", IGNIS_VERSION);
    snprintf(want_server, sizeof(want_server), "ignisd %s (", IGNIS_VERSION);
    assert_non_null(strstr(out, want_client));
    assert_non_null(strstr(out, want_server));
    free(out);
    free(err);
}

static void test_cli_unreachable(void **state)
{
    char *out = NULL, *err = NULL, url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", harness_free_port());
    char *argv[] = {(char *)harness_cli(), "--server", url, "version", NULL};
    assert_int_equal(harness_run(argv, &out, &err), 1);
    /* One line, naming the server. */
    assert_non_null(strstr(err, url));
    assert_non_null(strchr(err, '\n'));
    assert_int_equal(strchr(err, '\n')[1], '\0');
    free(out);
    free(err);
}

/* Runs ignisd expecting it to fail at start; returns the last line of its stderr, which must be
 * the one-line reason (log lines from before the failure may precede it). */
static char *ignisd_fails(const char *listen, const char *state_dir, int expect_status)
{
    char *out = NULL, *err = NULL;
    char *argv[] = {(char *)harness_ignisd(), "--listen", (char *)listen, "--state-dir",
                    (char *)state_dir,        NULL};
    assert_int_equal(harness_run(argv, &out, &err), expect_status);
    free(out);
    assert_non_null(err);
    size_t len = strlen(err);
    assert_true(len > 1 && err[len - 1] == '\n');
    err[len - 1] = '\0';
    char *last = strrchr(err, '\n');
    last = last ? last + 1 : err;
    assert_true(startswith(last, "ignisd: "));
    char *line = strdup(last);
    free(err);
    return line;
}

/* ignisd logging into a pipe whose reader went away (a logger that died) goes on: its next log
 * line is an EPIPE, not a SIGPIPE that ends it. Here: the reader closes once ignisd started,
 * and SIGTERM makes it log "shutting down" and more; it must exit 0, not die of SIGPIPE. */
static void test_log_reader_gone(void **state)
{
    char listen[64], dir[] = "/tmp/ignis-test-pipe.XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        dup2(p[1], STDOUT_FILENO);
        const char *images = getenv("IGNIS_IMAGES_DIR");
        execl(harness_ignisd(), harness_ignisd(), "--listen", listen, "--state-dir", dir,
              "--images-dir", images && *images ? images : "/nonexistent", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    /* Read until it says it started (the log's "ignisd started" line), then go away. */
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0) {
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "ignisd started"))
            break;
    }
    assert_non_null(strstr(buf, "ignisd started"));
    close(p[0]);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("ignisd died of signal %d once its log's reader was gone", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    rm_rf(dir);
}

static void test_port_in_use(void **state)
{
    char listen[64], dir[] = "/tmp/ignis-test-port.XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", daemon_proc.port);
    char *err = ignisd_fails(listen, dir, 1);
    assert_non_null(strstr(err, listen));
    assert_non_null(strstr(err, "Address already in use"));
    free(err);
    rm_rf(dir);
}

/* A second ignisd on a state dir in use stops at once with the first one's pid, and touches
 * nothing: the first one's warm container (and its cgroup) still serves. Before the lock, the
 * second one removed the first one's container cgroups as stale, and the next invocation failed
 * with 502 ("joining cgroup ... No such file"). */
static void test_second_daemon_on_state_dir(void **state)
{
    harness_require_root();
    harness_push(&daemon_proc, "hello-exec", "locked", "{\"reuse\": true}");
    struct client_response resp;
    assert_int_equal(harness_invoke(&daemon_proc, "locked", "a", NULL, &resp), 200);
    client_response_clear(&resp);
    int cgroups = harness_count_cgroups(&daemon_proc, "c-");
    assert_true(cgroups > 0);

    char listen[64], expect[400];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    char *err = ignisd_fails(listen, daemon_proc.state_dir, 1);
    snprintf(expect, sizeof(expect), "ignisd: state dir %s is in use by ignisd pid %d",
             daemon_proc.state_dir, (int)daemon_proc.pid);
    if (!streq(err, expect))
        fail_msg("expected '%s', got '%s'", expect, err);
    free(err);

    assert_int_equal(harness_count_cgroups(&daemon_proc, "c-"), cgroups);
    assert_int_equal(harness_invoke(&daemon_proc, "locked", "b", NULL, &resp), 200);
    client_response_clear(&resp);
}

static void test_state_dir_not_writable(void **state)
{
    char file[] = "/tmp/ignis-test-file.XXXXXX", dir[300], listen[64];
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    close(fd);
    /* A path beneath a regular file can be neither created nor written, even by root. */
    snprintf(dir, sizeof(dir), "%s/state", file);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    char *err = ignisd_fails(listen, dir, 1);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, "Not a directory"));
    free(err);
    unlink(file);
}

static void test_newer_schema_refused(void **state)
{
    char dir[] = "/tmp/ignis-test-schema.XXXXXX", db[300], listen[64];
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/ignis.db", dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 999;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    char *err = ignisd_fails(listen, dir, 1);
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, "999"));
    free(err);
    rm_rf(dir);
}

static void test_state_dir_mode(void **state)
{
    struct stat st;
    assert_int_equal(stat(daemon_proc.state_dir, &st), 0);
    /* mkdtemp made it 0700 already; check a dir ignisd creates itself. */
    char dir[300], listen[64];
    snprintf(dir, sizeof(dir), "%s-sub/a/b", daemon_proc.state_dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", daemon_proc.port);
    char *err = ignisd_fails(listen, dir, 1); /* the port is taken, but the dir comes first */
    free(err);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(dir, sizeof(dir), "%s-sub", daemon_proc.state_dir);
    rm_rf(dir);
}

/* `ignisd --check-config` on the daemon's state dir and store, with extra options; its stdout. */
static char *check_config(const char *extra1, const char *extra2)
{
    char target[4200], *out = NULL, *err = NULL;
    harness_store_target(&daemon_proc, target, sizeof(target));
    char *argv[] = {(char *)harness_ignisd(),
                    "--check-config",
                    "--state-dir",
                    daemon_proc.state_dir,
                    (char *)extra1,
                    (char *)extra2,
                    "--store",
                    target,
                    NULL};
    if (!harness_on_postgresql())
        argv[6] = NULL; /* SQLite's is the state dir's */
    assert_int_equal(harness_run(argv, &out, &err), 0);
    free(err);
    return out;
}

/* The host id (a cluster's name for this host) is made at the first start, kept in the state
 * dir, the same after a restart; a configured one wins; a file that holds no id stops the start
 * with the reason rather than making the host another one. */
static void test_host_id_kept(void **state)
{
    char path[300], expect[64];
    _cleanup_free_ char *id = NULL, *again = NULL;
    snprintf(path, sizeof(path), "%s/host-id", daemon_proc.state_dir);
    assert_int_equal(read_file(path, 64, &id, NULL), 0);
    assert_int_equal(strlen(id), 17);
    assert_int_equal(id[16], '\n');
    id[16] = '\0';
    assert_true(hex_valid(id, 16));

    assert_int_equal(harness_stop(&daemon_proc), 0);
    assert_int_equal(harness_restart(&daemon_proc, NULL), 0);
    assert_int_equal(read_file(path, 64, &again, NULL), 0);
    assert_true(startswith(again, id));
    char *out = check_config("--log-level", "info");
    snprintf(expect, sizeof(expect), "host_id=%s\n", id);
    if (!strstr(out, expect))
        fail_msg("expected \"%s\" in: %s", expect, out);
    free(out);
    out = check_config("--host-id", "web-1.example");
    assert_non_null(strstr(out, "host_id=web-1.example\n"));
    free(out);

    char dir[] = "/tmp/ignis-test-hostid.XXXXXX", file[300], listen[64];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/host-id", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("not an id!\n", f);
    fclose(f);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    char *err = ignisd_fails(listen, dir, 1);
    snprintf(expect, sizeof(expect), "%s/host-id: not a host id", dir);
    if (!strstr(err, expect))
        fail_msg("expected \"%s\" in: %s", expect, err);
    free(err);
    rm_rf(dir);
}

/* SIGINT stops it as cleanly as SIGTERM, even with an idle keep-alive connection open. */
static void test_sigint_with_open_connection(void **state)
{
    struct ignisd_proc p;
    assert_int_equal(harness_start(&p, NULL), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(p.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* A request whose headers never finish. */
    const char partial[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    assert_int_equal(write(fd, partial, sizeof(partial) - 1), (ssize_t)sizeof(partial) - 1);
    usleep(50000);
    kill(p.pid, SIGINT);
    int wstatus;
    uint64_t deadline = now_usec() + 10000000;
    pid_t r = 0;
    while (now_usec() < deadline && (r = waitpid(p.pid, &wstatus, WNOHANG)) == 0)
        usleep(10000);
    assert_int_equal(r, p.pid);
    p.pid = 0;
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 0);
    close(fd);
    assert_int_equal(harness_cleanup(&p), 0);
}

static void test_help_and_version(void **state)
{
    char *out = NULL, *err = NULL;
    char *help[] = {(char *)harness_ignisd(), "--help", NULL};
    assert_int_equal(harness_run(help, &out, &err), 0);
    assert_non_null(strstr(out, "--state-dir"));
    free(out);
    free(err);
    char *version[] = {(char *)harness_ignisd(), "--version", NULL};
    assert_int_equal(harness_run(version, &out, &err), 0);
    assert_non_null(strstr(out, IGNIS_VERSION));
    free(out);
    free(err);
    char *bad[] = {(char *)harness_ignisd(), "--listen", "nonsense", NULL};
    assert_int_equal(harness_run(bad, &out, &err), 2);
    assert_non_null(strstr(err, "nonsense"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_unknown_route_is_json_404),
        cmocka_unit_test(test_wrong_method_is_405),
        cmocka_unit_test(test_body_on_bodiless_route_is_413),
        cmocka_unit_test(test_cli_version),
        cmocka_unit_test(test_cli_unreachable),
        cmocka_unit_test(test_log_reader_gone),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_second_daemon_on_state_dir),
        cmocka_unit_test(test_state_dir_not_writable),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_state_dir_mode),
        cmocka_unit_test(test_host_id_kept),
        cmocka_unit_test(test_sigint_with_open_connection),
        cmocka_unit_test(test_help_and_version),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
