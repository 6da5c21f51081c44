/* The HTTP API (docs/api.md): the route table with each route's access rule, and the context
 * every handler gets. api/ is the one layer that knows HTTP statuses and JSON bodies: its
 * handlers call the domain (functions/, dispatch/, events/, records/) and map what it reports
 * (api/errors.h). */
#pragma once

#include <stddef.h>

#include "base/http.h"

struct auth;
struct cluster;
struct forwarder;
struct dispatch;
struct event_router;
struct journal;
struct registry;
struct secrets;
struct series;
struct sinks;
struct store;

/* What the handlers reach, made and wired by the daemon (its composition root); every route's
 * userdata. */
struct api {
    struct dispatch *dispatch;
    struct registry *registry;
    struct event_router *events;
    struct sinks *sinks;
    struct auth *auth;
    /* NULL once the daemon is being freed: requests completing then are not audited. */
    struct journal *journal;
    struct store *store;
    /* The last 15 minutes per function (records/series.h), sampled by the daemon's timer. */
    struct series *series;
    struct secrets *secrets; /* functions/secrets.h: this host's files, or shared */
    /* Placement of sync invocations across hosts (#17): the peers as this host sees them and
     * its forwards (forward.h); both NULL on one host or without a cluster_key. */
    struct cluster *cluster;
    struct forwarder *forwarder;
    const char *state_dir;
    const char *host_id;   /* this host's, in the hosts table (records/hosts_store.h) */
    uint64_t started_usec; /* monotonic */
    bool stopping;         /* a graceful stop began: /healthz says so */
    /* The host checks of GET /v1/doctor (container/doctor.c), which the daemon runs: api/ does
     * not reach the containers itself. Returns 0 with the checks and the worst status's name. */
    int (*doctor)(void *userdata, cJSON **ret_checks, const char **ret_status);
    void *doctor_userdata;
    /* Starts a graceful stop of this host, as SIGTERM does, once the caller's turn of the loop
     * is over (POST /v1/hosts/{id}/drain); the daemon's. userdata: doctor_userdata. 0, or
     * -ENOMEM. */
    int (*drain)(void *userdata);
};

extern const struct http_route api_routes[];
extern const size_t api_nroutes;

/* The server's hooks (http_server_options), userdata the struct api: every request is checked
 * against its route's roles (auth_check), and audited routes are recorded (audit_record). */
bool api_authorize(struct http_request *req, const struct http_route *route, void *userdata);
void api_audit(struct http_request *req, const struct http_route *route, unsigned status,
               void *userdata);
