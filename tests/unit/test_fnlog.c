/* Function logs without a daemon: lines cut across reads, the per-invocation cap and its
 * marker, invocation changes, platform events, escaping, rotation into previous.jsonl, and
 * reading back (all, the last N, by invocation, since). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cjson/cJSON.h>
#include <cmocka.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "groups.h"
#include "records/fnlog.h"

static char dir[64];
static struct loop *l;

static int setup(void **state)
{
    strcpy(dir, "/tmp/ignis-fnlog-test.XXXXXX");
    if (!mkdtemp(dir) || loop_new(&l) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fnlog_free();
    loop_free(l);
    rm_rf(dir);
    return 0;
}

/* JSON lines, parsed, as an array; frees text. */
static cJSON *parse_lines(char *text)
{
    cJSON *all = cJSON_CreateArray();
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *rec = cJSON_Parse(line);
        assert_non_null(rec);
        cJSON_AddItemToArray(all, rec);
    }
    free(text);
    return all;
}

/* The records of a function's file. */
static cJSON *records(const char *fn, const char *which)
{
    char path[256], *text = NULL;
    snprintf(path, sizeof(path), "%s/logs/%s/%s.jsonl", dir, fn, which);
    if (read_file(path, 1 << 24, &text, NULL) < 0)
        return NULL;
    return parse_lines(text);
}

static const char *field(const cJSON *rec, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(rec, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_lines_cap_and_events(void **state)
{
    assert_int_equal(fnlog_init(l, dir, 100, 1 << 20), 0);
    struct fnlog_src *src = calloc(1, sizeof(*src));
    assert_non_null(src);

    /* A line cut across two reads is one record; a quote and a tab are escaped. */
    fnlog_output("f", src, "inv1", false, FNLOG_STDOUT, "hel", 3);
    fnlog_output("f", src, "inv1", false, FNLOG_STDOUT, "lo \"x\"\tz\nsecond\n", 16);
    fnlog_output("f", src, "inv1", true, FNLOG_STDERR, "partial", 7);
    /* A new invocation: the partial line above is inv1's; then inv2 passes the cap of 100. */
    char big[150];
    memset(big, 'y', sizeof(big));
    big[49] = '\n';
    fnlog_output("f", src, "inv2", false, FNLOG_STDOUT, big, sizeof(big));
    fnlog_output("f", src, "inv2", false, FNLOG_STDOUT, "more\n", 5);
    fnlog_platform("f", NULL, "container %d spawned", 7);
    fnlog_flush();

    cJSON *recs = records("f", "current");
    assert_non_null(recs);
    if (cJSON_GetArraySize(recs) != 7) {
        char *t = cJSON_Print(recs);
        fprintf(stderr, "%s\n", t);
        free(t);
    }
    assert_int_equal(cJSON_GetArraySize(recs), 7);
    const cJSON *r0 = cJSON_GetArrayItem(recs, 0), *r1 = cJSON_GetArrayItem(recs, 1),
                *r2 = cJSON_GetArrayItem(recs, 2), *r3 = cJSON_GetArrayItem(recs, 3),
                *r4 = cJSON_GetArrayItem(recs, 4), *r5 = cJSON_GetArrayItem(recs, 5),
                *r6 = cJSON_GetArrayItem(recs, 6);
    assert_string_equal(field(r0, "text"), "hello \"x\"\tz");
    assert_string_equal(field(r0, "invocation"), "inv1");
    assert_string_equal(field(r0, "stream"), "stdout");
    assert_non_null(field(r0, "time"));
    assert_string_equal(field(r1, "text"), "second");
    assert_string_equal(field(r2, "text"), "partial");
    assert_string_equal(field(r2, "stream"), "stderr");
    assert_string_equal(field(r2, "invocation"), "inv1");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r2, "concurrent")));
    /* inv2: 49 bytes and a newline, then 50 more (the cap), then the marker. */
    assert_int_equal(strlen(field(r3, "text")), 49);
    assert_string_equal(field(r3, "invocation"), "inv2");
    assert_int_equal(strlen(field(r4, "text")), 50);
    assert_string_equal(field(r5, "stream"), "platform");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r5, "truncated")));
    assert_string_equal(field(r5, "invocation"), "inv2");
    /* Nothing of inv2's after the marker ("more" dropped); the platform event is there. */
    assert_string_equal(field(r6, "stream"), "platform");
    assert_string_equal(field(r6, "text"), "container 7 spawned");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r6, "invocation")));
    cJSON_Delete(recs);
    fnlog_src_flush("f", src, false);
    free(src);
    fnlog_free();
}

static void test_rotation(void **state)
{
    assert_int_equal(fnlog_init(l, dir, 0, 4096), 0);
    for (int i = 0; i < 200; i++) {
        fnlog_platform("r", NULL, "event %d", i);
        if (i % 10 == 9)
            fnlog_flush();
    }
    fnlog_flush();
    cJSON *prev = records("r", "previous"), *cur = records("r", "current");
    assert_non_null(prev);
    assert_non_null(cur);
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/logs/r/current.jsonl", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 4096);
    /* The newest event is the last of current; previous holds the ones just before it. */
    const cJSON *last = cJSON_GetArrayItem(cur, cJSON_GetArraySize(cur) - 1);
    assert_string_equal(field(last, "text"), "event 199");
    cJSON_Delete(prev);
    cJSON_Delete(cur);
    fnlog_free();
}

/* fnlog_read's records, parsed. */
static cJSON *read_records(const char *fn, const char *inv, uint64_t since_us, size_t tail)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(fnlog_read(fn, inv, since_us, tail, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    return parse_lines(text);
}

/* Whether got is the part of want from index first on, of inv's records ("" for all). */
static void assert_suffix(const cJSON *got, const cJSON *want, const char *inv, size_t n)
{
    cJSON *sel = cJSON_CreateArray();
    const cJSON *rec;
    cJSON_ArrayForEach(rec, want)
    {
        if (!inv[0] || (field(rec, "invocation") && streq(field(rec, "invocation"), inv)))
            cJSON_AddItemToArray(sel, cJSON_Duplicate(rec, true));
    }
    size_t total = (size_t)cJSON_GetArraySize(sel), first = n < total ? total - n : 0;
    assert_int_equal(cJSON_GetArraySize(got), total - first);
    for (size_t i = first; i < total; i++)
        assert_true(cJSON_Compare(cJSON_GetArrayItem(got, (int)(i - first)),
                                  cJSON_GetArrayItem(sel, (int)i), true));
    cJSON_Delete(sel);
}

/* Reading back: everything in order across previous and current, the last N, one invocation's
 * last N, since, nothing for tail 0, and never a last line still being written. */
static void test_read_and_tail(void **state)
{
    assert_int_equal(fnlog_init(l, dir, 0, 4096), 0);
    for (int i = 0; i < 200; i++) {
        fnlog_platform("t", i % 2 ? "odd" : "even", "event %d", i);
        if (i % 10 == 9)
            fnlog_flush();
    }
    fnlog_flush();
    /* What the files hold, oldest first. */
    cJSON *prev = records("t", "previous"), *want = records("t", "current");
    assert_non_null(prev);
    assert_non_null(want);
    size_t in_current = (size_t)cJSON_GetArraySize(want);
    for (int i = cJSON_GetArraySize(prev); i-- > 0;)
        cJSON_InsertItemInArray(want, 0, cJSON_DetachItemFromArray(prev, i));
    cJSON_Delete(prev);

    cJSON *got = read_records("t", NULL, 0, SIZE_MAX);
    assert_suffix(got, want, "", SIZE_MAX);
    assert_string_equal(field(cJSON_GetArrayItem(got, cJSON_GetArraySize(got) - 1), "text"),
                        "event 199");
    cJSON_Delete(got);
    const size_t tails[] = {0, 1, 5, in_current, in_current + 3, FNLOG_TAIL_MAX};
    for (size_t i = 0; i < ARRAY_SIZE(tails); i++) {
        got = read_records("t", NULL, 0, tails[i]);
        assert_suffix(got, want, "", tails[i]);
        cJSON_Delete(got);
        got = read_records("t", "odd", 0, tails[i]);
        assert_suffix(got, want, "odd", tails[i]);
        cJSON_Delete(got);
    }
    got = read_records("t", "odd", 0, 3);
    assert_string_equal(field(cJSON_GetArrayItem(got, 0), "text"), "event 195");
    cJSON_Delete(got);

    /* since: the records at or after a record's time (several may share a microsecond). */
    const cJSON *mid = cJSON_GetArrayItem(want, cJSON_GetArraySize(want) / 2);
    uint64_t since = (uint64_t)cJSON_GetObjectItem(mid, "ts_us")->valuedouble;
    size_t after = 0;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, want)
    {
        after += (uint64_t)cJSON_GetObjectItem(rec, "ts_us")->valuedouble >= since;
    }
    got = read_records("t", NULL, since, SIZE_MAX);
    assert_suffix(got, want, "", after);
    cJSON_Delete(got);

    /* A record half written (ignisd's own writes are whole, but a crash can cut one). */
    char path[256];
    snprintf(path, sizeof(path), "%s/logs/t/current.jsonl", dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("{\"ts_us\":9999999999999999,\"text\":\"half", f);
    fclose(f);
    got = read_records("t", NULL, 0, 2);
    assert_suffix(got, want, "", 2);
    cJSON_Delete(got);

    /* A function without logs: nothing. */
    got = read_records("none", NULL, 0, SIZE_MAX);
    assert_int_equal(cJSON_GetArraySize(got), 0);
    cJSON_Delete(got);
    cJSON_Delete(want);
    fnlog_free();
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Log files are held open in a bounded set, not one per function for ever; every function's
 * records still reach its file, and reopened files are appended to. */
static void test_open_files_bounded(void **state)
{
    assert_int_equal(fnlog_init(l, dir, 0, 0), 0);
    int before = open_fds();
    char name[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 300; i++) {
            snprintf(name, sizeof(name), "fn%d", i);
            fnlog_platform(name, NULL, "round %d", round);
            fnlog_flush();
        }
    assert_in_range(open_fds() - before, 0, 16);
    for (int i = 0; i < 300; i += 37) {
        snprintf(name, sizeof(name), "fn%d", i);
        cJSON *recs = records(name, "current");
        assert_non_null(recs);
        assert_int_equal(cJSON_GetArraySize(recs), 2);
        assert_string_equal(field(cJSON_GetArrayItem(recs, 1), "text"), "round 1");
        cJSON_Delete(recs);
    }
    fnlog_free();
    assert_int_equal(open_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_cap_and_events),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_read_and_tail),
        cmocka_unit_test(test_open_files_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
