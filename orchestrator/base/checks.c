#include "base/checks.h"

void checks_print(const cJSON *checks, FILE *out)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, checks)
    {
        const cJSON *fix = cJSON_GetObjectItem(c, "fix");
        fprintf(out, "%-9s %-16s %s%s%s\n", cJSON_GetObjectItem(c, "status")->valuestring,
                cJSON_GetObjectItem(c, "check")->valuestring,
                cJSON_GetObjectItem(c, "detail")->valuestring, fix ? " -- fix: " : "",
                fix ? fix->valuestring : "");
    }
}
