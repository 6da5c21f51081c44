/* The store's connection, for records/ alone (the other layers name operations, records/
 * speaks SQL: docs/architecture.md "Layers"). Tests may include it to look at the database. */
#pragma once

#include "records/db.h"
#include "records/store.h"

struct store {
    struct db *db; /* the loop thread's connection */
    char path[4096];
    struct journal *journal; /* settled before reads of what it writes (store_set_journal) */
    /* The loop thread's connection for trying session locks not held yet (records/invocation.c
     * lock_take), kept between tries; it becomes the lock's own when a try takes one. NULL
     * until a try, or after a failed one. */
    struct db *lock_trier;
};

/* Before a read of rows the journal writes (invocation records, usage, audit, dead letters, sink
 * deliveries): waits until what the loop submitted so far is committed, so a client reads its
 * own writes (a sync invocation's record right after its reply). */
void store_settle(struct store *s);
