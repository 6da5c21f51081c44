#include "api/series.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "dispatch/dispatch.h"
#include "records/series.h"

/* The longest step a reply aggregates: the whole ring. */
#define SERIES_MAX_STEP SERIES_SECONDS

typedef double (*sample_value)(const struct series_sample *x);

static double v_queued(const struct series_sample *x)
{
    return x->queued;
}
static double v_ready(const struct series_sample *x)
{
    return x->ready;
}
static double v_busy(const struct series_sample *x)
{
    return x->busy;
}
static double v_spawning(const struct series_sample *x)
{
    return x->spawning;
}
static double v_desired(const struct series_sample *x)
{
    return x->desired;
}
static double v_containers(const struct series_sample *x)
{
    return (double)x->ready + x->busy + x->spawning;
}
static double v_invocations(const struct series_sample *x)
{
    return x->invocations;
}
static double v_errors(const struct series_sample *x)
{
    return x->errors;
}
static double v_cold(const struct series_sample *x)
{
    return x->cold_starts;
}
static double v_p50(const struct series_sample *x)
{
    return (double)x->p50_us / 1000;
}
static double v_p99(const struct series_sample *x)
{
    return (double)x->p99_us / 1000;
}
static double v_cpu(const struct series_sample *x)
{
    return x->cpu_ms;
}
static double v_billed(const struct series_sample *x)
{
    return x->billed_ms;
}
static double v_setup(const struct series_sample *x)
{
    return x->cold_setup_ms;
}
static double v_init(const struct series_sample *x)
{
    return x->cold_init_ms;
}

/* A column of the reply. Over a step of several seconds a rate is the mean per second, a gauge or
 * a latency the highest. */
struct column {
    const char *name;
    sample_value get;
    bool rate;
};

static const struct column all_columns[] = {
    {"queued", v_queued, false},       {"ready", v_ready, false},
    {"busy", v_busy, false},           {"spawning", v_spawning, false},
    {"desired", v_desired, false},     {"invocations", v_invocations, true},
    {"errors", v_errors, true},        {"cold_starts", v_cold, true},
    {"cold_setup_ms", v_setup, false}, {"cold_init_ms", v_init, false},
    {"p50_ms", v_p50, false},          {"p99_ms", v_p99, false},
    {"cpu_ms", v_cpu, true},           {"billed_ms", v_billed, true},
};

static const struct column summary_columns[] = {
    {"invocations", v_invocations, true}, {"p99_ms", v_p99, false},
    {"cold_starts", v_cold, true},        {"containers", v_containers, false},
    {"queued", v_queued, false},          {"errors", v_errors, true},
};

static double round2(double v)
{
    return (double)(long long)(v * 100 + 0.5) / 100;
}

/* Adds "t" (each point's last second) and the columns to o, over the samples newer than since,
 * step seconds a point (points aligned to multiples of step). A rate is averaged over the
 * seconds a point has: the newest point, and one cut by since, have fewer than step. */
static void add_columns(cJSON *o, const struct series_fn *f, long long since, unsigned step,
                        const struct column *cols, size_t ncols)
{
    cJSON *t = cJSON_AddArrayToObject(o, "t");
    cJSON *arr[ARRAY_SIZE(all_columns)];
    for (size_t c = 0; c < ncols; c++)
        arr[c] = cJSON_AddArrayToObject(o, cols[c].name);
    size_t n = f ? series_count(f) : 0;
    size_t i = 0;
    while (i < n && (long long)series_at(f, i)->at_s <= since)
        i++;
    while (i < n) {
        uint32_t bucket = series_at(f, i)->at_s / step;
        double acc[ARRAY_SIZE(all_columns)] = {};
        uint32_t last = 0, seconds = 0;
        for (; i < n && series_at(f, i)->at_s / step == bucket; i++) {
            const struct series_sample *x = series_at(f, i);
            last = x->at_s;
            seconds++;
            for (size_t c = 0; c < ncols; c++) {
                double v = cols[c].get(x);
                acc[c] = cols[c].rate ? acc[c] + v : (v > acc[c] ? v : acc[c]);
            }
        }
        cJSON_AddItemToArray(t, cJSON_CreateNumber(last));
        for (size_t c = 0; c < ncols; c++)
            cJSON_AddItemToArray(
                arr[c], cJSON_CreateNumber(round2(cols[c].rate ? acc[c] / seconds : acc[c])));
    }
}

/* since= and step= (docs/api.md): false after replying 400. */
static bool parse_query(struct http_request *req, long long *ret_since, unsigned *ret_step,
                        unsigned step_default)
{
    const char *since = http_request_query(req, "since"), *step = http_request_query(req, "step");
    unsigned long since_s = 0, step_s = step_default;
    if (since && parse_count(since, 0, LLONG_MAX, &since_s) < 0) {
        http_reply_error(req, 400, "bad_request", "since must be seconds since the epoch");
        return false;
    }
    if (step && parse_count(step, 1, SERIES_MAX_STEP, &step_s) < 0) {
        http_reply_error(req, 400, "bad_request", "step must be 1 to %u seconds", SERIES_MAX_STEP);
        return false;
    }
    *ret_since = (long long)since_s;
    *ret_step = (unsigned)step_s;
    return true;
}

void api_get_function_series(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    const char *name = http_request_param(req, 0);
    struct fn_state *fn = dispatch_function(a->dispatch, name);
    if (!fn || !a->series) {
        http_reply_error(req, 404, "not_found", "no function named '%s'", name);
        return;
    }
    long long since;
    unsigned step;
    if (!parse_query(req, &since, &step, 1))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", name);
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddNumberToObject(o, "seconds", SERIES_SECONDS);
    add_columns(o, series_find(a->series, name), since, step, all_columns, ARRAY_SIZE(all_columns));
    http_reply_json(req, 200, o);
}

void api_get_series_summary(struct http_request *req, void *userdata)
{
    struct api *a = userdata;
    long long since;
    unsigned step;
    if (!parse_query(req, &since, &step, 10))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddNumberToObject(o, "seconds", SERIES_SECONDS);
    cJSON *fns = cJSON_AddArrayToObject(o, "functions");
    for (struct fn_state *fn = dispatch_functions(a->dispatch); fn; fn = dispatch_next(fn)) {
        cJSON *one = cJSON_CreateObject();
        cJSON_AddStringToObject(one, "name", dispatch_fn_name(fn));
        add_columns(one, a->series ? series_find(a->series, dispatch_fn_name(fn)) : NULL, since,
                    step, summary_columns, ARRAY_SIZE(summary_columns));
        cJSON_AddItemToArray(fns, one);
    }
    http_reply_json(req, 200, o);
}
