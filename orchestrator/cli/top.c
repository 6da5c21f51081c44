/* ignis top: every function's live state, refreshed about once a second. Levels (queue depth,
 * ready/busy/spawning, desired, p50/p99 latency) come straight from GET /v1/functions; rates
 * (invocations/s, cold starts/s, billed ms/s) are the differences of its counters between two
 * polls over the time between them. On a terminal it redraws until q or Ctrl-C; otherwise it
 * prints one snapshot (rates over one interval) and exits, for scripts and tests. */
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
};

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
static int render(struct top *t, const cJSON *root, const char *server, uint64_t now_us, FILE *out)
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
        fprintf(out, "ignis top  %s  %s  %zu function%s\n\n", server, stamp, n, n == 1 ? "" : "s");
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

static int poll_functions(struct client *c, cJSON **ret)
{
    return cli_request_json(c, "GET", "/v1/functions", NULL, NULL, 0, ret, NULL);
}

/* Non-terminal: two polls one interval apart, one snapshot with rates. */
static int snapshot(struct client *c, struct top *t, double interval)
{
    cJSON *root;
    if (poll_functions(c, &root) != 0)
        return 1;
    /* The first poll only takes the counters' readings. */
    int r = render(t, root, client_base_url(c), now_usec(), NULL);
    cJSON_Delete(root);
    if (r)
        return r;
    usleep((useconds_t)(interval * 1e6));
    if (poll_functions(c, &root) != 0)
        return 1;
    r = render(t, root, client_base_url(c), now_usec(), stdout);
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
        if (poll_functions(c, &root) != 0) {
            r = 1;
            break;
        }
        fputs("\033[H\033[2J", stdout); /* home, clear screen */
        r = render(t, root, client_base_url(c), now_usec(), stdout);
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
        {},
    };
    double interval = 1.0;
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "i:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            interval = strtod(optarg, NULL);
            break;
        default:
            cli_fail("usage: ignis top [--interval SECONDS]");
            return 2;
        }
    }
    if (optind != argc || !(interval >= 0.1 && interval <= 3600)) {
        cli_fail("usage: ignis top [--interval SECONDS] (0.1 to 3600)");
        return 2;
    }
    struct top t = {};
    int r = isatty(STDOUT_FILENO) ? live_view(c, &t, interval) : snapshot(c, &t, interval);
    free(t.prev);
    return r;
}
