/* The runtime protocol decoder: the bytes a runtime (a hostile function's process) writes to its
 * socket, decoded as the pool does it. The first input byte chooses the body limit and whether
 * bytes arrive through proto_decoder_feed or through proto_decoder_read from a socket (as the
 * pool reads them); the second seeds the sizes of the pieces the stream is cut into; the rest is
 * the stream.
 *
 * Properties: the stream decodes to the same messages and the same end state whether it comes
 * in one piece or many; each decoded frame encodes back to exactly its bytes (so nothing in a
 * frame is ignored or misread); an error is sticky; a stream that stops inside a frame says so
 * (proto_decoder_pending). */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "base/protocol.h"

/* Body limits: the default, and small ones so the -EMSGSIZE path is reached with small inputs. */
static const size_t max_bodies[] = {0, 1, 16, 300};

struct outcome {
    struct proto_buf frames; /* every decoded message, encoded again */
    size_t n;
    int end;      /* the last proto_decoder_next result: 0 (needs more) or -errno */
    bool pending; /* proto_decoder_pending at the end, when end is 0 */
};

/* Takes every whole message out, re-encoding each. */
static void drain(struct proto_decoder *d, struct outcome *o)
{
    struct proto_msg m;
    int r;
    while ((r = proto_decoder_next(d, &m)) == 1) {
        fuzz_check(proto_encode(&m, &o->frames) == 0, "a decoded %s frame does not encode",
                   proto_type_name(m.type));
        o->n++;
    }
    o->end = r;
    if (r < 0) {
        fuzz_check(r == -EBADMSG || r == -EMSGSIZE, "undocumented error %d", r);
        fuzz_check(proto_decoder_next(d, &m) == r, "an error that is not sticky");
    }
}

static void decode_whole(const uint8_t *s, size_t n, size_t max_body, struct outcome *o)
{
    struct proto_decoder d;
    proto_decoder_init(&d, max_body);
    fuzz_check(proto_decoder_feed(&d, s, n) == 0, "out of memory");
    drain(&d, o);
    o->pending = proto_decoder_pending(&d);
    proto_decoder_done(&d);
}

/* A small xorshift: piece sizes from 1 to 64, reproducible from the seed byte. */
static size_t next_piece(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return 1 + *state % 64;
}

static void decode_pieces(const uint8_t *s, size_t n, size_t max_body, bool from_socket,
                          uint8_t seed, struct outcome *o)
{
    struct proto_decoder d;
    uint32_t state = 0x9e3779b9u ^ seed;
    int sv[2] = {-1, -1};

    proto_decoder_init(&d, max_body);
    if (from_socket)
        fuzz_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
                   "socketpair: %s", strerror(errno));
    for (size_t off = 0; off < n && o->end == 0;) {
        size_t piece = next_piece(&state);
        if (piece > n - off)
            piece = n - off;
        if (from_socket) {
            fuzz_check(write(sv[1], s + off, piece) == (ssize_t)piece, "write: %s",
                       strerror(errno));
            ssize_t got;
            while ((got = proto_decoder_read(&d, sv[0])) > 0)
                ;
            fuzz_check(got == -EAGAIN, "proto_decoder_read: %zd", got);
        } else
            fuzz_check(proto_decoder_feed(&d, s + off, piece) == 0, "out of memory");
        off += piece;
        drain(&d, o);
    }
    if (from_socket) {
        close(sv[1]);
        /* The end of file shows once the last reference to the other end is gone, which can
         * be a moment after close(): anything that looks at /proc/PID/fd (a process monitor)
         * holds one while it does. Seen once in CI as "no end of file"; a reader must wait
         * for it, as the pool does on its epoll. */
        ssize_t end;
        while ((end = proto_decoder_read(&d, sv[0])) == -EAGAIN)
            poll(&(struct pollfd){.fd = sv[0], .events = POLLIN}, 1, -1);
        fuzz_check(end == 0, "no end of file: %zd", end);
        close(sv[0]);
    }
    o->pending = proto_decoder_pending(&d);
    proto_decoder_done(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_body = max_bodies[data[0] % ARRAY_SIZE(max_bodies)];
    bool from_socket = data[0] & 4;
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    struct outcome whole = {}, pieces = {};

    decode_whole(s, n, max_body, &whole);
    decode_pieces(s, n, max_body, from_socket, data[1], &pieces);

    fuzz_check(whole.n == pieces.n && whole.end == pieces.end,
               "whole: %zu messages, end %d; in pieces: %zu messages, end %d", whole.n, whole.end,
               pieces.n, pieces.end);
    fuzz_check(whole.frames.len == pieces.frames.len &&
                   (whole.frames.len == 0 ||
                    memcmp(whole.frames.data, pieces.frames.data, whole.frames.len) == 0),
               "the messages differ between whole and pieces");
    /* Decoding and encoding again gives the very bytes that were consumed. */
    fuzz_check(whole.frames.len <= n &&
                   (whole.frames.len == 0 || memcmp(whole.frames.data, s, whole.frames.len) == 0),
               "a frame does not encode back to its bytes");
    if (whole.end == 0)
        fuzz_check(whole.pending == (whole.frames.len < n) && pieces.pending == whole.pending,
                   "pending %d/%d with %zu of %zu bytes in whole frames", whole.pending,
                   pieces.pending, whole.frames.len, n);
    proto_buf_done(&whole.frames);
    proto_buf_done(&pieces.frames);
    return 0;
}
