/* The hosts table (issue #16): every ignisd using the database, by its stable host id, with the
 * address its peers reach it at, its version, when it started and its last heartbeat. A host
 * registers at start and beats every second through the journal (off the loop), so peers (and
 * GET /v1/hosts, #17) tell a live host from a gone one by its heartbeat's age. On SQLite the
 * table has the one row of the state dir's host. Times are wall-clock microseconds. */
#pragma once

#include <stdint.h>

#include "base/util.h"
#include "records/journal.h"

struct store;

struct host_row {
    const char *host_id;
    const char *advertise;
    const char *version;
    int64_t started_us;
    int64_t heartbeat_us;
    /* hosts_store_list: now_us less heartbeat_us, by the reader's clock (hosts' clocks are
     * assumed in step, as NTP keeps them) */
    int64_t heartbeat_age_us;
};

/* Records this host as started at h->started_us (its row replaced: a restart is a new start),
 * on the store's connection (loop thread, at start-up). 0 or -errno with err. */
int hosts_store_register(struct store *s, const struct host_row *h, struct ig_error *err);
/* This host's heartbeat at now_us, through the journal (lazy: a crash may lose the last beats,
 * which only makes the host look older, as it then is). done may be NULL. */
int hosts_store_heartbeat(struct journal *j, const char *host_id, int64_t now_us,
                          journal_done_fn done, void *userdata);
/* Calls each with every host, by host id, its heartbeat's age measured at now_us (strings valid
 * during the call). each returns 0, or -errno to stop (returned). 0 or -errno with err. */
int hosts_store_list(struct store *s, int64_t now_us,
                     int (*each)(void *userdata, const struct host_row *h), void *userdata,
                     struct ig_error *err);
