/* The series routes (docs/api.md "Series"): the last 15 minutes of each function, one sample a
 * second, for the console's charts and for scripts. userdata is the struct api. */
#pragma once

#include "base/http.h"

/* GET /v1/functions/{name}/series?since=&step= */
void api_get_function_series(struct http_request *req, void *userdata);
/* GET /v1/series?step=: every function's, the few columns the overview's sparklines draw. */
void api_get_series_summary(struct http_request *req, void *userdata);
