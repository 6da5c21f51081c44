/* The store's connection, for records/ alone (the other layers name operations, records/
 * speaks SQL: docs/architecture.md "Layers"). Tests may include it to look at the database. */
#pragma once

#include <sqlite3.h>

#include "records/store.h"

/* The errno behind the connection's last failure: ENOSPC when the disk is full (SQLITE_FULL, or
 * a write or an allocation of the -shm or -wal file that failed so, which SQLite reports as "disk
 * I/O error"), EDQUOT when the quota is, else EIO. The caller names the cause with
 * store_strerror. */
int store_errno(sqlite3 *db);
/* The engine's message, with " (No space left on device)" when store_errno says so. In buf. */
const char *store_strerror(sqlite3 *db, char *buf, size_t size);
/* Sets err to the connection's last failure, "WHAT: the engine's message", with store_errno's
 * errno (a full disk is ENOSPC: 507, not 500), and returns its negative. */
int store_fail(sqlite3 *db, struct ig_error *err, const char *fmt, ...) _printf_(3, 4);

struct store {
    sqlite3 *db; /* the loop thread's connection */
    char path[4096];
    struct journal *journal; /* settled before reads of what it writes (store_set_journal) */
};

/* Before a read of rows the journal writes (invocation records, usage, audit, dead letters, sink
 * deliveries): waits until what the loop submitted so far is committed, so a client reads its
 * own writes (a sync invocation's record right after its reply). */
void store_settle(struct store *s);
