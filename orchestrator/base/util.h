/* Small helpers shared by every module: cleanup attributes, ownership hand-off, the error
 * object that carries a reason to whoever must tell a human, and time. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Ownership hand-off, as systemd's TAKE_PTR/TAKE_FD: returns the value and clears the source so
 * the cleanup attribute on it does nothing. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _p = (p);                                                                    \
        (p) = NULL;                                                                                \
        _p;                                                                                        \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _fd = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _fd;                                                                                       \
    })

static inline void freep(void *p)
{
    free(*(void **)p);
}
static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}
#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(freep)
#define _cleanup_close_  _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _printf_(a, b)   __attribute__((format(printf, a, b)))
#define _unused_         __attribute__((unused))

/* An error a caller can show to a person: the errno-style code and a message that already names
 * what failed. Library code fills it and returns -code; whoever handles the failure logs it or
 * puts it in a reply, once. */
struct ig_error {
    int code; /* positive errno value */
    /* What failed in the domain's own words ("invalid_manifest", "queue_full"), a static string,
     * or NULL. The API layer sends it as its reply's error code (and picks the status from
     * code), so clients can tell apart failures that share an errno. */
    const char *reason;
    char message[512];
};

/* Sets err (when not NULL and not already set: the first error wins, as crun's tmp_err) and
 * returns -code, so a caller can write `return ig_error_set(err, EINVAL, "...")`. */
int ig_error_set(struct ig_error *err, int code, const char *fmt, ...) _printf_(3, 4);
/* ig_error_set with a reason (above). */
int ig_error_set_reason(struct ig_error *err, int code, const char *reason, const char *fmt, ...)
    _printf_(4, 5);
/* Prefixes the message with context ("opening store: ..."). */
void ig_error_prefix(struct ig_error *err, const char *fmt, ...) _printf_(2, 3);
static inline void ig_error_clear(struct ig_error *err)
{
    err->code = 0;
    err->reason = NULL;
    err->message[0] = '\0';
}

/* Monotonic and wall clocks in microseconds; the calling thread's CPU time in nanoseconds. */
uint64_t now_usec(void);
/* Polls fd for events until deadline_us (now_usec's clock; UINT64_MAX: none), EINTR retried:
 * 1 once fd is ready, 0 at the deadline, or -errno. */
int poll_until(int fd, short events, uint64_t deadline_us);
uint64_t wall_usec(void);
uint64_t thread_cpu_ns(void);
/* 64 random bits (random_bytes), for jitter. */
uint64_t random_u64(void);

/* n bytes from the kernel's CSPRNG (getrandom, blocking only before it is seeded at boot). Aborts
 * if the kernel fails, which it does not after boot: ids and tokens must never repeat. */
void random_bytes(void *buf, size_t n);
/* Lower-case hex of n bytes into ret (2n + 1 bytes, NUL-terminated). */
void hex_encode(const void *data, size_t n, char *ret);
/* Whether s is exactly len lower-case hex digits. */
bool hex_valid(const char *s, size_t len);

/* A decimal count from min to max, digits only ("12"; not "-1", "1e3", " 1" or ""). */
int parse_count(const char *value, unsigned long min, unsigned long max, unsigned long *ret);

/* A duration: 1 to 12 digits and a unit, s, m, h or d ("45s", "30m", "12h", "7d"), in seconds.
 * -EINVAL for anything else. */
int parse_duration_s(const char *text, int64_t *ret_s);

/* Wall-clock microseconds as RFC 3339 UTC with milliseconds: "2026-11-28T04:10:46.646Z". */
void format_time_ms(uint64_t usec, char buf[32]);

/* mkdir -p with the given mode for each created component. Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
/* Removes a tree (files, directories; does not follow symlinks). Returns 0 or -errno. */
int rm_rf(const char *path);

/* Grows *data (capacity *cap bytes) to hold at least need bytes, doubling from 4 KiB. Returns 0,
 * or -ENOMEM with *data and *cap unchanged. */
int grow_buffer(char **data, size_t *cap, size_t need);

/* Reads a whole small file into a NUL-terminated buffer (at most max bytes). */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* Writes a string to an existing file (cgroup and proc files). Returns 0 or -errno. */
int write_file(const char *path, const char *text);

/* The daemon instance's id: 16 hex digits of FNV-1a-64 over the state dir's absolute path. It
 * names the daemon's cgroup subtree (`ignis-<id>`), so a restart with the same state dir finds
 * what an earlier run left, and two daemons with different state dirs never meet. */
int instance_id(const char *state_dir, char ret[17]);

bool streq(const char *a, const char *b);
bool startswith(const char *s, const char *prefix);

/* Proleptic Gregorian calendar arithmetic without time zones or libc state (H. Hinnant's
 * days_from_civil / civil_from_days): days since 1970-01-01 for a date, and back. Used by the
 * RFC 3339 parser (cloudevents) and by cron. */
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);
/* 28 to 31: the days of month m (1-12) of year y. */
int days_in_month(int64_t y, unsigned m);
void civil_from_days(int64_t days, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d);
