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
#include "dispatch/placement.h"

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
/* How many forwards wait for their peer's reply (0 for NULL). */
size_t forwarder_active(const struct forwarder *f);

/* What a forward carries: the function, the version and alias it was routed to, and what its
 * manifest says of its memory and timeout. */
struct forward_target {
    const char *function;
    int64_t version;
    const char *alias; /* "" when routed by version number */
    uint32_t memory_mb, timeout_ms;
    enum placement_local local; /* what this host has of it */
};

/* Places a sync invocation on a host without a warm, free container for it (the caller
 * checked): true when it was forwarded (the request is answered later), false when it runs
 * here. With elsewhere (this host stops), on another host whatever this one has: a warm peer,
 * else the home host among the others; false when there is no other. */
bool forward_place(struct http_request *req, struct api *a, const struct forward_target *t,
                   bool elsewhere);

/* What the forwarding host asked of this one (Ignis-Forwarded's mode). */
enum forward_mode {
    FORWARD_WARM, /* a warm, free container: else refused at once */
    FORWARD_HOME, /* a cold start here, its home host: refused at once when at max_scale, busy */
    FORWARD_MOVE, /* the forwarding host stops: run it, queued if need be (never refused) */
};

/* A request carrying Ignis-Forwarded: 1 when it verifies (route's alias is set from it, and
 * *ret_mode is what the sender asked), 0 when it carries none, -1 when it was answered (403: it
 * does not verify, or this host has no cluster key). */
int forward_received(struct http_request *req, struct api *a, struct dispatch_route *route,
                     enum forward_mode *ret_mode);

/* Refuses a forwarded request at once (503, with Ignis-Forward-Refused), for what mode asked
 * and this host cannot give now: FORWARD_WARM, no warm, free container (the sender goes on to the
 * home host); FORWARD_HOME, its containers here at its max_scale here and busy (the sender
 * runs it itself). */
void forward_refuse(struct http_request *req, const char *function, enum forward_mode mode);

/* The forwards' figures for GET /metrics. NULL: none (no family). */
void forward_metrics(const struct forwarder *f, struct metrics_buf *b);
