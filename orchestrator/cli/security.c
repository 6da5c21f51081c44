/* The verbs of who may do what: tokens, secrets and the audit log (docs/security.md). */
#include <string.h>

#include "cli.h"
#include "functions/manifest.h"
#include "functions/secrets.h"

static int usage_fail(const char *usage_line)
{
    cli_fail("usage: %s", usage_line);
    return 2;
}

/* ---- ignis token ---- */

static const char token_usage[] = "ignis token create --role ROLE [--name N] [--expires 30d] "
                                  "[--json] | ls [--json] | revoke ID [--json]";

static void print_token_created(const cJSON *t)
{
    /* The token alone on stdout, for scripts; what it is on stderr. */
    printf("%s\n", cli_str(t, "token"));
    fprintf(
        stderr, "ignis: token %s (role %s, name %s, expires %s) created; it is shown only now\n",
        cli_str(t, "id"), cli_str(t, "role"), cli_str(t, "name"),
        cJSON_IsString(cJSON_GetObjectItem(t, "expires_at")) ? cli_str(t, "expires_at") : "never");
}

static void print_token_row(const cJSON *t)
{
    const char *exp = cli_str(t, "expires_at");
    printf("%-16s %-24s %-9s %-7s %-24s %s\n", cli_str(t, "id"), cli_str(t, "name"),
           cli_str(t, "role"), cli_str(t, "state"), cli_str(t, "created_at"), *exp ? exp : "never");
}

static void print_tokens(const cJSON *root)
{
    const cJSON *t;
    printf("%-16s %-24s %-9s %-7s %-24s %s\n", "ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES");
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(root, "tokens")) print_token_row(t);
}

static void print_revoked(const cJSON *t)
{
    printf("token %s (%s, %s) revoked\n", cli_str(t, "id"), cli_str(t, "role"), cli_str(t, "name"));
}

int cli_token(struct client *c, int argc, char **argv)
{
    if (argc < 2)
        return usage_fail(token_usage);
    const char *sub = argv[1];
    bool json = false;
    cJSON *root = NULL;
    char *raw = NULL;
    int r;
    if (streq(sub, "create")) {
        const char *role = NULL, *name = NULL, *expires = NULL;
        const struct cli_option opts[] = {
            {"role", 0, &role, NULL}, {"name", 0, &name, NULL}, {"expires", 0, &expires, NULL}};
        int i = cli_parse_options(argc - 1, argv + 1, token_usage, &json, opts, ARRAY_SIZE(opts));
        if (i < 0)
            return 2;
        if (i != argc - 1 || !role)
            return usage_fail(token_usage);
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "role", role);
        if (name)
            cJSON_AddStringToObject(req, "name", name);
        if (expires)
            cJSON_AddStringToObject(req, "expires_in", expires);
        char *body = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        if (!body)
            return cli_fail("out of memory");
        static const char *const headers[] = {"Content-Type: application/json", NULL};
        r = cli_request_json(c, "POST", "/v1/tokens", headers, body, strlen(body), &root, &raw);
        free(body);
        return r ? r : cli_print_reply(root, raw, json, print_token_created);
    }
    if (streq(sub, "ls")) {
        int i = cli_parse_options(argc - 1, argv + 1, token_usage, &json, NULL, 0);
        if (i < 0)
            return 2;
        if (i != argc - 1)
            return usage_fail(token_usage);
        r = cli_request_json(c, "GET", "/v1/tokens", NULL, NULL, 0, &root, &raw);
        return r ? r : cli_print_reply(root, raw, json, print_tokens);
    }
    if (streq(sub, "revoke")) {
        int i = cli_parse_options(argc - 1, argv + 1, token_usage, &json, NULL, 0);
        if (i < 0)
            return 2;
        if (i != argc - 2)
            return usage_fail(token_usage);
        const char *id = argv[1 + i];
        if (!hex_valid(id, 16))
            return cli_fail("'%s' is not a token id (16 hex digits, as ignis token ls shows)", id);
        char path[64];
        snprintf(path, sizeof(path), "/v1/tokens/%s", id);
        r = cli_request_json(c, "DELETE", path, NULL, NULL, 0, &root, &raw);
        return r ? r : cli_print_reply(root, raw, json, print_revoked);
    }
    return usage_fail(token_usage);
}

/* ---- ignis secret ---- */

static const char secret_usage[] = "ignis secret set FUNCTION NAME (the value on stdin) | ls "
                                   "FUNCTION [--json] | rm FUNCTION NAME";

static void print_secrets(const cJSON *root)
{
    const cJSON *s;
    printf("%-40s %8s %s\n", "NAME", "BYTES", "UPDATED");
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(root, "secrets"))
    {
        printf("%-40s %8.0f %s\n", cli_str(s, "name"), cli_num(s, "bytes"),
               cli_str(s, "updated_at"));
    }
}

static void print_secret_set(const cJSON *root)
{
    printf("secret %s of %s %s (%.0f bytes)\n", cli_str(root, "name"), cli_str(root, "function"),
           cJSON_IsTrue(cJSON_GetObjectItem(root, "created")) ? "created" : "replaced",
           cli_num(root, "bytes"));
}

static void print_secret_removed(const cJSON *root)
{
    printf("secret %s of %s removed\n", cli_str(root, "name"), cli_str(root, "function"));
}

int cli_secret(struct client *c, int argc, char **argv)
{
    if (argc < 2)
        return usage_fail(secret_usage);
    const char *sub = argv[1];
    bool json = false;
    int i = cli_parse_options(argc - 1, argv + 1, secret_usage, &json, NULL, 0);
    if (i < 0)
        return 2;
    char **args = argv + 1 + i;
    int nargs = argc - 1 - i;
    cJSON *root = NULL;
    char *raw = NULL, path[512];
    int r;
    if (nargs >= 1 && cli_check_name("function", args[0]) != 0)
        return 1;
    if (nargs == 2 && !manifest_secret_name_valid(args[1]))
        return cli_fail("'%s' is not a secret name (1 to 128 of A-Z a-z 0-9 _ - ., not starting "
                        "with . or -)",
                        args[1]);
    if (streq(sub, "set") && nargs == 2) {
        char *value = NULL;
        size_t len = 0;
        /* Exactly the bytes given: `printf %s "$v" |` has no newline, `echo` adds one. */
        r = read_file("/dev/stdin", SECRET_MAX_BYTES, &value, &len);
        if (r < 0)
            return cli_fail("reading the value from stdin: %s%s", strerror(-r),
                            r == -EFBIG ? " (at most 64 KiB)" : "");
        if (len == 0) {
            free(value);
            return cli_fail("the value on stdin is empty");
        }
        snprintf(path, sizeof(path), "/v1/functions/%s/secrets/%s", args[0], args[1]);
        static const char *const headers[] = {"Content-Type: application/octet-stream", NULL};
        r = cli_request_json(c, "PUT", path, headers, value, len, &root, &raw);
        explicit_bzero(value, len);
        free(value);
        return r ? r : cli_print_reply(root, raw, json, print_secret_set);
    }
    if (streq(sub, "ls") && nargs == 1) {
        snprintf(path, sizeof(path), "/v1/functions/%s/secrets", args[0]);
        r = cli_request_json(c, "GET", path, NULL, NULL, 0, &root, &raw);
        return r ? r : cli_print_reply(root, raw, json, print_secrets);
    }
    if (streq(sub, "rm") && nargs == 2) {
        snprintf(path, sizeof(path), "/v1/functions/%s/secrets/%s", args[0], args[1]);
        r = cli_request_json(c, "DELETE", path, NULL, NULL, 0, &root, &raw);
        return r ? r : cli_print_reply(root, raw, json, print_secret_removed);
    }
    return usage_fail(secret_usage);
}

/* ---- ignis audit ---- */

static const char audit_usage[] =
    "ignis audit [--function NAME] [--since 1h|UNIX|ISO] [--limit N] [--json]";

static void print_audit(const cJSON *root)
{
    const cJSON *e;
    printf("%-24s %-16s %-9s %-6s %-40s %-15s %s\n", "TIME", "TOKEN", "ROLE", "STATUS", "REQUEST",
           "FROM", "DETAIL");
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "entries"))
    {
        char request[300];
        const char *method = cli_str(e, "action");
        snprintf(request, sizeof(request), "%.*s %s", (int)strcspn(method, " "), method,
                 cli_str(e, "path"));
        const char *who = cli_str(e, "token_name");
        printf("%-24s %-16s %-9s %-6.0f %-40s %-15s %s\n", cli_str(e, "time"), *who ? who : "-",
               *cli_str(e, "role") ? cli_str(e, "role") : "-", cli_num(e, "status"), request,
               cli_str(e, "peer"), cli_str(e, "detail"));
    }
}

int cli_audit(struct client *c, int argc, char **argv)
{
    const char *function = NULL, *since = NULL, *limit = NULL;
    const struct cli_option opts[] = {
        {"function", 0, &function, NULL}, {"since", 0, &since, NULL}, {"limit", 0, &limit, NULL}};
    bool json = false;
    int i = cli_parse_options(argc, argv, audit_usage, &json, opts, ARRAY_SIZE(opts));
    if (i < 0)
        return 2;
    if (i != argc)
        return usage_fail(audit_usage);
    const char *keys[] = {"function", "since", "limit"}, *values[] = {function, since, limit};
    _cleanup_free_ char *path = cli_query_path("/v1/audit", keys, values, ARRAY_SIZE(keys));
    if (!path)
        return cli_fail("out of memory");
    cJSON *root = NULL;
    char *raw = NULL;
    int r = cli_request_json(c, "GET", path, NULL, NULL, 0, &root, &raw);
    return r ? r : cli_print_reply(root, raw, json, print_audit);
}
