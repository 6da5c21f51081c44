/* ignisd: the Ignis controller. Thin: parse options, build the daemon, run it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "daemon/daemon.h"
#include "base/checks.h"
#include "container/doctor.h"
#include "base/log.h"
#include "daemon/options.h"
#include "functions/secrets.h"
#include "records/db.h"
#include "records/store.h"

/* --check-config: the options parsed, and the store reachable (its schema read, nothing
 * created or migrated). */
static int check_config(const struct ignisd_options *opts)
{
    struct ig_error err = {};
    char target[sizeof(opts->store) + sizeof(opts->state_dir)], name[600];
    int version;

    options_store_target(opts, target, sizeof(target));
    db_target_name(target, name, sizeof(name));
    if (store_probe(target, &version, &err) < 0) {
        fprintf(stderr, "ignisd: the store %s: %s\n", name, err.message);
        return 1;
    }
    char host_id[64];
    int r = daemon_host_id(opts, false, host_id);
    if (r == -ENOENT)
        snprintf(host_id, sizeof(host_id), "(made at the first start)");
    else if (r < 0) {
        fprintf(stderr, "ignisd: %s/host-id: %s\n", opts->state_dir,
                r == -EINVAL ? "not a host id" : strerror(-r));
        return 1;
    }
    uint8_t key[SECRETS_KEY_BYTES];
    if (opts->secrets_key[0] && secrets_key_load(opts->secrets_key, key, &err) < 0) {
        fprintf(stderr, "ignisd: %s\n", err.message);
        return 1;
    }
    explicit_bzero(key, sizeof(key));
    printf("configuration ok: listen=%s:%u state_dir=%s store=%s engine=%s schema=%d (this "
           "ignisd: %d) host_id=%s\n",
           opts->listen_host, opts->listen_port, opts->state_dir, name,
           db_is_postgresql(target) ? "postgresql" : "sqlite", version, store_schema_version(),
           host_id);
    return 0;
}

int main(int argc, char **argv)
{
    struct ignisd_options opts;
    struct ig_error err = {};
    enum options_action action;
    struct daemon *d = NULL;

    options_defaults(&opts);
    if (options_parse(&opts, argc, argv, &action, &err) < 0) {
        fprintf(stderr, "ignisd: %s (see --help)\n", err.message);
        return 2;
    }
    if (action == OPTIONS_HELP) {
        fputs(options_usage, stdout);
        return 0;
    }
    if (action == OPTIONS_VERSION) {
        printf("ignisd %s\n", IGNIS_VERSION);
        return 0;
    }
    if (action == OPTIONS_DOCTOR) {
        char images[sizeof(opts.state_dir) + 16];
        snprintf(images, sizeof(images), "%s/images", opts.state_dir);
        struct doctor_env env = {.state_dir = opts.state_dir,
                                 .images_dir = opts.images_dir[0] ? opts.images_dir : images};
        cJSON *checks;
        enum doctor_status worst;
        if (doctor_run(&env, &checks, &worst) < 0)
            return 1;
        daemon_doctor_store(&opts, checks, &worst);
        checks_print(checks, stdout);
        cJSON_Delete(checks);
        return worst == DOCTOR_FAILING ? 1 : 0;
    }
    if (action == OPTIONS_CHECK_CONFIG)
        return check_config(&opts);
    log_set_level(opts.log_level);
    /* A log reader that went away (a pipe into a logger that died) or a peer that closed a
     * socket costs a write its EPIPE, never the daemon its life. The shim server ignores it too,
     * and a container's pid 1 restores every signal's default before its runtime starts. */
    signal(SIGPIPE, SIG_IGN);
    if (daemon_new(&opts, &d, &err) < 0) {
        fprintf(stderr, "ignisd: %s\n", err.message);
        return 1;
    }
    int r = daemon_run(d);
    daemon_free(d);
    log_info("ignisd stopped");
    return r < 0 ? 1 : 0;
}
