/* ignis usage: the accountant's ledger, summed (docs/api.md "Usage"). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage_usage[] = "usage: ignis usage [NAME] [--since 1h|UNIX|ISO] [--until ...] "
                                  "[--by minute|hour|day | --by-version] [--json]";

/* bucket: the second column (a bucket's start, or a version), NULL when there is none. */
static void print_row(const char *name, const char *bucket, const cJSON *f)
{
    if (bucket)
        printf("%-24s %-20s ", name, bucket);
    else
        printf("%-24s ", name);
    printf("%11.0f %7.0f %5.0f %12.0f %12.1f %12.4f %9.1f\n", cli_num(f, "invocations"),
           cli_num(f, "errors"), cli_num(f, "cold_starts"), cli_num(f, "billed_ms"),
           cli_num(f, "cpu_ms"), cli_num(f, "gb_s"), cli_num(f, "peak_memory_bytes") / 1048576.0);
}

int cli_usage(struct client *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"since", required_argument, NULL, 's'}, {"until", required_argument, NULL, 'u'},
        {"by", required_argument, NULL, 'b'},    {"by-version", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'j'},        {},
    };
    const char *since = NULL, *until = NULL, *by = NULL, *name = NULL;
    bool json = false, by_version = false;
    int o;

    optind = 0;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (o) {
        case 's':
            since = optarg;
            break;
        case 'u':
            until = optarg;
            break;
        case 'b':
            by = optarg;
            break;
        case 'v':
            by_version = true;
            break;
        case 'j':
            json = true;
            break;
        default:
            cli_fail("%s", usage_usage);
            return 2;
        }
    }
    /* The server's versions are over the whole range, not per bucket. */
    if (argc - optind > 1 || (by && by_version)) {
        cli_fail("%s", usage_usage);
        return 2;
    }
    if (argc - optind == 1) {
        name = argv[optind];
        if (cli_check_name("function", name) != 0)
            return 1;
    }
    const char *keys[] = {"function", "since", "until", "group_by", "by_version"},
               *values[] = {name, since, until, by, by_version ? "true" : NULL};
    _cleanup_free_ char *path = cli_query_path("/v1/usage", keys, values, ARRAY_SIZE(keys));
    if (!path)
        return cli_fail("out of memory");

    cJSON *root = NULL;
    _cleanup_free_ char *raw = NULL;
    int r = cli_request_json(c, "GET", path, NULL, NULL, 0, &root, &raw);
    if (r != 0)
        return r;
    if (json) {
        printf("%s\n", raw);
        cJSON_Delete(root);
        return 0;
    }
    const cJSON *fns = cJSON_GetObjectItemCaseSensitive(root, "functions");
    const cJSON *totals = cJSON_GetObjectItemCaseSensitive(root, "totals");
    if (!cJSON_IsArray(fns) || !cJSON_IsObject(totals)) {
        cJSON_Delete(root);
        return cli_fail("the server's usage reply is malformed");
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "since");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "until");
    printf("usage from %s to %s\n", cJSON_IsString(s) ? s->valuestring : "?",
           cJSON_IsString(u) ? u->valuestring : "?");
    if (by || by_version)
        printf("%-24s %-20s ", "FUNCTION", by ? "BUCKET" : "VERSION");
    else
        printf("%-24s ", "FUNCTION");
    printf("%11s %7s %5s %12s %12s %12s %9s\n", "INVOCATIONS", "ERRORS", "COLD", "BILLED_MS",
           "CPU_MS", "GB_S", "PEAK_MB");
    const cJSON *f;
    cJSON_ArrayForEach(f, fns)
    {
        const cJSON *fname = cJSON_GetObjectItemCaseSensitive(f, "function");
        const char *nm = cJSON_IsString(fname) ? fname->valuestring : "?";
        const cJSON *buckets = cJSON_GetObjectItemCaseSensitive(f, "buckets");
        const cJSON *versions = cJSON_GetObjectItemCaseSensitive(f, "versions");
        if (by_version && cJSON_IsArray(versions)) {
            const cJSON *v;
            cJSON_ArrayForEach(v, versions)
            {
                char version[24];
                snprintf(version, sizeof(version), "%.0f", cli_num(v, "version"));
                print_row(nm, version, v);
            }
        } else if (by && cJSON_IsArray(buckets)) {
            const cJSON *b;
            cJSON_ArrayForEach(b, buckets)
            {
                const cJSON *start = cJSON_GetObjectItemCaseSensitive(b, "start");
                print_row(nm, cJSON_IsString(start) ? start->valuestring : "?", b);
            }
        } else
            print_row(nm, NULL, f);
    }
    print_row("TOTAL", by || by_version ? "" : NULL, totals);
    cJSON_Delete(root);
    return 0;
}
