/* ignis push, ls, show, rm: the registry's verbs (docs/api.md "Functions"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/bundle.h"
#include "cli.h"
#include "functions/manifest.h"
#include "functions/registry.h"

/* The function's name from function.json text. */
static int name_from_manifest(const char *text, size_t len, char *buf, size_t size)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "name");
    int r = 0;
    if (cJSON_IsString(n))
        snprintf(buf, size, "%s", n->valuestring);
    else
        r = cli_fail("function.json has no \"name\" (or pass --name)");
    cJSON_Delete(root);
    return r;
}

int cli_push(struct client *c, int argc, char **argv)
{
    bool json = false;
    bool no_deps = false;
    const char *name = NULL;
    char namebuf[256];
    struct ig_error err = {};
    _cleanup_free_ char *data = NULL, *text = NULL;
    size_t len = 0, tlen;
    struct stat st;
    bool no_promote = false;
    const struct cli_option opts[] = {{"name", 'n', &name, NULL},
                                      {"no-deps", 0, NULL, &no_deps},
                                      {"no-promote", 0, NULL, &no_promote}};
    int i = cli_parse_options(argc, argv, NULL, &json, opts, ARRAY_SIZE(opts));

    if (i < 0)
        return 2;
    if (argc - i != 1) {
        cli_fail("usage: ignis push DIR|BUNDLE.tar.gz [--name NAME] [--no-deps] [--no-promote] "
                 "[--json]");
        return 2;
    }
    const char *src = argv[i];
    if (stat(src, &st) < 0)
        return cli_fail("%s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        /* The manifest is read here only for the name; the server validates it. */
        char path[4200];
        snprintf(path, sizeof(path), "%s/function.json", src);
        int r = read_file(path, MANIFEST_FILE_MAX, &text, &tlen);
        if (r < 0)
            return cli_fail("%s: %s", path, strerror(-r));
        if (cli_pack_function(src, !no_deps, &data, &len, &err) < 0)
            return cli_fail("packing %s: %s", src, err.message);
    } else {
        int r = read_file(src, REGISTRY_MAX_BUNDLE, &data, &len);
        if (r < 0)
            return cli_fail("%s: %s", src,
                            r == -EFBIG ? "over the 64 MiB bundle limit" : strerror(-r));
        if (!name && bundle_peek_manifest(data, len, &text, &tlen, &err) < 0)
            return cli_fail("%s: %s", src, err.message);
    }
    if (!name) {
        if (name_from_manifest(text, tlen, namebuf, sizeof(namebuf)) != 0)
            return 1;
        name = namebuf;
    }
    if (cli_check_name("function", name) != 0)
        return 1;

    char path[128];
    snprintf(path, sizeof(path), "/v1/functions/%s%s", name, no_promote ? "?promote=false" : "");
    const char *headers[] = {"Content-Type: application/gzip", NULL};
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = cli_request_json(c, "PUT", path, headers, data, len, &root, &raw);
    if (r != 0)
        return r;
    bool created = cJSON_IsTrue(cJSON_GetObjectItem(root, "created"));
    /* Not promoted only when a new version was made and it is not the function's first (which
     * becomes current whatever was asked): a function's first version is always 1, and a number
     * is never given twice. */
    bool stays = no_promote && created && cli_num(root, "version") != 1;
    if (json)
        printf("%s\n", raw);
    else
        printf("%s version %.0f %s (sha256 %s)%s\n", cli_str(root, "name"),
               cli_num(root, "version"), created ? "pushed" : "unchanged", cli_str(root, "digest"),
               stays ? "; not promoted: the default alias stays" : "");
    cJSON_Delete(root);
    return 0;
}

/* Functions of a service together, services by name, functions on their own last. */
static int by_service(const void *a, const void *b)
{
    const cJSON *fa = *(const cJSON *const *)a, *fb = *(const cJSON *const *)b;
    const char *sa = cli_str(fa, "service"), *sb = cli_str(fb, "service");
    if (!*sa != !*sb)
        return *sa ? -1 : 1;
    int c = strcmp(sa, sb);
    return c ? c : strcmp(cli_str(fa, "name"), cli_str(fb, "name"));
}

int cli_ls(struct client *c, int argc, char **argv)
{
    bool json = false;
    int i = cli_parse_options(argc, argv, NULL, &json, NULL, 0);
    if (i < 0)
        return 2;
    if (argc != i) {
        cli_fail("usage: ignis ls [--json]");
        return 2;
    }
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = cli_request_json(c, "GET", "/v1/functions", NULL, NULL, 0, &root, &raw);
    if (r != 0)
        return r;
    if (json) {
        printf("%s\n", raw);
    } else {
        const cJSON *fns = cJSON_GetObjectItem(root, "functions"), *f;
        size_t n = (size_t)cJSON_GetArraySize(fns), k = 0;
        _cleanup_free_ const cJSON **sorted = calloc(n + 1, sizeof(*sorted));
        if (!sorted) {
            cJSON_Delete(root);
            return cli_fail("out of memory");
        }
        cJSON_ArrayForEach(f, fns) sorted[k++] = f;
        qsort(sorted, n, sizeof(*sorted), by_service);
        printf("%-24s %-32s %7s %-9s %-8s %-24s %s\n", "SERVICE", "NAME", "VERSION", "RUNTIME",
               "STATE", "UPDATED", "DIGEST");
        for (k = 0; k < n; k++) {
            f = sorted[k];
            const char *svc = cli_str(f, "service");
            printf("%-24s %-32s %7.0f %-9s %-8s %-24s %.12s\n", *svc ? svc : "-",
                   cli_str(f, "name"), cli_num(f, "version"), cli_str(f, "runtime"),
                   cli_str(f, "state"), cli_str(f, "updated_at"), cli_str(f, "digest"));
        }
    }
    cJSON_Delete(root);
    return 0;
}

/* The verbs on one function (show, rm): `ignis VERB NAME [--json]`, then METHOD
 * /v1/functions/NAME. Returns 0 with the reply, or the exit status after saying what failed. */
static int function_request(struct client *c, int argc, char **argv, const char *method,
                            bool *ret_json, cJSON **ret, char **ret_raw)
{
    int i = cli_parse_options(argc, argv, NULL, ret_json, NULL, 0);
    if (i < 0)
        return 2;
    if (argc - i != 1) {
        cli_fail("usage: ignis %s NAME [--json]", argv[0]);
        return 2;
    }
    if (cli_check_name("function", argv[i]) != 0)
        return 1;
    char path[128];
    snprintf(path, sizeof(path), "/v1/functions/%s", argv[i]);
    return cli_request_json(c, method, path, NULL, NULL, 0, ret, ret_raw);
}

/* o's members as `key: value` lines, nested objects indented under their key, arrays of
 * scalars on one line. */
static void print_fields(const char *indent, const cJSON *o)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, o)
    {
        if (cJSON_IsObject(v)) {
            char deeper[32];
            printf("%s%s:\n", indent, v->string);
            snprintf(deeper, sizeof(deeper), "%s  ", indent);
            print_fields(deeper, v);
            continue;
        }
        char *text = cJSON_IsString(v) ? NULL : cJSON_PrintUnformatted(v);
        printf("%s%s: %s\n", indent, v->string, cJSON_IsString(v) ? v->valuestring : text);
        free(text);
    }
}

int cli_show(struct client *c, int argc, char **argv)
{
    bool json = false;
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = function_request(c, argc, argv, "GET", &json, &root, &raw);
    if (r != 0)
        return r;
    if (json) {
        printf("%s\n", raw);
    } else {
        printf("name:     %s\n", cli_str(root, "name"));
        printf("version:  %.0f\n", cli_num(root, "version"));
        printf("state:    %s\n", cli_str(root, "state"));
        printf("digest:   %s\n", cli_str(root, "digest"));
        printf("created:  %s\n", cli_str(root, "created_at"));
        printf("updated:  %s\n", cli_str(root, "updated_at"));
        printf("bundle:   %.0f bytes\n", cli_num(root, "bundle_bytes"));
        const cJSON *live = cJSON_GetObjectItem(root, "live"), *v;
        printf("live:    ");
        cJSON_ArrayForEach(v, live)
        {
            if (cJSON_IsNumber(v))
                printf(" %s=%.0f", v->string, v->valuedouble);
            else if (cJSON_IsString(v))
                printf(" %s=%s", v->string, v->valuestring);
        }
        printf("\n\nmanifest:\n");
        print_fields("  ", cJSON_GetObjectItem(root, "manifest"));
        printf("\n");
        cli_print_versions(cJSON_GetObjectItem(root, "versions"));
        printf("\n");
        cli_print_aliases(cJSON_GetObjectItem(root, "aliases"));
    }
    cJSON_Delete(root);
    return 0;
}

int cli_rm(struct client *c, int argc, char **argv)
{
    bool json = false;
    const char *service = NULL;
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    const struct cli_option opts[] = {{"service", 0, &service, NULL}};
    int i = cli_parse_options(argc, argv, NULL, &json, opts, ARRAY_SIZE(opts));
    if (i < 0)
        return 2;
    if (service) {
        if (argc != i) {
            cli_fail("usage: ignis rm NAME | --service NAME [--json]");
            return 2;
        }
        return cli_service_rm(c, service, json);
    }
    int r = function_request(c, argc, argv, "DELETE", &json, &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else
        printf("%s deleted (version %.0f; %.0f bundle(s) removed)\n", cli_str(root, "name"),
               cli_num(root, "version"), cli_num(root, "bundles_removed"));
    cJSON_Delete(root);
    return 0;
}
