/* Sinks: a function's final outcome forwarded as a CloudEvent (HTTP binding 1.0.2, binary mode)
 * to the URL its manifest names (docs/api.md "Sinks").
 *
 * Deliveries are libcurl multi transfers driven from the event loop's epoll (the transfers'
 * sockets are loop fds, curl's timeout a loop timer), so a slow or unreachable sink never holds
 * up the loop. Each delivery is a row of sink_deliveries, written through the journal when the
 * outcome is known and after every attempt; a failed attempt is retried with exponential
 * backoff up to the manifest's sink.retries; deliveries still pending at a restart resume. */
#pragma once

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sys/socket.h>

#include "records/journal.h"
#include "records/store.h"
#include "base/loop.h"
#include "functions/manifest.h"

#define SINK_TYPE_RESULT "dev.ignis.function.result"
#define SINK_TYPE_ERROR  "dev.ignis.function.error"

struct sinks;

struct sink_options {
    uint64_t retry_base_ms, retry_cap_ms; /* backoff: doubles from base to cap (500 ms, 5 min) */
    uint64_t attempt_timeout_ms;          /* one attempt, connecting included (10 s) */
    size_t max_active;                    /* transfers at once; more wait their turn (64) */
    int64_t retention_us;                 /* final rows are kept this long (24 h) */
    bool allow_loopback;                  /* connect to loopback addresses (false) */
};

void sink_options_defaults(struct sink_options *o);

/* Loads the deliveries left pending by the last run and starts them. */
int sinks_new(struct loop *l, struct store *store, struct journal *j, const struct sink_options *o,
              struct sinks **ret, struct ig_error *err);
/* Stops every transfer; pending deliveries stay in the store for the next start. Accepts NULL;
 * call while the journal is still open. */
void sinks_free(struct sinks *s);
/* Deletes finished deliveries past their retention (a retention_fn, retention.h; userdata: the
 * sinks). */
void sinks_purge(void *userdata, int64_t now_us);

/* One final outcome of invocation id of function fn. ok: the result (body, content_type as the
 * runtime gave them); else the error, sent as JSON {"type", "message"}. Does nothing when the
 * manifest has no sink or its `on` does not take this outcome. */
void sinks_submit(struct sinks *s, const char *fn, const struct manifest_sink *sink, const char *id,
                  bool ok, const char *body, size_t len, const char *content_type,
                  const char *error_type, const char *error_message);

/* Adds "sink": {url, type, status, attempts, ...} to an invocation's record when it has a
 * delivery (read from the store: a delivery of an earlier run too). Accepts a NULL s. */
void sinks_describe(struct sinks *s, const char *id, cJSON *record);

/* Whether a delivery may connect to addr (pure). Never to a link-local address (169.254.0.0/16,
 * where clouds serve instance metadata, or fe80::/10) or an unspecified one (0.0.0.0/8, ::,
 * which reach the host itself); to loopback (127.0.0.0/8, ::1) only with allow_loopback.
 * IPv4-mapped IPv6 addresses are judged as the IPv4 address. Else NULL, or what the address is
 * ("loopback", "link-local", "unspecified"). */
const char *sink_address_refused(const struct sockaddr *addr, bool allow_loopback);

/* The request headers of one delivery (pure): ce-specversion, ce-type, ce-source
 * (/ignis/functions/FN), ce-id, ce-time, and Content-Type (removed when NULL, so that libcurl
 * adds none: an event without datacontenttype). NULL without memory. */
struct curl_slist *sink_event_headers(const char *fn, const char *id, const char *type,
                                      const char *time, const char *content_type);
