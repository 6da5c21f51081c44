/* The operators' console (docs/operations.md "The console"): static files embedded at build time
 * (scripts/embed-gen.c) and served under /ui/ with a strict Content-Security-Policy; the page
 * itself reads the JSON API with the token the operator signs in with. userdata is the struct
 * api. */
#pragma once

#include <stddef.h>

#include "base/embed.h"
#include "base/http.h"

/* Each served as /ui/NAME, every one with a content type (embedded with --typed). */
extern const struct embed_file ui_assets[];
extern const size_t ui_assets_count;

/* The headers every console reply carries: the policy (no inline script or style, nothing from
 * elsewhere, no framing), nosniff, no referrer. */
#define UI_CSP                                                                                     \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

/* GET /ui/: the page. */
void api_get_ui_index(struct http_request *req, void *userdata);
/* GET /ui/{file}: a script, a style sheet; 404 for anything else. */
void api_get_ui_asset(struct http_request *req, void *userdata);
/* GET /ui: 308 to /ui/. */
void api_get_ui_redirect(struct http_request *req, void *userdata);
/* GET /v1/whoami: the caller's token id, name and role, so the page shows what the role may
 * see. */
void api_get_whoami(struct http_request *req, void *userdata);
