/* GET /metrics (docs/operations.md): the Prometheus text format 0.0.4 (base/metrics.c writes
 * it), computed at scrape time from dispatch's live state (dispatch_fn_stats,
 * dispatch_host_stats) and telemetry's counters. */
#pragma once

#include "base/http.h"

struct dispatch;
struct forwarder;
struct journal;

/* The whole scrape (j: the store's journal, whose counts it gives; NULL: none; fw: the
 * forwards', NULL: none; host_id: this host's, for ignis_host_info). Returns 0 and the text
 * (malloc'd), or -ENOMEM. */
int api_metrics_render(struct dispatch *d, struct journal *j, const struct forwarder *fw,
                       const char *host_id, uint64_t started_usec, char **ret_text,
                       size_t *ret_len);
/* The route; userdata: the struct api. */
void api_get_metrics(struct http_request *req, void *userdata);
