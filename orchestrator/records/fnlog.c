#include "records/fnlog.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

/* How long records may wait in memory before they are written, and how much of them. */
#define FLUSH_DELAY_US 100000
#define PENDING_MAX    (256 * 1024)
/* Log files kept open at once, least recently written closed first: one per function for ever
 * ran a daemon with a thousand functions out of fds. */
#define OPEN_MAX 16
/* A follower that reads slower than the function writes loses records past this. */
#define FOLLOWER_MAX (4 * 1024 * 1024)

struct buf {
    char *data;
    size_t len, cap, off;
};

struct lfn {
    char name[128];
    int fd; /* current.jsonl, O_APPEND; -1 while closed (in L.open while open) */
    uint64_t size;
    TAILQ_ENTRY(lfn) open_link;
    struct buf pending;
    LIST_HEAD(, fnlog_follower) followers;
    struct lfn *next;
};

struct fnlog_follower {
    void (*wake)(void *userdata); /* there is more to read, or the follow ended */
    void *userdata;
    struct lfn *lfn;
    char inv[INV_ID_LEN + 1]; /* "" for every invocation */
    struct buf out;
    bool lagged, ended;
    LIST_ENTRY(fnlog_follower) link;
};

static struct {
    struct loop *loop;
    char dir[4200]; /* STATE_DIR/logs */
    size_t invocation_cap, file_max;
    struct lfn *fns;
    TAILQ_HEAD(, lfn) open; /* the lfns whose fd is open, least recently written first */
    size_t nopen;
    struct loop_timer *flush_timer;
} L = {.open = TAILQ_HEAD_INITIALIZER(L.open)};

static int buf_add(struct buf *b, const char *s, size_t n)
{
    /* What was read is dropped once it is all of it, or 64 KiB: a reader that never quite
     * catches up must not make the buffer grow without end. */
    if (b->off > 0 && (b->off == b->len || b->off >= 65536)) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (grow_buffer(&b->data, &b->cap, b->len + n + 1) < 0)
        return -ENOMEM;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void buf_done(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static void file_path(const struct lfn *f, const char *which, char *out, size_t size)
{
    snprintf(out, size, "%s/%s/%s.jsonl", L.dir, f->name, which);
}

static void lfn_close(struct lfn *f)
{
    if (f->fd < 0)
        return;
    close(f->fd);
    f->fd = -1;
    TAILQ_REMOVE(&L.open, f, open_link);
    L.nopen--;
}

/* Opens current.jsonl, closing the least recently written file past OPEN_MAX; out of fds, every
 * other log file is closed and the open tried once more (logs yield their fds first). */
static void lfn_open(struct lfn *f)
{
    char path[4600];
    if (L.nopen >= OPEN_MAX)
        lfn_close(TAILQ_FIRST(&L.open));
    snprintf(path, sizeof(path), "%s/%s", L.dir, f->name);
    mkdir_p(path, 0750);
    file_path(f, "current", path, sizeof(path));
    f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (f->fd < 0 && (errno == EMFILE || errno == ENFILE) && L.nopen > 0) {
        while (!TAILQ_EMPTY(&L.open))
            lfn_close(TAILQ_FIRST(&L.open));
        f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    }
    if (f->fd < 0)
        return;
    struct stat st;
    f->size = fstat(f->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    TAILQ_INSERT_TAIL(&L.open, f, open_link);
    L.nopen++;
}

/* Writes what is pending; rotates current into previous past file_max. Errors are logged and
 * the records dropped: logs never hold the loop or the function back. */
static void lfn_write(struct lfn *f)
{
    if (f->pending.len == 0)
        return;
    if (f->fd < 0)
        lfn_open(f);
    if (f->fd >= 0 && f->size + f->pending.len > L.file_max) {
        char path[4600], prev[4600];
        file_path(f, "current", path, sizeof(path));
        file_path(f, "previous", prev, sizeof(prev));
        lfn_close(f);
        if (rename(path, prev) < 0)
            unlink(path);
        lfn_open(f);
    }
    if (f->fd >= 0) {
        TAILQ_REMOVE(&L.open, f, open_link); /* the most recently written now */
        TAILQ_INSERT_TAIL(&L.open, f, open_link);
        ssize_t n = write(f->fd, f->pending.data, f->pending.len);
        if (n < 0 || (size_t)n != f->pending.len)
            log_warn("writing function logs failed", "function=%s error=\"%s\"", f->name,
                     n < 0 ? strerror(errno) : "short write");
        if (n > 0)
            f->size += (uint64_t)n;
    }
    f->pending.len = f->pending.off = 0;
}

static void on_flush(struct loop *l, struct loop_timer *t, void *userdata)
{
    L.flush_timer = NULL;
    fnlog_flush();
}

static struct lfn *lfn_get(const char *name)
{
    for (struct lfn *f = L.fns; f; f = f->next)
        if (streq(f->name, name))
            return f;
    struct lfn *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->fd = -1;
    LIST_INIT(&f->followers);
    f->next = L.fns;
    L.fns = f;
    return f;
}

int fnlog_init(struct loop *l, const char *state_dir, size_t invocation_cap, size_t file_max)
{
    L.loop = l;
    snprintf(L.dir, sizeof(L.dir), "%s/logs", state_dir);
    L.invocation_cap = invocation_cap ? invocation_cap : FNLOG_DEFAULT_INVOCATION_CAP;
    L.file_max = file_max ? file_max : FNLOG_DEFAULT_FILE_MAX;
    return 0; /* the logs dir is made with the first record written */
}

void fnlog_flush(void)
{
    for (struct lfn *f = L.fns; f; f = f->next)
        lfn_write(f);
}

void fnlog_end_streams(void)
{
    for (struct lfn *f = L.fns; f; f = f->next) {
        struct fnlog_follower *fo;
        LIST_FOREACH(fo, &f->followers, link)
        {
            fo->ended = true;
            fo->wake(fo->userdata);
        }
    }
}

void fnlog_free(void)
{
    if (L.flush_timer)
        loop_cancel_timer(L.loop, L.flush_timer);
    L.flush_timer = NULL;
    while (L.fns) {
        struct lfn *f = L.fns;
        L.fns = f->next;
        lfn_write(f);
        /* Followers are gone by now (their readers closed them), but be safe. */
        struct fnlog_follower *fo;
        while ((fo = LIST_FIRST(&f->followers))) {
            LIST_REMOVE(fo, link);
            fo->lfn = NULL;
        }
        lfn_close(f);
        buf_done(&f->pending);
        free(f);
    }
    L.loop = NULL; /* later events (a worker freed after this) are dropped */
}

static bool follower_wants(const struct fnlog_follower *fo, const char *inv_id)
{
    return !fo->inv[0] || (inv_id && streq(fo->inv, inv_id));
}

/* One record: to the pending batch and to every follower that wants it. */
static void emit(const char *function, const char *inv_id, const char *stream, const char *text,
                 size_t len, bool concurrent, bool truncated)
{
    struct lfn *f = lfn_get(function);
    if (!f)
        return;
    uint64_t us = wall_usec();
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(us % 1000000));
    /* cJSON escapes the text (control characters, quotes; invalid UTF-8 passes through as is). */
    char *copy = malloc(len + 1);
    if (copy) {
        /* A NUL byte would end the JSON string early: it becomes a '?'. */
        for (size_t i = 0; i < len; i++)
            copy[i] = text[i] ? text[i] : '?';
        copy[len] = '\0';
    }
    cJSON *t = copy ? cJSON_CreateString(copy) : NULL;
    free(copy);
    char *esc = t ? cJSON_PrintUnformatted(t) : NULL;
    cJSON_Delete(t);
    if (!esc)
        return;
    char head[256];
    int hn = snprintf(head, sizeof(head),
                      "{\"ts_us\":%llu,\"time\":\"%s\",\"function\":\"%s\",\"invocation\":%s%s%s,"
                      "\"stream\":\"%s\",\"text\":",
                      (unsigned long long)us, when, function, inv_id ? "\"" : "",
                      inv_id ? inv_id : "null", inv_id ? "\"" : "", stream);
    const char *tail = concurrent && truncated ? ",\"concurrent\":true,\"truncated\":true}\n"
                       : concurrent            ? ",\"concurrent\":true}\n"
                       : truncated             ? ",\"truncated\":true}\n"
                                               : "}\n";
    size_t start = f->pending.len;
    int r = buf_add(&f->pending, head, (size_t)hn);
    if (r == 0)
        r = buf_add(&f->pending, esc, strlen(esc));
    if (r == 0)
        r = buf_add(&f->pending, tail, strlen(tail));
    free(esc);
    if (r < 0) {
        f->pending.len = start; /* no half record: the record is lost, not the file's lines */
        return;
    }
    const char *rec = f->pending.data + start;
    size_t rec_len = f->pending.len - start;

    struct fnlog_follower *fo;
    LIST_FOREACH(fo, &f->followers, link)
    {
        if (!follower_wants(fo, inv_id))
            continue;
        if (fo->out.len - fo->out.off + rec_len > FOLLOWER_MAX) {
            fo->lagged = true;
            continue;
        }
        buf_add(&fo->out, rec, rec_len);
        fo->wake(fo->userdata);
    }
    if (f->pending.len >= PENDING_MAX)
        lfn_write(f);
    else if (!L.flush_timer)
        loop_add_timer(L.loop, now_usec() + FLUSH_DELAY_US, on_flush, NULL, &L.flush_timer);
}

void fnlog_platform(const char *function, const char *inv_id, const char *fmt, ...)
{
    if (!L.loop)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    emit(function, inv_id, "platform", text, strlen(text), false, false);
}

static const char *stream_name(enum fnlog_stream s)
{
    return s == FNLOG_STDOUT ? "stdout" : "stderr";
}

static void flush_part(const char *function, struct fnlog_src *src, enum fnlog_stream s,
                       bool concurrent)
{
    if (src->plen[s] == 0)
        return;
    emit(function, src->inv[0] ? src->inv : NULL, stream_name(s), src->part[s], src->plen[s],
         concurrent, false);
    src->plen[s] = 0;
    src->unsynced = true;
}

void fnlog_src_flush(const char *function, struct fnlog_src *src, bool concurrent)
{
    if (!L.loop)
        return;
    flush_part(function, src, FNLOG_STDOUT, concurrent || src->concurrent);
    flush_part(function, src, FNLOG_STDERR, concurrent || src->concurrent);
}

void fnlog_output(const char *function, struct fnlog_src *src, const char *inv_id, bool concurrent,
                  enum fnlog_stream stream, const char *buf, size_t n)
{
    if (!L.loop)
        return;
    if (!streq(src->inv, inv_id ? inv_id : "")) {
        /* A new invocation: what is left of the last one's lines is the last one's. */
        fnlog_src_flush(function, src, concurrent);
        snprintf(src->inv, sizeof(src->inv), "%s", inv_id ? inv_id : "");
        src->bytes = 0;
        src->truncated = false;
    }
    src->concurrent = concurrent;
    if (src->truncated)
        return;
    size_t take = n;
    if (src->bytes + n > L.invocation_cap)
        take = L.invocation_cap - src->bytes;
    src->bytes += take;
    for (size_t i = 0; i < take;) {
        const char *nl = memchr(buf + i, '\n', take - i);
        size_t seg = nl ? (size_t)(nl - (buf + i)) : take - i;
        size_t room = FNLOG_LINE_MAX - src->plen[stream];
        size_t copy = seg < room ? seg : room;
        memcpy(src->part[stream] + src->plen[stream], buf + i, copy);
        src->plen[stream] += copy;
        i += copy;
        if (src->plen[stream] == FNLOG_LINE_MAX || (nl && i == (size_t)(nl - buf))) {
            emit(function, inv_id, stream_name(stream), src->part[stream], src->plen[stream],
                 concurrent, false);
            src->plen[stream] = 0;
            src->unsynced = true;
            if (nl && i == (size_t)(nl - buf))
                i++; /* the newline itself */
        }
    }
    if (take < n) {
        fnlog_src_flush(function, src, concurrent);
        src->truncated = true;
        char text[160];
        snprintf(text, sizeof(text),
                 "output truncated: the invocation wrote more than %zu bytes; the rest was "
                 "dropped",
                 L.invocation_cap);
        emit(function, inv_id, "platform", text, strlen(text), concurrent, true);
        src->unsynced = true;
    }
}

/* ---- GET /v1/functions/{name}/logs ---- */

/* The record's ts_us (our own writer's layout); 0 for a line that is not a record. */
static uint64_t record_ts(const char *line, size_t len)
{
    if (len < 10 || !startswith(line, "{\"ts_us\":"))
        return 0;
    return strtoull(line + 9, NULL, 10);
}

static bool record_of(const char *line, size_t len, const char *inv)
{
    if (!inv[0])
        return true;
    char key[INV_ID_LEN + 32];
    int kn = snprintf(key, sizeof(key), "\"invocation\":\"%s\"", inv);
    return memmem(line, len, key, (size_t)kn) != NULL;
}

#define TAIL_BLOCK (64 * 1024)

/* Where the last want records of inv at or after since_us begin in one log file: scans it
 * backwards, a block at a time, counting them into *found, and sets *ret_start to the offset of
 * the earliest one counted; it stops early at the first record before since_us (the files are in
 * time order). Returns whether an older file may hold more (the scan reached this one's start).
 * A last line without its newline is being written: not a record yet. */
static bool find_start(const char *path, const char *inv, uint64_t since_us, size_t want,
                       size_t *found, uint64_t *ret_start)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *ret_start = 0;
    if (fd < 0 || fstat(fd, &st) < 0)
        return true;
    /* w holds the file's bytes [pos, limit): what is read and not yet looked at. */
    uint64_t pos = (uint64_t)st.st_size, limit = pos;
    _cleanup_free_ char *w = NULL;
    *ret_start = limit;
    while (*found < want) {
        size_t have = (size_t)(limit - pos);
        const char *nl = have > 1 ? memrchr(w, '\n', have - 1) : NULL;
        if (!nl && pos > 0) {
            size_t b = pos < TAIL_BLOCK ? (size_t)pos : TAIL_BLOCK;
            char *nw = malloc(b + have);
            if (!nw || pread(fd, nw, b, (off_t)(pos - b)) != (ssize_t)b) {
                free(nw);
                return false;
            }
            if (have)
                memcpy(nw + b, w, have);
            free(w);
            w = nw;
            pos -= b;
            continue;
        }
        if (have == 0)
            return true; /* the file's start */
        const char *line = nl ? nl + 1 : w;
        size_t len = (size_t)(w + have - line);
        limit -= len;
        if (line[len - 1] != '\n')
            continue;
        uint64_t ts = record_ts(line, len);
        if (ts && ts < since_us)
            return false;
        if (ts && record_of(line, len, inv)) {
            ++*found;
            *ret_start = limit;
        }
    }
    return false;
}

/* Appends the records of inv at or after since_us from offset from of a log file to out. */
static int read_forward(struct buf *out, const char *path, uint64_t from, const char *inv,
                        uint64_t since_us)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size <= from)
        return 0;
    size_t len = (size_t)((uint64_t)st.st_size - from);
    _cleanup_free_ char *text = malloc(len);
    if (!text)
        return -ENOMEM;
    ssize_t n = pread(fd, text, len, (off_t)from);
    len = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        if (!nl)
            break; /* being written: not a record yet */
        size_t l = (size_t)(nl - (text + i)) + 1;
        uint64_t ts = record_ts(text + i, l);
        if (ts && ts >= since_us && record_of(text + i, l, inv) && buf_add(out, text + i, l) < 0)
            return -ENOMEM;
        i += l;
    }
    return 0;
}

int fnlog_read(const char *function, const char *inv, uint64_t since_us, size_t tail, char **ret,
               size_t *ret_len)
{
    char cur[4600], prev[4600];
    uint64_t from_cur = 0, from_prev = 0;
    bool older = true;
    struct buf out = {};

    if (!inv)
        inv = "";
    snprintf(cur, sizeof(cur), "%s/%s/current.jsonl", L.dir, function);
    snprintf(prev, sizeof(prev), "%s/%s/previous.jsonl", L.dir, function);
    /* A tail: where it begins, found from the end; then every read goes forwards from there. */
    if (tail != SIZE_MAX) {
        size_t found = 0;
        older = find_start(cur, inv, since_us, tail, &found, &from_cur);
        if (older)
            find_start(prev, inv, since_us, tail, &found, &from_prev);
    }
    int r = 0;
    if (older)
        r = read_forward(&out, prev, from_prev, inv, since_us);
    if (r == 0)
        r = read_forward(&out, cur, from_cur, inv, since_us);
    if (r == 0 && !out.data)
        r = (out.data = strdup("")) ? 0 : -ENOMEM;
    if (r < 0) {
        buf_done(&out);
        return r;
    }
    *ret = out.data;
    *ret_len = out.len;
    return 0;
}

bool fnlog_known(const char *function)
{
    char dir[4400];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/%s", L.dir, function);
    return stat(dir, &st) == 0;
}

int fnlog_sync(const char *function)
{
    struct lfn *f = lfn_get(function);
    if (!f)
        return -ENOMEM;
    lfn_write(f);
    return 0;
}

int fnlog_src_sync(const char *function, struct fnlog_src *src)
{
    if (!src->unsynced)
        return 0;
    src->unsynced = false;
    return fnlog_sync(function);
}

int fnlog_follow(const char *function, const char *inv, char *history, size_t len,
                 void (*wake)(void *userdata), void *userdata, struct fnlog_follower **ret)
{
    struct lfn *f = lfn_get(function);
    struct fnlog_follower *fo = f ? calloc(1, sizeof(*fo)) : NULL;
    if (!fo)
        return -ENOMEM;
    fo->wake = wake;
    fo->userdata = userdata;
    fo->lfn = f;
    fo->out = (struct buf){.data = history, .len = len, .cap = len + 1};
    if (len > FOLLOWER_MAX) {
        /* A follower starts with at most its buffer's worth of history, from a record's start:
         * many followers must not each hold a function's whole log. */
        const char *nl = memchr(history + len - FOLLOWER_MAX, '\n', FOLLOWER_MAX);
        fo->out.off = nl ? (size_t)(nl + 1 - history) : len;
    }
    snprintf(fo->inv, sizeof(fo->inv), "%s", inv ? inv : "");
    LIST_INSERT_HEAD(&f->followers, fo, link);
    *ret = fo;
    return 0;
}

ssize_t fnlog_follower_read(struct fnlog_follower *fo, char *out, size_t max)
{
    size_t avail = fo->out.len - fo->out.off;
    if (avail == 0 && fo->lagged) {
        static const char msg[] = "{\"stream\":\"platform\",\"text\":\"this reader fell behind: "
                                  "records were skipped\",\"truncated\":true}\n";
        fo->lagged = false;
        buf_add(&fo->out, msg, sizeof(msg) - 1);
        avail = fo->out.len - fo->out.off;
    }
    if (avail == 0)
        return fo->ended || !fo->lfn ? -1 : 0;
    size_t n = avail < max ? avail : max;
    memcpy(out, fo->out.data + fo->out.off, n);
    fo->out.off += n;
    return (ssize_t)n;
}

void fnlog_follower_free(struct fnlog_follower *fo)
{
    if (!fo)
        return;
    if (fo->lfn)
        LIST_REMOVE(fo, link);
    buf_done(&fo->out);
    free(fo);
}
