/* CloudEvents 1.0: parsing an HTTP request in binary, structured or batched content mode
 * (HTTP protocol binding 1.0.2), validation of the attributes (spec.md), rendering an event in the
 * JSON event format (json-format.md), and subscription matching. Pure: no I/O, no clock.
 *
 * Errors: -EINVAL for a malformed or incomplete event (an API reply of 400), -EOPNOTSUPP for a
 * CloudEvents event format other than JSON (415), -E2BIG for a batch or an attribute past the
 * limits below (413). The ig_error message names the attribute, the header it came from in binary
 * mode, and the event's index in a batch. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/* Limits a sender can reach. The spec asks consumers to accept events of 64 KiB (spec.md "Size
 * Limits"); the body size itself is bounded by the caller. */
#define CE_BATCH_MAX      1000 /* events in one batched request */
#define CE_VALUE_MAX      4096 /* bytes in one attribute value, after decoding */
#define CE_NAME_MAX       64   /* bytes in an attribute name (the spec recommends <= 20) */
#define CE_EXTENSIONS_MAX 64   /* extension attributes on one event */

enum ce_mode {
    CE_MODE_BINARY,
    CE_MODE_STRUCTURED,
    CE_MODE_BATCH,
};

/* How the event's data is held, which decides how it is rendered in the JSON format
 * (json-format.md section 3.1). */
enum ce_data_kind {
    CE_DATA_NONE,   /* no data */
    CE_DATA_JSON,   /* data is JSON text, embedded as a JSON value ("data": {...}) */
    CE_DATA_TEXT,   /* data is a UTF-8 string, rendered as "data": "..." */
    CE_DATA_BINARY, /* data is bytes, rendered as "data_base64" */
};

/* An extension's type as the JSON format carries it; binary-mode headers are always strings. */
enum ce_ext_type {
    CE_EXT_STRING,
    CE_EXT_INTEGER,
    CE_EXT_BOOLEAN,
};

struct ce_extension {
    char *name;  /* [a-z0-9]+ */
    char *value; /* canonical string form: "5", "true", "text" */
    enum ce_ext_type type;
};

struct ce_event {
    /* Required (spec.md "REQUIRED Attributes"). */
    char *id;
    char *source;
    char *specversion; /* always "1.0" once parsed */
    char *type;
    /* Optional: NULL when absent. */
    char *datacontenttype;
    char *dataschema;
    char *subject;
    char *time;
    /* In the order they arrived. */
    struct ce_extension *extensions;
    size_t n_extensions;

    enum ce_data_kind data_kind;
    char *data; /* data_len bytes, followed by a NUL that is not part of the data */
    size_t data_len;
};

struct ce_events {
    enum ce_mode mode;
    size_t n;
    struct ce_event **v;
};

/* One HTTP request header, as the server saw it (name in any case, value with or without
 * surrounding whitespace). */
struct ce_header {
    const char *name;
    const char *value;
};

void ce_event_free(struct ce_event *e);
void ce_events_free(struct ce_events *events);
static inline void ce_event_freep(struct ce_event **e)
{
    ce_event_free(*e);
}
static inline void ce_events_freep(struct ce_events **e)
{
    ce_events_free(*e);
}
#define _cleanup_ce_event_  _cleanup_(ce_event_freep)
#define _cleanup_ce_events_ _cleanup_(ce_events_freep)

/* Parses the CloudEvents carried by an HTTP request: the mode comes from Content-Type (binding
 * section 3), binary mode reads the ce- headers and takes the body as data. An empty batch is
 * valid and yields zero events. Returns 0 or -errno (see above). */
int ce_parse_http(const struct ce_header *headers, size_t n_headers, const void *body,
                  size_t body_len, struct ce_events **ret, struct ig_error *err);

/* Parses one event in the JSON event format (a structured-mode body). */
int ce_parse_json(const void *text, size_t len, struct ce_event **ret, struct ig_error *err);

/* Checks an event against spec.md: required attributes present and non-empty, specversion "1.0",
 * value types (URI-reference, URI, RFC 2046 media type, RFC 3339 timestamp, String characters),
 * extension names, limits. Parsing calls it; the controller calls it on events it builds. */
int ce_event_validate(const struct ce_event *e, struct ig_error *err);

/* Renders the event in the JSON event format, what a subscribed function receives. JSON data is
 * embedded verbatim (so numbers keep their precision), text as a string, bytes as data_base64.
 * Returns a NUL-terminated string in *ret (length in *ret_len when not NULL), or -ENOMEM. */
int ce_event_to_json(const struct ce_event *e, char **ret, size_t *ret_len);

/* Sets the data of an event whose datacontenttype is already set (or NULL), as binary mode takes
 * a body (binding 3.1): JSON when the content type declares JSON (it must parse), text when it is
 * a text type and the bytes are UTF-8, bytes otherwise; no data when len is 0. Returns 0, -EINVAL
 * (data declared JSON that is not) or -ENOMEM. */
int ce_event_set_data(struct ce_event *e, const void *data, size_t len, struct ig_error *err);

/* Returns the extension's value, or NULL. */
const struct ce_extension *ce_event_extension(const struct ce_event *e, const char *name);
/* Sets (adds or replaces) an extension, for the attributes the controller stamps (a hop count).
 * Returns 0, -EINVAL for an invalid name or value, -E2BIG past CE_EXTENSIONS_MAX, -ENOMEM. */
int ce_event_set_extension(struct ce_event *e, const char *name, const char *value,
                           enum ce_ext_type type, struct ig_error *err);

/* Whether an RFC 3339 timestamp is valid (section 5.6, "date-time"); with ret_epoch_us, also its
 * instant in microseconds since the epoch (fractions past microseconds truncated). */
bool ce_time_parse(const char *s, int64_t *ret_epoch_us);
/* Formats an instant as RFC 3339 in UTC with microseconds: "2026-11-28T04:00:00.000001Z". */
void ce_time_format(int64_t epoch_us, char ret[32]);

/* Whether a content type declares JSON-formatted data: subtype "json" or a "+json" suffix, with
 * parameters ignored (json-format.md section 3.1.1). NULL counts as application/json. */
bool ce_content_type_is_json(const char *content_type);

/* Subscription matching for a manifest's `events: [{type, source?}]`: type_pattern is an exact
 * type, or a prefix ending in ".*" that matches any type beginning with the part before the "*"
 * ("com.example.order.*" matches "com.example.order.created", not "com.example.orders" nor
 * "com.example.order"); a lone "*" matches every type. source, when not NULL, must equal the
 * event's source exactly. */
bool ce_subscription_matches(const char *type_pattern, const char *source,
                             const struct ce_event *e);
/* Whether a type pattern is acceptable in a manifest (non-empty, "*" only as a final ".*" or
 * alone). */
bool ce_type_pattern_valid(const char *type_pattern);
