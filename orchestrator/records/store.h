/* The store: ignis.db (SQLite, WAL) under the state dir, its schema and ordered migrations.
 * Everything durable goes through here; the event loop owns the connection. */
#pragma once

#include "base/util.h"

/* Opaque outside records/: the connection is records/'s alone (store-internal.h). */
struct store;
struct db;

/* One migration brings the schema from version (index) to (index + 1): sql on both engines, or
 * on SQLite alone when pg is set, pg being PostgreSQL's text for it. An empty pg: nothing to run
 * on PostgreSQL, whose baseline (the first migration's pg) made that schema already. */
struct store_migration {
    const char *name;
    const char *sql;
    const char *pg;
};

/* The migrations this build knows, in order (tests build older schemas with them). */
const struct store_migration *store_migrations(size_t *ret_n);

/* The schema version this build writes: the number of migrations it knows. */
int store_schema_version(void);

/* Opens (creating if needed) the database at path in WAL mode, or the PostgreSQL database path
 * names (db_open), and migrates it to the current schema. A database from a newer ignisd is
 * refused. */
int store_open(const char *path, struct store **ret, struct ig_error *err);
void store_free(struct store *s);
/* Connects to the store at path as store_open would, without creating or migrating anything,
 * and reads its schema version (0: none yet, as for a SQLite file not made yet): what
 * `ignisd --check-config` reports. Fails as db_open does (ENOTCONN: unreachable). */
int store_probe(const char *path, int *ret_version, struct ig_error *err);
/* The journal writing to the same database: reads of what it writes wait until what was submitted
 * before them is committed (the journal lingers up to a few ms over crash-safe rows). */
struct journal;
void store_set_journal(struct store *s, struct journal *j);

/* Applies migrations[from..n) in order, each in its own transaction, bumping the schema version
 * (db_user_version). Fails when the database is newer than n. Hosts migrating one PostgreSQL
 * database at once take turns (an advisory lock in each migrating transaction): each migration
 * runs once. Exposed so tests can migrate with their own lists. */
int store_migrate(struct db *db, const struct store_migration *migrations, size_t n,
                  struct ig_error *err);

/* Whether the file system of dir has space left for an unprivileged write: 0, or -ENOSPC with
 * "state dir DIR: no space left on device" (or the statvfs error). */
int store_space_check(const char *dir, struct ig_error *err);
