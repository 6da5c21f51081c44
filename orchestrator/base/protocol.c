#include "base/protocol.h"

#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Read in pieces of this size while the next frame's size is not known yet: large enough that
 * a small invocation is one read, small enough not to matter per connection. */
#define PROTO_READ_CHUNK (64u * 1024u)

struct proto_bytes proto_str(const char *s)
{
    return (struct proto_bytes){.data = s ? s : "", .len = s ? strlen(s) : 0};
}

char *proto_strdup(struct proto_bytes b)
{
    char *s = malloc(b.len + 1);
    if (!s)
        return NULL;
    if (b.len)
        memcpy(s, b.data, b.len);
    s[b.len] = '\0';
    return s;
}

bool proto_bytes_eq(struct proto_bytes b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.data, s, n) == 0);
}

const struct proto_bytes *proto_msg_header(const struct proto_msg *m, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name.len == n && strncasecmp(m->headers[i].name.data, name, n) == 0)
            return &m->headers[i].value;
    return NULL;
}

const char *proto_type_name(enum proto_type t)
{
    switch (t) {
    case PROTO_READY:
        return "ready";
    case PROTO_INIT_ERROR:
        return "init-error";
    case PROTO_INVOKE:
        return "invoke";
    case PROTO_RESULT:
        return "result";
    case PROTO_ERROR:
        return "error";
    case PROTO_EVENT:
        return "event";
    case PROTO_SHUTDOWN:
        return "shutdown";
    case PROTO_EVENT_JSON:
        return "event-json";
    }
    return "unknown";
}

static void put_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static uint32_t get_u32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* The fields of a message in wire order. Returns how many (at most ARRAY_SIZE of the array the
 * caller passes, which fits the most a frame can have), or -EINVAL. */
#define PROTO_MAX_FIELDS (3 + 2 * PROTO_MAX_HEADERS)

static int msg_fields(const struct proto_msg *m, char deadline[8],
                      struct proto_bytes f[PROTO_MAX_FIELDS])
{
    size_t n = 0;
    switch (m->type) {
    case PROTO_READY:
        f[n++] = m->info;
        break;
    case PROTO_INIT_ERROR:
        f[n++] = m->error_type;
        f[n++] = m->message;
        f[n++] = m->trace;
        break;
    case PROTO_INVOKE:
        if (m->nheaders > PROTO_MAX_HEADERS)
            return -EINVAL;
        put_u32(deadline, (uint32_t)(m->deadline_ms >> 32));
        put_u32(deadline + 4, (uint32_t)m->deadline_ms);
        f[n++] = m->id;
        f[n++] = (struct proto_bytes){.data = deadline, .len = 8};
        f[n++] = m->body;
        for (size_t i = 0; i < m->nheaders; i++) {
            f[n++] = m->headers[i].name;
            f[n++] = m->headers[i].value;
        }
        break;
    case PROTO_RESULT:
        f[n++] = m->id;
        f[n++] = m->body;
        f[n++] = m->content_type;
        break;
    case PROTO_ERROR:
        f[n++] = m->id;
        f[n++] = m->error_type;
        f[n++] = m->message;
        f[n++] = m->trace;
        break;
    case PROTO_EVENT:
        f[n++] = m->id;
        f[n++] = m->event_type;
        f[n++] = m->body;
        f[n++] = m->content_type;
        break;
    case PROTO_SHUTDOWN:
        break;
    case PROTO_EVENT_JSON:
        f[n++] = m->id;
        f[n++] = m->body;
        break;
    default:
        return -EINVAL;
    }
    return (int)n;
}

static bool has_id(enum proto_type t)
{
    return t == PROTO_INVOKE || t == PROTO_RESULT || t == PROTO_ERROR || t == PROTO_EVENT ||
           t == PROTO_EVENT_JSON;
}

void proto_buf_done(struct proto_buf *b)
{
    free(b->data);
    *b = (struct proto_buf){};
}

int proto_encode(const struct proto_msg *m, struct proto_buf *b)
{
    struct proto_bytes f[PROTO_MAX_FIELDS];
    char deadline[8];
    int nf = msg_fields(m, deadline, f);
    if (nf < 0)
        return nf;
    if (has_id(m->type) && m->id.len > PROTO_MAX_ID)
        return -EINVAL;

    uint64_t payload = 0;
    for (int i = 0; i < nf; i++)
        payload += 4 + (uint64_t)f[i].len;
    if (payload > UINT32_MAX)
        return -EMSGSIZE;
    size_t need = PROTO_HEADER_SIZE + (size_t)payload;

    /* Drop what was written already before growing, so a long-lived buffer does not creep. */
    if (b->off == b->len)
        b->off = b->len = 0;
    if (grow_buffer(&b->data, &b->cap, b->len + need) < 0)
        return -ENOMEM;
    char *p = b->data + b->len;
    p[0] = (char)PROTO_MAGIC;
    p[1] = PROTO_VERSION;
    p[2] = (char)m->type;
    p[3] = 0;
    put_u32(p + 4, (uint32_t)payload);
    p += PROTO_HEADER_SIZE;
    for (int i = 0; i < nf; i++) {
        put_u32(p, (uint32_t)f[i].len);
        if (f[i].len)
            memcpy(p + 4, f[i].data, f[i].len);
        p += 4 + f[i].len;
    }
    b->len += need;
    return 0;
}

int proto_buf_flush(struct proto_buf *b, int fd)
{
    while (b->off < b->len) {
        /* MSG_NOSIGNAL: a runtime that died (its container killed, or its template's whole
         * pid namespace) is an -EPIPE here, not a SIGPIPE that ends ignisd. */
        ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        b->off += (size_t)n;
    }
    b->off = b->len = 0;
    return 0;
}

void proto_decoder_init(struct proto_decoder *d, size_t max_body)
{
    *d = (struct proto_decoder){.max_payload = (max_body ? max_body : PROTO_DEFAULT_MAX_BODY) +
                                               PROTO_FRAME_OVERHEAD};
}

void proto_decoder_done(struct proto_decoder *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->off = d->cap = 0;
}

/* Moves the unconsumed bytes to the front: the messages returned before are given up. */
static void compact(struct proto_decoder *d)
{
    if (d->off == 0)
        return;
    memmove(d->buf, d->buf + d->off, d->len - d->off);
    d->len -= d->off;
    d->off = 0;
}

int proto_decoder_feed(struct proto_decoder *d, const void *data, size_t len)
{
    compact(d);
    int r = grow_buffer(&d->buf, &d->cap, d->len + len);
    if (r < 0)
        return r;
    if (len)
        memcpy(d->buf + d->len, data, len);
    d->len += len;
    return 0;
}

/* Checks the header of the frame at the front; returns its payload size or -errno. */
static int64_t check_header(const struct proto_decoder *d)
{
    const unsigned char *h = (const unsigned char *)d->buf + d->off;
    if (h[0] != PROTO_MAGIC || h[1] != PROTO_VERSION || h[3] != 0)
        return -EBADMSG;
    if (h[2] < PROTO_READY || h[2] > PROTO_EVENT_JSON)
        return -EBADMSG;
    uint32_t payload = get_u32((const char *)h + 4);
    if (payload > d->max_payload)
        return -EMSGSIZE;
    return payload;
}

ssize_t proto_decoder_read(struct proto_decoder *d, int fd)
{
    compact(d);
    /* Read the rest of the current frame in one go when its size is known (a 6 MB body is
     * then few reads and one allocation), else a chunk. */
    size_t want = PROTO_READ_CHUNK;
    if (d->len >= PROTO_HEADER_SIZE && d->error == 0) {
        int64_t payload = check_header(d);
        if (payload >= 0 && PROTO_HEADER_SIZE + (size_t)payload > d->len)
            want = PROTO_HEADER_SIZE + (size_t)payload - d->len;
    }
    int r = grow_buffer(&d->buf, &d->cap, d->len + want);
    if (r < 0)
        return r;
    for (;;) {
        ssize_t n = read(fd, d->buf + d->len, d->cap - d->len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        d->len += (size_t)n;
        return n;
    }
}

static int take_field(const char **p, const char *end, struct proto_bytes *ret)
{
    if (end - *p < 4)
        return -EBADMSG;
    uint32_t n = get_u32(*p);
    if ((size_t)(end - *p - 4) < n)
        return -EBADMSG;
    *ret = (struct proto_bytes){.data = *p + 4, .len = n};
    *p += 4 + n;
    return 0;
}

static int parse_payload(enum proto_type type, const char *p, const char *end, struct proto_msg *m)
{
    struct proto_bytes f[PROTO_MAX_FIELDS];
    size_t n = 0;
    while (p < end) {
        if (n == PROTO_MAX_FIELDS)
            return -EBADMSG;
        if (take_field(&p, end, &f[n++]) < 0)
            return -EBADMSG;
    }
    memset(m, 0, offsetof(struct proto_msg, headers));
    m->type = type;
    switch (type) {
    case PROTO_READY:
        if (n != 1)
            return -EBADMSG;
        m->info = f[0];
        break;
    case PROTO_INIT_ERROR:
        if (n != 3)
            return -EBADMSG;
        m->error_type = f[0];
        m->message = f[1];
        m->trace = f[2];
        break;
    case PROTO_INVOKE:
        if (n < 3 || (n - 3) % 2 != 0 || f[1].len != 8)
            return -EBADMSG;
        m->id = f[0];
        m->deadline_ms = (uint64_t)get_u32(f[1].data) << 32 | get_u32(f[1].data + 4);
        m->body = f[2];
        m->nheaders = (n - 3) / 2;
        for (size_t i = 0; i < m->nheaders; i++) {
            m->headers[i].name = f[3 + 2 * i];
            m->headers[i].value = f[4 + 2 * i];
        }
        break;
    case PROTO_RESULT:
        if (n != 3)
            return -EBADMSG;
        m->id = f[0];
        m->body = f[1];
        m->content_type = f[2];
        break;
    case PROTO_ERROR:
        if (n != 4)
            return -EBADMSG;
        m->id = f[0];
        m->error_type = f[1];
        m->message = f[2];
        m->trace = f[3];
        break;
    case PROTO_EVENT:
        if (n != 4)
            return -EBADMSG;
        m->id = f[0];
        m->event_type = f[1];
        m->body = f[2];
        m->content_type = f[3];
        break;
    case PROTO_SHUTDOWN:
        if (n != 0)
            return -EBADMSG;
        break;
    case PROTO_EVENT_JSON:
        if (n != 2)
            return -EBADMSG;
        m->id = f[0];
        m->body = f[1];
        break;
    default:
        return -EBADMSG;
    }
    if (has_id(type) && (m->id.len == 0 || m->id.len > PROTO_MAX_ID))
        return -EBADMSG;
    return 0;
}

int proto_decoder_next(struct proto_decoder *d, struct proto_msg *ret)
{
    if (d->error)
        return d->error;
    compact(d);
    if (d->len < PROTO_HEADER_SIZE)
        return 0;
    int64_t payload = check_header(d);
    if (payload < 0)
        return d->error = (int)payload;
    if (d->len - PROTO_HEADER_SIZE < (size_t)payload)
        return 0;
    const char *start = d->buf + PROTO_HEADER_SIZE;
    int r = parse_payload((enum proto_type)(unsigned char)d->buf[2], start, start + payload, ret);
    if (r < 0)
        return d->error = r;
    d->off = PROTO_HEADER_SIZE + (size_t)payload;
    return 1;
}

bool proto_decoder_pending(const struct proto_decoder *d)
{
    return d->len > d->off;
}

int proto_send(int fd, const struct proto_msg *m)
{
    struct proto_buf b = {};
    int r = proto_encode(m, &b);
    while (r == 0 && !proto_buf_empty(&b)) {
        r = proto_buf_flush(&b, fd);
        if (r == -EAGAIN) {
            /* A non-blocking fd in a C runtime: wait until it drains. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            r = poll(&pfd, 1, -1) < 0 && errno != EINTR ? -errno : 0;
        }
    }
    proto_buf_done(&b);
    return r;
}

int proto_recv(int fd, struct proto_decoder *d, struct proto_msg *ret)
{
    for (;;) {
        int r = proto_decoder_next(d, ret);
        if (r != 0)
            return r;
        ssize_t n = proto_decoder_read(d, fd);
        if (n == -EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                return -errno;
            continue;
        }
        if (n < 0)
            return (int)n;
        if (n == 0)
            return proto_decoder_pending(d) ? -EBADMSG : 0;
    }
}

static const char *const reserved_env[] = {
    "IGNIS_RUNTIME_FD",
    "IGNIS_MAX_PAYLOAD",
    "IGNIS_FUNCTION_TIMEOUT_MS",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_EXECUTION_ENV",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
};

bool proto_env_reserved(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(reserved_env); i++)
        if (streq(name, reserved_env[i]))
            return true;
    return false;
}

void proto_env_free(char **env)
{
    for (char **e = env; e && *e; e++)
        free(*e);
    free(env);
}

static int env_add(char **env, size_t *n, const char *fmt, ...) _printf_(3, 4);
static int env_add(char **env, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&env[*n], fmt, ap);
    va_end(ap);
    if (r < 0) {
        env[*n] = NULL;
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

int proto_build_env(const struct proto_function_config *c, char ***ret, struct ig_error *err)
{
    size_t nuser = 0, n = 0;
    for (char *const *e = c->user_env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[256];
        if (!eq || eq == *e || (size_t)(eq - *e) >= sizeof(name))
            return ig_error_set(err, EINVAL, "env: \"%.64s\" is not NAME=VALUE", *e);
        memcpy(name, *e, (size_t)(eq - *e));
        name[eq - *e] = '\0';
        if (proto_env_reserved(name))
            return ig_error_set(err, EINVAL, "env: %s is reserved by the runtime", name);
        nuser++;
    }
    char **env = calloc(32 + nuser, sizeof(char *));
    if (!env)
        return ig_error_set(err, ENOMEM, "out of memory");
    const char *name = c->name ? c->name : "";
    int r = 0;
    for (char *const *e = c->user_env; r == 0 && e && *e; e++)
        r = env_add(env, &n, "%s", *e);
    /* Defaults the user may override: each is added only when function.json did not set it, as
     * a duplicate would resolve differently in glibc's getenv (first wins) and Python's
     * os.environ (last wins). */
    static const char *const defaults[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                                           "TZ=:UTC", "HOME=/tmp"};
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(defaults); i++) {
        size_t klen = strcspn(defaults[i], "=") + 1;
        bool set = false;
        for (char *const *e = c->user_env; e && *e; e++)
            set = set || strncmp(*e, defaults[i], klen) == 0;
        if (!set)
            r = env_add(env, &n, "%s", defaults[i]);
    }
    if (r == 0)
        r = env_add(env, &n, "IGNIS_RUNTIME_FD=%d", PROTO_RUNTIME_FD);
    if (r == 0)
        r = env_add(env, &n, "IGNIS_MAX_PAYLOAD=%zu",
                    c->max_body ? c->max_body : (size_t)PROTO_DEFAULT_MAX_BODY);
    if (r == 0)
        r = env_add(env, &n, "IGNIS_FUNCTION_TIMEOUT_MS=%u", c->timeout_ms);
    if (r == 0)
        r = env_add(env, &n, "_HANDLER=%s", c->handler ? c->handler : "");
    if (r == 0)
        r = env_add(env, &n, "LAMBDA_TASK_ROOT=/var/task");
    if (r == 0)
        r = env_add(env, &n, "LAMBDA_RUNTIME_DIR=/ignis");
    if (r == 0)
        r = env_add(env, &n, "AWS_LAMBDA_FUNCTION_NAME=%s", name);
    if (r == 0)
        r = env_add(env, &n, "AWS_LAMBDA_FUNCTION_VERSION=%s", c->version ? c->version : "$LATEST");
    if (r == 0)
        r = env_add(env, &n, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%u", c->memory_mb);
    if (r == 0)
        r = env_add(env, &n, "AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/%s", name);
    if (r == 0)
        r = env_add(env, &n, "AWS_LAMBDA_LOG_STREAM_NAME=ignis/%s", name);
    if (r == 0)
        r = env_add(env, &n, "AWS_REGION=local");
    if (r == 0)
        r = env_add(env, &n, "AWS_DEFAULT_REGION=local");
    if (r < 0) {
        proto_env_free(env);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    *ret = env;
    return 0;
}
