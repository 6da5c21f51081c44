/* Templates: containers forked from a process whose runtime has already started
 * (docs/architecture.md, "Templates"). A template is a container made the usual way but in
 * template mode (container_spec.template_mode: root of its own user namespace, no seccomp) whose
 * runtime serves fork requests on its runtime socket; each container forked from it gets its own
 * pid, mount, network, IPC and UTS namespaces and its own cgroup, and drops every privilege
 * before it runs any of the function's code. The template never serves an invocation. */
#include "container/container-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>

#include "base/log.h"

/* A fork request, with SCM_RIGHTS fds: the runtime socket, stdout, stderr, the sync pipe's
 * write end, the control socket (runtime-images/python3/bootstrap.py, TEMPLATE_REQUEST). */
struct template_request {
    char op; /* 'F' */
    uint8_t pad[7];
    uint64_t tmp_size, nofile, nproc;
    uint32_t uid, gid;
    char hostname[CONTAINER_HOSTNAME_MAX + 1];
    uint8_t pad2[7];
};
_Static_assert(sizeof(struct template_request) == 112, "bootstrap.py's TEMPLATE_REQUEST");

#define TEMPLATE_FDS 5

struct container_template {
    struct container *c;
    int sock; /* the template runtime's socket; -1 once retired */
    bool ready;
    char *key;
    struct container_template *next; /* on the retired list */
};

/* Templates retired while containers forked from them may still run (the loop's thread only). */
static struct container_template *retired;

int container_template_new(struct cg_manager *m, const struct container_options *o, const char *key,
                           struct container_template **ret, struct ig_error *err)
{
    if (!o->spec->template_mode)
        return ig_error_set(err, EINVAL, "a template's spec must be in template mode");
    struct container_template *t = calloc(1, sizeof(*t));
    if (!t || !(t->key = strdup(key))) {
        free(t);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    /* Its pid is needed at once (its forks' requests go to its runtime socket, and its death is
     * watched through its pidfd): waited for. */
    struct container_options own = *o;
    own.no_wait = false;
    int r = container_spawn(m, &own, &t->c, err);
    if (r < 0) {
        free(t->key);
        free(t);
        return r;
    }
    t->sock = container_runtime_fd(t->c);
    *ret = t;
    return 0;
}

const char *container_template_key(const struct container_template *t)
{
    return t->key;
}

struct container *container_template_container(const struct container_template *t)
{
    return t->c;
}

int container_template_ready(struct container_template *t)
{
    if (t->sock < 0)
        return -ESHUTDOWN;
    if (t->ready) {
        /* The interpreter died (killed, or out of memory): its socket's peer is gone. */
        struct pollfd p = {.fd = t->sock, .events = POLLRDHUP};
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return -EPIPE;
        return 1;
    }
    char c;
    ssize_t n = recv(t->sock, &c, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n != 1 || c != 'R')
        return n < 0 ? -errno : -EPIPE;
    t->ready = true;
    return 1;
}

/* Receives the pidfd the forked container's pid 1 sends on the control socket, without
 * blocking: -EAGAIN while it has not come. */
static int recv_pidfd(int ctl, int *ret_pidfd)
{
    char byte;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control)};
    ssize_t n;
    while ((n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    if (n < 0 && errno == EAGAIN)
        return -EAGAIN;
    struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int)))
        return n < 0 ? -errno : -ECHILD; /* EOF: the template or its fork died first */
    memcpy(ret_pidfd, CMSG_DATA(cm), sizeof(int));
    return 0;
}

/* The pid a pidfd refers to, in our pid namespace (/proc/self/fdinfo, "Pid:", 5.2+). */
static pid_t pidfd_pid(int pidfd)
{
    char path[64], *text = NULL;
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
    if (read_file(path, 4096, &text, NULL) < 0)
        return -1;
    const char *p = strstr(text, "\nPid:");
    long pid = p ? strtol(p + 5, NULL, 10) : -1;
    free(text);
    return pid > 0 ? (pid_t)pid : -1;
}

static int send_request(int sock, const struct container_spec *spec, const int fds[TEMPLATE_FDS])
{
    struct template_request req = {
        .op = 'F',
        .tmp_size = spec->tmp_size,
        .nofile = spec->rlimit_nofile,
        .nproc = spec->rlimit_nproc,
        .uid = spec->uid,
        .gid = spec->gid,
    };
    snprintf(req.hostname, sizeof(req.hostname), "%s", spec->hostname ? spec->hostname : "ignis");
    union {
        char buf[CMSG_SPACE(sizeof(int) * TEMPLATE_FDS)];
        struct cmsghdr align;
    } control = {};
    struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * TEMPLATE_FDS);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * TEMPLATE_FDS);
    ssize_t n;
    while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(req))
        return n < 0 ? -errno : -EPIPE;
    return 0;
}

/* What go carries to a forked container's pid 1 (shim/child.c, handshake): 'g', or, for a
 * function with secrets, 's' and the names of those that are set, each NUL-terminated, with an
 * fd of each, opened here as host root (the host's files are root's 0600, out of reach of the
 * template's user namespace). They are opened when the fork is asked for: a secret changed
 * after that reaches the next container, as for an exec'd one. */
struct fork_go {
    char *text;
    size_t len;
    int fds[CONTAINER_SPEC_MAX_SECRETS];
    size_t n;
};

static void fork_go_free(struct fork_go *go)
{
    if (!go)
        return;
    for (size_t i = 0; i < go->n; i++)
        close(go->fds[i]);
    free(go->text);
    free(go);
}

static int fork_go_new(const struct container_spec *spec, struct fork_go **ret,
                       struct ig_error *err)
{
    _cleanup_close_ int dir = -1;
    struct fork_go *go = calloc(1, sizeof(*go));
    size_t size = 2;
    for (size_t i = 0; spec->secrets && spec->secrets[i]; i++)
        size += strlen(spec->secrets[i]) + 1;
    if (!go || !(go->text = malloc(size))) {
        free(go);
        return ig_error_set(err, ENOMEM, "out of memory");
    }
    go->text[go->len++] = spec->secrets ? 's' : 'g';
    if (spec->secrets && (dir = open(spec->secrets_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 &&
        errno != ENOENT) {
        fork_go_free(go);
        return ig_error_set(err, errno, "secrets %s: %s", spec->secrets_dir, strerror(errno));
    }
    for (size_t i = 0; dir >= 0 && spec->secrets[i] && i < CONTAINER_SPEC_MAX_SECRETS; i++) {
        int fd = openat(dir, spec->secrets[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue; /* listed but not set: absent, as documented */
        if (fd < 0) {
            int e = errno;
            fork_go_free(go);
            return ig_error_set(err, e, "secret %s: %s", spec->secrets[i], strerror(e));
        }
        go->fds[go->n++] = fd;
        size_t l = strlen(spec->secrets[i]) + 1;
        memcpy(go->text + go->len, spec->secrets[i], l);
        go->len += l;
    }
    *ret = go;
    return 0;
}

static int send_go(int ctl, const struct fork_go *go)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CONTAINER_SPEC_MAX_SECRETS)];
        struct cmsghdr align;
    } control = {};
    struct iovec iov = {.iov_base = go->text, .iov_len = go->len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (go->n > 0) {
        mh.msg_control = &control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * go->n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * go->n);
        memcpy(CMSG_DATA(cm), go->fds, sizeof(int) * go->n);
    }
    ssize_t n;
    while ((n = sendmsg(ctl, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)go->len ? 0 : n < 0 ? -errno : -EPIPE;
}

/* The fds of one forked container: the controller's ends in c, the container's in child[]
 * (runtime socket, stdout, stderr, sync pipe, control socket). */
static int make_fds(struct container *c, const struct container_options *o, int child[TEMPLATE_FDS],
                    struct ig_error *err)
{
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
        return ig_error_set(err, errno, "socketpair: %s", strerror(errno));
    c->runtime_fd = p[0];
    child[0] = p[1];
    for (int i = 1; i <= 2; i++) {
        int given = i == 1 ? o->stdout_fd : o->stderr_fd;
        if (given >= 0) {
            if ((child[i] = fcntl(given, F_DUPFD_CLOEXEC, 3)) < 0)
                return ig_error_set(err, errno, "dup: %s", strerror(errno));
            continue;
        }
        if (pipe2(p, O_CLOEXEC) < 0)
            return ig_error_set(err, errno, "pipe: %s", strerror(errno));
        *(i == 1 ? &c->stdout_fd : &c->stderr_fd) = p[0];
        child[i] = p[1];
    }
    if (pipe2(p, O_CLOEXEC) < 0)
        return ig_error_set(err, errno, "pipe: %s", strerror(errno));
    c->sync_fd = p[0];
    child[3] = p[1];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
        return ig_error_set(err, errno, "socketpair: %s", strerror(errno));
    c->ctl_fd = p[0];
    child[4] = p[1];
    return 0;
}

int container_template_spawn(struct container_template *t, struct cg_manager *m,
                             const struct container_options *o, struct container **ret,
                             struct ig_error *err)
{
    int child[TEMPLATE_FDS] = {-1, -1, -1, -1, -1}, netns = -1, r;
    struct container *c = NULL;

    if (container_template_ready(t) != 1)
        return ig_error_set(err, ECHILD, "the template is not ready");
    if ((r = container_alloc(m, o, false, &c, &netns, err)) < 0)
        return r;
    if ((r = make_fds(c, o, child, err)) < 0 || (r = fork_go_new(o->spec, &c->go, err)) < 0)
        goto fail;
    if ((r = send_request(t->sock, o->spec, child)) < 0) {
        r = ig_error_set(err, -r, "the template is gone: %s", strerror(-r));
        goto fail;
    }
    for (int i = 0; i < TEMPLATE_FDS; i++)
        container_close_fd(&child[i]);
    c->forking = true;
    *ret = c;
    return 0;
fail:
    for (int i = 0; i < TEMPLATE_FDS; i++)
        container_close_fd(&child[i]);
    fork_go_free(TAKE_PTR(c->go));
    /* Nothing ever ran in its cgroup: removed here and now, not handed to the stock's thread,
     * since the caller makes the container the usual way in its place, under the same name. */
    c->stock = NULL;
    container_destroy(c, NULL);
    return r;
}

int container_fork_fd(const struct container *c)
{
    return !c->forking ? -1 : c->reply_fd >= 0 ? c->reply_fd : c->ctl_fd;
}

bool container_forked(const struct container *c)
{
    return c->ctl_fd >= 0;
}

int container_fork_finish(struct container *c, struct ig_error *err)
{
    int pidfd = -1, r;

    if (!c->forking)
        return 0;
    if (c->reply_fd >= 0)
        return container_server_finish(c, false, err);
    if ((r = recv_pidfd(c->ctl_fd, &pidfd)) == -EAGAIN)
        return r;
    if (r < 0)
        return ig_error_set(err, ECHILD, "the template did not fork: %s", strerror(-r));
    /* From here the pidfd is the container's: destroy kills and reaps it, whatever fails. */
    c->pidfd = pidfd;
    c->forking = false;
    if ((c->pid = pidfd_pid(pidfd)) < 0) {
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        return ig_error_set(err, ESRCH, "the forked container's pid is unknown");
    }
    /* It waits for go: single threaded, running nothing of the function's yet. Done here, as
     * host root: a process in the template's user namespace may not write the host's cgroups. */
    if ((r = cg_attach(c->group, c->pid, err)) == 0 && (r = send_go(c->ctl_fd, c->go)) < 0)
        r = ig_error_set(err, -r, "sending go: %s", strerror(-r));
    fork_go_free(TAKE_PTR(c->go));
    if (r < 0)
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
    return r;
}

void container_fork_cancel(struct container *c)
{
    int pidfd = -1;
    if (!c->forking)
        return;
    if (c->reply_fd >= 0) {
        struct ig_error err = {};
        if (container_server_finish(c, true, &err) == 0 && c->pidfd >= 0)
            pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0);
        return;
    }
    c->forking = false;
    fork_go_free(TAKE_PTR(c->go));
    /* Its pidfd came: B is killed, and destroy waits for it through its pidfd. Else closing the
     * control socket is enough: B reads EOF instead of go (or cannot send its pidfd) and exits
     * before it runs anything. */
    if (recv_pidfd(c->ctl_fd, &pidfd) == 0) {
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        c->pidfd = pidfd;
        c->pid = pidfd_pid(pidfd);
    }
}

void container_templates_reap(void)
{
    for (struct container_template **p = &retired; *p;) {
        struct container_template *t = *p;
        struct container_exit e;
        if (container_poll_exit(t->c, &e) == -EAGAIN) {
            p = &t->next;
            continue;
        }
        *p = t->next;
        struct ig_error err = {};
        if (container_destroy(t->c, &err) < 0)
            log_warn("destroying a template failed", "error=\"%s\"", err.message);
        free(t->key);
        free(t);
    }
}

void container_template_retire(struct container_template *t)
{
    if (!t)
        return;
    /* EOF: the interpreter exits; the template's pid 1 waits for the last container forked
     * from it, then exits too. */
    container_close_fd(&t->c->runtime_fd);
    t->sock = -1;
    t->next = retired;
    retired = t;
    container_templates_reap();
}

void container_templates_shutdown(void)
{
    while (retired) {
        struct container_template *t = retired;
        retired = t->next;
        container_destroy(t->c, NULL);
        free(t->key);
        free(t);
    }
}
