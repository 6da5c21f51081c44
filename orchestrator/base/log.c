#include "base/log.h"

#include <string.h>
#include <time.h>

static enum log_level min_level = LOG_LEVEL_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    min_level = level;
}

int log_level_parse(const char *name, enum log_level *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
        if (streq(name, level_names[i])) {
            *ret = (enum log_level)i;
            return 0;
        }
    return -EINVAL;
}

void log_full(enum log_level level, const char *msg, const char *kv, ...)
{
    char line[4096], stamp[32];
    struct timespec ts;
    struct tm tm;
    size_t n;

    if (level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = (size_t)snprintf(line, sizeof(line), "time=%s.%03ldZ level=%s msg=\"%s\"", stamp,
                         ts.tv_nsec / 1000000, level_names[level], msg);
    if (kv[0] && n < sizeof(line) - 2) {
        va_list ap;
        line[n++] = ' ';
        va_start(ap, kv);
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, kv, ap);
        va_end(ap);
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so lines from several processes do not interleave. */
    (void)!write(STDERR_FILENO, line, n);
}
