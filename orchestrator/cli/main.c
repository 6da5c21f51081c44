/* ignis: the command-line client. One function per verb; the HTTP work is in client.c. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "base/client.h"
#include "base/checks.h"
#include "config.h"

static const char usage[] =
    "Usage: ignis [--server URL] [--token TOKEN] [--cacert FILE] COMMAND [ARGS...]\n"
    "\n"
    "Commands:\n"
    "  init NAME --runtime exec|python3|node|provided [--service] [--dir PATH]\n"
    "             write a new function's directory (./NAME): function.json with every\n"
    "             default, a handler, event.json and a README; --service a service of one\n"
    "  push DIR|BUNDLE.tar.gz [--name NAME] [--no-deps] [--no-promote] [--json]\n"
    "             push a function as a new version (a directory is packed into a bundle,\n"
    "             after npm or pip installed what its package.json or requirements.txt\n"
    "             declares into a copy of it; --no-deps packs the directory as it is);\n"
    "             --no-promote keeps the default alias where it was\n"
    "  ls [--json]             list the functions, grouped by service\n"
    "  show NAME [--json]      a function's manifest, live state, versions and aliases\n"
    "  versions NAME [--json]  the versions kept, which is current, the aliases on each\n"
    "  alias set NAME ALIAS VERSION | VERSION=WEIGHT...\n"
    "             point an alias at a version, or split it (3=90 4=10, summing to 100);\n"
    "             alias ls NAME; alias rm NAME ALIAS\n"
    "  rollback NAME [--to VERSION]\n"
    "             point the default alias back (at the version before, or VERSION) at once\n"
    "  rm NAME [--json]        drain and delete a function, its versions and bundles\n"
    "  rm --service NAME [--json]\n"
    "             drain and delete a service and every function of it\n"
    "  deploy DIR [--no-deps] [--json]\n"
    "             push the functions service.json in DIR names, in one step (each\n"
    "             packed as push packs it)\n"
    "  service ls | show NAME | rm NAME [--json]\n"
    "             the services, one service's functions, delete one\n"
    "  invoke NAME[@VERSION|@ALIAS] [-d DATA|@FILE|-] [-H 'Header: value'] [--async] [--json]\n"
    "             run a function: its result on stdout, the exit status its success;\n"
    "             --async prints the invocation's id once it is stored\n"
    "  result ID [--wait] [--json]\n"
    "             an invocation's status, result or error, attempts and timings, and\n"
    "             what its last attempt used (CPU ms, peak memory, init ms)\n"
    "  usage [NAME] [--since 1h|UNIX|ISO] [--until ...] [--by minute|hour|day]\n"
    "        [--by-version] [--json]\n"
    "             invocations, errors, billed ms, CPU ms, GB-s and peak memory per function\n"
    "             (and per version with --by-version)\n"
    "  top [--interval S] [--cluster [--by-host]]\n"
    "             every function's live state, refreshed (q quits); one snapshot when\n"
    "             stdout is not a terminal; --cluster sums every live host's (each asked at\n"
    "             its advertised address), --by-host adds each host's row\n"
    "  logs NAME [-f] [--invocation ID] [--since TIME] [--tail N] [--json]\n"
    "             a function's output per invocation and its platform events; -f follows\n"
    "  emit TYPE [-d DATA|@FILE|-] [--source S] [--id ID] [--content-type T] [--json]\n"
    "             send a CloudEvent (binary mode) and print the functions it reached\n"
    "  version                 print the client's and the server's versions\n"
    "  doctor                  the daemon's checks of its host (ok, degraded, failing)\n"
    "  hosts [--json]          the hosts sharing the daemon's store: live or gone, their\n"
    "             containers ready and busy, memory used of the budget, invocations/s\n"
    "  host drain ID [--json]  that host stops gracefully: no new work, what runs finishes,\n"
    "             what it holds and has not started goes to its peers (admins, operators)\n"
    "  host forget ID [--json] a gone host (retired) is no longer listed\n"
    "  token create --role admin|developer|invoker|operator [--name N] [--expires 30d]\n"
    "             make an API token (printed once); token ls; token revoke ID\n"
    "  secret set FUNCTION NAME   store a secret, its value read from stdin;\n"
    "             secret ls FUNCTION; secret rm FUNCTION NAME\n"
    "  audit [--function NAME] [--since T] [--limit N] [--json]\n"
    "             who changed what, when and from where (admins)\n"
    "\n"
    "The server is --server, else $IGNIS_URL, else http://127.0.0.1:8080.\n"
    "The token is the first of: --token; $IGNIS_TOKEN; the file $IGNIS_TOKEN_FILE;\n"
    "$XDG_CONFIG_HOME/ignis/token (~/.config/ignis/token); /var/lib/ignis/admin.token.\n"
    "An https:// server's certificate is verified with --cacert or $IGNIS_CACERT, else the\n"
    "system's CA store.\n";

static int cmd_version(struct client *c, int argc, char **argv)
{
    cJSON *root = NULL;
    printf("ignis %s\n", IGNIS_VERSION);
    int r = cli_request_json(c, "GET", "/v1/version", NULL, NULL, 0, &root, NULL);
    if (r != 0)
        return r;
    const cJSON *v = cJSON_GetObjectItem(root, "version");
    const cJSON *schema = cJSON_GetObjectItem(root, "schema");
    if (cJSON_IsString(v))
        printf("ignisd %s (%s, schema %d)\n", v->valuestring, client_base_url(c),
               cJSON_IsNumber(schema) ? schema->valueint : 0);
    else
        r = cli_fail("the server's version reply is malformed");
    cJSON_Delete(root);
    return r;
}

/* The running daemon's view of its host (GET /v1/doctor); exit 1 when a check fails. */
static int cmd_doctor(struct client *c, int argc, char **argv)
{
    cJSON *root = NULL;
    int r = cli_request_json(c, "GET", "/v1/doctor", NULL, NULL, 0, &root, NULL);
    if (r != 0) {
        fputs("ignis: (for a host without a running daemon: ignisd --doctor)\n", stderr);
        return r;
    }
    const cJSON *checks = cJSON_GetObjectItem(root, "checks");
    const cJSON *status = cJSON_GetObjectItem(root, "status");
    if (!cJSON_IsArray(checks) || !cJSON_IsString(status)) {
        cJSON_Delete(root);
        return cli_fail("the server's doctor reply is malformed");
    }
    checks_print(checks, stdout);
    r = streq(status->valuestring, "failing") ? 1 : 0;
    cJSON_Delete(root);
    return r;
}

static const struct {
    const char *name;
    int (*fn)(struct client *c, int argc, char **argv);
} commands[] = {
    {"push", cli_push},       {"ls", cli_ls},
    {"show", cli_show},       {"rm", cli_rm},
    {"invoke", cli_invoke},   {"result", cli_result},
    {"usage", cli_usage},     {"top", cli_top},
    {"logs", cli_logs},       {"version", cmd_version},
    {"doctor", cmd_doctor},   {"deploy", cli_deploy},
    {"service", cli_service}, {"emit", cli_emit},
    {"token", cli_token},     {"secret", cli_secret},
    {"audit", cli_audit},     {"versions", cli_versions},
    {"alias", cli_alias},     {"rollback", cli_rollback},
    {"init", cli_init},       {"hosts", cli_hosts},
    {"host", cli_host},
};

/* The first token file that exists, in the order --help gives; NULL when none does. */
static char *token_from_file(void)
{
    char home_path[4200];
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    const char *env_file = getenv("IGNIS_TOKEN_FILE");
    home_path[0] = '\0';
    if (xdg && *xdg)
        snprintf(home_path, sizeof(home_path), "%s/ignis/token", xdg);
    else if (home && *home)
        snprintf(home_path, sizeof(home_path), "%s/.config/ignis/token", home);
    const char *paths[] = {env_file && *env_file ? env_file : NULL, home_path,
                           "/var/lib/ignis/admin.token"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        char *text = NULL;
        if (!paths[i] || !paths[i][0] || read_file(paths[i], 4096, &text, NULL) < 0)
            continue;
        text[strcspn(text, "\r\n")] = '\0';
        return text;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"token", required_argument, NULL, 't'},
        {"cacert", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {},
    };
    const char *server = getenv("IGNIS_URL"), *token = NULL, *cacert = NULL;
    int c;

    /* '+': stop at the command, whose own options follow it. */
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'c':
            cacert = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (!server || !*server)
        server = "http://127.0.0.1:8080";
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        if (!streq(commands[i].name, argv[optind]))
            continue;
        struct client *cl;
        /* client_new takes $IGNIS_TOKEN and $IGNIS_CACERT; the options win, and a token file
         * is read only when neither gave a token. */
        if (client_new(server, &cl) < 0)
            return cli_fail("out of memory");
        const char *env_token = getenv("IGNIS_TOKEN");
        _cleanup_free_ char *file_token =
            token || (env_token && *env_token) ? NULL : token_from_file();
        if ((token || file_token) && client_set_token(cl, token ? token : file_token) < 0)
            return cli_fail("out of memory");
        if (cacert && client_set_cacert(cl, cacert) < 0)
            return cli_fail("out of memory");
        int r = commands[i].fn(cl, argc - optind, argv + optind);
        client_free(cl);
        return r;
    }
    return cli_fail("unknown command '%s' (see --help)", argv[optind]);
}
