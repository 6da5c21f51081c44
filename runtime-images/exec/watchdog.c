/* ignis exec runtime: the model of OpenFaaS's classic watchdog over the Ignis runtime protocol.
 * For each invocation it runs the bundle's executable (_HANDLER, relative to LAMBDA_TASK_ROOT)
 * with the event on stdin; stdout is the result; a non-zero exit is an error whose message is
 * the tail of stderr. The handler may emit events by writing JSON lines
 * {"type": ..., "data": ..., "datacontenttype": ...} to fd 4 (IGNIS_EVENTS_FD). It serves any
 * number of invocations, one after another, so it works in both lifecycles. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "base/protocol.h"

#define EVENTS_FD      4
#define STDERR_TAIL    4096 /* what the error message keeps of stderr */
#define MESSAGE_TAIL   1024 /* ... of which the last lines go into the message */
#define EVENT_LINE_MAX (1024u * 1024u)

static int proto_fd = PROTO_RUNTIME_FD;
static size_t max_body = PROTO_DEFAULT_MAX_BODY;

static int send_init_error(const char *type, const char *message)
{
    struct proto_msg m = {.type = PROTO_INIT_ERROR,
                          .error_type = proto_str(type),
                          .message = proto_str(message),
                          .trace = proto_str("")};
    fprintf(stderr, "ignis exec: %s: %s\n", type, message);
    return proto_send(proto_fd, &m);
}

static int send_error(struct proto_bytes id, const char *type, const char *message,
                      const char *trace)
{
    struct proto_msg m = {.type = PROTO_ERROR,
                          .id = id,
                          .error_type = proto_str(type),
                          .message = proto_str(message),
                          .trace = proto_str(trace)};
    return proto_send(proto_fd, &m);
}

/* A growable byte buffer with a cap; past the cap it records that it overflowed. */
struct bytes {
    char *data;
    size_t len, cap, max;
    bool overflow;
};

static int bytes_append(struct bytes *b, const char *p, size_t n)
{
    if (b->len + n > b->max) {
        b->overflow = true;
        return 0;
    }
    if (grow_buffer(&b->data, &b->cap, b->len + n + 1) < 0)
        return -ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* The last STDERR_TAIL bytes of stderr, as a ring. */
struct tail {
    char buf[STDERR_TAIL];
    size_t total;
};

static void tail_add(struct tail *t, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t->buf[(t->total + i) % STDERR_TAIL] = p[i];
    t->total += n;
}

/* The last lines of stderr (at most MESSAGE_TAIL bytes, whitespace trimmed), into out. */
static void tail_message(const struct tail *t, char *out, size_t size)
{
    size_t n = t->total < STDERR_TAIL ? t->total : STDERR_TAIL;
    size_t start = t->total - n;
    char lin[STDERR_TAIL + 1];
    for (size_t i = 0; i < n; i++)
        lin[i] = t->buf[(start + i) % STDERR_TAIL];
    while (n > 0 && (lin[n - 1] == '\n' || lin[n - 1] == '\r' || lin[n - 1] == ' '))
        n--;
    lin[n] = '\0';
    const char *p = lin;
    if (n > MESSAGE_TAIL) {
        p = lin + n - MESSAGE_TAIL;
        const char *nl = strchr(p, '\n');
        if (nl && nl[1])
            p = nl + 1; /* start at a line */
    }
    snprintf(out, size, "%s", p);
}

/* One line of the events fd, {"type": "...", "data": any, "datacontenttype": "..."}, passed as
 * written: the controller reads it (base/event_line.h), so the watchdog links no JSON library. */
static void emit_line(struct proto_bytes id, const char *line, size_t len)
{
    struct proto_msg m = {.type = PROTO_EVENT_JSON, .id = id, .body = {line, len}};
    proto_send(proto_fd, &m);
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* The child: the handler with the event on stdin and the events pipe at fd 4. Never returns. */
static _Noreturn void exec_handler(const char *path, const struct proto_msg *m, int in, int out,
                                   int err, int ev)
{
    char *id = proto_strdup(m->id), deadline[32];
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0); /* its own group, so a timeout can kill what it started too */
    if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
        dup2(err, STDERR_FILENO) < 0 || dup2(ev, EVENTS_FD) < 0)
        _exit(126);
    snprintf(deadline, sizeof(deadline), "%llu", (unsigned long long)m->deadline_ms);
    setenv("IGNIS_INVOCATION_ID", id ? id : "", 1);
    setenv("IGNIS_DEADLINE_MS", deadline, 1);
    setenv("IGNIS_EVENTS_FD", "4", 1);
    /* Request headers as OpenFaaS's watchdog passes them: Http_Content_Type=... */
    for (size_t i = 0; i < m->nheaders; i++) {
        char name[300] = "Http_";
        size_t n = 5;
        bool up = true;
        for (size_t j = 0; j < m->headers[i].name.len && n < sizeof(name) - 1; j++) {
            char c = m->headers[i].name.data[j];
            if (c == '-') {
                name[n++] = '_';
                up = true;
            } else {
                name[n++] = up && c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
                up = false;
            }
        }
        name[n] = '\0';
        char *value = proto_strdup(m->headers[i].value);
        if (value)
            setenv(name, value, 1);
    }
    char *const argv[] = {(char *)path, NULL};
    execv(path, argv);
    fprintf(stderr, "ignis exec: cannot run %s: %s\n", path, strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

static int run_one(const char *path, const struct proto_msg *m)
{
    int in[2], out[2], err[2], ev[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
        pipe2(ev, O_CLOEXEC) < 0)
        return send_error(m->id, "Runtime.ExecError", strerror(errno), "");
    pid_t pid = fork();
    if (pid < 0)
        return send_error(m->id, "Runtime.ExecError", strerror(errno), "");
    if (pid == 0)
        exec_handler(path, m, in[0], out[1], err[1], ev[1]);
    setpgid(pid, pid); /* also here: whichever of the two runs first */
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(ev[1]);
    set_nonblock(in[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    struct bytes result = {.max = max_body}, events = {.max = EVENT_LINE_MAX};
    struct tail tail = {};
    size_t written = 0;
    int fds[4] = {in[1], out[0], err[0], ev[0]};
    bool exited = false, timed_out = false, too_large = false;
    int wstatus = 0;

    /* Until the child exited and every output reached end of file. */
    while (!exited || fds[1] >= 0 || fds[2] >= 0 || fds[3] >= 0) {
        struct pollfd pfd[5];
        int map[5], n = 0;
        if (fds[0] >= 0) {
            pfd[n] = (struct pollfd){.fd = fds[0], .events = POLLOUT};
            map[n++] = 0;
        }
        for (int i = 1; i < 4; i++)
            if (fds[i] >= 0) {
                pfd[n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                map[n++] = i;
            }
        if (!exited && pidfd >= 0) {
            pfd[n] = (struct pollfd){.fd = pidfd, .events = POLLIN};
            map[n++] = 4;
        }
        int timeout = -1;
        if (m->deadline_ms && !timed_out) {
            int64_t left = (int64_t)m->deadline_ms - (int64_t)(wall_usec() / 1000);
            timeout = left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
        }
        if (exited)
            timeout = timeout < 0 || timeout > 2000 ? 2000 : timeout;
        int r = poll(pfd, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (r == 0) {
            if (exited) {
                /* Something it started still holds the pipes: end its group. */
                kill(-pid, SIGKILL);
                for (int i = 1; i < 4; i++)
                    if (fds[i] >= 0) {
                        close(fds[i]);
                        fds[i] = -1;
                    }
                break;
            }
            timed_out = true;
            kill(-pid, SIGKILL);
            continue;
        }
        for (int k = 0; k < n && r > 0; k++) {
            if (!pfd[k].revents)
                continue;
            int i = map[k];
            if (i == 4) {
                if (waitpid(pid, &wstatus, WNOHANG) == pid)
                    exited = true;
                continue;
            }
            if (i == 0) {
                ssize_t w = write(fds[0], m->body.data + written, m->body.len - written);
                if (w > 0)
                    written += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == m->body.len) {
                    close(fds[0]); /* done, or the handler does not read its stdin */
                    fds[0] = -1;
                }
                continue;
            }
            char buf[65536];
            ssize_t got = read(fds[i], buf, sizeof(buf));
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) {
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            if (i == 1) {
                bytes_append(&result, buf, (size_t)got);
                if (result.overflow && !too_large) {
                    too_large = true;
                    kill(-pid, SIGKILL);
                }
            } else if (i == 2) {
                (void)!write(STDERR_FILENO, buf, (size_t)got);
                tail_add(&tail, buf, (size_t)got);
            } else {
                bytes_append(&events, buf, (size_t)got);
                char *nl;
                while (events.len && (nl = memchr(events.data, '\n', events.len))) {
                    emit_line(m->id, events.data, (size_t)(nl - events.data));
                    size_t rest = events.len - (size_t)(nl + 1 - events.data);
                    memmove(events.data, nl + 1, rest);
                    events.len = rest;
                }
                if (events.overflow) {
                    fprintf(stderr, "ignis exec: an event line over %u bytes was dropped\n",
                            EVENT_LINE_MAX);
                    events.len = 0;
                    events.overflow = false;
                }
            }
        }
        if (pidfd < 0 && !exited && waitpid(pid, &wstatus, WNOHANG) == pid)
            exited = true;
    }
    if (!exited)
        waitpid(pid, &wstatus, 0);
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (pidfd >= 0)
        close(pidfd);
    if (events.len)
        emit_line(m->id, events.data, events.len); /* a last line without its newline */

    int r;
    char message[MESSAGE_TAIL + 128], trace[64];
    if (WIFEXITED(wstatus))
        snprintf(trace, sizeof(trace), "exit status %d", WEXITSTATUS(wstatus));
    else
        snprintf(trace, sizeof(trace), "killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    if (timed_out) {
        /* Lambda's wording, with the function's timeout from the environment. */
        const char *t = getenv("IGNIS_FUNCTION_TIMEOUT_MS");
        snprintf(message, sizeof(message), "Task timed out after %.2f seconds",
                 t ? atof(t) / 1000.0 : 0.0);
        r = send_error(m->id, "Sandbox.Timedout", message, trace);
    } else if (too_large) {
        snprintf(message, sizeof(message),
                 "Response payload size exceeded maximum allowed payload size (%zu bytes).",
                 max_body);
        r = send_error(m->id, "Function.ResponseSizeTooLarge", message, trace);
    } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
        struct proto_msg res = {.type = PROTO_RESULT,
                                .id = m->id,
                                .body = {result.data ? result.data : "", result.len},
                                .content_type = proto_str("")};
        r = proto_send(proto_fd, &res);
    } else {
        tail_message(&tail, message, sizeof(message));
        if (!message[0])
            snprintf(message, sizeof(message), "%s", trace);
        r = send_error(m->id, "Function.ExitError", message, trace);
    }
    free(result.data);
    free(events.data);
    return r;
}

int main(int argc, char **argv)
{
    const char *root = getenv("LAMBDA_TASK_ROOT"), *handler = getenv("_HANDLER");
    const char *fdenv = getenv("IGNIS_RUNTIME_FD"), *maxenv = getenv("IGNIS_MAX_PAYLOAD");
    char path[4096];
    struct stat st;

    if (fdenv)
        proto_fd = atoi(fdenv);
    if (maxenv && atoll(maxenv) > 0)
        max_body = (size_t)atoll(maxenv);
    /* The handler must not inherit the protocol socket. */
    if (fcntl(proto_fd, F_SETFD, FD_CLOEXEC) < 0) {
        fprintf(stderr, "ignis exec: no protocol socket at fd %d\n", proto_fd);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!root)
        root = "/var/task";
    if (!handler || !*handler || handler[0] == '/' || strstr(handler, "..")) {
        char msg[512];
        snprintf(msg, sizeof(msg), "handler \"%s\" must be a path inside the bundle",
                 handler ? handler : "");
        send_init_error("Runtime.InvalidEntrypoint", msg);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/%s", root, handler);
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        char msg[4200];
        snprintf(msg, sizeof(msg), "handler %s is not an executable file in the bundle", handler);
        send_init_error("Runtime.InvalidEntrypoint", msg);
        return 1;
    }
    if (chdir(root) < 0)
        fprintf(stderr, "ignis exec: chdir %s: %s\n", root, strerror(errno));

    struct proto_msg ready = {.type = PROTO_READY, .info = proto_str("exec")};
    if (proto_send(proto_fd, &ready) < 0)
        return 1;
    struct proto_decoder dec;
    proto_decoder_init(&dec, max_body);
    int r;
    struct proto_msg m;
    while ((r = proto_recv(proto_fd, &dec, &m)) == 1) {
        if (m.type == PROTO_SHUTDOWN)
            break;
        if (m.type != PROTO_INVOKE) {
            fprintf(stderr, "ignis exec: unexpected %s frame\n", proto_type_name(m.type));
            r = -EBADMSG;
            break;
        }
        if (run_one(path, &m) < 0) {
            r = -EPIPE;
            break;
        }
    }
    if (r < 0)
        fprintf(stderr, "ignis exec: protocol: %s\n", strerror(-r));
    proto_decoder_done(&dec);
    return r < 0 ? 1 : 0;
}
