/* Structured logs on stderr, one line each, logfmt: time=... level=... msg="..." key=value... */
#pragma once

#include "base/util.h"

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_set_level(enum log_level level);
/* Returns 0 and sets *ret for "debug", "info", "warn" or "error"; -EINVAL otherwise. */
int log_level_parse(const char *name, enum log_level *ret);

/* msg is a short constant sentence; kv is a printf format producing key=value pairs (values
 * with spaces quoted by the caller with log_quote-free %s only when known safe). */
void log_full(enum log_level level, const char *msg, const char *kv, ...) _printf_(3, 4);

#define log_debug(msg, ...) log_full(LOG_LEVEL_DEBUG, msg, "" __VA_ARGS__)
#define log_info(msg, ...)  log_full(LOG_LEVEL_INFO, msg, "" __VA_ARGS__)
#define log_warn(msg, ...)  log_full(LOG_LEVEL_WARN, msg, "" __VA_ARGS__)
#define log_error(msg, ...) log_full(LOG_LEVEL_ERROR, msg, "" __VA_ARGS__)
