/* The pool: a function's workers (a container running its runtime), their runtime-protocol I/O
 * on the loop, their output, and their teardown. Policy (how many, when) is dispatch's and the
 * scaler's; the pool only does what it is told and reports what happened. */
#pragma once

#include "dispatch/dispatch.h"
#include "records/fnlog.h"

struct container;

struct worker {
    struct fn *fn;
    uint64_t seq;
    int64_t version;    /* the function version it was made for */
    uint32_t memory_mb; /* its container's limit, as when it was made */
    enum worker_state state;
    struct container *c;
    int fd;             /* runtime-protocol socket, non-blocking */
    int out_fd, err_fd; /* the runtime's stdout and stderr */
    struct proto_decoder dec;
    struct proto_buf out;
    bool want_write;
    struct inv_list running;
    size_t inflight;
    unsigned served;
    uint64_t spawned_us, ready_us, idle_since_us; /* monotonic */
    uint64_t oom_kills_at_start;
    bool used; /* has been handed at least one invocation */
    /* For the operators (telemetry.c, fnlog.c): when the shim's sync pipe reached EOF (the
     * runtime was exec'd), CPU already counted, and the output's per-invocation state. */
    int sync_fd;
    uint64_t exec_us;
    struct fnlog_src log;
    struct worker *next;
};

/* Starts a container for fn; it becomes ready (dispatch_worker_ready) once its runtime says so.
 * Returns 0, or -errno with err set (nothing is left behind). */
int pool_spawn(struct fn *fn, struct ig_error *err);
/* Sends one invocation to a ready worker. */
int pool_send(struct worker *w, struct inv *inv);
/* Kills the worker's container at once. Invocations it was running complete as crashed, except
 * `timed_out`, which completes as a timeout. */
void pool_kill(struct worker *w, struct inv *timed_out);
/* Destroys an idle worker (nothing running). */
void pool_destroy(struct worker *w);
/* Gives the worker no more work; it is destroyed once what it runs is done. */
void pool_retire(struct worker *w);
/* The memory a worker's container may use (its limit), in bytes. */
uint64_t pool_worker_memory(const struct worker *w);
