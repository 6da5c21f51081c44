/* The controller process: owns the loop, the store and the HTTP server, and everything that
 * scheduling state hangs off. Only the loop thread touches it. */
#pragma once

#include "accountant.h"
#include "retention.h"
#include "auth.h"
#include "cgroup.h"
#include "dispatch.h"
#include "events.h"
#include "http.h"
#include "journal.h"
#include "loop.h"
#include "options.h"
#include "registry.h"
#include "sink.h"
#include "store.h"

struct daemon {
    struct ignisd_options opts;
    struct loop *loop;
    struct store *store;
    struct http_server *http;
    struct auth *auth; /* tokens, roles and rates (auth.h) */
    struct registry *registry;
    struct journal *journal;
    struct dispatch *dispatch;
    /* CloudEvents in, emitted events, schedules. */
    struct events *events;
    /* Forwards functions' outcomes to their sinks. */
    struct sinks *sinks;
    /* Purges what the store keeps only for a while (retention.h). */
    struct retention *retention;
    uint64_t started_usec; /* monotonic */
    bool stopping;
    /* The daemon's cgroup subtree; the null backend where there is none to use. */
    struct cg_manager *cgroups;
    /* Network namespaces and cgroups made ahead for the pool's containers (container.h); NULL
     * when the daemon cannot make containers (not root). */
    struct container_stock *stock;
};

/* Sets up the state dir, the cgroup subtree, the store and the API. On failure err names the
 * problem. */
int daemon_new(const struct ignisd_options *opts, struct daemon **ret, struct ig_error *err);
/* Serves until SIGINT or SIGTERM, then shuts down cleanly. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);
