#include "daemon/daemon.h"

#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "api/api.h"
#include "api/hosts.h"
#include "api/audit.h"
#include "records/audit_store.h"
#include "records/changes.h"
#include "records/db.h"
#include "config.h"
#include "container/container.h"
#include "container/doctor.h"
#include "records/fnlog.h"
#include "functions/secrets.h"
#include "records/hosts_store.h"
#include "api/forward.h"
#include "dispatch/cluster.h"
#include "base/fdlimit.h"
#include "base/log.h"
#include "records/telemetry.h"
#include "records/series.h"
#include "dispatch/sampler.h"

/* One daemon per state dir: an exclusive flock(2) on STATE_DIR/lock, held for the daemon's life
 * (the kernel drops it when the process dies, however it dies), with the holder's pid in the
 * file for the message. Taken before anything else touches the dir's contents: a second daemon
 * on the same dir would remove the first one's cgroups as stale and share its database. */
static int lock_state_dir(const char *dir, int *ret_fd, struct ig_error *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/lock", dir);
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ig_error_set(err, errno, "state dir %s: %s: %s", dir, path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            return ig_error_set(err, EBUSY, "state dir %s is in use by ignisd pid %s", dir,
                                buf[0] ? buf : "(unknown)");
        return ig_error_set(err, e, "state dir %s: locking %s: %s", dir, path, strerror(e));
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    ssize_t n = ftruncate(fd, 0) < 0 ? -1 : pwrite(fd, pid, (size_t)len, 0);
    if (n != len) {
        int e = n < 0 ? errno : EIO; /* a short write sets no errno */
        return ig_error_set(err, e, "state dir %s: writing %s: %s", dir, path, strerror(e));
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

/* "state dir DIR: no space left on device" (or "disk quota exceeded"), then what failed. */
static int no_space(const char *dir, int code, const char *detail, struct ig_error *err)
{
    return ig_error_set(err, code, "state dir %s: %s%s%s%s", dir,
                        code == EDQUOT ? "disk quota exceeded" : "no space left on device",
                        detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
}

static int prepare_state_dir(const char *dir, struct ig_error *err)
{
    int r = mkdir_p(dir, 0700);
    if (r < 0)
        return ig_error_set(err, -r, "state dir %s: %s", dir, strerror(-r));
    /* root passes access(2) checks even where it cannot write (read-only mounts, immutable
     * dirs), so probe with a real file; with data in it, synced, since a full disk still lets
     * an empty file be made (and SQLite would then say only "disk I/O error"). */
    char probe[4200];
    snprintf(probe, sizeof(probe), "%s/.write-probe", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ig_error_set(err, errno, "state dir %s is not writable: %s", dir, strerror(errno));
    int e = write(fd, "probe\n", 6) == 6 && fsync(fd) == 0 ? 0 : errno ? errno : EIO;
    close(fd);
    unlink(probe);
    if (e == ENOSPC || e == EDQUOT)
        return no_space(dir, e, NULL, err);
    if (e)
        return ig_error_set(err, e, "state dir %s is not writable: %s", dir, strerror(e));
    return 0;
}

int daemon_host_id(const struct ignisd_options *opts, bool create, char ret[64])
{
    char path[sizeof(opts->state_dir) + 16], tmp[sizeof(path) + 8];
    _cleanup_free_ char *text = NULL;
    size_t len;

    if (opts->host_id[0]) {
        /* ret may be opts->host_id itself (daemon_new): snprintf must not copy onto its source. */
        memmove(ret, opts->host_id, strnlen(opts->host_id, 63) + 1);
        ret[63] = '\0';
        return 0;
    }
    snprintf(path, sizeof(path), "%s/host-id", opts->state_dir);
    int r = read_file(path, 256, &text, &len);
    if (r == 0) {
        text[strcspn(text, "\n")] = '\0';
        if (!options_valid_host_id(text))
            return -EINVAL;
        snprintf(ret, 64, "%s", text);
        return 0;
    }
    if (r != -ENOENT || !create)
        return r;
    uint8_t bytes[8];
    char id[17], line[18];
    random_bytes(bytes, sizeof(bytes));
    hex_encode(bytes, sizeof(bytes), id);
    snprintf(line, sizeof(line), "%s\n", id);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    /* Written aside, synced and renamed: a crash leaves either no id or the whole one, never a
     * half that a restart would take for another host. */
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) < 0 ||
        rename(tmp, path) < 0)
        return errno ? -errno : -EIO;
    snprintf(ret, 64, "%s", id);
    return 0;
}

/* The URL peers reach this host at, when not configured: the listen address (the machine's name
 * in its place when it is a wildcard, which no peer can dial) and the port actually bound. */
static void default_advertise(struct daemon *d, uint16_t port)
{
    struct ignisd_options *o = &d->opts;
    char host[256];
    if (o->advertise[0])
        return;
    if (streq(o->listen_host, "0.0.0.0") || streq(o->listen_host, "::") || !o->listen_host[0]) {
        if (gethostname(host, sizeof(host)) < 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
    } else {
        snprintf(host, sizeof(host), "%s", o->listen_host);
    }
    bool v6 = strchr(host, ':') != NULL;
    snprintf(o->advertise, sizeof(o->advertise), "%s://%s%s%s:%u",
             o->tls_cert[0] ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port);
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

static int make_absolute(char *path, size_t size, struct ig_error *err)
{
    char abs[PATH_MAX];
    if (!realpath(path, abs))
        return ig_error_set(err, errno, "%s: %s", path, strerror(errno));
    if (strlen(abs) >= size)
        return ig_error_set(err, ENAMETOOLONG, "%s: path too long", abs);
    strcpy(path, abs);
    return 0;
}

void daemon_doctor_store(const struct ignisd_options *opts, cJSON *checks,
                         enum doctor_status *worst)
{
    char target[sizeof(opts->store) + sizeof(opts->state_dir)], name[600];
    struct ig_error err = {};
    int version, current = store_schema_version();
    options_store_target(opts, target, sizeof(target));
    db_target_name(target, name, sizeof(name));
    bool shared = db_is_postgresql(target);
    const char *engine = shared ? "postgresql" : "sqlite";
    if (store_probe(target, &version, &err) < 0)
        doctor_add(checks, worst, "store", DOCTOR_FAILING,
                   "start the database, or correct --store (docs/operations.md)",
                   "engine=%s %s: %s", engine, name, err.message);
    else if (version > current)
        doctor_add(checks, worst, "store", DOCTOR_FAILING, "run an ignisd at least as new as it",
                   "engine=%s %s: schema %d is newer than this ignisd's (%d)", engine, name,
                   version, current);
    else
        doctor_add(checks, worst, "store", DOCTOR_OK, NULL, "engine=%s %s schema=%d%s", engine,
                   name, version, version < current ? " (made or migrated at the next start)" : "");
    uint8_t key[SECRETS_KEY_BYTES];
    if (opts->secrets_key[0] && secrets_key_load(opts->secrets_key, key, &err) < 0)
        doctor_add(checks, worst, "secrets", DOCTOR_FAILING,
                   "make it 32 random bytes, mode 0600 (docs/operations.md)", "%s", err.message);
    else if (shared && !opts->secrets_key[0])
        doctor_add(checks, worst, "secrets", DOCTOR_DEGRADED,
                   "set secrets_key, the same file on every host (docs/operations.md)",
                   "per host: a secret set through one host is not on the others");
    else
        doctor_add(checks, worst, "secrets", DOCTOR_OK, NULL, "%s",
                   shared ? "shared through the store, encrypted" : "this host's files");
    explicit_bzero(key, sizeof(key));
}

/* GET /v1/doctor's checks (api.h): the host as ignisd --doctor sees it, and its store. */
static int run_doctor(void *userdata, cJSON **ret_checks, const char **ret_status)
{
    struct daemon *d = userdata;
    struct doctor_env env = {.state_dir = d->opts.state_dir,
                             .images_dir = dispatch_get_options(d->dispatch)->images_dir,
                             .cg = d->cgroups};
    enum doctor_status worst;
    int r = doctor_run(&env, ret_checks, &worst);
    if (r < 0)
        return r;
    daemon_doctor_store(&d->opts, *ret_checks, &worst);
    *ret_status = doctor_status_name(worst);
    return 0;
}

/* Every container holds fds in the daemon, and one per function for ever would wedge it:
 * the soft RLIMIT_NOFILE goes up to the hard one before anything is opened (a shell's 1024 is
 * far too low for hundreds of warm containers), and both are logged. */
static void raise_fd_limit(void)
{
    struct fdlimit fl;
    int r = fdlimit_raise(&fl);
    if (r < 0)
        log_warn("cannot raise the fd limit", "soft=%llu hard=%llu error=\"%s\"",
                 (unsigned long long)fl.soft, (unsigned long long)fl.hard, strerror(-r));
    else
        log_info("fd limit", "soft=%llu hard=%llu was=%llu reserve=%u", (unsigned long long)fl.soft,
                 (unsigned long long)fl.hard, (unsigned long long)fl.soft_before,
                 fdlimit_reserve(fl.soft));
}

/* At most half the fds for HTTP connections: the rest are the containers' and the store's, and
 * a connection flood must not take the reserve that keeps /healthz answering. */
static unsigned connection_limit(unsigned wanted)
{
    rlim_t soft, hard;
    fdlimit_get(&soft, &hard);
    unsigned most = soft / 2 < 16 ? 16 : soft / 2 > UINT_MAX ? UINT_MAX : (unsigned)(soft / 2);
    if (wanted <= most)
        return wanted;
    log_warn("max_connections lowered to fit the fd limit", "max_connections=%u fd_limit=%llu",
             most, (unsigned long long)soft);
    return most;
}

static int drain_soon(void *userdata);

/* The API's server: routes and their roles (api.c), the limits, and HTTPS when a certificate
 * and key are configured (read here: libmicrohttpd takes PEM text, not paths). */
static int start_http(struct daemon *d, struct ig_error *err)
{
    const struct ignisd_options *o = &d->opts;
    _cleanup_free_ char *cert = NULL, *key = NULL;
    int r;
    if (o->tls_cert[0]) {
        if ((r = read_file(o->tls_cert, 1 << 20, &cert, NULL)) < 0)
            return ig_error_set(err, -r, "tls_cert %s: %s", o->tls_cert, strerror(-r));
        if ((r = read_file(o->tls_key, 1 << 20, &key, NULL)) < 0)
            return ig_error_set(err, -r, "tls_key %s: %s", o->tls_key, strerror(-r));
    }
    struct http_server_options hopts = {
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .connection_limit = connection_limit(o->max_connections),
        .per_ip_connection_limit = o->max_connections_per_ip,
        .connection_reserve = o->connection_reserve,
        .header_timeout_s = o->http_header_timeout_s,
        .idle_timeout_s = o->http_idle_timeout_s,
        .authorize = api_authorize,
        .audit = api_audit,
    };
    d->api = (struct api){
        .dispatch = d->dispatch,
        .registry = d->registry,
        .events = d->events,
        .sinks = d->sinks,
        .auth = d->auth,
        .journal = d->journal,
        .store = d->store,
        .series = d->series,
        .secrets = d->secrets,
        .state_dir = o->state_dir,
        .host_id = o->host_id,
        .started_usec = d->started_usec,
        .doctor = run_doctor,
        .doctor_userdata = d,
        .drain = drain_soon,
    };
    r = http_server_new(d->loop, o->listen_host, o->listen_port, api_routes, api_nroutes, &d->api,
                        &hopts, &d->http, err);
    if (key)
        explicit_bzero(key, strlen(key));
    return r;
}

/* The last step of a graceful stop: the invocations this host forwarded (those queued here when
 * it began, moved to other hosts) get their replies, within another grace period. */
static void on_forwards_checked(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct daemon *d = userdata;
    if (forwarder_active(d->api.forwarder) == 0 || now_usec() >= d->forwards_deadline_us)
        loop_quit(l);
    else
        loop_add_timer(l, now_usec() + 20 * 1000, on_forwards_checked, d, NULL);
}

static void on_dispatch_stopped(void *userdata)
{
    struct daemon *d = userdata;
    d->forwards_deadline_us =
        now_usec() + dispatch_get_options(d->dispatch)->shutdown_grace_ms * 1000;
    on_forwards_checked(d->loop, NULL, d);
}

/* A graceful stop: no new connections, queued sync invocations answered 503 (or, with a
 * cluster_key, forwarded to another host), in-flight ones given the grace period, queued async ones
 * handed back to the shared queue (PostgreSQL) or left in the store for the next start. */
static void stop_gracefully(struct daemon *d)
{
    d->api.stopping = true;
    http_server_quiesce(d->http);
    dispatch_shutdown(d->dispatch, on_dispatch_stopped, d);
}

/* SIGTERM, SIGINT: a graceful stop; a second signal stops at once. */
static void on_stop_signal(struct loop *l, int signo, void *userdata)
{
    struct daemon *d = userdata;
    if (d->api.stopping) {
        log_warn("second signal: stopping now", "signal=%s", strsignal(signo));
        loop_quit(l);
        return;
    }
    log_info("shutting down", "signal=%s", strsignal(signo));
    stop_gracefully(d);
}

/* A drain asked for through the API (on this host or another: the notification). */
static void on_drain(struct loop *l, void *userdata)
{
    struct daemon *d = userdata;
    if (d->api.stopping)
        return;
    log_info("shutting down", "reason=drain");
    stop_gracefully(d);
}

static int drain_soon(void *userdata)
{
    struct daemon *d = userdata;
    return loop_post(d->loop, on_drain, d);
}

/* An invocation's final outcome goes to its function's sink, if it has one. */
static void on_invocation_final(void *userdata, const struct dispatch_result *r)
{
    struct daemon *d = userdata;
    bool ok = r->kind == OUTCOME_OK;
    sinks_submit(d->sinks, r->function, &r->manifest->sink, r->id, ok, ok ? r->body : NULL,
                 ok ? r->body_len : 0, r->content_type, r->error_type, r->error_message);
}

static void describe_invocation(void *userdata, const char *id, cJSON *record)
{
    struct daemon *d = userdata;
    sinks_describe(d->sinks, id, record);
}

/* Events functions emit go where external ones go (events.c). */
static void on_emitted(void *userdata, struct fn_state *fn, struct inv *inv,
                       const struct proto_msg *m)
{
    struct daemon *d = userdata;
    if (d->events)
        events_emitted(d->events, fn, inv, m);
}

#define DAY_US (86400ll * 1000000)

/* The daemon's share of retention (retention.h): invocation records carry their own expiry; the
 * usage ledger and the audit log keep what the options say. */
static void purge_records(void *userdata, int64_t now_us)
{
    struct daemon *d = userdata;
    inv_store_purge(d->journal, now_us, retention_done, "invocations");
    accountant_purge(d->journal, now_us - d->opts.usage_retention_days * DAY_US,
                     now_us - d->opts.usage_rollup_retention_days * DAY_US);
    audit_store_purge(d->journal, now_us - d->opts.audit_retention_days * DAY_US);
}

/* Another host changed what this one keeps in memory: it is read again from the store. */
static void on_change(void *userdata, const char *kind, const char *name)
{
    struct daemon *d = userdata;
    struct ig_error e = {};
    int r = 0;
    if (!kind) {
        r = registry_sync(d->registry, NULL);
        if (r == 0)
            r = auth_reload(d->auth, &e);
        if (r == 0)
            r = secrets_sync(d->secrets, NULL, &e);
        cluster_warm_announced(d->api.cluster, NULL);
        /* A drain asked for while the notification could not reach this host. */
        bool drain = false;
        if (r == 0 &&
            (r = hosts_store_drain_requested(d->store, d->opts.host_id, &drain, &e)) == 0 && drain)
            r = drain_soon(d);
    } else if (streq(kind, CHANGES_SECRET)) {
        r = secrets_sync(d->secrets, name, &e);
    } else if (streq(kind, CHANGES_FUNCTION)) {
        r = registry_sync(d->registry, name);
    } else if (streq(kind, CHANGES_SERVICE)) {
        r = registry_sync_services(d->registry);
    } else if (streq(kind, CHANGES_TOKEN)) {
        r = auth_reload_token(d->auth, name, &e);
    } else if (streq(kind, CHANGES_QUEUE)) {
        dispatch_queue_wake(d->dispatch, name);
    } else if (streq(kind, CHANGES_DRAIN) && streq(name, d->opts.host_id)) {
        r = drain_soon(d);
    } else if (streq(kind, CHANGES_WARM)) {
        cluster_warm_announced(d->api.cluster, name);
    }
    if (r < 0)
        log_error("applying a change made on another host failed", "kind=%s name=%s error=\"%s\"",
                  kind ? kind : "*", name ? name : "*", e.code ? e.message : strerror(-r));
}

/* This host's warm capacity for function changed (dispatch_hooks.warm): its row in
 * warm_capacity, and the notification its peers apply. */
static void on_warm(void *userdata, const char *function, bool warm)
{
    struct daemon *d = userdata;
    int r = hosts_store_warm(d->journal, d->opts.host_id, function, warm);
    if (r < 0)
        log_warn("publishing this host's warm capacity failed", "function=%s error=\"%s\"",
                 function, strerror(-r));
}

/* Sync invocations placed across the hosts (#17): with a PostgreSQL store and a cluster_key,
 * the view of the peers and the forwarder; else neither (each host runs what it is sent). */
static int start_cluster(struct daemon *d, bool shared, struct ig_error *err)
{
    if (!d->opts.cluster_key[0]) {
        if (shared)
            log_info("sync invocations run where they arrive: set cluster_key (the same file on "
                     "every host) to forward them to hosts with warm containers");
        return 0;
    }
    if (!shared) {
        log_warn("cluster_key unused: with SQLite there is one host");
        return 0;
    }
    uint8_t key[SECRETS_KEY_BYTES];
    int r = secrets_key_load(d->opts.cluster_key, key, err);
    if (r == 0)
        r = forwarder_new(d->loop, d->opts.host_id, key, &d->api.forwarder, err);
    explicit_bzero(key, sizeof(key));
    if (r == 0)
        r = cluster_new(d->loop, d->store, d->journal, d->opts.host_id, &d->api.cluster, err);
    if (r < 0) {
        ig_error_prefix(err, "cluster_key %s", d->opts.cluster_key);
        return r;
    }
    dispatch_set_cluster(d->dispatch, d->api.cluster);
    return 0;
}

/* Secrets (functions/secrets.h): shared through a PostgreSQL store when a secrets_key is set,
 * else this host's files; the log says which when it matters. */
static int start_secrets(struct daemon *d, bool on_postgresql, struct ig_error *err)
{
    uint8_t key[SECRETS_KEY_BYTES];
    bool have_key = d->opts.secrets_key[0];
    int r = have_key ? secrets_key_load(d->opts.secrets_key, key, err) : 0;
    if (r < 0)
        return r;
    if (have_key && !on_postgresql)
        log_warn("secrets_key unused: with SQLite there is one host, and secrets are its files");
    else if (on_postgresql && !have_key)
        log_warn("secrets are per host: set secrets_key (the same file on every host) to share "
                 "them through the store");
    r = secrets_new(d->opts.state_dir, on_postgresql && have_key ? d->store : NULL, key,
                    &d->secrets, err);
    explicit_bzero(key, sizeof(key));
    return r;
}

/* This host's heartbeat in the hosts table, with its figures, each second, through the
 * journal. */
static void on_heartbeat(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct daemon *d = userdata;
    d->heartbeat = NULL;
    struct host_figures f;
    api_host_figures(&d->api, &f);
    hosts_store_heartbeat(d->journal, d->opts.host_id, (int64_t)wall_usec(), &f, NULL, NULL);
    loop_add_timer(l, now_usec() + 1000000, on_heartbeat, d, &d->heartbeat);
}

/* Registers this host in the hosts table (its advertised address known) and, where hosts share
 * the store, starts its heartbeat: on SQLite there are no peers to read it, and a write a second
 * would keep an idle host's store busy for nothing. */
static int register_host(struct daemon *d, bool shared, struct ig_error *err)
{
    struct host_row h = {.host_id = d->opts.host_id,
                         .advertise = d->opts.advertise,
                         .version = IGNIS_VERSION,
                         .started_us = (int64_t)wall_usec()};
    api_host_figures(&d->api, &h.figures);
    int r = hosts_store_register(d->store, &h, err);
    if (r == 0 && shared &&
        (r = loop_add_timer(d->loop, now_usec() + 1000000, on_heartbeat, d, &d->heartbeat)) < 0)
        ig_error_set(err, -r, "out of memory");
    return r;
}

int daemon_new(const struct ignisd_options *opts, struct daemon **ret, struct ig_error *err)
{
    struct daemon *d = calloc(1, sizeof(*d));
    char store_target[4200];
    int r;

    if (!d)
        return ig_error_set(err, ENOMEM, "out of memory");
    d->lock_fd = -1;
    d->opts = *opts;
    d->started_usec = now_usec();
    raise_fd_limit();
    r = prepare_state_dir(opts->state_dir, err);
    if (r == 0)
        r = lock_state_dir(opts->state_dir, &d->lock_fd, err);
    if (r < 0)
        goto fail;
    /* Every path handed on (to the shim, to bundles, to images) is absolute: the shim refuses
     * anything else, and a relative one would depend on a cwd nobody else shares. */
    r = make_absolute(d->opts.state_dir, sizeof(d->opts.state_dir), err);
    if (r < 0)
        goto fail;
    if (d->opts.images_dir[0] &&
        (r = make_absolute(d->opts.images_dir, sizeof(d->opts.images_dir), err)) < 0)
        goto fail;
    r = daemon_host_id(&d->opts, true, d->opts.host_id);
    if (r < 0) {
        ig_error_set(err, -r, "%s/host-id: %s", d->opts.state_dir,
                     r == -EINVAL ? "not a host id (set host_id or remove the file)"
                                  : strerror(-r));
        goto fail;
    }
    opts = &d->opts;
    r = setup_cgroups(d, err);
    if (r < 0)
        goto fail;
    options_store_target(opts, store_target, sizeof(store_target));
    r = store_open(store_target, &d->store, err);
    if ((r == -ENOSPC || r == -EDQUOT) && !opts->store[0]) {
        struct ig_error cause = *err;
        ig_error_clear(err);
        r = no_space(opts->state_dir, -r, cause.message, err);
    }
    if (r < 0)
        goto fail;
    r = loop_new(&d->loop);
    if (r < 0) {
        ig_error_set(err, -r, "creating the event loop: %s", strerror(-r));
        goto fail;
    }
    /* Signals are blocked (and taken through the loop's signalfd) before any thread starts:
     * a thread inherits the mask, and one with SIGTERM unblocked would die of it. */
    if ((r = loop_add_signal(d->loop, SIGINT, on_stop_signal, d)) < 0 ||
        (r = loop_add_signal(d->loop, SIGTERM, on_stop_signal, d)) < 0) {
        ig_error_set(err, -r, "setting up signals: %s", strerror(-r));
        goto fail;
    }
    r = telemetry_init();
    if (r == 0)
        r = fnlog_init(d->loop, opts->state_dir, 0, 0);
    if (r < 0) {
        ig_error_set(err, -r, "setting up function logs under %s/logs: %s", opts->state_dir,
                     strerror(-r));
        goto fail;
    }
    r = journal_new(d->loop, store_target, &d->journal, err);
    if (r < 0)
        goto fail;
    store_set_journal(d->store, d->journal);
    r = retention_new(d->loop, &d->retention);
    if (r == 0)
        r = retention_add(d->retention, purge_records, d);
    if (r < 0) {
        ig_error_set(err, -r, "out of memory");
        goto fail;
    }
    r = registry_new(d->loop, d->store, opts->state_dir, &d->registry, err);
    if (r < 0)
        goto fail;
    registry_set_keep_versions(d->registry, opts->keep_versions);
    struct dispatch_options dopts;
    dispatch_options_defaults(&dopts, opts->state_dir);
    if (opts->images_dir[0])
        snprintf(dopts.images_dir, sizeof(dopts.images_dir), "%s", opts->images_dir);
    dopts.queue_max = opts->queue_max;
    dopts.python_templates = opts->python_templates;
    /* Hosts share a PostgreSQL store (its queue, changes, secrets, heartbeat); SQLite's is one
     * host's. */
    bool shared = db_is_postgresql(store_target);
    dopts.shared_queue = shared;
    snprintf(dopts.host_id, sizeof(dopts.host_id), "%s", d->opts.host_id);
    r = dispatch_new(d->loop, d->store, d->journal, d->cgroups, &dopts, &d->dispatch, err);
    if (r < 0)
        goto fail;
    registry_set_images_dir(d->registry, dopts.images_dir);
    /* Made here, on the loop's thread, which also makes the containers. */
    if (geteuid() == 0) {
        r = container_stock_new(d->cgroups, CONTAINER_STOCK_TARGET, &d->stock, err);
        if (r < 0)
            goto fail;
        dispatch_set_stock(d->dispatch, d->stock);
    }
    dispatch_attach_registry(d->dispatch, d->registry);
    r = series_new(&d->series);
    if (r == 0)
        r = sampler_new(d->loop, d->dispatch, d->series, &d->sampler);
    if (r < 0) {
        ig_error_set(err, -r, "starting the series sampler: %s", strerror(-r));
        goto fail;
    }
    struct sink_options sopts;
    sink_options_defaults(&sopts);
    sopts.allow_loopback = opts->sink_allow_loopback;
    r = sinks_new(d->loop, d->store, d->journal, &sopts, &d->sinks, err);
    if (r < 0)
        goto fail;
    if ((r = retention_add(d->retention, sinks_purge, d->sinks)) < 0) {
        ig_error_set(err, -r, "out of memory");
        goto fail;
    }
    dispatch_set_hooks(d->dispatch, &(struct dispatch_hooks){.completed = on_invocation_final,
                                                             .describe = describe_invocation,
                                                             .emitted = on_emitted,
                                                             .warm = on_warm,
                                                             .userdata = d});
    r = dispatch_recover(d->dispatch, err);
    if (r < 0)
        goto fail;
    const struct events_options eopts = {
        .dedupe_window_us = (uint64_t)opts->event_dedupe_window_s * 1000000,
        .hop_limit = opts->event_hop_limit,
        .tz_offset_s = opts->schedule_tz_offset_s,
    };
    r = events_new(d->loop, d->store, d->journal, d->dispatch, &eopts, &d->events, err);
    if (r < 0)
        goto fail;
    if ((r = retention_add(d->retention, events_purge, d->events)) < 0) {
        ig_error_set(err, -r, "out of memory");
        goto fail;
    }
    struct auth_options aopts = {.rate = opts->rate_limit,
                                 .burst = opts->rate_burst,
                                 .metrics_public = opts->metrics_public};
    snprintf(aopts.state_dir, sizeof(aopts.state_dir), "%s", opts->state_dir);
    r = auth_new(d->store, &aopts, &d->auth, err);
    if (r < 0)
        goto fail;
    r = start_secrets(d, shared, err);
    if (r < 0)
        goto fail;
    if (shared && (r = changes_new(d->loop, store_target, on_change, d, &d->changes, err)) < 0)
        goto fail;
    r = start_http(d, err);
    if (r < 0)
        goto fail;
    default_advertise(d, http_server_port(d->http));
    r = register_host(d, shared, err);
    if (r == 0)
        r = start_cluster(d, shared, err);
    if (r < 0)
        goto fail;
    char store_name[600];
    db_target_name(store_target, store_name, sizeof(store_name));
    log_info("ignisd started",
             "version=%s listen=%s:%u state_dir=%s store=%s schema=%d tls=%s host_id=%s "
             "advertise=%s",
             IGNIS_VERSION, opts->listen_host, http_server_port(d->http), opts->state_dir,
             store_name, store_schema_version(), opts->tls_cert[0] ? "true" : "false",
             opts->host_id, opts->advertise);
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
    /* Order matters: the dispatcher records its last outcomes through the journal; the journal's
     * last callbacks find the dispatcher closed but allocated; replies still waiting go out
     * before the HTTP server stops; threads that post to the loop end before it is freed. */
    if (d->http)
        http_server_quiesce(d->http);
    retention_free(d->retention);
    sampler_free(d->sampler);
    changes_free(d->changes);
    d->changes = NULL;
    /* Forwards still waiting for a peer get 503 (the peer runs them to their end). */
    forwarder_free(d->api.forwarder);
    d->api.forwarder = NULL;
    if (d->dispatch)
        dispatch_set_cluster(d->dispatch, NULL);
    cluster_free(d->api.cluster);
    d->api.cluster = NULL;
    dispatch_close(d->dispatch);
    /* Its last rows go through the journal, still open. */
    sinks_free(d->sinks);
    registry_free(d->registry);
    d->api.registry = NULL; /* requests still waiting below detach from nothing (api/functions.c) */
    if (d->store)
        store_set_journal(d->store, NULL);
    journal_free(d->journal);
    events_free(d->events);
    d->journal = NULL;
    d->api.journal = NULL; /* requests still completing below are not audited (api_audit) */
    dispatch_free(d->dispatch);
    /* Follow streams end before the HTTP server flushes and closes them; the logs' state goes
     * once their connections are gone. */
    fnlog_end_streams();
    http_server_free(d->http);
    series_free(d->series);
    fnlog_free();
    telemetry_free();
    loop_free(d->loop);
    auth_free(d->auth);
    secrets_free(d->secrets);
    store_free(d->store);
    /* Every container is gone: what the stock holds goes, then the container server (a
     * process in the daemon's leaf), both before the subtree. */
    if (d->stock) {
        struct container_stock_stats st;
        container_stock_stats(d->stock, &st);
        log_info("container stock",
                 "netns_taken=%llu netns_missed=%llu netns_reused=%llu netns_closed=%llu "
                 "cgroups_taken=%llu cgroups_missed=%llu cgroups_reused=%llu "
                 "cgroups_removed=%llu busy=%llu",
                 (unsigned long long)st.netns_taken, (unsigned long long)st.netns_missed,
                 (unsigned long long)st.netns_reused, (unsigned long long)st.netns_closed,
                 (unsigned long long)st.cgroups_taken, (unsigned long long)st.cgroups_missed,
                 (unsigned long long)st.cgroups_reused, (unsigned long long)st.cgroups_removed,
                 (unsigned long long)st.busy);
        container_stock_free(d->stock);
    }
    container_shutdown();
    cg_manager_free(d->cgroups);
    /* Last: everything of this state dir is cleaned up under the lock. */
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    free(d);
}
