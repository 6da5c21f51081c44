/* ignisd option parsing: command line, config file, and their precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/http.h"
#include "daemon/options.h"

static int parse(struct ignisd_options *o, enum options_action *action, struct ig_error *err,
                 int argc, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, argc);
    argv[0] = "ignisd";
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    options_defaults(o);
    ig_error_clear(err);
    return options_parse(o, argc, argv, action, err);
}

static void test_defaults(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 1), 0);
    assert_int_equal(a, OPTIONS_RUN);
    assert_string_equal(o.listen_host, "127.0.0.1");
    assert_int_equal(o.listen_port, 8080);
    assert_string_equal(o.state_dir, "/var/lib/ignis");
    assert_int_equal(o.log_level, LOG_LEVEL_INFO);
    assert_string_equal(o.images_dir, "");
    assert_int_equal(o.queue_max, 1000);
}

static void test_dispatch_options(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 5, "--images-dir", "/srv/images", "--queue-max", "7"), 0);
    assert_string_equal(o.images_dir, "/srv/images");
    assert_int_equal(o.queue_max, 7);
    const char *bad[] = {"0", "-1", "x", "", "1000001", "5k"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, "--queue-max", bad[i]), -EINVAL);
        assert_non_null(strstr(err.message, "--queue-max"));
    }
}

static void test_keep_versions(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 1), 0);
    assert_int_equal(o.keep_versions, 10);
    assert_int_equal(parse(&o, &a, &err, 3, "--keep-versions", "2"), 0);
    assert_int_equal(o.keep_versions, 2);
    assert_int_equal(parse(&o, &a, &err, 3, "--keep-versions", "1000"), 0);
    assert_int_equal(o.keep_versions, 1000);
    const char *bad[] = {"0", "1001", "x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, "--keep-versions", bad[i]), -EINVAL);
        assert_non_null(strstr(err.message, "--keep-versions"));
    }
}

static void test_usage_retention(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 1), 0);
    assert_int_equal(o.usage_retention_days, 30);
    assert_int_equal(o.usage_rollup_retention_days, 400);
    assert_int_equal(o.audit_retention_days, 365);
    assert_int_equal(parse(&o, &a, &err, 7, "--usage-retention-days", "7",
                           "--usage-rollup-retention-days", "3650", "--audit-retention-days", "90"),
                     0);
    assert_int_equal(o.usage_retention_days, 7);
    assert_int_equal(o.usage_rollup_retention_days, 3650);
    assert_int_equal(o.audit_retention_days, 90);
    const char *bad[] = {"0", "-1", "x", "", "36501", "5d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, "--usage-retention-days", bad[i]), -EINVAL);
        assert_non_null(strstr(err.message, "--usage-retention-days"));
    }
}

static void test_event_options(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 1), 0);
    assert_int_equal(o.event_dedupe_window_s, 3600);
    assert_int_equal(o.event_hop_limit, 16);
    assert_int_equal(o.schedule_tz_offset_s, 0);
    assert_int_equal(parse(&o, &a, &err, 7, "--event-dedupe-window-s", "60", "--event-hop-limit",
                           "3", "--schedule-tz", "+05:30"),
                     0);
    assert_int_equal(o.event_dedupe_window_s, 60);
    assert_int_equal(o.event_hop_limit, 3);
    assert_int_equal(o.schedule_tz_offset_s, 5 * 3600 + 30 * 60);
    static const struct {
        const char *option, *value;
    } bad[] = {
        {"--event-dedupe-window-s", "0"},  {"--event-dedupe-window-s", "2592001"},
        {"--event-dedupe-window-s", "1h"}, {"--event-hop-limit", "0"},
        {"--event-hop-limit", "1001"},     {"--event-hop-limit", "-3"},
        {"--schedule-tz", "CET"},          {"--schedule-tz", "+25:00"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, bad[i].option, bad[i].value), -EINVAL);
        assert_non_null(strstr(err.message, bad[i].option));
    }
}

static void test_all_options(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 8, "--listen", "0.0.0.0:9090", "--state-dir=./var",
                           "--log-level", "debug", "--listen", "127.0.0.2:1"),
                     0);
    assert_string_equal(o.listen_host, "127.0.0.2"); /* the last one wins */
    assert_int_equal(o.listen_port, 1);
    assert_string_equal(o.state_dir, "./var");
    assert_int_equal(o.log_level, LOG_LEVEL_DEBUG);
}

static void test_listen_forms(void **state)
{
    char host[256];
    uint16_t port;
    assert_int_equal(http_parse_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(http_parse_listen("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(http_parse_listen("localhost:65535", host, sizeof(host), &port), 0);
    const char *bad[] = {"",
                         "8080",
                         ":8080",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:80a",
                         "example.com:80",
                         "[::1]8080",
                         "1.2.3.4:-1",
                         "127.0.0.1:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(http_parse_listen(bad[i], host, sizeof(host), &port), -EINVAL);
}

static void test_errors_name_the_problem(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 2, "--bogus"), -EINVAL);
    assert_non_null(strstr(err.message, "--bogus"));
    assert_int_equal(parse(&o, &a, &err, 2, "--listen"), -EINVAL);
    assert_non_null(strstr(err.message, "--listen"));
    assert_int_equal(parse(&o, &a, &err, 3, "--listen", "x"), -EINVAL);
    assert_non_null(strstr(err.message, "--listen"));
    assert_non_null(strstr(err.message, "'x'"));
    assert_int_equal(parse(&o, &a, &err, 3, "--log-level", "loud"), -EINVAL);
    assert_non_null(strstr(err.message, "loud"));
    assert_int_equal(parse(&o, &a, &err, 2, "extra"), -EINVAL);
    assert_non_null(strstr(err.message, "extra"));
}

static void test_security_options(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 1), 0);
    assert_false(o.metrics_public);
    assert_false(o.sink_allow_loopback);
    assert_true(o.rate_limit == 1000 && o.rate_burst == 2000);
    assert_int_equal(o.max_connections, 4096);
    assert_int_equal(o.max_connections_per_ip, 256);
    assert_int_equal(o.connection_reserve, 64);
    assert_int_equal(o.http_header_timeout_s, 10);
    assert_int_equal(o.http_idle_timeout_s, 30);
    assert_int_equal(parse(&o, &a, &err, 7, "--connection-reserve", "0", "--http-header-timeout",
                           "3", "--http-idle-timeout", "60"),
                     0);
    assert_int_equal(o.connection_reserve, 0);
    assert_int_equal(o.http_header_timeout_s, 3);
    assert_int_equal(o.http_idle_timeout_s, 60);
    assert_int_equal(parse(&o, &a, &err, 3, "--http-header-timeout", "0"), -EINVAL);
    assert_non_null(strstr(err.message, "--http-header-timeout"));
    assert_int_equal(parse(&o, &a, &err, 3, "--connection-reserve", "x"), -EINVAL);
    assert_int_equal(parse(&o, &a, &err, 15, "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
                           "--metrics-public", "true", "--rate-limit", "0", "--rate-burst", "5",
                           "--max-connections-per-ip", "0", "--sink-allow-loopback", "yes"),
                     0);
    assert_string_equal(o.tls_cert, "/c.pem");
    assert_string_equal(o.tls_key, "/k.pem");
    assert_true(o.metrics_public);
    assert_true(o.sink_allow_loopback);
    assert_true(o.rate_limit == 0 && o.rate_burst == 5);
    assert_int_equal(o.max_connections_per_ip, 0);
    /* Both TLS files or neither; values checked, naming the option. */
    assert_int_equal(parse(&o, &a, &err, 3, "--tls-cert", "/c.pem"), -EINVAL);
    assert_non_null(strstr(err.message, "tls_key"));
    assert_int_equal(parse(&o, &a, &err, 3, "--metrics-public", "maybe"), -EINVAL);
    assert_non_null(strstr(err.message, "--metrics-public"));
    assert_int_equal(parse(&o, &a, &err, 3, "--rate-limit", "-1"), -EINVAL);
    assert_non_null(strstr(err.message, "--rate-limit"));
    assert_int_equal(parse(&o, &a, &err, 3, "--rate-burst", "0"), -EINVAL);
    assert_int_equal(parse(&o, &a, &err, 3, "--max-connections", "0"), -EINVAL);
    assert_non_null(strstr(err.message, "--max-connections"));
}

static void test_help_version(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    assert_int_equal(parse(&o, &a, &err, 2, "--help"), 0);
    assert_int_equal(a, OPTIONS_HELP);
    assert_int_equal(parse(&o, &a, &err, 2, "--version"), 0);
    assert_int_equal(a, OPTIONS_VERSION);
    assert_int_equal(parse(&o, &a, &err, 3, "--version", "--help"), 0);
    assert_int_equal(a, OPTIONS_HELP);
    assert_int_equal(parse(&o, &a, &err, 2, "--check-config"), 0);
    assert_int_equal(a, OPTIONS_CHECK_CONFIG);
}

static char *write_config(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/ignis-options-test.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_config_file(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    char *path = write_config("# comment\n\nlisten = 127.0.0.1:7000\nstate_dir = \"/srv/ig\"\n"
                              "  log-level=warn  \n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), 0);
    assert_int_equal(o.listen_port, 7000);
    assert_string_equal(o.state_dir, "/srv/ig");
    assert_int_equal(o.log_level, LOG_LEVEL_WARN);
    /* The command line wins, whatever the order of the options. */
    assert_int_equal(parse(&o, &a, &err, 5, "--listen", "127.0.0.1:7001", "--config", path), 0);
    assert_int_equal(o.listen_port, 7001);
    assert_string_equal(o.state_dir, "/srv/ig");
    unlink(path);
}

/* --store: sqlite (the default, STATE_DIR/ignis.db) or a PostgreSQL URL or conninfo, never one
 * with a password, whose text no error repeats. */
static void test_store(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    char target[8192];

    assert_int_equal(parse(&o, &a, &err, 3, "--state-dir", "/srv/ig"), 0);
    options_store_target(&o, target, sizeof(target));
    assert_string_equal(target, "/srv/ig/ignis.db");
    assert_int_equal(parse(&o, &a, &err, 3, "--store", "sqlite"), 0);
    assert_string_equal(o.store, "");
    assert_int_equal(parse(&o, &a, &err, 3, "--store", "postgresql://ignis@db.example:5433/ig"), 0);
    options_store_target(&o, target, sizeof(target));
    assert_string_equal(target, "postgresql://ignis@db.example:5433/ig");
    assert_int_equal(parse(&o, &a, &err, 3, "--store", "host=/run/pg dbname=ig user=ignis"), 0);
    assert_string_equal(o.store, "host=/run/pg dbname=ig user=ignis");

    const char *refused[] = {
        "postgresql://ignis:hunter2@db.example/ig",
        "postgresql://ignis@db.example/ig?password=hunter2",
        "host=db.example password=hunter2 dbname=ig",
        "mysql://ignis:hunter2@db.example/ig",
        "/var/lib/other.db",
        "host=db.example dbname='hunter2",
    };
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, "--store", refused[i]), -EINVAL);
        assert_non_null(strstr(err.message, "--store"));
        assert_null(strstr(err.message, "hunter2"));
    }
    assert_int_equal(parse(&o, &a, &err, 3, "--store", refused[0]), -EINVAL);
    assert_non_null(strstr(err.message, "PGPASSFILE"));

    char *path = write_config("store = postgresql://ignis@db.example/ig\n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), 0);
    assert_string_equal(o.store, "postgresql://ignis@db.example/ig");
    unlink(path);
    path = write_config("store = postgresql://ignis:hunter2@db.example/ig\n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), -EINVAL);
    assert_non_null(strstr(err.message, ":1: store"));
    assert_null(strstr(err.message, "hunter2"));
    unlink(path);
}

/* A host's cluster identity: an id of a safe alphabet (it names the host in the store, logs and
 * headers) and an http(s) URL its peers dial. */
static void test_host_identity(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;

    assert_int_equal(parse(&o, &a, &err, 1), 0);
    assert_string_equal(o.host_id, "");
    assert_string_equal(o.advertise, "");
    assert_int_equal(
        parse(&o, &a, &err, 5, "--host-id", "web-1.dc_2", "--advertise", "https://10.0.0.7:8443"),
        0);
    assert_string_equal(o.host_id, "web-1.dc_2");
    assert_string_equal(o.advertise, "https://10.0.0.7:8443");
    const char *bad_ids[] = {"",
                             "-web",
                             ".web",
                             "web 1",
                             "web/1",
                             "ça",
                             "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, "--host-id", bad_ids[i]), -EINVAL);
        assert_non_null(strstr(err.message, "--host-id"));
    }
    const char *bad_urls[] = {"10.0.0.7:8080", "ftp://h/", "http://h :1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_urls); i++) {
        assert_int_equal(parse(&o, &a, &err, 3, "--advertise", bad_urls[i]), -EINVAL);
        assert_non_null(strstr(err.message, "--advertise"));
    }
    char *path = write_config("host_id = h2\nadvertise = http://h2.internal:8080\n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), 0);
    assert_string_equal(o.host_id, "h2");
    assert_string_equal(o.advertise, "http://h2.internal:8080");
    unlink(path);
}

static void test_config_errors(void **state)
{
    struct ignisd_options o;
    enum options_action a;
    struct ig_error err;
    char *path = write_config("listen = 127.0.0.1:7000\ncolour = blue\n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), -EINVAL);
    assert_non_null(strstr(err.message, ":2:"));
    assert_non_null(strstr(err.message, "colour"));
    unlink(path);
    path = write_config("\n\n\nlog_level = chatty\n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), -EINVAL);
    assert_non_null(strstr(err.message, ":4:"));
    assert_non_null(strstr(err.message, "log_level"));
    assert_non_null(strstr(err.message, "chatty"));
    unlink(path);
    path = write_config("just words\n");
    assert_int_equal(parse(&o, &a, &err, 3, "--config", path), -EINVAL);
    assert_non_null(strstr(err.message, ":1:"));
    unlink(path);
    assert_int_equal(parse(&o, &a, &err, 3, "--config", "/nonexistent/ignis.conf"), -ENOENT);
    assert_non_null(strstr(err.message, "/nonexistent/ignis.conf"));
    /* --check-config reads the file too, and fails the same way. */
    assert_int_equal(parse(&o, &a, &err, 4, "--check-config", "--config", "/nonexistent/x"),
                     -ENOENT);
    assert_non_null(strstr(err.message, "/nonexistent/x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_options),
        cmocka_unit_test(test_dispatch_options),
        cmocka_unit_test(test_usage_retention),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_errors_name_the_problem),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_event_options),
        cmocka_unit_test(test_security_options),
        cmocka_unit_test(test_keep_versions),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_host_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
