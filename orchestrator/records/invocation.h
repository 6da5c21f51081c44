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
    char token_id[17]; /* the API token that made it (auth.h); "" when none */
};

void inv_record_clear(struct inv_record *r);

/* Durable writes. Each calls done (on the loop thread) once the row is on disk. An insert
 * writes every field of r, so a record that is already final (a sync invocation) is one
 * statement. */
int inv_store_insert(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     journal_done_fn done, void *userdata);
int inv_store_mark_running(struct journal *j, const char *id, int attempts, int64_t started_us,
                           journal_done_fn done, void *userdata);
/* A final outcome (succeeded, failed or dead), or back to queued for a retry at next_attempt_us
 * with the last error kept. */
int inv_store_finish(struct journal *j, const struct inv_record *r, int64_t expires_us,
                     journal_done_fn done, void *userdata);
/* Removes records whose retention ended before now_us. */
int inv_store_purge(struct journal *j, int64_t now_us, journal_done_fn done, void *userdata);

/* Reads (loop thread). Return 0 and fill *ret (cleared by the caller), -ENOENT, or -EIO. */
int inv_store_get(struct store *s, const char *id, struct inv_record *ret);
/* The id of the invocation made earlier for (function, key) and still within its window. */
int inv_store_find_idempotent(struct store *s, const char *function, const char *key,
                              int64_t not_before_us, char ret_id[INV_ID_LEN + 1]);
/* Calls fn for every async invocation that was queued or running when the daemon stopped (or
 * crashed), oldest first: at-least-once means they all run again. */
int inv_store_load_pending(struct store *s, int (*fn)(struct inv_record *r, void *userdata),
                           void *userdata);

/* The record as the API shows it (GET /v1/invocations/{id}). */
cJSON *inv_record_to_json(const struct inv_record *r);
