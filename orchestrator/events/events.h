/* Events: CloudEvents from outside (POST /v1/events), events emitted by functions (the runtime
 * protocol's EVENT frame) and schedules, each delivered as a durable async invocation
 * (dispatch_submit_async) of every function that subscribes to it, which receives the event in
 * the JSON event format. De-duplication on (source, id) survives restarts (the event_ids table);
 * chains of emitted events are bounded by a hop count (the `ignishops` extension) and dead-lettered
 * past the limit. Everything here runs on the loop thread. docs/api.md "POST /v1/events" and
 * docs/architecture.md "Events" describe the behaviour. */
#pragma once

#include "dispatch/dispatch.h"
#include "base/http.h"
#include "records/journal.h"
#include "base/loop.h"
#include "records/store.h"

/* The extension that counts how many emitted events led to an event (spec.md: extension names are
 * lower-case letters and digits). */
#define EVENTS_HOPS_EXTENSION "ignishops"
/* The type and source prefix of schedule events. */
#define EVENTS_SCHEDULE_TYPE   "dev.ignis.schedule"
#define EVENTS_SCHEDULE_SOURCE "/ignis/schedules/"
#define EVENTS_FUNCTION_SOURCE "/ignis/functions/"
/* Dead letters are kept this long. */
#define EVENTS_DEAD_LETTER_RETENTION_US (7ll * 86400 * 1000000)

struct events;

struct events_options {
    uint64_t dedupe_window_us; /* how long an accepted (source, id) makes a repeat a duplicate */
    uint32_t hop_limit;        /* an emitted event with more hops than this is dead-lettered */
    int32_t tz_offset_s;       /* the zone schedules are read in, seconds east of UTC */
};

/* Loads the de-duplication entries still in their window and the schedules' last runs, hooks
 * into dispatch's emitted events and starts the schedule timer. d must have its functions (the
 * registry attached) so that schedules missed while ignisd was down are made up at once. */
int events_new(struct loop *l, struct store *s, struct journal *j, struct dispatch *d,
               const struct events_options *opts, struct events **ret, struct ig_error *err);
/* Call after the journal is freed (its last callbacks complete acceptances). Accepts NULL. */
void events_free(struct events *ev);
/* Forgets (source, id) pairs past the de-duplication window and dead letters past their
 * retention (a retention_fn, retention.h; userdata: the events). */
void events_purge(void *userdata, int64_t now_us);

/* POST /v1/events and GET /v1/events/dead-letters. */
/* Routes an event a running invocation's function emitted (the dispatcher's emitted hook). */
void events_emitted(struct events *ev, struct fn_state *fn, struct inv *inv,
                    const struct proto_msg *m);

void events_http_post(struct http_request *req, struct events *ev);
void events_http_dead_letters(struct http_request *req, struct events *ev);
