#include "functions/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fts.h>
#include <ftw.h>
#include <grp.h>
#include <nettle/sha2.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "functions/manifest.h"

/* nobody: the uid the extracting child runs as when the daemon is root. */
#define BUNDLE_EXTRACT_UID 65534

const struct bundle_limits bundle_default_limits = {
    .max_unpacked_bytes = 250ull * 1000 * 1000,
    .max_entries = 10000,
    .max_path = 1024,
    .max_ratio = 200,
    .ratio_floor = 8ull << 20,
    .max_cpu_seconds = 60,
    .max_seconds = 120,
};

/* Only what the bundle needs restored: no owners, ACLs, xattrs or file flags, and never
 * through a symlink, with "..", or at an absolute path (libarchive's own checks; ours come on
 * top, see check_entry). NO_OVERWRITE: a later entry with the same path never replaces an
 * earlier one, so a checked symlink cannot later become something else. */
#define EXTRACT_FLAGS                                                                              \
    (ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |                           \
     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_NO_OVERWRITE | ARCHIVE_EXTRACT_TIME)

void bundle_digest(const void *data, size_t len, char ret[BUNDLE_DIGEST_LEN + 1])
{
    struct sha256_ctx ctx;
    uint8_t d[SHA256_DIGEST_SIZE];

    sha256_init(&ctx);
    sha256_update(&ctx, len, data);
    sha256_digest(&ctx, sizeof(d), d);
    hex_encode(d, sizeof(d), ret);
}

bool bundle_digest_valid(const char *s)
{
    return s && hex_valid(s, BUNDLE_DIGEST_LEN);
}

int bundle_path(const char *bundles_dir, const char *digest, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", bundles_dir, digest);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

bool bundle_exists(const char *bundles_dir, const char *digest)
{
    char path[4200];
    struct stat st;
    if (!bundle_digest_valid(digest) || bundle_path(bundles_dir, digest, path, sizeof(path)) < 0)
        return false;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool bundle_error_is_content(int code)
{
    if (code < 0)
        code = -code;
    return code == EINVAL || code == EFBIG || code == E2BIG || code == ENAMETOOLONG;
}

/* Splits path into its components, ignoring empty ones and "."; calls fn for each. Returns the
 * first non-zero fn result. */
static int for_each_component(const char *path, int (*fn)(const char *c, size_t len, void *u),
                              void *u)
{
    for (const char *p = path; *p;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            int r = fn(p, len, u);
            if (r)
                return r;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    return 0;
}

struct path_walk {
    size_t depth;      /* components seen that were not ".." */
    size_t leading_up; /* ".." components before any other */
    bool up_after_name;
    bool too_long;
};

static int walk_component(const char *c, size_t len, void *u)
{
    struct path_walk *w = u;
    if (len > 255)
        w->too_long = true;
    if (len == 2 && c[0] == '.' && c[1] == '.') {
        if (w->depth > 0)
            w->up_after_name = true;
        else
            w->leading_up++;
    } else
        w->depth++;
    return 0;
}

/* Our own checks, before libarchive sees the entry, so each refusal names the entry and the
 * rule (and does not depend on how a libarchive version treats links). */
static int check_entry(struct archive_entry *e, const struct bundle_limits *lim,
                       struct ig_error *err)
{
    const char *path = archive_entry_pathname(e);
    if (!path || !*path)
        return ig_error_set(err, EINVAL, "an entry has no path");
    if (strlen(path) > lim->max_path)
        return ig_error_set(err, ENAMETOOLONG, "entry \"%.80s...\": path longer than %zu bytes",
                            path, lim->max_path);
    if (path[0] == '/')
        return ig_error_set(err, EINVAL, "entry \"%.200s\": absolute paths are not allowed", path);
    struct path_walk pw = {};
    for_each_component(path, walk_component, &pw);
    if (pw.leading_up || pw.up_after_name)
        return ig_error_set(err, EINVAL, "entry \"%.200s\": '..' in a path is not allowed", path);
    if (pw.too_long)
        return ig_error_set(err, ENAMETOOLONG,
                            "entry \"%.200s\": a path component is longer than 255 bytes", path);

    const char *hardlink = archive_entry_hardlink(e);
    if (hardlink) {
        /* A hardlink's target must be an entry of this bundle: relative and without "..", so
         * link(2) in the extraction dir cannot reach a file outside it. */
        struct path_walk hw = {};
        for_each_component(hardlink, walk_component, &hw);
        if (hardlink[0] == '/' || hw.leading_up || hw.up_after_name || hw.depth == 0 ||
            strlen(hardlink) > lim->max_path)
            return ig_error_set(err, EINVAL,
                                "entry \"%.200s\": hardlink to \"%.200s\" points outside the "
                                "bundle",
                                path, hardlink);
        return 0;
    }

    mode_t type = archive_entry_filetype(e);
    switch (type) {
    case AE_IFREG:
    case AE_IFDIR:
        return 0;
    case AE_IFLNK: {
        /* The target resolves from the link's directory. With ".." allowed only as leading
         * components and no deeper than that directory, and every entry's parent a real
         * directory (SECURE_SYMLINKS) that is never replaced (NO_OVERWRITE), resolution
         * starts at a directory inside the bundle and only descends from there, through
         * other links that obey the same rule. A lexical check alone would not do: with
         * "r" -> "." the target "r/.." is lexically inside but resolves to the bundle's
         * parent. */
        const char *target = archive_entry_symlink(e);
        if (!target || !*target)
            return ig_error_set(err, EINVAL, "entry \"%.200s\": symlink without a target", path);
        if (strlen(target) > lim->max_path)
            return ig_error_set(err, ENAMETOOLONG,
                                "entry \"%.200s\": symlink target longer than %zu bytes", path,
                                lim->max_path);
        struct path_walk tw = {};
        for_each_component(target, walk_component, &tw);
        size_t link_dir_depth = pw.depth > 0 ? pw.depth - 1 : 0;
        if (target[0] == '/' || tw.up_after_name || tw.leading_up > link_dir_depth)
            return ig_error_set(err, EINVAL,
                                "entry \"%.200s\": symlink to \"%.200s\" points outside the "
                                "bundle (targets must be relative, with '..' only at the start "
                                "and not above the bundle's root)",
                                path, target);
        return 0;
    }
    case AE_IFCHR:
    case AE_IFBLK:
        return ig_error_set(err, EINVAL, "entry \"%.200s\": device nodes are not allowed", path);
    case AE_IFIFO:
        return ig_error_set(err, EINVAL, "entry \"%.200s\": FIFOs are not allowed", path);
    case AE_IFSOCK:
        return ig_error_set(err, EINVAL, "entry \"%.200s\": sockets are not allowed", path);
    default:
        return ig_error_set(err, EINVAL, "entry \"%.200s\": unsupported file type 0%o", path,
                            (unsigned)type);
    }
}

/* Owners are never restored (the child does not ask for ARCHIVE_EXTRACT_OWNER, so files belong
 * to the daemon) and modes become 0755 for directories and executables, 0644 for other files:
 * readable by the container's uid 65534, and no setuid, setgid or sticky bit survives. */
static void normalise_entry(struct archive_entry *e)
{
    mode_t type = archive_entry_filetype(e), perm = archive_entry_perm(e);
    /* A hardlink entry's mode is given to the inode it links to (the fuzzer's find: a link
     * entry with mode 0300 left its target 0300), so it is normalised as a file's is; and its
     * data, which this extraction never writes, must not be claimed either: libarchive would
     * extend the linked file to the claimed size. */
    if (archive_entry_hardlink(e))
        archive_entry_set_size(e, 0);
    if (archive_entry_hardlink(e) || type == AE_IFREG)
        archive_entry_set_perm(e, (perm & 0111) ? 0755 : 0644);
    else if (type == AE_IFDIR)
        archive_entry_set_perm(e, 0755);
    else if (type == AE_IFLNK)
        archive_entry_set_perm(e, 0777);
}

/* Whether the entry's path was extracted already. NO_OVERWRITE keeps what is there, but
 * libarchive then still gives it the later entry's mode and time: a file entry named like a
 * directory before it turned the directory into 0644. A directory listed again changes nothing
 * and is skipped (returns 1); any other repeat is refused. Extraction runs in the bundle's
 * directory, so the entry's relative path is where it would land. */
static int check_repeat(struct archive_entry *e, const char *path, struct ig_error *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (S_ISDIR(st.st_mode) && archive_entry_filetype(e) == AE_IFDIR && !archive_entry_hardlink(e))
        return 1;
    return ig_error_set(err, EINVAL, "entry \"%.200s\": the bundle has this path twice", path);
}

/* A disk error caused by the archive's content (a refused path) is the client's; running out
 * of space or quota is ours. */
static int disk_error(struct archive *w, const char *path, struct ig_error *err)
{
    int code = archive_errno(w);
    if (code != ENOSPC && code != EDQUOT && code != EIO && code != ENOMEM && code != EROFS)
        code = code == EFBIG ? EFBIG : EINVAL;
    /* libarchive says only "Write failed": the errno names the cause. */
    if (code == ENOSPC || code == EDQUOT)
        return ig_error_set(err, code, "unpacking the bundle: %s (entry \"%.200s\")",
                            strerror(code), path);
    return ig_error_set(err, code, "entry \"%.200s\": %s", path,
                        archive_error_string(w) ? archive_error_string(w) : strerror(code));
}

static int copy_data(struct archive *a, struct archive *w, const char *path,
                     const struct bundle_limits *lim, uint64_t *total, struct ig_error *err)
{
    int64_t end = 0;
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        int r = archive_read_data_block(a, &buf, &size, &offset);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r < ARCHIVE_WARN)
            return ig_error_set(err, EINVAL, "entry \"%.200s\": %s", path, archive_error_string(a));
        /* Count what lands on disk from what we hand over, never the header's claimed size; a
         * sparse file's holes count too, since the container sees them as data. */
        uint64_t grow = size + (offset > end ? (uint64_t)(offset - end) : 0);
        if (offset + (int64_t)size > end)
            end = offset + (int64_t)size;
        *total += grow;
        if (*total > lim->max_unpacked_bytes)
            return ig_error_set(err, EFBIG,
                                "bundle unpacks to more than %llu bytes (at \"%.200s\")",
                                (unsigned long long)lim->max_unpacked_bytes, path);
        la_int64_t compressed = archive_filter_bytes(a, -1);
        if (*total > lim->ratio_floor && compressed > 0 &&
            *total / (uint64_t)compressed > lim->max_ratio)
            return ig_error_set(err, EFBIG,
                                "bundle's compression ratio is over %u:1 (%llu bytes from %lld; "
                                "at \"%.200s\")",
                                lim->max_ratio, (unsigned long long)*total, (long long)compressed,
                                path);
        if (archive_write_data_block(w, buf, size, offset) < ARCHIVE_OK)
            return disk_error(w, path, err);
    }
}

static void archive_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}

static void archive_write_freep(struct archive **w)
{
    if (*w)
        archive_write_free(*w);
}

int bundle_extract(const void *data, size_t len, const struct bundle_limits *lim,
                   struct ig_error *err)
{
    _cleanup_(archive_freep) struct archive *a = archive_read_new();
    _cleanup_(archive_write_freep) struct archive *w = archive_write_disk_new();
    struct archive_entry *e;
    uint64_t entries = 0, total = 0;

    if (!a || !w)
        return ig_error_set(err, ENOMEM, "out of memory");
    /* Bundles are gzip tars and nothing else: no other filter or format is enabled, so
     * libarchive's rarer parsers are not exposed to uploads. */
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    archive_write_disk_set_options(w, EXTRACT_FLAGS);
    /* Small reads so archive_filter_bytes() follows the decompression and the ratio check
     * stops a bomb early. */
    if (archive_read_open_memory2(a, data, len, 64 * 1024) != ARCHIVE_OK)
        return ig_error_set(err, EINVAL, "not a gzip-compressed tar: %s", archive_error_string(a));
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            if (entries == 0)
                return ig_error_set(err, EINVAL, "not a gzip-compressed tar: %s",
                                    archive_error_string(a));
            return ig_error_set(err, EINVAL, "reading the archive after %llu entries: %s",
                                (unsigned long long)entries, archive_error_string(a));
        }
        if (++entries > lim->max_entries)
            return ig_error_set(err, E2BIG, "bundle has more than %llu entries",
                                (unsigned long long)lim->max_entries);
        if ((r = check_entry(e, lim, err)) < 0)
            return r;
        normalise_entry(e);
        const char *path = archive_entry_pathname(e);
        if ((r = check_repeat(e, path, err)) < 0)
            return r;
        if (r > 0)
            continue;
        /* libarchive extends a file to its header's size whatever data came (sparse), so the
         * claimed size counts as unpacked too, before anything is written. */
        bool has_data = archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e);
        uint64_t claimed =
            has_data && archive_entry_size(e) > 0 ? (uint64_t)archive_entry_size(e) : 0;
        if (total > lim->max_unpacked_bytes || claimed > lim->max_unpacked_bytes - total)
            return ig_error_set(err, EFBIG,
                                "bundle unpacks to more than %llu bytes (at \"%.200s\")",
                                (unsigned long long)lim->max_unpacked_bytes, path);
        if (archive_write_header(w, e) < ARCHIVE_OK)
            return disk_error(w, path, err);
        uint64_t before = total;
        if (has_data && (r = copy_data(a, w, path, lim, &total, err)) < 0)
            return r;
        if (total - before < claimed)
            total = before + claimed;
        if (archive_write_finish_entry(w) < ARCHIVE_OK)
            return disk_error(w, path, err);
    }
    if (archive_write_close(w) < ARCHIVE_OK)
        return disk_error(w, ".", err);
    return 0;
}

/* As root, the child extracts as the unprivileged BUNDLE_EXTRACT_UID, in a directory it was
 * given: if a hostile archive found a bug in libarchive, what it could write is what nobody may
 * write. Called after chdir (the path above is root's alone, the cwd stays usable). Changing
 * credentials clears the parent-death signal, so it is set again. */
static int drop_privileges(struct ig_error *err)
{
    if (geteuid() != 0)
        return 0;
    if (setgroups(0, NULL) < 0 ||
        setresgid(BUNDLE_EXTRACT_UID, BUNDLE_EXTRACT_UID, BUNDLE_EXTRACT_UID) < 0 ||
        setresuid(BUNDLE_EXTRACT_UID, BUNDLE_EXTRACT_UID, BUNDLE_EXTRACT_UID) < 0)
        return ig_error_set(err, errno, "dropping privileges for extraction: %s", strerror(errno));
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    return 0;
}

static int chown_root(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return lchown(path, 0, 0) < 0 ? -1 : 0;
}

_Noreturn static void child_main(int report_fd, const char *dir, const void *data, size_t len,
                                 const struct bundle_limits *lim)
{
    struct ig_error err = {};
    int r;

    /* Die with the thread that waits for us; keep only the report pipe (the daemon's sockets
     * and database have no business here). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (report_fd > 3)
        close_range(3, (unsigned)report_fd - 1, 0);
    close_range((unsigned)report_fd + 1, ~0u, 0);
    /* Past RLIMIT_FSIZE write(2) fails with EFBIG instead of killing us: a clearer message. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit fsize = {lim->max_unpacked_bytes, lim->max_unpacked_bytes};
    struct rlimit nofile = {64, 64};
    struct rlimit cpu = {lim->max_cpu_seconds, lim->max_cpu_seconds + 1};
    struct rlimit core = {0, 0};
    umask(022);
    if (setrlimit(RLIMIT_FSIZE, &fsize) < 0 || setrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
        setrlimit(RLIMIT_CPU, &cpu) < 0 || setrlimit(RLIMIT_CORE, &core) < 0)
        r = ig_error_set(&err, errno, "setting the extraction's limits: %s", strerror(errno));
    else if (chdir(dir) < 0)
        r = ig_error_set(&err, errno, "entering %s: %s", dir, strerror(errno));
    else if ((r = drop_privileges(&err)) >= 0)
        r = bundle_extract(data, len, lim, &err);
    if (r >= 0)
        err.code = 0;
    /* One write of a struct smaller than PIPE_BUF: atomic. */
    ssize_t n = write(report_fd, &err, sizeof(err));
    _exit(n == (ssize_t)sizeof(err) && r >= 0 ? 0 : 1);
}

int bundle_unpack(const char *bundles_dir, const void *data, size_t len,
                  const struct bundle_limits *lim, char **ret_dir, struct ig_error *err)
{
    char tmp[4200];
    _cleanup_free_ char *dir = NULL;
    int p[2], r;

    snprintf(tmp, sizeof(tmp), "%s/tmp", bundles_dir);
    r = mkdir_p(tmp, 0700);
    if (r < 0)
        return ig_error_set(err, r, "creating %s: %s", tmp, strerror(-r));
    if (asprintf(&dir, "%s/unpack-XXXXXX", tmp) < 0) {
        dir = NULL;
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    if (!mkdtemp(dir))
        return ig_error_set(err, errno, "creating a directory under %s: %s", tmp, strerror(errno));
    /* The bundle's root becomes /var/task: readable by the container's user. */
    bool as_root = geteuid() == 0;
    if (chmod(dir, 0755) < 0 ||
        (as_root && chown(dir, BUNDLE_EXTRACT_UID, BUNDLE_EXTRACT_UID) < 0) ||
        pipe2(p, O_CLOEXEC) < 0) {
        r = ig_error_set(err, errno, "preparing %s: %s", dir, strerror(errno));
        rm_rf(dir);
        return r;
    }
    pid_t pid = fork();
    if (pid < 0) {
        r = ig_error_set(err, errno, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        rm_rf(dir);
        return r;
    }
    if (pid == 0) {
        close(p[0]);
        child_main(p[1], dir, data, len, lim);
    }
    close(p[1]);

    /* The child's end, within max_seconds: its CPU is bounded by RLIMIT_CPU, but one stuck
     * without using any (on a lock another thread held at the fork, or stopped) would hold this
     * thread, and the push or fetch it serves, for good. Then its report, which is in the pipe
     * (one write, smaller than the pipe's buffer) if it wrote one. */
    bool late = false;
    int wstatus = 0;
    pid_t w;
    _cleanup_close_ int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        r = -errno;
        kill(pid, SIGKILL);
    } else if (poll_until(pidfd, POLLIN, now_usec() + (uint64_t)lim->max_seconds * 1000000) == 0) {
        late = true;
        kill(pid, SIGKILL);
    }
    while ((w = waitpid(pid, &wstatus, 0)) < 0 && errno == EINTR)
        ;
    struct ig_error report = {};
    size_t got = 0;
    while (!late && pidfd >= 0 && got < sizeof(report)) {
        ssize_t n = read(p[0], (char *)&report + got, sizeof(report) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(p[0]);
    if (pidfd < 0)
        r = ig_error_set(err, -r, "watching the unpacking child: %s", strerror(-r));
    else if (late)
        r = ig_error_set(err, ETIMEDOUT, "unpacking the bundle did not end within %u s: stopped",
                         lim->max_seconds);
    else if (got == sizeof(report) && report.code != 0) {
        report.message[sizeof(report.message) - 1] = '\0';
        r = ig_error_set(err, report.code, "%s", report.message);
    } else if (got != sizeof(report) ||
               (w == pid && !(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0))) {
        /* No report: the child was killed, most likely by a limit (RLIMIT_CPU). */
        if (w == pid && WIFSIGNALED(wstatus))
            r = ig_error_set(err, EFBIG, "unpacking the bundle was stopped by %s (a limit)",
                             strsignal(WTERMSIG(wstatus)));
        else
            r = ig_error_set(err, EIO, "unpacking the bundle failed without a report");
    } else
        r = 0;
    /* Back to root's: the container's user may read the bundle, never change it. */
    if (r >= 0 && as_root && nftw(dir, chown_root, 16, FTW_PHYS) != 0)
        r = ig_error_set(err, errno, "taking ownership of %s: %s", dir, strerror(errno));
    if (r < 0) {
        rm_rf(dir);
        return r;
    }
    *ret_dir = TAKE_PTR(dir);
    return 0;
}

int bundle_read_manifest(const char *dir, char **ret_text, size_t *ret_len, struct ig_error *err)
{
    char path[4200];
    struct stat st;

    snprintf(path, sizeof(path), "%s/function.json", dir);
    /* O_NOFOLLOW: a function.json that is a symlink (to /etc/shadow, say) is refused rather than
     * read by the daemon. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return ig_error_set(err, EINVAL, "function.json: missing at the bundle's root");
        if (errno == ELOOP)
            return ig_error_set(err, EINVAL,
                                "function.json: must be a regular file, not a "
                                "symlink");
        return ig_error_set(err, errno, "opening %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) < 0)
        return ig_error_set(err, errno, "stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ig_error_set(err, EINVAL, "function.json: must be a regular file");
    if ((uint64_t)st.st_size > MANIFEST_FILE_MAX)
        return ig_error_set(err, EINVAL, "function.json: over %u bytes", MANIFEST_FILE_MAX);
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return ig_error_set(err, ENOMEM, "out of memory");
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ig_error_set(err, errno, "reading %s: %s", path, strerror(errno));
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret_len = len;
    *ret_text = TAKE_PTR(buf);
    return 0;
}

int bundle_commit(const char *bundles_dir, const char *unpacked_dir, const char *digest,
                  struct ig_error *err)
{
    char path[4200];
    if (!bundle_digest_valid(digest) || bundle_path(bundles_dir, digest, path, sizeof(path)) < 0)
        return ig_error_set(err, EINVAL, "invalid digest");
    if (rename(unpacked_dir, path) == 0)
        return 0;
    int r = -errno;
    if ((r == -EEXIST || r == -ENOTEMPTY) && bundle_exists(bundles_dir, digest)) {
        rm_rf(unpacked_dir);
        return 0;
    }
    return ig_error_set(err, r, "moving the bundle to %s: %s", path, strerror(-r));
}

int bundle_remove(const char *bundles_dir, const char *digest)
{
    char path[4200], tmp[4200];
    if (!bundle_digest_valid(digest) || bundle_path(bundles_dir, digest, path, sizeof(path)) < 0)
        return -EINVAL;
    snprintf(tmp, sizeof(tmp), "%s/tmp", bundles_dir);
    int r = mkdir_p(tmp, 0700);
    if (r < 0)
        return r;
    snprintf(tmp, sizeof(tmp), "%s/tmp/remove-%s", bundles_dir, digest);
    rm_rf(tmp);
    if (rename(path, tmp) < 0)
        return errno == ENOENT ? 0 : -errno;
    return rm_rf(tmp);
}

int bundle_clean_tmp(const char *bundles_dir)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s/tmp", bundles_dir);
    return rm_rf(tmp);
}

/* ---- native modules and the runtime image's ABI ---- */

int bundle_abi_parse(const char *text, size_t len, struct bundle_abi *ret)
{
    struct bundle_abi abi = {};
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *eq = memchr(p, '=', n);
        if (eq) {
            size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
            const char *v = eq + 1;
            if (klen == strlen("python_soabi") && !memcmp(p, "python_soabi", klen)) {
                if (vlen <= strlen("cpython-") || vlen >= sizeof(abi.python_soabi) ||
                    memcmp(v, "cpython-", strlen("cpython-")) != 0)
                    return -EINVAL;
                memcpy(abi.python_soabi, v, vlen);
            } else if (klen == strlen("node_module_version") &&
                       !memcmp(p, "node_module_version", klen)) {
                unsigned version = 0;
                for (size_t i = 0; i < vlen; i++) {
                    if (v[i] < '0' || v[i] > '9' || version > 100000)
                        return -EINVAL;
                    version = version * 10 + (unsigned)(v[i] - '0');
                }
                if (version == 0)
                    return -EINVAL;
                abi.node_module_version = version;
            }
        }
        p += n + 1;
    }
    *ret = abi;
    return 0;
}

int bundle_abi_read(const char *image_dir, struct bundle_abi *ret, struct ig_error *err)
{
    char path[4200];
    _cleanup_free_ char *text = NULL;
    size_t len;
    snprintf(path, sizeof(path), "%s/ignis/abi", image_dir);
    int r = read_file(path, 4096, &text, &len);
    if (r < 0)
        return ig_error_set(err, -r, "%s: %s", path, strerror(-r));
    if (bundle_abi_parse(text, len, ret) < 0)
        return ig_error_set(err, EIO, "%s: malformed (rebuild the image: scripts/build-images)",
                            path);
    return 0;
}

/* The package a file of the bundle belongs to, for messages: the directory under the last
 * node_modules/ (with its @scope), site-packages/ or dist-packages/, else the bundle's top
 * directory (where pip --target installs), else the module's name (the file at the root). */
static void package_of(const char *rel, char *buf, size_t size)
{
    static const char *const roots[] = {"node_modules/", "site-packages/", "dist-packages/"};
    const char *start = rel;
    for (size_t i = 0; i < ARRAY_SIZE(roots); i++)
        for (const char *p = rel; (p = strstr(p, roots[i])); p++)
            if ((p == rel || p[-1] == '/') && p + strlen(roots[i]) > start)
                start = p + strlen(roots[i]);
    const char *slash = strchr(start, '/');
    if (slash && start[0] == '@' && strchr(slash + 1, '/'))
        slash = strchr(slash + 1, '/');
    size_t n = slash ? (size_t)(slash - start) : strcspn(start, ".");
    snprintf(buf, size, "%.*s", (int)n, start);
}

/* Whether NAME.cpython-TAG.so (a CPython extension named for one interpreter) is one that
 * soabi's interpreter cannot load; *ret_tag is its "cpython-TAG". */
static bool python_ext_foreign(const char *name, const char *soabi, char *ret_tag, size_t size)
{
    size_t len = strlen(name);
    if (len < 3 || !streq(name + len - 3, ".so"))
        return false;
    const char *tag = NULL;
    for (const char *p = name; (p = strstr(p, ".cpython-")); p++)
        tag = p + 1;
    if (!tag)
        return false;
    snprintf(ret_tag, size, "%.*s", (int)(name + len - 3 - tag), tag);
    return !streq(ret_tag, soabi);
}

/* The NODE_MODULE_VERSION a NAME.node exports only for: what the version after
 * node_register_module_v is, when no export of the image's version or N-API's is in the file.
 * Returns 0 (loadable, or nothing to tell), the foreign version, or -errno. The names are
 * searched in the whole file rather than its ELF symbol table: a false match needs the
 * exact export name in an addon's data, and the parser stays trivial for hostile input. */
static int node_addon_foreign(const char *path, unsigned want)
{
    static const char napi[] = "napi_register_module_v1", node[] = "node_register_module_v";
    struct stat st;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        return 0;
    const char *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED)
        return -errno;
    size_t size = (size_t)st.st_size;
    unsigned foreign = 0;
    bool loadable = memmem(data, size, napi, strlen(napi)) != NULL;
    for (const char *p = data;
         !loadable && (p = memmem(p, size - (size_t)(p - data), node, strlen(node)));) {
        p += strlen(node);
        unsigned v = 0;
        size_t digits = 0;
        while (p < data + size && *p >= '0' && *p <= '9' && digits < 6) {
            v = v * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        /* The symbol's name ends with its NUL in the string table. */
        if (digits == 0 || p >= data + size || *p != '\0')
            continue;
        if (v == want)
            loadable = true;
        else if (!foreign)
            foreign = v;
    }
    munmap((void *)data, size);
    return loadable ? 0 : (int)foreign;
}

static int check_native(FTSENT *e, size_t rootlen, const struct bundle_abi *abi,
                        struct ig_error *err)
{
    const char *rel = e->fts_path + rootlen, *name = e->fts_name;
    char pkg[256], tag[256];
    size_t len = e->fts_namelen;
    while (*rel == '/')
        rel++;
    if (abi->python_soabi[0] && python_ext_foreign(name, abi->python_soabi, tag, sizeof(tag))) {
        package_of(rel, pkg, sizeof(pkg));
        return ig_error_set(err, EINVAL,
                            "package \"%s\": %.200s is a Python extension built for %s, but the "
                            "python3 image's Python is %s (install the dependencies with that "
                            "Python, or use abi3 or pure-Python wheels)",
                            pkg, rel, tag, abi->python_soabi);
    }
    if (abi->node_module_version && len > 5 && streq(name + len - 5, ".node")) {
        int v = node_addon_foreign(e->fts_path, abi->node_module_version);
        if (v < 0)
            return ig_error_set(err, -v, "reading %.200s: %s", rel, strerror(-v));
        if (v > 0) {
            package_of(rel, pkg, sizeof(pkg));
            return ig_error_set(err, EINVAL,
                                "package \"%s\": %.200s is a Node.js addon built for "
                                "NODE_MODULE_VERSION %d, but the node image's Node.js is %u "
                                "(rebuild it with that Node.js, or use an N-API addon)",
                                pkg, rel, v, abi->node_module_version);
        }
    }
    return 0;
}

int bundle_check_abi(const char *dir, const struct bundle_abi *abi, struct ig_error *err)
{
    if (!abi->python_soabi[0] && !abi->node_module_version)
        return 0;
    char *const paths[] = {(char *)dir, NULL};
    /* Physical: a symlink is an entry of its own, never followed out of the bundle. NOCHDIR:
     * this runs on a thread of the daemon, whose cwd the other threads share. */
    FTS *fts = fts_open(paths, FTS_PHYSICAL | FTS_NOCHDIR, NULL);
    if (!fts)
        return ig_error_set(err, errno, "reading %s: %s", dir, strerror(errno));
    size_t rootlen = strlen(dir);
    int r = 0;
    FTSENT *e = NULL;
    while (r == 0 && (e = fts_read(fts))) {
        if (e->fts_info == FTS_DNR || e->fts_info == FTS_ERR || e->fts_info == FTS_NS)
            r = ig_error_set(err, e->fts_errno, "reading %.200s: %s", e->fts_path,
                             strerror(e->fts_errno));
        else if (e->fts_info == FTS_F)
            r = check_native(e, rootlen, abi, err);
    }
    if (r == 0 && errno != 0 && !e)
        r = ig_error_set(err, errno, "reading %s: %s", dir, strerror(errno));
    fts_close(fts);
    return r;
}

struct membuf {
    char *data;
    size_t len, cap, max;
};

static la_ssize_t membuf_write(struct archive *a, void *userdata, const void *buf, size_t n)
{
    struct membuf *m = userdata;
    if (n > m->max - m->len) {
        archive_set_error(a, EFBIG, "bundle over %zu bytes", m->max);
        return -1;
    }
    if (grow_buffer(&m->data, &m->cap, m->len + n) < 0) {
        archive_set_error(a, ENOMEM, "out of memory");
        return -1;
    }
    memcpy(m->data + m->len, buf, n);
    m->len += n;
    return (la_ssize_t)n;
}

static void archive_entry_freep(struct archive_entry **e)
{
    if (*e)
        archive_entry_free(*e);
}

static int pack_entry(struct archive *d, struct archive *w, struct archive_entry *e,
                      const char *rel, struct ig_error *err)
{
    mode_t type = archive_entry_filetype(e);
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return ig_error_set(err, EINVAL, "%s: not a file, directory or symlink", rel);
    archive_entry_set_pathname(e, rel);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_uname(e, "root");
    archive_entry_set_gname(e, "root");
    /* Bundles are content-addressed: the same tree must pack to the same bytes. Reading a file
     * moves its atime (relatime), and ctime and sub-second times say nothing about content. */
    archive_entry_unset_atime(e);
    archive_entry_unset_ctime(e);
    archive_entry_unset_birthtime(e);
    archive_entry_set_mtime(e, archive_entry_mtime(e), 0);
    if (archive_write_header(w, e) < ARCHIVE_OK)
        return ig_error_set(err, archive_errno(w) ? archive_errno(w) : EIO, "%s: %s", rel,
                            archive_error_string(w));
    if (type != AE_IFREG)
        return 0;
    char buf[65536];
    for (;;) {
        la_ssize_t n = archive_read_data(d, buf, sizeof(buf));
        if (n < 0)
            return ig_error_set(err, archive_errno(d) ? archive_errno(d) : EIO, "%s: %s", rel,
                                archive_error_string(d));
        if (n == 0)
            return 0;
        if (archive_write_data(w, buf, (size_t)n) < 0)
            return ig_error_set(err, archive_errno(w) ? archive_errno(w) : EIO, "%s: %s", rel,
                                archive_error_string(w));
    }
}

int bundle_pack_dir(const char *dir, size_t max, char **ret, size_t *ret_len, struct ig_error *err)
{
    _cleanup_(archive_write_freep) struct archive *w = archive_write_new();
    _cleanup_(archive_freep) struct archive *d = archive_read_disk_new();
    struct membuf m = {.max = max};
    char root[4096];
    int r = 0;

    if (!w || !d)
        return ig_error_set(err, ENOMEM, "out of memory");
    snprintf(root, sizeof(root), "%s", dir);
    for (size_t n = strlen(root); n > 1 && root[n - 1] == '/'; n--)
        root[n - 1] = '\0';
    size_t rootlen = strlen(root);
    archive_write_add_filter_gzip(w);
    /* No packing time in the gzip header either (same tree, same digest). */
    archive_write_set_filter_option(w, "gzip", "timestamp", NULL);
    archive_write_set_format_pax_restricted(w);
    if (archive_write_open(w, &m, NULL, membuf_write, NULL) != ARCHIVE_OK)
        return ig_error_set(err, EIO, "packing: %s", archive_error_string(w));
    /* Physical: a symlink is packed as a symlink, never followed out of the tree. */
    archive_read_disk_set_symlink_physical(d);
    if (archive_read_disk_open(d, root) != ARCHIVE_OK) {
        r = ig_error_set(err, archive_errno(d) ? archive_errno(d) : EIO, "%s: %s", root,
                         archive_error_string(d));
        goto out;
    }
    for (;;) {
        _cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
        int q = archive_read_next_header2(d, e);
        if (q == ARCHIVE_EOF)
            break;
        if (q < ARCHIVE_WARN) {
            r = ig_error_set(err, archive_errno(d) ? archive_errno(d) : EIO, "%s: %s", root,
                             archive_error_string(d));
            goto out;
        }
        archive_read_disk_descend(d);
        const char *path = archive_entry_pathname(e);
        if (!path || strncmp(path, root, rootlen) != 0)
            continue;
        const char *rel = path + rootlen;
        while (*rel == '/')
            rel++;
        if (!*rel)
            continue; /* the root itself */
        if ((r = pack_entry(d, w, e, rel, err)) < 0)
            goto out;
    }
    if (archive_write_close(w) != ARCHIVE_OK)
        r = ig_error_set(err, archive_errno(w) ? archive_errno(w) : EIO, "packing %s: %s", root,
                         archive_error_string(w));
out:
    if (r < 0 || m.len > max) {
        free(m.data);
        if (r >= 0)
            r = ig_error_set(err, EFBIG, "bundle over %zu bytes", max);
        return r;
    }
    *ret = m.data;
    *ret_len = m.len;
    return 0;
}

int bundle_peek_manifest(const void *data, size_t len, char **ret_text, size_t *ret_len,
                         struct ig_error *err)
{
    _cleanup_(archive_freep) struct archive *a = archive_read_new();
    struct archive_entry *e;

    if (!a)
        return ig_error_set(err, ENOMEM, "out of memory");
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK)
        return ig_error_set(err, EINVAL, "not a gzip-compressed tar: %s", archive_error_string(a));
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            return ig_error_set(err, ENOENT, "function.json: missing at the bundle's root");
        if (r < ARCHIVE_WARN)
            return ig_error_set(err, EINVAL, "not a gzip-compressed tar: %s",
                                archive_error_string(a));
        const char *p = archive_entry_pathname(e);
        if (!p || (!streq(p, "function.json") && !streq(p, "./function.json")))
            continue;
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
            return ig_error_set(err, EINVAL, "function.json: must be a regular file");
        if (archive_entry_size(e) > (la_int64_t)MANIFEST_FILE_MAX)
            return ig_error_set(err, EINVAL, "function.json: over %u bytes", MANIFEST_FILE_MAX);
        size_t size = (size_t)archive_entry_size(e);
        _cleanup_free_ char *buf = malloc(size + 1);
        if (!buf)
            return ig_error_set(err, ENOMEM, "out of memory");
        la_ssize_t n = archive_read_data(a, buf, size);
        if (n < 0 || (size_t)n != size)
            return ig_error_set(err, EINVAL, "function.json: %s",
                                n < 0 ? archive_error_string(a) : "truncated");
        buf[size] = '\0';
        *ret_len = size;
        *ret_text = TAKE_PTR(buf);
        return 0;
    }
}
