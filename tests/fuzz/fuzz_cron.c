/* A manifest's `schedule`: the input is the text cron_parse gets (cut at a NUL, as a JSON string
 * reaches it). A refusal must say why. An accepted schedule is then asked for fire times around
 * a fixed instant and one derived from the input, in UTC and in a zone derived from the input,
 * and the answers must agree with each other: cron_parse promises that what it accepts always
 * has a next fire time (the daemon would otherwise never run the function or spin on it). */
#include <string.h>

#include "base/cron.h"
#include "fuzz.h"

/* 2026-11-28T00:00:00Z */
#define FUZZ_NOW 1795824000ll
/* Instants derived from the input stay within about 3,000 years of the epoch, where cron_next
 * must always answer. */
#define FUZZ_SPAN 100000000000ll

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void check_at(const struct cron_schedule *s, int64_t after, int32_t tz)
{
    int64_t next, prev, again, slot;

    fuzz_check(cron_next(s, after, tz, &next) == 0, "no fire time after %lld (tz %d)",
               (long long)after, tz);
    fuzz_check(next > after, "next %lld is not after %lld", (long long)next, (long long)after);
    if (s->kind == CRON_FIELDS)
        fuzz_check((next + tz) % 60 == 0, "next %lld is not on a minute", (long long)next);
    else
        fuzz_check(next - after <= s->every_s, "@every %u: next %lld after %lld", s->every_s,
                   (long long)next, (long long)after);
    /* A fire time is its own latest fire time. */
    fuzz_check(cron_prev(s, next, tz, &again) == 0 && again == next,
               "cron_prev(%lld) = %lld, not itself", (long long)next, (long long)again);
    /* The latest fire time at or before `after` is followed by next, with none between. */
    fuzz_check(cron_prev(s, after, tz, &prev) == 0, "no fire time at or before %lld",
               (long long)after);
    fuzz_check(prev <= after, "prev %lld is after %lld", (long long)prev, (long long)after);
    fuzz_check(cron_next(s, prev, tz, &again) == 0 && again == next,
               "next after prev %lld is %lld, not %lld", (long long)prev, (long long)again,
               (long long)next);
    /* Due exactly at next, with next as the slot; not due a second before. */
    fuzz_check(cron_due(s, after, next, tz, &slot) == 1 && slot == next, "not due at %lld",
               (long long)next);
    fuzz_check(cron_due(s, after, next - 1, tz, &slot) == 0, "due before %lld", (long long)next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cron_schedule s;
    struct ig_error err = {};

    if (size > 4096)
        return 0;
    _cleanup_free_ char *text = strndup((const char *)data, size);
    fuzz_check(text, "out of memory");
    if (cron_parse(text, &s, &err) < 0) {
        fuzz_check(err.code == EINVAL && err.message[0], "a refusal without a reason");
        return 0;
    }
    if (s.kind == CRON_EVERY)
        fuzz_check(s.every_s >= 1 && s.every_s <= CRON_EVERY_MAX, "@every %u", s.every_s);
    else
        fuzz_check(s.minutes && s.hours && s.days && s.months && s.weekdays,
                   "an empty field was accepted");

    uint64_t h = fnv1a(data, size);
    int64_t derived = (int64_t)(h % (2 * FUZZ_SPAN)) - FUZZ_SPAN;
    /* Whole minutes, as cron_tz_parse gives them: -23:59 to +23:59. */
    int32_t tz = ((int32_t)((h >> 40) % (2 * 1439 + 1)) - 1439) * 60;
    check_at(&s, FUZZ_NOW, 0);
    check_at(&s, derived, tz);
    return 0;
}
