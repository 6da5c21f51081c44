/* The runtimes end to end over the runtime protocol: each runtime's hello in both lifecycles
 * (a fresh runtime per invocation, and one runtime serving several in a row); errors from each
 * runtime come back with type and message (a Python exception, a Node rejection, an exec
 * non-zero exit, a provided bootstrap posting to /error, bootstraps dying or failing in init);
 * AWS's tutorial bootstrap and Lambda's own example handlers run unmodified; events emitted by
 * functions reach the controller's side. The runtimes run from the built images
 * ($IGNIS_IMAGES_DIR) in real containers (container.h, as root), driven by rtdriver. */
#include "harness.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/wait.h>

#include "rtdriver.h"

#define READY_TIMEOUT_MS  20000
#define INVOKE_TIMEOUT_MS 20000

static struct tc_env tenv;

static int setup(void **state)
{
    harness_require_root();
    if (!rt_images_dir())
        harness_skip("IGNIS_IMAGES_DIR is not set: run through meson test");
    char path[4096];
    snprintf(path, sizeof(path), "%s/python3/ignis/bootstrap", rt_images_dir());
    if (access(path, X_OK) < 0)
        harness_skip("the runtime images are not built (scripts/build-images)");
    return tc_env_setup(&tenv);
}

/* Nothing may be left: no container process, mount or cgroup. */
static int teardown(void **state)
{
    return tc_env_teardown(&tenv);
}

static void example(const char *name, char *buf, size_t size)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "runtime-images/examples/%s", name);
    rt_source_path(rel, buf, size);
}

static void fixture(const char *name, char *buf, size_t size)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/runtimes/%s", name);
    rt_source_path(rel, buf, size);
}

static void start(struct rt_proc *p, const char *runtime, const char *bundle, const char *handler,
                  struct rt_reply *ready)
{
    struct rt_options o = {
        .runtime = runtime, .bundle = bundle, .handler = handler, .timeout_ms = 3000, .env = &tenv};
    assert_int_equal(rt_start(p, &o), 0);
    assert_int_equal(rt_wait_ready(p, READY_TIMEOUT_MS, ready), 0);
}

static void start_ready(struct rt_proc *p, const char *runtime, const char *bundle,
                        const char *handler)
{
    struct rt_reply ready;
    start(p, runtime, bundle, handler, &ready);
    if (ready.type != PROTO_READY)
        fail_msg("%s did not become ready: %s: %s", runtime, ready.error_type, ready.message);
    rt_reply_clear(&ready);
}

static void invoke(struct rt_proc *p, const char *id, const char *body, struct rt_reply *ret)
{
    const char *headers[] = {"invoked-function-arn", "arn:aws:lambda:local:000000000000:function:t",
                             NULL};
    assert_int_equal(rt_invoke(p, id, body, strlen(body), headers, INVOKE_TIMEOUT_MS, ret), 0);
}

static void assert_result_contains(const struct rt_reply *r, const char *want)
{
    if (r->type != PROTO_RESULT)
        fail_msg("expected a result, got %s: %s: %s", proto_type_name(r->type), r->error_type,
                 r->message);
    if (!strstr(r->body, want))
        fail_msg("result %s does not contain %s", r->body, want);
}

static void assert_error(const struct rt_reply *r, const char *type, const char *message_part)
{
    if (r->type != PROTO_ERROR && r->type != PROTO_INIT_ERROR)
        fail_msg("expected an error, got %s: %s", proto_type_name(r->type), r->body);
    assert_string_equal(r->error_type, type);
    if (!strstr(r->message, message_part))
        fail_msg("error message \"%s\" does not contain \"%s\"", r->message, message_part);
}

/* Runs hello once per fresh runtime (reuse false), three times, then five invocations in one
 * runtime (reuse true); returns nothing, fails on any mismatch. */
static void hello_both_lifecycles(const char *runtime, const char *bundle, const char *handler,
                                  const char *body, const char *want)
{
    for (int i = 0; i < 3; i++) {
        struct rt_proc p;
        struct rt_reply r;
        char id[32];
        snprintf(id, sizeof(id), "fresh-%d", i);
        start_ready(&p, runtime, bundle, handler);
        invoke(&p, id, body, &r);
        assert_result_contains(&r, want);
        assert_string_equal(r.id, id);
        rt_reply_clear(&r);
        int status = rt_stop(&p);
        assert_true(WIFEXITED(status) || WIFSIGNALED(status));
    }
    struct rt_proc p;
    start_ready(&p, runtime, bundle, handler);
    for (int i = 0; i < 5; i++) {
        struct rt_reply r;
        char id[32];
        snprintf(id, sizeof(id), "warm-%d", i);
        invoke(&p, id, body, &r);
        assert_result_contains(&r, want);
        rt_reply_clear(&r);
    }
    rt_stop(&p);
}

static void test_exec_hello(void **state)
{
    char b[4096];
    example("hello-exec", b, sizeof(b));
    hello_both_lifecycles("exec", b, "hello.sh", "Ada", "Hello, Ada! (invocation ");
}

static void test_python_hello(void **state)
{
    char b[4096];
    example("hello-python", b, sizeof(b));
    hello_both_lifecycles("python3", b, "app.handler", "{\"name\": \"Ada\"}", "\"Hello, Ada!\"");
}

static void test_node_hello(void **state)
{
    char b[4096];
    example("hello-node", b, sizeof(b));
    hello_both_lifecycles("node", b, "index.handler", "{\"name\": \"Ada\"}", "\"Hello, Ada!\"");
    example("hello-node-esm", b, sizeof(b));
    hello_both_lifecycles("node", b, "index.handler", "{}", "Hello from an ES module!");
    fixture("node-esm-pkg", b, sizeof(b));
    hello_both_lifecycles("node", b, "app.handler", "{}",
                          "{\"esm\":true,\"typeofHostname\":\"string\"}");
}

/* The bootstrap of AWS's custom-runtime tutorial (bash + curl), unmodified. */
static void test_provided_tutorial_bootstrap(void **state)
{
    char b[4096];
    example("hello-provided", b, sizeof(b));
    hello_both_lifecycles("provided", b, "function.handler", "{\"name\": \"Ada\"}",
                          "Echoing request: '{\"name\": \"Ada\"}'");
}

/* The Lambda console's default handlers for Python and Node.js, unmodified. */
static void test_lambda_examples(void **state)
{
    char b[4096];
    const char *want = "{\"statusCode\": 200, \"body\": \"\\\"Hello from Lambda!\\\"\"}";
    example("lambda-python", b, sizeof(b));
    hello_both_lifecycles("python3", b, "lambda_function.lambda_handler", "{}", want);
    example("lambda-node", b, sizeof(b));
    hello_both_lifecycles("node", b, "index.handler", "{\"key1\": \"value1\"}",
                          "{\"statusCode\":200,\"body\":\"\\\"Hello from Lambda!\\\"\"}");
}

/* Lambda's context, the once-per-container import, and events in JSON and not. */
static void test_python_context(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    example("hello-python", b, sizeof(b));
    start_ready(&p, "python3", b, "app.handler");
    invoke(&p, "ctx-1", "{\"name\": \"Ada\"}", &r);
    cJSON *o = cJSON_Parse(r.body);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "request_id")->valuestring, "ctx-1");
    assert_string_equal(cJSON_GetObjectItem(o, "function_name")->valuestring, "test");
    assert_string_equal(cJSON_GetObjectItem(o, "memory_limit_in_mb")->valuestring, "128");
    assert_string_equal(cJSON_GetObjectItem(o, "function_version")->valuestring, "1");
    assert_string_equal(cJSON_GetObjectItem(o, "invoked_function_arn")->valuestring,
                        "arn:aws:lambda:local:000000000000:function:t");
    assert_string_equal(cJSON_GetObjectItem(o, "log_group_name")->valuestring, "/aws/lambda/test");
    assert_string_equal(cJSON_GetObjectItem(o, "log_stream_name")->valuestring, "ignis/test");
    double remaining = cJSON_GetObjectItem(o, "remaining_ms")->valuedouble;
    assert_true(remaining > 0 && remaining <= INVOKE_TIMEOUT_MS);
    double started = cJSON_GetObjectItem(o, "container_started")->valuedouble;
    assert_string_equal(r.content_type, "application/json");
    cJSON_Delete(o);
    rt_reply_clear(&r);
    /* Not JSON: handed over as a string, as the handler's isinstance check shows. */
    invoke(&p, "ctx-2", "plain text", &r);
    assert_result_contains(&r, "\"Hello, world!\"");
    o = cJSON_Parse(r.body);
    /* Same module instance: imported once per container. */
    assert_true(cJSON_GetObjectItem(o, "container_started")->valuedouble == started);
    cJSON_Delete(o);
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_node_context(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    example("hello-node", b, sizeof(b));
    start_ready(&p, "node", b, "index.handler");
    invoke(&p, "nctx-1", "{}", &r);
    cJSON *o = cJSON_Parse(r.body);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "requestId")->valuestring, "nctx-1");
    assert_string_equal(cJSON_GetObjectItem(o, "functionName")->valuestring, "test");
    assert_string_equal(cJSON_GetObjectItem(o, "memoryLimitInMB")->valuestring, "128");
    assert_string_equal(cJSON_GetObjectItem(o, "functionVersion")->valuestring, "1");
    assert_string_equal(cJSON_GetObjectItem(o, "invokedFunctionArn")->valuestring,
                        "arn:aws:lambda:local:000000000000:function:t");
    assert_string_equal(cJSON_GetObjectItem(o, "logGroupName")->valuestring, "/aws/lambda/test");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "callbackWaitsForEmptyEventLoop")));
    assert_true(cJSON_GetObjectItem(o, "remainingMs")->valuedouble > 0);
    cJSON_Delete(o);
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void assert_event(const struct rt_reply *r, size_t i, const char *type, const char *data,
                         const char *content_type)
{
    assert_true(i < r->nevents);
    assert_string_equal(r->events[i].type, type);
    assert_string_equal(r->events[i].data, data);
    assert_string_equal(r->events[i].content_type, content_type);
}

static void test_node_event_loop_semantics(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("node-waits", b, sizeof(b));
    /* Waiting: the result comes only after the 100 ms timer ran (and emitted). */
    start_ready(&p, "node", b, "index.waits");
    invoke(&p, "w-1", "{}", &r);
    assert_result_contains(&r, "\"done waiting\"");
    assert_int_equal(r.nevents, 1);
    assert_event(&r, 0, "com.example.timer", "fired", "text/plain; charset=utf-8");
    rt_reply_clear(&r);
    rt_stop(&p);
    /* Not waiting: the result comes at once, long before the 60 s timer (the invocation's own
     * wait is 20 s + 10 s, so a runtime that waited fails here). */
    start_ready(&p, "node", b, "index.noWait");
    invoke(&p, "w-2", "{}", &r);
    assert_result_contains(&r, "\"done at once\"");
    rt_reply_clear(&r);
    rt_stop(&p);
    start_ready(&p, "node", b, "index.silent");
    invoke(&p, "w-3", "{}", &r);
    assert_int_equal(r.type, PROTO_RESULT);
    assert_string_equal(r.body, "null");
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_python_exception(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("python-error", b, sizeof(b));
    start_ready(&p, "python3", b, "app.handler");
    invoke(&p, "e-1", "{\"x\": 1}", &r);
    assert_error(&r, "ValueError", "bad input: {'x': 1}");
    assert_non_null(strstr(r.trace, "app.py"));
    assert_non_null(strstr(r.trace, "in helper"));
    assert_null(strstr(r.trace, "bootstrap")); /* the runtime's own frames are cut, as Lambda */
    rt_reply_clear(&r);
    /* The runtime carries on after a handler's exception. */
    invoke(&p, "e-2", "{}", &r);
    assert_error(&r, "ValueError", "bad input: {}");
    rt_reply_clear(&r);
    rt_stop(&p);

    /* Lambda's marshalling: what JSON cannot hold is Runtime.MarshalError; Decimal is a number;
     * bytes go out as they are. */
    start_ready(&p, "python3", b, "app.unserializable");
    invoke(&p, "m-1", "{}", &r);
    assert_error(&r, "Runtime.MarshalError", "Unable to marshal response: Object of type object");
    rt_reply_clear(&r);
    rt_stop(&p);
    start_ready(&p, "python3", b, "app.decimals");
    invoke(&p, "m-2", "{}", &r);
    assert_result_contains(&r, "{\"price\": 1.5, \"count\": 3, \"raw\": true}");
    rt_reply_clear(&r);
    rt_stop(&p);
    start_ready(&p, "python3", b, "app.raw_bytes");
    invoke(&p, "m-3", "{}", &r);
    assert_int_equal(r.type, PROTO_RESULT);
    assert_int_equal(r.body_len, 8);
    assert_memory_equal(r.body, "\0binary\xff", 8);
    assert_string_equal(r.content_type, "application/unknown");
    rt_reply_clear(&r);
    rt_stop(&p);
    /* A body declared as JSON that is not JSON. */
    start_ready(&p, "python3", b, "app.handler");
    const char *hdrs[] = {"content-type", "application/json", NULL};
    assert_int_equal(rt_invoke(&p, "m-4", "{oops", 5, hdrs, INVOKE_TIMEOUT_MS, &r), 0);
    assert_error(&r, "Runtime.UnmarshalError", "Unable to unmarshal input");
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_python_init_error(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("python-init-error", b, sizeof(b));
    start(&p, "python3", b, "app.handler", &r);
    assert_int_equal(r.type, PROTO_INIT_ERROR);
    assert_error(&r, "Runtime.ImportModuleError",
                 "Unable to import module 'app': No module named 'no_such_module_anywhere'");
    rt_reply_clear(&r);
    int status = rt_stop(&p);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);

    /* A handler that is not there, and a malformed handler name. */
    start(&p, "python3", b, "nomodule", &r);
    assert_error(&r, "Runtime.MalformedHandlerName", "Bad handler 'nomodule'");
    rt_reply_clear(&r);
    rt_stop(&p);
    example("hello-python", b, sizeof(b));
    start(&p, "python3", b, "app.nope", &r);
    assert_error(&r, "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'");
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_node_rejection(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("node-reject", b, sizeof(b));
    start_ready(&p, "node", b, "index.handler");
    invoke(&p, "n-1", "{}", &r);
    assert_error(&r, "TypeError", "rejected on purpose");
    assert_non_null(strstr(r.trace, "index.js"));
    rt_reply_clear(&r);
    invoke(&p, "n-2", "{\"sync\": true}", &r);
    assert_error(&r, "RangeError", "thrown synchronously");
    rt_reply_clear(&r);
    rt_stop(&p);

    start_ready(&p, "node", b, "index.callbackError");
    invoke(&p, "n-3", "{}", &r);
    assert_error(&r, "Error", "callback error");
    rt_reply_clear(&r);
    rt_stop(&p);

    start_ready(&p, "node", b, "index.rejectString");
    invoke(&p, "n-4", "{}", &r);
    assert_error(&r, "string", "just a string");
    rt_reply_clear(&r);
    rt_stop(&p);

    start(&p, "node", b, "index.missing", &r);
    assert_int_equal(r.type, PROTO_INIT_ERROR);
    assert_error(&r, "Runtime.HandlerNotFound", "index.missing is undefined or not exported");
    rt_reply_clear(&r);
    rt_stop(&p);
    start(&p, "node", b, "nofile.handler", &r);
    assert_error(&r, "Runtime.ImportModuleError", "Cannot find module 'nofile'");
    rt_reply_clear(&r);
    rt_stop(&p);
}

/* A container sees its image and its bundle, as uid 65534, and nothing of the host. */
static void test_container_view(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("exec-look", b, sizeof(b));
    start_ready(&p, "exec", b, "look.sh");
    invoke(&p, "look-1", "", &r);
    assert_result_contains(&r, "root: /bin /dev /etc /ignis /lib");
    assert_result_contains(&r, "uid: 65534\n");
    assert_result_contains(&r, "bundle read-only\ntmp writable\ncwd: /var/task\n");
    assert_null(strstr(r.body, "host file visible"));
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_exec_nonzero_exit(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("exec-fail", b, sizeof(b));
    start_ready(&p, "exec", b, "fail.sh");
    invoke(&p, "x-1", "input", &r);
    assert_error(&r, "Function.ExitError", "something broke: disk on fire");
    assert_non_null(strstr(r.message, "first line of noise")); /* the tail: both lines */
    assert_string_equal(r.trace, "exit status 3");
    rt_reply_clear(&r);
    rt_stop(&p);

    start(&p, "exec", b, "missing.sh", &r);
    assert_int_equal(r.type, PROTO_INIT_ERROR);
    assert_error(&r, "Runtime.InvalidEntrypoint", "missing.sh");
    rt_reply_clear(&r);
    rt_stop(&p);
}

/* 5 MB in and out of an exec function; past the limit, Lambda's ResponseSizeTooLarge. */
static void test_exec_big_bodies_and_limits(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    size_t len = 5u * 1024 * 1024;
    char *body = malloc(PROTO_DEFAULT_MAX_BODY + 2);
    for (size_t i = 0; i < PROTO_DEFAULT_MAX_BODY + 1; i++)
        body[i] = (char)('a' + i % 26);
    fixture("exec-cat", b, sizeof(b));
    start_ready(&p, "exec", b, "cat.sh");
    assert_int_equal(rt_invoke(&p, "big-1", body, len, NULL, INVOKE_TIMEOUT_MS, &r), 0);
    assert_int_equal(r.type, PROTO_RESULT);
    assert_int_equal(r.body_len, len);
    assert_memory_equal(r.body, body, len);
    rt_reply_clear(&r);
    assert_int_equal(
        rt_invoke(&p, "big-2", body, PROTO_DEFAULT_MAX_BODY + 1, NULL, INVOKE_TIMEOUT_MS, &r), 0);
    assert_error(&r, "Function.ResponseSizeTooLarge", "6291456 bytes");
    rt_reply_clear(&r);
    rt_stop(&p);
    free(body);

    /* The watchdog ends a handler at its deadline. */
    fixture("exec-slow", b, sizeof(b));
    start_ready(&p, "exec", b, "slow.sh");
    assert_int_equal(rt_invoke(&p, "slow-1", "", 0, NULL, 300, &r), 0);
    assert_error(&r, "Sandbox.Timedout", "Task timed out after 3.00 seconds");
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_provided_error_posts(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("provided-error", b, sizeof(b));
    start_ready(&p, "provided", b, "ignored.handler");
    invoke(&p, "p-1", "{}", &r);
    assert_error(&r, "Custom.BodyError", "it failed");
    assert_string_equal(r.trace, "at a\nat b\n");
    rt_reply_clear(&r);
    invoke(&p, "p-2", "{}", &r);
    assert_error(&r, "Custom.TraceError", "no header");
    assert_string_equal(r.trace, "frame 1\n");
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_provided_init_failures(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;
    fixture("provided-init-crash", b, sizeof(b));
    start(&p, "provided", b, "x.y", &r);
    assert_int_equal(r.type, PROTO_INIT_ERROR);
    assert_error(&r, "Runtime.ExitError", "Runtime exited with error: exit status 7");
    rt_reply_clear(&r);
    rt_stop(&p);

    fixture("provided-init-error", b, sizeof(b));
    start(&p, "provided", b, "x.y", &r);
    assert_int_equal(r.type, PROTO_INIT_ERROR);
    assert_error(&r, "Runtime.ConfigError", "missing configuration");
    rt_reply_clear(&r);
    rt_stop(&p);

    /* No bootstrap in the bundle: Lambda's message. */
    fixture("python-error", b, sizeof(b));
    start(&p, "provided", b, "x.y", &r);
    assert_error(&r, "Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s)");
    rt_reply_clear(&r);
    rt_stop(&p);
}

static void test_events(void **state)
{
    char b[4096];
    struct rt_proc p;
    struct rt_reply r;

    example("emit-event", b, sizeof(b));
    start_ready(&p, "python3", b, "emit.handler");
    invoke(&p, "ev-1", "{\"name\": \"Ada\"}", &r);
    assert_result_contains(&r, "\"emitted\": 2");
    assert_int_equal(r.nevents, 2);
    assert_event(&r, 0, "com.example.greeting", "{\"hello\": \"Ada\"}", "application/json");
    assert_event(&r, 1, "com.example.note", "plain text data", "text/plain; charset=utf-8");
    rt_reply_clear(&r);
    rt_stop(&p);

    fixture("node-emit", b, sizeof(b));
    start_ready(&p, "node", b, "index.handler");
    invoke(&p, "ev-2", "{}", &r);
    assert_result_contains(&r, "\"emitted\"");
    assert_int_equal(r.nevents, 2);
    assert_event(&r, 0, "com.example.node", "{\"n\":1}", "application/json");
    assert_string_equal(r.events[1].type, "com.example.raw");
    assert_int_equal(r.events[1].data_len, 3);
    assert_memory_equal(r.events[1].data, "\0\1\2", 3);
    assert_string_equal(r.events[1].content_type, "application/x-bytes");
    rt_reply_clear(&r);
    rt_stop(&p);

    fixture("exec-emit", b, sizeof(b));
    start_ready(&p, "exec", b, "emit.sh");
    invoke(&p, "ev-3", "", &r);
    assert_result_contains(&r, "done");
    assert_int_equal(r.nevents, 2); /* the line that is not JSON is dropped */
    assert_event(&r, 0, "com.example.exec", "{\"from\":\"exec\"}", "application/json");
    assert_event(&r, 1, "com.example.text", "hi", "text/x-greeting");
    rt_reply_clear(&r);
    rt_stop(&p);

    fixture("provided-emit", b, sizeof(b));
    start_ready(&p, "provided", b, "x.y");
    invoke(&p, "ev-4", "{}", &r);
    assert_result_contains(&r, "sent");
    assert_int_equal(r.nevents, 1);
    assert_event(&r, 0, "com.example.provided", "{\"from\": \"bash\"}", "application/json");
    rt_reply_clear(&r);
    rt_stop(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_hello),
        cmocka_unit_test(test_python_hello),
        cmocka_unit_test(test_node_hello),
        cmocka_unit_test(test_provided_tutorial_bootstrap),
        cmocka_unit_test(test_lambda_examples),
        cmocka_unit_test(test_python_context),
        cmocka_unit_test(test_node_context),
        cmocka_unit_test(test_node_event_loop_semantics),
        cmocka_unit_test(test_python_exception),
        cmocka_unit_test(test_python_init_error),
        cmocka_unit_test(test_node_rejection),
        cmocka_unit_test(test_container_view),
        cmocka_unit_test(test_exec_nonzero_exit),
        cmocka_unit_test(test_exec_big_bodies_and_limits),
        cmocka_unit_test(test_provided_error_posts),
        cmocka_unit_test(test_provided_init_failures),
        cmocka_unit_test(test_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
