/* The controller process: owns the loop, the store and the HTTP server, and everything that
 * scheduling state hangs off. Only the loop thread touches it. */
#pragma once

#include "api/api.h"
#include "records/accountant.h"
#include "records/retention.h"
#include "api/auth.h"
#include "container/cgroup.h"
#include "container/doctor.h"
#include "dispatch/dispatch.h"
#include "events/events.h"
#include "records/journal.h"
#include "base/loop.h"
#include "daemon/options.h"
#include "functions/registry.h"
#include "events/sink.h"
#include "records/store.h"

struct http_server;
struct changes;
struct secrets;

struct daemon {
    struct ignisd_options opts;
    /* The API's handlers' context (api.h): what the daemon made, as they need it. */
    struct api api;
    struct loop *loop;
    struct store *store;
    struct http_server *http;
    struct auth *auth; /* tokens, roles and rates (auth.h) */
    struct registry *registry;
    struct journal *journal;
    struct dispatch *dispatch;
    /* CloudEvents in, emitted events, schedules. */
    struct event_router *events;
    /* Forwards functions' outcomes to their sinks. */
    struct sinks *sinks;
    /* Purges what the store keeps only for a while (retention.h). */
    struct retention *retention;
    struct series *series;   /* the console's 15 minutes per function */
    struct sampler *sampler; /* fills it once a second */
    /* What other hosts on the same PostgreSQL store change (records/changes.h); NULL on
     * SQLite. */
    struct changes *changes;
    struct secrets *secrets;       /* this host's files, or shared through the store (secrets.h) */
    uint64_t started_usec;         /* monotonic */
    struct loop_timer *heartbeat;  /* this host's row in the hosts table, each second */
    uint64_t forwards_deadline_us; /* a graceful stop waits for its forwards until then */
    int lock_fd; /* STATE_DIR/lock, flock'd for the daemon's life; -1 until taken */
    /* The daemon's cgroup subtree; the null backend where there is none to use. */
    struct cg_manager *cgroups;
    /* Network namespaces and cgroups made ahead for the pool's containers (container.h); NULL
     * when the daemon cannot make containers (not root). */
    struct container_stock *stock;
};

/* This host's id (options.h): the configured one, else STATE_DIR/host-id's, else (with create)
 * 16 random hex digits written there atomically, kept for every later start. Returns 0, -ENOENT
 * when there is none yet and !create, -EINVAL for a file that holds no valid id, or -errno. */
int daemon_host_id(const struct ignisd_options *opts, bool create, char ret[64]);

/* The doctor's line for the store (`ignisd --doctor`, GET /v1/doctor): reachable, its engine and
 * schema against this ignisd's; failing when it cannot be reached or is newer than this ignisd. */
void daemon_doctor_store(const struct ignisd_options *opts, cJSON *checks,
                         enum doctor_status *worst);

/* Sets up the state dir, the cgroup subtree, the store and the API. On failure err names the
 * problem. */
int daemon_new(const struct ignisd_options *opts, struct daemon **ret, struct ig_error *err);
/* Serves until SIGINT or SIGTERM, then shuts down cleanly. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);
