#include "dispatch/meter.h"

static void read_fields(struct cg_group *g, unsigned fields, struct acct_reading *ret, bool *ret_ok)
{
    struct cg_stats st;
    *ret_ok = g && cg_read_stats(g, fields, &st) == 0;
    *ret = *ret_ok ? (struct acct_reading){.cpu_usec = st.cpu_usec,
                                           .memory_peak_bytes = st.memory_peak_bytes,
                                           .oom_kills = st.oom_kills}
                   : (struct acct_reading){0};
}

void meter_read(struct cg_group *g, struct acct_reading *ret, bool *ret_ok)
{
    read_fields(g, CG_STAT_CPU | CG_STAT_OOM | CG_STAT_MEMORY_PEAK, ret, ret_ok);
}

void meter_begin(struct acct_attempt *a, struct cg_group *g, bool reset_peak, uint32_t memory_mb,
                 uint64_t init_us)
{
    *a = (struct acct_attempt){.handed_off = true, .memory_mb = memory_mb, .init_us = init_us};
    /* The runtime is blocked reading its socket until the invocation is written: resetting the
     * peak now makes the next reading this attempt's own (memory.peak's per-fd reset since 6.12;
     * memory.max_usage_in_bytes on v1 resets to the current usage). */
    a->peak_reset = g && reset_peak && cg_reset_peak(g) == 0;
    read_fields(g, CG_STAT_CPU | CG_STAT_OOM, &a->begin, &a->begin_ok);
}

void meter_end(struct acct_attempt *a, struct cg_group *g)
{
    meter_read(g, &a->end, &a->end_ok);
}
