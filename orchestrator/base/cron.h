/* Schedules for a manifest's `schedule`: 5-field cron as crontab(5) describes it (Vixie cron and
 * cronie), the @yearly ... @hourly macros, and `@every DURATION`. Pure: times are seconds since
 * the epoch passed in by the caller, zones are fixed offsets from UTC (so there is no DST). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"

#define CRON_EVERY_MAX (366 * 86400) /* the longest @every interval, in seconds */

enum cron_kind {
    CRON_FIELDS, /* minute hour day-of-month month day-of-week */
    CRON_EVERY,  /* @every DURATION */
};

struct cron_schedule {
    enum cron_kind kind;
    uint64_t minutes;   /* bit m for minute m, 0-59 */
    uint32_t hours;     /* bit h for hour h, 0-23 */
    uint32_t days;      /* bit d for day of month d, 1-31 */
    uint16_t months;    /* bit m for month m, 1-12 */
    uint8_t weekdays;   /* bit d for day of week d, 0 (Sunday) - 6; 7 is folded into 0 */
    bool days_star;     /* the day-of-month field began with '*' */
    bool weekdays_star; /* the day-of-week field began with '*' */
    uint32_t every_s;   /* CRON_EVERY: the interval in seconds, >= 1 */
};

/* Parses a schedule:
 *   "M H DOM MON DOW" with, in each field, '*', N, A-B, '*' or A-B or A followed by /STEP, and
 *   comma-separated lists of those; months JAN-DEC and days SUN-SAT by name in any case; 0 and 7
 *   are both Sunday;
 *   @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly;
 *   @every DURATION: units h, m and s, as "30s", "5m", "1h30m"; at least 1s.
 * When both day fields are restricted (neither begins with '*') a day matches if either does,
 * otherwise both must (crontab(5)). A schedule that can never fire ("0 0 30 2 *") is refused.
 * Returns 0 or -EINVAL with a message naming the field; *ret is written only on success. */
int cron_parse(const char *text, struct cron_schedule *ret, struct ig_error *err);

/* The first fire time strictly after `after`, with the schedule read in the zone tz_offset_s
 * seconds east of UTC (0 for UTC). Cron fields fire at second 0 of a matching minute; @every D
 * fires at the instants that are whole multiples of D since 1970-01-01T00:00 in that zone, so a
 * restart does not shift its phase and "@every 1h" fires on the hour. Returns 0, or -ERANGE for
 * an instant beyond about 300,000 years or no answer within thousands of years (which the
 * schedules cron_parse accepts never reach: the rarest, a weekday that must fall on the 1st of
 * February, recurs within a few decades). */
int cron_next(const struct cron_schedule *s, int64_t after, int32_t tz_offset_s, int64_t *ret);

/* The last fire time at or before `at`. Returns 0 or -ERANGE. */
int cron_prev(const struct cron_schedule *s, int64_t at, int32_t tz_offset_s, int64_t *ret);

/* Whether a run is due at `now` given the last run at `last_run`: 1 when at least one fire time
 * lies in (last_run, now], with *ret_slot the latest such time, else 0. However many fire times
 * were missed (the daemon was down for a day of "@every 1m"), the caller makes up for them with
 * one run, for the latest slot, and then waits for cron_next(s, now): runs missed while the
 * daemon was down are made up at most once. A new schedule passes its creation time as last_run,
 * so it does not fire for slots before it existed. Returns 1, 0 or -ERANGE. */
int cron_due(const struct cron_schedule *s, int64_t last_run, int64_t now, int32_t tz_offset_s,
             int64_t *ret_slot);

/* Parses a zone for schedules: "UTC", "Z", or a fixed offset "+05:30" / "-08:00" (up to 23:59).
 * Returns 0 or -EINVAL. */
int cron_tz_parse(const char *text, int32_t *ret_offset_s, struct ig_error *err);
