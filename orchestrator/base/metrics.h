/* Prometheus text exposition format 0.0.4: a writer that keeps each family's samples together
 * under one TYPE line, escapes label values, and renders histograms with cumulative buckets and
 * a +Inf bucket equal to _count (promtool does not check that last part, so we make it true by
 * construction). Pure: no I/O. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics_buf {
    char *data;
    size_t len, cap;
    bool oom;
    char family[128]; /* the family being written */
    enum metric_type type;
};

/* A histogram's state: per-bucket counts (not cumulative) for the upper bounds given, plus sum
 * and count. bounds must be increasing and must not include +Inf (always added). */
struct metrics_histogram {
    const double *bounds;
    size_t nbounds;
    uint64_t *counts; /* nbounds + 1 entries; the last is the +Inf bucket */
    double sum;
    uint64_t count;
};

/* Latency buckets in seconds, from 100 µs to 60 s. */
extern const double metrics_latency_bounds[];
extern const size_t metrics_latency_nbounds;

int metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds);
void metrics_histogram_done(struct metrics_histogram *h);
void metrics_histogram_observe(struct metrics_histogram *h, double v);

/* Starts a family: "# HELP" and "# TYPE" lines. A counter's name must end in _total (format
 * 0.0.4 names the sample as written in TYPE). */
void metrics_family(struct metrics_buf *b, const char *name, enum metric_type type,
                    const char *help);
/* One sample of the current family. labels: NULL-terminated alternating key, value (values
 * escaped here), or NULL. */
void metrics_sample(struct metrics_buf *b, const char *const *labels, double value);
/* The current family's histogram series with these labels. */
void metrics_histogram(struct metrics_buf *b, const char *const *labels,
                       const struct metrics_histogram *h);

/* Takes the text (NUL-terminated); NULL if memory ran out at any point. */
char *metrics_take(struct metrics_buf *b, size_t *ret_len);
void metrics_buf_done(struct metrics_buf *b);
