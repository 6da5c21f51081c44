/* The runtime protocol: the frames the controller and a runtime inside a container exchange over
 * the socket the shim passes as fd 3 (docs/runtime-protocol.md). Pure framing (no I/O beyond the
 * small read/write helpers at the end), shared by the controller and the C runtimes (the exec
 * watchdog, the Lambda Runtime API relay); the Python and Node.js bootstraps encode the same
 * bytes themselves.
 *
 * A frame is an 8-byte header (magic 'I', version 1, type, flags 0, big-endian u32 payload
 * length) and a payload of fields, each a big-endian u32 length and that many bytes. Which
 * fields a frame has is fixed by its type; only INVOKE has a variable tail of header pairs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define PROTO_MAGIC       0x49 /* 'I' */
#define PROTO_VERSION     1
#define PROTO_HEADER_SIZE 8

/* The payload limit (request and response bodies), as AWS Lambda's synchronous 6 MB. */
#define PROTO_DEFAULT_MAX_BODY (6u * 1024u * 1024u)
/* Room in a frame for what is not the body: ids, headers, error texts. */
#define PROTO_FRAME_OVERHEAD (256u * 1024u)
#define PROTO_MAX_ID         256u
#define PROTO_MAX_HEADERS    64u

/* The fd the runtime finds the protocol socket on, and where its entry point is in an image. */
#define PROTO_RUNTIME_FD         3
#define PROTO_RUNTIME_ENTRYPOINT "/ignis/bootstrap"

/* INVOKE header names the runtimes map to Lambda's context (lower case; matched without case). */
#define PROTO_HDR_ARN            "invoked-function-arn"
#define PROTO_HDR_TRACE_ID       "trace-id"
#define PROTO_HDR_CLIENT_CONTEXT "client-context"
#define PROTO_HDR_IDENTITY       "cognito-identity"
#define PROTO_HDR_CONTENT_TYPE   "content-type"
/* The ARN a function is invoked as when the controller sends none, in Lambda's format. */
#define PROTO_ARN_FMT "arn:aws:lambda:local:000000000000:function:%s"

enum proto_type {
    PROTO_READY = 1,      /* runtime → controller: init done, send invocations */
    PROTO_INIT_ERROR = 2, /* runtime → controller: init failed; the runtime exits */
    PROTO_INVOKE = 3,     /* controller → runtime: one invocation */
    PROTO_RESULT = 4,     /* runtime → controller: the invocation's result */
    PROTO_ERROR = 5,      /* runtime → controller: the invocation failed */
    PROTO_EVENT = 6,      /* runtime → controller: the function emitted an event */
    PROTO_SHUTDOWN = 7,   /* controller → runtime: exit once idle */
    PROTO_EVENT_JSON = 8, /* runtime → controller: an event as one JSON object, for the
                           * controller to read (the exec runtime's lines) */
};

/* Bytes inside a decoded frame (or the caller's, when encoding); not NUL-terminated. */
struct proto_bytes {
    const char *data;
    size_t len;
};

struct proto_header {
    struct proto_bytes name, value;
};

/* One message. Only the fields its type has are meaningful (docs/runtime-protocol.md):
 *   READY        info
 *   INIT_ERROR   error_type, message, trace
 *   INVOKE       id, deadline_ms, body, headers
 *   RESULT       id, body, content_type
 *   ERROR        id, error_type, message, trace
 *   EVENT        id, event_type, body (the event's data), content_type
 *   SHUTDOWN     -
 *   EVENT_JSON   id, body ({"type": ..., "data": ..., "datacontenttype": ...})
 * A decoded message points into the decoder's buffer: it is valid until the next call on the
 * decoder. */
struct proto_msg {
    enum proto_type type;
    struct proto_bytes info;
    struct proto_bytes id;
    uint64_t deadline_ms; /* wall clock, ms since the epoch, as Lambda-Runtime-Deadline-Ms */
    struct proto_bytes body;
    struct proto_bytes content_type;
    struct proto_bytes error_type, message, trace;
    struct proto_bytes event_type;
    size_t nheaders;
    struct proto_header headers[PROTO_MAX_HEADERS];
};

/* Helpers to fill a proto_msg from C strings (NULL is empty). */
struct proto_bytes proto_str(const char *s);
/* A decoded field as a malloc'd NUL-terminated string (NULL on out of memory). */
char *proto_strdup(struct proto_bytes b);
bool proto_bytes_eq(struct proto_bytes b, const char *s);
/* The value of the INVOKE header named name (ASCII case-insensitive), or NULL. */
const struct proto_bytes *proto_msg_header(const struct proto_msg *m, const char *name);
const char *proto_type_name(enum proto_type t);

/* An output buffer: frames are appended, then written out, possibly over several calls on a
 * non-blocking fd. */
struct proto_buf {
    char *data;
    size_t len; /* bytes in data */
    size_t off; /* bytes of data already written */
    size_t cap;
};

void proto_buf_done(struct proto_buf *b);
static inline bool proto_buf_empty(const struct proto_buf *b)
{
    return b->off == b->len;
}
/* Appends m as one frame. Returns 0, -EINVAL for a message the protocol cannot carry (unknown
 * type, an id over PROTO_MAX_ID, too many headers), -EMSGSIZE past a u32 payload, -ENOMEM. On
 * failure b is unchanged. */
int proto_encode(const struct proto_msg *m, struct proto_buf *b);
/* Writes what is pending on fd, a stream socket (the runtime socket). Returns 0 once everything is
 * written, -EAGAIN when fd would block (wait for EPOLLOUT and call again), or -errno (-EPIPE when
 * the peer is gone). */
int proto_buf_flush(struct proto_buf *b, int fd);

/* An incremental decoder: feed it bytes in any pieces (one at a time is fine) and take whole
 * messages out. It never reads more than one frame past what it was given and never allocates
 * more than the frame's size, which the limit bounds. */
struct proto_decoder {
    char *buf;
    size_t len; /* bytes buffered */
    size_t off; /* bytes of buf consumed by messages already returned */
    size_t cap;
    size_t max_payload; /* frames whose payload is larger fail with -EMSGSIZE */
    int error;          /* sticky: after a bad frame the stream has no framing left */
};

/* max_body is the payload limit for bodies (0: PROTO_DEFAULT_MAX_BODY). */
void proto_decoder_init(struct proto_decoder *d, size_t max_body);
void proto_decoder_done(struct proto_decoder *d);
/* Copies len bytes in. Returns 0 or -ENOMEM. */
int proto_decoder_feed(struct proto_decoder *d, const void *data, size_t len);
/* Reads once from fd into the decoder. Returns the number of bytes read (> 0), 0 at end of
 * file, -EAGAIN when a non-blocking fd has nothing, or -errno. */
ssize_t proto_decoder_read(struct proto_decoder *d, int fd);
/* Takes the next whole message out. Returns 1 with *ret set, 0 when more bytes are needed, or
 * (sticky, as the stream cannot be resynchronised) -EBADMSG for a malformed frame (bad magic,
 * version, type, flags or fields) or -EMSGSIZE for a frame over the limit, which is reported as
 * soon as its header is in, without waiting for (or buffering) its payload. */
int proto_decoder_next(struct proto_decoder *d, struct proto_msg *ret);
/* Whether bytes of an unfinished frame are buffered: at end of file that means a truncated
 * frame. */
bool proto_decoder_pending(const struct proto_decoder *d);

/* Blocking helpers for runtimes written in C. proto_send writes one frame (retrying on EINTR and
 * short writes). proto_recv returns 1 with a message, 0 at a clean end of file, -EBADMSG for a
 * truncated frame at end of file, or the decoder's or read's -errno. */
int proto_send(int fd, const struct proto_msg *m);
int proto_recv(int fd, struct proto_decoder *d, struct proto_msg *ret);

/* The environment a runtime is started with (docs/runtime-protocol.md, "Environment"): the
 * function's configuration travels there, not in a frame, so a runtime knows its handler before
 * the first byte arrives and an unmodified Lambda bootstrap sees what it expects. */
struct proto_function_config {
    const char *name;
    const char *version;
    const char *handler;
    unsigned memory_mb;
    unsigned timeout_ms;
    size_t max_body; /* 0: PROTO_DEFAULT_MAX_BODY */
    /* The user's env from function.json: "KEY=VALUE" strings; NULL-terminated, may be NULL.
     * Names the runtime reserves (proto_env_reserved) are refused by proto_build_env. */
    char *const *user_env;
};

/* Whether name is set by Ignis for every runtime and so may not come from function.json. */
bool proto_env_reserved(const char *name);
/* Builds the NULL-terminated environment (malloc'd strings in a malloc'd array; free with
 * proto_env_free). Returns 0, -EINVAL (with err naming the variable) or -ENOMEM. */
int proto_build_env(const struct proto_function_config *c, char ***ret, struct ig_error *err);
void proto_env_free(char **env);
