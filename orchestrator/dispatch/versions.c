/* Per-version run-time state (dispatch-internal.h, struct fn_state): a function's current version
 * runs in the function's own state; another kept version that is routed to (an alias's canary, a
 * pinned version number, an async invocation accepted before a push) runs in a version state of
 * its own, with its own queue, warm pool and scaler state, made on first use and freed by
 * dispatch.c once it has no queue, no work, no records pending and no containers. The invariant
 * kept here: whatever waits for or runs version v (queued invocations, containers) is in the one
 * state whose version is v, so nothing runs on a version it was not routed to. */
#include <string.h>

#include "base/log.h"
#include "dispatch/dispatch-internal.h"

/* fn's version state for version (not the current one), made when there is none. */
static int version_state(struct fn_state *fn, int64_t version, const struct manifest *m,
                         const char *bundle_dir, struct fn_state **ret)
{
    struct fn_state *vs;
    for (vs = fn->versions; vs; vs = vs->vnext)
        if (vs->version == version && !vs->removing) {
            *ret = vs;
            return 0;
        }
    vs = dispatch_state_new(fn->d, fn->name);
    if (!vs)
        return -ENOMEM;
    vs->bundle_dir = strdup(bundle_dir);
    if (!vs->bundle_dir) {
        dispatch_state_free(vs);
        return -ENOMEM;
    }
    vs->version = version;
    vs->manifest = m;
    vs->of = fn;
    vs->vnext = fn->versions;
    fn->versions = vs;
    dispatch_state_link(vs);
    log_debug("version state made", "function=%s version=%lld", fn->name, (long long)version);
    *ret = vs;
    return 0;
}

int versions_state(struct fn_state *fn, int64_t version, const struct manifest *m,
                   const char *bundle_dir, struct fn_state **ret)
{
    if (fn->version == version) {
        *ret = fn;
        return 0;
    }
    return version_state(fn, version, m, bundle_dir, ret);
}

void versions_unlink(struct fn_state *vs)
{
    for (struct fn_state **p = &vs->of->versions; *p; p = &(*p)->vnext)
        if (*p == vs) {
            *p = vs->vnext;
            return;
        }
}

static size_t *worker_count(struct fn_state *fn, enum worker_state st)
{
    size_t *counts[] = {[WORKER_SPAWNING] = &fn->nspawning,
                        [WORKER_READY] = &fn->nready,
                        [WORKER_BUSY] = &fn->nbusy,
                        [WORKER_DRAINING] = &fn->ndraining};
    return counts[st];
}

/* Moves what from queues and runs to to (both run the same version): its queued invocations
 * (after to's, in their order) and its containers with what they run, draining ones too (their
 * invocations are of this version, and count in from's inflight). With idle_retire, an idle
 * container is retired instead: the function's own state gives up a version's idle warm pool at
 * once, as it did before versions could be invoked, rather than keep it until its idle
 * timeout. */
static void move_all(struct fn_state *from, struct fn_state *to, bool idle_retire)
{
    struct inv *inv;
    while ((inv = TAILQ_FIRST(&from->queue))) {
        TAILQ_REMOVE(&from->queue, inv, link);
        from->queued--;
        if (!inv->async)
            from->queued_sync--;
        inv->fn = to;
        TAILQ_INSERT_TAIL(&to->queue, inv, link);
        to->queued++;
        if (!inv->async)
            to->queued_sync++;
    }
    for (struct worker *w = from->workers, *next; w; w = next) {
        next = w->next;
        if (idle_retire && w->state == WORKER_READY && w->inflight == 0) {
            from->d->pool->retire(w);
            continue;
        }
        /* Out of from's list, into to's. */
        for (struct worker **p = &from->workers; *p; p = &(*p)->next)
            if (*p == w) {
                *p = w->next;
                break;
            }
        (*worker_count(from, w->state))--;
        (*worker_count(to, w->state))++;
        w->fn = to;
        w->next = to->workers;
        to->workers = w;
        TAILQ_FOREACH(inv, &w->running, link)
        inv->fn = to;
        from->inflight -= w->inflight;
        to->inflight += w->inflight;
    }
    dispatch_warm_note(from);
    dispatch_warm_note(to);
}

int versions_switch(struct fn_state *fn, int64_t version, const struct manifest *m,
                    const char *bundle_dir)
{
    char *bdir = strdup(bundle_dir);
    if (!bdir)
        return -ENOMEM;
    /* What waits for or runs the old version goes on in a state of that version. */
    if (fn->version != version && (fn->workers || !TAILQ_EMPTY(&fn->queue))) {
        struct fn_state *old;
        if (version_state(fn, fn->version, fn->manifest, fn->bundle_dir, &old) < 0) {
            free(bdir);
            return -ENOMEM;
        }
        move_all(fn, old, true);
    }
    struct fn_state *nv = NULL;
    for (struct fn_state *vs = fn->versions; vs; vs = vs->vnext)
        if (vs->version == version && !vs->removing)
            nv = vs;
    free(fn->bundle_dir);
    fn->bundle_dir = bdir;
    fn->version = version;
    fn->manifest = m;
    fn->spawn_failures = 0;
    fn->spawn_not_before_us = 0;
    /* The new current version's own state (it had work through an alias or its number) hands
     * its queue and warm pool to the function's, and goes once its records are written. */
    if (nv)
        move_all(nv, fn, false);
    return 0;
}

void versions_count(struct fn_state *fn, int64_t version)
{
    for (size_t i = 0; i < fn->n_by_version; i++)
        if (fn->by_version[i].version == version) {
            fn->by_version[i].invocations++;
            return;
        }
    struct dispatch_version_count *v = realloc(fn->by_version, (fn->n_by_version + 1) * sizeof(*v));
    if (!v)
        return; /* a metric's sample, not worth failing an invocation for */
    fn->by_version = v;
    v[fn->n_by_version++] = (struct dispatch_version_count){.version = version, .invocations = 1};
}

void versions_forget(struct fn_state *fn, int64_t version)
{
    for (size_t i = 0; i < fn->n_by_version; i++)
        if (fn->by_version[i].version == version) {
            fn->by_version[i] = fn->by_version[--fn->n_by_version];
            return;
        }
}

static void add_state(cJSON *versions, const struct fn_state *s)
{
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)s->version);
    dispatch_state_counts(s, cJSON_AddObjectToObject(versions, key));
}

void versions_describe(const struct fn_state *fn, cJSON *live)
{
    cJSON *versions = cJSON_AddObjectToObject(live, "versions");
    add_state(versions, fn);
    for (const struct fn_state *vs = fn->versions; vs; vs = vs->vnext)
        add_state(versions, vs);
}
