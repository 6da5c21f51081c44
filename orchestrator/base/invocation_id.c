#include "base/invocation_id.h"

#include <string.h>

static const char *const status_names[] = {"queued", "running", "succeeded", "failed", "dead"};

const char *inv_status_name(enum inv_status s)
{
    return (size_t)s < ARRAY_SIZE(status_names) ? status_names[s] : "unknown";
}

int inv_status_parse(const char *s, enum inv_status *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(status_names); i++)
        if (streq(s, status_names[i])) {
            *ret = (enum inv_status)i;
            return 0;
        }
    return -EINVAL;
}

void inv_id_new(char ret[INV_ID_LEN + 1])
{
    /* The random part comes from a per-thread pool filled by getrandom 64 ids at a time: one
     * system call per 64 invocations rather than one each. */
    enum { RANDOM_PART = INV_ID_LEN / 2 - 6 };
    static _Thread_local unsigned char pool[64 * RANDOM_PART];
    static _Thread_local size_t used = sizeof(pool);
    if (used == sizeof(pool)) {
        random_bytes(pool, sizeof(pool));
        used = 0;
    }
    unsigned char raw[INV_ID_LEN / 2];
    uint64_t ms = wall_usec() / 1000;
    for (int i = 0; i < 6; i++)
        raw[i] = (unsigned char)(ms >> (8 * (5 - i)));
    memcpy(raw + 6, pool + used, RANDOM_PART);
    used += RANDOM_PART;
    hex_encode(raw, sizeof(raw), ret);
}

bool inv_id_valid(const char *s)
{
    return hex_valid(s, INV_ID_LEN);
}
