#include "base/metrics.h"

#include <math.h>
#include <string.h>

const double metrics_latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                         1,      2.5,     5,      10,    30,     60};
const size_t metrics_latency_nbounds = ARRAY_SIZE(metrics_latency_bounds);

int metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->counts = calloc(nbounds + 1, sizeof(*h->counts));
    if (!h->counts)
        return -ENOMEM;
    h->bounds = bounds;
    h->nbounds = nbounds;
    return 0;
}

void metrics_histogram_done(struct metrics_histogram *h)
{
    free(h->counts);
    h->counts = NULL;
}

void metrics_histogram_observe(struct metrics_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static void append(struct metrics_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (grow_buffer(&b->data, &b->cap, b->len + n + 1) < 0) {
        b->oom = true;
        return;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void appends(struct metrics_buf *b, const char *s)
{
    append(b, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also the double quote (0.0.4). */
static void append_escaped(struct metrics_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            appends(b, "\\\\");
        else if (*s == '\n')
            appends(b, "\\n");
        else if (quote && *s == '"')
            appends(b, "\\\"");
        else
            append(b, s, 1);
    }
}

/* The shortest of %.15g / %.17g that reads back as the same double. */
static void format_double(char *buf, size_t size, double v)
{
    snprintf(buf, size, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, size, "%.17g", v);
}

static void append_value(struct metrics_buf *b, double v)
{
    char num[64];
    if (isnan(v))
        snprintf(num, sizeof(num), "NaN");
    else if (isinf(v))
        snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 9.007199254740992e15)
        snprintf(num, sizeof(num), "%lld", (long long)v);
    else
        format_double(num, sizeof(num), v);
    appends(b, num);
}

void metrics_family(struct metrics_buf *b, const char *name, enum metric_type type,
                    const char *help)
{
    static const char *const names[] = {"counter", "gauge", "histogram"};
    snprintf(b->family, sizeof(b->family), "%s", name);
    b->type = type;
    appends(b, "# HELP ");
    appends(b, name);
    appends(b, " ");
    append_escaped(b, help, false);
    appends(b, "\n# TYPE ");
    appends(b, name);
    appends(b, " ");
    appends(b, names[type]);
    appends(b, "\n");
}

static void append_labels(struct metrics_buf *b, const char *const *labels, const char *extra_key,
                          const char *extra_value)
{
    bool any = (labels && labels[0]) || extra_key;
    if (!any)
        return;
    appends(b, "{");
    bool first = true;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (!first)
            appends(b, ",");
        first = false;
        appends(b, labels[i]);
        appends(b, "=\"");
        append_escaped(b, labels[i + 1] ? labels[i + 1] : "", true);
        appends(b, "\"");
    }
    if (extra_key) {
        if (!first)
            appends(b, ",");
        appends(b, extra_key);
        appends(b, "=\"");
        appends(b, extra_value);
        appends(b, "\"");
    }
    appends(b, "}");
}

void metrics_sample(struct metrics_buf *b, const char *const *labels, double value)
{
    appends(b, b->family);
    append_labels(b, labels, NULL, NULL);
    appends(b, " ");
    append_value(b, value);
    appends(b, "\n");
}

void metrics_histogram(struct metrics_buf *b, const char *const *labels,
                       const struct metrics_histogram *h)
{
    uint64_t cumulative = 0;
    char le[64];
    for (size_t i = 0; i <= h->nbounds; i++) {
        cumulative += h->counts[i];
        if (i < h->nbounds)
            format_double(le, sizeof(le), h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        appends(b, b->family);
        appends(b, "_bucket");
        append_labels(b, labels, "le", le);
        appends(b, " ");
        append_value(b, (double)cumulative);
        appends(b, "\n");
    }
    appends(b, b->family);
    appends(b, "_sum");
    append_labels(b, labels, NULL, NULL);
    appends(b, " ");
    append_value(b, h->sum);
    appends(b, "\n");
    appends(b, b->family);
    appends(b, "_count");
    append_labels(b, labels, NULL, NULL);
    appends(b, " ");
    append_value(b, (double)h->count);
    appends(b, "\n");
}

char *metrics_take(struct metrics_buf *b, size_t *ret_len)
{
    if (b->oom || !b->data) {
        metrics_buf_done(b);
        return b->oom ? NULL : strdup("");
    }
    char *d = TAKE_PTR(b->data);
    if (ret_len)
        *ret_len = b->len;
    b->len = b->cap = 0;
    return d;
}

void metrics_buf_done(struct metrics_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}
