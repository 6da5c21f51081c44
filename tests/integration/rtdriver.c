#include "rtdriver.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "base/event_line.h"
#include "harness.h"

const char *rt_images_dir(void)
{
    const char *d = getenv("IGNIS_IMAGES_DIR");
    return d && *d ? d : NULL;
}

void rt_source_path(const char *rel, char *buf, size_t size)
{
    const char *src = getenv("IGNIS_SOURCE_DIR");
    snprintf(buf, size, "%s/%s", src ? src : ".", rel);
}

/* The runtime in a container, as the controller will start it: the environment exactly as
 * proto_build_env makes it, the image's entry point, output to our stderr. */
static int start_container(struct rt_proc *p, const struct rt_options *o, const char *images,
                           const struct proto_function_config *c)
{
    char image[4096], bundle[4096], *args[] = {PROTO_RUNTIME_ENTRYPOINT, NULL};
    struct container_spec spec;
    struct ig_error err = {};
    char **env = NULL;
    int out = o->quiet ? open("/dev/null", O_WRONLY | O_CLOEXEC) : STDERR_FILENO;

    snprintf(image, sizeof(image), "%s/%s", images, o->runtime);
    if (!realpath(o->bundle, bundle) || out < 0)
        return -errno;
    if (proto_build_env(c, &env, &err) < 0)
        return -EINVAL;
    container_spec_init(&spec);
    spec.image = image;
    spec.bundle = bundle;
    spec.args = args;
    spec.env = env;
    struct container_options co = {.spec = &spec,
                                   .limits = {.memory_bytes = 1024ull << 20, .pids_max = 256},
                                   .stdout_fd = out,
                                   .stderr_fd = out};
    int r = container_create(o->env->m, &co, &p->c, &err);
    if (o->quiet)
        close(out);
    proto_env_free(env);
    if (r < 0) {
        fprintf(stderr, "rtdriver: cannot start %s in a container: %s\n", o->runtime, err.message);
        return r;
    }
    p->fd = container_take_runtime_fd(p->c);
    proto_decoder_init(&p->dec, 0);
    return 0;
}

int rt_start(struct rt_proc *p, const struct rt_options *o)
{
    const char *images = o->images_dir ? o->images_dir : rt_images_dir();
    char bootstrap[4096], root[4200];
    struct proto_function_config c = {.name = o->name ? o->name : "test",
                                      .version = "1",
                                      .handler = o->handler,
                                      .memory_mb = o->memory_mb ? o->memory_mb : 128,
                                      .timeout_ms = o->timeout_ms ? o->timeout_ms : 30000};
    struct ig_error err = {};
    char **env = NULL;
    int sv[2];

    memset(p, 0, sizeof(*p));
    p->fd = -1;
    if (!images)
        return -ENOENT;
    if (o->env)
        return start_container(p, o, images, &c);
    snprintf(bootstrap, sizeof(bootstrap), "%s/%s/ignis/bootstrap", images, o->runtime);
    if (access(bootstrap, X_OK) < 0)
        return -errno;
    if (!realpath(o->bundle, root))
        return -errno;
    if (proto_build_env(&c, &env, &err) < 0)
        return -EINVAL;
    /* Plain processes see the host's tree: the bundle is where it is, not at /var/task, and
     * the provided runtime's relay needs a port of its own on the host's loopback. */
    snprintf(p->relay_addr, sizeof(p->relay_addr), "127.0.0.1:%u", harness_free_port());
    size_t n = 0;
    while (env[n])
        n++;
    char **full = calloc(n + 3, sizeof(char *));
    if (!full) {
        proto_env_free(env);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (startswith(env[i], "LAMBDA_TASK_ROOT=")) {
            free(env[i]);
            if (asprintf(&env[i], "LAMBDA_TASK_ROOT=%s", root) < 0)
                env[i] = NULL;
        }
        full[i] = env[i];
    }
    char relay[64];
    snprintf(relay, sizeof(relay), "IGNIS_RELAY_ADDR=%s", p->relay_addr);
    full[n] = relay;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        int r = -errno;
        free(full);
        proto_env_free(env);
        return r;
    }
    p->pid = fork();
    if (p->pid == 0) {
        if (o->quiet) {
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        if (sv[1] == PROTO_RUNTIME_FD)
            fcntl(sv[1], F_SETFD, 0);
        else if (dup2(sv[1], PROTO_RUNTIME_FD) < 0)
            _exit(126);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, STDIN_FILENO);
        char *const argv[] = {bootstrap, NULL};
        execve(bootstrap, argv, full);
        _exit(127);
    }
    int r = p->pid < 0 ? -errno : 0;
    close(sv[1]);
    free(full);
    proto_env_free(env);
    if (r < 0) {
        close(sv[0]);
        return r;
    }
    p->fd = sv[0];
    proto_decoder_init(&p->dec, 0);
    return 0;
}

static char *dup_bytes(struct proto_bytes b)
{
    return proto_strdup(b);
}

/* The next message, waiting at most until deadline (monotonic µs). */
static int next_msg(struct rt_proc *p, uint64_t deadline, struct proto_msg *ret)
{
    for (;;) {
        int r = proto_decoder_next(&p->dec, ret);
        if (r != 0)
            return r < 0 ? r : 0;
        uint64_t now = now_usec();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
        r = poll(&pfd, 1, (int)((deadline - now) / 1000) + 1);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r <= 0)
            continue;
        ssize_t n = proto_decoder_read(&p->dec, p->fd);
        if (n == 0)
            return -EPIPE;
        if (n < 0 && n != -EAGAIN)
            return (int)n;
    }
}

static void fill(struct rt_reply *r, const struct proto_msg *m)
{
    r->type = m->type;
    r->id = dup_bytes(m->id);
    r->info = dup_bytes(m->info);
    r->body = dup_bytes(m->body);
    r->body_len = m->body.len;
    r->content_type = dup_bytes(m->content_type);
    r->error_type = dup_bytes(m->error_type);
    r->message = dup_bytes(m->message);
    r->trace = dup_bytes(m->trace);
}

static void add_event(struct rt_reply *r, const struct proto_msg *m)
{
    if (r->nevents == RT_MAX_EVENTS)
        return;
    size_t i = r->nevents++;
    r->events[i].type = dup_bytes(m->event_type);
    r->events[i].data = dup_bytes(m->body);
    r->events[i].data_len = m->body.len;
    r->events[i].content_type = dup_bytes(m->content_type);
}

int rt_wait_ready(struct rt_proc *p, int timeout_ms, struct rt_reply *ret)
{
    struct proto_msg m;
    memset(ret, 0, sizeof(*ret));
    int r = next_msg(p, now_usec() + (uint64_t)timeout_ms * 1000, &m);
    if (r < 0)
        return r;
    if (m.type != PROTO_READY && m.type != PROTO_INIT_ERROR)
        return -EBADMSG;
    fill(ret, &m);
    return 0;
}

int rt_invoke(struct rt_proc *p, const char *id, const void *body, size_t len,
              const char *const *headers, int timeout_ms, struct rt_reply *ret)
{
    struct proto_msg m = {.type = PROTO_INVOKE,
                          .id = proto_str(id),
                          .deadline_ms = wall_usec() / 1000 + (uint64_t)timeout_ms,
                          .body = {body, len}};
    for (const char *const *h = headers; h && h[0] && h[1] && m.nheaders < PROTO_MAX_HEADERS;
         h += 2)
        m.headers[m.nheaders++] = (struct proto_header){proto_str(h[0]), proto_str(h[1])};
    memset(ret, 0, sizeof(*ret));
    int r = proto_send(p->fd, &m);
    if (r < 0)
        return r;
    /* Past the invocation's deadline, a runtime that enforces it still needs a moment to say
     * so: wait a little longer than the deadline itself. */
    uint64_t deadline = now_usec() + (uint64_t)timeout_ms * 1000 + 10000000;
    for (;;) {
        r = next_msg(p, deadline, &m);
        if (r < 0)
            return r;
        if (m.type == PROTO_EVENT || m.type == PROTO_EVENT_JSON) {
            /* An event line is read as the controller reads it (dispatch/pool.c); one that is
             * not an event is dropped. */
            struct event_line hold = {};
            struct proto_msg e = m;
            if (m.type == PROTO_EVENT || event_line_read(&m, &e, &hold) == 0)
                add_event(ret, &e);
            event_line_done(&hold);
            continue;
        }
        if (m.type != PROTO_RESULT && m.type != PROTO_ERROR)
            return -EBADMSG;
        if (!proto_bytes_eq(m.id, id))
            return -EPROTO;
        fill(ret, &m);
        return 0;
    }
}

int rt_stop(struct rt_proc *p)
{
    int wstatus = -1;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    if (p->c) {
        struct container_exit x;
        struct ig_error err = {};
        uint64_t deadline = now_usec() + 2000000;
        int r;
        while ((r = container_poll_exit(p->c, &x)) == -EAGAIN && now_usec() < deadline)
            usleep(5000);
        if (r == -EAGAIN) {
            container_kill(p->c, &err);
            r = container_wait(p->c, &x);
        }
        if (r == 0)
            wstatus = x.signal ? x.signal : (x.exit_code & 0xff) << 8;
        if (container_destroy(p->c, &err) < 0)
            fprintf(stderr, "rtdriver: destroying the container: %s\n", err.message);
        p->c = NULL;
    }
    if (p->pid > 0) {
        /* Closing the socket is the runtimes' cue to exit; give them a moment. */
        uint64_t deadline = now_usec() + 2000000;
        pid_t r;
        while ((r = waitpid(p->pid, &wstatus, WNOHANG)) == 0 && now_usec() < deadline)
            usleep(5000);
        if (r == 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &wstatus, 0);
        }
    }
    p->pid = 0;
    proto_decoder_done(&p->dec);
    return wstatus;
}

void rt_reply_clear(struct rt_reply *r)
{
    free(r->id);
    free(r->info);
    free(r->body);
    free(r->content_type);
    free(r->error_type);
    free(r->message);
    free(r->trace);
    for (size_t i = 0; i < r->nevents; i++) {
        free(r->events[i].type);
        free(r->events[i].data);
        free(r->events[i].content_type);
    }
    memset(r, 0, sizeof(*r));
}
