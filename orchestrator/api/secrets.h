/* The routes of a function's secrets (docs/api.md "Secrets"): set, list (names only), remove.
 * The values are kept by functions/secrets.c; none is ever in a reply or an audit line. */
#pragma once

#include "base/http.h"

void api_secret_put(struct http_request *req, void *userdata);
void api_secrets_list(struct http_request *req, void *userdata);
void api_secret_delete(struct http_request *req, void *userdata);
