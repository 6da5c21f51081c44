/* Cron schedules. The field syntax and the day-of-month / day-of-week rule follow crontab(5) of
 * Vixie cron and cronie, the crons Linux hosts run, so a schedule means here what it means in a
 * crontab. */
#include "base/cron.h"

#include <string.h>
#include <strings.h>

struct field {
    const char *name;
    int min, max;
    const char *const *names; /* names[i] stands for min + i, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    /* crontab(5): "0-7 (0 or 7 is Sunday, or use names)". */
    {"day-of-week", 0, 7, day_names},
};

static const struct {
    const char *name, *fields;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Reads a number or (in fields that have them) a name at *p. */
static int read_value(const struct field *f, const char *field_text, const char **p, int *ret,
                      struct ig_error *err)
{
    const char *s = *p;
    if (*s >= '0' && *s <= '9') {
        int v = 0, n = 0;
        for (; *s >= '0' && *s <= '9'; s++, n++) {
            if (n >= 3)
                return ig_error_set(err, EINVAL, "%s field '%s': number too long", f->name,
                                    field_text);
            v = v * 10 + (*s - '0');
        }
        if (v < f->min || v > f->max)
            return ig_error_set(err, EINVAL, "%s field '%s': %d is out of range %d-%d", f->name,
                                field_text, v, f->min, f->max);
        *ret = v;
        *p = s;
        return 0;
    }
    if (f->names)
        for (int i = 0; f->names[i]; i++)
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *ret = f->min + i;
                *p = s + 3;
                return 0;
            }
    return ig_error_set(err, EINVAL, "%s field '%s': expected %s at '%s'", f->name, field_text,
                        f->names == month_names ? "a number or a month name (JAN-DEC)"
                        : f->names == day_names ? "a number or a day name (SUN-SAT)"
                                                : "a number",
                        s);
}

/* Parses one field (a comma-separated list) into a bit set. */
static int parse_field(const struct field *f, const char *text, uint64_t *ret_bits, bool *ret_star,
                       struct ig_error *err)
{
    uint64_t bits = 0;
    const char *p = text;
    int r;

    for (;;) {
        int lo, hi, step = 1;
        bool range = false;
        if (*p == ',' || *p == '\0')
            return ig_error_set(err, EINVAL, "%s field '%s': empty list element", f->name, text);
        if (*p == '*') {
            lo = f->min;
            hi = f->max;
            range = true;
            p++;
        } else {
            if ((r = read_value(f, text, &p, &lo, err)) < 0)
                return r;
            hi = lo;
            if (*p == '-') {
                p++;
                if ((r = read_value(f, text, &p, &hi, err)) < 0)
                    return r;
                if (hi < lo)
                    return ig_error_set(err, EINVAL, "%s field '%s': range %d-%d runs backwards",
                                        f->name, text, lo, hi);
                range = true;
            }
        }
        if (*p == '/') {
            p++;
            if (*p < '0' || *p > '9')
                return ig_error_set(err, EINVAL, "%s field '%s': a step needs a number", f->name,
                                    text);
            step = 0;
            for (int n = 0; *p >= '0' && *p <= '9'; p++, n++) {
                if (n >= 3)
                    return ig_error_set(err, EINVAL, "%s field '%s': step too long", f->name, text);
                step = step * 10 + (*p - '0');
            }
            if (step < 1 || step > f->max - f->min + 1)
                return ig_error_set(err, EINVAL, "%s field '%s': step %d is out of range 1-%d",
                                    f->name, text, step, f->max - f->min + 1);
            /* "A/N" means A through the field's end, every N (as cronie reads it). */
            if (!range)
                hi = f->max;
        }
        if (*p != ',' && *p != '\0')
            return ig_error_set(err, EINVAL, "%s field '%s': unexpected '%c'", f->name, text, *p);
        for (int v = lo; v <= hi; v += step)
            bits |= 1ull << v;
        if (*p == '\0')
            break;
        p++;
    }
    *ret_bits = bits;
    /* crontab(5) calls a field unrestricted when it begins with '*' ("*" or "*\/2"). */
    *ret_star = text[0] == '*';
    return 0;
}

static int parse_every(const char *text, struct cron_schedule *ret, struct ig_error *err)
{
    const char *p = text;
    uint64_t total = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p)
        return ig_error_set(err, EINVAL, "@every needs a duration, such as 30s, 5m or 1h30m");
    while (*p && *p != ' ' && *p != '\t') {
        uint64_t n = 0;
        int digits = 0;
        for (; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 10)
                n = n * 10 + (uint64_t)(*p - '0');
            else
                return ig_error_set(err, EINVAL, "@every '%s': number too long", text);
        if (digits == 0)
            return ig_error_set(err, EINVAL, "@every '%s': expected a number at '%s'", text, p);
        switch (*p) {
        case 'h':
            total += n * 3600;
            break;
        case 'm':
            total += n * 60;
            break;
        case 's':
            total += n;
            break;
        default:
            return ig_error_set(err, EINVAL,
                                "@every '%s': a number needs a unit, h, m or s, at '%s'", text, p);
        }
        p++;
        if (total > CRON_EVERY_MAX)
            return ig_error_set(err, EINVAL, "@every '%s': longer than 366 days", text);
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return ig_error_set(err, EINVAL, "@every '%s': unexpected text after the duration", text);
    if (total < 1)
        return ig_error_set(err, EINVAL, "@every '%s': the interval must be at least 1s", text);
    *ret = (struct cron_schedule){.kind = CRON_EVERY, .every_s = (uint32_t)total};
    return 0;
}

int cron_parse(const char *text, struct cron_schedule *ret, struct ig_error *err)
{
    struct cron_schedule s = {.kind = CRON_FIELDS};
    char buf[256], *f[6];
    uint64_t bits[5];
    bool star[5];
    int n = 0, r;

    if (!text)
        return ig_error_set(err, EINVAL, "schedule is missing");
    while (*text == ' ' || *text == '\t')
        text++;
    if (text[0] == '@') {
        if (strncasecmp(text, "@every", 6) == 0 && (text[6] == ' ' || text[6] == '\t'))
            return parse_every(text + 6, ret, err);
        size_t len = strcspn(text, " \t");
        for (size_t i = 0; i < ARRAY_SIZE(macros); i++)
            if (strlen(macros[i].name) == len && strncasecmp(text, macros[i].name, len) == 0) {
                const char *rest = text + len;
                while (*rest == ' ' || *rest == '\t')
                    rest++;
                if (*rest)
                    return ig_error_set(err, EINVAL, "schedule '%s': unexpected text after %s",
                                        text, macros[i].name);
                return cron_parse(macros[i].fields, ret, err);
            }
        return ig_error_set(err, EINVAL,
                            "schedule '%.64s': unknown macro (use @yearly, @annually, @monthly, "
                            "@weekly, @daily, @midnight, @hourly or @every DURATION)",
                            text);
    }
    if (strlen(text) >= sizeof(buf))
        return ig_error_set(err, EINVAL, "schedule is longer than %zu characters", sizeof(buf) - 1);
    strcpy(buf, text);
    for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        if (n == 6)
            break;
        f[n++] = tok;
    }
    if (n != 5)
        return ig_error_set(err, EINVAL,
                            "schedule '%.64s': expected 5 fields (minute hour day-of-month month "
                            "day-of-week) or a macro, found %s%d",
                            text, n == 6 ? "more than " : "", n == 6 ? 5 : n);
    for (int i = 0; i < 5; i++)
        if ((r = parse_field(&fields[i], f[i], &bits[i], &star[i], err)) < 0)
            return r;

    s.minutes = bits[0];
    s.hours = (uint32_t)bits[1];
    s.days = (uint32_t)bits[2];
    s.months = (uint16_t)bits[3];
    s.weekdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7F);
    s.days_star = star[2];
    s.weekdays_star = star[4];

    /* With the day of week unrestricted, a day of month must exist in some chosen month. */
    if (s.weekdays_star) {
        bool possible = false;
        for (unsigned m = 1; m <= 12 && !possible; m++)
            for (int d = 1; d <= days_in_month(2000, m) && !possible; d++) /* a leap year */
                possible = (s.months >> m & 1) && (s.days >> d & 1) && (s.weekdays != 0);
        if (!possible)
            return ig_error_set(err, EINVAL,
                                "schedule '%s': the day-of-month and month fields never meet, "
                                "so it would never run",
                                text);
    }
    *ret = s;
    return 0;
}

static bool day_matches(const struct cron_schedule *s, unsigned d, int64_t days)
{
    unsigned wd = (unsigned)((days % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    bool dom = s->days >> d & 1, dow = s->weekdays >> wd & 1;
    /* crontab(5): "If both fields are restricted (i.e., do not start with a *), the command will
     * be run when either field matches the current time." */
    if (s->days_star || s->weekdays_star)
        return dom && dow;
    return dom || dow;
}

/* The search bound. Each step but the minute one jumps to the next hour, day or month, so a year
 * costs at most about 12 + 366 + 24 + 60 steps and this covers centuries; the rarest schedule
 * cron_parse accepts (a weekday on the 1st of one month, both day fields needing to match)
 * recurs within a few decades. */
#define STEPS_MAX 200000

/* Instants past this many seconds from the epoch (about 300,000 years) are refused before any
 * arithmetic on them could overflow. */
#define TIME_LIMIT 10000000000000ll

int cron_next(const struct cron_schedule *s, int64_t after, int32_t tz_offset_s, int64_t *ret)
{
    if (after > TIME_LIMIT || after < -TIME_LIMIT)
        return -ERANGE;
    int64_t local = after + tz_offset_s;

    if (s->kind == CRON_EVERY) {
        *ret = (floor_div(local, s->every_s) + 1) * s->every_s - tz_offset_s;
        return 0;
    }
    int64_t t = (floor_div(local, 60) + 1) * 60;
    for (int i = 0; i < STEPS_MAX; i++) {
        int64_t days = floor_div(t, 86400), y;
        int64_t secs = t - days * 86400;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        int hour = (int)(secs / 3600), minute = (int)(secs / 60 % 60);
        if (!(s->months >> m & 1))
            t = days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * 86400;
        else if (!day_matches(s, d, days))
            t = (days + 1) * 86400;
        else if (!(s->hours >> hour & 1))
            t = days * 86400 + (hour + 1) * 3600;
        else if (!(s->minutes >> minute & 1))
            t += 60;
        else {
            *ret = t - tz_offset_s;
            return 0;
        }
    }
    return -ERANGE;
}

int cron_prev(const struct cron_schedule *s, int64_t at, int32_t tz_offset_s, int64_t *ret)
{
    if (at > TIME_LIMIT || at < -TIME_LIMIT)
        return -ERANGE;
    int64_t local = at + tz_offset_s;

    if (s->kind == CRON_EVERY) {
        *ret = floor_div(local, s->every_s) * s->every_s - tz_offset_s;
        return 0;
    }
    int64_t t = floor_div(local, 60) * 60;
    for (int i = 0; i < STEPS_MAX; i++) {
        int64_t days = floor_div(t, 86400), y;
        int64_t secs = t - days * 86400;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        int hour = (int)(secs / 3600), minute = (int)(secs / 60 % 60);
        if (!(s->months >> m & 1))
            t = days_from_civil(y, m, 1) * 86400 - 60; /* the last minute of the month before */
        else if (!day_matches(s, d, days))
            t = days * 86400 - 60;
        else if (!(s->hours >> hour & 1))
            t = days * 86400 + hour * 3600 - 60;
        else if (!(s->minutes >> minute & 1))
            t -= 60;
        else {
            *ret = t - tz_offset_s;
            return 0;
        }
    }
    return -ERANGE;
}

int cron_due(const struct cron_schedule *s, int64_t last_run, int64_t now, int32_t tz_offset_s,
             int64_t *ret_slot)
{
    int64_t next, slot;
    int r;

    if (now <= last_run)
        return 0;
    if ((r = cron_next(s, last_run, tz_offset_s, &next)) < 0)
        return r;
    if (next > now)
        return 0;
    if ((r = cron_prev(s, now, tz_offset_s, &slot)) < 0)
        return r;
    *ret_slot = slot;
    return 1;
}

int cron_tz_parse(const char *text, int32_t *ret_offset_s, struct ig_error *err)
{
    int h, m;

    if (!text)
        return ig_error_set(err, EINVAL, "time zone is missing");
    if (strcasecmp(text, "UTC") == 0 || strcasecmp(text, "Z") == 0) {
        *ret_offset_s = 0;
        return 0;
    }
    if ((text[0] == '+' || text[0] == '-') && strlen(text) == 6 && text[1] >= '0' &&
        text[1] <= '9' && text[2] >= '0' && text[2] <= '9' && text[3] == ':' && text[4] >= '0' &&
        text[4] <= '9' && text[5] >= '0' && text[5] <= '9') {
        h = (text[1] - '0') * 10 + (text[2] - '0');
        m = (text[4] - '0') * 10 + (text[5] - '0');
        if (h <= 23 && m <= 59) {
            *ret_offset_s = (h * 3600 + m * 60) * (text[0] == '-' ? -1 : 1);
            return 0;
        }
    }
    return ig_error_set(
        err, EINVAL, "time zone '%.32s': use UTC or a fixed offset such as +05:30 or -08:00", text);
}
