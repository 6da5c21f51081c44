/* What a host knows of its peers to place sync invocations (#17, docs/architecture.md
 * "Placement"): the live hosts with the memory they have free, re-read from the hosts table
 * every second, and which functions each has warm, free containers for, as hosts announce
 * their changes (records/changes.h CHANGES_WARM), read whole from the warm_capacity table at
 * start, when a host appears, and after a missed notification may have been (every
 * CHANGES_REREAD_US, and after the listener reconnects). Only with a shared (PostgreSQL) store; on
 * the loop thread. */
#pragma once

#include "base/loop.h"
#include "base/util.h"
#include "dispatch/placement.h"

struct cluster;
struct journal;
struct store;

#define CLUSTER_REFRESH_US (1000 * 1000)

/* A peer to forward to. */
struct cluster_peer {
    char id[64];
    char advertise[512]; /* its base URL */
};

/* Reads the hosts and their warm capacity now, then keeps them fresh. The journal tells whether
 * the store is away (then the view is kept as it was, not re-read). 0 or -errno with err. */
int cluster_new(struct loop *l, struct store *s, struct journal *j, const char *host_id,
                struct cluster **ret, struct ig_error *err);
/* Accepts NULL. */
void cluster_free(struct cluster *c);

/* A host announced a change of its warm capacity: what is "HOST FUNCTION +" or "... -"
 * (records/changes.h CHANGES_WARM); applied at once, without a read. NULL: anything may have
 * changed (a notification may have been missed): every host's is read again. */
void cluster_warm_announced(struct cluster *c, const char *what);

/* cluster_place's flags: no peer is taken for warm (the home host or here); this host is not
 * a candidate (it stops: PLACE_HERE then means no other host). */
#define CLUSTER_NO_WARM   1u
#define CLUSTER_ELSEWHERE 2u

/* Where a sync invocation of function goes, with what this host has of it (local)
 * (placement_decide over the hosts as last read, as flags say): PLACE_HERE, or a peer, into
 * *ret_peer. */
struct placement cluster_place(struct cluster *c, const char *function, enum placement_local local,
                               unsigned flags, int64_t memory_needed,
                               struct cluster_peer *ret_peer);

/* A forward to host_id found no warm container of function there, or did not reach it: it is
 * not taken for warm with function until it announces so again (or the next full re-read). */
void cluster_forget_warm(struct cluster *c, const char *host_id, const char *function);

/* This host's part of function's cluster-wide count total (its min_scale or max_scale) split
 * over the live hosts, the home host first (placement_share); total itself until this host is
 * registered (and with c NULL). */
unsigned cluster_share(struct cluster *c, const char *function, unsigned total);
/* Changes each time the hosts are read again (every CLUSTER_REFRESH_US): a share computed from
 * one view holds until it does. 0 with c NULL. */
uint64_t cluster_epoch(const struct cluster *c);
