/* Function logs: a function's stdout and stderr, per invocation, and platform events (spawn,
 * reap, timeout, OOM kill) in the same stream. Records are JSON lines
 *   {"ts_us":..., "time":"...Z", "invocation":"id"|null, "stream":"stdout"|"stderr"|"platform",
 *    "text":"...", "concurrent":true (when the container ran more than one), "truncated":true}
 * kept per function under STATE_DIR/logs/<function>/ in two files (current.jsonl, then
 * previous.jsonl) of at most file_max bytes each. Output is capped per invocation (then one
 * record says it was truncated). Loop thread only; disk writes are batched on a timer so a
 * chatty function costs the loop one write per batch, and the pipes are drained whatever the
 * disk does (past the caps the bytes are read and dropped). */
#pragma once

#include "records/invocation.h"
#include "base/loop.h"

#define FNLOG_LINE_MAX               8192
#define FNLOG_DEFAULT_INVOCATION_CAP (256 * 1024)
#define FNLOG_DEFAULT_FILE_MAX       (8 * 1024 * 1024)

enum fnlog_stream { FNLOG_STDOUT, FNLOG_STDERR };

/* A container's output state: the partial line of each stream and the running invocation's
 * byte count. Lives in the pool's worker; zero-initialised is ready. */
struct fnlog_src {
    char inv[INV_ID_LEN + 1]; /* the invocation counted below ("" between invocations) */
    size_t bytes;
    bool truncated;
    bool concurrent; /* the last output came while the container ran more than one */
    char part[2][FNLOG_LINE_MAX];
    size_t plen[2];
    bool unsynced; /* it emitted records since its last fnlog_src_sync */
};

int fnlog_init(struct loop *l, const char *state_dir, size_t invocation_cap, size_t file_max);
/* Ends every follower (their wake hooks run; reads then return -1): before the HTTP server
 * stops. */
void fnlog_end_streams(void);
/* Writes every function's pending records now (tests; before reading the files directly). */
void fnlog_flush(void);
/* Writes what is pending and frees everything (after the HTTP server is freed). */
void fnlog_free(void);

/* Bytes a container wrote. inv_id: the invocation it runs (NULL if none); concurrent: it runs
 * more than one, so the attribution is the oldest's and the record says so. */
void fnlog_output(const char *function, struct fnlog_src *src, const char *inv_id, bool concurrent,
                  enum fnlog_stream stream, const char *buf, size_t n);
/* Emits the partial lines left (the container is going away, or its invocation ended). */
void fnlog_src_flush(const char *function, struct fnlog_src *src, bool concurrent);
/* A platform event in the function's stream. */
void fnlog_platform(const char *function, const char *inv_id, const char *fmt, ...) _printf_(3, 4);

/* The most a tail= may ask for. */
#define FNLOG_TAIL_MAX 100000

/* The function's stored records (previous.jsonl, then current.jsonl) of invocation inv (NULL or
 * "": all) at or after since_us, at most the last tail of them (SIZE_MAX: all), oldest first, as
 * JSON lines in *ret (NUL-terminated; the caller frees it). Reads the files from their end, so a
 * short tail of a long log costs little. 0 or -ENOMEM. */
int fnlog_read(const char *function, const char *inv, uint64_t since_us, size_t tail, char **ret,
               size_t *ret_len);

/* Whether the function has (or had) a log: a function deleted since still has one. */
bool fnlog_known(const char *function);
/* Writes the function's pending records, so that its files tell the whole story: before a
 * read, and before an invocation's outcome is recorded (a kill -9 after that must not lose the
 * output: the 100 ms batch is for output that no outcome waits on). 0 or -ENOMEM. */
int fnlog_sync(const char *function);
/* fnlog_sync, when src emitted records since its last call: a container's output reaches the
 * file before its invocation's outcome, and an invocation that printed nothing costs no write. */
int fnlog_src_sync(const char *function, struct fnlog_src *src);

/* A reader of the records a function writes from now on, after a history it already read. */
struct fnlog_follower;
/* Follows function's records (of invocation inv only, unless NULL or ""), to be read after
 * history (malloc'd, len bytes: taken; only its last 4 MiB are kept, from a record's start).
 * wake(userdata) runs on the loop thread whenever there is more to read and when the follow
 * ends. 0 or -ENOMEM (history is then the caller's). */
int fnlog_follow(const char *function, const char *inv, char *history, size_t len,
                 void (*wake)(void *userdata), void *userdata, struct fnlog_follower **ret);
/* Copies up to max bytes of what there is to read; 0: nothing now (wait for wake); -1: the follow
 * ended. A reader that falls more than 4 MiB behind skips records and is told so in a record. */
ssize_t fnlog_follower_read(struct fnlog_follower *fo, char *out, size_t max);
void fnlog_follower_free(struct fnlog_follower *fo);
