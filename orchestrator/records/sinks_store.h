/* The sinks' table (store.c, migration "sink_deliveries"): one row per invocation whose outcome
 * is forwarded to a sink, with the event until the row is final. Every write is lazy
 * (journal_submit_lazy: it survives a crash of ignisd, not a power loss): a lost row makes a
 * delivery less, never a wrong one. The functions name what events/sink.c asks for, so a second
 * backend is a new file behind them. */
#pragma once

#include "records/journal.h"
#include "records/store.h"

/* A row of sink_deliveries. A 0 in http_status, next_attempt_us or finished_us is a NULL column:
 * none is ever 0 when set (a reply's status is >= 100, the times are wall-clock µs). */
struct sinks_store_row {
    const char *id, *function, *url, *type, *time;
    const char *content_type; /* NULL: the event has no datacontenttype */
    const void *body;         /* NULL once the row is final */
    size_t body_len;
    const char *status; /* "pending", "delivered", "failed" */
    int attempts, max_attempts;
    long http_status;
    const char *error;
    int64_t next_attempt_us, created_us, finished_us, expires_us;
};

/* Adds a pending delivery (id, function, url, type, time, content_type, body, max_attempts,
 * created_us, expires_us; no attempt yet), replacing one with the same id. Queued before its
 * attempts' updates, which the journal runs in order. */
int sinks_store_insert(struct journal *j, const struct sinks_store_row *row, journal_done_fn done,
                       void *userdata);
/* Records an attempt's outcome on row->id: status, attempts, http_status, error,
 * next_attempt_us, finished_us, expires_us. A row no longer pending drops its body: nothing will
 * send it again. */
int sinks_store_update(struct journal *j, const struct sinks_store_row *row, journal_done_fn done,
                       void *userdata);
/* Calls each for every pending delivery, oldest first (every field but status, http_status,
 * error, created_us, finished_us and expires_us); the row lasts until each returns. each returns
 * 0, or -errno to stop. Returns 0, each's -errno, or -EIO; err has the store's message. */
int sinks_store_each_pending(struct store *s,
                             int (*each)(void *userdata, const struct sinks_store_row *row),
                             void *userdata, struct ig_error *err);
/* Calls each with the delivery of invocation id (its id, url, type, status, attempts,
 * max_attempts, http_status, error, next_attempt_us and finished_us), which lasts until each
 * returns. Returns 0, -ENOENT (no delivery) or -EIO. */
int sinks_store_find(struct store *s, const char *id,
                     void (*each)(void *userdata, const struct sinks_store_row *row),
                     void *userdata);
/* Deletes the final deliveries that expired before now_us (pending ones stay, whatever their
 * age). Lazy; a failure is logged, naming the table (retention_done). */
void sinks_store_purge(struct journal *j, int64_t now_us);
