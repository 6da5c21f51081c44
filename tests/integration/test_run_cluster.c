/* `./scripts/run --cluster 3` as a user runs it (issue #17, "try it on one machine"): in a
 * checkout of its own (a temp dir, 0700 like /root, of links to this source tree and build, its
 * images the tests' own), it makes a PostgreSQL under ./var/pg, letting the postgres user through
 * the directories above it, starts three hosts on consecutive ports from --listen's, deploys the
 * examples once; each host answers an invocation and lists the three hosts. A Ctrl-C (SIGINT to
 * the script's process group, as a terminal sends it) stops every host and then the server, and
 * the script exits 0 with nothing of it left running; a second start reuses the server's data,
 * and a TERM sent to the script alone stops all of it as well. */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#define HOSTS 3

static char dir[64], log_path[128];
static uint16_t base_port;
static pid_t script = -1;

/* A port p with p + 1 .. p + HOSTS - 1 free as well. */
static uint16_t free_ports(void)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        uint16_t p = harness_free_port();
        bool ok = p < 65535 - HOSTS;
        for (uint16_t k = 1; ok && k < HOSTS; k++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_port = htons(p + k),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
            if (fd >= 0)
                close(fd);
        }
        if (ok)
            return p;
    }
    fail_msg("no %d consecutive free ports", HOSTS);
    return 0;
}

/* The processes whose working directory is in the checkout: the script, its hosts (which stay
 * there) and the server (in var/pg); each printed when print is set. */
static int running_here(bool print)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    size_t len = strlen(dir);

    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], cwd[4096];
        snprintf(path, sizeof(path), "/proc/%s/cwd", de->d_name);
        ssize_t r = readlink(path, cwd, sizeof(cwd) - 1);
        if (r < 0)
            continue;
        cwd[r] = '\0';
        if (strncmp(cwd, dir, len) != 0 || (cwd[len] != '\0' && cwd[len] != '/'))
            continue;
        n++;
        if (print) {
            char *cmd = NULL;
            size_t clen;
            snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
            if (read_file(path, 4096, &cmd, &clen) == 0) {
                for (size_t i = 0; i + 1 < clen; i++)
                    if (cmd[i] == '\0')
                        cmd[i] = ' ';
                fprintf(stderr, "still running: %s (%s)\n", de->d_name, cmd);
                free(cmd);
            }
        }
    }
    if (d)
        closedir(d);
    return n;
}

static void print_run_log(void)
{
    char *text = NULL;
    if (read_file(log_path, 1 << 20, &text, NULL) == 0) {
        fprintf(stderr, "---- scripts/run's output ----\n%s---- end ----\n", text);
        free(text);
    }
}

static void link_to(const char *target, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(symlink(target, path), 0);
}

static int setup(void **state)
{
    harness_require_root();
    if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) < 0)
        harness_skip("PostgreSQL 15 is not installed (scripts/deps installs it)");
    strcpy(dir, "/tmp/ignis-run.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(log_path, sizeof(log_path), "%s/run.log", dir);
    /* The checkout: what scripts/run reads, linked; ./var its own, with the images the tests
     * use (the same inputs, so scripts/build-images finds them current and builds nothing). */
    char path[512];
    snprintf(path, sizeof(path), "%s/scripts", getenv("IGNIS_SOURCE_DIR"));
    link_to(path, "scripts");
    snprintf(path, sizeof(path), "%s/runtime-images", getenv("IGNIS_SOURCE_DIR"));
    link_to(path, "runtime-images");
    link_to(getenv("IGNIS_BUILD_DIR"), "build");
    snprintf(path, sizeof(path), "%s/var", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    link_to(getenv("IGNIS_IMAGES_DIR"), "var/images");
    base_port = free_ports();
    return 0;
}

/* Starts scripts/run --cluster HOSTS in its own process group, as a shell starts a job, with its
 * output in the log; returns once it says it is ready. */
static void start(void)
{
    char run[128], listen[32];
    snprintf(run, sizeof(run), "%s/scripts/run", dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", base_port);
    script = fork();
    assert_true(script >= 0);
    if (script == 0) {
        setpgid(0, 0);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || null < 0 || chdir(dir) < 0)
            _exit(127);
        dup2(null, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        /* What the script sets itself, or finds by default (./build). */
        unsetenv("IGNIS_BUILD");
        unsetenv("IGNIS_URL");
        unsetenv("IGNIS_TOKEN");
        execl("/bin/sh", "sh", run, "--cluster", "3", "--listen", listen, (char *)NULL);
        _exit(127);
    }
    setpgid(script, script);
    for (int i = 0; i < 3000; i++) {
        if (harness_file_contains(log_path, "Ctrl-C stops the hosts, then the server."))
            return;
        int wstatus;
        if (waitpid(script, &wstatus, WNOHANG) == script) {
            script = -1;
            print_run_log();
            fail_msg("scripts/run --cluster 3 exited before it was ready");
        }
        usleep(100000);
    }
    print_run_log();
    fail_msg("scripts/run --cluster 3 was not ready within 300 s");
}

/* Host k (0-based) as the CLI reaches it, with the admin token the first host made. */
static struct ignisd_proc host(unsigned k)
{
    struct ignisd_proc p = {.port = (uint16_t)(base_port + k)};
    char path[256], *token = NULL;
    snprintf(p.url, sizeof(p.url), "http://127.0.0.1:%u", p.port);
    snprintf(path, sizeof(path), "%s/var/host-1/admin.token", dir);
    assert_int_equal(read_file(path, sizeof(p.token), &token, NULL), 0);
    snprintf(p.token, sizeof(p.token), "%s", token);
    p.token[strcspn(p.token, "\n")] = '\0';
    free(token);
    return p;
}

/* Every host answers an invocation of each of two examples, run by some host of the three, and
 * lists the three hosts live. */
static void check_serving(void)
{
    for (unsigned k = 0; k < HOSTS; k++) {
        struct ignisd_proc p = host(k);
        const char *const functions[] = {"hello-exec", "hello-python"};
        for (size_t i = 0; i < ARRAY_SIZE(functions); i++) {
            char *out = NULL, *err = NULL;
            int r = harness_ignis(&p, &out, &err, "invoke", functions[i], "-d",
                                  "{\"name\": \"run\"}", "--json", NULL);
            if (r != 0) {
                print_run_log();
                fail_msg("ignis invoke %s on %s: %d %s%s", functions[i], p.url, r, out, err);
            }
            cJSON *j = cJSON_Parse(out);
            assert_non_null(j);
            const cJSON *ran = cJSON_GetObjectItem(j, "host");
            assert_true(cJSON_IsString(ran));
            assert_true(streq(ran->valuestring, "host-1") || streq(ran->valuestring, "host-2") ||
                        streq(ran->valuestring, "host-3"));
            cJSON_Delete(j);
            free(out);
            free(err);
        }
        char *out = NULL, *err = NULL;
        assert_int_equal(harness_ignis(&p, &out, &err, "hosts", NULL), 0);
        if (!strstr(out, "3 live"))
            fail_msg("ignis hosts on %s: %s", p.url, out);
        free(out);
        free(err);
    }
}

/* Once stopped, the script exits 0 within 60 s and nothing of it runs. */
static void check_stopped(void)
{
    int wstatus = 0;
    pid_t r = 0;
    for (int i = 0; i < 600 && (r = waitpid(script, &wstatus, WNOHANG)) == 0; i++)
        usleep(100000);
    if (r != script) {
        print_run_log();
        fail_msg("scripts/run did not exit within 60 s of the stop");
    }
    script = -1;
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        print_run_log();
        fail_msg("scripts/run exited with status %#x, expected 0", wstatus);
    }
    /* The hosts drained before the server stopped (it stops last, so a host never lost it). */
    if (running_here(true) != 0) {
        print_run_log();
        fail_msg("processes of scripts/run --cluster are still running");
    }
    char pidfile[128];
    snprintf(pidfile, sizeof(pidfile), "%s/var/pg/postmaster.pid", dir);
    assert_int_equal(access(pidfile, F_OK), -1);
}

static void test_ctrl_c_then_term(void **state)
{
    start();
    /* The temp dir is 0700, like /root: the postgres user was let through it and ./var. */
    char said[160];
    snprintf(said, sizeof(said), "the postgres user may now pass through %s (", dir);
    assert_true(harness_file_contains(log_path, said));
    check_serving();
    /* Ctrl-C: the terminal signals the foreground job's process group. */
    assert_int_equal(kill(-script, SIGINT), 0);
    check_stopped();

    /* Again, on the server's data of the first start (nothing to let through this time), the
     * functions there; stopped by a TERM to the script alone, as a service manager sends it. */
    assert_int_equal(truncate(log_path, 0), 0);
    start();
    assert_false(harness_file_contains(log_path, "may now pass through"));
    check_serving();
    assert_int_equal(kill(script, SIGTERM), 0);
    check_stopped();
}

/* What a failed test left: the script and its hosts (its process group), the server; then each
 * host's cgroups, mounts and the dir. */
static int teardown(void **state)
{
    int leaks = 0;
    if (script > 0) {
        /* As a Ctrl-C would, so that the hosts remove their cgroups; else at once. */
        kill(-script, SIGINT);
        kill(script, SIGTERM);
        for (int i = 0; i < 300 && waitpid(script, NULL, WNOHANG) == 0; i++)
            usleep(100000);
        kill(-script, SIGKILL);
        waitpid(script, NULL, 0);
    }
    char path[256], *text = NULL;
    snprintf(path, sizeof(path), "%s/var/pg/postmaster.pid", dir);
    if (read_file(path, 4096, &text, NULL) == 0) {
        pid_t pg = (pid_t)atoi(text);
        if (pg > 0 && kill(pg, SIGINT) == 0)
            for (int i = 0; i < 100 && kill(pg, 0) == 0; i++)
                usleep(100000);
        free(text);
    }
    for (unsigned k = 1; k <= HOSTS; k++) {
        struct ignisd_proc p = {};
        snprintf(p.state_dir, sizeof(p.state_dir), "%s/var/host-%u", dir, k);
        if (access(p.state_dir, F_OK) == 0 && harness_cleanup(&p) < 0)
            leaks++;
    }
    if (running_here(true))
        leaks++;
    rm_rf(dir);
    return leaks ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctrl_c_then_term),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
