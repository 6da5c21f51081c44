#include "records/retention.h"

#include <errno.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/util.h"

struct purge {
    retention_fn fn;
    void *userdata;
};

struct retention {
    struct loop *loop;
    struct loop_timer *timer;
    struct purge *purges;
    size_t n;
};

void retention_done(struct loop *l, int result, const char *message, void *userdata)
{
    if (result < 0)
        log_warn("purging old rows failed", "table=%s error=\"%s\"", (const char *)userdata,
                 message);
}

void retention_run(struct retention *r)
{
    int64_t now = (int64_t)wall_usec();
    for (size_t i = 0; i < r->n; i++)
        r->purges[i].fn(r->purges[i].userdata, now);
}

static void on_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct retention *r = userdata;
    r->timer = NULL;
    retention_run(r);
    loop_add_timer(l, now_usec() + RETENTION_INTERVAL_US, on_timer, r, &r->timer);
}

int retention_new(struct loop *l, struct retention **ret)
{
    struct retention *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = l;
    int e = loop_add_timer(l, now_usec(), on_timer, r, &r->timer);
    if (e < 0) {
        free(r);
        return e;
    }
    *ret = r;
    return 0;
}

int retention_add(struct retention *r, retention_fn fn, void *userdata)
{
    struct purge *p = reallocarray(r->purges, r->n + 1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    r->purges = p;
    r->purges[r->n++] = (struct purge){.fn = fn, .userdata = userdata};
    return 0;
}

void retention_free(struct retention *r)
{
    if (!r)
        return;
    if (r->timer)
        loop_cancel_timer(r->loop, r->timer);
    free(r->purges);
    free(r);
}
