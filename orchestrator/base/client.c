#include "base/client.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>

/* Bodies from this size on ask "Expect: 100-continue" first. */
#define CLIENT_EXPECT_CONTINUE (1u << 20)

struct client {
    CURL *curl;
    char base[1024];
    long timeout_ms;
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    char *cacert;
};

struct buf {
    char *data;
    size_t len, cap;
};

static size_t buf_append(struct buf *b, const char *p, size_t n)
{
    if (grow_buffer(&b->data, &b->cap, b->len + n + 1) < 0)
        return 0;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
    return buf_append(userdata, p, size * n);
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
    struct buf *b = userdata;
    /* A new status line starts a new response (after 100 Continue or a redirect): keep only
     * the final one's headers. */
    if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        b->len = 0;
    return buf_append(b, p, size * n);
}

int client_new(const char *base_url, struct client **ret)
{
    static bool initialised;
    if (!initialised) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        initialised = true;
    }
    struct client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return -ENOMEM;
    }
    snprintf(c->base, sizeof(c->base), "%s", base_url);
    size_t n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    if (client_set_token(c, getenv("IGNIS_TOKEN")) < 0 ||
        client_set_cacert(c, getenv("IGNIS_CACERT")) < 0) {
        client_free(c);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}

int client_new_like(const struct client *like, const char *base_url, struct client **ret)
{
    struct client *c;
    int r = client_new(base_url, &c);
    if (r < 0)
        return r;
    free(c->auth_header);
    free(c->cacert);
    c->auth_header = like->auth_header ? strdup(like->auth_header) : NULL;
    c->cacert = like->cacert ? strdup(like->cacert) : NULL;
    c->timeout_ms = like->timeout_ms;
    if ((like->auth_header && !c->auth_header) || (like->cacert && !c->cacert)) {
        client_free(c);
        return -ENOMEM;
    }
    *ret = c;
    return 0;
}

int client_set_token(struct client *c, const char *token)
{
    char *h = NULL;
    if (token && *token && asprintf(&h, "Authorization: Bearer %s", token) < 0)
        return -ENOMEM;
    free(c->auth_header);
    c->auth_header = h;
    return 0;
}

int client_set_cacert(struct client *c, const char *path)
{
    char *p = path && *path ? strdup(path) : NULL;
    if (path && *path && !p)
        return -ENOMEM;
    free(c->cacert);
    c->cacert = p;
    return 0;
}

/* What every request carries: the token, and the CA that verifies the server. libcurl verifies
 * the peer and the host name by default (CURLOPT_SSL_VERIFYPEER, _VERIFYHOST): never turned off. */
static struct curl_slist *common_setup(struct client *c, struct curl_slist *hl)
{
    if (c->cacert)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
    return c->auth_header ? curl_slist_append(hl, c->auth_header) : hl;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    if (c->auth_header)
        explicit_bzero(c->auth_header, strlen(c->auth_header));
    free(c->auth_header);
    free(c->cacert);
    free(c);
}

const char *client_base_url(const struct client *c)
{
    return c->base;
}

void client_set_timeout(struct client *c, long ms)
{
    c->timeout_ms = ms;
}

int client_request(struct client *c, const char *method, const char *path,
                   const char *const *headers, const void *body, size_t len,
                   struct client_response *ret, struct ig_error *err)
{
    char url[4096];
    struct buf bbody = {}, bhead = {};
    struct curl_slist *hl = NULL;
    CURL *h = c->curl;

    snprintf(url, sizeof(url), "%s%s", c->base, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (c->timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &bbody);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &bhead);
    if (streq(method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    /* Small bodies go at once (no 100-continue round trip). A large one asks first, so a refusal
     * the server gives on the headers alone (413 for a body over its limit) is read before any of
     * the body is sent, instead of a reset half way through the upload. */
    hl = curl_slist_append(hl, len >= CLIENT_EXPECT_CONTINUE ? "Expect: 100-continue" : "Expect:");
    hl = common_setup(c, hl);
    for (const char *const *p = headers; p && *p; p++)
        hl = curl_slist_append(hl, *p);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);

    CURLcode cr = curl_easy_perform(h);
    curl_slist_free_all(hl);
    if (cr != CURLE_OK) {
        free(bbody.data);
        free(bhead.data);
        int code = cr == CURLE_COULDNT_CONNECT      ? ECONNREFUSED
                   : cr == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT
                                                    : EIO;
        return ig_error_set(err, code, "cannot reach ignisd at %s: %s", c->base,
                            curl_easy_strerror(cr));
    }
    memset(ret, 0, sizeof(*ret));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    ret->body = bbody.data ? bbody.data : strdup("");
    ret->len = bbody.len;
    ret->headers = bhead.data ? bhead.data : strdup("");
    return 0;
}

struct stream {
    CURL *h;
    bool (*on_data)(const char *p, size_t n, void *userdata);
    void *userdata;
    struct buf error;
};

static size_t on_stream_body(char *p, size_t size, size_t n, void *userdata)
{
    struct stream *st = userdata;
    long status = 0;
    curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return buf_append(&st->error, p, size * n);
    return st->on_data(p, size * n, st->userdata) ? size * n : 0;
}

int client_stream(struct client *c, const char *path,
                  bool (*on_data)(const char *p, size_t n, void *userdata), void *userdata,
                  struct client_response *ret, struct ig_error *err)
{
    char url[4096];
    CURL *h = c->curl;
    struct stream st = {.h = h, .on_data = on_data, .userdata = userdata};

    snprintf(url, sizeof(url), "%s%s", c->base, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
    struct curl_slist *hl = common_setup(c, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    CURLcode cr = curl_easy_perform(h);
    curl_slist_free_all(hl);
    memset(ret, 0, sizeof(*ret));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    if (cr != CURLE_OK && cr != CURLE_WRITE_ERROR) {
        free(st.error.data);
        return ig_error_set(err, EIO, "cannot reach ignisd at %s: %s", c->base,
                            curl_easy_strerror(cr));
    }
    ret->body = st.error.data ? st.error.data : strdup("");
    ret->len = st.error.len;
    ret->headers = strdup("");
    return 0;
}

void client_response_clear(struct client_response *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

const char *client_response_header(const struct client_response *r, const char *name, char *buf,
                                   size_t size)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = ll - (size_t)(v - line);
            if (vl >= size)
                vl = size - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        line += ll + (end ? 2 : 0);
    }
    return NULL;
}
