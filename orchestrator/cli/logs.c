/* ignis logs: GET /v1/functions/{name}/logs, printed a record a line as it arrives. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage_logs[] =
    "usage: ignis logs NAME [-f] [--invocation ID] [--since TIME] [--tail N] [--json]";

struct printer {
    bool json;
    char line[65536];
    size_t len;
};

/* "TIME INVOCATION STREAM TEXT", or the record as sent with --json. */
static void print_record(const struct printer *pr, const char *rec)
{
    if (pr->json) {
        printf("%s\n", rec);
        fflush(stdout);
        return;
    }
    cJSON *root = cJSON_Parse(rec);
    const cJSON *time = cJSON_GetObjectItem(root, "time");
    const cJSON *inv = cJSON_GetObjectItem(root, "invocation");
    const cJSON *stream = cJSON_GetObjectItem(root, "stream");
    const cJSON *text = cJSON_GetObjectItem(root, "text");
    printf("%s %s %s%s %s\n", cJSON_IsString(time) ? time->valuestring : "-",
           cJSON_IsString(inv) ? inv->valuestring : "-",
           cJSON_IsString(stream) ? stream->valuestring : "?",
           cJSON_IsTrue(cJSON_GetObjectItem(root, "concurrent")) ? "(concurrent)" : "",
           cJSON_IsString(text) ? text->valuestring : "");
    fflush(stdout);
    cJSON_Delete(root);
}

static bool on_data(const char *p, size_t n, void *userdata)
{
    struct printer *pr = userdata;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            pr->line[pr->len] = '\0';
            print_record(pr, pr->line);
            pr->len = 0;
        } else if (pr->len < sizeof(pr->line) - 1)
            pr->line[pr->len++] = p[i];
    }
    return true;
}

int cli_logs(struct client *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"follow", no_argument, NULL, 'f'},      {"invocation", required_argument, NULL, 'i'},
        {"since", required_argument, NULL, 's'}, {"tail", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},        {},
    };
    const char *inv = NULL, *since = NULL, *tail = NULL;
    bool follow = false;
    struct printer *pr = calloc(1, sizeof(*pr));
    int o;

    if (!pr)
        return cli_fail("out of memory");
    optind = 0;
    while ((o = getopt_long(argc, argv, "f", longopts, NULL)) != -1) {
        switch (o) {
        case 'f':
            follow = true;
            break;
        case 'i':
            inv = optarg;
            break;
        case 's':
            since = optarg;
            break;
        case 't':
            tail = optarg;
            break;
        case 'j':
            pr->json = true;
            break;
        default:
            free(pr);
            return cli_fail("%s", usage_logs);
        }
    }
    if (optind != argc - 1) {
        free(pr);
        return cli_fail("%s", usage_logs);
    }
    char *e_name = curl_easy_escape(NULL, argv[optind], 0), *base = NULL;
    if (!e_name || asprintf(&base, "/v1/functions/%s/logs", e_name) < 0)
        base = NULL;
    curl_free(e_name);
    const char *keys[] = {"follow", "invocation", "since", "tail"},
               *values[] = {follow ? "true" : "false", inv, since, tail};
    _cleanup_free_ char *path = base ? cli_query_path(base, keys, values, ARRAY_SIZE(keys)) : NULL;
    free(base);
    if (!path) {
        free(pr);
        return cli_fail("out of memory");
    }

    struct client_response resp;
    struct ig_error err = {};
    int r = 0;
    if (client_stream(c, path, on_data, pr, &resp, &err) < 0)
        r = cli_fail("%s", err.message);
    else {
        if (resp.status != 200)
            r = cli_fail_response(&resp);
        client_response_clear(&resp);
    }
    free(pr);
    return r;
}
