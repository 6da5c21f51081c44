/* ignis hosts: the hosts using the daemon's store (GET /v1/hosts), live and gone; ignis host
 * drain ID: one of them stops gracefully (POST /v1/hosts/{id}/drain). */
#include "cli.h"

static const char hosts_usage[] = "ignis hosts [--json]";

static void print_hosts(const cJSON *root)
{
    const cJSON *h;
    printf("%-20s %-5s %-28s %-8s %9s %5s %5s %15s %8s\n", "HOST", "STATE", "ADDRESS", "VERSION",
           "HEARTBEAT", "READY", "BUSY", "MEMORY MiB", "INV/S");
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(root, "hosts"))
    {
        const cJSON *c = cJSON_GetObjectItem(h, "containers"),
                    *m = cJSON_GetObjectItem(h, "memory");
        char id[64], beat[16], memory[32];
        snprintf(id, sizeof(id), "%s%s", cli_str(h, "host_id"),
                 cJSON_IsTrue(cJSON_GetObjectItem(h, "this")) ? " *" : "");
        snprintf(beat, sizeof(beat), "%.1fs ago", cli_num(h, "heartbeat_age_ms") / 1000);
        snprintf(memory, sizeof(memory), "%.0f/%.0f", cli_num(m, "used_bytes") / (1 << 20),
                 cli_num(m, "budget_bytes") / (1 << 20));
        printf("%-20s %-5s %-28s %-8s %9s %5.0f %5.0f %15s %8.1f\n", id, cli_str(h, "state"),
               cli_str(h, "advertise"), cli_str(h, "version"), beat, cli_num(c, "ready"),
               cli_num(c, "busy"), memory, cli_num(h, "invocations_per_s"));
    }
    printf("%.0f live (* this host)\n", cli_num(root, "live"));
}

int cli_hosts(struct client *c, int argc, char **argv)
{
    bool json = false;
    int i = cli_parse_options(argc, argv, hosts_usage, &json, NULL, 0);
    if (i < 0)
        return 2;
    if (i != argc)
        return cli_fail("usage: %s", hosts_usage), 2;
    cJSON *root = NULL;
    char *raw = NULL;
    int r = cli_request_json(c, "GET", "/v1/hosts", NULL, NULL, 0, &root, &raw);
    return r ? r : cli_print_reply(root, raw, json, print_hosts);
}

static const char host_usage[] = "ignis host drain|forget ID [--json]";

static void print_draining(const cJSON *root)
{
    printf("host %s is draining: it takes no new work, finishes what runs and hands back what it "
           "holds, then stops\n",
           cli_str(root, "host_id"));
}

static void print_forgotten(const cJSON *root)
{
    printf("host %s is forgotten: no longer listed (it registers anew if it starts again)\n",
           cli_str(root, "host_id"));
}

int cli_host(struct client *c, int argc, char **argv)
{
    bool json = false;
    if (argc < 2 || (!streq(argv[1], "drain") && !streq(argv[1], "forget")))
        return cli_fail("usage: %s", host_usage), 2;
    bool drain = streq(argv[1], "drain");
    int i = cli_parse_options(argc - 1, argv + 1, host_usage, &json, NULL, 0);
    if (i < 0)
        return 2;
    if (i != argc - 2)
        return cli_fail("usage: %s", host_usage), 2;
    const char *id = argv[argc - 1];
    char path[256];
    snprintf(path, sizeof(path), drain ? "/v1/hosts/%s/drain" : "/v1/hosts/%s", id);
    cJSON *root = NULL;
    char *raw = NULL;
    int r = cli_request_json(c, drain ? "POST" : "DELETE", path, NULL, NULL, 0, &root, &raw);
    return r ? r : cli_print_reply(root, raw, json, drain ? print_draining : print_forgotten);
}
