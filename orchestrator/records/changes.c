#include "records/changes.h"

#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/log.h"
#include "records/db.h"

#define BACKOFF_MIN_US (100ull * 1000)
#define BACKOFF_MAX_US (5ull * 1000000)

struct changes {
    struct loop *loop;
    char *target;
    changes_fn fn;
    void *userdata;
    struct db *db; /* NULL while disconnected */
    /* What the loop watches: a duplicate of the connection's socket, ours to close. libpq closes
     * its own as soon as it finds the connection lost, before the loop can take it out of epoll,
     * and a registration outlives the close of its descriptor while another process holds the
     * socket (a child forked meanwhile, as bundle_unpack's sandbox is: epoll(7)); its events
     * would then name a watch the loop freed. */
    int fd;
    struct loop_timer *retry, *reread;
    uint64_t backoff_us;
};

int changes_notify(struct db *db, const char *kind, const char *name)
{
    if (!db_on_postgresql(db))
        return 0;
    char payload[160];
    snprintf(payload, sizeof(payload), "%s:%s", kind, name);
    const char *text = payload;
    const struct db_value v[] = {DV_S(CHANGES_CHANNEL), DV_S(text)};
    int r = db_exec(db, "SELECT pg_notify($1, $2)", v, ARRAY_SIZE(v), NULL);
    return r < 0 ? r : 0;
}

int changes_announce(struct journal *j, const char *kind, const char *name, journal_done_fn done,
                     void *userdata)
{
    char payload[160];
    snprintf(payload, sizeof(payload), "%s:%s", kind, name);
    const char *text = payload;
    const struct db_value v[] = {DV_S(CHANGES_CHANNEL), DV_S(text)};
    /* Lazy: it adds nothing to the batch's durability, and rides on the commit of the statements
     * before it. Once per batch: a listener hears one of identical notifications a transaction
     * sends (each accept of a function's async work announces it). */
    return journal_submit_once(j, "SELECT pg_notify($1, $2)", v, ARRAY_SIZE(v), done, userdata);
}

int changes_announce_each(struct journal *j, const char *kind, const char *name)
{
    char payload[200];
    snprintf(payload, sizeof(payload), "%s:%s", kind, name);
    const char *text = payload;
    const struct db_value v[] = {DV_S(CHANGES_CHANNEL), DV_S(text)};
    return journal_submit_lazy(j, "SELECT pg_notify($1, $2)", v, ARRAY_SIZE(v), NULL, NULL);
}

int changes_parse(const char *payload, char *ret_kind, size_t kind_size, char *ret_name,
                  size_t name_size)
{
    const char *colon = strchr(payload, ':');
    if (!colon)
        return -EINVAL;
    size_t klen = (size_t)(colon - payload), nlen = strlen(colon + 1);
    if (klen == 0 || nlen == 0 || klen >= kind_size || nlen >= name_size)
        return -EINVAL;
    memcpy(ret_kind, payload, klen);
    ret_kind[klen] = '\0';
    memcpy(ret_name, colon + 1, nlen + 1);
    return 0;
}

static void on_payload(void *userdata, const char *payload)
{
    struct changes *c = userdata;
    char kind[32], name[192];
    if (changes_parse(payload, kind, sizeof(kind), name, sizeof(name)) < 0) {
        /* Not one of ours (a newer ignisd's kind fits the shape): logged, not acted on. */
        log_warn("change notification not understood", "payload=\"%.64s\"", payload);
        return;
    }
    c->fn(c->userdata, kind, name);
}

static void schedule_retry(struct changes *c);

static void disconnect(struct changes *c)
{
    if (!c->db)
        return;
    loop_del_io(c->loop, c->fd);
    close(c->fd);
    db_close(TAKE_PTR(c->db));
}

static void on_readable(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct changes *c = userdata;
    if (db_notifications(c->db, on_payload, c) == 0)
        return;
    struct ig_error e = {};
    db_fail(c->db, &e, "listening for changes");
    log_warn("change listener lost its connection: reconnecting", "error=\"%s\"", e.message);
    disconnect(c);
    c->backoff_us = BACKOFF_MIN_US;
    schedule_retry(c);
}

/* Connects and listens: 0, or -errno with err. */
static int connect_listen(struct changes *c, struct ig_error *err)
{
    struct db *db;
    int r = db_open(c->target, 0, &db, err);
    if (r < 0)
        return r;
    c->fd = -1;
    if ((r = db_listen(db, CHANGES_CHANNEL, err)) == 0 && (r = db_socket(db)) >= 0) {
        c->fd = fcntl(r, F_DUPFD_CLOEXEC, 0);
        r = c->fd < 0 ? -errno : loop_add_io(c->loop, c->fd, EPOLLIN, on_readable, c);
    }
    if (r < 0) {
        if (!err->code)
            ig_error_set(err, -r, "listening for changes: %s", strerror(-r));
        if (c->fd >= 0)
            close(c->fd);
        db_close(db);
        return r;
    }
    c->db = db;
    return 0;
}

static void on_retry(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct changes *c = userdata;
    struct ig_error e = {};
    c->retry = NULL;
    if (connect_listen(c, &e) < 0) {
        c->backoff_us = c->backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : c->backoff_us * 2;
        log_warn("change listener cannot reconnect yet", "retry_ms=%llu error=\"%s\"",
                 (unsigned long long)(c->backoff_us / 1000), e.message);
        schedule_retry(c);
        return;
    }
    /* Listening again, so nothing from now on is missed; what was committed meanwhile is read
     * now. */
    log_info("change listener reconnected: re-reading everything");
    c->fn(c->userdata, NULL, NULL);
}

static void schedule_retry(struct changes *c)
{
    if (loop_add_timer(c->loop, now_usec() + c->backoff_us, on_retry, c, &c->retry) < 0) {
        c->retry = NULL;
        log_error("change listener cannot reconnect: out of memory");
    }
}

static void on_reread(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct changes *c = userdata;
    c->reread = NULL;
    if (loop_add_timer(c->loop, now_usec() + CHANGES_REREAD_US, on_reread, c, &c->reread) < 0)
        c->reread = NULL;
    c->fn(c->userdata, NULL, NULL);
}

int changes_new(struct loop *loop, const char *target, changes_fn fn, void *userdata,
                struct changes **ret, struct ig_error *err)
{
    struct changes *c = calloc(1, sizeof(*c));
    if (!c || !(c->target = strdup(target))) {
        free(c);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    c->loop = loop;
    c->fn = fn;
    c->userdata = userdata;
    int r = connect_listen(c, err);
    /* The first re-read comes at once: what the host read at start, before it listened, may
     * have changed since (a function pushed on another host meanwhile), and its notification
     * went to no one. */
    if (r == 0 && (r = loop_add_timer(loop, now_usec(), on_reread, c, &c->reread)) < 0)
        ig_error_set(err, -r, "out of memory");
    if (r < 0) {
        changes_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

void changes_free(struct changes *c)
{
    if (!c)
        return;
    disconnect(c);
    if (c->retry)
        loop_cancel_timer(c->loop, c->retry);
    if (c->reread)
        loop_cancel_timer(c->loop, c->reread);
    free(c->target);
    free(c);
}
