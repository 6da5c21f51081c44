/* An HTTP client for the Ignis API on libcurl, used by the ignis CLI and the integration tests,
 * so tests speak to the daemon exactly as users do. */
#pragma once

#include "base/util.h"

struct client;

struct client_response {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers; /* raw "Name: value\r\n" lines of the final response */
};

/* base_url: "http://127.0.0.1:8080" or "https://..." (no trailing slash needed). The token
 * sent as "Authorization: Bearer" is $IGNIS_TOKEN and the CA bundle that verifies an HTTPS
 * server is $IGNIS_CACERT (else the system's store), until set below: the tests and scripts that
 * export them need nothing else. */
int client_new(const char *base_url, struct client **ret);
/* A client of another server (base_url) with like's token, CA file and timeout: a request to a
 * peer of like's server, as the same caller. */
int client_new_like(const struct client *like, const char *base_url, struct client **ret);
/* The bearer token (NULL: none); the CA file for HTTPS (NULL: the system store). Copied. */
int client_set_token(struct client *c, const char *token);
int client_set_cacert(struct client *c, const char *path);
void client_free(struct client *c);
const char *client_base_url(const struct client *c);
/* Gives up on a request after ms milliseconds (0: never, the default). */
void client_set_timeout(struct client *c, long ms);

/* headers: NULL-terminated "Name: value" strings or NULL. On a transport failure (cannot
 * connect, timeout) returns -errno with err naming the server and the reason. */
int client_request(struct client *c, const char *method, const char *path,
                   const char *const *headers, const void *body, size_t len,
                   struct client_response *ret, struct ig_error *err);
void client_response_clear(struct client_response *r);
/* GET path, handing the body to on_data as it arrives (a reply that may never end, such as
 * logs with follow=true); on_data returns false to stop. A reply that is not 2xx is collected
 * into ret instead (its status and body, for the error), as is the status of a good one. */
int client_stream(struct client *c, const char *path,
                  bool (*on_data)(const char *p, size_t n, void *userdata), void *userdata,
                  struct client_response *ret, struct ig_error *err);
/* The value of a response header (case-insensitive name), copied into buf; NULL if absent. */
const char *client_response_header(const struct client_response *r, const char *name, char *buf,
                                   size_t size);
