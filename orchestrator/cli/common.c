/* The helpers every verb shares (cli.h): failures, options, one JSON request, queries, the -d
 * payload. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "base/protocol.h"
#include "cli.h"
#include "functions/manifest.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("ignis: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_fail_response(const struct client_response *resp)
{
    cJSON *root = cJSON_Parse(resp->body);
    const cJSON *msg = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "message");
    int r = cJSON_IsString(msg)
                ? cli_fail("%s (HTTP %ld)%s", msg->valuestring, resp->status,
                           resp->status == 401 ? "; give a token with --token, $IGNIS_TOKEN or a "
                                                 "token file (see ignis --help)"
                                               : "")
                : cli_fail("the server answered HTTP %ld", resp->status);
    cJSON_Delete(root);
    return r;
}

int cli_check_name(const char *kind, const char *name)
{
    if (manifest_name_valid(name))
        return 0;
    return cli_fail("\"%s\" is not a %s name ([a-z][a-z0-9-]{0,62})", name, kind);
}

int cli_parse_options(int argc, char **argv, const char *usage_line, bool *ret_json,
                      const struct cli_option *extra, size_t nextra)
{
    struct option longopts[8] = {{"json", no_argument, NULL, 'j'}};
    char shorts[2 * ARRAY_SIZE(longopts) + 1] = "", *sp = shorts;
    for (size_t i = 0; i < nextra && i < ARRAY_SIZE(longopts) - 2; i++) {
        bool flag = extra[i].ret_flag;
        longopts[i + 1] = (struct option){extra[i].name, flag ? no_argument : required_argument,
                                          NULL, 256 + (int)i};
        if (extra[i].short_name) {
            *sp++ = extra[i].short_name;
            if (!flag)
                *sp++ = ':';
        }
    }
    int c;
    optind = 0; /* glibc: rescan from the start, for this verb's own argv */
    opterr = 0;
    while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
        if (c == 'j') {
            *ret_json = true;
            continue;
        }
        size_t i = 0;
        while (i < nextra && c != 256 + (int)i && c != extra[i].short_name)
            i++;
        if (c == '?' || c == ':' || i == nextra) {
            if (usage_line)
                cli_fail("usage: %s", usage_line);
            else
                cli_fail("%s: bad option (see ignis --help)", argv[0]);
            return -1;
        }
        if (extra[i].ret_flag)
            *extra[i].ret_flag = true;
        else
            *extra[i].ret = optarg;
    }
    return optind;
}

int cli_request_json(struct client *c, const char *method, const char *path,
                     const char *const *headers, const void *body, size_t len, cJSON **ret,
                     char **ret_raw)
{
    struct client_response resp;
    struct ig_error err = {};

    if (client_request(c, method, path, headers, body, len, &resp, &err) < 0)
        return cli_fail("%s", err.message);
    if (resp.status < 200 || resp.status > 299) {
        int r = cli_fail_response(&resp);
        client_response_clear(&resp);
        return r;
    }
    cJSON *root = cJSON_Parse(resp.body);
    if (!root) {
        client_response_clear(&resp);
        return cli_fail("the server's reply to %s %s is not JSON", method, path);
    }
    *ret = root;
    if (ret_raw)
        *ret_raw = strdup(resp.body);
    client_response_clear(&resp);
    return 0;
}

char *cli_query_path(const char *base, const char *const *keys, const char *const *values, size_t n)
{
    char *path = strdup(base);
    char sep = '?';
    for (size_t i = 0; path && i < n; i++) {
        if (!values[i])
            continue;
        char *v = curl_easy_escape(NULL, values[i], 0), *next = NULL;
        if (!v || asprintf(&next, "%s%c%s=%s", path, sep, keys[i], v) < 0)
            next = NULL;
        curl_free(v);
        free(path);
        path = next;
        sep = '&';
    }
    return path;
}

const char *cli_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

double cli_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int cli_read_data(const char *arg, char **ret, size_t *ret_len)
{
    if (arg[0] != '@' && !streq(arg, "-")) {
        *ret = strdup(arg);
        *ret_len = strlen(arg);
        return *ret ? 0 : cli_fail("out of memory");
    }
    /* A file or standard input (a pipe too: read_file reads to EOF), at most the payload limit. */
    const char *path = arg[0] == '@' ? arg + 1 : "/dev/stdin";
    int r = read_file(path, PROTO_DEFAULT_MAX_BODY, ret, ret_len);
    if (r == -EFBIG)
        return cli_fail("%s is over the %u-byte payload limit", arg[0] == '@' ? path : "input",
                        PROTO_DEFAULT_MAX_BODY);
    if (r < 0)
        return cli_fail("cannot read %s: %s", arg[0] == '@' ? path : "standard input",
                        strerror(-r));
    return 0;
}

int cli_print_reply(cJSON *root, char *raw, bool json, void (*print)(const cJSON *root))
{
    if (json)
        printf("%s\n", raw);
    else
        print(root);
    cJSON_Delete(root);
    free(raw);
    return 0;
}
