/* A function's alias (docs/architecture.md "Versions and aliases"): a name pointing at 1..4 of
 * its versions with integer weights summing to 100, and the state of the smooth weighted
 * round-robin that spreads an alias's invocations over them. Pure logic, no I/O: the registry
 * keeps the aliases and persists them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "functions/manifest.h"

#define ALIAS_MAX_VERSIONS 4
#define ALIAS_TOTAL_WEIGHT 100

struct registry_alias {
    char name[MANIFEST_NAME_MAX + 1];
    size_t n;                              /* 1..ALIAS_MAX_VERSIONS */
    uint32_t versions[ALIAS_MAX_VERSIONS]; /* ascending */
    uint32_t weights[ALIAS_MAX_VERSIONS];  /* 1..100 each, summing to 100 */
    int32_t credit[ALIAS_MAX_VERSIONS];    /* the round-robin's running credit (alias_pick) */
};

/* 0, or -EINVAL (invalid_alias) when name is not an alias name: [a-z][a-z0-9-]{0,62}, so never a
 * version number. */
int alias_check_name(const char *name, struct ig_error *err);
/* 0, or -EINVAL (invalid_weights) unless there are 1..4 distinct versions (each >= 1), each
 * weighted 1..100, the weights summing to 100. */
int alias_check_weights(const uint32_t *versions, const uint32_t *weights, size_t n,
                        struct ig_error *err);
/* Points a at versions[0..n) with weights[0..n) (checked by alias_check_weights), sorted by
 * version, its round-robin started afresh. */
void alias_assign(struct registry_alias *a, const uint32_t *versions, const uint32_t *weights,
                  size_t n);
/* The version the next invocation through a goes to: nginx's smooth weighted round-robin (each
 * pick adds every weight to its version's credit, takes the highest credit, ties to the older
 * version, and takes 100 from it), so any 100 consecutive picks give each version exactly its
 * weight, interleaved. */
uint32_t alias_pick(struct registry_alias *a);
/* a's primary version: its highest weight, a tie going to the newer version. */
uint32_t alias_primary(const struct registry_alias *a);
/* Whether a points at version. */
bool alias_has(const struct registry_alias *a, uint32_t version);
