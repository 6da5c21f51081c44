/* An uploaded bundle, through the path PUT /v1/functions/{name} takes: the checks and the
 * extraction bundle_unpack's child runs (bundle_extract, here in this process so its coverage
 * counts), then function.json read from the result and validated. Each input is extracted into
 * a fresh directory under one temporary directory per process ($TMPDIR, which scripts/fuzz points
 * into build-fuzz), removed again after every input.
 *
 * An input that begins with the gzip magic is passed as it is; any other is taken as a plain tar
 * (which libarchive reads too) whose header checksums are recomputed first, so that mutations
 * reach the entries rather than dying at libarchive's checksum test.
 *
 * Properties, checked on the extracted tree: nothing but files, directories and symlinks; no
 * symlink that is absolute or resolves outside the tree; no hardlink to a file outside it (every
 * link of a file is in the tree); modes normalised (no setuid, setgid or sticky bit); no more
 * bytes and entries than the limits. A refusal is a content error with a reason. */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "functions/bundle.h"
#include "fuzz.h"
#include "functions/manifest.h"

/* Small limits, so that iterations stay fast and the limits themselves are reached. */
static const struct bundle_limits limits = {
    .max_unpacked_bytes = 1u << 20,
    .max_entries = 256,
    .max_path = 1024,
    .max_ratio = 200,
    .ratio_floor = 64u << 10,
    .max_cpu_seconds = 10,
};

#define TAR_BLOCK 512

static char base[PATH_MAX];
static int cwd_fd = -1;

static void remove_base(void)
{
    rm_rf(base);
}

static void init(void)
{
    const char *tmp = getenv("TMPDIR");
    char made[PATH_MAX];
    snprintf(made, sizeof(made), "%s/ignis-fuzz-bundle.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fuzz_check(mkdtemp(made), "mkdtemp %s: %s", made, strerror(errno));
    /* Resolved, so that symlinks in the tree can be compared with it. */
    fuzz_check(realpath(made, base), "realpath %s: %s", made, strerror(errno));
    cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    fuzz_check(cwd_fd >= 0, "open .: %s", strerror(errno));
    /* As bundle_unpack's child: modes come out as the bundle asks, less nothing. */
    umask(022);
    atexit(remove_base);
}

static uint64_t octal(const uint8_t *p, size_t n, bool *ok)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++)
        v = v * 8 + (uint64_t)(p[i] - '0');
    *ok = i == n || p[i] == ' ' || p[i] == '\0';
    return v;
}

/* Walks the tar's headers (each followed by its size rounded up to blocks) and writes each
 * header's checksum as libarchive expects it: the byte sum with the checksum field as spaces. */
static void fix_checksums(uint8_t *t, size_t n)
{
    for (size_t off = 0; off + TAR_BLOCK <= n;) {
        uint8_t *h = t + off;
        bool zero = true, ok;
        for (size_t i = 0; i < TAR_BLOCK && zero; i++)
            zero = h[i] == 0;
        if (zero) {
            off += TAR_BLOCK;
            continue;
        }
        unsigned sum = 0;
        memset(h + 148, ' ', 8);
        for (size_t i = 0; i < TAR_BLOCK; i++)
            sum += h[i];
        char field[8];
        snprintf(field, sizeof(field), "%06o", sum & 0777777);
        memcpy(h + 148, field, 7);
        uint64_t size = octal(h + 124, 12, &ok);
        if (!ok || size > n)
            return;
        off += TAR_BLOCK + (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
    }
}

struct tree {
    size_t entries;
    uint64_t bytes;
    size_t n_inodes;
    struct {
        ino_t ino;
        nlink_t nlink, seen;
    } inodes[512];
};

static struct tree tree;
static char root[PATH_MAX];

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    mode_t perm = st->st_mode & 07777;
    if (ftw->level == 0)
        return 0;
    tree.entries++;
    if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX], resolved[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        fuzz_check(n > 0, "readlink %s: %s", path, strerror(errno));
        target[n] = '\0';
        fuzz_check(target[0] != '/', "%s is an absolute symlink to %s", path, target);
        size_t rl = strlen(root);
        if (realpath(path, resolved))
            fuzz_check(strncmp(resolved, root, rl) == 0 && (!resolved[rl] || resolved[rl] == '/'),
                       "%s -> %s resolves to %s, outside %s", path, target, resolved, root);
    } else if (S_ISREG(st->st_mode)) {
        fuzz_check(perm == 0644 || perm == 0755, "%s has mode %o", path, (unsigned)perm);
        size_t i = 0;
        while (i < tree.n_inodes && tree.inodes[i].ino != st->st_ino)
            i++;
        if (i == tree.n_inodes) {
            fuzz_check(i < ARRAY_SIZE(tree.inodes), "more files than entries");
            tree.inodes[i].ino = st->st_ino;
            tree.inodes[i].nlink = st->st_nlink;
            tree.inodes[i].seen = 0;
            tree.n_inodes++;
            tree.bytes += (uint64_t)st->st_size;
        }
        tree.inodes[i].seen++;
    } else
        fuzz_check(S_ISDIR(st->st_mode) && perm == 0755, "%s has mode %o", path,
                   (unsigned)st->st_mode);
    return 0;
}

static void check_tree(const char *dir)
{
    tree = (struct tree){};
    snprintf(root, sizeof(root), "%s", dir);
    fuzz_check(nftw(dir, visit, 16, FTW_PHYS) == 0, "nftw %s: %s", dir, strerror(errno));
    /* A directory entry may be made for a path's missing parents as well as per entry. */
    fuzz_check(tree.entries <= 2 * limits.max_entries, "%zu entries", tree.entries);
    fuzz_check(tree.bytes <= limits.max_unpacked_bytes, "%llu bytes unpacked",
               (unsigned long long)tree.bytes);
    for (size_t i = 0; i < tree.n_inodes; i++)
        fuzz_check(tree.inodes[i].seen == tree.inodes[i].nlink,
                   "a file has %lu links, %lu of them in the bundle: a hardlink points outside",
                   (unsigned long)tree.inodes[i].nlink, (unsigned long)tree.inodes[i].seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[PATH_MAX + 8];
    struct ig_error err = {};

    if (cwd_fd < 0)
        init();
    _cleanup_free_ uint8_t *input = malloc(size ? size : 1);
    fuzz_check(input, "out of memory");
    memcpy(input, data, size);
    if (!(size >= 2 && input[0] == 0x1f && input[1] == 0x8b))
        fix_checksums(input, size);

    snprintf(dir, sizeof(dir), "%s/b", base);
    fuzz_check(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    fuzz_check(chdir(dir) == 0, "chdir %s: %s", dir, strerror(errno));
    int r = bundle_extract(input, size, &limits, &err);
    fuzz_check(fchdir(cwd_fd) == 0, "fchdir: %s", strerror(errno));
    if (r < 0)
        fuzz_check(bundle_error_is_content(r) && err.code == -r && err.message[0],
                   "a refusal that is not the bundle's fault: %d %s", r, err.message);
    else {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        struct manifest *m = NULL;
        struct ig_error merr = {};
        check_tree(dir);
        if (bundle_read_manifest(dir, &text, &len, &merr) == 0 &&
            manifest_parse(text, len, &m, &merr) == 0)
            manifest_free(m);
    }
    fuzz_check(rm_rf(dir) == 0, "rm_rf %s", dir);
    return 0;
}
