#include "dispatch/pool.h"

#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "base/event_line.h"
#include "base/fdlimit.h"
#include "base/log.h"
#include "container/container.h"
#include "dispatch/dispatch-internal.h"
#include "functions/secrets.h"
#include "dispatch/meter.h"

/* What a runtime may write to stdout/stderr per read before we look at other fds. */
#define LOG_CHUNK 65536
/* The fds a container holds in the daemon (runtime socket, stdout and stderr pipes, sync pipe,
 * pidfd, the container server's answer socket, network namespace, its cgroup directory and the
 * counters read at each invocation: 13 on a hybrid host) and those it needs for a moment while
 * it starts. */
#define SPAWN_FDS                 16
#define POOL_INIT_DEADLINE_MIN_US (10 * 1000 * 1000ull)

static void worker_set_state(struct worker *w, enum worker_state st)
{
    struct fn_state *fn = w->fn;
    size_t *counts[] = {[WORKER_SPAWNING] = &fn->nspawning,
                        [WORKER_READY] = &fn->nready,
                        [WORKER_BUSY] = &fn->nbusy,
                        [WORKER_DRAINING] = &fn->ndraining};
    if (counts[w->state])
        (*counts[w->state])--;
    if (w->state == WORKER_SPAWNING && st != WORKER_SPAWNING && w->init_timer) {
        loop_cancel_timer(fn->d->loop, w->init_timer);
        w->init_timer = NULL;
    }
    w->state = st;
    if (counts[st])
        (*counts[st])++;
    dispatch_warm_note(fn);
}

/* The sync pipe's watch goes before the container closes the pipe (container_finish_spawn,
 * container_spawn_spoke): a file closed while watched stays in epoll as long as a concurrent
 * fork holds a copy of it (a bundle unpacked, a container spawned), and its events then name a
 * freed watch. */
static void unwatch_sync(struct worker *w)
{
    if (w->sync_fd >= 0) {
        loop_del_io(w->fn->d->loop, w->sync_fd);
        w->sync_fd = -1;
    }
}

static void unwatch(struct worker *w)
{
    struct loop *l = w->fn->d->loop;
    if (w->fd >= 0)
        loop_del_io(l, w->fd);
    if (w->out_fd >= 0)
        loop_del_io(l, w->out_fd);
    if (w->err_fd >= 0)
        loop_del_io(l, w->err_fd);
    unwatch_sync(w);
    if (w->fork_fd >= 0)
        loop_del_io(l, w->fork_fd);
    w->fd = w->out_fd = w->err_fd = w->sync_fd = w->fork_fd = -1;
}

/* The memory a worker's container may use (its limit), in bytes. */
static uint64_t worker_memory(const struct worker *w)
{
    return (uint64_t)w->memory_mb << 20;
}

static void drain_output(struct worker *w);

static void worker_free(struct worker *w)
{
    struct fn_state *fn = w->fn;
    for (struct worker **p = &fn->workers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    /* Out of every count: a freed worker is in none. */
    size_t *counts[] = {&fn->nspawning, &fn->nready, &fn->nbusy, &fn->ndraining};
    (*counts[w->state])--;
    if (w->init_timer)
        loop_cancel_timer(fn->d->loop, w->init_timer);
    fn->d->memory_committed -= worker_memory(w);
    drain_output(w);
    fnlog_src_flush(fn->name, &w->log, false);
    fnlog_platform(fn->name, NULL, "container %llu destroyed after %u invocations",
                   (unsigned long long)w->seq, w->served);
    unwatch(w);
    struct ig_error err = {};
    if (container_destroy(w->c, &err) < 0)
        log_warn("destroying a container failed", "function=%s error=\"%s\"", fn->name,
                 err.message);
    proto_decoder_done(&w->dec);
    proto_buf_done(&w->out);
    fn->d->live_workers--;
    free(w);
}

static void pool_destroy(struct worker *w)
{
    worker_free(w);
}

static void pool_retire(struct worker *w)
{
    if (w->inflight == 0) {
        worker_free(w);
        return;
    }
    worker_set_state(w, WORKER_DRAINING);
}

/* ooms: the cgroup's OOM-kill count now (from the reading the caller made anyway). */
static struct dispatch_outcome crash_outcome(struct worker *w, uint64_t ooms, const char *why)
{
    struct dispatch_outcome o = {.kind = OUTCOME_CRASH};
    if (ooms > w->oom_kills_at_start) {
        o.error_type = strdup("Runtime.OutOfMemory");
        char msg[128];
        snprintf(msg, sizeof(msg), "the function ran out of memory (limit %u MB)",
                 w->fn->manifest->memory_mb);
        o.error_message = strdup(msg);
    } else {
        o.error_type = strdup("Runtime.ExitError");
        o.error_message = strdup(why);
    }
    return o;
}

static void pool_kill(struct worker *w, struct inv *timed_out)
{
    struct fn_state *fn = w->fn;
    struct inv_list running;
    struct acct_reading end;
    bool end_ok;
    meter_read(w->cgroup, &end, &end_ok);
    struct dispatch_outcome crash = crash_outcome(
        w, end_ok ? end.oom_kills : 0, "the runtime exited while running the invocation");
    struct inv *first = TAILQ_FIRST(&w->running);
    if (timed_out)
        fnlog_platform(fn->name, timed_out->id, "timeout: killed container %llu after %u ms",
                       (unsigned long long)w->seq, fn->manifest->timeout_ms);
    else if (crash.error_type && streq(crash.error_type, "Runtime.OutOfMemory"))
        fnlog_platform(fn->name, first ? first->id : NULL,
                       "OOM kill: container %llu reached its %u MB limit",
                       (unsigned long long)w->seq, w->memory_mb);

    /* Kill first, then complete: what the invocations report must not race the container. */
    TAILQ_INIT(&running);
    TAILQ_CONCAT(&running, &w->running, link);
    w->inflight = 0;
    worker_free(w);
    fnlog_sync(fn->name); /* its output is on file before its outcome, as in finished_one */
    struct inv *inv;
    while ((inv = TAILQ_FIRST(&running))) {
        TAILQ_REMOVE(&running, inv, link);
        inv->acct.end = end;
        inv->acct.end_ok = end_ok;
        struct dispatch_outcome o;
        if (inv == timed_out) {
            o = (struct dispatch_outcome){.kind = OUTCOME_TIMEOUT};
            o.error_type = strdup("Ignis.Timeout");
            char msg[128];
            snprintf(msg, sizeof(msg), "the function did not finish within %u ms",
                     fn->manifest->timeout_ms);
            o.error_message = strdup(msg);
        } else {
            o = crash;
            o.error_type = crash.error_type ? strdup(crash.error_type) : NULL;
            o.error_message = crash.error_message ? strdup(crash.error_message) : NULL;
        }
        fn->d->pool_hooks.complete(inv, &o);
        dispatch_outcome_clear(&o);
    }
    dispatch_outcome_clear(&crash);
    fn->d->pool_hooks.kick(fn);
}

/* The worker's invocation with this id (runtimes answer by id: one with concurrency > 1 may
 * answer out of order). */
static struct inv *find_running(struct worker *w, struct proto_bytes id)
{
    struct inv *inv;
    TAILQ_FOREACH(inv, &w->running, link)
    if (proto_bytes_eq(id, inv->id))
        return inv;
    return NULL;
}

static void finished_one(struct worker *w, struct inv *inv, struct dispatch_outcome *o)
{
    struct fn_state *fn = w->fn;
    meter_end(&inv->acct, w->cgroup);
    /* Output written before the result is the invocation's: read it before it is over, and
     * write it to the log file before the outcome is recorded or answered, so that a crash of
     * ignisd right after the reply never loses output of an invocation whose result was kept
     * (one write(2) into the page cache, only when there is output). */
    drain_output(w);
    fnlog_src_flush(fn->name, &w->log, w->inflight > 1);
    fnlog_src_sync(fn->name, &w->log);
    TAILQ_REMOVE(&w->running, inv, link);
    w->inflight--;
    w->served++;
    w->idle_since_us = now_usec();
    /* A function being deleted keeps its container while invocations queued before the delete
     * wait for one. */
    bool retire = !fn->manifest->reuse || w->version != fn->version ||
                  (fn->removing && TAILQ_EMPTY(&fn->queue)) || w->state == WORKER_DRAINING;
    if (retire)
        worker_set_state(w, WORKER_DRAINING);
    else if (w->state == WORKER_BUSY && w->inflight < fn->manifest->concurrency)
        worker_set_state(w, WORKER_READY);
    fn->d->pool_hooks.complete(inv, o);
    if (retire && w->inflight == 0)
        worker_free(w);
    fn->d->pool_hooks.kick(fn);
}

/* How long a container may take to become ready: the function's timeout, and at least
 * POOL_INIT_DEADLINE_MIN_US (Lambda's init phase has 10 s, then the invocation's own timeout). */
static uint64_t pool_init_deadline_us(const struct manifest *m)
{
    uint64_t t = (uint64_t)m->timeout_ms * 1000;
    return t > POOL_INIT_DEADLINE_MIN_US ? t : POOL_INIT_DEADLINE_MIN_US;
}

/* A container that never became ready: it goes (destroyed, with whatever it started), the
 * invocation waiting longest takes o, and spawning backs off (dispatch.c spawn_failed). */
static void spawn_died(struct worker *w, struct dispatch_outcome *o)
{
    struct fn_state *fn = w->fn;
    log_info("container failed to start", "function=%s type=\"%s\" error=\"%s\"", fn->name,
             o->error_type ? o->error_type : "", o->error_message ? o->error_message : "");
    worker_free(w);
    fn->d->pool_hooks.spawn_failed(fn, o);
    dispatch_outcome_clear(o);
    fn->d->pool_hooks.kick(fn);
}

static void handle_msg(struct worker *w, const struct proto_msg *m)
{
    struct fn_state *fn = w->fn;
    switch (m->type) {
    case PROTO_READY:
        if (w->state != WORKER_SPAWNING)
            break;
        /* Setup is over: the runtime spoke. Its sync pipe's EOF may have come in this loop turn,
         * or not yet (a forked container's template closes its copy after the fork): never
         * waited for on the loop, where a template stopped in between blocked ignisd for good. */
        if (w->sync_fd >= 0) {
            unwatch_sync(w);
            w->exec_us = now_usec();
            container_spawn_spoke(w->c);
        }
        w->ready_us = w->idle_since_us = now_usec();
        worker_set_state(w, WORKER_READY);
        log_debug("worker ready", "function=%s worker=%llu spawn_ms=%.3f", fn->name,
                  (unsigned long long)w->seq, (double)(w->ready_us - w->spawned_us) / 1e3);
        fn->d->pool_hooks.ready(fn, w);
        break;
    case PROTO_INIT_ERROR: {
        struct dispatch_outcome o = {.kind = OUTCOME_INIT};
        o.error_type =
            m->error_type.len ? proto_strdup(m->error_type) : strdup("Runtime.InitError");
        o.error_message = proto_strdup(m->message);
        o.trace = m->trace.len ? proto_strdup(m->trace) : NULL;
        spawn_died(w, &o);
        break;
    }
    case PROTO_RESULT:
    case PROTO_ERROR: {
        struct inv *inv = find_running(w, m->id);
        if (!inv) {
            log_warn("runtime answered an invocation it does not run", "function=%s", fn->name);
            break;
        }
        struct dispatch_outcome o = {.kind = m->type == PROTO_RESULT ? OUTCOME_OK : OUTCOME_ERROR};
        if (m->type == PROTO_RESULT) {
            o.body = malloc(m->body.len + 1);
            if (o.body) {
                memcpy(o.body, m->body.data, m->body.len);
                o.body[m->body.len] = '\0';
                o.body_len = m->body.len;
            }
            o.content_type = m->content_type.len ? proto_strdup(m->content_type) : NULL;
        } else {
            o.error_type =
                m->error_type.len ? proto_strdup(m->error_type) : strdup("Function.Error");
            o.error_message = proto_strdup(m->message);
            o.trace = m->trace.len ? proto_strdup(m->trace) : NULL;
        }
        finished_one(w, inv, &o);
        dispatch_outcome_clear(&o);
        break;
    }
    case PROTO_EVENT:
        fn->d->pool_hooks.emitted(fn, find_running(w, m->id), m);
        break;
    case PROTO_EVENT_JSON: {
        struct proto_msg e;
        struct event_line hold;
        int r = event_line_read(m, &e, &hold);
        if (r == 0) {
            fn->d->pool_hooks.emitted(fn, find_running(w, m->id), &e);
        } else {
            _cleanup_free_ char *id = proto_strdup(m->id);
            fnlog_platform(fn->name, id,
                           "ignoring an event line that is not {\"type\": ..., "
                           "\"data\": ...}: %s",
                           r == -ENOMEM ? "out of memory" : "not such a JSON object");
        }
        event_line_done(&hold);
        break;
    }
    default:
        log_warn("unexpected frame from a runtime", "function=%s type=%s", fn->name,
                 proto_type_name(m->type));
    }
}

/* The runtime did not say READY within the function's init deadline (pool_init_deadline_us):
 * a hung initialisation (an import that never returns, a runtime whose threads could not
 * start) would otherwise hold its container, its memory and the invocations waiting for it
 * for ever. */
static void on_init_deadline(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct worker *w = userdata;
    w->init_timer = NULL;
    if (w->state != WORKER_SPAWNING)
        return;
    char msg[128];
    snprintf(msg, sizeof(msg), "the runtime did not become ready within %llu ms",
             (unsigned long long)(pool_init_deadline_us(w->fn->manifest) / 1000));
    fnlog_platform(w->fn->name, NULL, "init timeout: killed container %llu: %s",
                   (unsigned long long)w->seq, msg);
    struct dispatch_outcome o = {.kind = OUTCOME_INIT};
    o.error_type = strdup("Runtime.InitTimeout");
    o.error_message = strdup(msg);
    spawn_died(w, &o);
}

static void on_runtime_io(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct worker *w = userdata;
    uint64_t seq = w->seq;
    struct fn_state *fn = w->fn;

    if (events & EPOLLOUT) {
        int r = proto_buf_flush(&w->out, fd);
        if (r == 0 && w->want_write) {
            w->want_write = false;
            loop_mod_io(l, fd, EPOLLIN);
        } else if (r < 0 && r != -EAGAIN) {
            pool_kill(w, NULL);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        ssize_t n = proto_decoder_read(&w->dec, fd);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            if (w->state == WORKER_SPAWNING) {
                struct dispatch_outcome o = {.kind = OUTCOME_INIT};
                struct ig_error why = {};
                unwatch_sync(w);
                if (container_finish_spawn(w->c, &why) < 0) {
                    o.error_type = strdup("Ignis.ContainerError");
                    o.error_message = strdup(why.message);
                } else {
                    o.error_type = strdup("Runtime.ExitError");
                    o.error_message = strdup("the runtime exited during initialisation");
                }
                spawn_died(w, &o);
            } else
                pool_kill(w, NULL);
            return;
        }
        struct proto_msg m;
        int r;
        while ((r = proto_decoder_next(&w->dec, &m)) == 1) {
            handle_msg(w, &m);
            /* The message may have freed the worker (init error, a fresh container's one
             * invocation done): look it up again before touching it. */
            bool alive = false;
            for (struct worker *x = fn->workers; x; x = x->next)
                if (x == w && x->seq == seq)
                    alive = true;
            if (!alive)
                return;
        }
        if (r < 0) {
            log_warn("runtime sent a malformed frame", "function=%s error=\"%s\"", fn->name,
                     strerror(-r));
            pool_kill(w, NULL);
            return;
        }
    }
}

/* The runtime's stdout and stderr: drained so that it never blocks on a full pipe, into the
 * function's log (fnlog.c) under the invocation the worker runs. */
static bool read_output(struct worker *w, int fd)
{
    char buf[LOG_CHUNK];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
        struct inv *inv = TAILQ_FIRST(&w->running);
        fnlog_output(w->fn->name, &w->log, inv ? inv->id : NULL, w->inflight > 1,
                     fd == w->out_fd ? FNLOG_STDOUT : FNLOG_STDERR, buf, (size_t)n);
        return true;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        loop_del_io(w->fn->d->loop, fd);
        if (fd == w->out_fd)
            w->out_fd = -1;
        else
            w->err_fd = -1;
    }
    return false;
}

static void on_output(struct loop *l, int fd, uint32_t events, void *userdata)
{
    read_output(userdata, fd);
}

/* Reads what the pipes hold now (bounded: a function writing without pause cannot hold us). */
static void drain_output(struct worker *w)
{
    for (int i = 0; i < 16 && w->out_fd >= 0 && read_output(w, w->out_fd); i++)
        ;
    for (int i = 0; i < 16 && w->err_fd >= 0 && read_output(w, w->err_fd); i++)
        ;
}

/* EOF (or the shim's error) on the sync pipe: setup is over and the runtime was exec'd (or
 * not: container_finish_spawn keeps the answer for the spawn path to read again). */
static void on_sync(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct worker *w = userdata;
    w->exec_us = now_usec();
    unwatch_sync(w);
    struct ig_error err = {};
    container_finish_spawn(w->c, &err);
}

/* Templates that failed in a row (died or failed before they were ready, or at a fork) before a
 * function version gives up on them and spawns the usual way only. */
#define TEMPLATE_MAX_FAILURES 3
/* What a template's cgroup holds per container forked from it, beyond the function's limits. */
#define TEMPLATE_FORK_MEMORY (4ull << 20)

/* What a template is made for: a version's bundle in an image (a rebuilt image is a new
 * directory, build-images swaps it in with rename). Another key, another template. */
static void template_key(const struct fn_state *fn, const char *image, char *buf, size_t size)
{
    struct stat st = {};
    stat(image, &st);
    snprintf(buf, size, "%lld:%s:%s:%llu:%llu", (long long)fn->version,
             fn->bundle_dir ? fn->bundle_dir : "", image, (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
}

/* The first worker waiting for template seq, in any state (versions.c moves workers between the
 * states of one version, and a template stays with the state that started it), or NULL. */
static struct worker *first_waiting(struct dispatch *d, uint64_t seq)
{
    for (struct fn_state *s = d->fns; s; s = s->next)
        for (struct worker *w = s->workers; w; w = w->next)
            if (w->tpl_wait && w->tpl_seq == seq)
                return w;
    return NULL;
}

static void wait_over(struct worker *w, struct fn_state *tpl_of);

/* Retires fn's template (unwatched first: the watch's userdata is fn). The workers waiting for
 * it are made the usual way: none is left waiting for a template that is gone, and each one's
 * container is made once, here, since it leaves the waiting workers before. */
static void template_drop(struct fn_state *fn, bool failed)
{
    struct dispatch *d = fn->d;
    uint64_t seq = fn->tpl_seq;
    if (fn->tpl_starting)
        loop_del_io(d->loop, container_runtime_fd(container_template_container(fn->tpl)));
    fn->tpl_starting = false;
    container_template_retire(TAKE_PTR(fn->tpl));
    if (failed && ++fn->tpl_failures == TEMPLATE_MAX_FAILURES)
        log_warn("python3 templates keep failing; this function's containers start the usual way",
                 "function=%s version=%lld", fn->name, (long long)fn->version);
    struct worker *w;
    while ((w = first_waiting(d, seq)))
        wait_over(w, NULL);
}

/* fn's template answered on its runtime socket: R (ready), or EOF or an error (it failed or died
 * while it started). The workers waiting for it are forked from it, or made the usual way
 * (template_drop): no invocation fails for a template. */
static void on_template(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct fn_state *fn = userdata;
    int ready = container_template_ready(fn->tpl);
    if (ready == 0)
        return;
    loop_del_io(l, fd);
    fn->tpl_starting = false;
    if (ready < 0) {
        log_info("the python3 template failed before it was ready; the containers waiting for it "
                 "start the usual way",
                 "function=%s error=\"%s\"", fn->name, strerror(-ready));
        template_drop(fn, true);
        return;
    }
    uint64_t seq = fn->tpl_seq;
    struct worker *w;
    /* Each leaves the waiting workers before its container is made: a fork that fails on the
     * way drops the template, which hands the rest over to the usual way, and this ends. */
    while ((w = first_waiting(fn->d, seq)))
        wait_over(w, fn);
}

/* Starts the template for fn's python3 containers: the function's spec in template mode, in a
 * user namespace, running the bootstrap in template mode (docs/architecture.md, "Templates"),
 * and watches its runtime socket for its answer (on_template). */
static void template_start(struct fn_state *fn, const struct container_options *co, const char *key)
{
    struct dispatch *d = fn->d;
    static char *const args[] = {"/usr/bin/python3",       "-I",         "-S", "-u",
                                 PROTO_RUNTIME_ENTRYPOINT, "--template", NULL};
    struct container_spec spec = *co->spec;
    spec.args = (char **)args;
    spec.cwd = "/"; /* nothing of /var/task is read before a fork */
    spec.template_mode = spec.user_namespace = true;
    spec.userns_uid_base = spec.userns_gid_base = CONTAINER_TEMPLATE_ID_BASE;
    spec.userns_count = 65536;
    char name[96];
    fn->tpl_seq = ++d->worker_seq;
    snprintf(name, sizeof(name), "%s-t%llu", fn->name, (unsigned long long)fn->tpl_seq);
    struct container_options o = *co;
    o.name = name;
    o.spec = &spec;
    /* Its output is the daemon's: a template that fails says why on the daemon's stderr. */
    o.stdout_fd = o.stderr_fd = STDERR_FILENO;
    /* Each container forked from it is charged here for what its clone made (its namespaces,
     * the page tables and pages it copied) for its whole life, and holds a pid here until it
     * is moved: with the function's limits alone, ~25 live containers at once (ignis-bench -c 8
     * on a fresh python3 function, when each also left a process of ~2.5 MiB here) OOM-killed
     * the template's processes, and its forks failed. */
    uint32_t forks = fn->manifest->max_scale;
    if (o.limits.memory_bytes)
        o.limits.memory_bytes += forks * TEMPLATE_FORK_MEMORY;
    if (o.limits.pids_max)
        o.limits.pids_max += forks;
    struct ig_error err = {};
    int r;
    if (container_template_new(d->cg, &o, key, &fn->tpl, &err) < 0) {
        log_warn("starting a python3 template failed", "function=%s error=\"%s\"", fn->name,
                 err.message);
        template_drop(fn, true);
        return;
    }
    int fd = container_runtime_fd(container_template_container(fn->tpl));
    if ((r = loop_add_io(d->loop, fd, EPOLLIN, on_template, fn)) < 0) {
        log_warn("watching a python3 template failed", "function=%s error=\"%s\"", fn->name,
                 strerror(-r));
        template_drop(fn, false);
        return;
    }
    fn->tpl_starting = true;
}

/* Forks w's container from tpl_of's template, which said R: 0, w forking (w->tpl_seq says from
 * which template); or -ECHILD: the template is gone, and was dropped (template_drop). */
static int fork_from(struct worker *w, struct fn_state *tpl_of, const struct container_options *co)
{
    struct ig_error why = {};
    if (tpl_of->tpl && container_template_spawn(tpl_of->tpl, tpl_of->d->cg, co, &w->c, &why) == 0) {
        w->tpl_seq = tpl_of->tpl_seq;
        return 0;
    }
    log_info("forking from the python3 template failed; it is retired", "function=%s error=\"%s\"",
             tpl_of->name, why.message);
    template_drop(tpl_of, true);
    return -ECHILD;
}

/* How w's container is made, with tpl_of: NULL, the usual way; w's own state, forked from its
 * template when it has a ready one, or after waiting for the one that starts (w->tpl_wait, no
 * container yet: a python3 version without a template, or with one of another key, starts one);
 * another state (a worker that waited, which versions.c moved), forked from that state's ready
 * template. A template that is gone never fails the spawn: it is retired, and the container is
 * made the usual way, or waits for the template started in its place. */
static int spawn_container(struct worker *w, const struct container_options *co, const char *image,
                           struct fn_state *tpl_of, struct ig_error *err)
{
    struct fn_state *fn = w->fn;
    struct dispatch *d = fn->d;
    const struct manifest *m = fn->manifest;
    if (tpl_of && tpl_of != fn)
        return fork_from(w, tpl_of, co) == 0 ? 0 : container_spawn(d->cg, co, &w->c, err);
    if (!tpl_of || !d->opts.python_templates || m->runtime != MANIFEST_RUNTIME_PYTHON3 ||
        fn->tpl_failures >= TEMPLATE_MAX_FAILURES)
        return container_spawn(d->cg, co, &w->c, err);
    container_templates_reap();
    char key[4600];
    template_key(fn, image, key, sizeof(key));
    if (fn->tpl && strcmp(container_template_key(fn->tpl), key) != 0)
        template_drop(fn, false);
    if (fn->tpl && !fn->tpl_starting) {
        int ready = container_template_ready(fn->tpl);
        if (ready == 1 && fork_from(w, fn, co) == 0)
            return 0;
        if (ready < 0) /* it died since it said R (a failed fork_from dropped it already) */
            template_drop(fn, true);
    }
    if (!fn->tpl && fn->tpl_failures < TEMPLATE_MAX_FAILURES)
        template_start(fn, co, key);
    if (!fn->tpl)
        return container_spawn(d->cg, co, &w->c, err);
    /* Its template starts: an exec'd python would cost as much CPU as the template's own start,
     * and be ready no sooner under load. */
    w->tpl_wait = true;
    w->tpl_seq = fn->tpl_seq;
    return 0;
}

/* The loop watches a worker's runtime socket and outputs, and its sync pipe when it has one:
 * from here on it follows the container as any other. 0, or -errno with err (the caller frees
 * the worker). */
static int watch_worker(struct worker *w, struct ig_error *err)
{
    struct loop *l = w->fn->d->loop;
    int r;
    w->cgroup = container_cgroup(w->c);
    w->oom_kills_at_start = container_oom_kills_at_spawn(w->c);
    w->fd = container_runtime_fd(w->c);
    w->out_fd = container_stdout_fd(w->c);
    w->err_fd = container_stderr_fd(w->c);
    /* The loop reads until EAGAIN: every fd it watches must be non-blocking. */
    int fds[] = {w->fd, w->out_fd, w->err_fd};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    if ((r = loop_add_io(l, w->fd, EPOLLIN, on_runtime_io, w)) < 0 ||
        (w->out_fd >= 0 && (r = loop_add_io(l, w->out_fd, EPOLLIN, on_output, w)) < 0) ||
        (w->err_fd >= 0 && (r = loop_add_io(l, w->err_fd, EPOLLIN, on_output, w)) < 0))
        return ig_error_set(err, -r, "watching the container: %s", strerror(-r));
    int sfd = container_sync_fd(w->c);
    if (sfd >= 0 && loop_add_io(l, sfd, EPOLLIN, on_sync, w) == 0)
        w->sync_fd = sfd;
    return 0;
}

static void on_fork(struct loop *l, int fd, uint32_t events, void *userdata);

/* A forking container is watched on its fork fd only (nothing else of it speaks before the fork
 * is finished); any other from the start; a worker waiting for its template has nothing to
 * watch yet (on_template makes its container). 0, or -errno with err (the caller frees the
 * worker). */
static int watch_container(struct worker *w, struct ig_error *err)
{
    if (w->tpl_wait)
        return 0;
    int fd = container_fork_fd(w->c), r;
    if (fd < 0)
        return watch_worker(w, err);
    if ((r = loop_add_io(w->fn->d->loop, fd, EPOLLIN, on_fork, w)) < 0)
        return ig_error_set(err, -r, "watching the fork: %s", strerror(-r));
    w->fork_fd = fd;
    return 0;
}

/* Makes w's container from its state's manifest, as tpl_of says (spawn_container): 0 with w->c,
 * or with w->tpl_wait (waiting for its template); or -errno with err and no container. */
static int worker_make(struct worker *w, struct fn_state *tpl_of, struct ig_error *err)
{
    struct fn_state *fn = w->fn;
    struct dispatch *d = fn->d;
    const struct manifest *m = fn->manifest;
    char **env = NULL, name[96], image[4300], version[32];
    int r;

    snprintf(version, sizeof(version), "%lld", (long long)fn->version);
    char **user_env = calloc(m->n_env + 1, sizeof(char *));
    for (size_t i = 0; user_env && i < m->n_env; i++)
        if (asprintf(&user_env[i], "%s=%s", m->env[i].key, m->env[i].value) < 0)
            user_env[i] = NULL;
    struct proto_function_config cfg = {
        .name = fn->name,
        .version = version,
        .handler = m->handler,
        .memory_mb = m->memory_mb,
        .timeout_ms = m->timeout_ms,
        .user_env = user_env,
    };
    r = user_env ? proto_build_env(&cfg, &env, err) : ig_error_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; user_env && i < m->n_env; i++)
        free(user_env[i]);
    free(user_env);
    if (r < 0)
        return r;

    snprintf(image, sizeof(image), "%s/%s", d->opts.images_dir, manifest_runtime_name(m->runtime));
    if (w->remakes)
        snprintf(name, sizeof(name), "%s-%llu-%u", fn->name, (unsigned long long)w->seq,
                 w->remakes);
    else
        snprintf(name, sizeof(name), "%s-%llu", fn->name, (unsigned long long)w->seq);
    char *args[] = {PROTO_RUNTIME_ENTRYPOINT, NULL};
    struct container_spec spec;
    container_spec_init(&spec);
    spec.image = image;
    spec.bundle = fn->bundle_dir;
    spec.args = args;
    spec.env = env;
    /* RLIMIT_NPROC counts every process of a uid on the host, and all containers run as 65534:
     * a cap there is shared by every function, and one function's fork bomb took it from all
     * the others. The pids cgroup is the per-container limit; nproc binds only without it (else
     * it is ignisd's own hard limit, the highest a container may be given without privilege). */
    struct rlimit nproc;
    if (d->cg && cg_manager_features(d->cg)->pids_limit && getrlimit(RLIMIT_NPROC, &nproc) == 0)
        spec.rlimit_nproc =
            nproc.rlim_max < CONTAINER_SPEC_NPROC_MAX ? nproc.rlim_max : CONTAINER_SPEC_NPROC_MAX;
    /* Exactly the secrets the manifest lists (docs/security.md). */
    char secrets_dir[4400], *secrets[MANIFEST_SECRETS_MAX + 1] = {};
    if (m->n_secrets > 0) {
        secrets_path(d->opts.state_dir, fn->name, secrets_dir, sizeof(secrets_dir));
        for (size_t i = 0; i < m->n_secrets && i < MANIFEST_SECRETS_MAX; i++)
            secrets[i] = m->secrets[i];
        spec.secrets_dir = secrets_dir;
        spec.secrets = secrets;
    }
    struct container_options co = {
        .name = name,
        .spec = &spec,
        .limits = {.memory_bytes = (uint64_t)m->memory_mb << 20,
                   .cpu_millis = m->cpu_millis,
                   .pids_max = 1024},
        .stdout_fd = -1,
        .stderr_fd = -1,
        .stock = d->stock,
        .stock_owner = fn->name, /* cgroups are reused within a function, never across */
        .no_wait = true,
    };
    /* The container server makes pid 1 (or the template forks) while we return to the loop, and
     * setup goes on in the shim: the server's answer (on_fork), then the runtime's READY frame
     * (or EOF on its socket, with the shim's reason on the sync pipe) tell how it went. */
    r = spawn_container(w, &co, image, tpl_of, err);
    proto_env_free(env);
    return r;
}

/* A container could not be made for w: it goes, and the invocation waiting longest with it. */
static void start_failed(struct worker *w, const struct ig_error *why)
{
    struct dispatch_outcome o = {.kind = OUTCOME_INIT};
    o.error_type = strdup("Ignis.ContainerError");
    o.error_message = strdup(why->message);
    spawn_died(w, &o);
}

/* A fork failed: its container goes, its template too (unless another replaced it already), and
 * w's container is made the usual way, so that no invocation fails for it. */
static void fork_failed(struct worker *w, const char *why)
{
    struct fn_state *fn = w->fn;
    log_info("forking from the python3 template failed; the container starts the usual way",
             "function=%s error=\"%s\"", fn->name, why);
    unwatch(w);
    container_destroy(TAKE_PTR(w->c), NULL);
    if (fn->tpl && fn->tpl_seq == w->tpl_seq)
        template_drop(fn, true);
    w->remakes++;
    struct ig_error err = {};
    if (worker_make(w, NULL, &err) < 0 || watch_container(w, &err) < 0)
        start_failed(w, &err);
}

/* w waited for its template, which answered: w leaves the waiting workers, then its container is
 * forked from tpl_of's template (ready), or made the usual way (tpl_of NULL: the template
 * failed, died or was retired). Its Init Duration counts from now, as a container's does from
 * its making (the wait is the invocation's, before its container existed: docs/architecture.md,
 * "Templates"); its init deadline still counts from the spawn. A failure is start_failed's, as
 * for any spawn. */
static void wait_over(struct worker *w, struct fn_state *tpl_of)
{
    struct ig_error err = {};
    w->tpl_wait = false;
    w->spawned_us = now_usec();
    if (worker_make(w, tpl_of, &err) < 0 || watch_container(w, &err) < 0)
        start_failed(w, &err);
}

/* The forked container's pid 1 reported on its control socket (its pidfd, or EOF), or the
 * container server answered a spawn. The worker owns the container, the container its pending
 * fork or spawn: a worker freed first unwatched this fd and cancelled it (container_destroy), so
 * this never runs for a freed worker. */
static void on_fork(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct worker *w = userdata;
    struct ig_error err = {};
    int r = container_fork_finish(w->c, &err);
    if (r == -EAGAIN)
        return;
    if (r < 0 && container_forked(w->c)) {
        fork_failed(w, err.message);
        return;
    }
    if (r < 0) {
        start_failed(w, &err);
        return;
    }
    loop_del_io(l, fd);
    w->fork_fd = -1;
    w->fn->tpl_failures = 0;
    if (watch_worker(w, &err) < 0)
        start_failed(w, &err);
}

static int pool_spawn(struct fn_state *fn, struct ig_error *err)
{
    struct dispatch *d = fn->d;
    const struct manifest *m = fn->manifest;
    struct worker *w = calloc(1, sizeof(*w));
    int r;

    /* Refused (EMFILE, a 503) while a container would eat into the fds kept for the API, the
     * store and the logs: the daemon goes on answering, and spawns resume once fds are back. */
    if (!fdlimit_room(SPAWN_FDS)) {
        /* The namespaces and cgroups prepared ahead are fds too: they go first. */
        container_stock_release(d->stock);
        if ((r = fdlimit_admit(SPAWN_FDS, err)) < 0) {
            free(w);
            return r;
        }
    }
    if (!w)
        return ig_error_set(err, ENOMEM, "out of memory");
    w->fn = fn;
    w->seq = ++d->worker_seq;
    w->version = fn->version;
    w->fd = w->out_fd = w->err_fd = w->sync_fd = w->fork_fd = -1;
    w->state = WORKER_SPAWNING; /* counted once the container exists */
    w->memory_mb = m->memory_mb;
    TAILQ_INIT(&w->running);
    proto_decoder_init(&w->dec, 0);
    w->spawned_us = now_usec();
    if ((r = worker_make(w, fn, err)) < 0) {
        proto_decoder_done(&w->dec);
        free(w);
        return r;
    }
    w->next = fn->workers;
    fn->workers = w;
    d->live_workers++;
    d->memory_committed += worker_memory(w);
    fn->nspawning++;
    /* The init deadline covers a wait for the template or a fork that never finishes too: the
     * worker goes (out of the waiting workers with it), and with its container the pending
     * fork. */
    if ((r = loop_add_timer(d->loop, w->spawned_us + pool_init_deadline_us(m), on_init_deadline, w,
                            &w->init_timer)) < 0)
        r = ig_error_set(err, -r, "arming the container's init deadline: %s", strerror(-r));
    if (r < 0 || (r = watch_container(w, err)) < 0) {
        worker_free(w);
        return r;
    }
    fnlog_platform(fn->name, NULL, "container %llu spawned (version %lld)",
                   (unsigned long long)w->seq, (long long)w->version);
    return 0;
}

static int pool_send(struct worker *w, struct inv *inv)
{
    struct fn_state *fn = w->fn;
    char arn[160];
    snprintf(arn, sizeof(arn), PROTO_ARN_FMT, fn->name);
    struct proto_msg m = {
        .type = PROTO_INVOKE,
        .id = proto_str(inv->id),
        .deadline_ms = (uint64_t)inv->started_wall_us / 1000 + fn->manifest->timeout_ms,
        .body = {inv->body, inv->body_len},
        .nheaders = 1,
    };
    m.headers[0].name = proto_str(PROTO_HDR_ARN);
    m.headers[0].value = proto_str(arn);
    if (inv->content_type) {
        m.headers[1].name = proto_str(PROTO_HDR_CONTENT_TYPE);
        m.headers[1].value = proto_str(inv->content_type);
        m.nheaders = 2;
    }
    inv->worker = w;
    TAILQ_INSERT_TAIL(&w->running, inv, link);
    w->inflight++;
    w->used = true;
    if (w->inflight >= fn->manifest->concurrency && w->state == WORKER_READY)
        worker_set_state(w, WORKER_BUSY);
    int r = proto_encode(&m, &w->out);
    if (r < 0)
        return r;
    r = proto_buf_flush(&w->out, w->fd);
    if (r == -EAGAIN && !w->want_write) {
        w->want_write = true;
        return loop_mod_io(fn->d->loop, w->fd, EPOLLIN | EPOLLOUT);
    }
    return r == -EAGAIN ? 0 : r;
}

static void pool_forget(struct fn_state *fn)
{
    template_drop(fn, false);
}

const struct pool_ops pool_containers = {
    .spawn = pool_spawn,
    .send = pool_send,
    .kill = pool_kill,
    .destroy = pool_destroy,
    .retire = pool_retire,
    .forget = pool_forget,
};
