/* A function's directory packed into its bundle, with what it declares installed first and, for
 * python3, its bytecode (ignis push and deploy; docs/api.md "Dependencies"). The package managers
 * and the compiler run here, on the machine of the CLI, in a copy of the directory: the user's
 * tree is never changed. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cli.h"
#include "functions/bundle.h"
#include "functions/manifest.h"
#include "functions/registry.h"

extern char **environ;

/* DEPS_BYTECODE: a python3 function without requirements.txt, compiled only. */
enum deps_tool { DEPS_NONE, DEPS_NPM, DEPS_PIP, DEPS_BYTECODE };

static bool is_file(const char *dir, const char *name)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whether package.json asks npm for anything: a package.json that only sets "type" (ESM) has
 * nothing to install, and pushing it must not need npm. */
static bool package_json_has_deps(const char *dir)
{
    char path[4200];
    _cleanup_free_ char *text = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/package.json", dir);
    if (read_file(path, 1 << 20, &text, &len) < 0)
        return true; /* npm says what is wrong with it */
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root)
        return true;
    bool any = false;
    static const char *const keys[] = {"dependencies", "optionalDependencies"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        any = any || (cJSON_IsObject(d) && d->child);
    }
    cJSON_Delete(root);
    return any;
}

/* Which package manager the function in dir needs: its runtime (function.json, read with the
 * manifest's own JSON parser) and the file that runtime's package manager reads; a python3
 * function without requirements.txt is still compiled. A function.json that does not parse
 * installs nothing: the daemon refuses it with the reason. */
static enum deps_tool deps_tool_for(const char *dir)
{
    char path[4200];
    _cleanup_free_ char *text = NULL;
    size_t len;
    enum manifest_runtime runtime;
    struct ig_error err = {};
    snprintf(path, sizeof(path), "%s/function.json", dir);
    if (read_file(path, MANIFEST_FILE_MAX, &text, &len) < 0)
        return DEPS_NONE;
    cJSON *root = manifest_json_parse(text, len, "function.json", &err);
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(root, "runtime");
    bool known = cJSON_IsString(rt) && manifest_runtime_from_name(rt->valuestring, &runtime) == 0;
    cJSON_Delete(root);
    if (known && runtime == MANIFEST_RUNTIME_NODE && is_file(dir, "package.json") &&
        package_json_has_deps(dir))
        return DEPS_NPM;
    if (known && runtime == MANIFEST_RUNTIME_PYTHON3)
        return is_file(dir, "requirements.txt") ? DEPS_PIP : DEPS_BYTECODE;
    return DEPS_NONE;
}

/* Runs argv (found in $PATH) in cwd with ignis's environment and waits. Its stdout goes to our
 * stderr: ignis's stdout is the push's result (JSON with --json), and the package manager's
 * messages are the user's to read either way. */
static int run_tool(const char *cwd, char *const argv[], struct ig_error *err)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return ig_error_set(err, ENOMEM, "out of memory");
    int r = posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    if (r == 0)
        r = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (r == 0)
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return ig_error_set(err, r, "cannot run %s: %s%s", argv[0], strerror(r),
                            r == ENOENT ? " (install it, or push with --no-deps)" : "");
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return ig_error_set(err, errno, "waiting for %s: %s", argv[0], strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char what[512] = "";
    for (size_t i = 0; argv[i]; i++)
        snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s", i ? " " : "", argv[i]);
    if (WIFEXITED(status))
        return ig_error_set(err, EIO, "`%s` failed with exit status %d (its messages are above)",
                            what, WEXITSTATUS(status));
    return ig_error_set(err, EIO, "`%s` was killed by %s", what, strsignal(WTERMSIG(status)));
}

/* Installed files carry the time they were written, so every push would pack other bytes and
 * make a new version of an unchanged function. What the install wrote (an entry the user's
 * directory does not have, or has with another time: cp -a kept the times of what it copied)
 * gets one time instead: the newest of the files that declare the dependencies, so that
 * changing them (or nothing) is what changes the bundle. Not "modified since the install
 * started": a file the user saved in the same second as the push was restamped at one push
 * and not at the next, which made a new version of an unchanged function. The CLI is
 * single-threaded; nftw takes no context. */
static struct {
    const char *src, *staging;
    time_t stamp;
} restamp;

static int restamp_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (ftw->level == 0)
        return 0;
    char src[4200];
    struct stat was;
    snprintf(src, sizeof(src), "%s%s", restamp.src, path + strlen(restamp.staging));
    if (lstat(src, &was) == 0 && was.st_mtim.tv_sec == st->st_mtim.tv_sec &&
        was.st_mtim.tv_nsec == st->st_mtim.tv_nsec)
        return 0;
    struct timespec times[2] = {{.tv_sec = restamp.stamp}, {.tv_sec = restamp.stamp}};
    return utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) < 0 ? -1 : 0;
}

static time_t declared_at(const char *dir)
{
    static const char *const files[] = {"requirements.txt", "package.json", "package-lock.json",
                                        "npm-shrinkwrap.json"};
    time_t newest = 0;
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char path[4200];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (stat(path, &st) == 0 && st.st_mtime > newest)
            newest = st.st_mtime;
    }
    return newest;
}

/* The bundle is read-only in the container, so a python3 runtime compiles every module it
 * imports, in every container (for a 20-line handler, 1.8 ms of the 2.5 ms its import took:
 * docs/performance.md), unless the bundle brings its bytecode: made here. pip's own would name
 * the staging dir in every code object (other bytes at each push) and be checked by mtime; this
 * names /var/task, where the files will be, and is checked by hash, so the restamp leaves it
 * valid. Bytecode of another Python than the image's is ignored there, and a file that does not
 * compile fails at import as it would have without bytecode, so this never fails a push: without
 * a python3 here the bundle has no bytecode. */
static void compile_bytecode(const char *staging)
{
    struct ig_error ignored = {};
    run_tool(staging,
             (char *const[]){"python3", "-m", "compileall", "-qq", "-j", "0", "-s", (char *)staging,
                             "-p", "/var/task", "--invalidation-mode", "checked-hash",
                             (char *)staging, NULL},
             &ignored);
}

/* Copies dir into staging (mtimes and symlinks kept, as packing keeps them) and installs there
 * what it declares for tool. */
static int install(const char *dir, const char *staging, enum deps_tool tool, struct ig_error *err)
{
    char src[4200];
    snprintf(src, sizeof(src), "%s/.", dir);
    int r = run_tool(".", (char *const[]){"cp", "-a", "--", src, (char *)staging, NULL}, err);
    if (r < 0)
        return r;
    restamp.src = dir;
    restamp.staging = staging;
    restamp.stamp = declared_at(staging);
    if (tool == DEPS_PIP) {
        r = run_tool(staging,
                     (char *const[]){"python3", "-m", "pip", "install", "--no-compile", "--target",
                                     (char *)staging, "-r", "requirements.txt", NULL},
                     err);
    } else if (tool == DEPS_NPM) {
        /* --no-audit, --no-fund: no report sent to the registry, no appeal on stderr. */
        bool locked =
            is_file(staging, "package-lock.json") || is_file(staging, "npm-shrinkwrap.json");
        r = run_tool(staging,
                     (char *const[]){"npm", locked ? "ci" : "install", "--omit=dev", "--no-audit",
                                     "--no-fund", NULL},
                     err);
    }
    if (r < 0) {
        ig_error_prefix(err, "installing its dependencies");
        return r;
    }
    if (tool == DEPS_PIP || tool == DEPS_BYTECODE)
        compile_bytecode(staging);
    if (nftw(staging, restamp_entry, 16, FTW_PHYS) != 0)
        r = ig_error_set(err, errno, "setting the times of %s: %s", staging, strerror(errno));
    return r;
}

int cli_pack_function(const char *dir, bool with_deps, char **ret, size_t *ret_len,
                      struct ig_error *err)
{
    enum deps_tool tool = with_deps ? deps_tool_for(dir) : DEPS_NONE;
    if (tool == DEPS_NONE)
        return bundle_pack_dir(dir, REGISTRY_MAX_BUNDLE, ret, ret_len, err);

    const char *tmp = getenv("TMPDIR");
    _cleanup_free_ char *staging = NULL;
    if (asprintf(&staging, "%s/ignis-deps-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0) {
        staging = NULL;
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    if (!mkdtemp(staging))
        return ig_error_set(err, errno, "creating %s: %s", staging, strerror(errno));
    int r = install(dir, staging, tool, err);
    if (r == 0)
        r = bundle_pack_dir(staging, REGISTRY_MAX_BUNDLE, ret, ret_len, err);
    rm_rf(staging);
    return r;
}
