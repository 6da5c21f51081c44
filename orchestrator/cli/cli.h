/* The ignis CLI's verbs and the helpers they share (common.c). Each verb gets its own argv, with
 * argv[0] the verb's name, and returns the process's exit status. */
#pragma once

#include <cjson/cJSON.h>

#include "base/client.h"

/* Prints "ignis: MESSAGE" on one line to stderr and returns 1. */
int cli_fail(const char *fmt, ...) _printf_(1, 2);
/* The server's error message from an {"error": {...}} body (or the status), as cli_fail. */
int cli_fail_response(const struct client_response *resp);

/* 0 when name is a function or service name (manifest_name_valid); else 1 after saying that it
 * is not a KIND name ("function", "service"). */
int cli_check_name(const char *kind, const char *name);

/* An option of a verb that takes a value: --NAME VALUE (or -SHORT VALUE when short is not 0);
 * or, with ret_flag instead of ret, a flag without one (--NAME sets *ret_flag). */
struct cli_option {
    const char *name;
    char short_name;
    const char **ret;
    bool *ret_flag;
};
/* The options after a verb (argv[0]): --json, and each of extra (at most 6). Returns the index of
 * the first operand, or -1 after printing "usage: USAGE_LINE" (or, with usage_line NULL, that
 * the option is bad). */
int cli_parse_options(int argc, char **argv, const char *usage_line, bool *ret_json,
                      const struct cli_option *extra, size_t nextra);

/* One request that must succeed with a 2xx; the parsed JSON body in *ret (and the raw text in
 * *ret_raw unless NULL). Prints the failure and returns 1 otherwise. */
int cli_request_json(struct client *c, const char *method, const char *path,
                     const char *const *headers, const void *body, size_t len, cJSON **ret,
                     char **ret_raw);
/* base ("/v1/usage") and a query of the keys whose value is not NULL, each value
 * percent-encoded: "/v1/usage?since=1h&group_by=day". Allocated; NULL without memory
 */
char *cli_query_path(const char *base, const char *const *keys, const char *const *values,
                     size_t n);
/* A reply cli_request_json got: the raw text with --json (json), else print(root); frees both.
 * Returns 0. */
int cli_print_reply(cJSON *root, char *raw, bool json, void (*print)(const cJSON *root));
/* A string or number member of o; "" or 0 when absent or of another type. */
const char *cli_str(const cJSON *o, const char *key);
double cli_num(const cJSON *o, const char *key);

/* init.c: a new function or service directory from the embedded templates (needs no server). */
int cli_init(struct client *c, int argc, char **argv);
/* deps.c: packs the function directory dir into its bundle (at most REGISTRY_MAX_BUNDLE
 * bytes). With with_deps, what it declares for its runtime (function.json's) is installed into a
 * copy of dir first, dir itself left as it is: node's package.json dependencies with `npm ci
 * --omit=dev` (`npm install --omit=dev` without a lockfile), python3's requirements.txt with
 * `python3 -m pip install --target`, under the user's own npm and pip configuration. The
 * package manager's output goes to stderr. Returns 0, or -errno with err saying what failed. */
int cli_pack_function(const char *dir, bool with_deps, char **ret, size_t *ret_len,
                      struct ig_error *err);

/* functions.c: the registry's verbs. */
int cli_push(struct client *c, int argc, char **argv);
int cli_ls(struct client *c, int argc, char **argv);
int cli_show(struct client *c, int argc, char **argv);
int cli_rm(struct client *c, int argc, char **argv);

/* versions.c: a function's versions and aliases, and rolling back. */
int cli_versions(struct client *c, int argc, char **argv);
int cli_alias(struct client *c, int argc, char **argv);
int cli_rollback(struct client *c, int argc, char **argv);
/* The tables of GET /v1/functions/NAME's "versions" and "aliases" (ignis show prints them). */
void cli_print_versions(const cJSON *versions);
void cli_print_aliases(const cJSON *aliases);

/* The payload from -d: the text itself, @FILE, or - for standard input, at most the payload
 * limit. Returns 0, or 1 after saying what failed. */
int cli_read_data(const char *arg, char **ret, size_t *ret_len);

/* events.c: sends a CloudEvent. */
int cli_emit(struct client *c, int argc, char **argv);
/* services.c: deploying, listing and removing services. */
int cli_deploy(struct client *c, int argc, char **argv);
int cli_service(struct client *c, int argc, char **argv);
/* DELETE /v1/services/NAME, printed (ignis service rm, ignis rm --service). */
int cli_service_rm(struct client *c, const char *name, bool json);

/* invoke.c: the dispatcher's verbs. */
int cli_invoke(struct client *c, int argc, char **argv);
int cli_result(struct client *c, int argc, char **argv);

/* usage.c: the accountant's verb. */
int cli_usage(struct client *c, int argc, char **argv);
/* top.c: the live view of every function. */
int cli_top(struct client *c, int argc, char **argv);
/* logs.c: a function's output and platform events. */
int cli_logs(struct client *c, int argc, char **argv);

/* security.c: tokens, secrets and the audit log. */
int cli_token(struct client *c, int argc, char **argv);
int cli_secret(struct client *c, int argc, char **argv);
int cli_audit(struct client *c, int argc, char **argv);

/* hosts.c: the hosts sharing the store. */
int cli_hosts(struct client *c, int argc, char **argv);
int cli_host(struct client *c, int argc, char **argv);
