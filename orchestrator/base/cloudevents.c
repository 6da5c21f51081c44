/* CloudEvents 1.0 over HTTP. The references are the CloudEvents 1.0.2 documents: spec.md (the
 * attributes and their types), bindings/http-protocol-binding.md ("binding" below) and
 * formats/json-format.md ("JSON format"). */
#include "base/cloudevents.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

static void cjson_deletep(cJSON **j)
{
    cJSON_Delete(*j);
}
#define _cleanup_cjson_ _cleanup_(cjson_deletep)

static const char *const core_names[] = {
    "specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time",
};

static char **core_slot(struct ce_event *e, const char *name)
{
    char **slots[] = {&e->specversion,     &e->id,         &e->source,  &e->type,
                      &e->datacontenttype, &e->dataschema, &e->subject, &e->time};
    for (size_t i = 0; i < ARRAY_SIZE(core_names); i++)
        if (streq(core_names[i], name))
            return slots[i];
    return NULL;
}

static char *const *core_slot_const(const struct ce_event *e, const char *name)
{
    return core_slot((struct ce_event *)e, name);
}

void ce_event_free(struct ce_event *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(core_names); i++)
        free(*core_slot(e, core_names[i]));
    for (size_t i = 0; i < e->n_extensions; i++) {
        free(e->extensions[i].name);
        free(e->extensions[i].value);
    }
    free(e->extensions);
    free(e->data);
    free(e);
}

void ce_events_free(struct ce_events *events)
{
    if (!events)
        return;
    for (size_t i = 0; i < events->n; i++)
        ce_event_free(events->v[i]);
    free(events->v);
    free(events);
}

/* ---- Characters ---- */

/* Decodes one UTF-8 sequence (RFC 3629 section 4): returns its length, or 0 for an invalid,
 * overlong or truncated sequence, a surrogate, or a code point past U+10FFFF. The binding
 * (3.1.3.2) requires rejecting overlong forms such as %C0%A0. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
    uint32_t cp;
    size_t len;

    if (s[0] < 0x80) {
        *ret_cp = s[0];
        return 1;
    } else if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07;
    } else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *ret_cp = cp;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_next(p + i, n - i, &cp);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* What is wrong with a value as a CloudEvents String (spec.md "Type System"): not UTF-8, a
 * control character (U+0000-U+001F, U+007F-U+009F) or a noncharacter. NULL when it is fine. */
static const char *string_problem(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    uint32_t cp;

    for (size_t i = 0; i < n;) {
        size_t k = utf8_next(p + i, n - i, &cp);
        if (k == 0)
            return "is not valid UTF-8";
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return "holds a control character";
        if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
            return "holds a Unicode noncharacter";
        i += k;
    }
    return NULL;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* RFC 3986 section 4.1: a URI-reference is made of unreserved and reserved characters and
 * percent-encodings. The grammar's structure is not checked beyond that and, for an absolute URI
 * (section 4.3), a scheme. Characters beyond ASCII (already checked to be UTF-8) are let through,
 * as an IRI (RFC 3987) allows: senders put "/café" in source, and refusing it gains nothing;
 * the ASCII characters a URI cannot hold (space, '"', '<', '\\', '{', ...) are refused. */
static bool uri_chars_valid(const char *s)
{
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            continue;
        if (*p == '%') {
            if (!is_hex(p[1]) || !is_hex(p[2]))
                return false;
            p += 2;
            continue;
        }
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("-._~:/?#[]@!$&'()*+,;=", *p);
        if (!ok)
            return false;
    }
    return true;
}

static bool uri_absolute(const char *s)
{
    const char *p = s;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':' && uri_chars_valid(s);
}

/* The media type of a Content-Type value without its parameters and surrounding whitespace. */
static void media_type_span(const char *ct, const char **ret_start, size_t *ret_len)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    *ret_start = ct;
    *ret_len = n;
}

/* RFC 2046 / RFC 7231 section 3.1.1.1: type "/" subtype *( OWS ";" OWS parameter ). */
static bool media_type_valid(const char *ct)
{
    const char *p = ct;
    size_t n;

    for (n = 0; is_tchar(p[n]); n++)
        ;
    if (n == 0 || p[n] != '/')
        return false;
    p += n + 1;
    for (n = 0; is_tchar(p[n]); n++)
        ;
    if (n == 0)
        return false;
    p += n;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

bool ce_content_type_is_json(const char *content_type)
{
    const char *mt;
    size_t n;

    /* JSON format 3.1.1: "If the datacontenttype is unspecified, processing SHOULD proceed as if
     * [it] had been specified explicitly as application/json". */
    if (!content_type)
        return true;
    media_type_span(content_type, &mt, &n);
    const char *slash = memchr(mt, '/', n);
    if (!slash)
        return false;
    const char *sub = slash + 1;
    size_t sn = n - (size_t)(sub - mt);
    return (sn == 4 && strncasecmp(sub, "json", 4) == 0) ||
           (sn >= 5 && strncasecmp(sub + sn - 5, "+json", 5) == 0);
}

/* Types whose bytes are text, shown to a function as a string rather than base64. */
static bool content_type_is_text(const char *content_type)
{
    const char *mt;
    size_t n;

    media_type_span(content_type, &mt, &n);
    const char *slash = memchr(mt, '/', n);
    if (!slash)
        return false;
    const char *sub = slash + 1;
    size_t sn = n - (size_t)(sub - mt);
    return (slash - mt == 4 && strncasecmp(mt, "text", 4) == 0) ||
           (sn == 3 && strncasecmp(sub, "xml", 3) == 0) ||
           (sn >= 4 && strncasecmp(sub + sn - 4, "+xml", 4) == 0);
}

/* ---- Base64 (RFC 4648 section 4, the standard alphabet) ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const unsigned char *in, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* Decodes padded or unpadded base64; whitespace and the URL-safe alphabet are refused. Returns
 * 0, -EINVAL or -ENOMEM. The result is NUL-terminated (the NUL is not counted). */
static int base64_decode(const char *s, char **ret, size_t *ret_len)
{
    size_t n = strlen(s), pad = 0;

    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if ((pad > 0 && (n + pad) % 4 != 0) || n % 4 == 1)
        return -EINVAL;
    char *out = malloc(n / 4 * 3 + 3), *o = out;
    if (!out)
        return -ENOMEM;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *at = s[i] ? strchr(b64_alphabet, s[i]) : NULL;
        if (!at) {
            free(out);
            return -EINVAL;
        }
        acc = (acc << 6) | (uint32_t)(at - b64_alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (char)((acc >> bits) & 0xFF);
        }
    }
    *o = '\0';
    *ret_len = (size_t)(o - out);
    *ret = out;
    return 0;
}

/* ---- Timestamps (RFC 3339 section 5.6) ---- */

static bool digits(const char *s, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

bool ce_time_parse(const char *s, int64_t *ret_epoch_us)
{
    int y, mo, d, h, mi, sec, us = 0, off = 0;

    /* date-time = full-date "T" full-time; "T" and "Z" may be lower case (section 5.6 NOTE). */
    if (!s || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (unsigned)mo) || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        int n = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 6)
                us = us * 10 + (*p - '0');
        if (n == 0)
            return false;
        for (; n < 6; n++)
            us *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else
        return false;
    if (*p != '\0')
        return false;
    if (ret_epoch_us) {
        int64_t secs =
            days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
        *ret_epoch_us = secs * 1000000 + us;
    }
    return true;
}

void ce_time_format(int64_t epoch_us, char ret[32])
{
    int64_t secs = epoch_us >= 0 ? epoch_us / 1000000 : -((-epoch_us + 999999) / 1000000);
    int64_t us = epoch_us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400, y;
    unsigned m, d;

    civil_from_days(days, &y, &m, &d);
    snprintf(ret, 32, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ", (long long)y, m, d,
             (long long)(rem / 3600), (long long)(rem / 60 % 60), (long long)(rem % 60),
             (long long)us);
}

/* ---- Validation ---- */

_Static_assert(CE_NAME_MAX == 64, "name_problem() names the limit");

/* Why a name is not a valid attribute name (spec.md "Naming Conventions"), or NULL. */
static const char *name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "is empty";
    if (n > CE_NAME_MAX)
        return "is longer than 64 characters";
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
            return "is not made of lower-case letters a-z and digits 0-9 only";
    if (streq(name, "data"))
        return "is reserved for the event data";
    return NULL;
}

static void label(char buf[192], const char *name, bool binary)
{
    if (!binary)
        snprintf(buf, 192, "attribute '%s'", name);
    else if (streq(name, "datacontenttype"))
        snprintf(buf, 192, "attribute 'datacontenttype' (header Content-Type)");
    else
        snprintf(buf, 192, "attribute '%s' (header ce-%s)", name, name);
}

static bool integer_valid(const char *s)
{
    const char *p = s + (*s == '-');
    if (*p < '0' || *p > '9')
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9' || q - p > 11)
            return false;
    long long v = strtoll(s, NULL, 10);
    return v >= INT32_MIN && v <= INT32_MAX;
}

static int check_value(const char *name, const char *value, bool binary, struct ig_error *err)
{
    char what[192];
    const char *why;

    label(what, name, binary);
    if (strlen(value) > CE_VALUE_MAX)
        return ig_error_set(err, E2BIG, "%s is longer than %d bytes", what, CE_VALUE_MAX);
    if ((why = string_problem(value)))
        return ig_error_set(err, EINVAL, "%s %s", what, why);
    return 0;
}

static int validate(const struct ce_event *e, bool binary, struct ig_error *err)
{
    char what[192];
    int r;

    /* specversion first: an event of another version fails for that reason, not for an
     * attribute its version names differently. */
    label(what, "specversion", binary);
    if (e->specversion && e->specversion[0] && !streq(e->specversion, "1.0")) {
        if (strlen(e->specversion) > 16 || string_problem(e->specversion))
            return ig_error_set(err, EINVAL, "%s is not '1.0': only CloudEvents 1.0 is accepted",
                                what);
        return ig_error_set(err, EINVAL, "%s is '%s': only CloudEvents 1.0 is accepted", what,
                            e->specversion);
    }
    for (size_t i = 0; i < 4; i++) {
        const char *v = *core_slot_const(e, core_names[i]);
        label(what, core_names[i], binary);
        if (!v)
            return ig_error_set(err, EINVAL, "required %s is missing", what);
        if (!v[0])
            return ig_error_set(err, EINVAL, "required %s is empty", what);
    }
    for (size_t i = 0; i < ARRAY_SIZE(core_names); i++) {
        const char *v = *core_slot_const(e, core_names[i]);
        if (!v)
            continue;
        label(what, core_names[i], binary);
        if ((r = check_value(core_names[i], v, binary, err)) < 0)
            return r;
        if (i >= 4 && !v[0])
            return ig_error_set(err, EINVAL, "%s is empty (omit it instead)", what);
    }
    label(what, "source", binary);
    if (!uri_chars_valid(e->source))
        return ig_error_set(err, EINVAL, "%s is not a URI-reference (RFC 3986)", what);
    label(what, "dataschema", binary);
    if (e->dataschema && !uri_absolute(e->dataschema))
        return ig_error_set(err, EINVAL, "%s is not an absolute URI (RFC 3986)", what);
    label(what, "datacontenttype", binary);
    if (e->datacontenttype && !media_type_valid(e->datacontenttype))
        return ig_error_set(err, EINVAL, "%s is not a media type (RFC 2046)", what);
    label(what, "time", binary);
    if (e->time && !ce_time_parse(e->time, NULL))
        return ig_error_set(err, EINVAL, "%s is '%.40s', not an RFC 3339 timestamp", what, e->time);

    if (e->n_extensions > CE_EXTENSIONS_MAX)
        return ig_error_set(err, E2BIG, "the event has %zu extension attributes, more than %d",
                            e->n_extensions, CE_EXTENSIONS_MAX);
    for (size_t i = 0; i < e->n_extensions; i++) {
        const struct ce_extension *x = &e->extensions[i];
        const char *why = name_problem(x->name);
        if (why)
            return ig_error_set(err, EINVAL,
                                "attribute name '%.64s' %s (spec.md Naming Conventions)", x->name,
                                why);
        label(what, x->name, binary);
        if (core_slot_const(e, x->name))
            return ig_error_set(err, EINVAL, "%s is a core attribute, not an extension", what);
        for (size_t j = 0; j < i; j++)
            if (streq(e->extensions[j].name, x->name))
                return ig_error_set(err, EINVAL, "%s appears more than once", what);
        if ((r = check_value(x->name, x->value, binary, err)) < 0)
            return r;
        if (x->type == CE_EXT_INTEGER && !integer_valid(x->value))
            return ig_error_set(err, EINVAL, "%s is not a 32-bit Integer", what);
        if (x->type == CE_EXT_BOOLEAN && !streq(x->value, "true") && !streq(x->value, "false"))
            return ig_error_set(err, EINVAL, "%s is not a Boolean", what);
    }

    if (e->data_kind == CE_DATA_NONE ? e->data_len != 0 : !e->data)
        return ig_error_set(err, EINVAL, "data does not match its kind");
    if ((e->data_kind == CE_DATA_TEXT || e->data_kind == CE_DATA_JSON) &&
        (!utf8_valid(e->data, e->data_len) || memchr(e->data, '\0', e->data_len)))
        return ig_error_set(err, EINVAL, "data is not valid UTF-8 text");
    return 0;
}

int ce_event_validate(const struct ce_event *e, struct ig_error *err)
{
    return validate(e, false, err);
}

static int add_extension(struct ce_event *e, const char *name, const char *value,
                         enum ce_ext_type type)
{
    /* Bounded by the caller (a count check before parsing) and by validate(). */
    struct ce_extension *v = realloc(e->extensions, (e->n_extensions + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    e->extensions = v;
    char *n = strdup(name), *val = strdup(value);
    if (!n || !val) {
        free(n);
        free(val);
        return -ENOMEM;
    }
    v[e->n_extensions++] = (struct ce_extension){.name = n, .value = val, .type = type};
    return 0;
}

const struct ce_extension *ce_event_extension(const struct ce_event *e, const char *name)
{
    for (size_t i = 0; i < e->n_extensions; i++)
        if (streq(e->extensions[i].name, name))
            return &e->extensions[i];
    return NULL;
}

int ce_event_set_extension(struct ce_event *e, const char *name, const char *value,
                           enum ce_ext_type type, struct ig_error *err)
{
    const char *why = name_problem(name);
    int r;

    if (why)
        return ig_error_set(err, EINVAL, "attribute name '%.64s' %s", name, why);
    if (core_slot(e, name))
        return ig_error_set(err, EINVAL, "attribute '%s' is a core attribute", name);
    if ((r = check_value(name, value, false, err)) < 0)
        return r;
    if ((type == CE_EXT_INTEGER && !integer_valid(value)) ||
        (type == CE_EXT_BOOLEAN && !streq(value, "true") && !streq(value, "false")))
        return ig_error_set(err, EINVAL, "attribute '%s': '%.32s' does not match its type", name,
                            value);
    for (size_t i = 0; i < e->n_extensions; i++) {
        if (!streq(e->extensions[i].name, name))
            continue;
        char *v = strdup(value);
        if (!v)
            return ig_error_set(err, ENOMEM, "out of memory");
        free(e->extensions[i].value);
        e->extensions[i].value = v;
        e->extensions[i].type = type;
        return 0;
    }
    if (e->n_extensions >= CE_EXTENSIONS_MAX)
        return ig_error_set(err, E2BIG, "the event already has %d extension attributes",
                            CE_EXTENSIONS_MAX);
    if (add_extension(e, name, value, type) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    return 0;
}

static int set_data(struct ce_event *e, enum ce_data_kind kind, const void *data, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    free(e->data);
    e->data = copy;
    e->data_len = len;
    e->data_kind = kind;
    return 0;
}

/* ---- Locating raw JSON text ----
 * cJSON holds numbers as doubles, so printing a parsed value again can change it (2^53 + 1, or
 * 1.10 printed as 1.1). JSON data is therefore kept as the exact text the sender wrote: these
 * helpers find a member's text in a document cJSON has already accepted. */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                if (!(p = skip_string(p, end)))
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && !strchr(",}] \t\r\n", *p))
        p++;
    return p;
}

static bool key_equals(const char *quoted, size_t n, const char *key)
{
    if (!memchr(quoted, '\\', n))
        return n == strlen(key) + 2 && memcmp(quoted + 1, key, n - 2) == 0;
    /* An escaped key ("d\u0061ta"): let cJSON decode it. */
    _cleanup_cjson_ cJSON *s = cJSON_ParseWithLength(quoted, n);
    return cJSON_IsString(s) && streq(s->valuestring, key);
}

/* Finds the text of member `key` of the JSON object at p. Returns 0, -ENOENT or -EINVAL. */
static int member_span(const char *p, const char *end, const char *key, const char **ret_start,
                       size_t *ret_len)
{
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return -EINVAL;
    for (;;) {
        p = skip_ws(p, end);
        if (p < end && *p == '}')
            return -ENOENT;
        if (p >= end || *p != '"')
            return -EINVAL;
        const char *k = p;
        if (!(p = skip_string(p, end)))
            return -EINVAL;
        bool match = key_equals(k, (size_t)(p - k), key);
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':')
            return -EINVAL;
        p = skip_ws(p, end);
        const char *v = p;
        if (!(p = skip_value(p, end)))
            return -EINVAL;
        if (match) {
            *ret_start = v;
            *ret_len = (size_t)(p - v);
            return 0;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        return p < end && *p == '}' ? -ENOENT : -EINVAL;
    }
}

static const char *bad(const char **fail, const char *at)
{
    *fail = at;
    return NULL;
}

/* Strict RFC 8259 syntax. cJSON also takes "01", "+1", "1." and raw control characters, and the
 * JSON data is passed on verbatim, so it must be JSON that strict parsers downstream accept.
 * Returns the end of the value at p, or NULL with *fail at the offending byte. */
static const char *json_strict(const char *p, const char *end, int depth, const char **fail)
{
    p = skip_ws(p, end);
    *fail = p;
    if (p >= end || depth > 1000)
        return bad(fail, p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = skip_ws(p, end);
                if (p >= end || *p != '"')
                    return bad(fail, p);
                if (!(p = json_strict(p, end, depth + 1, fail)))
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p != ':')
                    return bad(fail, p);
                p++;
            }
            if (!(p = json_strict(p, end, depth + 1, fail)))
                return NULL;
            p = skip_ws(p, end);
            if (p < end && *p == close)
                return p + 1;
            if (p >= end || *p != ',')
                return bad(fail, p);
            p++;
        }
    }
    if (*p == '"') {
        for (p++; p < end; p++) {
            if ((unsigned char)*p < 0x20)
                return bad(fail, p);
            if (*p == '"')
                return p + 1;
            if (*p != '\\')
                continue;
            if (++p >= end || !strchr("\"\\/bfnrtu", *p))
                return bad(fail, p);
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p + i >= end || !is_hex(p[i]))
                        return bad(fail, p);
                p += 4;
            }
        }
        return bad(fail, p);
    }
    static const char *const literals[] = {"true", "false", "null"};
    for (size_t i = 0; i < ARRAY_SIZE(literals); i++) {
        size_t n = strlen(literals[i]);
        if ((size_t)(end - p) >= n && memcmp(p, literals[i], n) == 0)
            return p + n;
    }
    /* number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ("e" / "E") [ "+" / "-" ] 1*DIGIT ]
     */
    const char *q = p;
    if (q < end && *q == '-')
        q++;
    if (q < end && *q == '0')
        q++;
    else if (q < end && *q >= '1' && *q <= '9')
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    else
        return bad(fail, q);
    if (q < end && *q == '.') {
        if (++q >= end || *q < '0' || *q > '9')
            return bad(fail, q);
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q >= end || *q < '0' || *q > '9')
            return bad(fail, q);
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    }
    return q;
}

/* ---- The JSON event format ---- */

static int json_parse_text(const char *text, size_t len, cJSON **ret, char **ret_copy,
                           struct ig_error *err)
{
    /* cJSON wants a NUL-terminated string; a NUL inside would end the document early. */
    if (memchr(text, '\0', len))
        return ig_error_set(err, EINVAL, "the body holds a NUL byte, so it is not JSON text");
    const char *fail = text, *last = json_strict(text, text + len, 0, &fail);
    if (last && skip_ws(last, text + len) != text + len) {
        fail = skip_ws(last, text + len);
        last = NULL;
    }
    if (!last)
        return ig_error_set(err, EINVAL, "the body is not valid JSON (RFC 8259; at byte %zu)",
                            (size_t)(fail - text));
    _cleanup_free_ char *copy = malloc(len + 1);
    if (!copy)
        return ig_error_set(err, ENOMEM, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(copy, &end, true);
    if (!j)
        return ig_error_set(err, EINVAL, "the body is not valid JSON (at byte %zu)",
                            end ? (size_t)(end - copy) : 0);
    *ret = j;
    *ret_copy = TAKE_PTR(copy);
    return 0;
}

/* Builds an event from one JSON object; raw/raw_len is that object's text. */
static int event_from_json(const cJSON *obj, const char *raw, size_t raw_len, struct ce_event **ret,
                           struct ig_error *err)
{
    _cleanup_ce_event_ struct ce_event *e = calloc(1, sizeof(*e));
    const cJSON *data = NULL, *data_b64 = NULL;
    size_t n_members = 0;
    char what[192];
    int r;

    if (!e)
        return ig_error_set(err, ENOMEM, "out of memory");
    if (!cJSON_IsObject(obj))
        return ig_error_set(err, EINVAL, "an event must be a JSON object");
    for (const cJSON *m = obj->child; m; m = m->next)
        n_members++;
    if (n_members > ARRAY_SIZE(core_names) + 2 + CE_EXTENSIONS_MAX)
        return ig_error_set(err, E2BIG,
                            "the event has %zu members, more than %d extension "
                            "attributes allow",
                            n_members, CE_EXTENSIONS_MAX);

    for (const cJSON *m = obj->child; m; m = m->next) {
        const char *name = m->string;
        /* spec.md "Context Attributes": each attribute appears at most once. */
        for (const cJSON *o = obj->child; o != m; o = o->next)
            if (streq(o->string, name))
                return ig_error_set(err, EINVAL, "member '%.64s' appears more than once", name);
        if (streq(name, "data")) {
            data = m;
            continue;
        }
        if (streq(name, "data_base64")) {
            data_b64 = m;
            continue;
        }
        char **slot = core_slot(e, name);
        if (!slot) {
            const char *why = name_problem(name);
            if (why)
                return ig_error_set(err, EINVAL,
                                    "attribute name '%.64s' %s (spec.md Naming Conventions)", name,
                                    why);
        }
        label(what, name, false);
        /* JSON format 2.2: null is the same as an absent attribute. */
        if (cJSON_IsNull(m))
            continue;
        if (slot) {
            if (!cJSON_IsString(m))
                return ig_error_set(err, EINVAL, "%s must be a JSON string", what);
            if (!(*slot = strdup(m->valuestring)))
                return ig_error_set(err, ENOMEM, "out of memory");
            continue;
        }
        char buf[16];
        const char *value;
        enum ce_ext_type type;
        if (cJSON_IsString(m)) {
            value = m->valuestring;
            type = CE_EXT_STRING;
        } else if (cJSON_IsBool(m)) {
            value = cJSON_IsTrue(m) ? "true" : "false";
            type = CE_EXT_BOOLEAN;
        } else if (cJSON_IsNumber(m)) {
            /* JSON format 2.2: an Integer is a number with only an integer component, in the
             * 32-bit range of spec.md's type system. */
            double d = m->valuedouble;
            if (!(d >= INT32_MIN && d <= INT32_MAX) || d != (double)(int32_t)d)
                return ig_error_set(err, EINVAL, "%s is a number but not a 32-bit Integer", what);
            snprintf(buf, sizeof(buf), "%d", (int32_t)d);
            value = buf;
            type = CE_EXT_INTEGER;
        } else
            return ig_error_set(err, EINVAL,
                                "%s must be a string, an integer or a boolean (spec.md Type "
                                "System)",
                                what);
        if (add_extension(e, name, value, type) < 0)
            return ig_error_set(err, ENOMEM, "out of memory");
    }

    /* JSON format 3.1: data and data_base64 are mutually exclusive. A null data_base64 is an
     * absent one; a null data is an explicit null payload (3.1.1), so it conflicts only with a
     * data_base64 that carries something. */
    if (data_b64 && cJSON_IsNull(data_b64))
        data_b64 = NULL;
    if (data && data_b64 && !cJSON_IsNull(data))
        return ig_error_set(err, EINVAL, "the event has both 'data' and 'data_base64'");
    if (data_b64) {
        if (!cJSON_IsString(data_b64))
            return ig_error_set(err, EINVAL, "'data_base64' must be a JSON string");
        _cleanup_free_ char *bytes = NULL;
        size_t n;
        r = base64_decode(data_b64->valuestring, &bytes, &n);
        if (r == -ENOMEM)
            return ig_error_set(err, ENOMEM, "out of memory");
        if (r < 0)
            return ig_error_set(err, EINVAL, "'data_base64' is not valid base64 (RFC 4648)");
        free(e->data);
        e->data = TAKE_PTR(bytes);
        e->data_len = n;
        e->data_kind = CE_DATA_BINARY;
    } else if (data) {
        if (ce_content_type_is_json(e->datacontenttype) || !cJSON_IsString(data)) {
            /* JSON format 3.1.2: with a JSON datacontenttype the member is the data itself;
             * a string there is a JSON string, never a document to parse again. Non-string data
             * under another type is kept as JSON too rather than refused. */
            const char *start;
            size_t n;
            if (member_span(raw, raw + raw_len, "data", &start, &n) < 0)
                return ig_error_set(err, EINVAL, "cannot locate 'data' in the event");
            r = set_data(e, CE_DATA_JSON, start, n);
        } else
            r = set_data(e, CE_DATA_TEXT, data->valuestring, strlen(data->valuestring));
        if (r < 0)
            return ig_error_set(err, ENOMEM, "out of memory");
    }

    if ((r = validate(e, false, err)) < 0)
        return r;
    *ret = TAKE_PTR(e);
    return 0;
}

int ce_parse_json(const void *text, size_t len, struct ce_event **ret, struct ig_error *err)
{
    _cleanup_cjson_ cJSON *j = NULL;
    _cleanup_free_ char *copy = NULL;
    int r;

    if ((r = json_parse_text(text, len, &j, &copy, err)) < 0)
        return r;
    if (!cJSON_IsObject(j))
        return ig_error_set(err, EINVAL,
                            "a structured-mode body must be one JSON object (JSON format 3)");
    return event_from_json(j, copy, len, ret, err);
}

static int events_new(enum ce_mode mode, size_t n, struct ce_events **ret)
{
    struct ce_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return -ENOMEM;
    ev->mode = mode;
    if (n && !(ev->v = calloc(n, sizeof(*ev->v)))) {
        free(ev);
        return -ENOMEM;
    }
    *ret = ev;
    return 0;
}

static int parse_batch(const char *body, size_t len, struct ce_events **ret, struct ig_error *err)
{
    _cleanup_cjson_ cJSON *j = NULL;
    _cleanup_free_ char *copy = NULL;
    _cleanup_ce_events_ struct ce_events *ev = NULL;
    int r;

    if ((r = json_parse_text(body, len, &j, &copy, err)) < 0)
        return r;
    if (!cJSON_IsArray(j))
        return ig_error_set(err, EINVAL,
                            "a batched-mode body must be a JSON array (JSON format 4.1)");
    size_t n = (size_t)cJSON_GetArraySize(j);
    if (n > CE_BATCH_MAX)
        return ig_error_set(err, E2BIG, "the batch holds %zu events, more than the limit of %d", n,
                            CE_BATCH_MAX);
    if (events_new(CE_MODE_BATCH, n, &ev) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");

    const char *p = skip_ws(copy, copy + len), *end = copy + len;
    p++; /* '[' */
    for (const cJSON *item = j->child; item; item = item->next) {
        p = skip_ws(p, end);
        const char *start = p;
        if (!(p = skip_value(p, end)))
            return ig_error_set(err, EINVAL, "event %zu: cannot locate it in the body", ev->n);
        r = event_from_json(item, start, (size_t)(p - start), &ev->v[ev->n], err);
        if (r < 0) {
            ig_error_prefix(err, "event %zu", ev->n);
            return r;
        }
        ev->n++;
        p = skip_ws(p, end);
        if (p < end && *p == ',')
            p++;
    }
    *ret = TAKE_PTR(ev);
    return 0;
}

/* ---- Binary mode ---- */

/* Decodes a ce- header value (binding 3.1.3.2): a double-quoted string (RFC 7230 section 3.2.6)
 * is unquoted first, for senders of earlier versions; then one round of percent-decoding.
 * Bytes outside ASCII, and a '%' that begins no escape, are kept as they are, since some clients
 * send values unencoded; validate()
 * then checks the result is UTF-8 without control characters. Returns 0, -EINVAL, -E2BIG. */
static int header_decode(const char *header, const char *value, char **ret, struct ig_error *err)
{
    const char *p = value, *end;

    while (*p == ' ' || *p == '\t')
        p++;
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - p) > 3 * CE_VALUE_MAX + 2)
        return ig_error_set(err, E2BIG, "header %s is longer than %d bytes", header,
                            3 * CE_VALUE_MAX);

    _cleanup_free_ char *unq = malloc((size_t)(end - p) + 1);
    if (!unq)
        return ig_error_set(err, ENOMEM, "out of memory");
    /* Only a value that is one whole quoted-string is unquoted. Clients that send values raw
     * (the JavaScript SDK sends `order "42"` as it is) also send ones that merely begin with a
     * quote, and those are taken as they stand rather than refused. */
    size_t n = 0;
    bool quoted = false;
    if (*p == '"') {
        const char *q = p + 1;
        for (; q < end && *q != '"'; q++) {
            if (*q == '\\' && q + 1 < end)
                q++;
            unq[n++] = *q;
        }
        quoted = q + 1 == end;
    }
    if (!quoted) {
        memcpy(unq, p, (size_t)(end - p));
        n = (size_t)(end - p);
    }

    _cleanup_free_ char *out = malloc(n + 1);
    if (!out)
        return ig_error_set(err, ENOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (unq[i] != '%') {
            out[o++] = unq[i];
            continue;
        }
        /* A '%' that does not begin an escape is a sender that did not encode (the JavaScript
         * SDK sends `50%` as it is): unambiguous, so kept. */
        if (i + 2 >= n || !is_hex(unq[i + 1]) || !is_hex(unq[i + 2])) {
            out[o++] = '%';
            continue;
        }
        char c = (char)(hex_value(unq[i + 1]) << 4 | hex_value(unq[i + 2]));
        if (c == '\0')
            return ig_error_set(err, EINVAL, "header %s: %%00 is not allowed", header);
        out[o++] = c;
        i += 2;
    }
    out[o] = '\0';
    if (o > CE_VALUE_MAX)
        return ig_error_set(err, E2BIG, "header %s is longer than %d bytes once decoded", header,
                            CE_VALUE_MAX);
    *ret = TAKE_PTR(out);
    return 0;
}

int ce_event_set_data(struct ce_event *e, const void *data, size_t len, struct ig_error *err)
{
    if (len == 0) {
        free(e->data);
        e->data = NULL;
        e->data_len = 0;
        e->data_kind = CE_DATA_NONE;
        return 0;
    }
    enum ce_data_kind kind = CE_DATA_BINARY;
    if (e->datacontenttype && ce_content_type_is_json(e->datacontenttype)) {
        /* JSON format 3.1 example D: data declared as JSON must decode as JSON. */
        _cleanup_cjson_ cJSON *j = NULL;
        _cleanup_free_ char *copy = NULL;
        struct ig_error jerr = {};
        if (json_parse_text(data, len, &j, &copy, &jerr) < 0 || !utf8_valid(data, len))
            return ig_error_set(err, EINVAL,
                                "the data (the body in binary mode) is not valid JSON, which "
                                "its content type '%.64s' declares",
                                e->datacontenttype);
        kind = CE_DATA_JSON;
    } else if (e->datacontenttype && content_type_is_text(e->datacontenttype) &&
               !memchr(data, '\0', len) && utf8_valid(data, len))
        kind = CE_DATA_TEXT;
    if (set_data(e, kind, data, len) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    return 0;
}

static int parse_binary(const struct ce_header *headers, size_t n_headers, const char *body,
                        size_t body_len, struct ce_event **ret, struct ig_error *err)
{
    _cleanup_ce_event_ struct ce_event *e = calloc(1, sizeof(*e));
    size_t n_ce = 0;
    int r;

    if (!e)
        return ig_error_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n_headers; i++) {
        const char *hn = headers[i].name, *hv = headers[i].value ? headers[i].value : "";
        char name[CE_NAME_MAX + 1];

        if (strcasecmp(hn, "content-type") == 0) {
            /* Binding 3.1.1: Content-Type is the datacontenttype. */
            if (e->datacontenttype)
                return ig_error_set(err, EINVAL, "more than one Content-Type header");
            const char *p = hv;
            while (*p == ' ' || *p == '\t')
                p++;
            size_t n = strlen(p);
            while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                n--;
            if (n > CE_VALUE_MAX)
                return ig_error_set(err, E2BIG, "the Content-Type header is too long");
            if (n && !(e->datacontenttype = strndup(p, n)))
                return ig_error_set(err, ENOMEM, "out of memory");
            continue;
        }
        if (strncasecmp(hn, "ce-", 3) != 0)
            continue;
        n_ce++;
        /* Binding 3.1.3.1: header names are case-insensitive; attribute names are lower case. */
        size_t len = strlen(hn + 3);
        if (len > CE_NAME_MAX)
            return ig_error_set(err, EINVAL,
                                "header %.80s: the attribute name is longer than %d "
                                "characters",
                                hn, CE_NAME_MAX);
        for (size_t k = 0; k <= len; k++)
            name[k] = (char)((hn[3 + k] >= 'A' && hn[3 + k] <= 'Z') ? hn[3 + k] + 32 : hn[3 + k]);
        const char *why = name_problem(name);
        if (why)
            return ig_error_set(err, EINVAL,
                                "header %s: attribute name '%s' %s (spec.md Naming Conventions)",
                                hn, name, why);
        if (streq(name, "datacontenttype"))
            return ig_error_set(err, EINVAL,
                                "header %s must not be sent in binary mode: "
                                "Content-Type carries datacontenttype (binding "
                                "3.1.1)",
                                hn);
        _cleanup_free_ char *value = NULL;
        if ((r = header_decode(hn, hv, &value, err)) < 0)
            return r;
        char **slot = core_slot(e, name);
        if (slot ? *slot != NULL : ce_event_extension(e, name) != NULL)
            return ig_error_set(err, EINVAL, "header %s appears more than once", hn);
        if (slot)
            *slot = TAKE_PTR(value);
        else if (e->n_extensions >= CE_EXTENSIONS_MAX)
            return ig_error_set(err, E2BIG, "more than %d extension attributes", CE_EXTENSIONS_MAX);
        else if (add_extension(e, name, value, CE_EXT_STRING) < 0)
            return ig_error_set(err, ENOMEM, "out of memory");
    }
    if (n_ce == 0)
        return ig_error_set(err, EINVAL,
                            "not a CloudEvent: no ce- headers, and Content-Type is not "
                            "application/cloudevents+json or application/cloudevents-batch+json");

    /* Binding 3.1.2: the body is the data. An empty body is an event without data. */
    if ((r = ce_event_set_data(e, body, body_len, err)) < 0)
        return r;

    if ((r = validate(e, true, err)) < 0)
        return r;
    *ret = TAKE_PTR(e);
    return 0;
}

int ce_parse_http(const struct ce_header *headers, size_t n_headers, const void *body,
                  size_t body_len, struct ce_events **ret, struct ig_error *err)
{
    _cleanup_ce_events_ struct ce_events *ev = NULL;
    const char *ct = NULL, *mt = "";
    size_t n = 0;
    int r;

    /* A request without a body may come as NULL; the parsers take "", since memchr and memcpy
     * want a pointer even for no bytes (found by tests/fuzz/fuzz_cloudevents.c). */
    if (!body) {
        body = "";
        body_len = 0;
    }
    for (size_t i = 0; i < n_headers; i++)
        if (strcasecmp(headers[i].name, "content-type") == 0 && headers[i].value) {
            ct = headers[i].value;
            break;
        }
    if (ct)
        media_type_span(ct, &mt, &n);

    /* Binding section 3: a media type beginning application/cloudevents-batch is batched mode,
     * one beginning application/cloudevents is structured mode, anything else binary mode. Media
     * types compare case-insensitively (RFC 7231 3.1.1.1) and parameters such as charset do not
     * change the mode. JSON is the only event format here (binding 1.4 requires it). */
    static const char batch[] = "application/cloudevents-batch",
                      structured[] = "application/cloudevents";
    bool is_batch = n >= sizeof(batch) - 1 && strncasecmp(mt, batch, sizeof(batch) - 1) == 0;
    bool is_structured = !is_batch && n >= sizeof(structured) - 1 &&
                         strncasecmp(mt, structured, sizeof(structured) - 1) == 0;
    if (is_batch || is_structured) {
        size_t prefix = is_batch ? sizeof(batch) - 1 : sizeof(structured) - 1;
        if (n - prefix != 5 || strncasecmp(mt + prefix, "+json", 5) != 0)
            return ig_error_set(err, EOPNOTSUPP,
                                "event format '%.*s' is not supported: send "
                                "application/cloudevents+json, "
                                "application/cloudevents-batch+json or binary mode",
                                (int)(n > 80 ? 80 : n), mt);
    }

    if (is_batch)
        return parse_batch(body, body_len, ret, err);

    if (events_new(is_structured ? CE_MODE_STRUCTURED : CE_MODE_BINARY, 1, &ev) < 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    if (is_structured)
        r = ce_parse_json(body, body_len, &ev->v[0], err);
    else
        r = parse_binary(headers, n_headers, body, body_len, &ev->v[0], err);
    if (r < 0)
        return r;
    ev->n = 1;
    *ret = TAKE_PTR(ev);
    return 0;
}

/* ---- Rendering ---- */

int ce_event_to_json(const struct ce_event *e, char **ret, size_t *ret_len)
{
    _cleanup_cjson_ cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;

    for (size_t i = 0; ok && i < ARRAY_SIZE(core_names); i++) {
        const char *v = *core_slot_const(e, core_names[i]);
        if (v)
            ok = cJSON_AddStringToObject(o, core_names[i], v) != NULL;
    }
    for (size_t i = 0; ok && i < e->n_extensions; i++) {
        const struct ce_extension *x = &e->extensions[i];
        /* Canonical Integer and Boolean strings are JSON literals as they stand. */
        ok = (x->type == CE_EXT_STRING ? cJSON_AddStringToObject(o, x->name, x->value)
                                       : cJSON_AddRawToObject(o, x->name, x->value)) != NULL;
    }
    if (ok && e->data_kind == CE_DATA_JSON)
        ok = cJSON_AddRawToObject(o, "data", e->data ? e->data : "null") != NULL;
    else if (ok && e->data_kind == CE_DATA_TEXT)
        ok = cJSON_AddStringToObject(o, "data", e->data ? e->data : "") != NULL;
    else if (ok && e->data_kind == CE_DATA_BINARY) {
        _cleanup_free_ char *b64 = base64_encode((const unsigned char *)e->data, e->data_len);
        ok = b64 && cJSON_AddStringToObject(o, "data_base64", b64) != NULL;
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    if (!text)
        return -ENOMEM;
    if (ret_len)
        *ret_len = strlen(text);
    *ret = text;
    return 0;
}

/* ---- Subscriptions ---- */

bool ce_type_pattern_valid(const char *p)
{
    if (!p || !p[0] || string_problem(p))
        return false;
    if (streq(p, "*"))
        return true;
    const char *star = strchr(p, '*');
    if (!star)
        return true;
    size_t n = strlen(p);
    return star == p + n - 1 && n >= 3 && p[n - 2] == '.';
}

bool ce_subscription_matches(const char *type_pattern, const char *source, const struct ce_event *e)
{
    if (!type_pattern || !e || !e->type)
        return false;
    if (source && (!e->source || !streq(source, e->source)))
        return false;
    if (streq(type_pattern, "*"))
        return true;
    size_t n = strlen(type_pattern);
    if (n >= 2 && type_pattern[n - 1] == '*' && type_pattern[n - 2] == '.')
        /* The prefix keeps its dot, so "a.b.*" matches "a.b.c" but not "a.bc" nor "a.b." */
        return strncmp(e->type, type_pattern, n - 1) == 0 && e->type[n - 1] != '\0';
    return streq(type_pattern, e->type);
}
