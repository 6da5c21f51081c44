/* The ignis CLI's verbs and the helpers they share (main.c). Each verb gets its own argv, with
 * argv[0] the verb's name, and returns the process's exit status. */
#pragma once

#include "client.h"

/* Prints "ignis: MESSAGE" on one line to stderr and returns 1. */
int cli_fail(const char *fmt, ...) _printf_(1, 2);
/* The server's error message from an {"error": {...}} body (or the status), as cli_fail. */
int cli_fail_response(const struct client_response *resp);

/* functions.c: the registry's verbs. */
int cli_push(struct client *c, int argc, char **argv);
int cli_ls(struct client *c, int argc, char **argv);
int cli_show(struct client *c, int argc, char **argv);
int cli_rm(struct client *c, int argc, char **argv);

/* invoke.c: the dispatcher's verbs. */
int cli_invoke(struct client *c, int argc, char **argv);
int cli_result(struct client *c, int argc, char **argv);

/* logs.c: a function's output and platform events. */
int cli_logs(struct client *c, int argc, char **argv);
