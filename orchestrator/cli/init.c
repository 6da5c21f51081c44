/* ignis init: a new function (or service) directory from the templates under cli/templates/,
 * which scripts/embed-gen.c embeds into the binary at build time, so the binary alone can start
 * one. Each runtime's folder is a working function; "service" is the service.json and README
 * that hold one of them. "{{name}}" in any template file is the name given, which
 * manifest_name_valid keeps to [a-z0-9-], so it needs no quoting in JSON, shell or code. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/embed.h"
#include "cli.h"
#include "functions/manifest.h"
#include "functions/service.h"

/* Written by embed-gen from cli/templates/ (orchestrator/meson.build). */
extern const struct embed_file init_templates[];
extern const size_t init_templates_count;

#define NAME_PLACEHOLDER "{{name}}"

static const char usage_line[] =
    "ignis init NAME --runtime exec|python3|node|provided [--service] [--dir PATH]";

/* text with every NAME_PLACEHOLDER replaced by name. Allocated; NULL without memory. */
static char *substitute(const char *text, const char *name)
{
    size_t plen = strlen(NAME_PLACEHOLDER), nlen = strlen(name), n = 0;
    for (const char *p = text; (p = strstr(p, NAME_PLACEHOLDER)); p += plen)
        n++;
    char *out = malloc(strlen(text) + n * nlen + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = text, *hit;; p = hit + plen) {
        hit = strstr(p, NAME_PLACEHOLDER);
        size_t len = hit ? (size_t)(hit - p) : strlen(p);
        memcpy(o, p, len);
        o += len;
        if (!hit)
            break;
        memcpy(o, name, nlen);
        o += nlen;
    }
    *o = '\0';
    return out;
}

/* The template's function.json (name, runtime, handler) with every other field at its default,
 * as manifest_to_json writes them, one field a line. */
static int expand_manifest(const char *text, char **ret)
{
    struct manifest *m = NULL;
    struct ig_error err = {};
    if (manifest_parse(text, strlen(text), &m, &err) < 0)
        return cli_fail("the embedded function.json is invalid: %s", err.message);
    cJSON *root = manifest_to_json(m);
    manifest_free(m);
    char *out = NULL;
    size_t size = 0;
    FILE *f = root ? open_memstream(&out, &size) : NULL;
    const cJSON *field;
    bool ok = f != NULL;
    if (ok) {
        fputs("{\n", f);
        cJSON_ArrayForEach(field, root)
        {
            _cleanup_free_ char *value = cJSON_PrintUnformatted(field);
            ok = ok && value;
            fprintf(f, "  \"%s\": %s%s\n", field->string, value ? value : "null",
                    field->next ? "," : "");
        }
        fputs("}\n", f);
    }
    if (f && fclose(f) != 0)
        ok = false;
    cJSON_Delete(root);
    if (!ok) {
        free(out);
        return cli_fail("out of memory");
    }
    *ret = out;
    return 0;
}

/* Writes one template file as DIR/PATH, never over an existing file. Returns 0, or 1 after
 * saying what failed. */
static int write_one(const char *dir, const char *path, const struct embed_file *t,
                     const char *name)
{
    char full[4200];
    _cleanup_free_ char *text = substitute((const char *)t->data, name), *expanded = NULL;
    if (!text)
        return cli_fail("out of memory");
    const char *base = strrchr(path, '/');
    if (streq(base ? base + 1 : path, "function.json")) {
        if (expand_manifest(text, &expanded) != 0)
            return 1;
        free(text);
        text = TAKE_PTR(expanded);
    }
    snprintf(full, sizeof(full), "%s/%s", dir, path);
    char *slash = strrchr(full, '/');
    *slash = '\0';
    int r = mkdir_p(full, 0755);
    *slash = '/';
    if (r < 0)
        return cli_fail("%s: %s", full, strerror(-r));
    int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  t->executable ? 0755 : 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        r = errno;
        if (fd >= 0)
            close(fd);
        return cli_fail("%s: %s", full, strerror(r));
    }
    bool ok = fputs(text, f) >= 0;
    if (fclose(f) != 0 || !ok)
        return cli_fail("%s: %s", full, strerror(errno));
    printf("created %s\n", full);
    return 0;
}

/* Writes the files of template folder FOLDER ("python3", "service") into DIR/UNDER (UNDER may
 * be ""), all but the one named skip (NULL: none). Returns 0, or 1 after saying what failed. */
static int write_folder(const char *dir, const char *folder, const char *under, const char *skip,
                        const char *name)
{
    size_t flen = strlen(folder);
    for (size_t i = 0; i < init_templates_count; i++) {
        const struct embed_file *t = &init_templates[i];
        if (strncmp(t->name, folder, flen) != 0 || t->name[flen] != '/')
            continue;
        const char *rel = t->name + flen + 1;
        if (skip && streq(rel, skip))
            continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s%s%s", under, *under ? "/" : "", rel);
        if (write_one(dir, path, t, name) != 0)
            return 1;
    }
    return 0;
}

/* The embedded template file FOLDER/FILE, or NULL. */
static const struct embed_file *template_file(const char *folder, const char *file)
{
    char want[256];
    snprintf(want, sizeof(want), "%s/%s", folder, file);
    for (size_t i = 0; i < init_templates_count; i++)
        if (streq(init_templates[i].name, want))
            return &init_templates[i];
    return NULL;
}

/* A service: service.json and its README at the top, the runtime's function (without its own
 * README, which says push) where service.json's one function has its path. */
static int write_service(const char *dir, const char *runtime, const char *name)
{
    const struct embed_file *t = template_file("service", "service.json");
    _cleanup_free_ char *text = t ? substitute((const char *)t->data, name) : NULL;
    struct service *svc = NULL;
    struct ig_error err = {};
    if (!text)
        return cli_fail("%s", t ? "out of memory" : "no service template in this build");
    if (service_parse(text, strlen(text), &svc, &err) < 0)
        return cli_fail("the embedded service.json is invalid: %s", err.message);
    int r = write_folder(dir, "service", "", NULL, name);
    for (size_t i = 0; r == 0 && i < svc->n_fns; i++)
        r = write_folder(dir, runtime, svc->fns[i].path, "README.md", name);
    service_free(svc);
    return r;
}

/* Whether dir can be written into: absent (then made) or an empty directory. Returns 0 (with
 * *ret_made), or the exit status after saying why not: 2 for a refusal, 1 for a failure. */
static int prepare_dir(const char *dir, bool *ret_made)
{
    struct stat st;
    if (lstat(dir, &st) < 0) {
        if (errno != ENOENT)
            return cli_fail("%s: %s", dir, strerror(errno));
        int r = mkdir_p(dir, 0755);
        if (r < 0)
            return cli_fail("%s: %s", dir, strerror(-r));
        *ret_made = true;
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_fail("%s exists and is not a directory", dir);
        return 2;
    }
    DIR *d = opendir(dir);
    if (!d)
        return cli_fail("%s: %s", dir, strerror(errno));
    const struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = streq(de->d_name, ".") || streq(de->d_name, "..");
    closedir(d);
    if (!empty) {
        cli_fail("%s exists and is not empty (init never overwrites files: choose another --dir)",
                 dir);
        return 2;
    }
    *ret_made = false;
    return 0;
}

int cli_init(struct client *c, int argc, char **argv)
{
    const char *runtime = NULL, *dir = NULL;
    bool service = false, json = false;
    const struct cli_option opts[] = {
        {"runtime", 'r', &runtime, NULL}, {"service", 0, NULL, &service}, {"dir", 0, &dir, NULL}};
    int i = cli_parse_options(argc, argv, usage_line, &json, opts, ARRAY_SIZE(opts));
    if (i < 0)
        return 2;
    /* Refusals of what was asked exit 2, as bad usage does. init writes files and prints what
     * to do next: it has no JSON to give, so --json is bad usage rather than silently ignored. */
    if (json || argc - i != 1 || !runtime) {
        cli_fail("usage: %s", usage_line);
        return 2;
    }
    const char *name = argv[i];
    if (cli_check_name("function", name) != 0)
        return 2;
    enum manifest_runtime rt;
    if (manifest_runtime_from_name(runtime, &rt) < 0 || !template_file(runtime, "function.json")) {
        cli_fail("unknown runtime \"%s\" (exec, python3, node or provided)", runtime);
        return 2;
    }
    if (!dir)
        dir = name;

    bool made = false;
    int r = prepare_dir(dir, &made);
    if (r != 0)
        return r;
    r = service ? write_service(dir, runtime, name) : write_folder(dir, runtime, "", NULL, name);
    if (r != 0) {
        if (made)
            rm_rf(dir);
        else
            fprintf(stderr, "ignis: %s holds part of the template: empty it before trying again\n",
                    dir);
        return r;
    }
    const struct embed_file *readme = template_file(service ? "service" : runtime, "README.md");
    _cleanup_free_ char *next = readme ? substitute((const char *)readme->data, name) : NULL;
    if (next)
        printf("\nNext, from %s/:\n%s", dir, next);
    return 0;
}
