/* The bundle store without the daemon: digests, the limits (with small values, so they are
 * reached quickly), what a safe bundle may hold (relative links inside it, hardlinks between
 * its files), commit and removal, and the client side (packing a directory, peeking at
 * function.json). The hostile cases over HTTP are in tests/integration/test_registry.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/bundle.h"

static char dir[64];

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-bundle-test.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    return rm_rf(dir);
}

struct tarb {
    struct archive *a;
    char *buf;
    size_t cap, used;
};

static void tarb_start(struct tarb *t)
{
    t->cap = 8u << 20;
    t->buf = malloc(t->cap);
    t->a = archive_write_new();
    archive_write_add_filter_gzip(t->a);
    archive_write_set_format_pax_restricted(t->a);
    assert_int_equal(archive_write_open_memory(t->a, t->buf, t->cap, &t->used), ARCHIVE_OK);
}

static void tarb_add(struct tarb *t, const char *path, mode_t type, const void *data, size_t len,
                     const char *link, bool hard)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    if (link && hard)
        archive_entry_set_hardlink(e, link);
    else if (link)
        archive_entry_set_symlink(e, link);
    assert_int_equal(archive_write_header(t->a, e), ARCHIVE_OK);
    if (len)
        assert_int_equal(archive_write_data(t->a, data, len), (la_ssize_t)len);
    archive_entry_free(e);
}

static void tarb_file(struct tarb *t, const char *path, const char *text)
{
    tarb_add(t, path, AE_IFREG, text, strlen(text), NULL, false);
}

static void tarb_finish(struct tarb *t)
{
    assert_int_equal(archive_write_close(t->a), ARCHIVE_OK);
    archive_write_free(t->a);
}

#define MANIFEST "{\"name\":\"f\",\"runtime\":\"exec\",\"handler\":\"run\"}"

static int unpack(struct tarb *t, const struct bundle_limits *lim, char **ret_dir,
                  struct ig_error *err)
{
    return bundle_unpack(dir, t->buf, t->used, lim, ret_dir, err);
}

static void assert_tmp_empty(void)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
    /* rmdir succeeds only on an empty dir: nothing was left behind. */
    assert_int_equal(rmdir(tmp), 0);
}

static void test_digest(void **state)
{
    char d[BUNDLE_DIGEST_LEN + 1];
    bundle_digest("abc", 3, d);
    assert_string_equal(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(bundle_digest_valid(d));
    assert_false(bundle_digest_valid("../etc"));
    assert_false(bundle_digest_valid(NULL));
    d[0] = 'A';
    assert_false(bundle_digest_valid(d));
}

static void test_safe_bundle(void **state)
{
    struct tarb t;
    struct ig_error err = {};
    char *out = NULL, *text = NULL, path[256];
    size_t len;
    struct stat st;

    tarb_start(&t);
    tarb_add(&t, "./", AE_IFDIR, NULL, 0, NULL, false);
    tarb_file(&t, "./function.json", MANIFEST);
    tarb_file(&t, "lib/a/b.txt", "b");
    tarb_add(&t, "lib/a/up", AE_IFLNK, NULL, 0, "../../function.json", false);
    tarb_add(&t, "lib/self", AE_IFLNK, NULL, 0, ".", false);
    tarb_add(&t, "lib/hard", AE_IFREG, NULL, 0, "lib/a/b.txt", true);
    tarb_finish(&t);

    if (unpack(&t, &bundle_default_limits, &out, &err) < 0)
        fail_msg("unpack: %s", err.message);
    assert_int_equal(bundle_read_manifest(out, &text, &len, &err), 0);
    assert_string_equal(text, MANIFEST);
    free(text);
    snprintf(path, sizeof(path), "%s/lib/hard", out);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_nlink, 2);
    snprintf(path, sizeof(path), "%s/lib/a/up", out);
    assert_int_equal(stat(path, &st), 0); /* resolves, inside */

    char digest[BUNDLE_DIGEST_LEN + 1];
    bundle_digest(t.buf, t.used, digest);
    assert_false(bundle_exists(dir, digest));
    assert_int_equal(bundle_commit(dir, out, digest, &err), 0);
    assert_true(bundle_exists(dir, digest));
    free(out);

    /* The same content again (a concurrent push): the second copy goes, the first stays. */
    out = NULL;
    assert_int_equal(unpack(&t, &bundle_default_limits, &out, &err), 0);
    assert_int_equal(bundle_commit(dir, out, digest, &err), 0);
    assert_int_equal(access(out, F_OK), -1);
    assert_true(bundle_exists(dir, digest));
    free(out);

    assert_int_equal(bundle_remove(dir, digest), 0);
    assert_false(bundle_exists(dir, digest));
    assert_int_equal(bundle_remove(dir, digest), 0); /* already gone: fine */
    assert_int_equal(bundle_clean_tmp(dir), 0);
    free(t.buf);
}

static void expect_refused(struct tarb *t, const struct bundle_limits *lim, int code,
                           const char *needle)
{
    struct ig_error err = {};
    char *out = NULL;
    int r = unpack(t, lim, &out, &err);
    if (r != -code || !strstr(err.message, needle))
        fail_msg("expected -%d naming \"%s\", got %d: %s", code, needle, r, err.message);
    assert_true(bundle_error_is_content(r));
    assert_null(out);
    assert_tmp_empty();
}

static void test_unpacked_size_cap(void **state)
{
    struct bundle_limits lim = bundle_default_limits;
    lim.max_unpacked_bytes = 1u << 20;
    /* Incompressible, so the ratio check stays out of it: the byte count stops it. */
    size_t n = 2u << 20;
    unsigned char *data = malloc(n);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (unsigned char)x;
    }
    struct tarb t;
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    tarb_add(&t, "big", AE_IFREG, data, n, NULL, false);
    tarb_finish(&t);
    free(data);
    expect_refused(&t, &lim, EFBIG, "more than 1048576 bytes");
    free(t.buf);
}

/* Stops (SIGSTOP) the first child of thread tid that it sees. */
struct stopper {
    pid_t tid;
    atomic_bool done;
    pid_t stopped;
};

static void *stop_child(void *arg)
{
    struct stopper *s = arg;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)s->tid);
    while (!atomic_load(&s->done)) {
        _cleanup_free_ char *text = NULL;
        int pid = read_file(path, 4096, &text, NULL) == 0 ? atoi(text) : 0;
        if (pid > 0 && kill(pid, SIGSTOP) == 0) {
            s->stopped = pid;
            break;
        }
    }
    return NULL;
}

/* An unpacking child that does not end (stopped here, as one stuck on a lock it inherited at the
 * fork would be: no CPU used, so RLIMIT_CPU never comes) is killed past max_seconds, and the
 * unpack fails with ETIMEDOUT leaving nothing behind. The stop can come after the child's end
 * (a bundle unpacked: tried again). */
static void test_stuck_child(void **state)
{
    struct bundle_limits lim = bundle_default_limits;
    lim.max_seconds = 1;
    struct tarb t;
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    for (int i = 0; i < 3000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        tarb_file(&t, name, "x");
    }
    tarb_finish(&t);
    bool timed_out = false;
    for (int attempt = 0; attempt < 10 && !timed_out; attempt++) {
        struct stopper s = {.tid = gettid()};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, stop_child, &s), 0);
        char *out = NULL;
        struct ig_error err = {};
        uint64_t start = now_usec();
        int r = unpack(&t, &lim, &out, &err);
        atomic_store(&s.done, true);
        pthread_join(th, NULL);
        if (r == 0) {
            rm_rf(out);
            free(out);
            continue;
        }
        if (r != -ETIMEDOUT)
            fprintf(stderr, "unpack: %d %s\n", r, err.message);
        assert_int_equal(r, -ETIMEDOUT);
        assert_int_equal(err.code, ETIMEDOUT);
        assert_non_null(strstr(err.message, "did not end within 1 s"));
        assert_true(now_usec() - start >= 1000000);
        assert_true(s.stopped > 0);
        assert_int_equal(kill(s.stopped, 0), -1); /* killed and reaped */
        assert_int_equal(errno, ESRCH);
        timed_out = true;
    }
    assert_true(timed_out);
    assert_tmp_empty();
    free(t.buf);
}

static void test_entry_and_path_caps(void **state)
{
    struct bundle_limits lim = bundle_default_limits;
    struct tarb t;
    char name[400];

    lim.max_entries = 5;
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        tarb_file(&t, name, "x");
    }
    tarb_finish(&t);
    expect_refused(&t, &lim, E2BIG, "more than 5 entries");
    free(t.buf);

    lim = bundle_default_limits;
    lim.max_path = 64;
    memset(name, 'p', 100);
    name[100] = '\0';
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    tarb_file(&t, name, "x");
    tarb_finish(&t);
    expect_refused(&t, &lim, ENAMETOOLONG, "longer than 64 bytes");
    free(t.buf);

    /* A component longer than NAME_MAX, within the path limit. */
    memset(name, 'c', 300);
    name[300] = '\0';
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    tarb_file(&t, name, "x");
    tarb_finish(&t);
    expect_refused(&t, &bundle_default_limits, ENAMETOOLONG, "component");
    free(t.buf);

    /* A symlink target past the path limit. */
    lim = bundle_default_limits;
    lim.max_path = 64;
    memset(name, 't', 100);
    name[100] = '\0';
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    tarb_add(&t, "l", AE_IFLNK, NULL, 0, name, false);
    tarb_finish(&t);
    expect_refused(&t, &lim, ENAMETOOLONG, "target");
    free(t.buf);
}

static void test_links_refused(void **state)
{
    static const struct {
        const char *path, *target;
        bool hard;
    } cases[] = {
        {"l", "/etc/passwd", false}, {"l", "..", false},        {"a/l", "../..", false},
        {"a/l", "x/../..", false},   {"l", "a/../../b", false}, {"h", "/etc/passwd", true},
        {"h", "../x", true},         {"h", "a/../../x", true},  {"l", "", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct tarb t;
        tarb_start(&t);
        tarb_file(&t, "function.json", MANIFEST);
        tarb_add(&t, cases[i].path, AE_IFLNK, NULL, 0, cases[i].target, cases[i].hard);
        tarb_finish(&t);
        expect_refused(&t, &bundle_default_limits, EINVAL, "entry");
        free(t.buf);
    }
}

/* A path that appears twice: a directory again is harmless, anything else is refused (before,
 * libarchive kept the directory but gave it the later entry's 0644, found by the fuzzer). */
static void test_repeated_paths(void **state)
{
    struct tarb t;
    struct ig_error err = {};
    char *out = NULL, path[256];
    struct stat st;

    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    tarb_add(&t, "bin/", AE_IFDIR, NULL, 0, NULL, false);
    tarb_add(&t, "./bin", AE_IFDIR, NULL, 0, NULL, false);
    tarb_file(&t, "bin/run", "#!/bin/sh");
    tarb_finish(&t);
    if (unpack(&t, &bundle_default_limits, &out, &err) < 0)
        fail_msg("unpack: %s", err.message);
    snprintf(path, sizeof(path), "%s/bin", out);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(rm_rf(out), 0);
    free(out);
    free(t.buf);

    static const struct {
        mode_t type;
        const char *link;
        bool hard;
    } again[] = {
        {AE_IFREG, NULL, false},
        {AE_IFREG, "bin/", true},
        {AE_IFLNK, "function.json", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(again); i++) {
        tarb_start(&t);
        tarb_file(&t, "function.json", MANIFEST);
        tarb_add(&t, "bin/", AE_IFDIR, NULL, 0, NULL, false);
        tarb_add(&t, "bin", again[i].type, NULL, 0, again[i].link, again[i].hard);
        tarb_finish(&t);
        expect_refused(&t, &bundle_default_limits, EINVAL,
                       "\"bin\": the bundle has this path twice");
        free(t.buf);
    }
    tarb_start(&t);
    tarb_file(&t, "function.json", MANIFEST);
    tarb_file(&t, "./function.json", "{}");
    tarb_finish(&t);
    expect_refused(&t, &bundle_default_limits, EINVAL, "twice");
    free(t.buf);
}

static void test_pack_and_peek(void **state)
{
    char src[128], path[256], *b = NULL, *text = NULL, *out = NULL;
    size_t len, tlen;
    struct ig_error err = {};

    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(path, sizeof(path), "%s/sub", src);
    assert_int_equal(mkdir_p(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/function.json", src);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_int_equal(write(fd, MANIFEST, strlen(MANIFEST)), (ssize_t)strlen(MANIFEST));
    close(fd);
    snprintf(path, sizeof(path), "%s/sub/link", src);
    assert_int_equal(symlink("../function.json", path), 0);

    assert_int_equal(bundle_pack_dir(src, 1 << 20, &b, &len, &err), 0);
    assert_int_equal(bundle_peek_manifest(b, len, &text, &tlen, &err), 0);
    assert_string_equal(text, MANIFEST);
    free(text);
    assert_int_equal(bundle_unpack(dir, b, len, &bundle_default_limits, &out, &err), 0);
    snprintf(path, sizeof(path), "%s/sub/link", out);
    char target[64] = {};
    assert_true(readlink(path, target, sizeof(target) - 1) > 0);
    assert_string_equal(target, "../function.json");
    rm_rf(out);
    free(out);

    /* Packing is reproducible: the same tree gives the same bytes (the same digest, so no new
     * version) after its files were read, i.e. with other atimes, and a second later. */
    struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_nsec = UTIME_OMIT}};
    snprintf(path, sizeof(path), "%s/function.json", src);
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
    sleep(1);
    char *again = NULL;
    size_t again_len;
    assert_int_equal(bundle_pack_dir(src, 1 << 20, &again, &again_len, &err), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, b, len);
    free(again);
    free(b);

    /* Over the size limit. */
    b = NULL;
    assert_int_equal(bundle_pack_dir(src, 10, &b, &len, &err), -EFBIG);
    assert_null(b);
    /* No function.json in a tar. */
    struct tarb t;
    tarb_start(&t);
    tarb_file(&t, "x", "y");
    tarb_finish(&t);
    assert_int_equal(bundle_peek_manifest(t.buf, t.used, &text, &tlen, &err), -ENOENT);
    free(t.buf);
    assert_int_equal(bundle_clean_tmp(dir), 0);
}

static void write_at(const char *rel, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    assert_int_equal(mkdir_p(path, 0755), 0);
    *slash = '/';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_abi_parse(void **state)
{
    struct bundle_abi abi;
    const char *text = "python_soabi=cpython-311-x86_64-linux-gnu\nfuture=1\n";
    assert_int_equal(bundle_abi_parse(text, strlen(text), &abi), 0);
    assert_string_equal(abi.python_soabi, "cpython-311-x86_64-linux-gnu");
    assert_int_equal(abi.node_module_version, 0);
    text = "node_module_version=115";
    assert_int_equal(bundle_abi_parse(text, strlen(text), &abi), 0);
    assert_string_equal(abi.python_soabi, "");
    assert_int_equal(abi.node_module_version, 115);
    const char *bad[] = {"node_module_version=", "node_module_version=11a", "node_module_version=0",
                         "python_soabi=abi3", "python_soabi=cpython-"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(bundle_abi_parse(bad[i], strlen(bad[i]), &abi), -EINVAL);

    /* Read from an image's root; none recorded is ENOENT. */
    struct ig_error err = {};
    assert_int_equal(bundle_abi_read(dir, &abi, &err), -ENOENT);
    write_at("ignis/abi", "node_module_version=108\n", 24);
    assert_int_equal(bundle_abi_read(dir, &abi, &err), 0);
    assert_int_equal(abi.node_module_version, 108);
}

/* The rule by name for Python extensions (the content does not matter), the package named by
 * where pip puts it; abi3, untagged and the image's own tag pass. */
static void test_abi_python(void **state)
{
    struct bundle_abi abi = {.python_soabi = "cpython-311-x86_64-linux-gnu"};
    struct ig_error err = {};
    write_at("function.json", MANIFEST, strlen(MANIFEST));
    write_at("fast/_speedups.cpython-311-x86_64-linux-gnu.so", "x", 1);
    write_at("stable/_lib.abi3.so", "x", 1);
    write_at("plain/_c.so", "x", 1);
    write_at("pure/__init__.py", "", 0);
    assert_int_equal(bundle_check_abi(dir, &abi, &err), 0);

    write_at("old/sub/_core.cpython-39-x86_64-linux-gnu.so", "anything", 8);
    assert_int_equal(bundle_check_abi(dir, &abi, &err), -EINVAL);
    assert_non_null(strstr(err.message, "package \"old\""));
    assert_non_null(strstr(err.message, "old/sub/_core.cpython-39-x86_64-linux-gnu.so"));
    assert_non_null(strstr(err.message, "cpython-39-x86_64-linux-gnu"));
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0700), 0);

    /* Another architecture; a package in site-packages; a module at the root. */
    const char *cases[][2] = {
        {"lib/python3.11/site-packages/numpy/core/_m.cpython-311-aarch64-linux-gnu.so", "numpy"},
        {"mod.cpython-312-x86_64-linux-gnu.so", "mod"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        ig_error_clear(&err);
        write_at(cases[i][0], "x", 1);
        assert_int_equal(bundle_check_abi(dir, &abi, &err), -EINVAL);
        char want[128];
        snprintf(want, sizeof(want), "package \"%s\"", cases[i][1]);
        assert_non_null(strstr(err.message, want));
        rm_rf(dir);
        assert_int_equal(mkdir(dir, 0700), 0);
    }
    /* A python image does not judge node addons. */
    write_at("node_modules/x/x.node", "node_register_module_v1\0", 24);
    assert_int_equal(bundle_check_abi(dir, &abi, &err), 0);
}

/* Node.js addons by the entry points in the file (a literal ELF string table suffices). */
static void test_abi_node(void **state)
{
    struct bundle_abi abi = {.node_module_version = 115};
    struct ig_error err = {};
    static const char own[] = "\0\x7f"
                              "ELF\0node_register_module_v115\0";
    static const char napi[] = "\0napi_register_module_v1\0node_register_module_v108\0";
    static const char foreign[] = "\0node_register_module_v108\0more";
    static const char prefix_only[] = "node_register_module_v108x\0";
    write_at("node_modules/own/build/Release/own.node", own, sizeof(own));
    write_at("node_modules/napi/napi.node", napi, sizeof(napi));
    write_at("node_modules/legacy/legacy.node", "no symbol", 9);
    write_at("node_modules/odd/odd.node", prefix_only, sizeof(prefix_only));
    write_at("node_modules/empty/empty.node", "", 0);
    write_at("lib/_x.cpython-39-x86_64-linux-gnu.so", "x", 1); /* not a python image */
    assert_int_equal(bundle_check_abi(dir, &abi, &err), 0);

    write_at("node_modules/@acme/fast/node_modules/@acme/core/build/Release/core.node", foreign,
             sizeof(foreign));
    assert_int_equal(bundle_check_abi(dir, &abi, &err), -EINVAL);
    assert_non_null(strstr(err.message, "package \"@acme/core\""));
    assert_non_null(strstr(err.message, "NODE_MODULE_VERSION 108"));
    assert_non_null(strstr(err.message, "is 115"));

    /* A symlink is not followed (its target is checked where it is). */
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    char link[256];
    snprintf(link, sizeof(link), "%s/evil.node", dir);
    assert_int_equal(symlink("/nonexistent/elsewhere.node", link), 0);
    ig_error_clear(&err);
    assert_int_equal(bundle_check_abi(dir, &abi, &err), 0);
    /* Nothing recorded, nothing checked. */
    write_at("a/a.node", foreign, sizeof(foreign));
    assert_int_equal(bundle_check_abi(dir, &(struct bundle_abi){}, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_safe_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpacked_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_and_path_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stuck_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_and_peek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi_python, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi_node, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
