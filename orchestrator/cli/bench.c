/* ignis-bench: a load generator on libcurl's multi interface with keep-alive. Either a fixed
 * number of clients each sending back to back (closed loop), or a fixed arrival rate (open loop:
 * latency counts from when a request was due, so a slow server cannot hide its queueing behind
 * the generator: no coordinated omission). Prints throughput, latency percentiles and errors by
 * status, and how many answers said `Ignis-Cold-Start: true`; --json for scripts. */
#include <curl/curl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

#define MAX_CLIENTS 4096

static const char usage[] =
    "Usage: ignis-bench [OPTIONS] URL\n"
    "  -c, --concurrency N   N clients, each sending back to back (default 1)\n"
    "  -r, --rate R          instead, start R requests per second (open loop)\n"
    "  -t, --duration S      run for S seconds (default 10; fractions allowed)\n"
    "  -n, --requests N      or stop after N requests\n"
    "  -X, --method M        HTTP method (default GET, or POST with -d)\n"
    "  -H, --header H        add a header (repeatable)\n"
    "  -d, --data DATA       request body; @FILE reads it from FILE\n"
    "  -w, --warmup S        count cold starts separately for requests due after S seconds\n"
    "      --json            print the result as JSON\n"
    "The token is $IGNIS_TOKEN unless -H gives an Authorization header; an HTTPS server is\n"
    "verified with $IGNIS_CACERT, else the system's CA store.\n";

struct client {
    CURL *easy;
    uint64_t due; /* when this request was meant to start (rate mode) or started */
    bool busy;
    bool cold; /* the answer said Ignis-Cold-Start: true */
};

struct stats {
    uint64_t *lat; /* µs */
    size_t n, cap;
    uint64_t status_count[600];
    uint64_t transport_errors;
    uint64_t cold, after_warmup, cold_after_warmup;
};

static void record(struct stats *s, uint64_t usec, long status)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        uint64_t *l = realloc(s->lat, cap * sizeof(*l));
        if (!l)
            return;
        s->lat = l;
        s->cap = cap;
    }
    s->lat[s->n++] = usec;
    if (status > 0 && status < 600)
        s->status_count[status]++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t percentile(const struct stats *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)s->n);
    return s->lat[i == 0 ? 0 : i - 1];
}

static size_t discard(char *p, size_t size, size_t n, void *userdata)
{
    return size * n;
}

/* Ignis marks the invocations that waited for their container to start. */
static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
    struct client *cl = userdata;
    static const char name[] = "Ignis-Cold-Start:";
    size_t len = size * n;
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        const char *v = p + sizeof(name) - 1;
        while (v < p + len && *v == ' ')
            v++;
        cl->cold = (size_t)(p + len - v) >= 4 && strncasecmp(v, "true", 4) == 0;
    }
    return len;
}

static char *load_data(const char *arg, size_t *ret_len)
{
    if (arg[0] != '@') {
        *ret_len = strlen(arg);
        return strdup(arg);
    }
    char *text = NULL;
    if (read_file(arg + 1, 64u << 20, &text, ret_len) < 0)
        return NULL;
    return text;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"concurrency", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 't'},
        {"requests", required_argument, NULL, 'n'},
        {"method", required_argument, NULL, 'X'},
        {"header", required_argument, NULL, 'H'},
        {"data", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {},
    };
    long concurrency = 1;
    double rate = 0, duration = 10, warmup = 0;
    uint64_t max_requests = 0;
    const char *method = NULL;
    struct curl_slist *headers = curl_slist_append(NULL, "Expect:");
    char *data = NULL;
    size_t data_len = 0;
    bool json = false, has_auth = false;
    int c;

    while ((c = getopt_long(argc, argv, "c:r:t:n:X:H:d:w:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            concurrency = strtol(optarg, NULL, 10);
            break;
        case 'r':
            rate = strtod(optarg, NULL);
            break;
        case 't':
            duration = strtod(optarg, NULL);
            break;
        case 'n':
            max_requests = strtoull(optarg, NULL, 10);
            break;
        case 'X':
            method = optarg;
            break;
        case 'H':
            headers = curl_slist_append(headers, optarg);
            has_auth = has_auth || strncasecmp(optarg, "Authorization:", 14) == 0;
            break;
        case 'd':
            free(data);
            data = load_data(optarg, &data_len);
            if (!data) {
                fprintf(stderr, "ignis-bench: cannot read %s\n", optarg + 1);
                return 1;
            }
            break;
        case 'w':
            warmup = strtod(optarg, NULL);
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || concurrency < 1 || concurrency > MAX_CLIENTS || duration <= 0 ||
        rate < 0 || warmup < 0) {
        fputs(usage, stderr);
        return 2;
    }
    const char *url = argv[optind];
    const char *token = getenv("IGNIS_TOKEN"), *cacert = getenv("IGNIS_CACERT");
    if (token && *token && !has_auth) {
        char h[256];
        snprintf(h, sizeof(h), "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, h);
    }
    if (!method)
        method = data ? "POST" : "GET";

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    /* In rate mode the number of clients bounds the requests in flight; give it room. */
    size_t nclients = rate > 0 ? MAX_CLIENTS / 4 : (size_t)concurrency;
    struct client *clients = calloc(nclients, sizeof(*clients));
    struct stats st = {};
    if (!clients || !multi)
        return 1;
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)nclients);
    for (size_t i = 0; i < nclients; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        if (cacert && *cacert)
            curl_easy_setopt(e, CURLOPT_CAINFO, cacert);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &clients[i]);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &clients[i]);
        if (data) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, data);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)data_len);
        }
        clients[i].easy = e;
    }

    uint64_t start = now_usec(), end = start + (uint64_t)(duration * 1e6), started = 0;
    uint64_t warm_end = start + (uint64_t)(warmup * 1e6);
    uint64_t next_due = start, interval = rate > 0 ? (uint64_t)(1e6 / rate) : 0;
    uint64_t late_starts = 0; /* rate mode: due requests with every client busy */
    size_t inflight = 0;
    bool stop = false;

    while (!stop || inflight > 0) {
        uint64_t now = now_usec();
        if (now >= end || (max_requests && started >= max_requests))
            stop = true;
        for (size_t i = 0; !stop && i < nclients; i++) {
            if (clients[i].busy)
                continue;
            if (rate > 0) {
                if (next_due > now)
                    break;
                clients[i].due = next_due;
                next_due += interval;
            } else
                clients[i].due = now;
            clients[i].busy = true;
            clients[i].cold = false;
            inflight++;
            started++;
            curl_multi_add_handle(multi, clients[i].easy);
            if (max_requests && started >= max_requests)
                break;
        }
        if (rate > 0 && !stop && next_due <= now && inflight == nclients)
            late_starts++;
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct client *cl;
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&cl);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK)
                st.transport_errors++;
            record(&st, now_usec() - cl->due, msg->data.result == CURLE_OK ? status : 0);
            st.cold += cl->cold;
            if (cl->due >= warm_end) {
                st.after_warmup++;
                st.cold_after_warmup += cl->cold;
            }
            curl_multi_remove_handle(multi, msg->easy_handle);
            cl->busy = false;
            inflight--;
        }
        /* Sleep only when there is nothing to start: in closed-loop mode a freed client sends
         * again at once; in rate mode we wake for the next due request. */
        int wait_ms = 10;
        if (!stop && rate <= 0 && inflight < nclients)
            continue;
        if (!stop && rate > 0) {
            uint64_t t = now_usec();
            wait_ms = next_due > t ? (int)((next_due - t) / 1000) : 0;
        }
        if (inflight > 0 && wait_ms > 0)
            curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
        else if (wait_ms > 0)
            usleep((useconds_t)wait_ms * 1000);
    }
    double elapsed = (double)(now_usec() - start) / 1e6;
    qsort(st.lat, st.n, sizeof(*st.lat), cmp_u64);

    uint64_t ok = 0, errors = 0;
    for (int s = 0; s < 600; s++)
        *(s >= 200 && s < 400 ? &ok : &errors) += st.status_count[s];
    if (json) {
        printf("{\"requests\":%zu,\"ok\":%llu,\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%llu,"
               "\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,\"transport_errors\":%llu,"
               "\"cold_starts\":%llu,\"after_warmup\":%llu,\"cold_starts_after_warmup\":%llu,"
               "\"status\":{",
               st.n, (unsigned long long)ok, elapsed, (double)st.n / elapsed,
               (unsigned long long)percentile(&st, 50), (unsigned long long)percentile(&st, 90),
               (unsigned long long)percentile(&st, 99),
               (unsigned long long)(st.n ? st.lat[st.n - 1] : 0),
               (unsigned long long)st.transport_errors, (unsigned long long)st.cold,
               (unsigned long long)st.after_warmup, (unsigned long long)st.cold_after_warmup);
        bool first = true;
        for (int s = 1; s < 600; s++)
            if (st.status_count[s]) {
                printf("%s\"%d\":%llu", first ? "" : ",", s,
                       (unsigned long long)st.status_count[s]);
                first = false;
            }
        printf("}}\n");
    } else {
        printf("requests      %zu in %.2f s (%.0f/s)\n", st.n, elapsed, (double)st.n / elapsed);
        printf("latency       p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n",
               (double)percentile(&st, 50) / 1e3, (double)percentile(&st, 90) / 1e3,
               (double)percentile(&st, 99) / 1e3, st.n ? (double)st.lat[st.n - 1] / 1e3 : 0.0);
        printf("status       ");
        for (int s = 1; s < 600; s++)
            if (st.status_count[s])
                printf(" %d: %llu", s, (unsigned long long)st.status_count[s]);
        printf("\n");
        if (st.cold || warmup > 0)
            printf("cold starts   %llu of %zu (%.2f%%)", (unsigned long long)st.cold, st.n,
                   st.n ? 100.0 * (double)st.cold / (double)st.n : 0.0);
        if (warmup > 0)
            printf("; after %.1f s: %llu of %llu (%.2f%%)", warmup,
                   (unsigned long long)st.cold_after_warmup, (unsigned long long)st.after_warmup,
                   st.after_warmup ? 100.0 * (double)st.cold_after_warmup / (double)st.after_warmup
                                   : 0.0);
        if (st.cold || warmup > 0)
            printf("\n");
        if (st.transport_errors)
            printf("errors        %llu transport errors\n",
                   (unsigned long long)st.transport_errors);
        if (late_starts)
            printf("note          the generator was saturated %llu times: the rate was not met\n",
                   (unsigned long long)late_starts);
    }
    for (size_t i = 0; i < nclients; i++)
        curl_easy_cleanup(clients[i].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(clients);
    free(st.lat);
    free(data);
    curl_global_cleanup();
    return errors || st.transport_errors ? 1 : 0;
}
