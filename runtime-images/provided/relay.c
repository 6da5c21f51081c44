/* ignis provided runtime: runs an unmodified AWS Lambda custom runtime. It serves the Lambda
 * Runtime API (2018-06-01) on 127.0.0.1:9001 inside the container's own network namespace,
 * starts the bundle's `bootstrap` with AWS_LAMBDA_RUNTIME_API pointing at itself, and relays
 * between that API and the Ignis runtime protocol on fd 3:
 *   first GET .../invocation/next        → READY (Lambda's init ends there too)
 *   INVOKE                               → the reply to a waiting .../invocation/next
 *   POST .../invocation/{id}/response    → RESULT
 *   POST .../invocation/{id}/error       → ERROR
 *   POST .../init/error                  → INIT_ERROR
 *   POST /2018-06-01/ignis/invocation/{id}/event → EVENT (Ignis's own route, for emitting)
 *   bootstrap exits                      → INIT_ERROR or ERROR (Runtime.ExitError), then exit
 * One event loop (loop.h) drives the HTTP server (http.h), the protocol socket and SIGCHLD. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/http.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/protocol.h"

#define API_PREFIX       "/2018-06-01/runtime"
#define ERROR_BODY_LIMIT (1024u * 1024u)
#define EVENT_BODY_LIMIT (1024u * 1024u)
#define DEFAULT_ADDR     "127.0.0.1:9001"

struct pending {
    char *id;
    uint64_t deadline_ms;
    char *body;
    size_t body_len;
    char *content_type, *arn, *trace_id, *client_context, *identity;
};

struct relay {
    struct loop *loop;
    struct http_server *http;
    int fd;
    struct proto_decoder dec;
    struct proto_buf out;
    bool out_watch; /* EPOLLOUT is on */
    size_t max_body;
    pid_t child;
    bool ready_sent, init_failed, eof;
    struct pending *queued;       /* an invocation no `next` has taken yet */
    char *inflight;               /* the id handed to the bootstrap, until it answers */
    struct http_request *waiting; /* a `next` waiting for an invocation */
    bool quitting;
};

static void pending_free(struct pending *p)
{
    if (!p)
        return;
    free(p->id);
    free(p->body);
    free(p->content_type);
    free(p->arn);
    free(p->trace_id);
    free(p->client_context);
    free(p->identity);
    free(p);
}

static void maybe_quit(struct relay *r)
{
    if (r->quitting && proto_buf_empty(&r->out))
        loop_quit(r->loop);
}

static void flush_out(struct relay *r)
{
    int q = proto_buf_flush(&r->out, r->fd);
    bool want = q == -EAGAIN;
    if (q < 0 && q != -EAGAIN) {
        /* The controller is gone: nothing left to serve. */
        log_warn("protocol socket write failed", "error=\"%s\"", strerror(-q));
        r->out.off = r->out.len = 0;
        r->quitting = true;
    }
    if (want != r->out_watch) {
        loop_mod_io(r->loop, r->fd, EPOLLIN | (want ? EPOLLOUT : 0));
        r->out_watch = want;
    }
    maybe_quit(r);
}

static void send_msg(struct relay *r, const struct proto_msg *m)
{
    int q = proto_encode(m, &r->out);
    if (q < 0)
        log_error("cannot encode a frame", "type=%s error=\"%s\"", proto_type_name(m->type),
                  strerror(-q));
    flush_out(r);
}

static void send_error_frame(struct relay *r, enum proto_type type, const char *id,
                             const char *etype, const char *message, const char *trace)
{
    struct proto_msg m = {.type = type,
                          .id = proto_str(id),
                          .error_type = proto_str(etype),
                          .message = proto_str(message),
                          .trace = proto_str(trace)};
    send_msg(r, &m);
}

static void reply_text(struct http_request *req, unsigned status, const char *json)
{
    http_reply(req, status, "application/json", json, strlen(json));
}

static void reply_lambda_error(struct http_request *req, unsigned status, const char *type,
                               const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "errorMessage", message);
    cJSON_AddStringToObject(o, "errorType", type);
    http_reply_json(req, status, o);
}

/* Answers a `next` with the queued invocation. */
static void hand_over(struct relay *r, struct http_request *req)
{
    struct pending *p = TAKE_PTR(r->queued);
    char deadline[32];

    snprintf(deadline, sizeof(deadline), "%llu", (unsigned long long)p->deadline_ms);
    http_set_header(req, "Lambda-Runtime-Aws-Request-Id", p->id);
    http_set_header(req, "Lambda-Runtime-Deadline-Ms", deadline);
    http_set_header(req, "Lambda-Runtime-Invoked-Function-Arn", p->arn);
    if (p->trace_id)
        http_set_header(req, "Lambda-Runtime-Trace-Id", p->trace_id);
    if (p->client_context)
        http_set_header(req, "Lambda-Runtime-Client-Context", p->client_context);
    if (p->identity)
        http_set_header(req, "Lambda-Runtime-Cognito-Identity", p->identity);
    free(r->inflight);
    r->inflight = TAKE_PTR(p->id);
    http_reply_take(req, 200, p->content_type ? p->content_type : "application/json",
                    TAKE_PTR(p->body), p->body_len);
    pending_free(p);
}

static void on_waiting_closed(struct http_request *req, void *userdata)
{
    struct relay *r = userdata;
    if (r->waiting == req)
        r->waiting = NULL;
}

static void on_next(struct http_request *req, void *userdata)
{
    struct relay *r = userdata;

    if (r->init_failed) {
        reply_lambda_error(req, 403, "Runtime.InitError", "init failed; no invocations follow");
        return;
    }
    if (!r->ready_sent) {
        /* The bootstrap asks for work: its initialisation is over, as Lambda counts it. */
        struct proto_msg m = {.type = PROTO_READY, .info = proto_str("provided")};
        r->ready_sent = true;
        send_msg(r, &m);
    }
    if (r->queued) {
        hand_over(r, req);
        return;
    }
    if (r->waiting) {
        /* A suspended connection does not notice its client going away, so an earlier `next`
         * may be from a client that gave up and asked again: the newest one waits. */
        struct http_request *old = TAKE_PTR(r->waiting);
        http_request_set_context(old, NULL, NULL);
        reply_lambda_error(old, 409, "InvalidStateTransition",
                           "a newer request is waiting for the next invocation");
    }
    /* No reply now: http.c suspends the connection until an INVOKE arrives. */
    r->waiting = req;
    http_request_set_context(req, NULL, on_waiting_closed);
}

/* Whether id names the invocation in flight; answers 400 otherwise. */
static bool check_id(struct relay *r, struct http_request *req)
{
    const char *id = http_request_param(req, 0);
    if (r->inflight && id && streq(id, r->inflight))
        return true;
    reply_lambda_error(req, 400, "InvalidRequestID", "Invalid request ID");
    return false;
}

static void on_response(struct http_request *req, void *userdata)
{
    struct relay *r = userdata;
    size_t len;
    const char *body = http_request_body(req, &len);

    if (!check_id(r, req))
        return;
    _cleanup_free_ char *id = TAKE_PTR(r->inflight);
    if (len > r->max_body) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "Response payload size (%zu bytes) exceeded maximum allowed payload size (%zu "
                 "bytes).",
                 len, r->max_body);
        send_error_frame(r, PROTO_ERROR, id, "Function.ResponseSizeTooLarge", msg, "");
        reply_lambda_error(req, 413, "RequestEntityTooLarge", msg);
        return;
    }
    const char *ct = http_request_header(req, "Content-Type");
    struct proto_msg m = {.type = PROTO_RESULT,
                          .id = proto_str(id),
                          .body = {body, len},
                          .content_type = proto_str(ct)};
    send_msg(r, &m);
    reply_text(req, 202, "{\"status\":\"OK\"}");
}

/* Lambda takes an error with or without Lambda-Runtime-Function-Error-Type and with any body;
 * a JSON body may carry errorMessage, errorType and stackTrace (or trace) as a list or text. */
static void parse_error(struct http_request *req, char **ret_type, char **ret_message,
                        char **ret_trace)
{
    size_t len;
    const char *body = http_request_body(req, &len);
    const char *hdr = http_request_header(req, "Lambda-Runtime-Function-Error-Type");
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "errorType");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "errorMessage");
    const cJSON *trace = cJSON_GetObjectItemCaseSensitive(root, "stackTrace");
    if (!trace)
        trace = cJSON_GetObjectItemCaseSensitive(root, "trace");

    if (cJSON_IsString(type) && type->valuestring[0])
        *ret_type = strdup(type->valuestring);
    else
        *ret_type = strdup(hdr && *hdr ? hdr : "Unhandled");
    if (cJSON_IsString(msg))
        *ret_message = strdup(msg->valuestring);
    else if (root && cJSON_IsObject(root))
        *ret_message = strdup("");
    else
        *ret_message = strndup(body, len); /* not JSON: the body is the message */
    *ret_trace = NULL;
    if (cJSON_IsString(trace))
        *ret_trace = strdup(trace->valuestring);
    else if (cJSON_IsArray(trace)) {
        size_t total = 1;
        const cJSON *e;
        cJSON_ArrayForEach(e, trace) if (cJSON_IsString(e)) total += strlen(e->valuestring) + 1;
        char *t = calloc(1, total), *p = t;
        cJSON_ArrayForEach(e, trace) if (t && cJSON_IsString(e)) p =
            stpcpy(stpcpy(p, e->valuestring), "\n");
        *ret_trace = t;
    }
    if (!*ret_trace)
        *ret_trace = strdup("");
    cJSON_Delete(root);
}

static void on_error(struct http_request *req, void *userdata)
{
    struct relay *r = userdata;
    if (!check_id(r, req))
        return;
    _cleanup_free_ char *id = TAKE_PTR(r->inflight);
    _cleanup_free_ char *type = NULL, *message = NULL, *trace = NULL;
    parse_error(req, &type, &message, &trace);
    send_error_frame(r, PROTO_ERROR, id, type ? type : "Unhandled", message, trace);
    reply_text(req, 202, "{\"status\":\"OK\"}");
}

static void on_init_error(struct http_request *req, void *userdata)
{
    struct relay *r = userdata;
    if (r->ready_sent || r->init_failed) {
        reply_lambda_error(req, 403, "InvalidStateTransition",
                           "init/error is only accepted during initialisation");
        return;
    }
    _cleanup_free_ char *type = NULL, *message = NULL, *trace = NULL;
    parse_error(req, &type, &message, &trace);
    r->init_failed = true;
    send_error_frame(r, PROTO_INIT_ERROR, NULL, type ? type : "Unhandled", message, trace);
    reply_text(req, 202, "{\"status\":\"OK\"}");
}

/* Ignis's route for a custom runtime to emit an event while invocation {id} runs: the type in
 * the Ignis-Event-Type header (or ?type=), the body as the event's data, Content-Type as its
 * data content type. 202 on success, as the Runtime API's own posts. */
static void on_event(struct http_request *req, void *userdata)
{
    struct relay *r = userdata;
    const char *type = http_request_header(req, "Ignis-Event-Type");
    if (!type || !*type)
        type = http_request_query(req, "type");
    if (!check_id(r, req))
        return;
    if (!type || !*type) {
        reply_lambda_error(req, 400, "InvalidEventType",
                           "an event needs a type: the Ignis-Event-Type header or ?type=");
        return;
    }
    size_t len;
    const char *body = http_request_body(req, &len);
    struct proto_msg m = {.type = PROTO_EVENT,
                          .id = proto_str(r->inflight),
                          .event_type = proto_str(type),
                          .body = {body, len},
                          .content_type = proto_str(http_request_header(req, "Content-Type"))};
    send_msg(r, &m);
    reply_text(req, 202, "{\"status\":\"OK\"}");
}

static char *header_dup(const struct proto_msg *m, const char *name)
{
    const struct proto_bytes *v = proto_msg_header(m, name);
    return v && v->len ? proto_strdup(*v) : NULL;
}

static void on_invoke(struct relay *r, const struct proto_msg *m)
{
    if (r->queued || r->inflight) {
        log_error("an invocation arrived while another is running", "id=%.*s", (int)m->id.len,
                  m->id.data);
        char *id = proto_strdup(m->id);
        send_error_frame(r, PROTO_ERROR, id, "Runtime.Busy",
                         "the provided runtime serves one invocation at a time", "");
        free(id);
        return;
    }
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->id = proto_strdup(m->id);
    p->deadline_ms = m->deadline_ms;
    p->body = malloc(m->body.len ? m->body.len : 1);
    if (p->body && m->body.len)
        memcpy(p->body, m->body.data, m->body.len);
    p->body_len = m->body.len;
    p->content_type = header_dup(m, PROTO_HDR_CONTENT_TYPE);
    p->arn = header_dup(m, PROTO_HDR_ARN);
    if (!p->arn) {
        const char *name = getenv("AWS_LAMBDA_FUNCTION_NAME");
        if (asprintf(&p->arn, PROTO_ARN_FMT, name ? name : "") < 0)
            p->arn = NULL;
    }
    p->trace_id = header_dup(m, PROTO_HDR_TRACE_ID);
    p->client_context = header_dup(m, PROTO_HDR_CLIENT_CONTEXT);
    p->identity = header_dup(m, PROTO_HDR_IDENTITY);
    r->queued = p;
    if (r->waiting) {
        struct http_request *req = TAKE_PTR(r->waiting);
        http_request_set_context(req, NULL, NULL);
        hand_over(r, req);
    }
}

static void on_proto(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct relay *r = userdata;

    if (events & EPOLLOUT)
        flush_out(r);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || r->eof)
        return;
    ssize_t n = proto_decoder_read(&r->dec, fd);
    if (n == -EAGAIN)
        return;
    struct proto_msg m;
    int q;
    while ((q = proto_decoder_next(&r->dec, &m)) == 1) {
        if (m.type == PROTO_INVOKE)
            on_invoke(r, &m);
        else if (m.type == PROTO_SHUTDOWN) {
            n = 0;
            break;
        } else
            log_warn("unexpected frame ignored", "type=%s", proto_type_name(m.type));
    }
    if (q < 0 || n <= 0) {
        /* The controller closed the socket, asked us to stop, or sent garbage: stop the
         * bootstrap; its exit ends the loop. */
        if (q < 0)
            log_error("protocol error", "error=\"%s\"", strerror(-q));
        r->eof = true;
        loop_mod_io(l, fd, r->out_watch ? EPOLLOUT : 0);
        if (r->child > 0)
            kill(r->child, SIGKILL);
        else
            loop_quit(l);
    }
}

static void on_sigchld(struct loop *l, int signo, void *userdata)
{
    struct relay *r = userdata;
    int wstatus;
    pid_t pid;

    while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
        if (pid != r->child)
            continue; /* a descendant re-parented to us as pid 1 */
        r->child = 0;
        char what[128];
        if (WIFEXITED(wstatus))
            snprintf(what, sizeof(what), "Runtime exited with error: exit status %d",
                     WEXITSTATUS(wstatus));
        else
            snprintf(what, sizeof(what), "Runtime exited with error: signal: %s",
                     strsignal(WTERMSIG(wstatus)));
        if (!r->eof) {
            if (!r->ready_sent && !r->init_failed)
                send_error_frame(r, PROTO_INIT_ERROR, NULL, "Runtime.ExitError", what, "");
            else if (r->inflight)
                send_error_frame(r, PROTO_ERROR, r->inflight, "Runtime.ExitError", what, "");
        }
        log_info("bootstrap exited", "detail=\"%s\"", what);
        r->quitting = true;
        maybe_quit(r);
    }
}

static const struct http_route routes[] = {
    {.method = "GET", .pattern = API_PREFIX "/invocation/next", .fn = on_next, .max_body = 0},
    /* Bodies past the limit are read (up to twice it) so the answer can be Lambda's 413 and
     * the invocation's error; past that http.c refuses them outright. */
    {.method = "POST",
     .pattern = API_PREFIX "/invocation/{}/response",
     .fn = on_response,
     .max_body = 2 * PROTO_DEFAULT_MAX_BODY},
    {.method = "POST",
     .pattern = API_PREFIX "/invocation/{}/error",
     .fn = on_error,
     .max_body = ERROR_BODY_LIMIT},
    {.method = "POST",
     .pattern = API_PREFIX "/init/error",
     .fn = on_init_error,
     .max_body = ERROR_BODY_LIMIT},
    {.method = "POST",
     .pattern = "/2018-06-01/ignis/invocation/{}/event",
     .fn = on_event,
     .max_body = EVENT_BODY_LIMIT},
};

static int spawn_bootstrap(struct relay *r, const char *addr)
{
    const char *root = getenv("LAMBDA_TASK_ROOT");
    char path[4096];
    struct stat st;

    if (!root)
        root = "/var/task";
    snprintf(path, sizeof(path), "%s/bootstrap", root);
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        /* Lambda's message for the same mistake. */
        char msg[4200];
        snprintf(msg, sizeof(msg), "Couldn't find valid bootstrap(s): [%s]", path);
        send_error_frame(r, PROTO_INIT_ERROR, NULL, "Runtime.InvalidEntrypoint", msg, "");
        return -ENOENT;
    }
    setenv("AWS_LAMBDA_RUNTIME_API", addr, 1);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (chdir(root) < 0)
            _exit(127);
        char *const argv[] = {path, NULL};
        execv(path, argv);
        fprintf(stderr, "ignis provided: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    r->child = pid;
    return 0;
}

int main(int argc, char **argv)
{
    struct relay r = {.fd = PROTO_RUNTIME_FD, .max_body = PROTO_DEFAULT_MAX_BODY};
    const char *addr = getenv("IGNIS_RELAY_ADDR"), *fdenv = getenv("IGNIS_RUNTIME_FD");
    const char *maxenv = getenv("IGNIS_MAX_PAYLOAD");
    struct ig_error err = {};
    char host[256];
    uint16_t port;
    int q;

    if (!addr)
        addr = DEFAULT_ADDR;
    if (fdenv)
        r.fd = atoi(fdenv);
    if (maxenv && atoll(maxenv) > 0)
        r.max_body = (size_t)atoll(maxenv);
    if (fcntl(r.fd, F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(r.fd, F_SETFL, fcntl(r.fd, F_GETFL) | O_NONBLOCK) < 0) {
        fprintf(stderr, "ignis provided: no protocol socket at fd %d\n", r.fd);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    proto_decoder_init(&r.dec, r.max_body);
    if (http_parse_listen(addr, host, sizeof(host), &port) < 0) {
        send_error_frame(&r, PROTO_INIT_ERROR, NULL, "Runtime.RelayError",
                         "IGNIS_RELAY_ADDR is not HOST:PORT", "");
        return 1;
    }
    if ((q = loop_new(&r.loop)) < 0 || (q = loop_add_signal(r.loop, SIGCHLD, on_sigchld, &r)) < 0 ||
        (q = loop_add_io(r.loop, r.fd, EPOLLIN, on_proto, &r)) < 0) {
        fprintf(stderr, "ignis provided: event loop: %s\n", strerror(-q));
        return 1;
    }
    if (http_server_new(r.loop, host, port, routes, ARRAY_SIZE(routes), &r, NULL, &r.http, &err) <
        0) {
        send_error_frame(&r, PROTO_INIT_ERROR, NULL, "Runtime.RelayError", err.message, "");
        /* Best effort: the frame may still sit in the buffer of a full socket. */
        loop_free(r.loop);
        return 1;
    }
    if (spawn_bootstrap(&r, addr) < 0)
        r.quitting = true;
    maybe_quit(&r);
    q = r.quitting && proto_buf_empty(&r.out) ? 0 : loop_run(r.loop);
    if (r.child > 0) {
        kill(r.child, SIGKILL);
        waitpid(r.child, NULL, 0);
    }
    http_server_free(r.http);
    loop_free(r.loop);
    pending_free(r.queued);
    free(r.inflight);
    proto_decoder_done(&r.dec);
    proto_buf_done(&r.out);
    return q < 0 ? 1 : 0;
}
