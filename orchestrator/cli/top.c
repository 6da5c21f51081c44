/* ignis top: every function's live state, refreshed about once a second. Levels (queue depth,
 * ready/busy/spawning, desired, p50/p99 latency) come straight from GET /v1/functions; rates
 * (invocations/s, cold starts/s, billed ms/s) are the differences of its counters between two
 * polls over the time between them. On a terminal it redraws until q or Ctrl-C; otherwise it
 * prints one snapshot (rates over one interval) and exits, for scripts and tests. With
 * --cluster, each poll asks every live host of the store (GET /v1/hosts) for its functions, at
 * its advertised address with the same token, and shows their sum (latencies: the highest
 * host's), and with --by-host each host's row under each function. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* A function's counters at the previous poll. */
struct prev {
    char name[128];
    double invocations, cold_starts, billed_ms;
};

struct top {
    struct prev *prev;
    size_t nprev;
    uint64_t prev_us;
    bool cluster, by_host;
    char title[160]; /* what the frame's header names: the server, or the cluster's hosts */
};

/* A host's reply may be slow or never come: the frame goes on without it. */
#define PEER_TIMEOUT_MS 2000

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
}

static const struct prev *find_prev(const struct top *t, const char *name)
{
    for (size_t i = 0; i < t->nprev; i++)
        if (streq(t->prev[i].name, name))
            return &t->prev[i];
    return NULL;
}

/* A rate from a counter's two readings; negative (a function pushed again, counters restarted)
 * or without a previous reading it is unknown, printed as "-". */
static void fmt_rate(char *buf, size_t size, const struct prev *p, double now, double then,
                     double seconds)
{
    if (!p || seconds <= 0 || now < then)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.1f", (now - then) / seconds);
}

/* Prints one frame from a GET /v1/functions reply to out (nothing when NULL) and remembers its
 * counters for the next frame's rates. */
static int render(struct top *t, const cJSON *root, uint64_t now_us, FILE *out)
{
    const cJSON *fns = cJSON_GetObjectItem(root, "functions"), *f;
    double seconds = t->prev_us ? (double)(now_us - t->prev_us) / 1e6 : 0;
    size_t n = (size_t)cJSON_GetArraySize(fns);
    struct prev *next = calloc(n ? n : 1, sizeof(*next));
    if (!next)
        return cli_fail("out of memory");

    char stamp[32];
    time_t wall = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime_r(&wall, &tm));
    if (out) {
        fprintf(out, "ignis top  %s  %s  %zu %s%s\n\n", t->title, stamp, n,
                t->by_host ? "row" : "function", n == 1 ? "" : "s");
        fprintf(out, "%-24s %6s %6s %6s %6s %7s %8s %9s %9s %7s %9s\n", "FUNCTION", "QUEUE",
                "READY", "BUSY", "SPAWN", "DESIRED", "INV/S", "P50_MS", "P99_MS", "COLD/S",
                "BILLMS/S");
    }
    size_t i = 0;
    cJSON_ArrayForEach(f, fns)
    {
        const cJSON *live = cJSON_GetObjectItem(f, "live");
        const char *name = cli_str(f, "name");
        struct prev *p = &next[i++];
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->invocations = cli_num(live, "invocations");
        p->cold_starts = cli_num(live, "cold_starts");
        p->billed_ms = cli_num(live, "billed_ms");
        const struct prev *old = find_prev(t, name);
        char inv[16], cold[16], billed[16];
        fmt_rate(inv, sizeof(inv), old, p->invocations, old ? old->invocations : 0, seconds);
        fmt_rate(cold, sizeof(cold), old, p->cold_starts, old ? old->cold_starts : 0, seconds);
        fmt_rate(billed, sizeof(billed), old, p->billed_ms, old ? old->billed_ms : 0, seconds);
        if (!out)
            continue;
        fprintf(out, "%-24.24s %6.0f %6.0f %6.0f %6.0f %7.0f %8s %9.1f %9.1f %7s %9s\n", name,
                cli_num(live, "queue_depth"), cli_num(live, "ready"), cli_num(live, "busy"),
                cli_num(live, "spawning"), cli_num(live, "desired"), inv,
                cli_num(live, "latency_p50_ms"), cli_num(live, "latency_p99_ms"), cold, billed);
    }
    free(t->prev);
    t->prev = next;
    t->nprev = n;
    t->prev_us = now_us;
    return 0;
}

/* The live figures summed over hosts (the levels and counters), and those of which the
 * cluster's is the highest host's (the latencies). */
static const char *const summed[] = {"queue_depth", "ready",       "busy",        "spawning",
                                     "desired",     "invocations", "cold_starts", "billed_ms"};
static const char *const highest[] = {"latency_p50_ms", "latency_p99_ms"};

static void merge_live(cJSON *into, const cJSON *from)
{
    for (size_t i = 0; i < ARRAY_SIZE(summed); i++) {
        cJSON *v = cJSON_GetObjectItem(into, summed[i]);
        if (cJSON_IsNumber(v))
            cJSON_SetNumberValue(v, v->valuedouble + cli_num(from, summed[i]));
    }
    for (size_t i = 0; i < ARRAY_SIZE(highest); i++) {
        cJSON *v = cJSON_GetObjectItem(into, highest[i]);
        if (cJSON_IsNumber(v) && cli_num(from, highest[i]) > v->valuedouble)
            cJSON_SetNumberValue(v, cli_num(from, highest[i]));
    }
}

static cJSON *find_function(cJSON *fns, const char *name)
{
    cJSON *f;
    cJSON_ArrayForEach(f, fns) if (streq(cli_str(f, "name"), name)) return f;
    return NULL;
}

/* A function row {"name", "live"} with a copy of live; NULL without memory. */
static cJSON *function_row(const char *name, const cJSON *live)
{
    cJSON *row = cJSON_CreateObject(), *copy = cJSON_Duplicate(live, true);
    if (!row || !copy || !cJSON_AddStringToObject(row, "name", name)) {
        cJSON_Delete(row);
        cJSON_Delete(copy);
        return NULL;
    }
    cJSON_AddItemToObject(row, "live", copy);
    return row;
}

/* Adds one host's GET /v1/functions reply to the sums (and, by host, its rows to rows). */
static int merge_host(cJSON *sums, cJSON *rows, const cJSON *reply, const char *host_id)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(reply, "functions"))
    {
        const char *name = cli_str(f, "name");
        const cJSON *live = cJSON_GetObjectItem(f, "live");
        cJSON *sum = find_function(sums, name);
        if (sum)
            merge_live(cJSON_GetObjectItem(sum, "live"), live);
        else if (!(sum = function_row(name, live)) || !cJSON_AddItemToArray(sums, sum))
            return -ENOMEM;
        if (!rows)
            continue;
        char row_name[192];
        snprintf(row_name, sizeof(row_name), "%s@%s", name, host_id);
        cJSON *row = function_row(row_name, live);
        if (!row || !cJSON_AddStringToObject(row, "of", name) || !cJSON_AddItemToArray(rows, row))
            return -ENOMEM;
    }
    return 0;
}

/* Every live host's functions, merged into one reply of GET /v1/functions's shape: each
 * function's sum, followed by its hosts' rows with by_host. Hosts that do not answer are left
 * out of this frame (its title says how many answered). */
static int poll_cluster(struct client *c, struct top *t, cJSON **ret)
{
    cJSON *hosts;
    if (cli_request_json(c, "GET", "/v1/hosts", NULL, NULL, 0, &hosts, NULL) != 0)
        return 1;
    cJSON *sums = cJSON_CreateArray(), *rows = t->by_host ? cJSON_CreateArray() : NULL;
    int live = 0, answered = 0, r = sums && (rows || !t->by_host) ? 0 : -ENOMEM;
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(hosts, "hosts"))
    {
        if (r < 0 || !streq(cli_str(h, "state"), "live"))
            continue;
        live++;
        struct client *peer;
        struct client_response resp = {};
        struct ig_error err = {};
        if (client_new_like(c, cli_str(h, "advertise"), &peer) < 0) {
            r = -ENOMEM;
            break;
        }
        client_set_timeout(peer, PEER_TIMEOUT_MS);
        if (client_request(peer, "GET", "/v1/functions", NULL, NULL, 0, &resp, &err) == 0 &&
            resp.status == 200) {
            cJSON *reply = cJSON_Parse(resp.body);
            if (reply && merge_host(sums, rows, reply, cli_str(h, "host_id")) == 0)
                answered++;
            cJSON_Delete(reply);
        }
        client_response_clear(&resp);
        client_free(peer);
    }
    cJSON_Delete(hosts);
    snprintf(t->title, sizeof(t->title), "cluster of %s (%d of %d live hosts answered)",
             client_base_url(c), answered, live);
    cJSON *root = cJSON_CreateObject(),
          *out = root ? cJSON_AddArrayToObject(root, "functions") : NULL;
    /* Each sum, then its hosts' rows, in the order the hosts listed them. */
    for (cJSON *sum = sums ? sums->child : NULL; r == 0 && out && sum; sum = sums->child) {
        cJSON_AddItemToArray(out, cJSON_DetachItemViaPointer(sums, sum));
        for (cJSON *row = rows ? rows->child : NULL, *next; row; row = next) {
            next = row->next;
            if (streq(cli_str(row, "of"), cli_str(sum, "name")))
                cJSON_AddItemToArray(out, cJSON_DetachItemViaPointer(rows, row));
        }
    }
    cJSON_Delete(sums);
    cJSON_Delete(rows);
    if (r < 0 || !out) {
        cJSON_Delete(root);
        return cli_fail("out of memory");
    }
    *ret = root;
    return 0;
}

static int poll_functions(struct client *c, struct top *t, cJSON **ret)
{
    if (t->cluster)
        return poll_cluster(c, t, ret);
    snprintf(t->title, sizeof(t->title), "%s", client_base_url(c));
    return cli_request_json(c, "GET", "/v1/functions", NULL, NULL, 0, ret, NULL);
}

/* Non-terminal: two polls one interval apart, one snapshot with rates. */
static int snapshot(struct client *c, struct top *t, double interval)
{
    cJSON *root;
    if (poll_functions(c, t, &root) != 0)
        return 1;
    /* The first poll only takes the counters' readings. */
    int r = render(t, root, now_usec(), NULL);
    cJSON_Delete(root);
    if (r)
        return r;
    usleep((useconds_t)(interval * 1e6));
    if (poll_functions(c, t, &root) != 0)
        return 1;
    r = render(t, root, now_usec(), stdout);
    cJSON_Delete(root);
    return r;
}

static int live_view(struct client *c, struct top *t, double interval)
{
    struct termios saved;
    bool keys = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (keys) {
        /* Keys without Enter and without echo; ISIG stays, so Ctrl-C raises SIGINT. */
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    /* No SA_RESTART: the signal interrupts poll() so the terminal is restored at once. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    client_set_timeout(c, 5000);

    int r = 0;
    while (!interrupted) {
        cJSON *root;
        if (poll_functions(c, t, &root) != 0) {
            r = 1;
            break;
        }
        fputs("\033[H\033[2J", stdout); /* home, clear screen */
        r = render(t, root, now_usec(), stdout);
        cJSON_Delete(root);
        if (r)
            break;
        printf("\n%s\n", keys ? "q or Ctrl-C quits" : "Ctrl-C quits");
        fflush(stdout);

        uint64_t until = now_usec() + (uint64_t)(interval * 1e6);
        bool quit = false;
        for (uint64_t now; !interrupted && !quit && (now = now_usec()) < until;) {
            struct pollfd pfd = {.fd = keys ? STDIN_FILENO : -1, .events = POLLIN};
            int n = poll(&pfd, 1, (int)((until - now + 999) / 1000));
            char ch;
            if (n > 0 && read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
                quit = true;
        }
        if (quit)
            break;
    }
    if (keys)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    return r;
}

int cli_top(struct client *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"interval", required_argument, NULL, 'i'},
        {"cluster", no_argument, NULL, 'c'},
        {"by-host", no_argument, NULL, 'b'},
        {},
    };
    static const char usage[] = "usage: ignis top [--interval SECONDS] [--cluster [--by-host]]";
    double interval = 1.0;
    struct top t = {};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "i:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            interval = strtod(optarg, NULL);
            break;
        case 'c':
            t.cluster = true;
            break;
        case 'b':
            t.by_host = true;
            break;
        default:
            cli_fail("%s", usage);
            return 2;
        }
    }
    if (optind != argc || !(interval >= 0.1 && interval <= 3600) || (t.by_host && !t.cluster)) {
        cli_fail("%s (--interval 0.1 to 3600; --by-host with --cluster)", usage);
        return 2;
    }
    int r = isatty(STDOUT_FILENO) ? live_view(c, &t, interval) : snapshot(c, &t, interval);
    free(t.prev);
    return r;
}
