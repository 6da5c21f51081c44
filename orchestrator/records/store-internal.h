/* The store's connection, for records/ alone (the other layers name operations, records/
 * speaks SQL: docs/architecture.md "Layers"). Tests may include it to look at the database. */
#pragma once

#include <sqlite3.h>

#include "records/store.h"

/* The errno behind the connection's last failure: ENOSPC when the disk (or quota) is full
 * (SQLITE_FULL, or a write or an allocation of the -shm or -wal file that failed so, which SQLite
 * reports as "disk I/O error"), else EIO. The caller names the cause with store_strerror. */
int store_errno(sqlite3 *db);
/* The engine's message, with " (No space left on device)" when store_errno says so. In buf. */
const char *store_strerror(sqlite3 *db, char *buf, size_t size);

struct store {
    sqlite3 *db; /* the loop thread's connection */
    char path[4096];
};
