#include "daemon.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "config.h"
#include "log.h"

static int prepare_state_dir(const char *dir, struct ig_error *err)
{
    int r = mkdir_p(dir, 0700);
    if (r < 0)
        return ig_error_set(err, -r, "state dir %s: %s", dir, strerror(-r));
    /* root passes access(2) checks even where it cannot write (read-only mounts, immutable
     * dirs), so probe with a real file. */
    char probe[4200];
    snprintf(probe, sizeof(probe), "%s/.write-probe", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ig_error_set(err, errno, "state dir %s is not writable: %s", dir, strerror(errno));
    close(fd);
    unlink(probe);
    return 0;
}

/* The cgroup subtree (cgroup.h): named for the state dir, so what an earlier run left (a crash,
 * SIGKILL) is found and removed before anything new is made; then the daemon moves into its
 * leaf. Without usable cgroups an unprivileged daemon (tests, development) runs with the null
 * backend and says so; as root that is a failure, since limits and billing depend on it. */
static int setup_cgroups(struct daemon *d, struct ig_error *err)
{
    char id[17];
    struct ig_error cgerr = {};
    int r = instance_id(d->opts.state_dir, id);
    if (r < 0)
        return ig_error_set(err, -r, "state dir %s: %s", d->opts.state_dir, strerror(-r));

    r = cg_manager_new(NULL, NULL, id, &d->cgroups, &cgerr);
    int removed = 0;
    if (r == 0 && (removed = cg_manager_cleanup_stale(d->cgroups, &cgerr)) < 0) {
        log_warn("cannot remove cgroups left by an earlier run", "error=\"%s\"", cgerr.message);
        ig_error_clear(&cgerr);
        removed = 0;
    }
    if (r == 0)
        r = cg_manager_enter_leaf(d->cgroups, &cgerr);
    if (r < 0) {
        cg_manager_free(TAKE_PTR(d->cgroups));
        if (geteuid() == 0)
            return ig_error_set(err, cgerr.code, "cgroups: %s", cgerr.message);
        log_warn("no usable cgroups, running without limits or accounting", "error=\"%s\"",
                 cgerr.message);
        r = cg_manager_new_null(&d->cgroups);
        if (r < 0)
            return ig_error_set(err, -r, "out of memory");
    }
    char degraded[256];
    cg_features_degraded(cg_manager_features(d->cgroups), degraded, sizeof(degraded));
    log_info("cgroups ready", "mode=%s id=%s degraded=%s stale_removed=%d",
             cg_mode_name(cg_manager_mode(d->cgroups)), id, degraded, removed);
    return 0;
}

static void on_stop_signal(struct loop *l, int signo, void *userdata)
{
    struct daemon *d = userdata;
    log_info("shutting down", "signal=%s", strsignal(signo));
    d->stopping = true;
    loop_quit(l);
}

int daemon_new(const struct ignisd_options *opts, struct daemon **ret, struct ig_error *err)
{
    struct daemon *d = calloc(1, sizeof(*d));
    char dbpath[4200];
    int r;

    if (!d)
        return ig_error_set(err, ENOMEM, "out of memory");
    d->opts = *opts;
    d->started_usec = now_usec();
    r = prepare_state_dir(opts->state_dir, err);
    if (r < 0)
        goto fail;
    r = setup_cgroups(d, err);
    if (r < 0)
        goto fail;
    snprintf(dbpath, sizeof(dbpath), "%s/ignis.db", opts->state_dir);
    r = store_open(dbpath, &d->store, err);
    if (r < 0)
        goto fail;
    r = loop_new(&d->loop);
    if (r < 0) {
        ig_error_set(err, -r, "creating the event loop: %s", strerror(-r));
        goto fail;
    }
    r = registry_new(d->loop, d->store, opts->state_dir, &d->registry, err);
    if (r < 0)
        goto fail;
    if ((r = loop_add_signal(d->loop, SIGINT, on_stop_signal, d)) < 0 ||
        (r = loop_add_signal(d->loop, SIGTERM, on_stop_signal, d)) < 0) {
        ig_error_set(err, -r, "setting up signals: %s", strerror(-r));
        goto fail;
    }
    r = http_server_new(d->loop, opts->listen_host, opts->listen_port, api_routes, api_nroutes, d,
                        &d->http, err);
    if (r < 0)
        goto fail;
    log_info("ignisd started", "version=%s listen=%s:%u state_dir=%s schema=%d", IGNIS_VERSION,
             opts->listen_host, http_server_port(d->http), opts->state_dir, store_schema_version());
    *ret = d;
    return 0;
fail:
    daemon_free(d);
    return r;
}

int daemon_run(struct daemon *d)
{
    int r = loop_run(d->loop);
    if (r < 0)
        log_error("event loop failed", "error=\"%s\"", strerror(-r));
    return r;
}

void daemon_free(struct daemon *d)
{
    if (!d)
        return;
    http_server_free(d->http);
    /* After the HTTP server answered what was waiting, before the loop and the store go. */
    registry_free(d->registry);
    loop_free(d->loop);
    store_free(d->store);
    cg_manager_free(d->cgroups);
    free(d);
}
