#include "daemon/options.h"

#include "base/cron.h"
#include "base/http.h"
#include "records/db.h"

#include <ctype.h>
#include <getopt.h>
#include <string.h>

const char options_usage[] =
    "Usage: ignisd [OPTIONS]\n"
    "\n"
    "The Ignis controller: HTTP API, registry, dispatch, scaler, accountant.\n"
    "\n"
    "  --listen ADDR:PORT   address to serve the API on (default 127.0.0.1:8080)\n"
    "  --state-dir DIR      where all state lives (default /var/lib/ignis)\n"
    "  --config FILE        read options from FILE (key = value lines)\n"
    "  --store STORE        sqlite (STATE_DIR/ignis.db, the default), or a PostgreSQL\n"
    "                       database: a postgresql:// URL or a libpq conninfo (host=...\n"
    "                       dbname=...); its password never here but in libpq's password\n"
    "                       file (PGPASSFILE, default ~/.pgpass)\n"
    "  --host-id ID         this host's name in a cluster (default: made at the first start\n"
    "                       and kept in STATE_DIR/host-id)\n"
    "  --advertise URL      where the other hosts reach this one (default: from --listen,\n"
    "                       the machine's name for 0.0.0.0 or ::)\n"
    "  --secrets-key FILE   share secrets with the other hosts of the PostgreSQL store,\n"
    "                       encrypted under this key: 32 random bytes, mode 0600, the same\n"
    "                       file on every host (head -c 32 /dev/urandom > FILE); without it\n"
    "                       each host keeps its own secrets\n"
    "  --cluster-key FILE   lets the hosts of the PostgreSQL store forward sync invocations\n"
    "                       to each other, signed with this key (the same format as\n"
    "                       --secrets-key, the same file on every host); without it each\n"
    "                       host runs what it is sent\n"
    "  --log-level LEVEL    debug, info, warn or error (default info)\n"
    "  --images-dir DIR     where the runtime images are (default STATE_DIR/images)\n"
    "  --queue-max N        invocations a function may have waiting before 429 (default 1000)\n"
    "  --keep-versions N    versions of each function kept, besides those an alias names\n"
    "                       (1-1000, default 10)\n"
    "  --usage-retention-days N\n"
    "                       days the usage ledger keeps per-attempt rows (default 30)\n"
    "  --usage-rollup-retention-days N\n"
    "                       days it keeps per-minute rollups (default 400)\n"
    "  --audit-retention-days N\n"
    "                       days the audit log keeps its rows (default 365)\n"
    "  --event-dedupe-window-s N\n"
    "                       seconds an event's (source, id) is remembered as seen (default 3600)\n"
    "  --event-hop-limit N  emitted events a chain may pass on before it is dead-lettered\n"
    "                       (default 16)\n"
    "  --schedule-tz ZONE   UTC or a fixed offset (+05:30) that schedules are read in (default "
    "UTC)\n"
    "  --tls-cert FILE      serve HTTPS with this PEM certificate (chain); needs --tls-key\n"
    "  --tls-key FILE       the certificate's PEM private key\n"
    "  --metrics-public BOOL\n"
    "                       let GET /metrics be read without a token (default false)\n"
    "  --sink-allow-loopback BOOL\n"
    "                       let sinks deliver to loopback addresses (default false)\n"
    "  --python-templates on|off\n"
    "                       fork python3 containers from a template per function version\n"
    "                       (needs user namespaces; default on)\n"
    "  --rate-limit N       requests a second each token may make, 0 for no limit (default\n"
    "                       1000)\n"
    "  --rate-burst N       requests a token may make at once above its rate (default 2000)\n"
    "  --max-connections N  open HTTP connections in all (default 4096)\n"
    "  --max-connections-per-ip N\n"
    "                       open HTTP connections from one address, 0 for no limit of its\n"
    "                       own (default 256)\n"
    "  --connection-reserve N\n"
    "                       connections kept for clients with a valid token: past\n"
    "                       max-connections - N, new ones close an old idle tokenless one\n"
    "                       (default 64, at most a quarter of max-connections; 0: none)\n"
    "  --http-header-timeout S\n"
    "                       seconds a connection has to send a request's headers, from its\n"
    "                       start or its previous request's end (default 10)\n"
    "  --http-idle-timeout S\n"
    "                       seconds without a byte while a request is read or its reply\n"
    "                       written (default 30)\n"
    "  --check-config       validate the options and the config file, then exit\n"
    "  --doctor             check what this host offers Ignis, then exit\n"
    "  --help               show this help\n"
    "  --version            show the version\n";

void options_defaults(struct ignisd_options *o)
{
    memset(o, 0, sizeof(*o));
    strcpy(o->listen_host, "127.0.0.1");
    o->listen_port = 8080;
    strcpy(o->state_dir, "/var/lib/ignis");
    o->log_level = LOG_LEVEL_INFO;
    o->queue_max = 1000;
    o->keep_versions = 10;
    o->usage_retention_days = 30;
    o->usage_rollup_retention_days = 400;
    o->audit_retention_days = 365;
    o->event_dedupe_window_s = 3600;
    o->event_hop_limit = 16;
    o->rate_limit = 1000;
    o->rate_burst = 2000;
    o->max_connections = 4096;
    o->max_connections_per_ip = 256;
    o->connection_reserve = 64;
    o->http_header_timeout_s = 10;
    o->http_idle_timeout_s = 30;
    o->python_templates = true;
}

void options_store_target(const struct ignisd_options *o, char *buf, size_t size)
{
    if (o->store[0])
        snprintf(buf, size, "%s", o->store);
    else
        snprintf(buf, size, "%s/ignis.db", o->state_dir);
}

bool options_valid_host_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= sizeof(((struct ignisd_options *)0)->host_id) || id[0] == '.' ||
        id[0] == '-')
        return false;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool key_is(const char *key, const char *name)
{
    for (; *key && *name; key++, name++) {
        char a = *key == '_' ? '-' : *key;
        if (a != *name)
            return false;
    }
    return *key == *name;
}

int options_set(struct ignisd_options *o, const char *key, const char *value, struct ig_error *err)
{
    if (key_is(key, "listen")) {
        if (http_parse_listen(value, o->listen_host, sizeof(o->listen_host), &o->listen_port) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not ADDR:PORT", value);
    } else if (key_is(key, "state-dir")) {
        if (!value[0] || strlen(value) >= sizeof(o->state_dir))
            return ig_error_set(err, EINVAL, "'%s' is empty or too long", value);
        strcpy(o->state_dir, value);
    } else if (key_is(key, "store")) {
        if (streq(value, "sqlite")) {
            o->store[0] = '\0';
            return 0;
        }
        if (!db_is_postgresql(value))
            /* Not echoed: whatever it is, it may hold a secret. */
            return ig_error_set(err, EINVAL,
                                "neither sqlite nor a postgresql:// URL or libpq conninfo");
        if (strlen(value) >= sizeof(o->store))
            return ig_error_set(err, EINVAL, "the store's target is too long");
        int r = db_check_target(value, err);
        if (r < 0)
            return r;
        strcpy(o->store, value);
    } else if (key_is(key, "host-id")) {
        if (!options_valid_host_id(value))
            return ig_error_set(err, EINVAL,
                                "'%s' is not a host id (1-63 of letters, digits, '.', '_', '-')",
                                value);
        strcpy(o->host_id, value);
    } else if (key_is(key, "advertise")) {
        if ((!startswith(value, "http://") && !startswith(value, "https://")) ||
            strlen(value) >= sizeof(o->advertise) || strpbrk(value, " \t\r\n"))
            return ig_error_set(err, EINVAL, "'%s' is not an http:// or https:// URL", value);
        strcpy(o->advertise, value);
    } else if (key_is(key, "secrets-key")) {
        if (!value[0] || strlen(value) >= sizeof(o->secrets_key))
            return ig_error_set(err, EINVAL, "'%s' is empty or too long", value);
        strcpy(o->secrets_key, value);
    } else if (key_is(key, "cluster-key")) {
        if (!value[0] || strlen(value) >= sizeof(o->cluster_key))
            return ig_error_set(err, EINVAL, "'%s' is empty or too long", value);
        strcpy(o->cluster_key, value);
    } else if (key_is(key, "images-dir")) {
        if (!value[0] || strlen(value) >= sizeof(o->images_dir))
            return ig_error_set(err, EINVAL, "'%s' is empty or too long", value);
        strcpy(o->images_dir, value);
    } else if (key_is(key, "queue-max")) {
        unsigned long n;
        if (parse_count(value, 1, 1000000, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number from 1 to 1000000", value);
        o->queue_max = (uint32_t)n;
    } else if (key_is(key, "keep-versions")) {
        unsigned long n;
        if (parse_count(value, 1, 1000, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number from 1 to 1000", value);
        o->keep_versions = (uint32_t)n;
    } else if (key_is(key, "usage-retention-days") || key_is(key, "usage-rollup-retention-days") ||
               key_is(key, "audit-retention-days")) {
        unsigned long n;
        if (parse_count(value, 1, 36500, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number of days from 1 to 36500", value);
        if (key_is(key, "usage-retention-days"))
            o->usage_retention_days = (uint32_t)n;
        else if (key_is(key, "usage-rollup-retention-days"))
            o->usage_rollup_retention_days = (uint32_t)n;
        else
            o->audit_retention_days = (uint32_t)n;
    } else if (key_is(key, "event-dedupe-window-s") || key_is(key, "event-hop-limit")) {
        unsigned long n;
        bool window = key_is(key, "event-dedupe-window-s");
        unsigned long max = window ? 30 * 86400 : 1000;
        if (parse_count(value, 1, max, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number from 1 to %lu", value, max);
        if (window)
            o->event_dedupe_window_s = (uint32_t)n;
        else
            o->event_hop_limit = (uint32_t)n;
    } else if (key_is(key, "schedule-tz")) {
        if (cron_tz_parse(value, &o->schedule_tz_offset_s, err) < 0)
            return -EINVAL;
    } else if (key_is(key, "tls-cert") || key_is(key, "tls-key")) {
        char *dst = key_is(key, "tls-cert") ? o->tls_cert : o->tls_key;
        if (!value[0] || strlen(value) >= sizeof(o->tls_cert))
            return ig_error_set(err, EINVAL, "'%s' is empty or too long", value);
        strcpy(dst, value);
    } else if (key_is(key, "metrics-public") || key_is(key, "sink-allow-loopback")) {
        bool *dst = key_is(key, "metrics-public") ? &o->metrics_public : &o->sink_allow_loopback;
        if (streq(value, "true") || streq(value, "yes") || streq(value, "1"))
            *dst = true;
        else if (streq(value, "false") || streq(value, "no") || streq(value, "0"))
            *dst = false;
        else
            return ig_error_set(err, EINVAL, "'%s' is not true or false", value);
    } else if (key_is(key, "python-templates")) {
        if (streq(value, "on"))
            o->python_templates = true;
        else if (streq(value, "off"))
            o->python_templates = false;
        else
            return ig_error_set(err, EINVAL, "'%s' is not on or off", value);
    } else if (key_is(key, "rate-limit") || key_is(key, "rate-burst")) {
        unsigned long n;
        bool burst = key_is(key, "rate-burst");
        if (parse_count(value, burst ? 1 : 0, 1000000, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number from %d to 1000000", value,
                                burst ? 1 : 0);
        *(burst ? &o->rate_burst : &o->rate_limit) = (double)n;
    } else if (key_is(key, "max-connections") || key_is(key, "max-connections-per-ip")) {
        unsigned long n;
        bool per_ip = key_is(key, "max-connections-per-ip");
        if (parse_count(value, per_ip ? 0 : 1, 65536, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number from %d to 65536", value,
                                per_ip ? 0 : 1);
        *(per_ip ? &o->max_connections_per_ip : &o->max_connections) = (uint32_t)n;
    } else if (key_is(key, "connection-reserve")) {
        unsigned long n;
        if (parse_count(value, 0, 65536, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number from 0 to 65536", value);
        o->connection_reserve = (uint32_t)n;
    } else if (key_is(key, "http-header-timeout") || key_is(key, "http-idle-timeout")) {
        unsigned long n;
        if (parse_count(value, 1, 3600, &n) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not a number of seconds from 1 to 3600",
                                value);
        *(key_is(key, "http-header-timeout") ? &o->http_header_timeout_s
                                             : &o->http_idle_timeout_s) = (uint32_t)n;
    } else if (key_is(key, "log-level")) {
        if (log_level_parse(value, &o->log_level) < 0)
            return ig_error_set(err, EINVAL, "'%s' is not one of debug, info, warn, error", value);
    } else
        return ig_error_set(err, EINVAL, "unknown key");
    return 0;
}

static char *strip(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int options_load_config(struct ignisd_options *o, const char *path, struct ig_error *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    char line[8192];
    unsigned lineno = 0;

    if (!f)
        return ig_error_set(err, errno, "config %s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = strip(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return ig_error_set(err, EINVAL, "config %s:%u: expected 'key = value'", path, lineno);
        *eq = '\0';
        char *key = strip(s), *value = strip(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        if (streq(key, "config"))
            return ig_error_set(
                err, EINVAL, "config %s:%u: 'config' cannot be set in a config file", path, lineno);
        int r = options_set(o, key, value, err);
        if (r < 0) {
            ig_error_prefix(err, "config %s:%u: %s", path, lineno, key);
            return r;
        }
    }
    return 0;
}

int options_parse(struct ignisd_options *o, int argc, char **argv, enum options_action *ret_action,
                  struct ig_error *err)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"state-dir", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'L'},
        {"images-dir", required_argument, NULL, 'I'},
        {"store", required_argument, NULL, 'O'},
        {"host-id", required_argument, NULL, 'j'},
        {"advertise", required_argument, NULL, 'a'},
        {"secrets-key", required_argument, NULL, 'y'},
        {"cluster-key", required_argument, NULL, 'g'},
        {"queue-max", required_argument, NULL, 'Q'},
        {"keep-versions", required_argument, NULL, 'K'},
        {"usage-retention-days", required_argument, NULL, 'U'},
        {"usage-rollup-retention-days", required_argument, NULL, 'R'},
        {"audit-retention-days", required_argument, NULL, 'A'},
        {"event-dedupe-window-s", required_argument, NULL, 'W'},
        {"event-hop-limit", required_argument, NULL, 'H'},
        {"schedule-tz", required_argument, NULL, 'Z'},
        {"tls-cert", required_argument, NULL, 't'},
        {"tls-key", required_argument, NULL, 'k'},
        {"metrics-public", required_argument, NULL, 'm'},
        {"sink-allow-loopback", required_argument, NULL, 'S'},
        {"python-templates", required_argument, NULL, 'P'},
        {"rate-limit", required_argument, NULL, 'r'},
        {"rate-burst", required_argument, NULL, 'b'},
        {"max-connections", required_argument, NULL, 'n'},
        {"max-connections-per-ip", required_argument, NULL, 'p'},
        {"connection-reserve", required_argument, NULL, 'e'},
        {"http-header-timeout", required_argument, NULL, 'T'},
        {"http-idle-timeout", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"check-config", no_argument, NULL, 'C'},
        {"doctor", no_argument, NULL, 'D'},
        {},
    };
    struct {
        const char *key, *value;
    } given[32];
    size_t ngiven = 0;
    enum options_action action = OPTIONS_RUN;
    int c;

    optind = 0; /* reset getopt: tests parse several argvs in one process */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            action = OPTIONS_HELP;
            break;
        case 'V':
            if (action == OPTIONS_RUN)
                action = OPTIONS_VERSION;
            break;
        case 'C':
            if (action == OPTIONS_RUN)
                action = OPTIONS_CHECK_CONFIG;
            break;
        case 'D':
            if (action == OPTIONS_RUN)
                action = OPTIONS_DOCTOR;
            break;
        case 'c':
            if (strlen(optarg) >= sizeof(o->config))
                return ig_error_set(err, ENAMETOOLONG, "--config: path too long");
            strcpy(o->config, optarg);
            break;
        case ':':
            return ig_error_set(err, EINVAL, "option '%s' needs a value", argv[optind - 1]);
        case '?':
            return ig_error_set(err, EINVAL, "unknown option '%s'", argv[optind - 1]);
        default:
            if (ngiven == ARRAY_SIZE(given))
                return ig_error_set(err, E2BIG, "too many options");
            for (const struct option *lo = longopts; lo->name; lo++)
                if (lo->val == c)
                    given[ngiven].key = lo->name;
            given[ngiven++].value = optarg;
        }
    }
    if (optind < argc)
        return ig_error_set(err, EINVAL, "unexpected argument '%s'", argv[optind]);

    if (action != OPTIONS_HELP && action != OPTIONS_VERSION && o->config[0]) {
        int r = options_load_config(o, o->config, err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < ngiven; i++) {
        int r = options_set(o, given[i].key, given[i].value, err);
        if (r < 0) {
            ig_error_prefix(err, "--%s", given[i].key);
            return r;
        }
    }
    if (!o->tls_cert[0] != !o->tls_key[0])
        return ig_error_set(err, EINVAL, "tls_cert and tls_key go together: give both or neither");
    *ret_action = action;
    return 0;
}
