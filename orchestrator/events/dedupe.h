/* De-duplication of CloudEvents on (source, id) within a time window. spec.md ("id"): "Consumers
 * MAY assume that Events with identical source and id are duplicates", and senders re-send after
 * network errors. Pure: the caller passes the clock; no I/O.
 *
 * Memory is bounded: at most `capacity` entries, the oldest evicted first when full, each a fixed
 * 24 bytes however long the id and source are, because an entry holds a 128-bit keyed hash
 * (SipHash-2-4 under a secret key) of the pair rather than the strings. A sender who cannot learn
 * the key cannot make entries collide, neither to slow lookups down nor to get an event dropped;
 * two distinct events are confused with probability about n^2 / 2^129. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ce_dedupe;

/* window_us: how long an entry suppresses duplicates; capacity: most entries kept; key: 16 random
 * bytes (the caller reads them from getrandom(); tests pass fixed ones). Returns 0, -EINVAL for a
 * zero window or a capacity of 0 or above 2^30, or -ENOMEM. */
int ce_dedupe_new(size_t capacity, uint64_t window_us, const uint8_t key[16],
                  struct ce_dedupe **ret);
void ce_dedupe_free(struct ce_dedupe *d);

/* Whether (source, id) was inserted less than window_us before now_us. Entries older than the
 * window are dropped on the way, hence not const. */
bool ce_dedupe_contains(struct ce_dedupe *d, const char *source, const char *id, uint64_t now_us);
/* Records (source, id) at now_us. Returns 1 when it was already recorded within the window (the
 * entry keeps its first time: a stream of retries does not extend the window), 0 when recorded.
 * A now_us earlier than the newest entry's (a wall clock stepping back) counts as that entry's
 * time, so entries stay in time order and the oldest is always the first to expire.
 * Checking and recording are separate so a caller can record only once an event is durably
 * accepted: a sender's retry after a failed commit is then not taken for a duplicate. */
int ce_dedupe_insert(struct ce_dedupe *d, const char *source, const char *id, uint64_t now_us);
/* Entries currently held (some may have expired since the last call that took the clock). */
size_t ce_dedupe_size(const struct ce_dedupe *d);
