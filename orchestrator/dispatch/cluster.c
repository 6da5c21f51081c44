#include "dispatch/cluster.h"

#include <string.h>

#include "base/log.h"
#include "functions/manifest.h"
#include "records/hosts_store.h"
#include "records/journal.h"

struct peer_host {
    char id[64];
    char advertise[512];
    bool live;
    int64_t memory_free;
    char **warm; /* the functions it has warm, sorted (strcmp) */
    size_t nwarm, warm_cap;
};

struct cluster {
    struct loop *loop;
    struct store *store;
    struct journal *journal;
    char host_id[64];
    struct peer_host *hosts;
    size_t nhosts;
    struct placement_host *view; /* nhosts of them: placement's input (view_build) */
    struct loop_timer *timer;
    uint64_t epoch; /* the reads of the hosts so far (cluster_epoch) */
    uint64_t picks;
    bool said_failing; /* a read failed: said once until one succeeds */
};

static void warm_clear(struct peer_host *h)
{
    for (size_t i = 0; i < h->nwarm; i++)
        free(h->warm[i]);
    h->nwarm = 0;
}

static struct peer_host *host_find(struct cluster *c, const char *id)
{
    for (size_t i = 0; i < c->nhosts; i++)
        if (streq(c->hosts[i].id, id))
            return &c->hosts[i];
    return NULL;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static ssize_t warm_index(const struct peer_host *h, const char *function)
{
    char *const key = (char *)function;
    char *const *hit =
        h->nwarm ? bsearch(&key, h->warm, h->nwarm, sizeof(*h->warm), cmp_name) : NULL;
    return hit ? hit - h->warm : -1;
}

static bool store_away(struct cluster *c)
{
    struct journal_health jh;
    journal_get_health(c->journal, &jh);
    return jh.failing && jh.code == ENOTCONN;
}

static void said(struct cluster *c, int r, const struct ig_error *err)
{
    if (r < 0 && !c->said_failing)
        log_warn("reading the cluster's hosts failed: placement keeps what it knew", "error=\"%s\"",
                 err->code ? err->message : strerror(-r));
    c->said_failing = r < 0;
}

/* ---- warm capacity ---- */

static int add_warm(void *userdata, const char *host_id, const char *function)
{
    struct cluster *c = userdata;
    struct peer_host *h = host_find(c, host_id);
    if (!h || streq(host_id, c->host_id))
        return 0; /* a host not listed yet is read with the next refresh's full read */
    if (h->nwarm == h->warm_cap) {
        size_t cap = h->warm_cap ? 2 * h->warm_cap : 16;
        char **w = realloc(h->warm, cap * sizeof(*w));
        if (!w)
            return -ENOMEM;
        h->warm = w;
        h->warm_cap = cap;
    }
    if (!(h->warm[h->nwarm] = strdup(function)))
        return -ENOMEM;
    h->nwarm++;
    return 0;
}

/* Every host's warm functions, read whole. */
static void warm_read_all(struct cluster *c)
{
    for (size_t i = 0; i < c->nhosts; i++)
        warm_clear(&c->hosts[i]);
    struct ig_error err = {};
    int r = hosts_store_warm_list(c->store, add_warm, c, &err);
    said(c, r, &err);
    /* Not on a host without any: its list is NULL then, which qsort may not be given. */
    for (size_t i = 0; i < c->nhosts; i++)
        if (c->hosts[i].nwarm > 1)
            qsort(c->hosts[i].warm, c->hosts[i].nwarm, sizeof(char *), cmp_name);
}

void cluster_forget_warm(struct cluster *c, const char *host_id, const char *function)
{
    struct peer_host *h = host_find(c, host_id);
    ssize_t i = h ? warm_index(h, function) : -1;
    if (i < 0)
        return;
    free(h->warm[i]);
    memmove(h->warm + i, h->warm + i + 1, (h->nwarm - (size_t)i - 1) * sizeof(*h->warm));
    h->nwarm--;
}

void cluster_warm_announced(struct cluster *c, const char *what)
{
    if (!c)
        return;
    if (!what) {
        warm_read_all(c);
        return;
    }
    char host[64], function[MANIFEST_NAME_MAX + 1], sign;
    if (sscanf(what, "%63s %63s %c", host, function, &sign) != 3 || streq(host, c->host_id))
        return;
    struct peer_host *h = host_find(c, host);
    if (!h) /* a host not listed yet: read whole once the next refresh lists it */
        return;
    if (sign == '-') {
        cluster_forget_warm(c, host, function);
        return;
    }
    if (warm_index(h, function) >= 0 || add_warm(c, host, function) < 0)
        return;
    /* Into its place: the new one is last, the rest sorted. */
    char *added = h->warm[h->nwarm - 1];
    size_t at = h->nwarm - 1;
    while (at > 0 && strcmp(h->warm[at - 1], added) > 0) {
        h->warm[at] = h->warm[at - 1];
        at--;
    }
    h->warm[at] = added;
}

/* ---- hosts ---- */

struct reading {
    struct cluster *c;
    struct peer_host *hosts;
    size_t n, cap;
    int64_t now_us;
    bool new_host; /* one not in the view before: its warm capacity is read */
};

static int add_host(void *userdata, const struct host_row *row)
{
    struct reading *rd = userdata;
    if (rd->n == rd->cap) {
        size_t cap = rd->cap ? 2 * rd->cap : 8;
        struct peer_host *p = realloc(rd->hosts, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        rd->hosts = p;
        rd->cap = cap;
    }
    struct peer_host *h = &rd->hosts[rd->n++], *old = host_find(rd->c, row->host_id);
    *h = (struct peer_host){
        .live = row->heartbeat_age_us < HOSTS_GONE_AFTER_US,
        .memory_free = row->figures.memory_budget - row->figures.memory_used,
    };
    snprintf(h->id, sizeof(h->id), "%s", row->host_id);
    snprintf(h->advertise, sizeof(h->advertise), "%s", row->advertise);
    if (old) { /* its warm functions move to the new view */
        h->warm = TAKE_PTR(old->warm);
        h->nwarm = old->nwarm;
        h->warm_cap = old->warm_cap;
        old->nwarm = old->warm_cap = 0;
    } else
        rd->new_host = true;
    return 0;
}

static void free_hosts(struct peer_host *hosts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        warm_clear(&hosts[i]);
        free(hosts[i].warm);
    }
    free(hosts);
}

static int refresh(struct cluster *c, struct ig_error *err)
{
    struct reading rd = {.c = c};
    int r = hosts_store_list(c->store, (int64_t)wall_usec(), add_host, &rd, err);
    if (r < 0) {
        free_hosts(rd.hosts, rd.n); /* what moved goes back: the old view keeps it */
        return r;
    }
    struct placement_host *view = realloc(c->view, (rd.n ? rd.n : 1) * sizeof(*view));
    if (!view) {
        free_hosts(rd.hosts, rd.n);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    c->view = view;
    free_hosts(c->hosts, c->nhosts);
    c->hosts = rd.hosts;
    c->nhosts = rd.n;
    c->epoch++;
    if (rd.new_host)
        warm_read_all(c);
    return 0;
}

static void on_refresh_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct cluster *c = userdata;
    c->timer = NULL;
    if (!store_away(c)) {
        struct ig_error err = {};
        said(c, refresh(c, &err), &err);
    }
    loop_add_timer(l, now_usec() + CLUSTER_REFRESH_US, on_refresh_due, c, &c->timer);
}

int cluster_new(struct loop *l, struct store *s, struct journal *j, const char *host_id,
                struct cluster **ret, struct ig_error *err)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return ig_error_set(err, ENOMEM, "out of memory");
    c->loop = l;
    c->store = s;
    c->journal = j;
    snprintf(c->host_id, sizeof(c->host_id), "%s", host_id);
    int r = refresh(c, err);
    if (r == 0)
        r = loop_add_timer(l, now_usec() + CLUSTER_REFRESH_US, on_refresh_due, c, &c->timer);
    if (r < 0) {
        cluster_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    if (c->timer)
        loop_cancel_timer(c->loop, c->timer);
    free_hosts(c->hosts, c->nhosts);
    free(c->view);
    free(c);
}

/* The hosts as placement sees them for function (each live, its memory free, whether it says
 * it has function warm), as flags say, into c->view (the same order as c->hosts); the index of
 * this host there, or SIZE_MAX when it is not registered yet. */
static size_t view_build(struct cluster *c, const char *function, unsigned flags)
{
    size_t here = SIZE_MAX;
    for (size_t i = 0; i < c->nhosts; i++) {
        const struct peer_host *h = &c->hosts[i];
        bool self = streq(h->id, c->host_id);
        if (self)
            here = i;
        c->view[i] = (struct placement_host){
            .id = h->id,
            .live = self ? !(flags & CLUSTER_ELSEWHERE) : h->live,
            .memory_free = h->memory_free,
            .warm = !(flags & CLUSTER_NO_WARM) && !self && warm_index(h, function) >= 0,
        };
    }
    return here;
}

struct placement cluster_place(struct cluster *c, const char *function, enum placement_local local,
                               unsigned flags, int64_t memory_needed, struct cluster_peer *ret_peer)
{
    if (!c)
        return (struct placement){PLACE_HERE, 0};
    size_t here = view_build(c, function, flags);
    if (here == SIZE_MAX)
        return (struct placement){PLACE_HERE, 0}; /* not registered yet: nothing to go by */
    struct placement p =
        placement_decide(function, local, c->view, c->nhosts, here, memory_needed, c->picks++);
    if (p.kind != PLACE_HERE) {
        snprintf(ret_peer->id, sizeof(ret_peer->id), "%s", c->hosts[p.host].id);
        snprintf(ret_peer->advertise, sizeof(ret_peer->advertise), "%s",
                 c->hosts[p.host].advertise);
    }
    return p;
}

uint64_t cluster_epoch(const struct cluster *c)
{
    return c ? c->epoch : 0;
}

unsigned cluster_share(struct cluster *c, const char *function, unsigned total)
{
    if (!c || total == 0)
        return total;
    size_t here = view_build(c, function, CLUSTER_NO_WARM);
    return here == SIZE_MAX ? total : placement_share(function, c->view, c->nhosts, here, total);
}
