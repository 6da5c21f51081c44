/* Cron schedules: parsing (every syntax error names its field), next and previous fire times
 * against hand-worked dates (month ends, leap years, the day-of-month/day-of-week rule, zones),
 * @every, missed-run make-up, and a minute-by-minute oracle built on libc's gmtime_r. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/cron.h"

/* "YYYY-MM-DD HH:MM[:SS]" in UTC, through libc rather than the code under test. */
static int64_t at(const char *s)
{
    struct tm tm = {};
    int sec = 0;
    int n = sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &sec);
    assert_true(n >= 5);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}

static void show(int64_t t, char buf[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, 32, "%Y-%m-%d %H:%M:%S %a", &tm);
}

static struct cron_schedule parse_ok(const char *text)
{
    struct cron_schedule s;
    struct ig_error err = {};
    if (cron_parse(text, &s, &err) != 0)
        fail_msg("'%s': %s", text, err.message);
    return s;
}

static void check_next_tz(const char *schedule, int32_t tz, const char *after, const char *expected)
{
    struct cron_schedule s = parse_ok(schedule);
    int64_t next;
    char got[32], want[32];
    assert_int_equal(cron_next(&s, at(after), tz, &next), 0);
    if (next != at(expected)) {
        show(next, got);
        show(at(expected), want);
        fail_msg("'%s' after %s: got %s, expected %s", schedule, after, got, want);
    }
}

static void check_next(const char *schedule, const char *after, const char *expected)
{
    check_next_tz(schedule, 0, after, expected);
}

static void test_next_fields(void **state)
{
    /* Strictly after: a fire time equal to `after` is not the answer. */
    check_next("* * * * *", "2026-11-28 04:17:30", "2026-11-28 04:18");
    check_next("* * * * *", "2026-11-28 04:18", "2026-11-28 04:19");
    check_next("*/15 * * * *", "2026-11-28 10:07", "2026-11-28 10:15");
    check_next("*/15 * * * *", "2026-11-28 10:45", "2026-11-28 11:00");
    check_next("*/15 * * * *", "2026-12-31 23:50", "2027-01-01 00:00");
    check_next("5-10/2 * * * *", "2026-11-28 10:05", "2026-11-28 10:07");
    check_next("5-10/2 * * * *", "2026-11-28 10:09", "2026-11-28 11:05");
    check_next("0/20 * * * *", "2026-11-28 10:40", "2026-11-28 11:00");
    check_next("0 */6 * * *", "2026-11-28 12:00", "2026-11-28 18:00");
    check_next("0 */6 * * *", "2026-11-28 18:00", "2026-11-29 00:00");
    check_next("15,45 8,20 * * *", "2026-11-28 08:45", "2026-11-28 20:15");
    /* Month ends: the 31st skips the months without one. */
    check_next("0 0 31 * *", "2026-02-01 00:00", "2026-03-31 00:00");
    check_next("0 0 31 * *", "2026-03-31 00:00", "2026-05-31 00:00");
    check_next("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59");
    check_next("0 0 30 * *", "2027-01-30 00:00", "2027-03-30 00:00");
    /* Leap years: 2028 is one, 2100 is not, 2000 was. */
    check_next("0 0 29 2 *", "2025-01-01 00:00", "2028-02-29 00:00");
    check_next("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00");
    check_next("0 0 29 2 *", "1996-03-01 00:00", "2000-02-29 00:00");
    check_next("0 0 1 jan,JUL *", "2026-01-01 00:00", "2026-07-01 00:00");
    check_next("0 0 1 Mar-May/2 *", "2026-03-01 00:00", "2026-05-01 00:00");
    /* Days of the week: 2026-11-28 is a Saturday. 0, 7 and SUN are all Sunday. */
    check_next("30 9 * * MON-FRI", "2026-11-27 10:00", "2026-11-30 09:30");
    check_next("0 12 * * 0", "2026-11-28 00:00", "2026-11-29 12:00");
    check_next("0 12 * * 7", "2026-11-28 00:00", "2026-11-29 12:00");
    check_next("0 12 * * sun", "2026-11-28 00:00", "2026-11-29 12:00");
    check_next("0 0 * * 5-7", "2026-11-28 00:00", "2026-11-29 00:00");
    check_next("0 0 * * 5-7", "2026-11-29 00:00", "2026-12-04 00:00");
    check_next("0 0 * * */2", "2026-11-28 00:00", "2026-11-29 00:00"); /* 0,2,4,6 */
    /* Both day fields restricted: either may match (crontab(5)). 2026-01-12 is a Monday. */
    check_next("0 0 13 * MON", "2026-01-12 00:00", "2026-01-13 00:00");
    check_next("0 0 13 * MON", "2026-01-13 00:00", "2026-01-19 00:00");
    check_next("0 0 31 2 MON", "2026-11-28 00:00", "2027-02-01 00:00"); /* Mondays of Feb */
    /* A field beginning with '*' is unrestricted, so both must match: odd days that are
     * Mondays (2026-11-30 is even), and odd days in a plain "*" weekday field. */
    check_next("0 0 */2 * 1", "2026-11-28 00:00", "2026-12-07 00:00");
    check_next("0 0 */30 2 MON", "2026-11-28 00:00", "2027-02-01 00:00");
    check_next("0 0 */30 2 MON", "2027-02-01 00:00", "2038-02-01 00:00");
    check_next("0 0 */10 * *", "2026-01-21 00:00", "2026-01-31 00:00");
    check_next("0 0 */10 * *", "2026-01-31 00:00", "2026-02-01 00:00");
    check_next("0 0 1 * *", "1969-12-15 00:00", "1970-01-01 00:00");
    check_next("0 9 * * *", "1969-12-31 00:00", "1969-12-31 09:00");

    struct cron_schedule s = parse_ok("* * * * *");
    int64_t t;
    assert_int_equal(cron_next(&s, INT64_MAX - 10, 0, &t), -ERANGE);
    assert_int_equal(cron_prev(&s, INT64_MIN + 10, 0, &t), -ERANGE);
}

static void test_macros(void **state)
{
    check_next("@hourly", "2026-11-28 04:17:30", "2026-11-28 05:00");
    check_next("@daily", "2026-11-28 04:17", "2026-11-29 00:00");
    check_next("@midnight", "2026-11-28 04:17", "2026-11-29 00:00");
    check_next("@weekly", "2026-11-28 04:17", "2026-11-29 00:00");
    check_next("@monthly", "2026-11-28 04:17", "2026-12-01 00:00");
    check_next("@yearly", "2026-11-28 04:17", "2027-01-01 00:00");
    check_next("@annually", "2026-11-28 04:17", "2027-01-01 00:00");
    check_next("  @DAILY  ", "2026-11-28 04:17", "2026-11-29 00:00");
}

static void test_every(void **state)
{
    struct cron_schedule s = parse_ok("@every 1h30m");
    assert_int_equal(s.kind, CRON_EVERY);
    assert_int_equal(s.every_s, 5400);
    assert_int_equal(parse_ok("@every 30s").every_s, 30);
    assert_int_equal(parse_ok("@every 5m").every_s, 300);
    assert_int_equal(parse_ok("@every 1h1m1s").every_s, 3661);
    assert_int_equal(parse_ok("@every 90s").every_s, 90);
    assert_int_equal(parse_ok("@every   1s ").every_s, 1);
    assert_int_equal(parse_ok("@every 8784h").every_s, CRON_EVERY_MAX);

    /* Whole multiples of the interval since the epoch, in the schedule's zone. */
    check_next("@every 30s", "2026-11-28 10:00:10", "2026-11-28 10:00:30");
    check_next("@every 30s", "2026-11-28 10:00:30", "2026-11-28 10:01:00");
    check_next("@every 1s", "2026-11-28 10:00:59", "2026-11-28 10:01:00");
    check_next("@every 1h30m", "2026-11-28 00:00", "2026-11-28 01:30");
    check_next("@every 1h30m", "2026-11-28 22:31", "2026-11-29 00:00");
    check_next_tz("@every 1h", 5 * 3600 + 1800, "2026-11-28 04:17", "2026-11-28 04:30");
    s = parse_ok("@every 7m");
    int64_t next, t = at("2026-11-28 04:17:31");
    assert_int_equal(cron_next(&s, t, 0, &next), 0);
    assert_int_equal(next % 420, 0);
    assert_true(next > t && next - t <= 420);
}

static void test_zones(void **state)
{
    int32_t tz;
    struct ig_error err = {};

    check_next_tz("0 9 * * *", 5 * 3600 + 1800, "2026-11-28 00:00", "2026-11-28 03:30");
    check_next_tz("0 9 * * *", 5 * 3600 + 1800, "2026-11-28 04:00", "2026-11-29 03:30");
    check_next_tz("0 0 1 * *", -8 * 3600, "2026-11-28 00:00", "2026-12-01 08:00");
    /* 23:30 on Saturday in UTC-1 is Sunday 00:30 in UTC: the weekday is the zone's. */
    check_next_tz("30 23 * * SAT", -3600, "2026-11-28 00:00", "2026-11-29 00:30");

    assert_int_equal(cron_tz_parse("UTC", &tz, &err), 0);
    assert_int_equal(tz, 0);
    assert_int_equal(cron_tz_parse("z", &tz, &err), 0);
    assert_int_equal(cron_tz_parse("+05:30", &tz, &err), 0);
    assert_int_equal(tz, 19800);
    assert_int_equal(cron_tz_parse("-08:00", &tz, &err), 0);
    assert_int_equal(tz, -28800);
    const char *bad[] = {"", "+5:30", "+05:60", "+24:00", "05:30", "Europe/Paris", "+05:30x"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ig_error_clear(&err);
        assert_int_equal(cron_tz_parse(bad[i], &tz, &err), -EINVAL);
        assert_non_null(strstr(err.message, "time zone"));
    }
}

static void check_prev(const char *schedule, const char *when, const char *expected)
{
    struct cron_schedule s = parse_ok(schedule);
    int64_t prev;
    assert_int_equal(cron_prev(&s, at(when), 0, &prev), 0);
    if (prev != at(expected))
        fail_msg("'%s' at or before %s: got %lld", schedule, when, (long long)prev);
}

static void test_prev_and_due(void **state)
{
    check_prev("0 0 31 * *", "2026-05-15 12:00", "2026-03-31 00:00");
    check_prev("0 0 31 * *", "2026-03-31 00:00", "2026-03-31 00:00");
    check_prev("*/15 * * * *", "2026-11-28 10:14:59", "2026-11-28 10:00");
    check_prev("0 0 29 2 *", "2104-02-28 00:00", "2096-02-29 00:00");
    check_prev("0 0 13 * MON", "2026-01-18 00:00", "2026-01-13 00:00");
    check_prev("@every 1m", "2026-11-28 10:00:59", "2026-11-28 10:00");
    check_prev("@weekly", "2026-11-28 23:59", "2026-11-22 00:00");

    struct cron_schedule daily = parse_ok("@daily"), minutely = parse_ok("@every 1m");
    int64_t slot = 0;
    /* Not due: nothing has come up since the last run, or the clock is behind it. */
    assert_int_equal(cron_due(&daily, at("2026-11-28 00:00"), at("2026-11-28 03:00"), 0, &slot), 0);
    assert_int_equal(cron_due(&daily, at("2026-11-28 00:00"), at("2026-11-27 03:00"), 0, &slot), 0);
    assert_int_equal(cron_due(&daily, at("2026-11-28 00:00"), at("2026-11-28 00:00"), 0, &slot), 0);
    /* Due exactly at the fire time. */
    assert_int_equal(cron_due(&daily, at("2026-11-27 00:00"), at("2026-11-28 00:00"), 0, &slot), 1);
    assert_int_equal(slot, at("2026-11-28 00:00"));
    /* Down for three days: one make-up run, for the latest slot. */
    assert_int_equal(cron_due(&daily, at("2026-11-25 00:00"), at("2026-11-28 03:00"), 0, &slot), 1);
    assert_int_equal(slot, at("2026-11-28 00:00"));
    /* A day of "@every 1m" missed is one run too, and after it nothing is due until the next
     * minute. */
    assert_int_equal(
        cron_due(&minutely, at("2026-11-27 10:00"), at("2026-11-28 10:05:30"), 0, &slot), 1);
    assert_int_equal(slot, at("2026-11-28 10:05"));
    assert_int_equal(
        cron_due(&minutely, at("2026-11-28 10:05:30"), at("2026-11-28 10:05:59"), 0, &slot), 0);
    /* A schedule created between slots does not fire for the slot before it existed. */
    assert_int_equal(cron_due(&daily, at("2026-11-28 04:00"), at("2026-11-28 05:00"), 0, &slot), 0);
}

static void check_error(const char *text, const char *part1, const char *part2)
{
    struct cron_schedule s = {.kind = CRON_EVERY, .every_s = 12345}, before = s;
    struct ig_error err = {};
    int r = cron_parse(text, &s, &err);
    if (r != -EINVAL || !strstr(err.message, part1) || (part2 && !strstr(err.message, part2)))
        fail_msg("'%s': expected an error mentioning '%s' '%s', got %d: %s", text, part1,
                 part2 ? part2 : "", r, err.message);
    /* ret is written only on success. */
    assert_memory_equal(&s, &before, sizeof(s));
}

static void test_errors(void **state)
{
    struct ig_error err = {};
    struct cron_schedule s;
    assert_int_equal(cron_parse(NULL, &s, &err), -EINVAL);

    check_error("", "expected 5 fields", "found 0");
    check_error("* * * *", "expected 5 fields", "found 4");
    check_error("* * * * * *", "expected 5 fields", "more than 5");
    check_error("60 * * * *", "minute field", "out of range 0-59");
    check_error("* 24 * * *", "hour field", "out of range 0-23");
    check_error("* * 0 * *", "day-of-month field", "out of range 1-31");
    check_error("* * 32 * *", "day-of-month field", "out of range 1-31");
    check_error("* * * 0 *", "month field", "out of range 1-12");
    check_error("* * * 13 *", "month field", "out of range 1-12");
    check_error("* * * * 8", "day-of-week field", "out of range 0-7");
    check_error("5-1 * * * *", "minute field", "backwards");
    check_error("* * * * SAT-SUN", "day-of-week field", "backwards");
    check_error("*/0 * * * *", "minute field", "step 0");
    check_error("*/61 * * * *", "minute field", "step 61");
    check_error("* */25 * * *", "hour field", "step 25");
    check_error("*/ * * * *", "minute field", "step needs a number");
    check_error("1,,2 * * * *", "minute field", "empty list element");
    check_error(",1 * * * *", "minute field", "empty list element");
    check_error("1, * * * *", "minute field", "empty list element");
    check_error("a * * * *", "minute field", "a number");
    check_error("MON * * * *", "minute field", "a number");
    check_error("* * * FOO *", "month field", "month name");
    check_error("* * * MON *", "month field", "month name");
    check_error("* * * * JAN", "day-of-week field", "day name");
    check_error("* * * * MONDAY", "day-of-week field", "unexpected 'D'");
    check_error("1-* * * * *", "minute field", "a number");
    check_error("1-5-7 * * * *", "minute field", "unexpected '-'");
    check_error("** * * * *", "minute field", "unexpected '*'");
    check_error("0001 * * * *", "minute field", "too long");
    check_error("-1 * * * *", "minute field", "a number");
    /* Schedules that could never run. */
    check_error("0 0 30 2 *", "never", NULL);
    check_error("0 0 31 4,6,9,11 *", "never", NULL);
    /* Macros. */
    check_error("@reboot", "unknown macro", NULL);
    check_error("@hourly 5", "unexpected text after @hourly", NULL);
    check_error("@every", "unknown macro", NULL);
    check_error("@every ", "needs a duration", NULL);
    check_error("@every 0s", "at least 1s", NULL);
    check_error("@every 0h0m", "at least 1s", NULL);
    check_error("@every 5", "needs a unit", NULL);
    check_error("@every 5x", "needs a unit", NULL);
    check_error("@every 1.5h", "needs a unit", NULL);
    check_error("@every 1d", "needs a unit", NULL);
    check_error("@every h", "expected a number", NULL);
    check_error("@every 1h junk", "unexpected text", NULL);
    check_error("@every 8785h", "366 days", NULL);
    check_error("@every 99999999999s", "too long", NULL);

    /* Spacing and case are free. */
    parse_ok("\t0  0\t* *  *");
    parse_ok("0 0 * jan-DEC mOn-fRi");
    parse_ok("0 0 31 2 MON");
    parse_ok("0-59 0-23 1-31 1-12 0-7");
}

/* An oracle: walk minute by minute with libc's calendar and compare. */
static bool o_business(const struct tm *t)
{
    return t->tm_min % 15 == 0 && t->tm_hour >= 9 && t->tm_hour <= 17 && t->tm_wday >= 1 &&
           t->tm_wday <= 5;
}
static bool o_friday13(const struct tm *t)
{
    return t->tm_min == 0 && t->tm_hour == 0 && (t->tm_mday == 13 || t->tm_wday == 5);
}
static bool o_odd_days(const struct tm *t)
{
    return t->tm_min == 30 && t->tm_hour == 2 && t->tm_mday % 2 == 1;
}
static bool o_first_week_or_monday(const struct tm *t)
{
    return t->tm_min == 0 && t->tm_hour == 22 && (t->tm_mday <= 7 || t->tm_wday == 1);
}
static bool o_sunday(const struct tm *t)
{
    return t->tm_min == 5 && t->tm_hour == 4 && t->tm_wday == 0;
}

static void test_oracle(void **state)
{
    static const struct {
        const char *schedule;
        bool (*match)(const struct tm *);
    } cases[] = {
        {"*/15 9-17 * * MON-FRI", o_business},
        {"0 0 13 * FRI", o_friday13},
        {"30 2 */2 * *", o_odd_days},
        {"0 22 1-7 * 1", o_first_week_or_monday},
        {"5 4 * * sun", o_sunday},
    };
    uint64_t rnd = 88172645463325252ull;
    for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
        struct cron_schedule s = parse_ok(cases[c].schedule);
        for (int i = 0; i < 12; i++) {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 7;
            rnd ^= rnd << 17;
            /* Between 1990 and 2060. */
            int64_t after = at("1990-01-01 00:00") + (int64_t)(rnd % (70ull * 365 * 86400));
            int64_t next, prev, want = -1;
            for (int64_t t = (after / 60 + 1) * 60; t < after + 40 * 86400; t += 60) {
                time_t tt = (time_t)t;
                struct tm tm;
                gmtime_r(&tt, &tm);
                if (cases[c].match(&tm)) {
                    want = t;
                    break;
                }
            }
            assert_true(want > 0);
            assert_int_equal(cron_next(&s, after, 0, &next), 0);
            if (next != want) {
                char a[32], g[32], w[32];
                show(after, a);
                show(next, g);
                show(want, w);
                fail_msg("'%s' after %s: got %s, oracle %s", cases[c].schedule, a, g, w);
            }
            /* prev is next's mirror image. */
            assert_int_equal(cron_prev(&s, next, 0, &prev), 0);
            assert_int_equal(prev, next);
            assert_int_equal(cron_prev(&s, next - 1, 0, &prev), 0);
            assert_true(prev <= after);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_fields),  cmocka_unit_test(test_macros),
        cmocka_unit_test(test_every),        cmocka_unit_test(test_zones),
        cmocka_unit_test(test_prev_and_due), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_oracle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
