/* The sampler: once a second, every function's live state (dispatch_fn_stats) and telemetry
 * counters go into the series (records/series.h) behind the console's charts and
 * GET /v1/functions/{name}/series. A deleted function's ring goes at the next tick. Loop thread
 * only; the daemon makes it. */
#pragma once

#include <stdint.h>

struct dispatch;
struct loop;
struct sampler;
struct series;

/* Starts sampling d into s every second on l (the first tick a second from now). */
int sampler_new(struct loop *l, struct dispatch *d, struct series *s, struct sampler **ret);
void sampler_free(struct sampler *s);
/* One tick, for wall second now_s (what the timer calls; tests call it directly). */
void sampler_tick(struct sampler *s, uint32_t now_s);
