/* libcurl's multi interface on the event loop: its sockets are loop fds and its timeout a loop
 * timer, so transfers run alongside everything else on the loop thread without a thread of
 * their own (the sinks' deliveries, forwarded invocations). */
#pragma once

#include <curl/curl.h>

#include "base/loop.h"
#include "base/util.h"

struct curl_loop;

/* Called on the loop thread when a transfer ended (code: how), after it was taken off the multi
 * handle: the callee owns easy again (curl_easy_cleanup it). Its own state is easy's
 * CURLOPT_PRIVATE. */
typedef void (*curl_loop_done_fn)(CURL *easy, CURLcode code, void *userdata);

int curl_loop_new(struct loop *l, curl_loop_done_fn done, void *userdata, struct curl_loop **ret,
                  struct ig_error *err);
/* Frees, once every transfer ended or was removed (curl_loop_remove). Accepts NULL. */
void curl_loop_free(struct curl_loop *c);
/* Starts a transfer: 0, or -EIO when libcurl refuses it (easy stays the caller's). */
int curl_loop_add(struct curl_loop *c, CURL *easy);
/* Stops a transfer that has not ended (done is not called for it); easy is the caller's again. */
void curl_loop_remove(struct curl_loop *c, CURL *easy);
