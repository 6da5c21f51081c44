/* ignis versions, alias, rollback: a function's versions and aliases (docs/api.md "Versions and
 * aliases"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* "3:90 4:10" (or "3" alone) from an alias's {"versions": {"3": 90, ...}}. */
static void print_weights(const cJSON *alias)
{
    const cJSON *w;
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(alias, "versions");
    bool first = true;
    cJSON_ArrayForEach(w, vs)
    {
        if (cJSON_GetArraySize(vs) == 1)
            printf("%s", w->string);
        else
            printf("%s%s=%.0f%%", first ? "" : " ", w->string, w->valuedouble);
        first = false;
    }
}

void cli_print_versions(const cJSON *versions)
{
    const cJSON *v, *a;
    printf("%7s %-8s %-24s %12s %-12s %s\n", "VERSION", "CURRENT", "CREATED", "BYTES", "DIGEST",
           "ALIASES");
    cJSON_ArrayForEach(v, versions)
    {
        printf("%7.0f %-8s %-24s %12.0f %-12.12s ", cli_num(v, "version"),
               cJSON_IsTrue(cJSON_GetObjectItem(v, "current")) ? "*" : "", cli_str(v, "created_at"),
               cli_num(v, "bundle_bytes"), cli_str(v, "digest"));
        bool first = true;
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(v, "aliases"))
        {
            printf("%s%s", first ? "" : ",", cJSON_IsString(a) ? a->valuestring : "");
            first = false;
        }
        printf("%s\n", first ? "-" : "");
    }
}

void cli_print_aliases(const cJSON *aliases)
{
    const cJSON *a;
    printf("%-24s %s\n", "ALIAS", "VERSIONS");
    cJSON_ArrayForEach(a, aliases)
    {
        printf("%-24s ", cli_str(a, "name"));
        print_weights(a);
        printf("\n");
    }
}

/* GET /v1/functions/NAME/WHAT, printed by print (or as JSON). */
static int list(struct client *c, const char *name, const char *what, bool json,
                void (*print)(const cJSON *))
{
    char path[200];
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    if (cli_check_name("function", name) != 0)
        return 1;
    snprintf(path, sizeof(path), "/v1/functions/%s/%s", name, what);
    int r = cli_request_json(c, "GET", path, NULL, NULL, 0, &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else
        print(cJSON_GetObjectItem(root, what));
    cJSON_Delete(root);
    return 0;
}

int cli_versions(struct client *c, int argc, char **argv)
{
    bool json = false;
    int i = cli_parse_options(argc, argv, "ignis versions NAME [--json]", &json, NULL, 0);
    if (i < 0)
        return 2;
    if (argc - i != 1) {
        cli_fail("usage: ignis versions NAME [--json]");
        return 2;
    }
    return list(c, argv[i], "versions", json, cli_print_versions);
}

/* The PUT body from "3" or "3=90 4=10". Returns 0, or 1 after saying what is wrong. */
static int alias_body(int n, char **specs, cJSON **ret)
{
    cJSON *root = cJSON_CreateObject();
    if (n == 1 && !strchr(specs[0], '=')) {
        char *end;
        unsigned long v = strtoul(specs[0], &end, 10);
        if (*end || v == 0) {
            cJSON_Delete(root);
            return cli_fail("\"%s\" is not a version number", specs[0]);
        }
        cJSON_AddNumberToObject(root, "version", (double)v);
        *ret = root;
        return 0;
    }
    cJSON *vs = cJSON_AddObjectToObject(root, "versions");
    for (int i = 0; i < n; i++) {
        char *eq = strchr(specs[i], '='), *end;
        unsigned long w = eq ? strtoul(eq + 1, &end, 10) : 0;
        if (!eq || eq == specs[i] || !eq[1] || *end) {
            cJSON_Delete(root);
            return cli_fail("\"%s\" is not VERSION=WEIGHT", specs[i]);
        }
        *eq = '\0';
        cJSON_AddNumberToObject(vs, specs[i], (double)w);
    }
    *ret = root;
    return 0;
}

static int alias_set(struct client *c, int argc, char **argv, bool json)
{
    cJSON *body = NULL, *root = NULL;
    _cleanup_free_ char *raw = NULL, *text = NULL;
    char path[300];
    if (argc < 3) {
        cli_fail("usage: ignis alias set NAME ALIAS VERSION | VERSION=WEIGHT... [--json]");
        return 2;
    }
    if (cli_check_name("function", argv[0]) != 0 || alias_body(argc - 2, argv + 2, &body) != 0)
        return 1;
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text)
        return cli_fail("out of memory");
    snprintf(path, sizeof(path), "/v1/functions/%s/aliases/%s", argv[0], argv[1]);
    const char *headers[] = {"Content-Type: application/json", NULL};
    int r = cli_request_json(c, "PUT", path, headers, text, strlen(text), &root, &raw);
    if (r != 0)
        return r;
    if (json) {
        printf("%s\n", raw);
    } else {
        printf("%s@%s -> ", argv[0], cli_str(root, "name"));
        print_weights(root);
        printf(" (current version %.0f)\n", cli_num(root, "current_version"));
    }
    cJSON_Delete(root);
    return 0;
}

static int alias_rm(struct client *c, int argc, char **argv, bool json)
{
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    char path[300];
    if (argc != 2) {
        cli_fail("usage: ignis alias rm NAME ALIAS [--json]");
        return 2;
    }
    if (cli_check_name("function", argv[0]) != 0)
        return 1;
    snprintf(path, sizeof(path), "/v1/functions/%s/aliases/%s", argv[0], argv[1]);
    int r = cli_request_json(c, "DELETE", path, NULL, NULL, 0, &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else
        printf("%s@%s deleted\n", argv[0], argv[1]);
    cJSON_Delete(root);
    return 0;
}

int cli_alias(struct client *c, int argc, char **argv)
{
    bool json = false;
    static const char use[] = "ignis alias set NAME ALIAS VERSION | VERSION=WEIGHT... | "
                              "ls NAME | rm NAME ALIAS [--json]";
    int i = cli_parse_options(argc, argv, use, &json, NULL, 0);
    if (i < 0)
        return 2;
    const char *sub = i < argc ? argv[i] : "";
    int rest = argc - i - 1;
    char **args = argv + i + 1;
    if (streq(sub, "set"))
        return alias_set(c, rest, args, json);
    if (streq(sub, "rm"))
        return alias_rm(c, rest, args, json);
    if (streq(sub, "ls") && rest == 1)
        return list(c, args[0], "aliases", json, cli_print_aliases);
    cli_fail("usage: %s", use);
    return 2;
}

int cli_rollback(struct client *c, int argc, char **argv)
{
    bool json = false;
    const char *to = NULL;
    const struct cli_option opts[] = {{"to", 0, &to, NULL}};
    int i = cli_parse_options(argc, argv, "ignis rollback NAME [--to VERSION] [--json]", &json,
                              opts, ARRAY_SIZE(opts));
    if (i < 0)
        return 2;
    if (argc - i != 1) {
        cli_fail("usage: ignis rollback NAME [--to VERSION] [--json]");
        return 2;
    }
    if (cli_check_name("function", argv[i]) != 0)
        return 1;
    char path[200], body[64] = "";
    if (to) {
        char *end;
        unsigned long v = strtoul(to, &end, 10);
        if (*end || v == 0)
            return cli_fail("--to: \"%s\" is not a version number", to);
        snprintf(body, sizeof(body), "{\"to\":%lu}", v);
    }
    snprintf(path, sizeof(path), "/v1/functions/%s/rollback", argv[i]);
    const char *headers[] = {"Content-Type: application/json", NULL};
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = cli_request_json(c, "POST", path, headers, body, strlen(body), &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else
        printf("%s rolled back: default -> version %.0f\n", argv[i],
               cli_num(root, "current_version"));
    cJSON_Delete(root);
    return 0;
}
