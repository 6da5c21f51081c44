/* ignisd's options: command line and config file (same keys), pure parsing, no I/O beyond
 * reading the config file. */
#pragma once

#include "log.h"
#include "util.h"

struct ignisd_options {
    char listen_host[256];
    uint16_t listen_port;
    char state_dir[4096];
    char config[4096]; /* empty when none */
    enum log_level log_level;
};

void options_defaults(struct ignisd_options *o);

/* Parses "HOST:PORT" (IPv4 literal, "localhost" or "[v6]:port"). */
int options_parse_listen(const char *text, char *ret_host, size_t host_size, uint16_t *ret_port);

/* Sets one option from its key (the long option's name without dashes, '-' or '_' alike). */
int options_set(struct ignisd_options *o, const char *key, const char *value, struct ig_error *err);

/* Applies a config file: "key = value" lines, '#' comments, blank lines. An unknown key or a bad
 * value fails with a message naming the file, line and key. */
int options_load_config(struct ignisd_options *o, const char *path, struct ig_error *err);

enum options_action { OPTIONS_RUN, OPTIONS_HELP, OPTIONS_VERSION, OPTIONS_CHECK_CONFIG };

/* Parses argv. Options given on the command line win over the config file, which is read first
 * when --config names one. Returns 0 with *ret_action set, or -errno with err set. */
int options_parse(struct ignisd_options *o, int argc, char **argv, enum options_action *ret_action,
                  struct ig_error *err);

extern const char options_usage[];
