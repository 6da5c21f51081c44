/* function.json as an uploaded bundle or the store hands it to manifest_parse: any bytes, not
 * NUL-terminated. A refusal must say why; an accepted manifest must survive the round trip the
 * store makes (manifest_to_json, saved, parsed again at start-up) unchanged, or a daemon restart
 * would lose the function. */
#include <string.h>

#include "fuzz.h"
#include "functions/manifest.h"

static char *render(const struct manifest *m)
{
    cJSON *j = manifest_to_json(m);
    fuzz_check(j, "manifest_to_json failed");
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    fuzz_check(text, "cJSON_PrintUnformatted failed");
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct manifest *m = NULL, *again = NULL;
    struct ig_error err = {}, err2 = {};

    if (manifest_parse((const char *)data, size, &m, &err) < 0) {
        fuzz_check(err.code != 0 && err.message[0], "a refusal without a reason");
        fuzz_check(!m, "a refusal that returned a manifest");
        return 0;
    }
    fuzz_check(manifest_name_valid(m->name), "accepted name '%s'", m->name);
    fuzz_check(m->min_scale <= m->max_scale, "min_scale %u > max_scale %u", m->min_scale,
               m->max_scale);
    fuzz_check(manifest_max_concurrency(m) > 0, "no invocation could ever run");

    _cleanup_free_ char *text = render(m);
    int r = manifest_parse(text, strlen(text), &again, &err2);
    fuzz_check(r == 0, "the rendered manifest is refused: %s\n%s", err2.message, text);
    _cleanup_free_ char *text2 = render(again);
    fuzz_check(strcmp(text, text2) == 0, "the round trip changed it:\n%s\n%s", text, text2);
    manifest_free(again);
    manifest_free(m);
    return 0;
}
