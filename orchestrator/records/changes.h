/* Hosts sharing one PostgreSQL store learn of each other's changes (issue 16): a writer of what
 * hosts keep in memory (functions, services, tokens) notifies in the same transaction as the
 * change (PostgreSQL delivers it at COMMIT, and drops it on ROLLBACK), and each host listens on
 * a connection of its own, read by the loop without ever waiting. A notification names what
 * changed, not how: the host re-reads it from the store, so one that already applied the change
 * (its own) reads the same thing again and changes nothing. A host that lost its listening
 * connection may have missed notifications: once connected again it re-reads everything, and so
 * it does once it started listening (what it read before may have changed unannounced) and
 * every CHANGES_REREAD_US (the backstop). On SQLite there is one host: nothing is
 * sent, nothing listens. */
#pragma once

#include "base/loop.h"
#include "base/util.h"
#include "records/journal.h"

struct db;

#define CHANGES_CHANNEL   "ignis_changes"
#define CHANGES_REREAD_US (30ull * 1000000)
/* What changed: the payload is "KIND:NAME". */
#define CHANGES_FUNCTION "function"
#define CHANGES_SERVICE  "service"
#define CHANGES_TOKEN    "token"
/* A function's secrets (records/secrets_store.h): the name is the function's. */
#define CHANGES_SECRET "secret"
/* Async invocations of NAME were accepted: a host with room claims them now rather than at its
 * next poll (dispatch/queue.c). */
#define CHANGES_QUEUE "queue"
/* The host NAME is asked to drain (POST /v1/hosts/{id}/drain on any host): it stops as on
 * SIGTERM. */
#define CHANGES_DRAIN "drain"
/* A host's warm capacity for a function changed (records/hosts_store.h hosts_store_warm): the
 * name is "HOST FUNCTION +" (it has a warm, free container now) or "... -" (no longer). */
#define CHANGES_WARM "warm"

/* Inside the writer's open transaction: tells every listening host that kind's name changed.
 * 0 on SQLite (nothing to tell), else 0 or -errno as db_exec (db_fail says why). */
int changes_notify(struct db *db, const char *kind, const char *name);

/* The same, through the journal j on a PostgreSQL store (the caller knows it is one: the
 * journal does not say): queued behind what the loop submitted before it, in the same batch, so
 * the notification goes out when those statements commit, never before. done (NULL accepted)
 * as journal_submit's; 0 or -ENOMEM. */
int changes_announce(struct journal *j, const char *kind, const char *name, journal_done_fn done,
                     void *userdata);

/* The same, for a notification whose every one counts, in order (changes_announce sends one of
 * identical ones a batch holds): each is sent, after the statements submitted before it. name
 * at most 190 bytes. 0 or -ENOMEM. */
int changes_announce_each(struct journal *j, const char *kind, const char *name);

/* Splits a payload "KIND:NAME" into kind and name (each NUL-terminated, at most size - 1
 * bytes): 0, or -EINVAL for anything else (no colon, an empty part, one too long). */
int changes_parse(const char *payload, char *ret_kind, size_t kind_size, char *ret_name,
                  size_t name_size);

/* Called on the loop thread: kind's name changed; kind and name NULL: anything may have changed
 * (after a reconnect, and every CHANGES_REREAD_US): re-read everything. */
typedef void (*changes_fn)(void *userdata, const char *kind, const char *name);

struct changes;

/* Listens on the PostgreSQL store target names (db_open's) for the loop: fn hears of every
 * change. Fails as db_open and db_listen do. A connection lost later is opened again, with a
 * backoff from 100 ms to 5 s, logged. */
int changes_new(struct loop *loop, const char *target, changes_fn fn, void *userdata,
                struct changes **ret, struct ig_error *err);
/* Accepts NULL. */
void changes_free(struct changes *c);
