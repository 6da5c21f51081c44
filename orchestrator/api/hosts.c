#include "api/hosts.h"

#include "api/api.h"
#include "api/errors.h"
#include "dispatch/dispatch.h"
#include "records/series.h"

void api_host_figures(const struct api *a, struct host_figures *ret)
{
    struct dispatch_host_stats st;
    dispatch_host_stats(a->dispatch, &st);
    *ret = (struct host_figures){
        .containers_ready = (int64_t)st.nready,
        .containers_busy = (int64_t)st.nbusy,
        .memory_used = (int64_t)st.memory_committed,
        .memory_budget = (int64_t)st.memory_budget,
        .invocations_per_s = a->series ? series_rate(a->series, (uint32_t)(wall_usec() / 1000000),
                                                     HOSTS_RATE_SECONDS)
                                       : 0,
    };
}

struct listing {
    const struct api *a;
    cJSON *hosts;
    int live;
};

static int add_host(void *userdata, const struct host_row *h)
{
    struct listing *l = userdata;
    bool me = streq(h->host_id, l->a->host_id);
    struct host_figures f = h->figures;
    /* This host answers for itself as it is now: on SQLite it writes no heartbeat (no peer
     * reads one), and its own figures need not wait for the next. */
    int64_t age_us = me ? 0 : h->heartbeat_age_us;
    if (me)
        api_host_figures(l->a, &f);
    bool live = age_us <= HOSTS_GONE_AFTER_US;
    l->live += live;
    char started[32];
    format_time_ms((uint64_t)h->started_us, started);
    cJSON *o = cJSON_CreateObject(), *c, *m;
    cJSON_AddStringToObject(o, "host_id", h->host_id);
    cJSON_AddStringToObject(o, "state", live ? "live" : "gone");
    cJSON_AddBoolToObject(o, "this", me);
    cJSON_AddStringToObject(o, "advertise", h->advertise);
    cJSON_AddStringToObject(o, "version", h->version);
    cJSON_AddStringToObject(o, "started_at", started);
    cJSON_AddNumberToObject(o, "heartbeat_age_ms", (double)(age_us > 0 ? age_us / 1000 : 0));
    cJSON_AddItemToObject(o, "containers", c = cJSON_CreateObject());
    cJSON_AddNumberToObject(c, "ready", (double)f.containers_ready);
    cJSON_AddNumberToObject(c, "busy", (double)f.containers_busy);
    cJSON_AddItemToObject(o, "memory", m = cJSON_CreateObject());
    cJSON_AddNumberToObject(m, "used_bytes", (double)f.memory_used);
    cJSON_AddNumberToObject(m, "budget_bytes", (double)f.memory_budget);
    cJSON_AddNumberToObject(o, "invocations_per_s", f.invocations_per_s);
    cJSON_AddItemToArray(l->hosts, o);
    return 0;
}

void api_get_hosts(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    cJSON *root = cJSON_CreateObject();
    struct listing l = {.a = a, .hosts = cJSON_AddArrayToObject(root, "hosts")};
    struct ig_error err = {};
    if (hosts_store_list(a->store, (int64_t)wall_usec(), add_host, &l, &err) < 0) {
        cJSON_Delete(root);
        api_reply_error(req, &err);
        return;
    }
    cJSON_AddNumberToObject(root, "live", l.live);
    http_reply_json(req, 200, root);
}

struct host_target {
    const char *id;
    bool found, live, me;
};

static int find_host(void *userdata, const struct host_row *h)
{
    struct host_target *t = userdata;
    if (streq(h->host_id, t->id)) {
        t->found = true;
        t->live = h->heartbeat_age_us <= HOSTS_GONE_AFTER_US;
    }
    return 0;
}

/* Finds t->id among the store's hosts; this host is known without asking the store, which may
 * be away. 0 or -errno with err. */
static int look_up(struct api *a, struct host_target *t, struct ig_error *err)
{
    if (streq(t->id, a->host_id)) {
        t->found = t->live = t->me = true;
        return 0;
    }
    return hosts_store_list(a->store, (int64_t)wall_usec(), find_host, t, err);
}

/* err, or status with {"host_id": id, "state": state}. */
static void reply_host(struct http_request *req, const struct ig_error *err, const char *id,
                       unsigned status, const char *state)
{
    if (err->code) {
        api_reply_error(req, err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "host_id", id);
    cJSON_AddStringToObject(o, "state", state);
    http_reply_json(req, status, o);
}

void api_post_host_drain(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    struct host_target t = {.id = http_request_param(req, 0)};
    struct ig_error err = {};
    if (look_up(a, &t, &err) == 0) {
        if (!t.found)
            ig_error_set_reason(&err, ENOENT, "unknown_host", "no host %s uses this store", t.id);
        else if (!t.live)
            ig_error_set_reason(&err, EBUSY, "host_gone", "host %s is gone already", t.id);
        /* This host once the reply is on its way (drain defers the stop, which quiesces the
         * server); another when it hears the notification, or, having missed it, when it next
         * reads everything again (hosts_store_request_drain). */
        else if (t.me ? a->drain(a->doctor_userdata) < 0
                      : hosts_store_request_drain(a->journal, t.id) < 0)
            ig_error_set(&err, ENOMEM, "out of memory");
    }
    reply_host(req, &err, t.id, 202, "draining");
}

void api_delete_host(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    struct host_target t = {.id = http_request_param(req, 0)};
    struct ig_error err = {};
    if (look_up(a, &t, &err) == 0) {
        int r = 0;
        if (!t.found)
            ig_error_set_reason(&err, ENOENT, "unknown_host", "no host %s uses this store", t.id);
        else if (!t.live) /* its heartbeat checked again as it goes: 0 when it came back */
            r = hosts_store_forget(a->store, t.id, (int64_t)wall_usec() - HOSTS_GONE_AFTER_US,
                                   &err);
        if (t.found && r == 0)
            ig_error_set_reason(&err, EBUSY, "host_live",
                                "host %s is live: drain it first (ignis host drain %s)", t.id,
                                t.id);
    }
    reply_host(req, &err, t.id, 200, "forgotten");
}
