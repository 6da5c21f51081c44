/* Events: CloudEvents from outside (POST /v1/events, parsed by api/events.c), events emitted by
 * functions (the runtime protocol's EVENT frame) and schedules, each delivered as a durable async
 * invocation (dispatch_submit_async) of every function that subscribes to it, which receives the
 * event in the JSON event format. De-duplication on (source, id) survives restarts (the event_ids
 * table); chains of emitted events are bounded by a hop count (the `ignishops` extension) and
 * dead-lettered past the limit. Everything here runs on the loop thread. docs/api.md "POST
 * /v1/events" and docs/architecture.md "Events" describe the behaviour. */
#pragma once

#include "base/loop.h"
#include "dispatch/dispatch.h"
#include "functions/manifest.h"
#include "records/invocation.h"
#include "records/journal.h"
#include "records/store.h"

struct ce_events;

/* The extension that counts how many emitted events led to an event (spec.md: extension names are
 * lower-case letters and digits). */
#define EVENTS_HOPS_EXTENSION "ignishops"
/* The type and source prefix of schedule events. */
#define EVENTS_SCHEDULE_TYPE   "dev.ignis.schedule"
#define EVENTS_SCHEDULE_SOURCE "/ignis/schedules/"
#define EVENTS_FUNCTION_SOURCE "/ignis/functions/"
/* Dead letters are kept this long. */
#define EVENTS_DEAD_LETTER_RETENTION_US (7ll * 86400 * 1000000)

/* Routes events to the functions that subscribe to them (one per daemon). Its functions keep the
 * module's events_ prefix, as every module's do (sinks_, scaler_): the prefix names the module,
 * the struct what it is. */
struct event_router;

struct events_options {
    uint64_t dedupe_window_us; /* how long an accepted (source, id) makes a repeat a duplicate */
    uint32_t hop_limit;        /* an emitted event with more hops than this is dead-lettered */
    int32_t tz_offset_s;       /* the zone schedules are read in, seconds east of UTC */
};

/* Loads the de-duplication entries still in their window and the schedules' last runs, hooks
 * into dispatch's emitted events and starts the schedule timer. d must have its functions (the
 * registry attached) so that schedules missed while ignisd was down are made up at once. */
int events_new(struct loop *l, struct store *s, struct journal *j, struct dispatch *d,
               const struct events_options *opts, struct event_router **ret, struct ig_error *err);
/* Call after the journal is freed (its last callbacks complete acceptances). Accepts NULL. */
void events_free(struct event_router *ev);
/* Forgets (source, id) pairs past the de-duplication window and dead letters past their
 * retention (a retention_fn, retention.h; userdata: the events). */
void events_purge(void *userdata, int64_t now_us);

/* One delivery of an accepted event: an async invocation of a subscribed function. */
struct event_delivery {
    char function[MANIFEST_NAME_MAX + 1];
    char id[INV_ID_LEN + 1];
};

/* One event of an acceptance, as its sender is told. */
struct event_accepted {
    char *source, *id, *type;
    char *payload; /* events.c's: the event in the JSON format until its deliveries are submitted */
    size_t payload_len;
    bool duplicate; /* accepted within the window before: nothing was delivered again */
    struct event_delivery *deliveries;
    size_t ndeliveries;
};

/* How an acceptance ended: result 0 with its events (v[0..n), in the order given, valid until
 * done returns), or -errno with err (the errno, its reason where it has one, and a message), v
 * NULL:
 *   -ESHUTDOWN "shutting_down"     ignisd is stopping
 *   -EFBIG                         an event in the JSON format is over what a function may receive
 *   -EINPROGRESS "in_progress"     an event with the same (source, id) is being stored by another
 *                                  acceptance, which may yet fail: retry once it settled
 *   -ENOBUFS                       a subscriber's queue cannot take all the events give it
 *   -EAGAIN "store_unavailable"    a delivery or an id could not be stored (deliveries submitted
 *                                  before the failure still run: a retry delivers again, at least
 *                                  once)
 *   -ENOTCONN "store_unavailable"  the store became unreachable while they were being stored,
 *                                  and stayed so a second: they are stored and delivered once it
 *                                  is back, unless ignisd stops before (a retry of the same
 *                                  (source, id) then is a duplicate)
 *   -ENOMEM */
typedef void (*events_accept_fn)(int result, const struct ig_error *err,
                                 const struct event_accepted *v, size_t n, void *userdata);

/* 0 while events are accepted, or -ESHUTDOWN "shutting_down" with err once ignisd is stopping.
 * events_accept checks it first; a caller that parses the events asks before, so that a sender
 * is told ignisd is stopping whatever it sent. */
int events_accepting(const struct event_router *ev, struct ig_error *err);

/* Accepts events from outside (ce_parse_http's, in its mode) sent with the token token_id (NULL
 * for none; an invoker reads the results of the deliveries its events made). Every event is
 * checked first, so a refused call delivers nothing; then each event not a duplicate is delivered
 * to every subscribed function (a durable async invocation) and its (source, id) remembered.
 * done runs exactly once: when the deliveries and ids are durable, or when refused, which may be
 * before events_accept returns (so is an acceptance of duplicates only). */
void events_accept(struct event_router *ev, const struct ce_events *events, const char *token_id,
                   events_accept_fn done, void *userdata);

/* Routes an event a running invocation's function emitted (the dispatcher's emitted hook). */
void events_emitted(struct event_router *ev, struct fn_state *fn, struct inv *inv,
                    const struct proto_msg *m);
