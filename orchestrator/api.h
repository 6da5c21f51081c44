/* The HTTP API's routes (docs/api.md). */
#pragma once

#include <stddef.h>

#include "http.h"

extern const struct http_route api_routes[];
extern const size_t api_nroutes;
