/* Installing on a host: meson install into a staging root (DESTDIR), the files where an admin
 * expects them, systemd-analyze's approval of the unit, and the installed ignisd, run with its
 * installed config and the installed shim and image builder, serving a function. */
#include "harness.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char dest[64];
static const char *prefix = "/usr/local";

static char *staged(const char *rel)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s%s/%s", dest, prefix, rel);
    return p;
}

static int setup(void **state)
{
    harness_require_root();
    strcpy(dest, "/tmp/ignis-destdir.XXXXXX");
    if (!mkdtemp(dest))
        return -1;
    char *out = NULL, *err = NULL;
    char *argv[] = {
        "/usr/bin/meson", "install", "-C", getenv("IGNIS_BUILD_DIR"), "--no-rebuild", "--quiet",
        "--destdir",      dest,      NULL};
    int r = harness_run(argv, &out, &err);
    if (r != 0)
        fprintf(stderr, "meson install: %s%s\n", out, err);
    free(out);
    free(err);
    return r == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    return rm_rf(dest);
}

static void test_layout(void **state)
{
    const char *files[] = {"sbin/ignisd",
                           "bin/ignis",
                           "bin/ignis-bench",
                           "libexec/ignis-shim",
                           "libexec/ignis/ignis-exec-watchdog",
                           "libexec/ignis/ignis-lambda-relay",
                           "lib/systemd/system/ignisd.service",
                           "etc/ignis/ignisd.conf",
                           "share/man/man8/ignisd.8",
                           "share/man/man1/ignis.1",
                           "share/ignis/scripts/build-images",
                           "share/ignis/runtime-images/lib.sh",
                           "share/ignis/runtime-images/python3/build",
                           "share/ignis/runtime-images/examples/hello-exec/function.json"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++)
        if (access(staged(files[i]), F_OK) < 0) {
            fprintf(stderr, "not installed: %s\n", staged(files[i]));
            fail();
        }
    struct stat st;
    assert_int_equal(stat(staged("sbin/ignisd"), &st), 0);
    assert_true(st.st_mode & S_IXUSR);
}

static void test_unit_verifies(void **state)
{
    /* The unit names the installed paths; systemd-analyze checks that ExecStart exists, so
     * verify a copy pointing into the staging root (man pages are staged, not installed). */
    char *unit = NULL, copy[600];
    assert_int_equal(read_file(staged("lib/systemd/system/ignisd.service"), 1 << 16, &unit, NULL),
                     0);
    assert_non_null(strstr(unit, "Delegate=yes"));
    assert_non_null(strstr(unit, "KillMode=mixed"));
    assert_non_null(strstr(unit, "StateDirectory=ignis"));
    char exec_line[600];
    snprintf(exec_line, sizeof(exec_line), "ExecStart=%s --config %s\n", staged("sbin/ignisd"),
             staged("etc/ignis/ignisd.conf"));
    char *start = strstr(unit, "ExecStart="), *end = strchr(start, '\n') + 1;
    snprintf(copy, sizeof(copy), "%s/ignisd.service", dest);
    FILE *f = fopen(copy, "w");
    fprintf(f, "%.*s%s%s", (int)(start - unit), unit, exec_line, end);
    fclose(f);
    free(unit);
    if (access("/usr/bin/systemd-analyze", X_OK) < 0)
        harness_skip("systemd-analyze is not installed (Debian's systemd package)");
    char *out = NULL, *err = NULL;
    char *argv[] = {"/usr/bin/systemd-analyze", "verify", "--man=no", copy, NULL};
    int r = harness_run(argv, &out, &err);
    if (r != 0)
        fprintf(stderr, "systemd-analyze verify: %s%s\n", out, err);
    assert_int_equal(r, 0);
    free(out);
    free(err);
}

static void test_installed_daemon_serves(void **state)
{
    struct ignisd_proc p = {};
    snprintf(p.state_dir, sizeof(p.state_dir), "%s/state", dest);
    snprintf(p.log_path, sizeof(p.log_path), "%s/ignisd.log", dest);
    assert_int_equal(mkdir(p.state_dir, 0700), 0);

    /* The installed image builder, with the installed helpers (the exec image is small). */
    char images[600], *out = NULL, *err = NULL;
    snprintf(images, sizeof(images), "%s/images", p.state_dir);
    setenv("IGNIS_IMAGE_BINS", staged("libexec/ignis"), 1);
    char *build[] = {staged("share/ignis/scripts/build-images"), p.state_dir, "exec", NULL};
    int r = harness_run(build, &out, &err);
    if (r != 0)
        fprintf(stderr, "build-images: %s%s\n", out, err);
    assert_int_equal(r, 0);
    free(out);
    free(err);

    p.port = harness_free_port();
    snprintf(p.url, sizeof(p.url), "http://127.0.0.1:%u", p.port);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", p.port);
    p.pid = fork();
    if (p.pid == 0) {
        int fd = open(p.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        dup2(fd, STDERR_FILENO);
        /* The installed shim (an installed ignisd looks in PREFIX/libexec, not the staging
         * root); the installed config, with the test's state dir and port on the command line,
         * which wins over it. */
        setenv("IGNIS_SHIM", staged("libexec/ignis-shim"), 1);
        execl(staged("sbin/ignisd"), "ignisd", "--config", staged("etc/ignis/ignisd.conf"),
              "--state-dir", p.state_dir, "--listen", listen, NULL);
        _exit(127);
    }
    if (harness_wait_healthy(&p) < 0)
        harness_print_log(&p);
    assert_non_null(p.client);

    char fixture[600];
    snprintf(fixture, sizeof(fixture), "%s/runtime-images/examples/hello-exec",
             getenv("IGNIS_SOURCE_DIR"));
    char *push[] = {staged("bin/ignis"), "--server", p.url, "push", fixture, NULL};
    assert_int_equal(harness_run(push, &out, &err), 0);
    free(out);
    free(err);
    char *invoke[] = {staged("bin/ignis"), "--server", p.url,       "invoke",
                      "hello-exec",        "-d",       "installed", NULL};
    r = harness_run(invoke, &out, &err);
    if (r != 0) {
        fprintf(stderr, "invoke: %s%s\n", out, err);
        harness_print_log(&p);
    }
    assert_int_equal(r, 0);
    assert_non_null(strstr(out, "Hello, installed!"));
    free(out);
    free(err);
    assert_int_equal(harness_stop(&p), 0);
    assert_int_equal(harness_cleanup(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_unit_verifies),
        cmocka_unit_test(test_installed_daemon_serves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
