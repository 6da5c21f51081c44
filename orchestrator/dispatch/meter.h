/* The accountant's readings of a container's cgroup for one attempt (records/accountant.h
 * computes and records what they mean). On the hot path, loop thread: at hand-off the CPU and
 * OOM counters (the peak is reset, not read), at the result those and the peak. */
#pragma once

#include "container/cgroup.h"
#include "records/accountant.h"

/* At hand-off: resets the peak if reset_peak (pass false when other invocations run in the same
 * container: a reset would cut their peaks) and the host allows it, then reads the counters.
 * g may be NULL (no cgroup: nothing is measured but wall time). */
void meter_begin(struct acct_attempt *a, struct cg_group *g, bool reset_peak, uint32_t memory_mb,
                 uint64_t init_us);
/* At the result (or just before the container is killed): the second reading. */
void meter_end(struct acct_attempt *a, struct cg_group *g);
/* The end reading itself (CPU, OOM kills, the peak), for a container that ran several attempts
 * (the pool's kill reads once). */
void meter_read(struct cg_group *g, struct acct_reading *ret, bool *ret_ok);
