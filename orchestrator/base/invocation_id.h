/* An invocation's id and the states the API names (GET /v1/invocations/{id}): the vocabulary
 * the daemon and its clients (the CLI) share, as CloudEvents' attributes are. */
#pragma once

#include <stdbool.h>

#include "base/util.h"

#define INV_ID_LEN 32 /* hex digits: 48 bits of time, 80 random bits */

enum inv_status { INV_QUEUED, INV_RUNNING, INV_SUCCEEDED, INV_FAILED, INV_DEAD };

const char *inv_status_name(enum inv_status s);
int inv_status_parse(const char *s, enum inv_status *ret);
static inline bool inv_status_final(enum inv_status s)
{
    return s == INV_SUCCEEDED || s == INV_FAILED || s == INV_DEAD;
}

/* A new id: the wall clock's milliseconds (48 bits, big-endian) then 80 random bits (getrandom),
 * as UUIDv7 lays them out. Ids made later sort later, so the store's indexes on them grow at
 * their right edge instead of taking a random page per invocation (docs/performance.md). */
void inv_id_new(char ret[INV_ID_LEN + 1]);
/* Whether s has the shape of an id (so a lookup with anything else is a 404 without a query). */
bool inv_id_valid(const char *s);
