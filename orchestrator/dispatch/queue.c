/* The async queue shared by the hosts of one PostgreSQL store (docs/architecture.md "The queue's
 * leases and fencing"). An accepted invocation is a row, not an entry in the accepting host's
 * memory: the accepting host takes it as it inserts it when its warm containers have room for it
 * soon (queue_take_here), else the row is queued and every host claims rows of the functions it has
 * room for (an acceptance on any host, its own too, wakes it by a notification; an attempt's end,
 * when rows may be due; a poll is the backstop), runs
 * them under a lease, and writes their outcome fenced by that lease. Each host holds a session
 * advisory lock while it lives; once a second its peers try the locks of the hosts holding leases,
 * and the one that gets a dead host's lock requeues its rows. Expired leases (a host cut off
 * without its TCP connection closing) are requeued by any host. */
#include "base/log.h"
#include "dispatch/dispatch-internal.h"
#include "records/changes.h"

/* How often a host claims without being woken, and looks for dead peers and expired leases. */
#define CLAIM_POLL_US (250 * 1000)
#define LIVENESS_US   (1000 * 1000)
/* A lease is the function's timeout and this: the time a claimed invocation may wait for a
 * container (a cold start) before it runs. An attempt that waited longer than half of it renews
 * the lease as it starts. */
#define LEASE_GRACE_US (30ll * 1000 * 1000)
/* Rows claimed by one statement at most. */
#define CLAIM_BATCH 32
/* After a claim that found fewer rows due than it asked for (it emptied the queue, as far as it
 * could take), the next claim for that function on this host comes no sooner than this: while
 * acceptances trickle in on every host, each host would otherwise claim a few rows per
 * notification, a statement of a few hundred µs of the server's CPU each, where a claim a few ms
 * later takes them all (docs/performance.md "Claims spaced out"). A claim that took all it asked
 * for is not followed by a wait (a backlog, or a function held to its max_concurrency whose
 * attempts' ends claim one row each), nor is the first claim after a quiet spell; the rows of a
 * trickle wait up to this long. */
#define CLAIM_SPACING_US (5 * 1000)

int64_t queue_lease_us(const struct manifest *m)
{
    return (int64_t)m->timeout_ms * 1000 + LEASE_GRACE_US;
}

bool queue_lease_short(const struct manifest *m, int64_t lease_until_us, int64_t start_wall_us)
{
    /* Started within half the grace of its claim, an attempt ends, and has its outcome written,
     * well inside the claim's lease: its start writes nothing (a statement saved per attempt). */
    return start_wall_us + (int64_t)m->timeout_ms * 1000 + LEASE_GRACE_US / 2 > lease_until_us;
}

/* What fn (the function's own state) runs or holds here: its queue and attempts in flight, its
 * version states' too. */
static size_t held(const struct fn_state *fn)
{
    size_t n = fn->queued + fn->inflight;
    for (const struct fn_state *v = fn->versions; v; v = v->vnext)
        n += v->queued + v->inflight;
    return n;
}

static bool warm(const struct fn_state *fn)
{
    return fn->nready > 0;
}

/* The attempts fn's containers here (its version states' too) run at once: each container's
 * concurrency. */
static size_t slots(const struct fn_state *fn)
{
    size_t n = (fn->nready + fn->nbusy) * fn->manifest->concurrency;
    for (const struct fn_state *v = fn->versions; v; v = v->vnext)
        n += (v->nready + v->nbusy) * v->manifest->concurrency;
    return n;
}

bool queue_take_here(struct dispatch *d, struct fn_state *fn)
{
    /* Not while its bundle is not here (as claim_for): what it accepts then could wait here for
     * a container it cannot start, its slots being another version's. */
    if (!d->lease_owner || !d->host_lock || d->stopping || fn->removing || fn->bundle_pending)
        return false;
    size_t here = held(fn), submitting = fn->submitting, taking = fn->taking;
    for (const struct fn_state *v = fn->versions; v; v = v->vnext) {
        submitting += v->submitting;
        taking += v->taking;
    }
    /* Taken while each of its slots here has at most one attempt waiting behind the one it
     * runs: it starts within about an attempt's time, as a row this host would claim at once
     * does, and a deeper backlog is left for whichever host has room. */
    return here + submitting < manifest_max_concurrency(fn->manifest) &&
           here + taking < 2 * slots(fn);
}

struct claim_pass {
    struct dispatch *d;
    char (*names)[MANIFEST_NAME_MAX + 1];
    size_t n;
};

/* A function with rows queued in the store: what it has waiting there (queue_max counts it,
 * dispatch_queue_takes), and, when some are due, a name to claim for. */
static int collect(const char *function, int64_t queued, int64_t due, void *userdata)
{
    struct claim_pass *p = userdata;
    struct fn_state *fn = dispatch_function(p->d, function);
    if (fn) {
        fn->shared_queued = (size_t)queued;
        fn->claim_due = due > 0;
    }
    if (due > 0 && p->n < 256)
        snprintf(p->names[p->n++], MANIFEST_NAME_MAX + 1, "%s", function);
    return 0;
}

static int take_claimed(struct inv_record *r, void *userdata)
{
    struct dispatch *d = userdata;
    struct fn_state *fn = dispatch_function(d, r->function);
    if (fn && fn->shared_queued > 0)
        fn->shared_queued--; /* counted in its queue here from now */
    return dispatch_queue_record(d, r, r->attempts) < 0 ? -ENOMEM : 0;
}

static void on_spaced(struct loop *l, struct loop_timer *t, void *userdata);

/* Claims for fn as much as it has room for (its max_concurrency, less what it holds), now or,
 * after a claim that emptied the queue, once CLAIM_SPACING_US has passed since. by: what woke this
 * host (the log says, so that a notification's work can be told from the poll's). */
static void claim_for(struct dispatch *d, struct fn_state *fn, const char *by)
{
    size_t cap = manifest_max_concurrency(fn->manifest), have = held(fn);
    size_t room = cap > have ? cap - have : 0;
    if (room == 0 || fn->removing || fn->bundle_pending)
        return;
    uint64_t now = now_usec();
    if (now < fn->claim_after_us) {
        /* One timer for every function that waits, due at the earliest of their times. */
        fn->claim_wanted = true;
        if (d->spacing_timer && d->spacing_due_us > fn->claim_after_us) {
            loop_cancel_timer(d->loop, d->spacing_timer);
            d->spacing_timer = NULL;
        }
        if (!d->spacing_timer) {
            if (loop_add_timer(d->loop, fn->claim_after_us, on_spaced, d, &d->spacing_timer) == 0)
                d->spacing_due_us = fn->claim_after_us;
            else
                d->spacing_timer = NULL; /* out of memory: the poll claims */
        }
        return;
    }
    int want = (int)(room < CLAIM_BATCH ? room : CLAIM_BATCH);
    int n = inv_store_claim(d->store, fn->name, want, d->lease_owner, (int64_t)wall_usec(),
                            queue_lease_us(fn->manifest), take_claimed, d);
    /* Fewer than asked for: none is due now (as far as the store said), until news of more, and
     * that news waits to be spaced out. All it asked for: more may be due, and room freed here
     * (an attempt's end) claims them at once. */
    fn->claim_after_us = n >= 0 && n < want ? now + CLAIM_SPACING_US : 0;
    if (n >= 0 && n < want)
        fn->claim_due = false;
    if (n < 0)
        log_warn("claiming queued invocations failed", "function=%s", fn->name);
    else if (n > 0)
        log_debug("claimed queued invocations", "function=%s count=%d by=%s", fn->name, n, by);
}

static int requeue_peer(const char *owner, void *userdata)
{
    struct dispatch *d = userdata;
    int n = inv_store_requeue_dead(d->store, owner);
    if (n > 0)
        log_warn("a host is gone: its running invocations are queued again", "host_id=%s count=%d",
                 owner, n);
    return 0;
}

/* Dead peers' rows and expired leases back to the queue. */
static void check_liveness(struct dispatch *d)
{
    d->liveness_us = now_usec();
    int n = inv_store_requeue(d->store, NULL, (int64_t)wall_usec());
    if (n > 0)
        log_warn("leases ran out: their invocations are queued again", "count=%d", n);
    inv_store_lease_holders(d->store, d->lease_owner, requeue_peer, d);
}

/* 0 when this host holds its lock (it takes it when it can), else -EAGAIN: without it, its
 * peers would take it for dead and requeue what it runs. */
static int hold_lock(struct dispatch *d)
{
    if (d->host_lock)
        return 0;
    struct ig_error err = {};
    int r = inv_host_lock_take(d->store, d->lease_owner, &d->host_lock, &err);
    if (r > 0 && d->host_lock_said)
        log_info("this host's lock is taken: claiming", "host_id=%s", d->lease_owner);
    bool said = d->host_lock_said;
    d->host_lock_said = r <= 0;
    if (said)
        return r > 0 ? 0 : -EAGAIN;
    if (r == 0)
        log_warn("this host's lock is held by another session: claiming nothing until it is free "
                 "(a previous process not seen dead yet, or another host with this host id)",
                 "host_id=%s", d->lease_owner);
    else if (r < 0)
        log_warn("taking this host's lock failed", "error=\"%s\"", err.message);
    return r > 0 ? 0 : -EAGAIN;
}

static void claim_all(struct dispatch *d, const char *by)
{
    if (d->stopping || hold_lock(d) < 0)
        return;
    if (now_usec() >= d->liveness_us + LIVENESS_US)
        check_liveness(d);
    char names[256][MANIFEST_NAME_MAX + 1];
    struct claim_pass p = {.d = d, .names = names};
    for (struct fn_state *fn = d->fns; fn; fn = fn->next) {
        fn->shared_queued = 0;
        fn->claim_due = false;
    }
    if (inv_store_queued_functions(d->store, (int64_t)wall_usec(), collect, &p) < 0) {
        log_warn("reading the shared queue failed");
        return;
    }
    /* Functions with idle containers here first: their work starts without a cold start. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < p.n; i++) {
            struct fn_state *fn = dispatch_function(d, names[i]);
            if (fn && warm(fn) == (pass == 0))
                claim_for(d, fn, by);
        }
}

static void on_claim_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct dispatch *d = userdata;
    d->claim_timer = NULL;
    claim_all(d, "poll");
    if (!d->stopping)
        loop_add_timer(l, now_usec() + CLAIM_POLL_US, on_claim_due, d, &d->claim_timer);
}

/* The functions whose attempts ended this loop turn, or whose claims waited to be spaced out:
 * one claim each. */
static void claim_pending(struct dispatch *d, const char *by)
{
    for (struct fn_state *fn = d->fns; fn; fn = fn->next)
        if (fn->claim_wanted) {
            fn->claim_wanted = false;
            /* The lock is asked for only by a claim to make: without it, a try opens a
             * connection. */
            if (fn->claim_due && !d->stopping && hold_lock(d) == 0)
                claim_for(d, fn, by);
        }
}

static void on_kick(struct loop *l, void *userdata)
{
    struct dispatch *d = userdata;
    d->claim_posted = false;
    claim_pending(d, "attempt_end");
}

static void on_spaced(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct dispatch *d = userdata;
    d->spacing_timer = NULL;
    claim_pending(d, "spaced");
}

void dispatch_queue_wake(struct dispatch *d, const char *function)
{
    struct fn_state *fn;
    if (!d->lease_owner || d->stopping || hold_lock(d) < 0 ||
        !(fn = dispatch_function(d, function)))
        return;
    fn->claim_due = true;
    claim_for(d, fn, "notification");
}

void queue_kick(struct dispatch *d, struct fn_state *fn)
{
    fn->claim_wanted = true;
    if (!d->claim_posted && !d->stopping && loop_post(d->loop, on_kick, d) == 0)
        d->claim_posted = true;
}

int queue_start(struct dispatch *d, struct ig_error *err)
{
    /* What this host's previous process held: it ran them, or not; either way they run again,
     * claimed afresh, and whatever that process may still write of them is refused. */
    int n = inv_store_requeue(d->store, d->lease_owner, 0);
    if (n < 0)
        return ig_error_set(err, EIO, "requeueing this host's earlier invocations failed");
    if (n > 0)
        log_info("invocations this host held before its restart are queued again", "count=%d", n);
    if (loop_add_timer(d->loop, now_usec(), on_claim_due, d, &d->claim_timer) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    return 0;
}

void queue_stop(struct dispatch *d)
{
    if (d->claim_timer)
        loop_cancel_timer(d->loop, d->claim_timer);
    if (d->spacing_timer)
        loop_cancel_timer(d->loop, d->spacing_timer);
    d->claim_timer = d->spacing_timer = NULL;
}

void queue_hand_back(struct dispatch *d)
{
    if (!d->lease_owner)
        return;
    size_t n = 0;
    for (struct fn_state *fn = d->fns; fn; fn = fn->next) {
        size_t before = n;
        struct inv *inv;
        TAILQ_FOREACH(inv, &fn->queue, link)
        {
            /* A retry waiting for its backoff here holds no lease: its row is queued already. */
            if (!inv->async || inv->lease_attempts <= 0 || inv->timer)
                continue;
            if (inv_store_hand_back(d->journal, inv->id, d->lease_owner, inv->lease_attempts, NULL,
                                    NULL) == 0)
                n++;
        }
        /* Peers hear of them when they commit, and claim them at once. */
        const char *name = fn->of ? fn->of->name : fn->name;
        if (n > before && changes_announce(d->journal, CHANGES_QUEUE, name, NULL, NULL) < 0)
            log_debug("announcing handed back invocations failed", "function=%s", name);
    }
    if (n > 0)
        log_info("stopping: the async invocations this host held and had not started are handed "
                 "back to the queue, for its peers",
                 "count=%zu", n);
}

void queue_release(struct dispatch *d)
{
    inv_host_lock_free(TAKE_PTR(d->host_lock));
}
