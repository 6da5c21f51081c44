/* The HTTP server: libmicrohttpd driven from the event loop (its epoll fd is one of our fds), so
 * every handler runs on the loop thread and may touch scheduling state without locks. A handler
 * either replies before returning or later (the connection is suspended meanwhile). */
#pragma once

#include <cjson/cJSON.h>
#include <sys/types.h>

#include "base/loop.h"
#include "base/util.h"

struct http_server;
struct http_request;

typedef void (*http_handler_fn)(struct http_request *req, void *userdata);
/* Called once when the request is finished or its connection closed, whichever is first. */
typedef void (*http_close_fn)(struct http_request *req, void *userdata);

struct http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/functions/{}/invoke": {} matches one non-empty segment */
    http_handler_fn fn;
    size_t max_body; /* 0: the route takes no body */
    /* Who may call it: a bit set the server's authorize hook interprets (auth.h: AUTH_ADMIN,
     * AUTH_PUBLIC, ...). 0 is the most restrictive the hook knows (auth.c: admin only), so a
     * route added without thought is closed rather than open. */
    unsigned roles;
    /* Its completed requests go to the server's audit hook (who, what, from where, status). */
    bool audit;
    /* The most bytes of request headers (names and values) it accepts; 0: HTTP_MAX_HEADER.
     * Past it: 431. libmicrohttpd's connection memory (64 KiB) bounds every route anyway. */
    size_t max_header;
};

#define HTTP_MAX_HEADER (8u * 1024u)

/* Who made a request, as the authorize hook established it (http_request_set_caller). */
struct http_caller {
    char token_id[17];
    char name[65];
    unsigned role; /* one bit of http_route.roles */
};

/* Decides whether req (routed to route) may go on: returns true, or replies (401, 403, 429)
 * and returns false. Runs on the loop thread once the headers are in, before any body is read. */
typedef bool (*http_authorize_fn)(struct http_request *req, const struct http_route *route,
                                  void *userdata);
/* Called once per request that a route marked audit handled, after its reply was queued (or the
 * connection closed). */
typedef void (*http_audit_fn)(struct http_request *req, const struct http_route *route,
                              unsigned status, void *userdata);

struct http_server_options {
    /* PEM text of the certificate (chain) and key: HTTPS only when both are set. */
    const char *tls_cert_pem, *tls_key_pem;
    /* GnuTLS priorities; NULL: TLS 1.2 and 1.3 only (HTTP_TLS_PRIORITIES). */
    const char *tls_priorities;
    unsigned connection_limit;        /* 0: HTTP_CONNECTION_LIMIT */
    unsigned per_ip_connection_limit; /* 0: none */
    /* Connections kept free for clients with a valid token: once more than connection_limit -
     * connection_reserve are open, each new one closes one that has no request in progress and
     * never carried one with a valid token (an old one, from the address holding the most
     * connections). 0: none (at the limit, new connections
     * wait in the kernel's backlog). At most a quarter of connection_limit is used. */
    unsigned connection_reserve;
    /* Seconds a connection has to deliver a request's headers, counted from its start or from
     * the end of its previous request (an idle keep-alive connection too); past them it is
     * closed. 0: HTTP_HEADER_TIMEOUT_S. */
    unsigned header_timeout_s;
    /* Seconds a connection may go without a byte either way while a request is read or its
     * reply written (libmicrohttpd's connection timeout). 0: HTTP_IDLE_TIMEOUT_S. */
    unsigned idle_timeout_s;
    http_authorize_fn authorize; /* NULL: everything is allowed */
    http_audit_fn audit;         /* NULL: nothing is recorded */
};

#define HTTP_TLS_PRIORITIES   "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define HTTP_HEADER_TIMEOUT_S 10u
#define HTTP_IDLE_TIMEOUT_S   30u

#define HTTP_MAX_PARAMS 4

/* Serves routes on host:port (port 0: any) with options (TLS, limits, the authorize and audit
 * hooks); opts may be NULL. */
int http_server_new(struct loop *l, const char *host, uint16_t port,
                    const struct http_route *routes, size_t nroutes, void *userdata,
                    const struct http_server_options *opts, struct http_server **ret,
                    struct ig_error *err);
/* Parses "HOST:PORT" or "[V6]:PORT" (HOST an IPv4 or IPv6 literal or localhost) for a listening
 * address; -EINVAL when it is not one. */
int http_parse_listen(const char *text, char *ret_host, size_t host_size, uint16_t *ret_port);
/* The port actually bound (useful with port 0). */
uint16_t http_server_port(const struct http_server *s);
/* Stops accepting new connections; requests in progress go on. */
void http_server_quiesce(struct http_server *s);
/* Answers every request still waiting with 503 shutting_down, flushes (bounded) and frees. */
void http_server_free(struct http_server *s);

const char *http_request_path(const struct http_request *req);
const char *http_request_param(const struct http_request *req, size_t i);
const char *http_request_header(const struct http_request *req, const char *name);
/* Calls fn for every request header, in the order received, repeats included. */
typedef void (*http_header_fn)(void *ctx, const char *name, const char *value);
void http_request_each_header(const struct http_request *req, http_header_fn fn, void *ctx);
const char *http_request_query(const struct http_request *req, const char *name);
const char *http_request_body(const struct http_request *req, size_t *ret_len);
/* The peer's address as text ("127.0.0.1"). */
const char *http_request_peer(struct http_request *req);

/* When its handler was called (the whole request was in): monotonic microseconds. */
uint64_t http_request_handled_usec(const struct http_request *req);
/* The caller the authorize hook recorded; NULL on a route that needs none. */
const struct http_caller *http_request_caller(const struct http_request *req);
void http_request_set_caller(struct http_request *req, const struct http_caller *caller);
/* A line for the audit record of this request (what was made: "id=... role=..."); copied. Never
 * a secret's value. */
int http_request_set_audit_detail(struct http_request *req, const char *detail);
const char *http_request_audit_detail(const struct http_request *req);

/* Per-request state a handler keeps while a reply is deferred, and its cleanup. */
void http_request_set_context(struct http_request *req, void *ctx, http_close_fn on_close);
void *http_request_context(const struct http_request *req);

/* Adds a header to the reply that will be sent (copied). */
int http_set_header(struct http_request *req, const char *name, const char *value);

/* Each reply function may be called once per request, from the loop thread. Takes ownership of
 * body (malloc'd) in http_reply_take. */
int http_reply(struct http_request *req, unsigned status, const char *content_type,
               const void *body, size_t len);
int http_reply_take(struct http_request *req, unsigned status, const char *content_type, char *body,
                    size_t len);
/* A streamed (chunked) reply. read copies up to max bytes of what there is to send into buf and
 * returns how many; 0 when there is nothing now (the connection waits, without a deadline, for
 * http_stream_wake); -1 to end the reply. ctx is the caller's: free it in the request's close
 * hook (http_request_set_context), which runs when the connection goes. */
typedef ssize_t (*http_stream_fn)(void *ctx, char *buf, size_t max);
int http_reply_stream(struct http_request *req, unsigned status, const char *content_type,
                      http_stream_fn read, void *ctx);
/* There is more to send on a streamed reply that waits. Any time, from the loop thread. */
void http_stream_wake(struct http_request *req);

/* Sends the JSON (compact) and frees it. */
int http_reply_json(struct http_request *req, unsigned status, cJSON *json);
/* {"error": {"code": code, "message": ...}} */
int http_reply_error(struct http_request *req, unsigned status, const char *code, const char *fmt,
                     ...) _printf_(4, 5);
