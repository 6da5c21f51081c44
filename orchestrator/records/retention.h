/* Retention: what ignis.db keeps only for a while (invocation records, the usage ledger, event
 * ids and dead letters, sink deliveries, the audit log) is purged by one timer, at start and
 * every RETENTION_INTERVAL_US after. Each table's owner registers how it purges; the purges
 * queue DELETEs on the journal, so nothing here blocks the loop. */
#pragma once

#include <stdint.h>

#include "records/journal.h"
#include "base/loop.h"

#define RETENTION_INTERVAL_US (600ull * 1000000)

/* Purges what is past its retention at now_us (wall clock). */
typedef void (*retention_fn)(void *userdata, int64_t now_us);

struct retention;

/* The first run is posted: it happens once the loop runs, after every owner registered. */
int retention_new(struct loop *l, struct retention **ret);
int retention_add(struct retention *r, retention_fn fn, void *userdata);
/* Runs every purge now (the timer does this). */
void retention_run(struct retention *r);
/* The journal callback for a purge's DELETE: logs a failure, naming the table (userdata, a
 * string constant). */
void retention_done(struct loop *l, int result, const char *message, void *userdata);
/* Accepts NULL. */
void retention_free(struct retention *r);
