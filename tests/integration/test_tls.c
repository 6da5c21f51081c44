/* HTTPS through a real ignisd with a self-signed certificate made here (openssl): the handshake
 * works and the CLI verifies the certificate; plain HTTP on the TLS port gets no answer; TLS 1.1
 * is refused (checked against a control server that does speak it, so the client could have);
 * a bad TLS configuration stops ignisd with a message. */
#include "harness.h"

#include <string.h>
#include <sys/wait.h>

static struct ignisd_proc daemon_proc;
static char dir[] = "/tmp/ignis-tls.XXXXXX";
static char cert[128], key[128];

static int sh(const char *fmt, ...) _printf_(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static int setup(void **state)
{
    harness_require_root();
    if (sh("command -v openssl >/dev/null") != 0)
        harness_skip("needs openssl (scripts/deps installs it) to make a certificate");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    if (sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
           "-keyout %s -out %s -days 2 -subj /CN=localhost "
           "-addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null",
           key, cert) != 0)
        return -1;
    setenv("IGNIS_CACERT", cert, 1);
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    return harness_start(&daemon_proc, args);
}

static int teardown(void **state)
{
    int r = harness_finish(&daemon_proc);
    rm_rf(dir);
    return r;
}

static void test_https_and_verified_cli(void **state)
{
    assert_true(startswith(daemon_proc.url, "https://"));
    struct client_response r;
    assert_int_equal(harness_request(&daemon_proc, "GET", "/v1/version", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    client_response_clear(&r);

    char *out = NULL, *err = NULL;
    char *ok[] = {
        (char *)harness_cli(), "--server", daemon_proc.url, "--cacert", cert, "version", NULL};
    assert_int_equal(harness_run(ok, &out, &err), 0);
    assert_non_null(strstr(out, "ignisd "));
    free(out);
    free(err);
    /* A push and an invocation: replies deferred (suspended connections) work over TLS too. */
    harness_push(&daemon_proc, "hello-exec", "secure", NULL);
    assert_int_equal(
        harness_request(&daemon_proc, "POST", "/v1/functions/secure/invoke", NULL, "tls", 3, &r),
        0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Hello, tls!"));
    client_response_clear(&r);

    /* Without the CA (the system store does not know it): the certificate is refused. */
    unsetenv("IGNIS_CACERT");
    char *bad[] = {(char *)harness_cli(), "--server", daemon_proc.url, "version", NULL};
    assert_int_equal(harness_run(bad, &out, &err), 1);
    assert_non_null(strstr(err, "cannot reach ignisd"));
    assert_true(strstr(err, "certificate") || strstr(err, "SSL"));
    free(out);
    free(err);
    setenv("IGNIS_CACERT", cert, 1);
}

static void test_plain_http_on_the_tls_port_fails(void **state)
{
    char url[80];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", daemon_proc.port);
    struct client *c;
    assert_int_equal(client_new(url, &c), 0);
    client_set_timeout(c, 10000);
    struct client_response r = {};
    struct ig_error err = {};
    int rc = client_request(c, "GET", "/healthz", NULL, NULL, 0, &r, &err);
    /* No HTTP answer: the server speaks TLS, so the exchange fails (or is not a 200). */
    assert_true(rc < 0 || r.status != 200);
    if (rc == 0)
        client_response_clear(&r);
    client_free(c);
}

/* s_client against port with the protocol flag; 0 when the handshake completed. */
static int handshake(unsigned port, const char *flag)
{
    return sh("openssl s_client -connect 127.0.0.1:%u %s -cipher 'DEFAULT:@SECLEVEL=0' "
              "</dev/null >/dev/null 2>&1",
              port, flag);
}

static void test_tls11_refused_tls12_accepted(void **state)
{
    assert_int_equal(handshake(daemon_proc.port, "-tls1_2"), 0);
    assert_int_equal(handshake(daemon_proc.port, "-tls1_3"), 0);
    /* The control: a server that accepts TLS 1.1 shows this client can still speak it. */
    unsigned port = harness_free_port();
    char pidfile[160];
    snprintf(pidfile, sizeof(pidfile), "%s/s_server.pid", dir);
    assert_int_equal(sh("openssl s_server -accept 127.0.0.1:%u -cert %s -key %s -tls1_1 "
                        "-cipher 'DEFAULT:@SECLEVEL=0' -quiet </dev/null >/dev/null 2>&1 & "
                        "echo $! > %s",
                        port, cert, key, pidfile),
                     0);
    int control = -1;
    for (int i = 0; i < 200 && control != 0; i++) {
        control = handshake(port, "-tls1_1");
        if (control != 0)
            usleep(20000);
    }
    sh("kill $(cat %s) 2>/dev/null", pidfile);
    if (control != 0) {
        /* Nothing to prove with a client that cannot offer 1.1: this test alone is skipped (the
         * group's teardown still stops the daemon), unless IGNIS_MUST_WORK=1 forbids it. */
        const char *must = getenv("IGNIS_MUST_WORK");
        if (must && streq(must, "1"))
            fail_msg("IGNIS_MUST_WORK=1 forbids skipping: this openssl cannot speak TLS 1.1 even "
                     "to a server that allows it");
        fprintf(stderr, "SKIP: this openssl cannot speak TLS 1.1 even to a server that allows "
                        "it; the refusal is not checked\n");
        skip();
    }
    assert_int_not_equal(handshake(daemon_proc.port, "-tls1_1"), 0);
    assert_int_not_equal(handshake(daemon_proc.port, "-tls1"), 0);
}

/* Runs ignisd with args, expecting it to refuse to start; its stderr's last line. */
static char *refused(const char *const *args)
{
    char state[200], listen[64];
    snprintf(state, sizeof(state), "%s/state-bad", dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", harness_free_port());
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)harness_ignisd();
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--state-dir";
    argv[n++] = state;
    for (; *args; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    assert_int_not_equal(harness_run(argv, &out, &err), 0);
    free(out);
    rm_rf(state);
    return err;
}

static void test_bad_tls_configuration(void **state)
{
    const char *only_cert[] = {"--tls-cert", cert, NULL};
    char *err = refused(only_cert);
    assert_non_null(strstr(err, "tls_cert and tls_key go together"));
    free(err);
    const char *missing[] = {"--tls-cert", "/nonexistent.pem", "--tls-key", key, NULL};
    err = refused(missing);
    assert_non_null(strstr(err, "/nonexistent.pem"));
    free(err);
    /* A key that is not PEM: libmicrohttpd (GnuTLS) refuses it. */
    char garbage[160];
    snprintf(garbage, sizeof(garbage), "%s/garbage.pem", dir);
    assert_int_equal(sh("echo not a key > %s", garbage), 0);
    const char *bad_key[] = {"--tls-cert", cert, "--tls-key", garbage, NULL};
    err = refused(bad_key);
    assert_non_null(strstr(err, "TLS"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_and_verified_cli),
        cmocka_unit_test(test_plain_http_on_the_tls_port_fails),
        cmocka_unit_test(test_tls11_refused_tls12_accepted),
        cmocka_unit_test(test_bad_tls_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
