/* The pool: a function's workers (a container running its runtime), their runtime-protocol I/O
 * on the loop, their output, and their teardown. Policy (how many, when) is dispatch's and the
 * scaler's; the pool only does what it is told (struct pool_ops) and reports what happened
 * through the hooks dispatch set (struct pool_hooks): it sits below dispatch and never calls it by
 * name. The structs it shares with dispatch are in dispatch-internal.h. */
#pragma once

#include "base/protocol.h"
#include "base/util.h"

struct dispatch_outcome;
struct fn_state;
struct inv;
struct worker;

/* What the pool tells dispatch, on the loop thread. */
struct pool_hooks {
    /* The worker's runtime said READY. */
    void (*ready)(struct fn_state *fn, struct worker *w);
    /* An invocation the worker ran is over (o is borrowed; the hook may take its strings). */
    void (*complete)(struct inv *inv, struct dispatch_outcome *o);
    /* A worker died, or its runtime failed, before it was ready (the worker is gone). */
    void (*spawn_failed)(struct fn_state *fn, struct dispatch_outcome *o);
    /* A worker may take work again (or went away): hand queued invocations on. */
    void (*kick)(struct fn_state *fn);
    /* A runtime's EVENT frame, with the invocation it names (NULL when the worker runs no such
     * invocation). */
    void (*emitted)(struct fn_state *fn, struct inv *inv, const struct proto_msg *m);
};

/* What dispatch asks of a pool. */
struct pool_ops {
    /* Starts a worker for fn; it becomes ready (hooks.ready) once its runtime says so. Returns 0,
     * or -errno with err set (nothing is left behind). */
    int (*spawn)(struct fn_state *fn, struct ig_error *err);
    /* Sends one invocation to a ready worker. */
    int (*send)(struct worker *w, struct inv *inv);
    /* Kills the worker at once. Invocations it was running complete as crashed, except
     * `timed_out`, which completes as a timeout. */
    void (*kill)(struct worker *w, struct inv *timed_out);
    /* Destroys an idle worker (nothing running). */
    void (*destroy)(struct worker *w);
    /* Gives the worker no more work; it is destroyed once what it runs is done. */
    void (*retire)(struct worker *w);
    /* fn's state goes (freed, or the dispatcher closes) and it has a python3 template (tpl):
     * the template is retired, and workers still waiting for it (versions.c may have moved them
     * to another state) are made the usual way. */
    void (*forget)(struct fn_state *fn);
};

/* The pool of containers (container.h) that ignisd runs. */
extern const struct pool_ops pool_containers;
