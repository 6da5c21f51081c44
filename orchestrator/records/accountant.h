/* The accountant: what each invocation attempt really used, from two readings of its container's
 * cgroup (dispatch/meter.c takes them), written to a usage ledger in ignis.db, and summed for GET
 * /v1/usage.
 *
 * Measurement (docs/architecture.md "Accountant"): one reading at hand-off (after resetting the
 * memory peak where the kernel allows it) and one when the result arrives; the attempt's CPU
 * time and OOM kills are the deltas, its peak memory the second reading. Wall time is monotonic,
 * from hand-off to result; billed ms is wall time rounded up to the next millisecond. Container
 * start and runtime init are recorded (init_us, on the cold attempt) and never billed.
 *
 * The ledger is one row per attempt in `usage`; a trigger on it keeps the per-function,
 * per-version, per-host, per-minute rollup `usage_minute`, in the same transaction: on SQLite
 * for each row, on PostgreSQL once per statement over the rows it inserted, and a journal batch's
 * rows are one statement there (journal_submit_row). Writes go through the journal (batched, off
 * the loop); reads for the API are queries on the loop thread's connection.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "records/journal.h"
#include "base/loop.h"

/* What one reading of a container's cgroup gives the accountant. */
struct acct_reading {
    uint64_t cpu_usec;          /* user + system, cumulative */
    uint64_t memory_peak_bytes; /* since the last reset of the peak */
    uint64_t oom_kills;         /* cumulative */
};

/* One attempt's measurements, kept in the invocation between hand-off and result. */
struct acct_attempt {
    bool handed_off;    /* meter_begin ran: the attempt reached a container */
    bool begin_ok;      /* the hand-off reading worked */
    bool end_ok;        /* the result reading worked */
    bool peak_reset;    /* the peak was reset at hand-off (else it is the container's so far) */
    uint32_t memory_mb; /* the container's limit: what GB-s are billed on */
    uint64_t init_us;   /* cold attempt: the container's spawn → ready; 0 when warm */
    struct acct_reading begin, end;
};

/* What an attempt cost, from its measurements. */
struct acct_usage {
    uint64_t wall_us, cpu_us, mem_peak_bytes, oom_kills;
    int64_t billed_ms;
    double gb_s;
    uint32_t memory_mb;
    /* µs, an integer as the ledger keeps it (a double of ms would lose a µs on the way back). */
    uint64_t init_us; /* 0 when warm */
    bool peak_reset;
};

/* ---- pure ---- */

/* Wall time rounded up to the next whole millisecond (0 stays 0). */
int64_t accountant_billed_ms(uint64_t wall_us);
/* memory_mb / 1024 × billed_ms / 1000. */
double accountant_gb_s(uint32_t memory_mb, int64_t billed_ms);
/* The usage of an attempt that ran for wall_us. A counter that went backwards (a reading that
 * failed, a container replaced) counts as 0, never as a huge unsigned delta. */
void accountant_compute(const struct acct_attempt *a, uint64_t wall_us, struct acct_usage *ret);
/* Lambda's REPORT line ("REPORT RequestId: ID\tDuration: 2.29 ms\tBilled Duration: 3 ms\t
 * CPU: 1.52 ms\tMemory Size: 128 MB\tMax Memory Used: 39 MB[\tInit Duration: 120.50 ms]\t
 * Version: 3"), without a newline, into buf (truncated to len). Version, the function's version
 * that ran (which Lambda prints on its START line), comes last, so the fields before it keep
 * their places for readers of the older line. Returns what snprintf returns. */
int accountant_report_line(char *buf, size_t len, const char *id, int64_t version,
                           const struct acct_usage *u);

/* ---- the ledger ---- */

struct acct_record {
    const char *id;
    int attempt;
    const char *function;
    int64_t version;
    int64_t start_wall_us; /* hand-off, wall clock: the minute it is rolled up into */
    const char *status;    /* the attempt's outcome: ok, error, crash, timeout, init */
    bool cold;
    const char *host; /* the host that ran it (its id; "" when unknown) */
    const struct acct_usage *usage;
};

/* Queues the attempt's row (the rollup follows by trigger), keyed (id, attempt): an attempt is
 * billed once, however often its row is written. */
int accountant_record(struct journal *j, const struct acct_record *r);
/* Deletes rows that started before rows_before_us and rollups before rollup_before_us (the
 * daemon's retention, retention.h). */
int accountant_purge(struct journal *j, int64_t rows_before_us, int64_t rollup_before_us);

/* ---- GET /v1/usage ---- */

enum acct_group { ACCT_GROUP_NONE, ACCT_GROUP_MINUTE, ACCT_GROUP_HOUR, ACCT_GROUP_DAY };

struct acct_query {
    const char *function;     /* NULL: every function */
    int64_t since_s, until_s; /* unix seconds; [since, until), whole minutes */
    enum acct_group group;
    bool by_version; /* each function's figures per version too (`versions`) */
};

/* A time from a query: "1h"/"30m"/"7d"/"45s" (that long before now_s), unix seconds, or
 * "YYYY-MM-DDTHH:MM:SSZ". Pure. */
int accountant_parse_time(const char *text, int64_t now_s, int64_t *ret_s);
int accountant_parse_group(const char *text, enum acct_group *ret);
struct store;

/* The usage per function (and per bucket when grouped, per version when asked) and the totals,
 * from the rollups, as GET /v1/usage reports it (docs/api.md "Usage"). */
int accountant_query(struct store *store, const struct acct_query *q, cJSON **ret,
                     struct ig_error *err);
