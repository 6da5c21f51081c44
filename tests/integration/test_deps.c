/* Dependencies at push time, end to end through the CLI, a real ignisd and real containers: a
 * python3 function whose requirements.txt is installed offline from a wheel the test writes
 * (PIP_NO_INDEX, PIP_FIND_LINKS: the user's pip configuration, untouched by ignis), imported by
 * the handler; a failing install fails the push with pip's message and pushes nothing; --no-deps
 * pushes the directory as it is; a node function with a dependency from npm's registry, without
 * and with a lockfile (skipped when the registry cannot be reached, unless IGNIS_MUST_WORK=1).
 * And the daemon's refusal of native modules its images cannot load: a CPython extension of
 * another Python (judged by name), a Node.js addon of another NODE_MODULE_VERSION (a real
 * shared object the test compiles), while abi3 extensions and the image's own addons are
 * accepted and run. */
#include "harness.h"

#include <archive.h>
#include <archive_entry.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "functions/bundle.h"

static struct ignisd_proc daemon_proc;

static int setup(void **state)
{
    harness_require_root();
    return harness_start(&daemon_proc, NULL);
}

static int teardown(void **state)
{
    return harness_finish(&daemon_proc);
}

/* Writes DIR/REL (its directories made), LEN bytes of data. */
static void put_bytes(const char *dir, const char *rel, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    assert_int_equal(mkdir_p(path, 0755), 0);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void put(const char *dir, const char *rel, const char *text)
{
    put_bytes(dir, rel, text, strlen(text));
}

/* A fresh directory harness_fixtures/LABEL. */
static const char *fresh_dir(const char *label)
{
    static char dirs[4][512];
    static unsigned next;
    char *dir = dirs[next++ % ARRAY_SIZE(dirs)];
    snprintf(dir, 512, "%s/%s", harness_fixtures(&daemon_proc), label);
    rm_rf(dir);
    assert_int_equal(mkdir_p(dir, 0755), 0);
    return dir;
}

/* A function directory: function.json for NAME, RUNTIME and HANDLER, nothing else. */
static const char *function_dir(const char *name, const char *runtime, const char *handler)
{
    const char *dir = fresh_dir(name);
    char json[512];
    snprintf(json, sizeof(json),
             "{\"name\": \"%s\", \"runtime\": \"%s\", \"handler\": \"%s\", \"timeout_ms\": 10000}",
             name, runtime, handler);
    put(dir, "function.json", json);
    return dir;
}

/* A pure-Python wheel, greetlib 1.0, written as pip expects one (PEP 427): the package, and
 * its .dist-info with METADATA, WHEEL and RECORD. */
static void write_wheel(const char *dir)
{
    static const char *const files[][2] = {
        {"greetlib/__init__.py", "def hello(name):\n    return 'hello from greetlib, ' + name\n"},
        {"greetlib-1.0.dist-info/METADATA",
         "Metadata-Version: 2.1\nName: greetlib\nVersion: 1.0\n"},
        {"greetlib-1.0.dist-info/WHEEL",
         "Wheel-Version: 1.0\nGenerator: test_deps\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
        {"greetlib-1.0.dist-info/RECORD",
         "greetlib/__init__.py,,\ngreetlib-1.0.dist-info/METADATA,,\n"
         "greetlib-1.0.dist-info/WHEEL,,\ngreetlib-1.0.dist-info/RECORD,,\n"},
    };
    char path[1024];
    snprintf(path, sizeof(path), "%s/greetlib-1.0-py3-none-any.whl", dir);
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        struct archive_entry *e = archive_entry_new();
        size_t len = strlen(files[i][1]);
        archive_entry_set_pathname(e, files[i][0]);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)len);
        archive_entry_set_mtime(e, 1000000000, 0);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, files[i][1], len), (la_ssize_t)len);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* Invokes NAME with an empty JSON event; it must succeed. Returns the body (free it). */
static char *invoke_ok(const char *name)
{
    struct client_response r;
    long status = harness_invoke(&daemon_proc, name, "{}", NULL, &r);
    if (status != 200)
        fail_msg("%s: %ld %s", name, status, r.body);
    char *body = strdup(r.body);
    client_response_clear(&r);
    return body;
}

static long function_status(const char *name)
{
    char path[256];
    struct client_response r;
    snprintf(path, sizeof(path), "/v1/functions/%s", name);
    assert_int_equal(harness_request(&daemon_proc, "GET", path, NULL, NULL, 0, &r), 0);
    long status = r.status;
    client_response_clear(&r);
    return status;
}

/* Sets pip's offline configuration for the CLI's children, as a user would in their shell. */
static void pip_offline(const char *wheels)
{
    setenv("PIP_NO_INDEX", "1", 1);
    setenv("PIP_FIND_LINKS", wheels, 1);
}

static void test_python_requirements_offline(void **state)
{
    const char *wheels = fresh_dir("wheels");
    write_wheel(wheels);
    pip_offline(wheels);
    const char *dir = function_dir("py-deps", "python3", "main.handler");
    put(dir, "requirements.txt", "greetlib==1.0\n");
    put(dir, "main.py",
        "import greetlib\n\ndef handler(event, context):\n    return greetlib.hello('ignis')\n");

    char *out = NULL, *err = NULL;
    int rc = harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL);
    if (rc != 0)
        fail_msg("push: %s%s", out, err);
    assert_non_null(strstr(out, "py-deps version 1 pushed"));
    free(out);
    free(err);
    char *body = invoke_ok("py-deps");
    assert_string_equal(body, "\"hello from greetlib, ignis\"");
    free(body);

    /* The user's directory is as it was: the install went into a copy. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/greetlib", dir);
    assert_int_equal(access(path, F_OK), -1);

    /* Installed again from the same inputs, the bundle is the same bytes: no new version. */
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL), 0);
    if (!strstr(out, "py-deps version 1 unchanged"))
        fail_msg("second push: %s%s", out, err);
    free(out);
    free(err);
}

/* A python3 function without requirements.txt is compiled too: its container imports the
 * handler's bytecode from the read-only bundle (it would compile the source in every container
 * otherwise), and pushing it again makes no new version. The user's own files keep their times:
 * main.py's is set after the push starts (a file saved in the push's second was restamped at
 * one push and not the next, which made a new version of an unchanged function). */
static void test_python_bytecode_without_requirements(void **state)
{
    const char *dir = function_dir("py-bytecode", "python3", "main.handler");
    put(dir, "main.py",
        "import importlib.util, os, sys\n\ndef handler(event, context):\n"
        "    cached = importlib.util.cache_from_source(__file__)\n"
        "    return [__file__, os.path.exists(cached), sys.implementation.cache_tag,\n"
        "            int(os.stat(__file__).st_mtime)]\n");
    char main_py[1024];
    snprintf(main_py, sizeof(main_py), "%s/main.py", dir);
    time_t later = time(NULL) + 86400;
    const struct timespec times[2] = {{.tv_sec = later}, {.tv_sec = later}};
    assert_int_equal(utimensat(AT_FDCWD, main_py, times, 0), 0);
    char *out = NULL, *err = NULL;
    for (int i = 0; i < 2; i++) {
        int rc = harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL);
        if (rc != 0 || !strstr(out, i == 0 ? "py-bytecode version 1 pushed"
                                           : "py-bytecode version 1 unchanged"))
            fail_msg("push %d: %s%s", i, out, err);
        free(out);
        free(err);
    }
    char *body = invoke_ok("py-bytecode"), want[128];
    snprintf(want, sizeof(want), "[\"/var/task/main.py\", true, \"cpython-311\", %lld]",
             (long long)later);
    assert_string_equal(body, want);
    free(body);
    /* The user's directory has no bytecode: it was made in a copy. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/__pycache__", dir);
    assert_int_equal(access(path, F_OK), -1);
}

/* pip cannot find the package: the push fails with pip's own message, nothing is pushed, and
 * a deploy of a service holding the function stores nothing either. */
static void test_failing_install_pushes_nothing(void **state)
{
    const char *wheels = fresh_dir("wheels-empty");
    pip_offline(wheels);
    const char *dir = function_dir("py-missing", "python3", "main.handler");
    put(dir, "requirements.txt", "nosuchpkg==1.0\n");
    put(dir, "main.py", "def handler(event, context):\n    return 1\n");

    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL), 1);
    if (!strstr(err, "No matching distribution found for nosuchpkg") ||
        !strstr(err, "python3 -m pip install") || !strstr(err, "exit status"))
        fail_msg("push's stderr: %s", err);
    free(out);
    free(err);
    assert_int_equal(function_status("py-missing"), 404);

    const char *svc = fresh_dir("svc-missing");
    put(svc, "service.json", "{\"name\": \"svc-missing\", \"functions\": {\"py-missing\": {}}}");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp -r '%s' '%s/py-missing'", dir, svc);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "deploy", svc, NULL), 1);
    if (!strstr(err, "No matching distribution found for nosuchpkg"))
        fail_msg("deploy's stderr: %s", err);
    free(out);
    free(err);
    assert_int_equal(function_status("py-missing"), 404);
}

/* --no-deps: pip never runs (it would fail on this requirements.txt) and the bundle is the
 * directory as it is. */
static void test_no_deps(void **state)
{
    pip_offline(fresh_dir("wheels-none"));
    const char *dir = function_dir("py-nodeps", "python3", "main.handler");
    put(dir, "requirements.txt", "nosuchpkg==1.0\n");
    put(dir, "main.py",
        "import os\n\ndef handler(event, context):\n"
        "    return sorted(os.listdir(os.path.dirname(__file__)))\n");
    char *out = NULL, *err = NULL;
    int rc = harness_ignis(&daemon_proc, &out, &err, "push", dir, "--no-deps", NULL);
    if (rc != 0)
        fail_msg("push --no-deps: %s%s", out, err);
    free(out);
    free(err);
    char *body = invoke_ok("py-nodeps");
    assert_string_equal(body, "[\"function.json\", \"main.py\", \"requirements.txt\"]");
    free(body);
}

/* Whether npm's registry answers; otherwise the npm test is skipped (or fails, under
 * IGNIS_MUST_WORK=1). */
static bool npm_reachable(void)
{
    char *out = NULL, *err = NULL;
    char *argv[] = {"/usr/bin/env",      "npm", "view", "is-number@7.0.0", "version",
                    "--fetch-retries=0", NULL};
    int rc = harness_run(argv, &out, &err);
    bool ok = rc == 0 && out && strstr(out, "7.0.0");
    if (!ok) {
        const char *must = getenv("IGNIS_MUST_WORK");
        if (must && streq(must, "1"))
            fail_msg("IGNIS_MUST_WORK=1 forbids skipping: npm's registry cannot be reached "
                     "(npm view: %s)",
                     err ? err : "npm did not run");
        fprintf(stderr, "SKIP: npm's registry cannot be reached (npm view: %s)\n",
                err ? err : "npm did not run");
    }
    free(out);
    free(err);
    return ok;
}

#define NODE_HANDLER                                                                               \
    "const isNumber = require('is-number');\n"                                                     \
    "const { version } = require('is-number/package.json');\n"                                     \
    "exports.handler = async () => ({ five: isNumber(5), word: isNumber('x'), version });\n"

static void test_node_dependency_from_npm(void **state)
{
    if (!npm_reachable())
        skip();
    /* Without a lockfile: npm install resolves the range (7.0.0 is is-number's latest). */
    const char *dir = function_dir("node-deps", "node", "index.handler");
    put(dir, "package.json", "{\"dependencies\": {\"is-number\": \">=6.0.0\"}}");
    put(dir, "index.js", NODE_HANDLER);
    char *out = NULL, *err = NULL;
    int rc = harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL);
    if (rc != 0)
        fail_msg("push: %s%s", out, err);
    free(out);
    free(err);
    char *body = invoke_ok("node-deps");
    assert_string_equal(body, "{\"five\":true,\"word\":false,\"version\":\"7.0.0\"}");
    free(body);
    char path[1024];
    snprintf(path, sizeof(path), "%s/node_modules", dir);
    assert_int_equal(access(path, F_OK), -1);

    /* With a lockfile that pins 6.0.0 for the same range: npm ci installs what it says. The
     * lockfile is made by npm for an exact 6.0.0, then both files are given the range. */
    dir = function_dir("node-locked", "node", "index.handler");
    put(dir, "package.json", "{\"dependencies\": {\"is-number\": \"6.0.0\"}}");
    put(dir, "index.js", NODE_HANDLER);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && npm install --package-lock-only --no-audit --no-fund >&2 && "
             "sed -i 's/\"is-number\": \"6.0.0\"/\"is-number\": \">=6.0.0\"/' package-lock.json",
             dir);
    assert_int_equal(system(cmd), 0);
    put(dir, "package.json", "{\"dependencies\": {\"is-number\": \">=6.0.0\"}}");
    rc = harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL);
    if (rc != 0)
        fail_msg("push with a lockfile: %s%s", out, err);
    free(out);
    free(err);
    body = invoke_ok("node-locked");
    assert_string_equal(body, "{\"five\":true,\"word\":false,\"version\":\"6.0.0\"}");
    free(body);
}

/* PUT /v1/functions/NAME of dir packed as is; the status, and the error's code and message
 * into code and message (when not 2xx). */
static long put_bundle(const char *dir, const char *name, char *code, char *message, size_t size)
{
    char *data = NULL, path[256];
    size_t len;
    struct ig_error e = {};
    struct client_response r;
    assert_int_equal(bundle_pack_dir(dir, 1 << 26, &data, &len, &e), 0);
    snprintf(path, sizeof(path), "/v1/functions/%s", name);
    assert_int_equal(harness_request(&daemon_proc, "PUT", path, NULL, data, len, &r), 0);
    free(data);
    long status = r.status;
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *err = cJSON_GetObjectItem(j, "error");
    snprintf(code, size, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(err, "code")) ?: "");
    snprintf(message, size, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(err, "message")) ?: "");
    cJSON_Delete(j);
    client_response_clear(&r);
    return status;
}

/* Python extensions are judged by their file names (the content here is not even ELF). */
static void test_python_extension_abi(void **state)
{
    char code[512], message[512];
    const char *dir = function_dir("py-abi", "python3", "main.handler");
    put(dir, "main.py", "def handler(event, context):\n    return 'ran'\n");
    put(dir, "fastlib/_speedups.cpython-39-x86_64-linux-gnu.so", "not really a library");
    assert_int_equal(put_bundle(dir, "py-abi", code, message, sizeof(code)), 400);
    assert_string_equal(code, "invalid_bundle");
    if (!strstr(message, "package \"fastlib\"") || !strstr(message, "cpython-39"))
        fail_msg("message: %s", message);
    assert_int_equal(function_status("py-abi"), 404);

    /* The CLI shows the daemon's reason. */
    char *out = NULL, *err = NULL;
    assert_int_equal(harness_ignis(&daemon_proc, &out, &err, "push", dir, NULL), 1);
    if (!strstr(err, "package \"fastlib\"") || !strstr(err, "HTTP 400"))
        fail_msg("push's stderr: %s", err);
    free(out);
    free(err);

    /* abi3 (the stable ABI) is accepted, and the function runs. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/fastlib/_speedups.cpython-39-x86_64-linux-gnu.so", dir);
    assert_int_equal(unlink(path), 0);
    put(dir, "fastlib/_speedups.abi3.so", "not really a library");
    long status = put_bundle(dir, "py-abi", code, message, sizeof(code));
    if (status != 201)
        fail_msg("abi3: %ld %s %s", status, code, message);
    char *body = invoke_ok("py-abi");
    assert_string_equal(body, "\"ran\"");
    free(body);
}

/* Compiles an addon exporting node_register_module_vVERSION (which does nothing: the module's
 * exports stay {}) into DIR/REL. */
static void compile_addon(const char *dir, const char *rel, unsigned version)
{
    char src[1024], cmd[4096];
    snprintf(src, sizeof(src), "%s/addon.c", harness_fixtures(&daemon_proc));
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fprintf(f, "void node_register_module_v%u(void *exports, void *module, void *context) {}\n",
            version);
    assert_int_equal(fclose(f), 0);
    put(dir, rel, "");
    snprintf(cmd, sizeof(cmd), "cc -shared -fPIC -o '%s/%s' '%s'", dir, rel, src);
    if (system(cmd) != 0)
        fail_msg("cannot compile a test addon (%s)", cmd);
}

static void test_node_addon_abi(void **state)
{
    char code[512], message[512], path[1024];
    struct bundle_abi abi;
    struct ig_error e = {};
    snprintf(path, sizeof(path), "%s/node", getenv("IGNIS_IMAGES_DIR"));
    assert_int_equal(bundle_abi_read(path, &abi, &e), 0);
    assert_true(abi.node_module_version > 1);

    const char *dir = function_dir("node-abi", "node", "index.handler");
    put(dir, "index.js",
        "const addon = require('fastaddon/build/Release/fastaddon.node');\n"
        "exports.handler = async () => ({ loaded: typeof addon });\n");
    put(dir, "node_modules/fastaddon/package.json", "{\"name\": \"fastaddon\"}");
    compile_addon(dir, "node_modules/fastaddon/build/Release/fastaddon.node",
                  abi.node_module_version - 1);
    assert_int_equal(put_bundle(dir, "node-abi", code, message, sizeof(code)), 400);
    assert_string_equal(code, "invalid_bundle");
    char want[64];
    snprintf(want, sizeof(want), "NODE_MODULE_VERSION %u", abi.node_module_version - 1);
    if (!strstr(message, "package \"fastaddon\"") || !strstr(message, want))
        fail_msg("message: %s", message);
    assert_int_equal(function_status("node-abi"), 404);

    /* Built for the image's own version, it is accepted, and the image's node loads it. */
    compile_addon(dir, "node_modules/fastaddon/build/Release/fastaddon.node",
                  abi.node_module_version);
    long status = put_bundle(dir, "node-abi", code, message, sizeof(code));
    if (status != 201)
        fail_msg("own version: %ld %s %s", status, code, message);
    char *body = invoke_ok("node-abi");
    assert_string_equal(body, "{\"loaded\":\"object\"}");
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_requirements_offline),
        cmocka_unit_test(test_python_bytecode_without_requirements),
        cmocka_unit_test(test_failing_install_pushes_nothing),
        cmocka_unit_test(test_no_deps),
        cmocka_unit_test(test_node_dependency_from_npm),
        cmocka_unit_test(test_python_extension_abi),
        cmocka_unit_test(test_node_addon_abi),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
