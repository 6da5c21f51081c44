#include "dispatch/latency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void latency_add(struct latency *l, uint64_t usec)
{
    l->us[l->next] = usec > UINT32_MAX ? UINT32_MAX : (uint32_t)usec;
    l->next = (l->next + 1) % LATENCY_SAMPLES;
    if (l->n < LATENCY_SAMPLES)
        l->n++;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t latency_percentile(const struct latency *l, double p)
{
    if (l->n == 0)
        return 0;
    uint32_t sorted[LATENCY_SAMPLES];
    /* While the ring is filling, the samples are the first n slots; once full, all of them. */
    memcpy(sorted, l->us, l->n * sizeof(*sorted));
    qsort(sorted, l->n, sizeof(*sorted), cmp_u32);
    size_t rank = (size_t)ceil(p / 100.0 * (double)l->n);
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return sorted[rank - 1];
}
