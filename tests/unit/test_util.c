/* The small helpers of util.[ch] whose edges callers rely on: read_file's limit (a file of
 * exactly max bytes is read, one byte more is refused) and parse_count's digits-only counts;
 * and fdlimit_in_use's count, which pool and stock admit new containers by. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "base/fdlimit.h"
#include "base/util.h"

static void write_bytes(const char *path, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
}

static void test_read_file_limit(void **state)
{
    char dir[] = "/tmp/ignis-util-test.XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    /* Around the first buffer (4 KiB) and a small limit, growing or not. */
    static const size_t maxes[] = {0, 1, 100, 4094, 4095, 4096, 10000};
    for (size_t i = 0; i < ARRAY_SIZE(maxes); i++) {
        size_t max = maxes[i];
        char *text = NULL;
        size_t len = 99;
        write_bytes(path, max);
        assert_int_equal(read_file(path, max, &text, &len), 0);
        assert_int_equal(len, max);
        assert_int_equal(strlen(text), max);
        free(text);
        write_bytes(path, max + 1);
        assert_int_equal(read_file(path, max, &text, &len), -EFBIG);
    }
    assert_int_equal(read_file("/nonexistent/ignis", 10, &(char *){NULL}, NULL), -ENOENT);
    assert_int_equal(rm_rf(dir), 0);
}

static void test_parse_count(void **state)
{
    unsigned long n = 7;
    assert_int_equal(parse_count("0", 0, 5, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(parse_count("100000", 0, 100000, &n), 0);
    assert_int_equal(n, 100000);
    static const char *const bad[] = {
        "", " 1", "+1", "-1", "1 ", "1e3", "0x10", "6", "99999999999999999999999"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (parse_count(bad[i], 0, 5, &n) != -EINVAL)
            fail_msg("'%s' was taken", bad[i]);
}

/* What a listing of /proc/self/fd shows, without the listing's own fd. */
static int listed_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

static void test_fdlimit_in_use(void **state)
{
    int before = fdlimit_in_use();
    assert_int_equal(before, listed_fds());
    int fds[40];
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        assert_true((fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
    assert_int_equal(fdlimit_in_use(), before + (int)ARRAY_SIZE(fds));
    assert_int_equal(fdlimit_in_use(), listed_fds());
    /* A hole in the table counts as one fewer, not as the table's size. */
    close(fds[3]);
    assert_int_equal(fdlimit_in_use(), before + (int)ARRAY_SIZE(fds) - 1);
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (i != 3)
            close(fds[i]);
    assert_int_equal(fdlimit_in_use(), before);
}

/* poll_until: 0 at its deadline (not before) while nothing comes, 1 once fd is ready, with or
 * without a deadline. */
static void test_poll_until(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    uint64_t deadline = now_usec() + 20000;
    assert_int_equal(poll_until(p[0], POLLIN, deadline), 0);
    assert_true(now_usec() >= deadline);
    assert_int_equal(poll_until(p[0], POLLIN, now_usec() - 1), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(poll_until(p[0], POLLIN, now_usec() + 20000), 1);
    assert_int_equal(poll_until(p[0], POLLIN, UINT64_MAX), 1);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_file_limit),
        cmocka_unit_test(test_parse_count),
        cmocka_unit_test(test_poll_until),
        cmocka_unit_test(test_fdlimit_in_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
