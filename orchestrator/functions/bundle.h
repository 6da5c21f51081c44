/* Function bundles: a gzip tar with function.json at its root, unpacked safely into a
 * content-addressed store, BUNDLES_DIR/<sha256 of the bundle's bytes>/ (docs/architecture.md,
 * "Registry and bundles").
 *
 * Unpacking runs in a child process (libarchive extracts relative to the cwd, which threads
 * share) under rlimits, with libarchive's secure-extraction flags and our own checks on top:
 * symlinks and hardlinks must stay inside the bundle, only files, directories and symlinks are
 * allowed, and sizes, entries, path lengths and the compression ratio are capped. Owners are
 * not restored and modes are normalised (0644/0755, no setuid/setgid/sticky) so the container's
 * unprivileged uid can read everything and nothing gains privileges.
 *
 * These functions block (disk I/O, a child process): call them off the event loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"

#define BUNDLE_DIGEST_LEN 64 /* hex characters of a sha256 */

struct bundle_limits {
    uint64_t max_unpacked_bytes; /* data bytes written, holes of sparse files included */
    uint64_t max_entries;
    size_t max_path;          /* bytes of an entry's path, or of a link's target */
    uint32_t max_ratio;       /* unpacked bytes per compressed byte read so far */
    uint64_t ratio_floor;     /* the ratio is only checked past this many unpacked bytes */
    uint32_t max_cpu_seconds; /* RLIMIT_CPU of the extracting child */
    uint32_t max_seconds;     /* its wall time: killed past it, as one that is stuck would be */
};

/* 250 MB, 10,000 entries, 1,024-byte paths, 200:1 past 8 MiB, 60 s of CPU, 120 s in all. */
extern const struct bundle_limits bundle_default_limits;

/* The sha256 of data as lowercase hex. */
void bundle_digest(const void *data, size_t len, char ret[BUNDLE_DIGEST_LEN + 1]);
/* Whether s is 64 lowercase hex digits (so it can be used as a path component). */
bool bundle_digest_valid(const char *s);

/* BUNDLES_DIR/<digest> into buf. Returns 0 or -ENAMETOOLONG. */
int bundle_path(const char *bundles_dir, const char *digest, char *buf, size_t size);
/* Whether the store holds the bundle (a directory at its content address). */
bool bundle_exists(const char *bundles_dir, const char *digest);

/* Unpacks data into a new directory under BUNDLES_DIR/tmp and returns its path (malloc'd).
 * Content errors (not a gzip tar, a hostile or oversized entry, a limit hit) return -EINVAL,
 * -EFBIG or -E2BIG with err naming the entry and the rule; other errors are the server's. */
int bundle_unpack(const char *bundles_dir, const void *data, size_t len,
                  const struct bundle_limits *lim, char **ret_dir, struct ig_error *err);

/* What bundle_unpack's child runs: unpacks data into the current directory, in this process,
 * with every check and limit above except the child's rlimits and credentials. It changes
 * nothing but the cwd's contents, so only a process with a cwd of its own should call it: the
 * child, and the bundle fuzz target (tests/fuzz/fuzz_bundle.c), which needs the checks in its own
 * process to see their coverage. Returns what bundle_unpack does. */
int bundle_extract(const void *data, size_t len, const struct bundle_limits *lim,
                   struct ig_error *err);

/* Reads function.json from the root of an unpacked bundle (a regular file, not a symlink, at
 * most MANIFEST_FILE_MAX bytes). -EINVAL with err when it is missing or not a regular file. */
int bundle_read_manifest(const char *dir, char **ret_text, size_t *ret_len, struct ig_error *err);

/* Moves an unpacked directory to its content address. When the store already holds the digest
 * (a concurrent push of the same content), the unpacked copy is removed and that is success. */
int bundle_commit(const char *bundles_dir, const char *unpacked_dir, const char *digest,
                  struct ig_error *err);

/* Removes a bundle from the store: first renamed out of its content address (so a half-removed
 * tree is never found there), then deleted. Returns 0 (also when it was not there) or -errno. */
int bundle_remove(const char *bundles_dir, const char *digest);

/* Removes what an interrupted unpack or removal left under BUNDLES_DIR/tmp (at start-up). */
int bundle_clean_tmp(const char *bundles_dir);

/* What a runtime image can load natively, from IMAGE/ignis/abi: the image's build script
 * writes it from the interpreter it copies in (runtime-images/python3/build, node/build), so
 * the daemon never assumes a version. */
struct bundle_abi {
    char python_soabi[64];        /* "cpython-311-x86_64-linux-gnu"; "" when not recorded */
    unsigned node_module_version; /* NODE_MODULE_VERSION (115 for Node.js 20); 0 when not */
};

/* Parses the abi file's text: KEY=VALUE lines, python_soabi and node_module_version (other keys
 * are ignored, for images newer than the daemon). -EINVAL when a value is malformed. */
int bundle_abi_parse(const char *text, size_t len, struct bundle_abi *ret);
/* Reads IMAGE_DIR/ignis/abi. -ENOENT (err set) when the image records none: not built, or
 * built before images recorded it. */
int bundle_abi_read(const char *image_dir, struct bundle_abi *ret, struct ig_error *err);

/* Refuses a native module under dir that abi's runtime could not load, naming its package (the
 * directory under node_modules/, site-packages/ or the bundle's root, where pip --target puts
 * it) and returning -EINVAL; 0 when there is none. Only what abi records is checked:
 *   - Python: an extension is judged by its file name, as CPython's importer does: a
 *     NAME.cpython-TAG.so whose cpython-TAG is not abi->python_soabi (another version, a debug
 *     build, another architecture). NAME.abi3.so and plain NAME.so carry no version: accepted.
 *   - Node.js: a NAME.node is read for the entry points Node.js looks up: a module exporting
 *     only node_register_module_vN with N not abi->node_module_version is refused; an N-API
 *     addon (napi_register_module_v1) is ABI-stable and accepted, and so is an addon exporting
 *     neither (it registers itself from a constructor, which only loading it would tell).
 * Symlinks are not followed: the target is checked where it is in the bundle. */
int bundle_check_abi(const char *dir, const struct bundle_abi *abi, struct ig_error *err);

/* Whether a content error (refused bundle: 400) rather than the server's failure (500). */
bool bundle_error_is_content(int code);

/* The client's side (the CLI, tests). */

/* Packs the tree under dir into a gzip tar (pax) in memory, paths relative to dir, owners
 * root, symlinks kept as symlinks. Fails with -EFBIG past max bytes, and on anything but files,
 * directories and symlinks. */
int bundle_pack_dir(const char *dir, size_t max, char **ret, size_t *ret_len, struct ig_error *err);
/* Reads function.json (or ./function.json) from a gzip tar in memory. -ENOENT when absent. */
int bundle_peek_manifest(const void *data, size_t len, char **ret_text, size_t *ret_len,
                         struct ig_error *err);
