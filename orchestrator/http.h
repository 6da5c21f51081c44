/* The HTTP server: libmicrohttpd driven from the event loop (its epoll fd is one of our fds), so
 * every handler runs on the loop thread and may touch scheduling state without locks. A handler
 * either replies before returning or later (the connection is suspended meanwhile). */
#pragma once

#include <cjson/cJSON.h>
#include <sys/types.h>

#include "loop.h"
#include "util.h"

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
};

#define HTTP_MAX_PARAMS 4

int http_server_new(struct loop *l, const char *host, uint16_t port,
                    const struct http_route *routes, size_t nroutes, void *userdata,
                    struct http_server **ret, struct ig_error *err);
/* The port actually bound (useful with port 0). */
uint16_t http_server_port(const struct http_server *s);
/* Stops accepting new connections; requests in progress go on. */
void http_server_quiesce(struct http_server *s);
/* Answers every request still waiting with 503 shutting_down, flushes (bounded) and frees. */
void http_server_free(struct http_server *s);

const char *http_request_method(const struct http_request *req);
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
