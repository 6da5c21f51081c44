/* The token routes (docs/api.md "Tokens"); userdata is the struct api. */
#pragma once

#include "base/http.h"

void api_post_token(struct http_request *req, void *userdata);
void api_get_tokens(struct http_request *req, void *userdata);
void api_delete_token(struct http_request *req, void *userdata);
