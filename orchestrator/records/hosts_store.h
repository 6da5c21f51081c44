/* The hosts table (issue #16): every ignisd using the database, by its stable host id, with the
 * address its peers reach it at, its version, when it started and its last heartbeat. A host
 * registers at start and beats every second through the journal (off the loop), so peers (and
 * GET /v1/hosts, #17) tell a live host from a gone one by its heartbeat's age. On SQLite the
 * table has the one row of the state dir's host. Times are wall-clock microseconds. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"
#include "records/journal.h"

struct store;

/* A host is taken for gone once its heartbeat is older than this (three beats missed). */
#define HOSTS_GONE_AFTER_US (3 * 1000 * 1000)

/* What a host tells of itself with each heartbeat (#17): its containers, every function's,
 * ready and busy, the memory their limits take of its budget (bytes), and the attempts it ended
 * per second lately. */
struct host_figures {
    int64_t containers_ready, containers_busy;
    int64_t memory_used, memory_budget;
    double invocations_per_s;
};

struct host_row {
    const char *host_id;
    const char *advertise;
    const char *version;
    int64_t started_us;
    int64_t heartbeat_us;
    /* hosts_store_list: now_us less heartbeat_us, by the reader's clock (hosts' clocks are
     * assumed in step, as NTP keeps them) */
    int64_t heartbeat_age_us;
    struct host_figures figures; /* as of its last heartbeat */
};

/* Records this host as started at h->started_us with its figures then (its row replaced: a
 * restart is a new start), on the store's connection (loop thread, at start-up). 0 or -errno
 * with err. */
int hosts_store_register(struct store *s, const struct host_row *h, struct ig_error *err);
/* This host's heartbeat at now_us with its figures, through the journal (lazy: a crash may lose
 * the last beats, which only makes the host look older, as it then is). done may be NULL. */
int hosts_store_heartbeat(struct journal *j, const char *host_id, int64_t now_us,
                          const struct host_figures *f, journal_done_fn done, void *userdata);
/* Asks host_id to drain (POST /v1/hosts/{id}/drain on another host): kept in its row (cleared
 * when it registers again), and the CHANGES_DRAIN notification it acts on at once, through the
 * journal. A host whose listener missed the notification finds the request when it reads
 * everything again (hosts_store_drain_requested). 0 or -errno as journal_submit. */
int hosts_store_request_drain(struct journal *j, const char *host_id);
/* Whether a drain of host_id was asked for since it registered. 0 or -errno with err. */
int hosts_store_drain_requested(struct store *s, const char *host_id, bool *ret,
                                struct ig_error *err);
/* Removes host_id's row (and its warm capacity) if its last heartbeat is older than
 * beat_before_us: a host retired for good. 1, or 0 when it beat since (or has no row); -errno
 * with err. */
int hosts_store_forget(struct store *s, const char *host_id, int64_t beat_before_us,
                       struct ig_error *err);
/* Calls each with every host, by host id, its heartbeat's age measured at now_us (strings valid
 * during the call). each returns 0, or -errno to stop (returned). 0 or -errno with err. */
int hosts_store_list(struct store *s, int64_t now_us,
                     int (*each)(void *userdata, const struct host_row *h), void *userdata,
                     struct ig_error *err);

/* Warm capacity (#17): this host has a warm, free container for function (warm) or no longer
 * has one: its row, and the CHANGES_WARM notification peers apply, through the journal (lazy).
 * A host's rows are cleared when it registers. 0 or -errno as journal_submit. */
int hosts_store_warm(struct journal *j, const char *host_id, const char *function, bool warm);
/* Calls each with every (host, function) with warm capacity (strings valid during the call);
 * each returns 0, or -errno to stop (returned). 0 or -errno with err. */
int hosts_store_warm_list(struct store *s,
                          int (*each)(void *userdata, const char *host_id, const char *function),
                          void *userdata, struct ig_error *err);
