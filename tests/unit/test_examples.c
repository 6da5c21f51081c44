/* The example functions (runtime-images/examples/) stay deployable: each function.json passes
 * the registry's manifest validation, its name is its folder's, and the handler it names is in
 * the bundle the way its runtime looks for it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/manifest.h"

static bool exists(const char *dir, const char *rel, const char *suffix, bool executable)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s%s", dir, rel, suffix);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (!executable || access(path, X_OK) == 0);
}

/* Whether the handler is where its runtime loads it from (the module or file part of it). */
static bool handler_present(const char *dir, const struct manifest *m)
{
    char base[512];
    const char *dot = strrchr(m->handler, '.');
    switch (m->runtime) {
    case MANIFEST_RUNTIME_EXEC:
        return exists(dir, m->handler, "", true);
    case MANIFEST_RUNTIME_PROVIDED:
        return exists(dir, "bootstrap", "", true);
    case MANIFEST_RUNTIME_PYTHON3:
        if (!dot)
            return false;
        snprintf(base, sizeof(base), "%.*s", (int)(dot - m->handler), m->handler);
        for (char *p = base; *p; p++)
            if (*p == '.')
                *p = '/';
        return exists(dir, base, ".py", false);
    case MANIFEST_RUNTIME_NODE:
        /* Lambda splits "file.export" at the first dot after the last slash. */
        dot = strchr(strrchr(m->handler, '/') ? strrchr(m->handler, '/') : m->handler, '.');
        if (!dot)
            return false;
        snprintf(base, sizeof(base), "%.*s", (int)(dot - m->handler), m->handler);
        return exists(dir, base, ".js", false) || exists(dir, base, ".mjs", false) ||
               exists(dir, base, ".cjs", false);
    }
    return false;
}

static void test_examples_are_valid(void **state)
{
    const char *src = getenv("IGNIS_SOURCE_DIR");
    char root[4096];
    snprintf(root, sizeof(root), "%s/runtime-images/examples", src ? src : ".");
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        char dir[4400], path[4500], *text = NULL;
        size_t len;
        if (de->d_name[0] == '.')
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", root, de->d_name);
        snprintf(path, sizeof(path), "%s/function.json", dir);
        if (access(path, F_OK) < 0)
            continue;
        assert_int_equal(read_file(path, 1 << 20, &text, &len), 0);
        struct manifest *m = NULL;
        struct ig_error err = {};
        if (manifest_parse(text, len, &m, &err) < 0)
            fail_msg("%s: %s", path, err.message);
        assert_string_equal(m->name, de->d_name);
        if (!handler_present(dir, m))
            fail_msg("%s: handler %s is not in the bundle", path, m->handler);
        manifest_free(m);
        free(text);
        n++;
    }
    closedir(d);
    assert_true(n >= 13);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_are_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
