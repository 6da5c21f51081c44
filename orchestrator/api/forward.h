/* Sync invocations placed on another host (#17, docs/architecture.md "Placement"): a host with
 * no warm, free container for a function forwards the invocation once, over HTTP, to a peer
 * that has one, else to the function's home host for its cold start (dispatch/cluster.h says
 * which); the caller's own Authorization goes with it, so the peer checks the caller's token
 * and role itself and a forward can give no one more than they have. The forwarding host signs
 * an Ignis-Forwarded header with the cluster key (HMAC-SHA256) naming itself, the peer, the
 * mode, the version and alias it routed, and an expiry: a peer acts on no such header that
 * does not verify, and a forwarded request is never forwarded again. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/http.h"
#include "dispatch/dispatch.h"

struct api;
struct cluster;
struct forwarder;
struct metrics_buf;

#define FORWARD_KEY_BYTES 32

/* Forwards on the loop l as host_id, signing with key (copied). */
int forwarder_new(struct loop *l, const char *host_id, const uint8_t key[FORWARD_KEY_BYTES],
                  struct forwarder **ret, struct ig_error *err);
/* Forwards still running end (their callers get 503). Accepts NULL. */
void forwarder_free(struct forwarder *f);

/* Places a sync invocation of function as routed, on a host without a warm, free container for
 * it (the caller checked): true when it was forwarded (the request is answered later), false
 * when it runs here. */
bool forward_place(struct http_request *req, struct api *a, const char *function,
                   const struct dispatch_route *route);

/* A request carrying Ignis-Forwarded: 1 when it verifies (route's alias is set from it, and
 * *ret_warm_only says whether the peer asked for a warm container only), 0 when it carries none,
 * -1 when it was answered (403: it does not verify, or this host has no cluster key). */
int forward_received(struct http_request *req, struct api *a, struct dispatch_route *route,
                     bool *ret_warm_only);

/* Refuses a forwarded request at once (503, with Ignis-Forward-Refused): one sent for a warm
 * container that found none free here (the forwarding host goes on to the home host), or one
 * sent to this home host while its containers are at its max_scale here and busy (the
 * forwarding host runs it itself). */
void forward_refuse(struct http_request *req, const char *function, bool warm_only);

/* The forwards' figures for GET /metrics. NULL: none (no family). */
void forward_metrics(const struct forwarder *f, struct metrics_buf *b);
