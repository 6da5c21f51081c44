/* The hosts using the store (#17): GET /v1/hosts, and what this host tells of itself. */
#pragma once

#include "base/http.h"
#include "records/hosts_store.h"

struct api;

/* This host's figures now: its containers and memory (dispatch), the attempts it ended per
 * second over the last HOSTS_RATE_SECONDS (the series). What its heartbeat writes, and what
 * GET /v1/hosts shows of it. */
#define HOSTS_RATE_SECONDS 5
void api_host_figures(const struct api *a, struct host_figures *ret);

/* GET /v1/hosts: every host of the store, by host id, "live" while its heartbeat is younger than
 * HOSTS_GONE_AFTER_US, else "gone", with its figures as of that heartbeat (this host's: now).
 * docs/api.md "Hosts". */
void api_get_hosts(struct http_request *req, void *userdata);

/* POST /v1/hosts/{id}/drain: the host stops as on SIGTERM (no new work, what runs finishes, what
 * it holds and has not started goes back to the shared queue), whichever host is asked: this
 * one at once, another through the store's notification. 202 {"host_id", "state": "draining"};
 * 404 unknown_host; 409 host_gone for a host not live. docs/api.md "POST /v1/hosts/{id}/drain". */
void api_post_host_drain(struct http_request *req, void *userdata);

/* DELETE /v1/hosts/{id}: a gone host's row goes from the hosts table (a host retired for good:
 * listed as gone until then); one that starts again registers anew. 200 {"host_id", "state":
 * "forgotten"}; 404 unknown_host; 409 host_live for a live host (this one too).
 * docs/api.md "DELETE /v1/hosts/{id}". */
void api_delete_host(struct http_request *req, void *userdata);
