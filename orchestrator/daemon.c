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
             opts->listen_host, http_server_port(d->http), opts->state_dir,
             store_schema_version());
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
    free(d);
}
