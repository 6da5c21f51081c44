/* The store's connection, for records/ alone (the other layers name operations, records/
 * speaks SQL: docs/architecture.md "Layers"). Tests may include it to look at the database. */
#pragma once

#include <sqlite3.h>

#include "records/store.h"

struct store {
    sqlite3 *db; /* the loop thread's connection */
    char path[4096];
};
