/* ignisd's options: command line and config file (same keys), pure parsing, no I/O beyond
 * reading the config file. */
#pragma once

#include "base/log.h"
#include "base/util.h"

struct ignisd_options {
    char listen_host[256];
    uint16_t listen_port;
    char state_dir[4096];
    char config[4096];     /* empty when none */
    char images_dir[4096]; /* empty: STATE_DIR/images */
    /* The store: empty for SQLite's STATE_DIR/ignis.db, else a PostgreSQL URL or libpq conninfo
     * (db.h's db_open), never with a password in it (db_check_target). */
    char store[1024];
    /* This host in a cluster sharing a PostgreSQL store: its stable name (empty: made once and
     * kept in STATE_DIR/host-id, daemon_host_id) and the URL its peers reach it at (empty: made
     * from --listen, with the machine's name for a wildcard address). */
    char host_id[64];
    char advertise[512];
    /* A file of 32 random bytes (or 64 hex digits), mode 0600, the same on every host: with a
     * PostgreSQL store, secrets are shared through it sealed under this key (functions/secrets.h).
     * Empty: each host keeps its own. */
    char secrets_key[4096];
    /* A file of 32 random bytes the hosts of a PostgreSQL store share: they forward sync
     * invocations to each other signed with it (api/forward.h). Empty: no forwarding. */
    char cluster_key[4096];
    uint32_t queue_max;     /* per function */
    uint32_t keep_versions; /* versions kept per function, beside alias targets (default 10) */
    uint32_t usage_retention_days;        /* the usage ledger's rows (default 30) */
    uint32_t usage_rollup_retention_days; /* its per-minute rollups (default 400) */
    uint32_t audit_retention_days;        /* the audit log's rows (default 365) */
    enum log_level log_level;
    uint32_t event_dedupe_window_s; /* CloudEvents de-duplication on (source, id) (default 3600) */
    uint32_t event_hop_limit;     /* emitted-event chains longer than this are dead-lettered (16) */
    int32_t schedule_tz_offset_s; /* the zone schedules are read in, east of UTC (default 0) */
    /* Security (docs/security.md, docs/operations.md "TLS and tokens"). */
    char tls_cert[4096], tls_key[4096]; /* PEM files; both or neither: HTTPS */
    bool metrics_public;                /* GET /metrics without a token */
    bool python_templates;              /* python3 containers forked from templates (on) */
    bool sink_allow_loopback;           /* sinks may deliver to 127.0.0.0/8 and ::1 */
    double rate_limit;                  /* requests a second per token; 0: none */
    double rate_burst;                  /* the token bucket's size */
    uint32_t max_connections;           /* open HTTP connections in all */
    uint32_t max_connections_per_ip;    /* from one address; 0: no limit of its own */
    uint32_t connection_reserve;        /* kept for clients with a token (http.h); 0: none */
    uint32_t http_header_timeout_s;     /* to deliver a request's headers (default 10) */
    uint32_t http_idle_timeout_s;       /* without a byte mid-request (default 30) */
};

void options_defaults(struct ignisd_options *o);

/* What the store opens (store_open, journal_new): o->store, or STATE_DIR/ignis.db for SQLite. */
void options_store_target(const struct ignisd_options *o, char *buf, size_t size);

/* A host id: 1-63 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool options_valid_host_id(const char *id);

/* Sets one option from its key (the long option's name without dashes, '-' or '_' alike). */
int options_set(struct ignisd_options *o, const char *key, const char *value, struct ig_error *err);

/* Applies a config file: "key = value" lines, '#' comments, blank lines. An unknown key or a bad
 * value fails with a message naming the file, line and key. */
int options_load_config(struct ignisd_options *o, const char *path, struct ig_error *err);

enum options_action {
    OPTIONS_RUN,
    OPTIONS_HELP,
    OPTIONS_VERSION,
    OPTIONS_CHECK_CONFIG,
    OPTIONS_DOCTOR,
};

/* Parses argv. Options given on the command line win over the config file, which is read first
 * when --config names one. Returns 0 with *ret_action set, or -errno with err set. */
int options_parse(struct ignisd_options *o, int argc, char **argv, enum options_action *ret_action,
                  struct ig_error *err);

extern const char options_usage[];
