/* An open-addressing hash table (linear probing, deletion by backward shift, so no tombstones)
 * over a ring of entries kept in insertion order: expiry and eviction both take the ring's head,
 * and every operation is O(1) expected. glibc's hsearch cannot delete; the Debian-packaged
 * alternatives (GLib, uthash) hash with unkeyed functions, which a sender choosing ids could
 * flood, and would add a dependency for sixty lines. */
#include "events/dedupe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    uint64_t h1, h2; /* 128-bit keyed fingerprint of (source, id) */
    uint64_t at;
};

struct ce_dedupe {
    uint64_t window_us;
    uint64_t k0, k1, k2, k3; /* two SipHash keys */
    size_t capacity, head, count;
    struct entry *ring; /* capacity entries; [head, head + count) are live, oldest first */
    uint32_t *slots;    /* ring index + 1, or 0 for empty */
    size_t mask;        /* table size - 1; the table is at least twice the capacity */
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012), streaming over two strings ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* bytes not yet compressed, little-endian */
    size_t total;
};

static void sip_round(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = ROTL(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = ROTL(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = ROTL(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = ROTL(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = ROTL(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = ROTL(s->v2, 32);
}

static void sip_init(struct sip *s, uint64_t k0, uint64_t k1)
{
    s->v0 = k0 ^ 0x736f6d6570736575ull;
    s->v1 = k1 ^ 0x646f72616e646f6dull;
    s->v2 = k0 ^ 0x6c7967656e657261ull;
    s->v3 = k1 ^ 0x7465646279746573ull;
    s->tail = 0;
    s->total = 0;
}

static void sip_update(struct sip *s, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        s->tail |= (uint64_t)p[i] << (8 * (s->total % 8));
        if (++s->total % 8 == 0) {
            s->v3 ^= s->tail;
            sip_round(s);
            sip_round(s);
            s->v0 ^= s->tail;
            s->tail = 0;
        }
    }
}

static uint64_t sip_final(struct sip *s)
{
    uint64_t b = s->tail | ((uint64_t)(s->total & 0xff) << 56);
    s->v3 ^= b;
    sip_round(s);
    sip_round(s);
    s->v0 ^= b;
    s->v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

static uint64_t sip_pair(uint64_t k0, uint64_t k1, const char *source, const char *id)
{
    struct sip s;
    sip_init(&s, k0, k1);
    /* The NUL between the two keeps ("ab", "c") apart from ("a", "bc"). */
    sip_update(&s, source, strlen(source) + 1);
    sip_update(&s, id, strlen(id));
    return sip_final(&s);
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- The table ---- */

int ce_dedupe_new(size_t capacity, uint64_t window_us, const uint8_t key[16],
                  struct ce_dedupe **ret)
{
    if (capacity == 0 || capacity > (1u << 30) || window_us == 0)
        return -EINVAL;
    struct ce_dedupe *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    size_t size = 4;
    while (size < 2 * capacity)
        size <<= 1;
    d->ring = calloc(capacity, sizeof(*d->ring));
    d->slots = calloc(size, sizeof(*d->slots));
    if (!d->ring || !d->slots) {
        ce_dedupe_free(d);
        return -ENOMEM;
    }
    d->capacity = capacity;
    d->mask = size - 1;
    d->window_us = window_us;
    d->k0 = load64(key);
    d->k1 = load64(key + 8);
    /* A second, different key for the other half of the fingerprint. */
    d->k2 = d->k0 ^ 0x9e3779b97f4a7c15ull;
    d->k3 = d->k1 ^ 0xc2b2ae3d27d4eb4full;
    *ret = d;
    return 0;
}

void ce_dedupe_free(struct ce_dedupe *d)
{
    if (!d)
        return;
    free(d->ring);
    free(d->slots);
    free(d);
}

/* The slot holding the fingerprint, or the empty slot where it would go; *found says which. */
static size_t find(const struct ce_dedupe *d, uint64_t h1, uint64_t h2, bool *found)
{
    size_t i = h1 & d->mask;
    while (d->slots[i]) {
        const struct entry *e = &d->ring[d->slots[i] - 1];
        if (e->h1 == h1 && e->h2 == h2) {
            *found = true;
            return i;
        }
        i = (i + 1) & d->mask;
    }
    *found = false;
    return i;
}

static void remove_oldest(struct ce_dedupe *d)
{
    const struct entry *e = &d->ring[d->head];
    bool found;
    size_t i = find(d, e->h1, e->h2, &found), j = i;

    /* Backward-shift deletion (Knuth 6.4, algorithm R): move later members of the probe run
     * into the hole unless their home slot lies cyclically in (i, j]. */
    for (;;) {
        j = (j + 1) & d->mask;
        if (!d->slots[j])
            break;
        size_t k = d->ring[d->slots[j] - 1].h1 & d->mask;
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            d->slots[i] = d->slots[j];
            i = j;
        }
    }
    d->slots[i] = 0;
    d->head = (d->head + 1) % d->capacity;
    d->count--;
}

static void expire(struct ce_dedupe *d, uint64_t now_us)
{
    while (d->count > 0 && now_us - d->ring[d->head].at >= d->window_us &&
           now_us >= d->ring[d->head].at)
        remove_oldest(d);
}

bool ce_dedupe_contains(struct ce_dedupe *d, const char *source, const char *id, uint64_t now_us)
{
    bool found;
    expire(d, now_us);
    find(d, sip_pair(d->k0, d->k1, source, id), sip_pair(d->k2, d->k3, source, id), &found);
    return found;
}

int ce_dedupe_insert(struct ce_dedupe *d, const char *source, const char *id, uint64_t now_us)
{
    uint64_t h1 = sip_pair(d->k0, d->k1, source, id), h2 = sip_pair(d->k2, d->k3, source, id);
    bool found;

    expire(d, now_us);
    find(d, h1, h2, &found);
    if (found)
        return 1;
    if (d->count > 0) {
        uint64_t newest = d->ring[(d->head + d->count - 1) % d->capacity].at;
        if (now_us < newest)
            now_us = newest;
    }
    if (d->count == d->capacity)
        remove_oldest(d);
    size_t slot = find(d, h1, h2, &found); /* the table changed if an entry went */
    size_t idx = (d->head + d->count) % d->capacity;
    d->ring[idx] = (struct entry){.h1 = h1, .h2 = h2, .at = now_us};
    d->slots[slot] = (uint32_t)idx + 1;
    d->count++;
    return 0;
}

size_t ce_dedupe_size(const struct ce_dedupe *d)
{
    return d->count;
}
