/* Host checks as `ignis doctor` reports them: a JSON array of {"check", "status", "detail",
 * "fix"?} (container/doctor.c makes it; GET /v1/doctor sends it). Printing it for people is
 * shared by ignisd --doctor and the CLI. */
#pragma once

#include <cjson/cJSON.h>
#include <stdio.h>

/* One line a check: status, name, detail and the fix when there is one. */
void checks_print(const cJSON *checks, FILE *out);
