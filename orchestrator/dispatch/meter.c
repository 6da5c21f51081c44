#include "dispatch/meter.h"

/* Reads what is asked (CG_STAT_*): a figure not asked for is 0. */
static void read_some(struct cg_group *g, unsigned want, struct acct_reading *ret, bool *ret_ok)
{
    struct cg_stats st;
    *ret_ok = g && cg_read_some(g, want, &st) == 0;
    *ret = *ret_ok ? (struct acct_reading){.cpu_usec = st.cpu_usec,
                                           .memory_peak_bytes = st.memory_peak_bytes,
                                           .oom_kills = st.oom_kills}
                   : (struct acct_reading){0};
}

/* What an attempt is computed from (accountant_compute): CPU and OOM kills at both ends, the
 * peak at the end. The current usage is never needed, nor the peak at hand-off (it was just
 * reset, or is the container's since it began, which the end reading says again). On a hybrid
 * host that is cgroup2 cpu.stat and v1 memory.oom_control at hand-off (after the peak's reset,
 * memory.max_usage_in_bytes and memory.memsw.max_usage_in_bytes), and those two and
 * memory.max_usage_in_bytes at the result: five preads and two pwrites, all on open fds. */
#define BEGIN_WANT (CG_STAT_CPU | CG_STAT_OOM)
#define END_WANT   (CG_STAT_CPU | CG_STAT_OOM | CG_STAT_PEAK)

void meter_read(struct cg_group *g, struct acct_reading *ret, bool *ret_ok)
{
    read_some(g, END_WANT, ret, ret_ok);
}

void meter_begin(struct acct_attempt *a, struct cg_group *g, bool reset_peak, uint32_t memory_mb,
                 uint64_t init_us)
{
    *a = (struct acct_attempt){.handed_off = true, .memory_mb = memory_mb, .init_us = init_us};
    /* The runtime is blocked reading its socket until the invocation is written: resetting the
     * peak now makes the next reading this attempt's own (memory.peak's per-fd reset since 6.12;
     * memory.max_usage_in_bytes on v1 resets to the current usage). */
    a->peak_reset = g && reset_peak && cg_reset_peak(g) == 0;
    read_some(g, BEGIN_WANT, &a->begin, &a->begin_ok);
}

void meter_end(struct acct_attempt *a, struct cg_group *g)
{
    meter_read(g, &a->end, &a->end_ok);
}
