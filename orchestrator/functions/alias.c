#include "functions/alias.h"

#include <string.h>

int alias_check_name(const char *name, struct ig_error *err)
{
    if (manifest_name_valid(name))
        return 0;
    return ig_error_set_reason(err, EINVAL, "invalid_alias",
                               "\"%.80s\" is not an alias name ([a-z][a-z0-9-]{0,62}: a version "
                               "number cannot be one)",
                               name);
}

int alias_check_weights(const uint32_t *versions, const uint32_t *weights, size_t n,
                        struct ig_error *err)
{
    if (n == 0 || n > ALIAS_MAX_VERSIONS)
        return ig_error_set_reason(err, EINVAL, "invalid_weights",
                                   "an alias points at 1 to %d versions, not %zu",
                                   ALIAS_MAX_VERSIONS, n);
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (versions[i] == 0)
            return ig_error_set_reason(err, EINVAL, "invalid_weights",
                                       "versions are numbered from 1");
        if (weights[i] < 1 || weights[i] > ALIAS_TOTAL_WEIGHT)
            return ig_error_set_reason(err, EINVAL, "invalid_weights",
                                       "version %u: a weight is from 1 to 100, not %u", versions[i],
                                       weights[i]);
        for (size_t j = 0; j < i; j++)
            if (versions[j] == versions[i])
                return ig_error_set_reason(err, EINVAL, "invalid_weights",
                                           "version %u is listed twice", versions[i]);
        sum += weights[i];
    }
    if (sum != ALIAS_TOTAL_WEIGHT)
        return ig_error_set_reason(err, EINVAL, "invalid_weights", "the weights sum to %u, not 100",
                                   sum);
    return 0;
}

void alias_assign(struct registry_alias *a, const uint32_t *versions, const uint32_t *weights,
                  size_t n)
{
    a->n = 0;
    memset(a->credit, 0, sizeof(a->credit));
    for (size_t i = 0; i < n && i < ALIAS_MAX_VERSIONS; i++) {
        size_t j = a->n++;
        while (j > 0 && a->versions[j - 1] > versions[i]) {
            a->versions[j] = a->versions[j - 1];
            a->weights[j] = a->weights[j - 1];
            j--;
        }
        a->versions[j] = versions[i];
        a->weights[j] = weights[i];
    }
}

uint32_t alias_pick(struct registry_alias *a)
{
    size_t best = 0;
    for (size_t i = 0; i < a->n; i++) {
        a->credit[i] += (int32_t)a->weights[i];
        if (a->credit[i] > a->credit[best])
            best = i;
    }
    a->credit[best] -= ALIAS_TOTAL_WEIGHT;
    return a->versions[best];
}

uint32_t alias_primary(const struct registry_alias *a)
{
    size_t best = 0;
    for (size_t i = 1; i < a->n; i++)
        if (a->weights[i] >= a->weights[best]) /* ascending: >= lets the newer win a tie */
            best = i;
    return a->versions[best];
}

bool alias_has(const struct registry_alias *a, uint32_t version)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->versions[i] == version)
            return true;
    return false;
}
