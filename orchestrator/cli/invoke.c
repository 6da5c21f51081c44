/* ignis invoke and ignis result: the dispatcher's verbs (docs/api.md "Invocations"). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "base/invocation_id.h"
#include "base/protocol.h"

/* The version that ran (or will run) and the alias it came through (null: a version number). */
static void add_route(cJSON *o, const char *version, const char *alias)
{
    if (version[0])
        cJSON_AddNumberToObject(o, "version", atof(version));
    if (alias[0])
        cJSON_AddStringToObject(o, "alias", alias);
    else
        cJSON_AddNullToObject(o, "alias");
}

/* An async invocation's 202 body with the route added, for --json. */
static int print_with_route(const char *body, const char *version, const char *alias)
{
    cJSON *o = cJSON_Parse(body);
    if (!o)
        return cli_fail("the daemon's reply is not JSON: %s", body);
    add_route(o, version, alias);
    char *text = cJSON_PrintUnformatted(o);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
    return 0;
}

static const char usage_invoke[] =
    "usage: ignis invoke NAME[@VERSION|@ALIAS] [-d DATA|@FILE|-] [-H 'Header: value'] [--async] "
    "[--json]";

int cli_invoke(struct client *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"header", required_argument, NULL, 'H'},
        {"async", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {},
    };
    const char *data_arg = NULL, *headers[12] = {};
    size_t nheaders = 0;
    bool async = false, json = false;
    int o;

    optind = 0;
    while ((o = getopt_long(argc, argv, "d:H:", longopts, NULL)) != -1) {
        switch (o) {
        case 'd':
            data_arg = optarg;
            break;
        case 'H':
            if (nheaders >= ARRAY_SIZE(headers) - 2)
                return cli_fail("invoke: too many headers");
            headers[nheaders++] = optarg;
            break;
        case 'a':
            async = true;
            break;
        case 'j':
            json = true;
            break;
        default:
            return cli_fail("%s", usage_invoke);
        }
    }
    if (optind != argc - 1)
        return cli_fail("%s", usage_invoke);
    const char *name = argv[optind];

    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (data_arg && cli_read_data(data_arg, &data, &len) != 0)
        return 1;
    if (async)
        headers[nheaders++] = "Ignis-Invocation-Type: async";
    /* NAME@VERSION and NAME@ALIAS go in the path as they are: '@' needs no escape in a path
     * segment (RFC 3986 pchar), and the daemon reads the selector from it. */
    char path[512];
    snprintf(path, sizeof(path), "/v1/functions/%s/invoke", name);

    struct client_response resp;
    struct ig_error err = {};
    if (client_request(c, "POST", path, headers, data ? data : "", len, &resp, &err) < 0)
        return cli_fail("%s", err.message);

    char id[64] = "", cold[16] = "", billed[32] = "", version[24] = "", alias[80] = "",
         host[64] = "";
    client_response_header(&resp, "Ignis-Invocation-Id", id, sizeof(id));
    client_response_header(&resp, "Ignis-Version", version, sizeof(version));
    client_response_header(&resp, "Ignis-Alias", alias, sizeof(alias));
    client_response_header(&resp, "Ignis-Cold-Start", cold, sizeof(cold));
    client_response_header(&resp, "Ignis-Billed-Ms", billed, sizeof(billed));
    client_response_header(&resp, "Ignis-Host", host, sizeof(host));
    int r = 0;
    if (async) {
        if (resp.status != 202)
            r = cli_fail_response(&resp);
        else if (json)
            r = print_with_route(resp.body, version, alias);
        else
            printf("%s\n", id);
    } else if (json) {
        /* The whole outcome for scripts: the result (as JSON when it is), or the error. */
        cJSON *o_ = cJSON_CreateObject();
        cJSON_AddStringToObject(o_, "id", id);
        cJSON_AddNumberToObject(o_, "status", (double)resp.status);
        cJSON_AddBoolToObject(o_, "cold_start", streq(cold, "true"));
        cJSON_AddNumberToObject(o_, "billed_ms", atof(billed));
        add_route(o_, version, alias);
        if (host[0])
            cJSON_AddStringToObject(o_, "host", host);
        cJSON *body = cJSON_Parse(resp.body);
        if (resp.status == 200)
            cJSON_AddItemToObject(o_, "result", body ? body : cJSON_CreateString(resp.body));
        else {
            cJSON *e = cJSON_DetachItemFromObject(body, "error");
            cJSON_AddItemToObject(o_, "error", e ? e : cJSON_CreateString(resp.body));
            cJSON_Delete(body);
        }
        char *text = cJSON_PrintUnformatted(o_);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(o_);
        r = resp.status == 200 ? 0 : 1;
    } else if (resp.status == 200) {
        fwrite(resp.body, 1, resp.len, stdout);
        if (resp.len && resp.body[resp.len - 1] != '\n')
            putchar('\n');
    } else
        r = cli_fail_response(&resp);
    client_response_clear(&resp);
    return r;
}

static void print_record(cJSON *j)
{
    /* cpu_ms, peak_memory_bytes, init_ms: the last attempt's usage (null, and not printed, on a
     * record older than them). */
    static const char *const keys[] = {
        "id",          "function",  "version",    "alias",  "status",  "attempts",
        "duration_ms", "billed_ms", "cold_start", "cpu_ms", "init_ms", "peak_memory_bytes",
    };
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        if (!v)
            continue;
        if (cJSON_IsString(v))
            printf("%-17s %s\n", keys[i], v->valuestring);
        else if (cJSON_IsBool(v))
            printf("%-17s %s\n", keys[i], cJSON_IsTrue(v) ? "yes" : "no");
        else if (cJSON_IsNumber(v))
            /* %.15g: a byte count in full, not 9.00301e+06; ms to the µs as sent. */
            printf("%-17s %.15g\n", keys[i], v->valuedouble);
    }
    cJSON *e = cJSON_GetObjectItem(j, "error");
    if (e)
        printf("%-17s %s: %s\n", "error", cJSON_GetObjectItem(e, "type")->valuestring,
               cJSON_GetObjectItem(e, "message")->valuestring);
    cJSON *res = cJSON_GetObjectItem(j, "result");
    if (res) {
        char *text = cJSON_IsString(res) ? NULL : cJSON_PrintUnformatted(res);
        printf("%-17s %s\n", "result", text ? text : res->valuestring);
        free(text);
    }
}

int cli_result(struct client *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"wait", no_argument, NULL, 'w'},
        {"json", no_argument, NULL, 'j'},
        {},
    };
    bool wait = false, json = false;
    int o;

    optind = 0;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (o == 'w')
            wait = true;
        else if (o == 'j')
            json = true;
        else
            return cli_fail("usage: ignis result ID [--wait] [--json]");
    }
    if (optind != argc - 1)
        return cli_fail("usage: ignis result ID [--wait] [--json]");
    char path[128];
    snprintf(path, sizeof(path), "/v1/invocations/%s", argv[optind]);

    /* --wait polls: quickly at first, then every half second. */
    for (unsigned delay_ms = 10;; delay_ms = delay_ms < 500 ? delay_ms * 2 : 500) {
        struct client_response resp;
        struct ig_error err = {};
        if (client_request(c, "GET", path, NULL, NULL, 0, &resp, &err) < 0)
            return cli_fail("%s", err.message);
        if (resp.status != 200) {
            int r = cli_fail_response(&resp);
            client_response_clear(&resp);
            return r;
        }
        cJSON *j = cJSON_Parse(resp.body);
        const cJSON *st = cJSON_GetObjectItem(j, "status");
        enum inv_status status = INV_QUEUED;
        if (!cJSON_IsString(st) || inv_status_parse(st->valuestring, &status) < 0) {
            cJSON_Delete(j);
            client_response_clear(&resp);
            return cli_fail("the server's reply is malformed");
        }
        if (!wait || inv_status_final(status)) {
            if (json)
                printf("%s\n", resp.body);
            else
                print_record(j);
            cJSON_Delete(j);
            client_response_clear(&resp);
            return status == INV_FAILED || status == INV_DEAD ? 1 : 0;
        }
        cJSON_Delete(j);
        client_response_clear(&resp);
        usleep(delay_ms * 1000);
    }
}
