#include "api/forward.h"

#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <string.h>

#include "api/api.h"
#include "api/errors.h"
#include "api/invoke.h"
#include "base/curl_loop.h"
#include "base/log.h"
#include "base/metrics.h"
#include "dispatch/cluster.h"

/* How long a signed header is good for: a forward is sent at once. */
#define FORWARD_EXPIRY_MS 30000
/* Beyond the function's timeout: a warm peer starts it at once; a home host may cold start it. */
#define FORWARD_WARM_SLACK_MS 5000
#define FORWARD_HOME_SLACK_MS 30000
#define FORWARD_CONNECT_MS    1000
/* The most of a peer's reply kept (a function's result is bounded well below). */
#define FORWARD_MAX_REPLY   (64u << 20)
#define FORWARD_MAX_HEADERS 16

enum forward_outcome {
    FWD_RAN,         /* the peer ran it: its reply was relayed */
    FWD_REFUSED,     /* it answered that it would not run it (no warm container, stopping, full) */
    FWD_UNREACHABLE, /* no connection: placed again */
    FWD_LOST,        /* the connection broke once the request was sent: 502 */
    FWD_TIMEOUT,     /* no reply in time: 504 */
    _FWD_OUTCOME_MAX
};
static const char *const outcome_names[] = {"ran", "refused", "unreachable", "lost", "timeout"};

struct forward {
    struct forwarder *fw;
    struct api *a;
    struct http_request *req;
    char function[MANIFEST_NAME_MAX + 1];
    int64_t version;
    char alias[INV_ALIAS_MAX + 1];
    int64_t memory_needed;
    uint32_t timeout_ms;
    enum placement_kind kind;
    bool elsewhere; /* this host stops: never here */
    enum placement_local local;
    struct cluster_peer peer;
    CURL *easy;
    struct curl_slist *headers;
    char *reply;
    size_t reply_len, reply_cap;
    bool reply_too_large;
    struct {
        char *name, *value;
    } kept[FORWARD_MAX_HEADERS];
    size_t nkept;
    struct forward *prev, *next;
};

struct forwarder {
    struct loop *loop;
    char host_id[64];
    uint8_t key[FORWARD_KEY_BYTES];
    struct curl_loop *curl;
    struct forward *all;
    uint64_t counts[2][_FWD_OUTCOME_MAX]; /* by PLACE_WARM_PEER / PLACE_HOME, outcome */
    struct metrics_histogram hop;         /* seconds a hop added: round trip less the peer's time */
    bool said_bad_key;
};

static const double hop_bounds[] = {0.0001, 0.0002, 0.0003, 0.0005, 0.001, 0.002,
                                    0.005,  0.01,   0.025,  0.05,   0.1};

/* ---- the signed header ---- */

static void sign(const uint8_t key[FORWARD_KEY_BYTES], const char *from, const char *to,
                 const char *mode, const char *function, int64_t version, const char *alias,
                 long long exp_ms, char ret_hex[2 * SHA256_DIGEST_SIZE + 1])
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "ignis-forward-1\n%s\n%s\n%s\n%s\n%lld\n%s\n%lld", from, to,
                     mode, function, (long long)version, alias, exp_ms);
    struct hmac_sha256_ctx ctx;
    uint8_t mac[SHA256_DIGEST_SIZE];
    hmac_sha256_set_key(&ctx, FORWARD_KEY_BYTES, key);
    hmac_sha256_update(&ctx, (size_t)n, (const uint8_t *)msg);
    hmac_sha256_digest(&ctx, sizeof(mac), mac);
    hex_encode(mac, sizeof(mac), ret_hex);
}

/* The value of field name in "k=v;k=v" (copied into buf), or NULL. */
static const char *field(const char *header, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen(name);
    for (const char *p = header; *p;) {
        const char *end = strchrnul(p, ';');
        if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t len = (size_t)(end - (p + nlen + 1));
            if (len >= size)
                return NULL;
            memcpy(buf, p + nlen + 1, len);
            buf[len] = '\0';
            return buf;
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

int forward_received(struct http_request *req, struct api *a, struct dispatch_route *route,
                     enum forward_mode *ret_mode)
{
    const char *h = http_request_header(req, "Ignis-Forwarded");
    if (!h)
        return 0;
    char from[64], to[64], mode[8], version[24],
        alias[INV_ALIAS_MAX + 1] = "", exp[24], sig[2 * SHA256_DIGEST_SIZE + 1], want[sizeof(sig)];
    const char *why = NULL;
    long long exp_ms = 0;
    if (!a->forwarder)
        why = "this host has no cluster_key";
    else if (!field(h, "from", from, sizeof(from)) || !field(h, "to", to, sizeof(to)) ||
             !field(h, "mode", mode, sizeof(mode)) ||
             !field(h, "version", version, sizeof(version)) ||
             (strstr(h, "alias=") && !field(h, "alias", alias, sizeof(alias))) ||
             !field(h, "exp", exp, sizeof(exp)) || !field(h, "sig", sig, sizeof(sig)))
        why = "it is not one";
    else if (!streq(to, a->host_id))
        why = "it names another host";
    else if ((exp_ms = strtoll(exp, NULL, 10)) < (long long)(wall_usec() / 1000))
        why = "it has expired";
    else if (strtoll(version, NULL, 10) != route->version)
        why = "it names another version";
    else {
        sign(a->forwarder->key, from, to, mode, dispatch_fn_name(route->fn), route->version, alias,
             exp_ms, want);
        if (strlen(sig) != strlen(want) || !memeql_sec(sig, want, strlen(want)))
            why = "its signature does not verify with this host's cluster_key";
    }
    if (why) {
        http_set_header(req, "Ignis-Forward-Refused", "bad-signature");
        http_reply_error(req, 403, "forward_refused", "Ignis-Forwarded refused: %s", why);
        return -1;
    }
    snprintf(route->alias, sizeof(route->alias), "%s", alias);
    *ret_mode = streq(mode, "warm")   ? FORWARD_WARM
                : streq(mode, "move") ? FORWARD_MOVE
                                      : FORWARD_HOME;
    return 1;
}

void forward_refuse(struct http_request *req, const char *function, enum forward_mode mode)
{
    bool warm_only = mode == FORWARD_WARM;
    http_set_header(req, "Ignis-Forward-Refused", warm_only ? "no-warm-capacity" : "no-capacity");
    if (warm_only)
        http_reply_error(req, 503, "no_warm_capacity",
                         "no warm, free container of %s here any more", function);
    else
        http_reply_error(req, 503, "no_capacity",
                         "%s's containers here are at its max_scale here, and busy", function);
}

/* ---- the transfer ---- */

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
    struct forward *f = userdata;
    size_t len = size * n;
    if (f->reply_len + len > FORWARD_MAX_REPLY) {
        f->reply_too_large = true;
        return 0;
    }
    if (f->reply_len + len + 1 > f->reply_cap) {
        size_t cap = f->reply_cap ? f->reply_cap : 4096;
        while (cap < f->reply_len + len + 1)
            cap *= 2;
        char *r = realloc(f->reply, cap);
        if (!r)
            return 0;
        f->reply = r;
        f->reply_cap = cap;
    }
    memcpy(f->reply + f->reply_len, p, len);
    f->reply_len += len;
    f->reply[f->reply_len] = '\0';
    return len;
}

static void kept_clear(struct forward *f)
{
    for (size_t i = 0; i < f->nkept; i++) {
        free(f->kept[i].name);
        free(f->kept[i].value);
    }
    f->nkept = 0;
}

/* The reply's headers worth relaying: Content-Type, Retry-After, Server-Timing, Ignis-*. */
static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
    struct forward *f = userdata;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        kept_clear(f); /* a new response (after a 100 Continue) */
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon || f->nkept == FORWARD_MAX_HEADERS)
        return len;
    size_t nlen = (size_t)(colon - p);
    if (!(strncasecmp(p, "Ignis-", 6) == 0 || (nlen == 12 && !strncasecmp(p, "Content-Type", 12)) ||
          (nlen == 11 && !strncasecmp(p, "Retry-After", 11)) ||
          (nlen == 13 && !strncasecmp(p, "Server-Timing", 13))))
        return len;
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    f->kept[f->nkept].name = strndup(p, nlen);
    f->kept[f->nkept].value = strndup(v, (size_t)(end - v));
    if (f->kept[f->nkept].name && f->kept[f->nkept].value)
        f->nkept++;
    else {
        free(f->kept[f->nkept].name);
        free(f->kept[f->nkept].value);
    }
    return len;
}

static const char *kept(const struct forward *f, const char *name)
{
    for (size_t i = 0; i < f->nkept; i++)
        if (!strcasecmp(f->kept[i].name, name))
            return f->kept[i].value;
    return NULL;
}

static void forward_free(struct forward *f)
{
    struct forwarder *fw = f->fw;
    if (f->easy) {
        curl_loop_remove(fw->curl, f->easy);
        curl_easy_cleanup(f->easy);
    }
    if (f->prev)
        f->prev->next = f->next;
    else
        fw->all = f->next;
    if (f->next)
        f->next->prev = f->prev;
    curl_slist_free_all(f->headers);
    kept_clear(f);
    free(f->reply);
    free(f);
}

static void on_client_gone(struct http_request *req, void *userdata)
{
    struct forward *f = http_request_context(req);
    if (f)
        forward_free(f);
}

/* Appends "Name: value" to the transfer's headers: false without memory. */
static bool add_header(struct forward *f, const char *name, const char *value)
{
    char line[1024];
    snprintf(line, sizeof(line), "%s:%s%s", name, value[0] ? " " : "", value);
    struct curl_slist *l = curl_slist_append(f->headers, line);
    if (!l)
        return false;
    f->headers = l;
    return true;
}

static int start(struct forward *f)
{
    struct forwarder *fw = f->fw;
    const char *mode = f->kind == PLACE_WARM_PEER ? "warm" : f->elsewhere ? "move" : "home";
    long long exp_ms = (long long)(wall_usec() / 1000) + FORWARD_EXPIRY_MS;
    char sig[2 * SHA256_DIGEST_SIZE + 1], value[768], url[1024];
    sign(fw->key, fw->host_id, f->peer.id, mode, f->function, f->version, f->alias, exp_ms, sig);
    snprintf(value, sizeof(value), "from=%s;to=%s;mode=%s;version=%lld;%s%s%sexp=%lld;sig=%s",
             fw->host_id, f->peer.id, mode, (long long)f->version, f->alias[0] ? "alias=" : "",
             f->alias, f->alias[0] ? ";" : "", exp_ms, sig);
    size_t base = strlen(f->peer.advertise);
    if (base && f->peer.advertise[base - 1] == '/')
        base--;
    snprintf(url, sizeof(url), "%.*s/v1/functions/%s@%lld/invoke", (int)base, f->peer.advertise,
             f->function, (long long)f->version);
    const char *auth = http_request_header(f->req, "Authorization");
    const char *type = http_request_header(f->req, "Content-Type");
    size_t len;
    const char *body = http_request_body(f->req, &len);
    if (!add_header(f, "Ignis-Forwarded", value) ||
        (auth && !add_header(f, "Authorization", auth)) ||
        !add_header(f, "Content-Type", type ? type : "") || !add_header(f, "Expect", ""))
        return -ENOMEM;
    CURL *e = curl_easy_init();
    if (!e)
        return -ENOMEM;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)FORWARD_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)f->timeout_ms + (f->kind == PLACE_WARM_PEER ? FORWARD_WARM_SLACK_MS
                                                                       : FORWARD_HOME_SLACK_MS));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_PRIVATE, f);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ignisd-forward/1");
    if (curl_loop_add(fw->curl, e) < 0) {
        curl_easy_cleanup(e);
        return -EIO;
    }
    f->easy = e;
    return 0;
}

/* Runs it here after all, routed again (the loop turned since the first route); f is freed. */
static void run_here(struct forward *f)
{
    struct http_request *req = f->req;
    struct api *a = f->a;
    struct dispatch_route route;
    struct ig_error err = {};
    char function[sizeof(f->function)], alias[sizeof(f->alias)], selector[24];
    memcpy(function, f->function, sizeof(function));
    memcpy(alias, f->alias, sizeof(alias));
    snprintf(selector, sizeof(selector), "%lld", (long long)f->version);
    http_request_set_context(req, NULL, NULL);
    forward_free(f);
    if (dispatch_function_accepting(a->dispatch, function, selector, false, &route, &err) < 0) {
        api_reply_error(req, &err);
        return;
    }
    memcpy(route.alias, alias, sizeof(route.alias));
    invoke_sync_here(req, a, &route, false);
}

/* The next step after a peer that did not run it: from a warm peer, the home host (unless it
 * is this one); from the home host, here. Never a third forward. */
static void next_step(struct forward *f)
{
    if (f->kind == PLACE_WARM_PEER) {
        struct placement p = cluster_place(f->a->cluster, f->function, f->local,
                                           CLUSTER_NO_WARM | (f->elsewhere ? CLUSTER_ELSEWHERE : 0),
                                           f->memory_needed, &f->peer);
        if (p.kind == PLACE_HOME) {
            curl_slist_free_all(TAKE_PTR(f->headers));
            kept_clear(f);
            f->reply_len = 0;
            f->reply_too_large = false;
            f->kind = PLACE_HOME;
            if (start(f) == 0)
                return;
        }
    }
    run_here(f);
}

static void relay(struct forward *f, long status)
{
    struct http_request *req = f->req;
    const char *timing = kept(f, "Server-Timing"), *dur = timing ? strstr(timing, "dur=") : NULL;
    if (dur) {
        /* From the request's handling here (its placement included) to the relay. */
        double hop = (double)(now_usec() - http_request_handled_usec(req)) / 1e6 -
                     strtod(dur + 4, NULL) / 1e3;
        metrics_histogram_observe(&f->fw->hop, hop > 0 ? hop : 0);
    }
    for (size_t i = 0; i < f->nkept; i++)
        if (strncasecmp(f->kept[i].name, "Ignis-", 6) == 0 ||
            !strcasecmp(f->kept[i].name, "Retry-After"))
            http_set_header(req, f->kept[i].name, f->kept[i].value);
    const char *type = kept(f, "Content-Type");
    http_request_set_context(req, NULL, NULL);
    http_reply_take(req, (unsigned)status, type ? type : "application/octet-stream",
                    f->reply ? TAKE_PTR(f->reply) : strdup(""), f->reply_len);
    forward_free(f);
}

static void fail(struct forward *f, unsigned status, const char *code, const char *what)
{
    struct http_request *req = f->req;
    http_request_set_context(req, NULL, NULL);
    http_reply_error(req, status, code, "the invocation was forwarded to host %s, which %s",
                     f->peer.id, what);
    forward_free(f);
}

static void on_done(CURL *e, CURLcode code, void *userdata)
{
    struct forwarder *fw = userdata;
    struct forward *f = NULL;
    long status = 0;
    curl_off_t connect_us = 0;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&f);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connect_us);
    /* curl_loop took it off the multi handle: it is done with. */
    curl_easy_cleanup(TAKE_PTR(f->easy));
    enum forward_outcome o;
    if (code == CURLE_OK && (status == 503 || status == 429 || kept(f, "Ignis-Forward-Refused")))
        o = FWD_REFUSED;
    else if (code == CURLE_OK && !f->reply_too_large)
        o = FWD_RAN;
    else if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST || connect_us == 0)
        o = FWD_UNREACHABLE; /* never connected: nothing was sent */
    else if (code == CURLE_OPERATION_TIMEDOUT)
        o = FWD_TIMEOUT;
    else
        o = FWD_LOST;
    fw->counts[f->kind == PLACE_HOME][o]++;
    if (o != FWD_RAN && o != FWD_REFUSED)
        log_warn("a forwarded invocation failed", "function=%s peer=%s outcome=%s error=\"%s\"",
                 f->function, f->peer.id, outcome_names[o], curl_easy_strerror(code));
    if (o == FWD_REFUSED && status == 403 && !fw->said_bad_key) {
        log_warn("a peer refused this host's forwards: is cluster_key the same on every host?",
                 "peer=%s", f->peer.id);
        fw->said_bad_key = true;
    }
    if (o != FWD_RAN)
        cluster_forget_warm(f->a->cluster, f->peer.id, f->function);
    switch (o) {
    case FWD_RAN:
        relay(f, status);
        break;
    case FWD_REFUSED:
    case FWD_UNREACHABLE:
        next_step(f);
        break;
    case FWD_TIMEOUT:
        fail(f, 504, "forward_timeout", "did not answer in time");
        break;
    default:
        fail(f, 502, "peer_lost",
             f->reply_too_large ? "answered with a reply over 64 MiB" : "went away while it ran");
    }
}

bool forward_place(struct http_request *req, struct api *a, const struct forward_target *t,
                   bool elsewhere)
{
    if (!a->forwarder || !a->cluster)
        return false;
    struct forward *f = calloc(1, sizeof(*f));
    if (!f)
        return false;
    f->memory_needed = (int64_t)t->memory_mb << 20;
    /* A host that stops has nothing of it that counts: the home host among the others. */
    f->local = elsewhere ? LOCAL_NONE : t->local;
    struct placement p =
        cluster_place(a->cluster, t->function, f->local, elsewhere ? CLUSTER_ELSEWHERE : 0,
                      f->memory_needed, &f->peer);
    if (p.kind == PLACE_HERE) {
        free(f);
        return false;
    }
    struct forwarder *fw = a->forwarder;
    f->fw = fw;
    f->a = a;
    f->req = req;
    f->kind = p.kind;
    f->elsewhere = elsewhere;
    f->version = t->version;
    f->timeout_ms = t->timeout_ms;
    snprintf(f->function, sizeof(f->function), "%s", t->function);
    snprintf(f->alias, sizeof(f->alias), "%s", t->alias);
    f->next = fw->all;
    if (fw->all)
        fw->all->prev = f;
    fw->all = f;
    if (start(f) < 0) {
        forward_free(f);
        return false;
    }
    http_request_set_context(req, f, on_client_gone);
    return true;
}

int forwarder_new(struct loop *l, const char *host_id, const uint8_t key[FORWARD_KEY_BYTES],
                  struct forwarder **ret, struct ig_error *err)
{
    struct forwarder *fw = calloc(1, sizeof(*fw));
    if (!fw)
        return ig_error_set(err, ENOMEM, "out of memory");
    fw->loop = l;
    snprintf(fw->host_id, sizeof(fw->host_id), "%s", host_id);
    memcpy(fw->key, key, FORWARD_KEY_BYTES);
    int r = metrics_histogram_init(&fw->hop, hop_bounds, ARRAY_SIZE(hop_bounds));
    if (r == 0)
        r = curl_loop_new(l, on_done, fw, &fw->curl, err);
    else
        ig_error_set(err, -r, "out of memory");
    if (r < 0) {
        forwarder_free(fw);
        return r;
    }
    *ret = fw;
    return 0;
}

void forwarder_free(struct forwarder *fw)
{
    if (!fw)
        return;
    while (fw->all) {
        struct forward *f = fw->all;
        http_request_set_context(f->req, NULL, NULL);
        http_reply_error(f->req, 503, "shutting_down", "ignisd is shutting down");
        forward_free(f);
    }
    curl_loop_free(fw->curl);
    metrics_histogram_done(&fw->hop);
    explicit_bzero(fw->key, sizeof(fw->key));
    free(fw);
}

size_t forwarder_active(const struct forwarder *fw)
{
    size_t n = 0;
    for (const struct forward *f = fw ? fw->all : NULL; f; f = f->next)
        n++;
    return n;
}

void forward_metrics(const struct forwarder *fw, struct metrics_buf *b)
{
    if (!fw)
        return;
    metrics_family(b, "ignis_forwards_total", METRIC_COUNTER,
                   "Sync invocations this host forwarded, by the peer's kind (warm: it had a warm "
                   "container; home: the function's home host, for a cold start) and outcome.");
    for (int k = 0; k < 2; k++)
        for (int o = 0; o < _FWD_OUTCOME_MAX; o++) {
            const char *labels[] = {"to", k ? "home" : "warm", "outcome", outcome_names[o], NULL};
            metrics_sample(b, labels, (double)fw->counts[k][o]);
        }
    metrics_family(b, "ignis_forward_hop_seconds", METRIC_HISTOGRAM,
                   "What one forwarding hop added to a sync invocation: the forward's round trip "
                   "less the time the peer took (its Server-Timing).");
    metrics_histogram(b, NULL, &fw->hop);
}
