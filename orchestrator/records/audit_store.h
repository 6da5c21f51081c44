/* The audit table: one row per audited request (api/audit.c decides which and fills them). Rows
 * are appended through the journal, lazily (crash-safe, off the loop); reads are queries on the
 * loop thread's connection. */
#pragma once

#include <stdint.h>

#include "base/util.h"

struct journal;
struct store;

/* A row; NULL strings are stored as NULL. */
struct audit_row {
    int64_t seq; /* set by the store */
    int64_t time_us;
    const char *token_id, *token_name, *role;
    const char *action; /* "METHOD /route/pattern" */
    const char *path, *function, *detail, *peer;
    int status; /* 0: no reply was sent */
};

int audit_store_append(struct journal *j, const struct audit_row *r);
/* Deletes the rows recorded before before_us (the daemon's retention, retention.h). */
int audit_store_purge(struct journal *j, int64_t before_us);
/* The newest rows first, at most limit, recorded at or after since_us, of function (NULL: any):
 * each is called with each (its strings valid during the call); -errno from each stops it. */
int audit_store_list(struct store *s, const char *function, int64_t since_us, unsigned long limit,
                     int (*each)(void *userdata, const struct audit_row *r), void *userdata,
                     struct ig_error *err);
