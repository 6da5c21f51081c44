/* Where a sync invocation runs when hosts share a store (#17, docs/architecture.md "Placement"):
 * a pure policy, no I/O, so that scripts/bench cluster-sim drives the very code ignisd runs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One host as the deciding host sees it. */
struct placement_host {
    const char *id;
    bool live;           /* its heartbeat is fresh */
    int64_t memory_free; /* bytes of its memory budget not taken by containers' limits */
    bool warm;           /* it says it has a warm, free container for the function */
};

enum placement_kind {
    PLACE_HERE,      /* run it on this host */
    PLACE_WARM_PEER, /* forward it to a peer with a warm, free container */
    PLACE_HOME,      /* forward it to the function's home host, for a cold start there */
};

struct placement {
    enum placement_kind kind;
    size_t host; /* the peer's index in hosts (PLACE_WARM_PEER, PLACE_HOME) */
};

/* The function's home host among hosts: rendezvous (highest random weight) hashing of the
 * function with each live host that has memory_needed bytes free, so that a function's cold
 * starts concentrate on one host, and a host that comes or goes moves only its own share of
 * functions. Its index, or -1 when no host qualifies. */
ssize_t placement_home(const char *function, const struct placement_host *hosts, size_t n,
                       int64_t memory_needed);

/* What the deciding host has of the function. */
enum placement_local {
    LOCAL_NONE, /* no container of it */
    LOCAL_BUSY, /* containers of it, none free: it waits for one here, or one more is made here */
    LOCAL_FREE, /* a warm, free container */
};

/* The placement of one sync invocation of function arriving at hosts[here]: here when it has a
 * warm, free container; else a live warm peer (the pick-th of them, modulo their number, so that
 * callers spread their requests); else, when this host has no container of it, the home host
 * if it is another (a host that has containers of it grows its own: the home host is at its
 * share of max_scale as often as not then, and a forward to it would only be refused); else
 * here. */
struct placement placement_decide(const char *function, enum placement_local local,
                                  const struct placement_host *hosts, size_t n, size_t here,
                                  int64_t memory_needed, uint64_t pick);

/* hosts[i]'s part of a function's cluster-wide count (its min_scale, its max_scale) split over
 * the live hosts in the order of their rendezvous weight for the function, the home host first:
 * total / k each of the k live hosts, and one more for each of the first total % k. So a
 * min_scale of 1 keeps one container, on the home host, and a max_scale bounds the containers of
 * the whole cluster. hosts[i] counts as live (it asks for itself). */
unsigned placement_share(const char *function, const struct placement_host *hosts, size_t n,
                         size_t i, unsigned total);
