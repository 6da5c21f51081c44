/* ignis emit: sends one CloudEvent to POST /v1/events (docs/api.md "POST /v1/events"). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "base/invocation_id.h"

static const char usage_emit[] = "usage: ignis emit TYPE [-d DATA|@FILE|-] [--source S] [--id ID] "
                                 "[--content-type T] [--json]";

/* "ce-NAME: VALUE" with the value percent-encoded as the HTTP binding asks (3.1.3.2): every byte
 * outside printable ASCII, and space, '"' and '%'. NULL without memory. */
static char *ce_header(const char *name, const char *value)
{
    size_t n = strlen(name) + 5 + 3 * strlen(value) + 1;
    char *h = malloc(n), *p;
    if (!h)
        return NULL;
    p = h + sprintf(h, "ce-%s: ", name);
    for (const unsigned char *s = (const unsigned char *)value; *s; s++)
        if (*s <= ' ' || *s >= 0x7f || *s == '"' || *s == '%')
            p += sprintf(p, "%%%02X", *s);
        else
            *p++ = (char)*s;
    *p = '\0';
    return h;
}

static void print_deliveries(const cJSON *root)
{
    const cJSON *list = cJSON_GetObjectItem(root, "deliveries");
    if (cJSON_IsTrue(cJSON_GetObjectItem(root, "duplicate"))) {
        printf("event %s from %s is a duplicate: not delivered again\n", cli_str(root, "id"),
               cli_str(root, "source"));
        return;
    }
    if (cJSON_GetArraySize(list) == 0) {
        printf("event %s accepted; no function subscribes to %s\n", cli_str(root, "id"),
               cli_str(root, "type"));
        return;
    }
    printf("%-32s %s\n", "FUNCTION", "INVOCATION");
    const cJSON *d;
    cJSON_ArrayForEach(d, list)
        printf("%-32s %s\n", cli_str(d, "function"), cli_str(d, "invocation"));
}

int cli_emit(struct client *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'}, {"source", required_argument, NULL, 's'},
        {"id", required_argument, NULL, 'i'},   {"content-type", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},       {},
    };
    const char *data_arg = NULL, *source = "/ignis/cli", *id_arg = NULL, *ct = NULL;
    bool json = false;
    int o;

    optind = 0;
    while ((o = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
        switch (o) {
        case 'd':
            data_arg = optarg;
            break;
        case 's':
            source = optarg;
            break;
        case 'i':
            id_arg = optarg;
            break;
        case 't':
            ct = optarg;
            break;
        case 'j':
            json = true;
            break;
        default:
            return cli_fail("%s", usage_emit);
        }
    }
    if (optind != argc - 1)
        return cli_fail("%s", usage_emit);

    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (data_arg && cli_read_data(data_arg, &data, &len) != 0)
        return 1;
    char id[INV_ID_LEN + 1];
    if (!id_arg) {
        inv_id_new(id);
        id_arg = id;
    }
    /* Data that parses as JSON is sent as JSON, anything else as text, unless told. */
    cJSON *parsed = data ? cJSON_ParseWithLength(data, len) : NULL;
    if (!ct && data)
        ct = parsed ? "application/json" : "text/plain; charset=utf-8";
    cJSON_Delete(parsed);
    _cleanup_free_ char *h_type = ce_header("type", argv[optind]),
                        *h_source = ce_header("source", source), *h_id = ce_header("id", id_arg),
                        *h_ct = NULL;
    /* Without a type, "Content-Type:" stops libcurl from sending its form type for a POST: the
     * header would become the event's datacontenttype. */
    if (asprintf(&h_ct, "Content-Type: %s", ct ? ct : "") < 0)
        h_ct = NULL;
    if (!h_type || !h_source || !h_id || !h_ct)
        return cli_fail("out of memory");
    const char *headers[] = {"ce-specversion: 1.0", h_type, h_source, h_id, h_ct, NULL};

    cJSON *root = NULL;
    char *raw = NULL;
    int r = cli_request_json(c, "POST", "/v1/events", headers, data ? data : "", len, &root, &raw);
    return r ? r : cli_print_reply(root, raw, json, print_deliveries);
}
