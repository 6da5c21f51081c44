#include "options.h"

#include <arpa/inet.h>
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
    "  --log-level LEVEL    debug, info, warn or error (default info)\n"
    "  --check-config       validate the options and the config file, then exit\n"
    "  --help               show this help\n"
    "  --version            show the version\n";

void options_defaults(struct ignisd_options *o)
{
    memset(o, 0, sizeof(*o));
    strcpy(o->listen_host, "127.0.0.1");
    o->listen_port = 8080;
    strcpy(o->state_dir, "/var/lib/ignis");
    o->log_level = LOG_LEVEL_INFO;
}

int options_parse_listen(const char *text, char *ret_host, size_t host_size, uint16_t *ret_port)
{
    const char *colon, *host = text;
    size_t host_len;

    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        host = text + 1;
        host_len = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return -EINVAL;
        host_len = (size_t)(colon - text);
    }
    if (host_len == 0 || host_len >= host_size)
        return -EINVAL;

    char hostbuf[256];
    if (host_len >= sizeof(hostbuf))
        return -EINVAL;
    memcpy(hostbuf, host, host_len);
    hostbuf[host_len] = '\0';
    unsigned char addr[16];
    if (!streq(hostbuf, "localhost") && inet_pton(AF_INET, hostbuf, addr) != 1 &&
        inet_pton(AF_INET6, hostbuf, addr) != 1)
        return -EINVAL;

    const char *p = colon + 1;
    if (!*p || strlen(p) > 5)
        return -EINVAL;
    unsigned long port = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port > 65535)
        return -EINVAL;
    memcpy(ret_host, hostbuf, host_len + 1);
    *ret_port = (uint16_t)port;
    return 0;
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
        if (options_parse_listen(value, o->listen_host, sizeof(o->listen_host), &o->listen_port) <
            0)
            return ig_error_set(err, EINVAL, "'%s' is not ADDR:PORT", value);
    } else if (key_is(key, "state-dir")) {
        if (!value[0] || strlen(value) >= sizeof(o->state_dir))
            return ig_error_set(err, EINVAL, "'%s' is empty or too long", value);
        strcpy(o->state_dir, value);
    } else if (key_is(key, "log-level")) {
        if (log_level_parse(value, &o->log_level) < 0)
            return ig_error_set(err, EINVAL,
                                "'%s' is not one of debug, info, warn, error", value);
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
            return ig_error_set(err, EINVAL, "config %s:%u: expected 'key = value'", path,
                                lineno);
        *eq = '\0';
        char *key = strip(s), *value = strip(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        if (streq(key, "config"))
            return ig_error_set(err, EINVAL, "config %s:%u: 'config' cannot be set in a config file",
                                path, lineno);
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
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"check-config", no_argument, NULL, 'C'},
        {},
    };
    struct {
        const char *key, *value;
    } given[16];
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

    if ((action == OPTIONS_RUN || action == OPTIONS_CHECK_CONFIG) && o->config[0]) {
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
    *ret_action = action;
    return 0;
}
