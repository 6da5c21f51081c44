#include "dispatch/placement.h"

/* FNV-1a over the function's name, a 0 byte and the host's id, then MurmurHash3's finaliser:
 * FNV alone spreads names that differ in their last bytes poorly over the top bits. */
static uint64_t weight(const char *function, const char *host)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = function; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    h *= 0x100000001b3ull;
    for (const char *p = host; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

ssize_t placement_home(const char *function, const struct placement_host *hosts, size_t n,
                       int64_t memory_needed)
{
    ssize_t best = -1;
    uint64_t best_w = 0;
    for (size_t i = 0; i < n; i++) {
        if (!hosts[i].live || hosts[i].memory_free < memory_needed)
            continue;
        uint64_t w = weight(function, hosts[i].id);
        if (best < 0 || w > best_w) {
            best = (ssize_t)i;
            best_w = w;
        }
    }
    return best;
}

struct placement placement_decide(const char *function, enum placement_local local,
                                  const struct placement_host *hosts, size_t n, size_t here,
                                  int64_t memory_needed, uint64_t pick)
{
    if (local == LOCAL_FREE)
        return (struct placement){PLACE_HERE, here};
    size_t warm = 0;
    for (size_t i = 0; i < n; i++)
        warm += i != here && hosts[i].live && hosts[i].warm;
    if (warm) {
        size_t k = pick % warm;
        for (size_t i = 0; i < n; i++)
            if (i != here && hosts[i].live && hosts[i].warm && k-- == 0)
                return (struct placement){PLACE_WARM_PEER, i};
    }
    ssize_t home = local == LOCAL_NONE ? placement_home(function, hosts, n, memory_needed) : -1;
    if (home >= 0 && (size_t)home != here)
        return (struct placement){PLACE_HOME, (size_t)home};
    return (struct placement){PLACE_HERE, here};
}

unsigned placement_share(const char *function, const struct placement_host *hosts, size_t n,
                         size_t i, unsigned total)
{
    uint64_t mine = weight(function, hosts[i].id);
    size_t live = 0, before = 0;
    for (size_t j = 0; j < n; j++) {
        if (j != i && !hosts[j].live)
            continue;
        live++;
        uint64_t w = j == i ? mine : weight(function, hosts[j].id);
        /* Ties (never in practice: ids differ) go by index, so every host ranks them alike. */
        before += j != i && (w > mine || (w == mine && j < i));
    }
    return (unsigned)(total / live + (before < total % live ? 1 : 0));
}
