/* ignis deploy, ignis service ls|show|rm: services (docs/api.md "Services"). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "functions/bundle.h"
#include "cli.h"
#include "functions/manifest.h"
#include "functions/registry.h"
#include "functions/service.h"

/* The bundles of a service being deployed. */
struct packed {
    const char *names[SERVICE_FUNCTIONS_MAX];
    char *data[SERVICE_FUNCTIONS_MAX];
    size_t lens[SERVICE_FUNCTIONS_MAX];
    size_t n;
};

static void packed_clear(struct packed *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->data[i]);
    p->n = 0;
}

/* Validates every function the service names, as the daemon will (function.json with the
 * service's triggers applied), and packs each: nothing is sent unless all of them are valid. */
static int pack_service(const char *dir, const struct service *svc, bool with_deps,
                        struct packed *ret)
{
    for (size_t i = 0; i < svc->n_fns; i++) {
        const struct service_function *sf = &svc->fns[i];
        char fdir[4200], path[4300];
        _cleanup_free_ char *text = NULL;
        size_t len;
        struct manifest *m = NULL;
        struct ig_error err = {};
        snprintf(fdir, sizeof(fdir), "%s/%s", dir, sf->path);
        snprintf(path, sizeof(path), "%s/function.json", fdir);
        int r = read_file(path, MANIFEST_FILE_MAX, &text, &len);
        if (r < 0)
            return cli_fail("function %s: %s: %s", sf->name, path, strerror(-r));
        if (service_function_manifest(sf, text, len, &m, &err) < 0)
            return cli_fail("function %s: %s: %s", sf->name, path, err.message);
        manifest_free(m);
    }
    for (size_t i = 0; i < svc->n_fns; i++) {
        char fdir[4200];
        struct ig_error err = {};
        snprintf(fdir, sizeof(fdir), "%s/%s", dir, svc->fns[i].path);
        if (cli_pack_function(fdir, with_deps, &ret->data[ret->n], &ret->lens[ret->n], &err) < 0)
            return cli_fail("function %s: packing %s: %s", svc->fns[i].name, fdir, err.message);
        ret->names[ret->n++] = svc->fns[i].name;
    }
    return 0;
}

int cli_deploy(struct client *c, int argc, char **argv)
{
    bool json = false, no_deps = false;
    const struct cli_option opts[] = {{"no-deps", 0, NULL, &no_deps}};
    int i = cli_parse_options(argc, argv, NULL, &json, opts, ARRAY_SIZE(opts));
    if (i < 0)
        return 2;
    if (argc - i != 1) {
        cli_fail("usage: ignis deploy DIR [--no-deps] [--json]");
        return 2;
    }
    const char *dir = argv[i];
    char path[4200];
    _cleanup_free_ char *text = NULL, *archive = NULL, *raw = NULL;
    size_t len, alen;
    struct service *svc = NULL;
    struct packed packed = {};
    struct ig_error err = {};
    cJSON *root = NULL;

    snprintf(path, sizeof(path), "%s/service.json", dir);
    int r = read_file(path, SERVICE_FILE_MAX, &text, &len);
    if (r < 0)
        return cli_fail("%s: %s", path, r == -EFBIG ? "too large" : strerror(-r));
    if (service_parse(text, len, &svc, &err) < 0)
        return cli_fail("%s: %s", path, err.message);
    r = pack_service(dir, svc, !no_deps, &packed);
    if (r == 0 && service_archive_pack(text, len, packed.names, packed.data, packed.lens, packed.n,
                                       &archive, &alen, &err) < 0)
        r = cli_fail("%s", err.message);
    packed_clear(&packed);
    if (r == 0) {
        char url[128];
        snprintf(url, sizeof(url), "/v1/services/%s", svc->name);
        const char *headers[] = {"Content-Type: application/x-tar", NULL};
        r = cli_request_json(c, "PUT", url, headers, archive, alen, &root, &raw);
    }
    if (r == 0 && json)
        printf("%s\n", raw);
    else if (r == 0) {
        const cJSON *f;
        printf("service %s deployed\n", cli_str(root, "name"));
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(root, "functions"))
        {
            printf("  %-32s version %-5.0f %s\n", cli_str(f, "name"), cli_num(f, "version"),
                   cJSON_IsTrue(cJSON_GetObjectItem(f, "created")) ? "changed" : "unchanged");
        }
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(root, "removed"))
        {
            printf("  %-32s removed\n", cJSON_IsString(f) ? f->valuestring : "");
        }
    }
    cJSON_Delete(root);
    service_free(svc);
    return r;
}

/* METHOD /v1/services/NAME; 0 with the reply, or the exit status after saying what failed. */
static int service_request(struct client *c, const char *method, const char *name, cJSON **ret,
                           char **ret_raw)
{
    if (cli_check_name("service", name) != 0)
        return 1;
    char url[128];
    snprintf(url, sizeof(url), "/v1/services/%s", name);
    return cli_request_json(c, method, url, NULL, NULL, 0, ret, ret_raw);
}

int cli_service_rm(struct client *c, const char *name, bool json)
{
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = service_request(c, "DELETE", name, &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else
        printf("service %s deleted (%d function(s); %.0f bundle(s) removed)\n",
               cli_str(root, "name"), cJSON_GetArraySize(cJSON_GetObjectItem(root, "functions")),
               cli_num(root, "bundles_removed"));
    cJSON_Delete(root);
    return 0;
}

static int service_ls(struct client *c, bool json)
{
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = cli_request_json(c, "GET", "/v1/services", NULL, NULL, 0, &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else {
        const cJSON *s, *f;
        printf("%-32s %-8s %-24s %s\n", "SERVICE", "STATE", "UPDATED", "FUNCTIONS");
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(root, "services"))
        {
            printf("%-32s %-8s %-24s", cli_str(s, "name"), cli_str(s, "state"),
                   cli_str(s, "updated_at"));
            const char *sep = " ";
            cJSON_ArrayForEach(f, cJSON_GetObjectItem(s, "functions"))
            {
                printf("%s%s", sep, cJSON_IsString(f) ? f->valuestring : "");
                sep = ",";
            }
            printf("\n");
        }
    }
    cJSON_Delete(root);
    return 0;
}

static int service_show(struct client *c, const char *name, bool json)
{
    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = service_request(c, "GET", name, &root, &raw);
    if (r != 0)
        return r;
    if (json)
        printf("%s\n", raw);
    else {
        const cJSON *f;
        printf("service:  %s (%s)\n", cli_str(root, "name"), cli_str(root, "state"));
        printf("created:  %s\n", cli_str(root, "created_at"));
        printf("updated:  %s\n", cli_str(root, "updated_at"));
        printf("%-32s %7s %-9s %-8s %s\n", "FUNCTION", "VERSION", "RUNTIME", "STATE", "UPDATED");
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(root, "functions"))
        {
            printf("%-32s %7.0f %-9s %-8s %s\n", cli_str(f, "name"), cli_num(f, "version"),
                   cli_str(f, "runtime"), cli_str(f, "state"), cli_str(f, "updated_at"));
        }
    }
    cJSON_Delete(root);
    return 0;
}

int cli_service(struct client *c, int argc, char **argv)
{
    bool json = false;
    int i = cli_parse_options(argc, argv, NULL, &json, NULL, 0);
    if (i < 0)
        return 2;
    const char *sub = i < argc ? argv[i] : "";
    int operands = argc - i - 1;
    if (streq(sub, "ls") && operands == 0)
        return service_ls(c, json);
    if (streq(sub, "show") && operands == 1)
        return service_show(c, argv[i + 1], json);
    if (streq(sub, "rm") && operands == 1)
        return cli_service_rm(c, argv[i + 1], json);
    cli_fail("usage: ignis service ls | show NAME | rm NAME [--json]");
    return 2;
}
