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
    unsigned char raw[INV_ID_LEN / 2];
    random_bytes(raw, sizeof(raw));
    hex_encode(raw, sizeof(raw), ret);
}

bool inv_id_valid(const char *s)
{
    return hex_valid(s, INV_ID_LEN);
}
