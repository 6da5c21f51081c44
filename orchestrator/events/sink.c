#include "events/sink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "base/cloudevents.h"
#include "base/curl_loop.h"
#include "records/invocation.h"
#include "base/log.h"
#include "records/sinks_store.h"
#include "records/telemetry.h"

/* One delivery: an event and how its attempts went. */
struct delivery {
    struct sinks *s;
    char id[INV_ID_LEN + 1];
    char *function, *url, *type, *time, *content_type, *body;
    size_t body_len;
    int attempts, max_attempts;
    CURL *easy; /* while an attempt runs */
    struct curl_slist *headers;
    struct loop_timer *timer; /* backoff before the next attempt */
    char errbuf[CURL_ERROR_SIZE];
    char refused[INET6_ADDRSTRLEN + 64]; /* an address this attempt was not let connect to */
    struct delivery *next;               /* in s->all */
    struct delivery *next_waiting;
};

struct sinks {
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    struct sink_options opts;
    struct curl_loop *curl;
    struct delivery *all;
    struct delivery *waiting_head, *waiting_tail; /* due, waiting for a free transfer slot */
    size_t active;
};

void sink_options_defaults(struct sink_options *o)
{
    *o = (struct sink_options){
        .retry_base_ms = 500,
        .retry_cap_ms = 300000,
        .attempt_timeout_ms = 10000,
        .max_active = 64,
        .retention_us = 24ll * 3600 * 1000000,
    };
}

struct curl_slist *sink_event_headers(const char *fn, const char *id, const char *type,
                                      const char *time, const char *content_type)
{
    /* Binary content mode (HTTP binding 3.1): the attributes as ce- headers, the data as the
     * body, datacontenttype as Content-Type. The values here are all printable ASCII without
     * spaces, '"' or '%', so they need no percent-encoding (3.1.3.2). "Content-Type:" with no
     * value removes the header libcurl would add for a POST; "Expect:" stops libcurl asking for
     * 100-continue before a large body, a round trip a webhook may not answer. */
    char lines[7][512];
    snprintf(lines[0], sizeof(lines[0]), "ce-specversion: 1.0");
    snprintf(lines[1], sizeof(lines[1]), "ce-type: %s", type);
    snprintf(lines[2], sizeof(lines[2]), "ce-source: /ignis/functions/%s", fn);
    snprintf(lines[3], sizeof(lines[3]), "ce-id: %s", id);
    snprintf(lines[4], sizeof(lines[4]), "ce-time: %s", time);
    snprintf(lines[5], sizeof(lines[5]), "Content-Type:%s%.400s", content_type ? " " : "",
             content_type ? content_type : "");
    snprintf(lines[6], sizeof(lines[6]), "Expect:");
    struct curl_slist *h = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
        struct curl_slist *n = curl_slist_append(h, lines[i]);
        if (!n) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = n;
    }
    return h;
}

static const char *ipv4_refused(const uint8_t a[4], bool allow_loopback)
{
    if (a[0] == 127)
        return allow_loopback ? NULL : "loopback";
    if (a[0] == 169 && a[1] == 254)
        return "link-local";
    if (a[0] == 0)
        return "unspecified";
    return NULL;
}

const char *sink_address_refused(const struct sockaddr *addr, bool allow_loopback)
{
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        return ipv4_refused((const uint8_t *)&in->sin_addr, allow_loopback);
    }
    if (addr->sa_family != AF_INET6)
        return "not an internet address";
    const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
        return ipv4_refused(a->s6_addr + 12, allow_loopback);
    if (IN6_IS_ADDR_LOOPBACK(a))
        return allow_loopback ? NULL : "loopback";
    if (IN6_IS_ADDR_LINKLOCAL(a))
        return "link-local";
    if (IN6_IS_ADDR_UNSPECIFIED(a))
        return "unspecified";
    return NULL;
}

/* libcurl's socket for each address it tries: none for an address sinks may not reach (curl
 * then tries the next, or fails the attempt with "couldn't connect"). */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct delivery *dl = userdata;
    const char *why = sink_address_refused(&a->addr, dl->s->opts.allow_loopback);
    if (why) {
        char text[INET6_ADDRSTRLEN] = "?";
        const void *raw = a->family == AF_INET6
                              ? (const void *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr
                              : (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr;
        inet_ntop(a->family, raw, text, sizeof(text));
        snprintf(dl->refused, sizeof(dl->refused), "%s is a %s address", text, why);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void delivery_free(struct delivery *dl)
{
    if (!dl)
        return;
    struct sinks *s = dl->s;
    telemetry_sink_pending(-1);
    for (struct delivery **p = &s->all; *p; p = &(*p)->next)
        if (*p == dl) {
            *p = dl->next;
            break;
        }
    if (dl->timer)
        loop_cancel_timer(s->loop, dl->timer);
    if (dl->easy) {
        curl_loop_remove(s->curl, dl->easy);
        curl_easy_cleanup(dl->easy);
        s->active--;
    }
    curl_slist_free_all(dl->headers);
    free(dl->function);
    free(dl->url);
    free(dl->type);
    free(dl->time);
    free(dl->content_type);
    free(dl->body);
    free(dl);
}

static void on_write_done(struct loop *l, int result, const char *message, void *userdata)
{
    if (result < 0)
        log_warn("recording a sink delivery failed", "error=\"%s\"", message);
}

/* The row after an attempt: pending with the next attempt's time, or final (the body is
 * dropped then: nothing will send it again). */
static void record_attempt(struct delivery *dl, const char *status, long http_status,
                           const char *error, int64_t next_attempt_us)
{
    struct sinks *s = dl->s;
    bool final = !streq(status, "pending");
    const struct sinks_store_row row = {
        .id = dl->id,
        .status = status,
        .attempts = dl->attempts,
        .http_status = http_status,
        .error = error,
        .next_attempt_us = next_attempt_us,
        .finished_us = final ? (int64_t)wall_usec() : 0,
        .expires_us = (int64_t)(wall_usec() + (uint64_t)s->opts.retention_us),
    };
    sinks_store_update(s->journal, &row, on_write_done, NULL);
}

static size_t discard(char *ptr, size_t size, size_t n, void *userdata)
{
    return size * n;
}

static void start_waiting(struct sinks *s);

static void attempt(struct delivery *dl);

static void on_retry_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct delivery *dl = userdata;
    dl->timer = NULL;
    attempt(dl);
}

/* An attempt failed (error, and the reply's status if there was one): retried after a backoff
 * while attempts remain, else the delivery fails for good. */
static void attempt_failed(struct delivery *dl, long http_status, const char *error)
{
    struct sinks *s = dl->s;
    if (dl->attempts < dl->max_attempts) {
        uint64_t delay_ms = inv_backoff_ms((unsigned)dl->attempts, s->opts.retry_base_ms,
                                           s->opts.retry_cap_ms, random_u64());
        record_attempt(dl, "pending", http_status, error, (int64_t)(wall_usec() + delay_ms * 1000));
        loop_add_timer(s->loop, now_usec() + delay_ms * 1000, on_retry_due, dl, &dl->timer);
        return;
    }
    log_warn("sink delivery failed", "id=%s function=%s url=%s attempts=%d error=\"%s\"", dl->id,
             dl->function, dl->url, dl->attempts, error);
    record_attempt(dl, "failed", http_status, error, 0);
    telemetry_sink_final(false);
    delivery_free(dl);
}

/* Starts an attempt now, or queues the delivery until a transfer slot is free. One that cannot
 * be started (out of memory) is a failed attempt, retried like any other, never stranded. */
static void attempt(struct delivery *dl)
{
    struct sinks *s = dl->s;
    if (s->active >= s->opts.max_active) {
        dl->next_waiting = NULL;
        if (s->waiting_tail)
            s->waiting_tail->next_waiting = dl;
        else
            s->waiting_head = dl;
        s->waiting_tail = dl;
        return;
    }
    dl->attempts++;
    telemetry_sink_attempt();
    CURL *e = curl_easy_init();
    if (!dl->headers)
        dl->headers =
            sink_event_headers(dl->function, dl->id, dl->type, dl->time, dl->content_type);
    if (!e || !dl->headers) {
        curl_easy_cleanup(e);
        attempt_failed(dl, 0, "not started: out of memory");
        return;
    }
    dl->errbuf[0] = dl->refused[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, dl->url);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, dl);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, dl->body ? dl->body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)dl->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, dl->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->opts.attempt_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, dl->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, dl);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ignisd-sink/1");
    if (curl_loop_add(s->curl, e) < 0) {
        curl_easy_cleanup(e);
        attempt_failed(dl, 0, "not started: libcurl refused the transfer");
        return;
    }
    dl->easy = e;
    s->active++;
}

/* An attempt ended: delivered on a 2xx, else a failed attempt. */
static void attempt_done(struct delivery *dl, CURLcode code)
{
    struct sinks *s = dl->s;
    long http_status = 0;
    char error[CURL_ERROR_SIZE + 64];

    curl_easy_getinfo(dl->easy, CURLINFO_RESPONSE_CODE, &http_status);
    curl_easy_cleanup(TAKE_PTR(dl->easy));
    s->active--;

    if (code == CURLE_OK && http_status >= 200 && http_status <= 299) {
        log_debug("sink delivered", "id=%s url=%s attempts=%d status=%ld", dl->id, dl->url,
                  dl->attempts, http_status);
        record_attempt(dl, "delivered", http_status, NULL, 0);
        telemetry_sink_final(true);
        delivery_free(dl);
        return;
    }
    if (code != CURLE_OK && dl->refused[0])
        snprintf(error, sizeof(error), "not connecting: %s (sinks may not reach %s)", dl->refused,
                 s->opts.allow_loopback ? "link-local or unspecified addresses"
                                        : "loopback, link-local or unspecified addresses; see "
                                          "sink_allow_loopback");
    else if (code != CURLE_OK)
        snprintf(error, sizeof(error), "%s", dl->errbuf[0] ? dl->errbuf : curl_easy_strerror(code));
    else
        snprintf(error, sizeof(error), "HTTP %ld", http_status);
    attempt_failed(dl, http_status, error);
}

static void start_waiting(struct sinks *s)
{
    while (s->waiting_head && s->active < s->opts.max_active) {
        struct delivery *dl = s->waiting_head;
        s->waiting_head = dl->next_waiting;
        if (!s->waiting_head)
            s->waiting_tail = NULL;
        attempt(dl);
    }
}

/* A transfer ended (curl_loop): its attempt is over, and a waiting delivery may start. */
static void on_transfer_done(CURL *e, CURLcode code, void *userdata)
{
    struct delivery *dl = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&dl);
    attempt_done(dl, code);
    start_waiting(userdata);
}

/* ---- deliveries ---- */

static struct delivery *delivery_new(struct sinks *s, const char *id, const char *fn,
                                     const char *url, const char *type, const char *time,
                                     const char *content_type, const char *body, size_t len,
                                     int max_attempts)
{
    struct delivery *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return NULL;
    dl->s = s;
    snprintf(dl->id, sizeof(dl->id), "%s", id);
    dl->function = strdup(fn);
    dl->url = strdup(url);
    dl->type = strdup(type);
    dl->time = strdup(time);
    dl->content_type = content_type ? strdup(content_type) : NULL;
    dl->body = malloc(len + 1);
    dl->body_len = len;
    dl->max_attempts = max_attempts;
    dl->next = s->all;
    s->all = dl;
    telemetry_sink_pending(+1); /* until delivery_free */
    if (!dl->function || !dl->url || !dl->type || !dl->time || !dl->body ||
        (content_type && !dl->content_type)) {
        delivery_free(dl);
        return NULL;
    }
    if (len)
        memcpy(dl->body, body, len);
    dl->body[len] = '\0';
    return dl;
}

void sinks_submit(struct sinks *s, const char *fn, const struct manifest_sink *sink, const char *id,
                  bool ok, const char *body, size_t len, const char *content_type,
                  const char *error_type, const char *error_message)
{
    if (!s || !sink->url || (ok && sink->on == MANIFEST_SINK_FAILURE) ||
        (!ok && sink->on == MANIFEST_SINK_SUCCESS))
        return;
    _cleanup_free_ char *err_body = NULL;
    if (!ok) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "type", error_type ? error_type : "");
        cJSON_AddStringToObject(e, "message", error_message ? error_message : "");
        err_body = cJSON_PrintUnformatted(e);
        cJSON_Delete(e);
        body = err_body;
        len = err_body ? strlen(err_body) : 0;
        content_type = "application/json";
    }
    char time[32];
    uint64_t now = wall_usec();
    ce_time_format((int64_t)now, time);
    struct delivery *dl =
        (ok || err_body)
            ? delivery_new(s, id, fn, sink->url, ok ? SINK_TYPE_RESULT : SINK_TYPE_ERROR, time,
                           content_type, body, len, 1 + (int)sink->retries)
            : NULL;
    if (!dl) {
        log_warn("sink delivery dropped: out of memory", "function=%s id=%s", fn, id);
        return;
    }
    /* The row first: the journal runs statements in order, so each attempt's update finds it. */
    const struct sinks_store_row row = {
        .id = dl->id,
        .function = fn,
        .url = dl->url,
        .type = dl->type,
        .time = dl->time,
        .content_type = dl->content_type,
        .body = dl->body,
        .body_len = dl->body_len,
        .max_attempts = dl->max_attempts,
        .created_us = (int64_t)now,
        .expires_us = (int64_t)(now + (uint64_t)s->opts.retention_us),
    };
    sinks_store_insert(s->journal, &row, on_write_done, NULL);
    attempt(dl);
}

/* ---- start-up, purge, shutdown ---- */

struct resume {
    struct sinks *s;
    size_t n;
};

/* One delivery left pending by the last run: its next attempt at the time it was due. */
static int resume_one(void *userdata, const struct sinks_store_row *row)
{
    struct resume *rs = userdata;
    struct sinks *s = rs->s;
    struct delivery *dl =
        delivery_new(s, row->id, row->function, row->url, row->type, row->time, row->content_type,
                     row->body, row->body_len, row->max_attempts);
    if (!dl)
        return -ENOMEM;
    dl->attempts = row->attempts;
    int64_t now = (int64_t)wall_usec();
    uint64_t delay = row->next_attempt_us > now ? (uint64_t)(row->next_attempt_us - now) : 0;
    loop_add_timer(s->loop, now_usec() + delay, on_retry_due, dl, &dl->timer);
    rs->n++;
    return 0;
}

void sinks_purge(void *userdata, int64_t now_us)
{
    struct sinks *s = userdata;
    sinks_store_purge(s->journal, now_us);
}

int sinks_new(struct loop *l, struct store *store, struct journal *j, const struct sink_options *o,
              struct sinks **ret, struct ig_error *err)
{
    struct sinks *s = calloc(1, sizeof(*s));
    if (!s)
        return ig_error_set(err, ENOMEM, "out of memory");
    s->loop = l;
    s->store = store;
    s->journal = j;
    s->opts = *o;
    int r = curl_loop_new(l, on_transfer_done, s, &s->curl, err);
    if (r < 0) {
        free(s);
        ig_error_prefix(err, "sinks");
        return r;
    }
    struct resume rs = {.s = s};
    int q = sinks_store_each_pending(store, resume_one, &rs, err);
    if (q < 0) {
        sinks_free(s);
        ig_error_prefix(err, "sinks: loading pending deliveries");
        return q;
    }
    if (rs.n)
        log_info("sink deliveries resumed", "pending=%zu", rs.n);
    *ret = s;
    return 0;
}

void sinks_free(struct sinks *s)
{
    if (!s)
        return;
    while (s->all)
        delivery_free(s->all);
    curl_loop_free(s->curl);
    free(s);
}

static void describe_row(void *userdata, const struct sinks_store_row *row)
{
    cJSON *o = cJSON_AddObjectToObject(userdata, "sink");
    cJSON_AddStringToObject(o, "url", row->url);
    cJSON_AddStringToObject(o, "type", row->type);
    cJSON_AddStringToObject(o, "status", row->status);
    cJSON_AddNumberToObject(o, "attempts", row->attempts);
    cJSON_AddNumberToObject(o, "max_attempts", row->max_attempts);
    if (row->http_status)
        cJSON_AddNumberToObject(o, "http_status", row->http_status);
    if (row->error)
        cJSON_AddStringToObject(o, "error", row->error);
    if (streq(row->status, "pending") && row->next_attempt_us)
        cJSON_AddNumberToObject(o, "next_attempt", (double)row->next_attempt_us / 1e6);
    if (row->finished_us)
        cJSON_AddNumberToObject(o, "finished", (double)row->finished_us / 1e6);
}

void sinks_describe(struct sinks *s, const char *id, cJSON *record)
{
    if (s)
        sinks_store_find(s->store, id, describe_row, record);
}
