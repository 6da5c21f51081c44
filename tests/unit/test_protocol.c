/* The runtime protocol's framing: every message type round trips, byte by byte as well as in
 * one piece; truncated, oversized and garbage frames are clean errors; 6 MB bodies cross a
 * non-blocking socket; the runtime environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "base/event_line.h"
#include "base/protocol.h"

static void encode(const struct proto_msg *m, struct proto_buf *b)
{
    assert_int_equal(proto_encode(m, b), 0);
}

static void assert_bytes(struct proto_bytes b, const void *want, size_t len)
{
    assert_int_equal(b.len, len);
    if (len)
        assert_memory_equal(b.data, want, len);
}
#define assert_bytes_str(b, s) assert_bytes(b, s, strlen(s))

static struct proto_msg sample_invoke(void)
{
    static const char body[] = "{\"x\":\0\"binary\xff\"}";
    struct proto_msg m = {.type = PROTO_INVOKE,
                          .id = proto_str("a1b2"),
                          .deadline_ms = 1764300000123ull,
                          .body = {.data = body, .len = sizeof(body)},
                          .nheaders = 2};
    m.headers[0] = (struct proto_header){proto_str("content-type"), proto_str("application/json")};
    m.headers[1] = (struct proto_header){proto_str("trace-id"), proto_str("")};
    return m;
}

static void check_invoke(const struct proto_msg *m)
{
    static const char body[] = "{\"x\":\0\"binary\xff\"}";
    assert_int_equal(m->type, PROTO_INVOKE);
    assert_bytes_str(m->id, "a1b2");
    assert_int_equal(m->deadline_ms, 1764300000123ull);
    assert_bytes(m->body, body, sizeof(body));
    assert_int_equal(m->nheaders, 2);
    assert_non_null(proto_msg_header(m, "Content-Type"));
    assert_bytes_str(*proto_msg_header(m, "content-type"), "application/json");
    assert_bytes_str(*proto_msg_header(m, "TRACE-ID"), "");
    assert_null(proto_msg_header(m, "nope"));
}

static void test_invoke_round_trip(void **state)
{
    struct proto_buf b = {};
    struct proto_msg m = sample_invoke(), got;
    struct proto_decoder d;

    encode(&m, &b);
    proto_decoder_init(&d, 0);
    assert_int_equal(proto_decoder_feed(&d, b.data, b.len), 0);
    assert_int_equal(proto_decoder_next(&d, &got), 1);
    check_invoke(&got);
    assert_int_equal(proto_decoder_next(&d, &got), 0);
    assert_false(proto_decoder_pending(&d));
    proto_decoder_done(&d);
    proto_buf_done(&b);
}

/* Every other type, all in one buffer, then fed one byte at a time: a message comes out exactly
 * when its last byte is in, and not before. */
static void test_all_types_byte_by_byte(void **state)
{
    struct proto_msg msgs[] = {
        {.type = PROTO_READY, .info = proto_str("python3 3.11")},
        {.type = PROTO_INIT_ERROR,
         .error_type = proto_str("Runtime.ImportModuleError"),
         .message = proto_str("No module named 'x'"),
         .trace = proto_str("line 1\nline 2")},
        sample_invoke(),
        {.type = PROTO_EVENT,
         .id = proto_str("a1b2"),
         .event_type = proto_str("com.example.x"),
         .body = proto_str("{\"n\":1}"),
         .content_type = proto_str("application/json")},
        {.type = PROTO_EVENT_JSON,
         .id = proto_str("a1b2"),
         .body = proto_str("{\"type\":\"com.example.y\",\"data\":2}")},
        {.type = PROTO_RESULT, .id = proto_str("a1b2"), .body = proto_str("\"ok\"")},
        {.type = PROTO_ERROR,
         .id = proto_str("a1b2"),
         .error_type = proto_str("ValueError"),
         .message = proto_str("bad"),
         .trace = proto_str("")},
        {.type = PROTO_SHUTDOWN},
    };
    struct proto_buf b = {};
    size_t ends[ARRAY_SIZE(msgs)];
    for (size_t i = 0; i < ARRAY_SIZE(msgs); i++) {
        encode(&msgs[i], &b);
        ends[i] = b.len;
    }

    struct proto_decoder d;
    struct proto_msg got;
    size_t next = 0;
    proto_decoder_init(&d, 0);
    for (size_t i = 0; i < b.len; i++) {
        assert_int_equal(proto_decoder_feed(&d, b.data + i, 1), 0);
        int r = proto_decoder_next(&d, &got);
        if (i + 1 != ends[next]) {
            assert_int_equal(r, 0);
            continue;
        }
        assert_int_equal(r, 1);
        assert_int_equal(got.type, msgs[next].type);
        switch (got.type) {
        case PROTO_READY:
            assert_bytes_str(got.info, "python3 3.11");
            break;
        case PROTO_INIT_ERROR:
            assert_bytes_str(got.error_type, "Runtime.ImportModuleError");
            assert_bytes_str(got.message, "No module named 'x'");
            assert_bytes_str(got.trace, "line 1\nline 2");
            break;
        case PROTO_INVOKE:
            check_invoke(&got);
            break;
        case PROTO_EVENT:
            assert_bytes_str(got.id, "a1b2");
            assert_bytes_str(got.event_type, "com.example.x");
            assert_bytes_str(got.body, "{\"n\":1}");
            assert_bytes_str(got.content_type, "application/json");
            break;
        case PROTO_EVENT_JSON:
            assert_bytes_str(got.id, "a1b2");
            assert_bytes_str(got.body, "{\"type\":\"com.example.y\",\"data\":2}");
            break;
        case PROTO_RESULT:
            assert_bytes_str(got.body, "\"ok\"");
            assert_bytes_str(got.content_type, "");
            break;
        case PROTO_ERROR:
            assert_bytes_str(got.error_type, "ValueError");
            assert_bytes_str(got.message, "bad");
            break;
        case PROTO_SHUTDOWN:
            break;
        }
        assert_int_equal(proto_decoder_next(&d, &got), 0);
        next++;
    }
    assert_int_equal(next, ARRAY_SIZE(msgs));
    assert_false(proto_decoder_pending(&d));
    proto_decoder_done(&d);
    proto_buf_done(&b);
}

static void test_encode_refuses(void **state)
{
    struct proto_buf b = {};
    char id[PROTO_MAX_ID + 2];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    struct proto_msg m = {.type = PROTO_RESULT, .id = proto_str(id)};
    assert_int_equal(proto_encode(&m, &b), -EINVAL);
    m = (struct proto_msg){.type = 99};
    assert_int_equal(proto_encode(&m, &b), -EINVAL);
    m = sample_invoke();
    m.nheaders = PROTO_MAX_HEADERS + 1;
    assert_int_equal(proto_encode(&m, &b), -EINVAL);
    assert_int_equal(b.len, 0);
    proto_buf_done(&b);
}

/* Feeds bytes and expects the given result from next(), then that it sticks. */
static void expect_next(const void *bytes, size_t len, int want)
{
    struct proto_decoder d;
    struct proto_msg got;
    proto_decoder_init(&d, 1024);
    assert_int_equal(proto_decoder_feed(&d, bytes, len), 0);
    assert_int_equal(proto_decoder_next(&d, &got), want);
    if (want < 0) {
        assert_int_equal(proto_decoder_next(&d, &got), want);
        assert_int_equal(proto_decoder_feed(&d, "more", 4), 0);
        assert_int_equal(proto_decoder_next(&d, &got), want);
    }
    proto_decoder_done(&d);
}

/* The length of a literal, which may hold NULs. */
#define EXPECT_NEXT(lit, want) expect_next(lit, sizeof(lit) - 1, want)

static void test_garbage_frames(void **state)
{
    /* Headers: bad magic, version, flags, types 0 and 8. */
    EXPECT_NEXT("GET / HTTP/1.1\r\n", -EBADMSG);
    EXPECT_NEXT("I\x02\x01\0\0\0\0\0", -EBADMSG);
    EXPECT_NEXT("I\x01\x07\x01\0\0\0\0", -EBADMSG);
    EXPECT_NEXT("I\x01\x00\0\0\0\0\0", -EBADMSG);
    EXPECT_NEXT("I\x01\x08\0\0\0\0\0", -EBADMSG);
    /* SHUTDOWN with a field; READY with none. */
    EXPECT_NEXT("I\x01\x07\0\0\0\0\x04\0\0\0\0", -EBADMSG);
    EXPECT_NEXT("I\x01\x01\0\0\0\0\0", -EBADMSG);
    /* A field whose length runs past the payload, and a payload ending inside a length. */
    EXPECT_NEXT("I\x01\x01\0\0\0\0\x06\0\0\0\x09"
                "ab",
                -EBADMSG);
    EXPECT_NEXT("I\x01\x01\0\0\0\0\x02\0\0", -EBADMSG);
    /* RESULT with an empty id; INVOKE with a 7-byte deadline; INVOKE with half a header. */
    EXPECT_NEXT("I\x01\x04\0\0\0\0\x0c\0\0\0\0\0\0\0\0\0\0\0\0", -EBADMSG);
    EXPECT_NEXT("I\x01\x03\0\0\0\0\x14\0\0\0\x01x\0\0\0\x07"
                "1234567\0\0\0\0",
                -EBADMSG);
    EXPECT_NEXT("I\x01\x03\0\0\0\0\x1a\0\0\0\x01x\0\0\0\x08"
                "12345678\0\0\0\0\0\0\0\x01h",
                -EBADMSG);
    /* A well-formed SHUTDOWN, as a control. */
    EXPECT_NEXT("I\x01\x07\0\0\0\0\0", 1);
}

static void test_oversized_reported_from_header(void **state)
{
    struct proto_decoder d;
    struct proto_msg got;
    proto_decoder_init(&d, 1024);
    /* 1 GiB declared: refused as soon as the header is in, nothing allocated for it. */
    assert_int_equal(proto_decoder_feed(&d, "I\x01\x04\0\x40\0\0\0", 8), 0);
    assert_int_equal(proto_decoder_next(&d, &got), -EMSGSIZE);
    assert_true(d.cap < 64 * 1024);
    proto_decoder_done(&d);

    /* A body over the limit made by a real encoder. */
    size_t big = 1024 + PROTO_FRAME_OVERHEAD + 1;
    char *body = calloc(1, big);
    struct proto_buf b = {};
    struct proto_msg m = {.type = PROTO_RESULT, .id = proto_str("x"), .body = {body, big}};
    encode(&m, &b);
    proto_decoder_init(&d, 1024);
    assert_int_equal(proto_decoder_feed(&d, b.data, PROTO_HEADER_SIZE), 0);
    assert_int_equal(proto_decoder_next(&d, &got), -EMSGSIZE);
    proto_decoder_done(&d);
    /* The same frame is fine for a decoder whose limit allows it. */
    proto_decoder_init(&d, big);
    assert_int_equal(proto_decoder_feed(&d, b.data, b.len), 0);
    assert_int_equal(proto_decoder_next(&d, &got), 1);
    assert_int_equal(got.body.len, big);
    proto_decoder_done(&d);
    proto_buf_done(&b);
    free(body);
}

/* Cut a valid stream at every point: the decoder waits (never a false message) and reports the
 * leftover as pending; proto_recv turns that into -EBADMSG at end of file. */
static void test_truncated(void **state)
{
    struct proto_buf b = {};
    struct proto_msg m = sample_invoke(), got;
    encode(&m, &b);
    for (size_t cut = 1; cut < b.len; cut++) {
        struct proto_decoder d;
        proto_decoder_init(&d, 0);
        assert_int_equal(proto_decoder_feed(&d, b.data, cut), 0);
        assert_int_equal(proto_decoder_next(&d, &got), 0);
        assert_true(proto_decoder_pending(&d));
        proto_decoder_done(&d);
    }

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(write(sv[0], b.data, b.len - 3), (ssize_t)(b.len - 3));
    close(sv[0]);
    struct proto_decoder d;
    proto_decoder_init(&d, 0);
    assert_int_equal(proto_recv(sv[1], &d, &got), -EBADMSG);
    proto_decoder_done(&d);
    close(sv[1]);

    /* A clean end of file after whole frames is 0. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(write(sv[0], b.data, b.len), (ssize_t)b.len);
    close(sv[0]);
    proto_decoder_init(&d, 0);
    assert_int_equal(proto_recv(sv[1], &d, &got), 1);
    check_invoke(&got);
    assert_int_equal(proto_recv(sv[1], &d, &got), 0);
    proto_decoder_done(&d);
    close(sv[1]);
    proto_buf_done(&b);
}

static unsigned rand_byte(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0xff;
}

/* Random bytes, and valid frames with random bytes flipped: each ends in a message, a clean
 * error or a wait for more, within the bytes given (no crash, no hang, no overread under ASan). */
static void test_fuzz(void **state)
{
    uint32_t seed = 12345;
#define RAND() rand_byte(&seed)
    struct proto_buf b = {};
    struct proto_msg m = sample_invoke();
    encode(&m, &b);
    for (int round = 0; round < 5000; round++) {
        char buf[256];
        size_t len;
        if (round % 2) {
            len = RAND() % sizeof(buf);
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)RAND();
            if (len >= 2 && round % 4 == 1) {
                buf[0] = 'I';
                buf[1] = 1;
            }
        } else {
            len = b.len < sizeof(buf) ? b.len : sizeof(buf);
            memcpy(buf, b.data, len);
            for (int k = 0; k < 2; k++) {
                size_t at = RAND() % len;
                buf[at] = (char)RAND();
            }
        }
        struct proto_decoder d;
        struct proto_msg got;
        proto_decoder_init(&d, 4096);
        assert_int_equal(proto_decoder_feed(&d, buf, len), 0);
        int r, n = 0;
        while ((r = proto_decoder_next(&d, &got)) == 1)
            assert_true(++n < 100);
        assert_true(r == 0 || r == -EBADMSG || r == -EMSGSIZE);
        proto_decoder_done(&d);
    }
    proto_buf_done(&b);
}

/* A 6 MB body each way over a non-blocking socketpair, through proto_buf_flush and
 * proto_decoder_read, as the controller's loop does it. */
static void test_big_body_nonblocking(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    size_t len = PROTO_DEFAULT_MAX_BODY;
    char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)(i * 31 + 7);
    struct proto_msg m = {.type = PROTO_INVOKE, .id = proto_str("big"), .body = {body, len}};
    struct proto_buf out = {};
    encode(&m, &out);
    m.id = proto_str("small");
    m.body = proto_str("x");
    encode(&m, &out);

    struct proto_decoder d;
    struct proto_msg got;
    proto_decoder_init(&d, 0);
    int seen = 0;
    while (seen < 2) {
        int r = proto_buf_flush(&out, sv[0]);
        assert_true(r == 0 || r == -EAGAIN);
        ssize_t n = proto_decoder_read(&d, sv[1]);
        assert_true(n > 0 || n == -EAGAIN);
        while ((r = proto_decoder_next(&d, &got)) == 1) {
            if (seen++ == 0) {
                assert_bytes_str(got.id, "big");
                assert_int_equal(got.body.len, len);
                assert_memory_equal(got.body.data, body, len);
            } else {
                assert_bytes_str(got.id, "small");
                assert_bytes_str(got.body, "x");
            }
        }
        assert_int_equal(r, 0);
    }
    assert_true(proto_buf_empty(&out));
    assert_int_equal(proto_decoder_read(&d, sv[1]), -EAGAIN);
    proto_decoder_done(&d);
    proto_buf_done(&out);
    free(body);
    close(sv[0]);
    close(sv[1]);
}

static const char *env_get(char **env, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (char **e = env; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
            assert_null(found); /* never twice */
            found = *e + n + 1;
        }
    return found;
}

/* The exec runtime's event lines, read as the controller reads an EVENT_JSON frame: the EVENT
 * frame each stands for, and the lines that are no event refused. */
static void test_event_line(void **state)
{
    static const struct {
        const char *line, *type, *body, *content_type;
    } good[] = {
        {"{\"type\": \"a.b\", \"data\": {\"n\": [1, 2]}}", "a.b", "{\"n\":[1,2]}",
         "application/json"},
        {"{\"type\": \"a.b\", \"data\": \"hi\"}", "a.b", "hi", "text/plain; charset=utf-8"},
        {"{\"type\": \"a.b\", \"data\": 7, \"datacontenttype\": \"text/x-n\"}", "a.b", "7",
         "text/x-n"},
        {"  {\"type\": \"a.b\"}  ", "a.b", "", ""},
    };
    static const char *const bad[] = {
        "not json",      "",           "{\"data\": 1}",      "{\"type\": \"\"}",
        "{\"type\": 5}", "[\"type\"]", "{\"type\": \"a.b\"", "\"type\"",
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        struct proto_msg frame = {.type = PROTO_EVENT_JSON,
                                  .id = proto_str("a1b2"),
                                  .body = proto_str(good[i].line)},
                         e;
        struct event_line hold;
        assert_int_equal(event_line_read(&frame, &e, &hold), 0);
        assert_int_equal(e.type, PROTO_EVENT);
        assert_bytes_str(e.id, "a1b2");
        assert_bytes_str(e.event_type, good[i].type);
        assert_bytes_str(e.body, good[i].body);
        assert_bytes_str(e.content_type, good[i].content_type);
        event_line_done(&hold);
    }
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct proto_msg frame = {.type = PROTO_EVENT_JSON,
                                  .id = proto_str("a1b2"),
                                  .body = proto_str(bad[i])},
                         e;
        struct event_line hold;
        assert_int_equal(event_line_read(&frame, &e, &hold), -EINVAL);
        event_line_done(&hold);
    }
}

static void test_env(void **state)
{
    char *user[] = {"GREETING=hi", "PATH=/opt/bin", NULL};
    struct proto_function_config c = {.name = "hello",
                                      .version = "3",
                                      .handler = "app.handler",
                                      .memory_mb = 256,
                                      .timeout_ms = 3000,
                                      .user_env = user};
    char **env;
    struct ig_error err = {};
    assert_int_equal(proto_build_env(&c, &env, &err), 0);
    assert_string_equal(env_get(env, "GREETING"), "hi");
    assert_string_equal(env_get(env, "PATH"), "/opt/bin");
    assert_string_equal(env_get(env, "IGNIS_RUNTIME_FD"), "3");
    assert_string_equal(env_get(env, "_HANDLER"), "app.handler");
    assert_string_equal(env_get(env, "LAMBDA_TASK_ROOT"), "/var/task");
    assert_string_equal(env_get(env, "AWS_LAMBDA_FUNCTION_NAME"), "hello");
    assert_string_equal(env_get(env, "AWS_LAMBDA_FUNCTION_VERSION"), "3");
    assert_string_equal(env_get(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "256");
    assert_string_equal(env_get(env, "IGNIS_MAX_PAYLOAD"), "6291456");
    assert_string_equal(env_get(env, "HOME"), "/tmp");
    proto_env_free(env);

    char *bad[] = {"_HANDLER=x.y", NULL};
    c.user_env = bad;
    assert_int_equal(proto_build_env(&c, &env, &err), -EINVAL);
    assert_non_null(strstr(err.message, "_HANDLER"));
    char *bad2[] = {"NOEQUALS", NULL};
    c.user_env = bad2;
    ig_error_clear(&err);
    assert_int_equal(proto_build_env(&c, &env, &err), -EINVAL);
    assert_non_null(strstr(err.message, "NOEQUALS"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invoke_round_trip),
        cmocka_unit_test(test_all_types_byte_by_byte),
        cmocka_unit_test(test_event_line),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_garbage_frames),
        cmocka_unit_test(test_oversized_reported_from_header),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_big_body_nonblocking),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
