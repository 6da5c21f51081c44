/* Invocations: the retry policy (pure) and their durable records in ignis.db (their ids and
 * states are base/invocation_id.h).
 * Writes go through the journal (group commit, off the loop); reads are single-row lookups on
 * the loop thread's connection. */
#pragma once

#include <cjson/cJSON.h>

#include "base/invocation_id.h"
#include "records/journal.h"
#include "base/util.h"

struct store;

/* An alias name's longest (functions/registry.h: [a-z][a-z0-9-]{0,62}). */
#define INV_ALIAS_MAX 63

/* Exponential backoff with jitter for retry number `attempt` (1 = the first retry): the delay
 * doubles from base_ms up to cap_ms, and the second half of it is random (from `random`), so
 * retries of a burst that failed together spread out. Pure. */
uint64_t inv_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, uint64_t random);

/* What the store keeps of one invocation. Strings are owned (malloc'd) by the record. */
struct inv_record {
    char id[INV_ID_LEN + 1];
    char *function;
    int64_t version;               /* the version that runs it (routed when it was accepted) */
    char alias[INV_ALIAS_MAX + 1]; /* the alias it came through; "" (null) for a version number */
    bool async;
    enum inv_status status;
    char *payload;
    size_t payload_len;
    char *content_type;
    char *idempotency_key;
    int attempts;
    int max_retries;
    int64_t created_us, started_us, finished_us, next_attempt_us; /* wall clock; 0: unset */
    char *result;
    size_t result_len;
    char *error_type, *error_message;
    int64_t billed_ms;
    bool cold;
    /* The last attempt's usage, as that attempt's ledger row has it (accountant.h): CPU µs,
     * peak memory bytes and init µs (0 when warm: no init was paid). measured false: none is
     * known (no attempt has ended, or the record is older than these columns); a write keeps
     * what the row has then. */
    bool measured;
    int64_t cpu_us, mem_peak_bytes, init_us;
    char token_id[17];      /* the API token that made it (auth.h); "" when none */
    int64_t lease_until_us; /* a claimed one's lease (wall clock: inv_store_claim); 0: none */
    /* Written by inv_store_insert alone: the host that takes the row as it is inserted (the
     * lease's owner, with lease_until_us), NULL for none. Never read back into a record. */
    const char *lease_owner;
};

void inv_record_clear(struct inv_record *r);

struct acct_record;

/* Durable writes. Each calls done (on the loop thread) once the row is on disk. An insert
 * writes every field of r, so a record that is already final (a sync invocation) is one
 * statement; one taken by its accepting host (r->lease_owner) is inserted claimed, running
 * under that host's lease. bill (NULL: none) is a sync invocation's ledger row, written with
 * the record. An async invocation's done's result: 1, or 0 when an invocation of the same
 * function and idempotency key was accepted before (on any host): nothing was inserted. A sync
 * invocation's record is a row of a batch (journal_submit_row): done's result is 0 once written,
 * inserted or already there. */
int inv_store_insert(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     const struct acct_record *bill, journal_done_fn done, void *userdata);
/* An attempt begins. owner: the host holding the row's lease (NULL: none, SQLite's single
 * host), then written only while it holds it for this attempt, and the lease renewed to
 * lease_until_us (wall clock; 0: kept). Under a lease the claim already wrote what this does,
 * so it is needed only to renew a lease that could run out before the attempt ends. */
int inv_store_mark_running(struct journal *j, const char *id, int attempts, int64_t started_us,
                           const char *owner, int64_t lease_until_us, journal_done_fn done,
                           void *userdata);
/* A final outcome (succeeded, failed or dead), or back to queued for a retry at next_attempt_us
 * with the last error kept; the lease ends. owner: as for mark_running, the fence being
 * (lease_owner, attempts) = (owner, r->attempts). done's result: 1, or 0 when nothing was
 * written (an older attempt's retry record; a lease lost: a late result, dropped). bill: the
 * attempt's ledger row (accountant_record's), written with the outcome (NULL: none), even when
 * the fence drops the outcome (the attempt ran and is billed, once: the row is keyed by
 * (id, attempt)). */
int inv_store_finish(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     const char *owner, const struct acct_record *bill, journal_done_fn done,
                     void *userdata);
/* Removes records whose retention ended before now_us. */
int inv_store_purge(struct journal *j, int64_t now_us, journal_done_fn done, void *userdata);

/* Reads (loop thread). Return 0 and fill *ret (cleared by the caller), -ENOENT, -ENOTCONN
 * (the store is away), or -EIO. */
int inv_store_get(struct store *s, const char *id, struct inv_record *ret);
/* The id of the invocation made earlier for (function, key) and still within its window. */
int inv_store_find_idempotent(struct store *s, const char *function, const char *key,
                              int64_t not_before_us, char ret_id[INV_ID_LEN + 1]);
/* Calls fn for every async invocation that was queued or running when the daemon stopped (or
 * crashed), oldest first: at-least-once means they all run again. */
int inv_store_load_pending(struct store *s, int (*fn)(struct inv_record *r, void *userdata),
                           void *userdata);

/* The async queue shared by hosts (docs/architecture.md "The queue's leases and fencing").
 * These run on the loop thread's connection; each statement commits by itself. */

/* Calls fn with each function that has async invocations queued (at most 256 of them): how
 * many, and how many of those are due at now_us (a retry waits for its time). 0 or -EIO (or fn's
 * -errno). */
int inv_store_queued_functions(struct store *s, int64_t now_us,
                               int (*fn)(const char *function, int64_t queued, int64_t due,
                                         void *userdata),
                               void *userdata);
/* Claims up to limit of function's due queued invocations, oldest first, for owner: each turns
 * running with attempts + 1 and a lease until now_us + lease_us, and is handed to fn (after the
 * claim committed; fn's failure is logged: the lease runs out and another claim takes it).
 * Rows another host's claim holds are skipped, never waited for (PostgreSQL's SKIP LOCKED). The
 * number claimed, or -EIO. */
int inv_store_claim(struct store *s, const char *function, int limit, const char *owner,
                    int64_t now_us, int64_t lease_us,
                    int (*fn)(struct inv_record *r, void *userdata), void *userdata);
/* Hands a row back to the queue that owner holds under its lease for attempt `attempts` and has
 * not started (a host that stops): queued again, that attempt undone (it never ran), for any
 * host to claim; fenced as every write of a claimed row. Through the journal; done's count is
 * the rows changed (0: the lease had moved on). */
int inv_store_hand_back(struct journal *j, const char *id, const char *owner, int attempts,
                        journal_done_fn done, void *userdata);
/* Puts back in the queue the running invocations leased by owner (NULL: none) or whose lease
 * ended before expired_before_us (0: none): their attempt counts, and their holder's late writes
 * are refused (the attempts moved on). The number requeued, or -EIO. */
int inv_store_requeue(struct store *s, const char *owner, int64_t expired_before_us);
/* Calls fn with each host other than except that holds a lease. */
int inv_store_lease_holders(struct store *s, const char *except,
                            int (*fn)(const char *owner, void *userdata), void *userdata);

/* A host's liveness, as its peers see it (PostgreSQL only): a session advisory lock keyed by
 * its host id, held on a connection that does nothing else, so that the server lets go of it as
 * soon as the host's process is gone (even by kill -9). */
struct inv_host_lock;
/* Takes host_id's lock on a new connection to s's database: 1 and *ret, 0 when another session
 * holds it (the host's previous process, not seen dead by the server yet; or another host with
 * the same id), or -errno with err. */
int inv_host_lock_take(struct store *s, const char *host_id, struct inv_host_lock **ret,
                       struct ig_error *err);
/* The schedule tick's lock (events.c): one host ticks the cluster's schedules, the one that
 * holds it; the same kind of lock, keyed by no host. 1 and *ret, 0 when another session holds
 * it, or -errno with err. */
int inv_schedule_lock_take(struct store *s, struct inv_host_lock **ret, struct ig_error *err);
/* Releases the lock (its connection closes). Accepts NULL. */
void inv_host_lock_free(struct inv_host_lock *l);
/* Tries host_id's lock: when it is free, the host is gone, and its running invocations are
 * requeued (then the lock is let go). The number requeued, 0 when the host lives, or -errno. */
int inv_store_requeue_dead(struct store *s, const char *host_id);

/* The record as the API shows it (GET /v1/invocations/{id}). */
cJSON *inv_record_to_json(const struct inv_record *r);
