#include "container/container.h"
#include "container/container-internal.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "config.h"
#include "base/fdlimit.h"
#include "base/log.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* linux/wait.h, 5.4+; glibc 2.36's sys/wait.h lacks it */
#endif

static pthread_once_t shim_once = PTHREAD_ONCE_INIT;
static char shim_path[PATH_MAX];

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

static void find_shim(void)
{
    const char *env = getenv("IGNIS_SHIM");
    char exe[PATH_MAX], candidate[PATH_MAX + 32];

    if (env && *env && executable(env)) {
        snprintf(shim_path, sizeof(shim_path), "%s", env);
        return;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        /* Installed side by side, or run from a meson build tree: the build root (the
         * directory holding build.ninja) has shim/ignis-shim, whichever of its
         * subdirectories the program lives in (orchestrator/, tests/integration/, ...). */
        char *slash = strrchr(exe, '/');
        for (int depth = 0; slash && depth < 4; depth++) {
            *slash = '\0';
            snprintf(candidate, sizeof(candidate), "%s/ignis-shim", exe);
            if (depth == 0 && executable(candidate))
                goto found;
            snprintf(candidate, sizeof(candidate), "%s/build.ninja", exe);
            if (access(candidate, F_OK) == 0) {
                snprintf(candidate, sizeof(candidate), "%s/shim/ignis-shim", exe);
                if (executable(candidate))
                    goto found;
                break;
            }
            slash = strrchr(exe, '/');
        }
    }
    snprintf(candidate, sizeof(candidate), "%s/ignis-shim", IGNIS_LIBEXECDIR);
    if (!executable(candidate))
        return;
found:
    snprintf(shim_path, sizeof(shim_path), "%s", candidate);
}

const char *container_shim_path(void)
{
    pthread_once(&shim_once, find_shim);
    return shim_path[0] ? shim_path : NULL;
}

static atomic_uint_fast32_t name_counter;
/* The stocks' cgroups, numbered across the process: a stock's cgroup may still be on its way
 * out when the next stock starts (tests make one after another), and a name taken costs the new
 * one a failed preparation and a second's wait. */
static _Atomic uint64_t stock_seq = 1;

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 95 || name[0] == '.')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

void container_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Moves fd above the shim's fixed layout (0-6), so that dup2-ing the sources into place in the
 * child never overwrites one not yet moved. */
static int lift_fd(int *fd)
{
    if (*fd > SHIM_FD_NETNS)
        return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
    if (nfd < 0)
        return -errno;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int spec_memfd(const char *text, struct ig_error *err)
{
    /* A memfd, not a pipe: a pipe's buffer shrinks to one page once the user's pipe-buffer
     * quota (fs.pipe-user-pages-soft) is used up, and the spec may be larger. */
    _cleanup_close_ int fd = memfd_create("ignis-spec", MFD_CLOEXEC);
    if (fd < 0)
        return ig_error_set(err, errno, "memfd_create: %s", strerror(errno));
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ig_error_set(err, errno, "writing the spec: %s", strerror(errno));
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0)
        return ig_error_set(err, errno, "lseek: %s", strerror(errno));
    return TAKE_FD(fd);
}

/* The fds the shim gets, in its fixed order (container_spec.h). */
enum {
    CHILD_STDIN,
    CHILD_STDOUT,
    CHILD_STDERR,
    CHILD_SPEC,
    CHILD_SYNC,
    CHILD_RUNTIME,
    CHILD_NETNS, /* optional (-1) */
    CHILD_N
};

/* In the child of clone3: a copy of a possibly multi-threaded controller, so only
 * async-signal-safe calls until execve. */
_Noreturn static void exec_shim(const char *shim, const char *arg, const int fds[], int nfds)
{
    static char *const envp[] = {NULL};
    char *const argv[] = {(char *)"ignis-shim", (char *)arg, NULL};
    sigset_t none;

    /* The event loop blocks the signals it reads through signalfd; a blocked mask survives
     * execve. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < nfds; i++)
        if (dup2(fds[i], i) < 0)
            _exit(SHIM_EXIT_EXEC);
    close_range((unsigned int)nfds, ~0u, 0);
    execve(shim, argv, envp);
    struct container_sync_msg msg = {.code = errno};
    memcpy(msg.message, "exec ignis-shim failed", sizeof("exec ignis-shim failed"));
    if (nfds > CHILD_SYNC) {
        ssize_t n = write(CHILD_SYNC, &msg, sizeof(msg));
        (void)n;
    }
    _exit(SHIM_EXIT_EXEC);
}

/* Starts the shim straight inside the container's cgroup2 directory where the kernel can
 * (clone3 CLONE_INTO_CGROUP, 5.7+): no window in which it runs elsewhere, no write to
 * cgroup.procs. Returns the pid and a pidfd. */
static pid_t spawn_child(int cgroup_fd, const char *shim, const char *arg, const int fds[],
                         int nfds, int *ret_pidfd)
{
    int pidfd = -1;
    struct clone_args args = {
        .flags = CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0 && cgroup_fd >= 0 && errno != ENOSYS && errno != EAGAIN && errno != ENOMEM) {
        /* The cgroup refused (e.g. a threaded or non-leaf domain): the shim still joins it
         * through cgroup.procs, which the spec lists. */
        args.flags &= ~(uint64_t)CLONE_INTO_CGROUP;
        args.cgroup = 0;
        pid = syscall(SYS_clone3, &args, sizeof(args));
    }
    if (pid < 0 && errno == ENOSYS) {
        /* Before 5.3 there is no clone3: fork, then a pidfd (5.3 too; older kernels are out of
         * scope). */
        pid = fork();
        if (pid == 0)
            exec_shim(shim, arg, fds, nfds);
        if (pid > 0 && (pidfd = pidfd_open((pid_t)pid, 0)) < 0) {
            int saved = errno;
            kill((pid_t)pid, SIGKILL);
            waitpid((pid_t)pid, NULL, 0);
            errno = saved;
            return -1;
        }
    }
    if (pid == 0)
        exec_shim(shim, arg, fds, nfds);
    if (pid < 0)
        return -1;
    *ret_pidfd = pidfd;
    return (pid_t)pid;
}

/* Moves the calling thread into a new network namespace with loopback up and returns an nsfs
 * fd of it (close-on-exec), or -errno. A network namespace belongs to the task, so a thread can
 * make one and hand its fd on without touching the other threads', and without a process to
 * keep alive. */
static int netns_make_here(void)
{
    struct ifreq ifr = {.ifr_name = "lo"};
    int fd = -1, r = 0;
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    _cleanup_close_ int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) < 0 ||
        (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) ||
        (fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
        r = -errno;
    return r < 0 ? r : fd;
}

struct netns_thread {
    int fd;
};

static void *netns_thread(void *userdata)
{
    struct netns_thread *t = userdata;
    t->fd = netns_make_here();
    return NULL;
}

int container_netns_new(struct ig_error *err)
{
    struct netns_thread t = {.fd = -1};
    pthread_t thread;
    int r = pthread_create(&thread, NULL, netns_thread, &t);
    if (r != 0)
        return ig_error_set(err, r, "creating a thread: %s", strerror(r));
    pthread_join(thread, NULL);
    if (t.fd < 0)
        return ig_error_set(err, -t.fd, "creating a network namespace: %s", strerror(-t.fd));
    return t.fd;
}

/* ---- The stock of prepared resources ----
 *
 * One thread per stock keeps resources ready for the containers to come, so that neither making
 * nor removing them is on the path of a container's creation:
 *
 * - network namespaces, made fresh; one a container of an owner (a function) handed back is
 *   reused for that owner's next container only if nothing of what an unprivileged process can
 *   see of a namespace differs from a fresh one (netns_pristine), else closed: a container
 *   that used the network (sockets in TIME_WAIT, counters moved) leaves nothing to another;
 * - cgroups, per owner (a function) and limits: made fresh, and handed back when a container of
 *   that owner ended (it is then checked empty and reused for the owner's next container, or
 *   removed). A cgroup holds nothing its processes can see from inside (the container has no
 *   cgroupfs); what carries over, its cumulative counters and the page cache charged to it, is
 *   the controller's to read as deltas (container_poll_exit, the accountant) and reclaimable.
 *
 * The loop thread only ever trylocks: while the stock's thread holds the lock, a container makes
 * its own, as without a stock. */

#define STOCK_CLASSES    16   /* (owner, limits) pairs with cgroups kept; the least recent goes */
#define STOCK_TARGET_MAX 64   /* of each kind */
#define STOCK_BACKLOG    1024 /* cgroups handed back and not yet looked at; past it, removed */

struct stock_class {
    char owner[72];
    struct cg_limits limits;
    bool active;
    uint64_t last_used; /* the stock's take counter at the last take, for eviction */
    size_t n;
    struct cg_group *ready[STOCK_TARGET_MAX];
    size_t n_netns; /* namespaces the owner's containers handed back, checked pristine */
    int netns[STOCK_TARGET_MAX];
};

/* A cgroup handed back: to reuse for its class when still wanted, else to remove. */
struct stock_returned {
    struct cg_group *group; /* or NULL */
    int netns;              /* or -1 */
    int dying;              /* the pidfd of the container's pid 1, killed, to wait for; or -1 */
    bool reap;              /* dying is our child (not forked from a template): reap it */
    char owner[72];         /* "": never reused */
    struct cg_limits limits;
};

struct container_stock {
    struct cg_manager *m;
    unsigned target;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    bool failing;    /* the last preparation failed: the thread waits a second before the next */
    int home_netns;  /* the daemon's network namespace, where the thread returns after each */
    char *reference; /* netns_state() of the first namespace it made, fresh */
    size_t n_netns;
    int netns[STOCK_TARGET_MAX];
    struct stock_class classes[STOCK_CLASSES];
    uint64_t takes;
    size_t n_returned, n_looking; /* queued; taken off the queue by the thread, not done */
    struct stock_returned returned[STOCK_BACKLOG];
    struct container_stock_stats stats;
    atomic_uint_fast64_t busy; /* takes that found the lock held */
};

static bool limits_equal(const struct cg_limits *a, const struct cg_limits *b)
{
    return a->memory_bytes == b->memory_bytes && a->cpu_millis == b->cpu_millis &&
           a->pids_max == b->pids_max;
}

static struct stock_class *stock_class_find(struct container_stock *s, const char *owner,
                                            const struct cg_limits *l)
{
    for (size_t i = 0; i < STOCK_CLASSES; i++)
        if (s->classes[i].active && streq(s->classes[i].owner, owner) &&
            limits_equal(&s->classes[i].limits, l))
            return &s->classes[i];
    return NULL;
}

/* Queues g and netns for the thread: reuse or removal. NULL when the backlog is full. */
static struct stock_returned *stock_queue(struct container_stock *s, struct cg_group *g, int netns,
                                          const char *owner, const struct cg_limits *l)
{
    if (s->n_returned >= STOCK_BACKLOG)
        return NULL;
    struct stock_returned *r = &s->returned[s->n_returned++];
    *r = (struct stock_returned){.group = g, .netns = netns, .dying = -1, .limits = *l};
    snprintf(r->owner, sizeof(r->owner), "%s", owner);
    return r;
}

/* Waits for the pid 1 of a container just killed (pidfd, closed here) to be gone, and reaps it
 * when it is our child (reap: not forked from a template). One still there after 5 s (stopped,
 * or stuck in the kernel) is killed with everything in its cgroup g (or NULL); one still there
 * 5 s after that is left, logged with who, and so is its cgroup: cg_destroy finds it busy. The
 * stock's thread does this for the containers handed back to it, destroy for the others. */
static void reap_killed(int pidfd, bool reap, struct cg_group *g, const char *who)
{
    if (poll_until(pidfd, POLLIN, now_usec() + 5000000) == 0) {
        if (g)
            cg_kill(g, NULL);
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        if (poll_until(pidfd, POLLIN, now_usec() + 5000000) == 0)
            log_warn("a killed container does not exit; left behind", "container=%s", who);
    }
    siginfo_t info;
    if (reap)
        waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG);
    close(pidfd);
}

/* Without the lock: a handed-back container's killed pid 1 gone, before anything looks at its
 * cgroup or namespace. */
static void stock_wait_dying(struct stock_returned *r)
{
    if (r->dying < 0)
        return;
    reap_killed(r->dying, r->reap, r->group, r->owner[0] ? r->owner : "-");
    r->dying = -1;
}

/* A class for a new (owner, limits), in a free slot or in place of the least recently used one,
 * whose ready cgroups go to be removed. NULL when there is no room to queue them now. */
static struct stock_class *stock_class_add(struct container_stock *s, const char *owner,
                                           const struct cg_limits *l)
{
    struct stock_class *k = &s->classes[0];
    for (size_t i = 0; i < STOCK_CLASSES && k->active; i++)
        if (!s->classes[i].active || s->classes[i].last_used < k->last_used)
            k = &s->classes[i];
    if (k->active) {
        if (s->n_returned + k->n > STOCK_BACKLOG)
            return NULL;
        while (k->n > 0)
            stock_queue(s, k->ready[--k->n], -1, "", &k->limits);
        while (k->n_netns > 0)
            close(k->netns[--k->n_netns]);
    }
    *k = (struct stock_class){.limits = *l, .active = true};
    snprintf(k->owner, sizeof(k->owner), "%s", owner);
    return k;
}

/* Called with the lock held; returns with it held. */
static void stock_failed(struct container_stock *s, const char *what, int code)
{
    if (!s->failing)
        log_warn("cannot prepare resources ahead; containers make their own",
                 "what=%s error=\"%s\"", what, strerror(code));
    s->failing = true;
}

/* Appends /proc/net/sockstat{,6} text to *all without the figures that are not the namespace's
 * own (orphan, alloc, mem: the protocols' global counts), keeping the sockets in use and in
 * TIME_WAIT per protocol. */
static void sockstat_own(const char *text, char *out)
{
    bool skip = false;
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, " \n");
        if (!skip && n > 0 &&
            ((n == 6 && !strncmp(p, "orphan", 6)) || (n == 5 && !strncmp(p, "alloc", 5)) ||
             (n == 3 && !strncmp(p, "mem", 3)))) {
            skip = true; /* the word and its figure */
        } else if (skip) {
            skip = false;
        } else {
            memcpy(out, p, n);
            out += n;
            *out++ = p[n] ? p[n] : '\n';
        }
        p += n + (p[n] ? 1 : 0);
    }
    *out = '\0';
}

/* A network namespace's state as a process without privileges can see it (the calling thread's
 * namespace, /proc/thread-self/net): interfaces and their counters, the protocols' counters
 * (snmp, netstat: every connection, datagram and error counts there), the sockets in use and in
 * TIME_WAIT (sockstat), the raw, unix and packet socket tables, addresses, routes, ARP and
 * multicast memberships, IPv6 flow labels. Not the TCP and UDP tables: reading one walks the
 * host's whole hash (TCP 4 ms here, each of udp, udp6, udplite, udplite6 72 µs, where sockstat
 * takes 4 µs), and sockstat's per-namespace sockets in use and the counters tell the same. A
 * container cannot change anything else (interfaces, addresses, routes, sysctls, rules) without
 * CAP_NET_ADMIN, which it never has. NULL on failure. */
static char *netns_state(void)
{
    static const char *const files[] = {
        "dev",        "snmp",      "snmp6",    "netstat",   "sockstat",
        "sockstat6",  "raw",       "raw6",     "unix",      "packet",
        "icmp",       "icmp6",     "if_inet6", "igmp",      "igmp6",
        "mcfilter",   "mcfilter6", "anycast6", "dev_mcast", "route",
        "ipv6_route", "fib_trie",  "arp",      "rt6_stats", "ip6_flowlabel",
    };
    char *all = NULL;
    size_t cap = 0, len = 0;
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char path[64];
        _cleanup_free_ char *text = NULL;
        size_t n = 0;
        snprintf(path, sizeof(path), "/proc/thread-self/net/%s", files[i]);
        int r = read_file(path, 1 << 20, &text, &n);
        if (r == -ENOENT) /* not built into this kernel: the same for every namespace */
            continue;
        if (r < 0 || grow_buffer(&all, &cap, len + strlen(files[i]) + n + 4) < 0) {
            free(all);
            return NULL;
        }
        len += (size_t)sprintf(all + len, "%s:\n", files[i]);
        if (startswith(files[i], "sockstat"))
            sockstat_own(text, all + len);
        else
            memcpy(all + len, text, n + 1);
        len += strlen(all + len);
    }
    return all;
}

/* Whether the namespace fd is indistinguishable from a fresh one (its state is the reference,
 * taken from a namespace the thread just made). Without the lock. */
static bool netns_pristine(struct container_stock *s, int fd)
{
    if (!s->reference || setns(fd, CLONE_NEWNET) < 0)
        return false;
    char *state = netns_state();
    if (setns(s->home_netns, CLONE_NEWNET) < 0) {
        /* Never go on in a namespace a container had: stop preparing for good. */
        int code = errno;
        free(state);
        pthread_mutex_lock(&s->lock);
        stock_failed(s, "returning to the daemon's network namespace", code);
        s->stop = true;
        pthread_mutex_unlock(&s->lock);
        return false;
    }
    bool same = state && streq(state, s->reference);
    free(state);
    return same;
}

/* Without the lock: removes g, or keeps it if it is empty; true if kept. */
static bool stock_keep_or_remove(struct cg_group *g, bool want)
{
    if (want && cg_group_empty(g))
        return true;
    cg_destroy(g, NULL); /* logs what it leaves behind */
    return false;
}

/* One step of the thread's work, with the lock held (dropped while working): false when there
 * is nothing to do. Handed-back cgroups come first (reusing one saves making one), then
 * namespaces (the larger saving), then new cgroups. */
static bool stock_step(struct container_stock *s)
{
    if (s->n_returned > 0) {
        struct stock_returned r = s->returned[--s->n_returned];
        s->n_looking++;
        pthread_mutex_unlock(&s->lock);
        stock_wait_dying(&r);
        pthread_mutex_lock(&s->lock);
        struct stock_class *k = r.owner[0] ? stock_class_find(s, r.owner, &r.limits) : NULL;
        /* Short of fds, nothing handed back is kept: containers need them more. */
        bool room = fdlimit_room(CONTAINER_STOCK_FD_HEADROOM);
        bool want_group = r.group && k && k->n < s->target && room;
        bool want_netns = r.netns >= 0 && k && k->n_netns < s->target && room;
        pthread_mutex_unlock(&s->lock);
        bool kept = r.group && stock_keep_or_remove(r.group, want_group);
        if (want_netns && !netns_pristine(s, r.netns))
            want_netns = false;
        pthread_mutex_lock(&s->lock);
        /* The class may have gone or filled while the lock was dropped. */
        k = r.owner[0] ? stock_class_find(s, r.owner, &r.limits) : NULL;
        if (kept && k && k->n < s->target) {
            k->ready[k->n++] = r.group;
            s->stats.cgroups_reused++;
        } else if (kept) {
            stock_queue(s, r.group, -1, "", &r.limits); /* room: it was just taken off */
        } else if (r.group) {
            s->stats.cgroups_removed++;
        }
        if (want_netns && k && k->n_netns < s->target) {
            k->netns[k->n_netns++] = r.netns;
            s->stats.netns_reused++;
        } else if (r.netns >= 0) {
            close(r.netns); /* the kernel tears it down later, in a worker */
            s->stats.netns_closed++;
        }
        s->n_looking--;
        return true;
    }
    if (s->failing)
        return false;
    /* Preparing ahead must not take the fds containers and the API need: nothing more while
     * they are short (a take or a return wakes the thread again). */
    if (!fdlimit_room(CONTAINER_STOCK_FD_HEADROOM))
        return false;
    if (s->n_netns < s->target) {
        bool want_reference = !s->reference;
        pthread_mutex_unlock(&s->lock);
        int fd = netns_make_here();
        char *reference = fd >= 0 && want_reference ? netns_state() : NULL;
        /* Back home, so that the container is the namespace's last user. */
        int r = setns(s->home_netns, CLONE_NEWNET) < 0 ? -errno : 0;
        pthread_mutex_lock(&s->lock);
        if (r < 0) {
            /* Never go on in a namespace a container gets: stop preparing for good. */
            if (fd >= 0)
                close(fd);
            stock_failed(s, "returning to the daemon's network namespace", -r);
            s->stop = true;
        } else if (fd < 0)
            stock_failed(s, "network namespace", -fd);
        else
            s->netns[s->n_netns++] = fd;
        if (reference && !s->reference)
            s->reference = TAKE_PTR(reference);
        free(reference);
        return true;
    }
    /* New cgroups only up to half the target: in a steady stream of containers the ones handed
     * back fill the rest, and making one that a container about to end makes unnecessary would
     * cost a removal too. */
    for (size_t i = 0; i < STOCK_CLASSES; i++) {
        struct stock_class *k = &s->classes[i];
        if (!k->active || k->n >= (s->target + 1) / 2)
            continue;
        char owner[sizeof(k->owner)];
        memcpy(owner, k->owner, sizeof(owner));
        struct cg_limits limits = k->limits;
        struct cg_group *g = NULL;
        struct ig_error err = {};
        char name[48];
        snprintf(name, sizeof(name), "_stock-%d-%llu", (int)getpid(),
                 (unsigned long long)atomic_fetch_add(&stock_seq, 1));
        pthread_mutex_unlock(&s->lock);
        int r = cg_create(s->m, name, &limits, &g, &err);
        pthread_mutex_lock(&s->lock);
        if (r < 0) {
            stock_failed(s, "cgroup", -r);
            return true;
        }
        k = stock_class_find(s, owner, &limits);
        if (k && k->n < s->target) {
            k->ready[k->n++] = g;
        } else {
            pthread_mutex_unlock(&s->lock);
            cg_destroy(g, NULL);
            pthread_mutex_lock(&s->lock);
        }
        return true;
    }
    return false;
}

static void *stock_thread(void *userdata)
{
    struct container_stock *s = userdata;
    /* At the default priority, not SCHED_IDLE: the thread holds kernel locks the containers'
     * creation also takes (cgroup_mutex while it makes a cgroup, rtnl while it registers lo),
     * and a thread that gets no CPU while holding one would stall them. */
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        if (stock_step(s))
            continue;
        if (s->failing) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&s->wake, &s->lock, &until);
            s->failing = false;
        } else
            pthread_cond_wait(&s->wake, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int container_stock_new(struct cg_manager *m, unsigned target, struct container_stock **ret,
                        struct ig_error *err)
{
    if (target == 0 || target > STOCK_TARGET_MAX)
        return ig_error_set(err, EINVAL, "a stock holds 1 to %d of each resource, not %u",
                            STOCK_TARGET_MAX, target);
    struct container_stock *s = calloc(1, sizeof(*s));
    if (!s)
        return ig_error_set(err, ENOMEM, "out of memory");
    s->m = m;
    s->target = target;
    s->home_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (s->home_netns < 0) {
        int r = ig_error_set(err, errno, "/proc/self/ns/net: %s", strerror(errno));
        free(s);
        return r;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    int r = pthread_create(&s->thread, NULL, stock_thread, s);
    if (r != 0) {
        close(s->home_netns);
        free(s);
        return ig_error_set(err, r, "creating the stock's thread: %s", strerror(r));
    }
    *ret = s;
    return 0;
}

void container_stock_free(struct container_stock *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->wake);
    pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n_returned; i++) {
        stock_wait_dying(&s->returned[i]);
        cg_destroy(s->returned[i].group, NULL);
        if (s->returned[i].netns >= 0)
            close(s->returned[i].netns);
    }
    for (size_t i = 0; i < STOCK_CLASSES; i++) {
        for (size_t j = 0; j < s->classes[i].n; j++)
            cg_destroy(s->classes[i].ready[j], NULL);
        for (size_t j = 0; j < s->classes[i].n_netns; j++)
            close(s->classes[i].netns[j]);
    }
    free(s->reference);
    for (size_t i = 0; i < s->n_netns; i++)
        close(s->netns[i]);
    close(s->home_netns);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void container_stock_stats(struct container_stock *s, struct container_stock_stats *ret)
{
    pthread_mutex_lock(&s->lock);
    *ret = s->stats;
    ret->netns_ready = s->n_netns;
    ret->cgroups_ready = 0;
    for (size_t i = 0; i < STOCK_CLASSES; i++)
        ret->cgroups_ready += s->classes[i].n;
    ret->cgroups_returned = s->n_returned + s->n_looking;
    pthread_mutex_unlock(&s->lock);
    ret->busy = atomic_load(&s->busy);
}

/* What the stock has ready for one container: a network namespace (*ret_netns, else -1) when
 * want_netns, a cgroup of owner's with these limits (*ret_group, else NULL) when want_group; the
 * (owner, limits) pair is remembered so that the thread prepares cgroups for its next container. */
static void stock_take(struct container_stock *s, bool want_netns, bool want_group,
                       const char *owner, const struct cg_limits *l, int *ret_netns,
                       struct cg_group **ret_group)
{
    *ret_netns = -1;
    *ret_group = NULL;
    if (pthread_mutex_trylock(&s->lock) != 0) {
        atomic_fetch_add(&s->busy, 1);
        return;
    }
    struct stock_class *k = stock_class_find(s, owner, l);
    if (!k)
        k = stock_class_add(s, owner, l);
    if (k)
        k->last_used = ++s->takes;
    if (want_netns) {
        /* One the owner handed back first: a fresh one costs a teardown later. */
        if (k && k->n_netns > 0)
            *ret_netns = k->netns[--k->n_netns];
        else if (s->n_netns > 0)
            *ret_netns = s->netns[--s->n_netns];
        if (*ret_netns >= 0)
            s->stats.netns_taken++;
        else
            s->stats.netns_missed++;
    }
    if (want_group) {
        if (k && k->n > 0)
            *ret_group = k->ready[--k->n];
        if (*ret_group)
            s->stats.cgroups_taken++;
        else
            s->stats.cgroups_missed++;
    }
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->wake);
}

void container_stock_release(struct container_stock *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    while (s->n_netns > 0)
        close(s->netns[--s->n_netns]);
    for (size_t i = 0; i < STOCK_CLASSES; i++) {
        struct stock_class *k = &s->classes[i];
        while (k->n_netns > 0)
            close(k->netns[--k->n_netns]);
        /* Queued with no owner, the thread removes them; what does not fit waits for later. */
        while (k->n > 0 && stock_queue(s, k->ready[k->n - 1], -1, "", &k->limits))
            k->n--;
    }
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->wake);
}

/* Hands the cgroup (or NULL) and network namespace (or -1) of a container that ended to the
 * thread, to reuse for owner's next container ("": never) or remove, with the pidfd of its pid 1
 * when it was killed and not yet waited for (dying, else -1: the thread waits for it, and reaps
 * it when reap); false when the stock cannot take them now (the caller waits and removes). */
static bool stock_return(struct container_stock *s, struct cg_group *g, int netns, int dying,
                         bool reap, const char *owner, const struct cg_limits *l)
{
    if (pthread_mutex_trylock(&s->lock) != 0)
        return false;
    struct stock_returned *r = s->stop ? NULL : stock_queue(s, g, netns, owner, l);
    if (r) {
        r->dying = dying;
        r->reap = reap;
    }
    bool taken = r != NULL;
    pthread_mutex_unlock(&s->lock);
    if (taken)
        pthread_cond_signal(&s->wake);
    return taken;
}

/* The container factory (ignis-shim --server): exec'd once, it clones each container's pid 1
 * as our child (CLONE_PARENT), which saves the exec of a shim per container. One per process,
 * started on first use. A request is sent under the lock and answered on a socket of its own,
 * so a requester need not wait for the answer while the server works (the event loop does not:
 * container_options.no_wait); the server serves the requests in turn. */
static struct {
    pthread_mutex_t lock;
    pid_t pid;
    int sock;
    bool disabled;
    /* The pid slots every server shares with us (SHIM_FD_SERVER_PIDS), made with the first
     * server and kept: a slot outlives the server that had its request. NULL: none (requests
     * carry no slot). */
    int pids_fd;
    _Atomic int32_t *pids;
    uint64_t slot_used[SHIM_PID_SLOTS / 64];
} server = {PTHREAD_MUTEX_INITIALIZER, -1, -1, false, -1, NULL, {0}};

/* Called with the lock held: a free slot, zeroed, or SHIM_PID_SLOT_NONE. */
static uint32_t slot_take_locked(void)
{
    for (uint32_t i = 0; server.pids && i < ARRAY_SIZE(server.slot_used); i++)
        if (~server.slot_used[i]) {
            uint32_t bit = (uint32_t)__builtin_ctzll(~server.slot_used[i]);
            server.slot_used[i] |= UINT64_C(1) << bit;
            atomic_store(&server.pids[i * 64 + bit], 0);
            return i * 64 + bit;
        }
    return SHIM_PID_SLOT_NONE;
}

/* The request of slot got no answer (its server went away): a pid 1 the server cloned for it
 * (the kernel stored its pid in the slot) is our child, unreaped, so its pid is still its own:
 * killed and reaped here (reap_killed's bounded wait), where it would otherwise stay a zombie.
 * Then the slot is free. */
static void slot_release(uint32_t slot, bool orphan)
{
    if (slot == SHIM_PID_SLOT_NONE)
        return;
    pid_t pid = orphan ? atomic_load(&server.pids[slot]) : 0;
    int pidfd = pid > 0 ? pidfd_open(pid, 0) : -1;
    if (pidfd >= 0) {
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        reap_killed(pidfd, true, NULL, "pid 1 of a lost request");
    }
    pthread_mutex_lock(&server.lock);
    server.slot_used[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
    pthread_mutex_unlock(&server.lock);
}

/* Called with the lock held: the slots' memfd, made once; -1 when it cannot be (requests then
 * carry no slot). */
static int slots_fd_locked(void)
{
    if (server.pids)
        return server.pids_fd;
    size_t size = SHIM_PID_SLOTS * sizeof(int32_t);
    int fd = memfd_create("ignis-shim-pids", MFD_CLOEXEC);
    void *map = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, (off_t)size) == 0)
        map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    server.pids = map;
    server.pids_fd = fd;
    return fd;
}

void container_use_server(bool use)
{
    pthread_mutex_lock(&server.lock);
    server.disabled = !use;
    pthread_mutex_unlock(&server.lock);
}

static void server_stop_locked(void)
{
    if (server.sock >= 0)
        close(server.sock); /* EOF: the server exits */
    server.sock = -1;
    if (server.pid > 0)
        while (waitpid(server.pid, NULL, 0) < 0 && errno == EINTR)
            ;
    server.pid = -1;
}

void container_shutdown(void)
{
    pthread_mutex_lock(&server.lock);
    server_stop_locked();
    pthread_mutex_unlock(&server.lock);
}

static int server_start_locked(const char *shim)
{
    int sv[2], fds[5] = {-1, -1, -1, -1, -1}, pidfd = -1, r = 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* 0 and 1 /dev/null, 2 our stderr (where a crash would say something), 3 the socket, 4 the
     * pid slots when there are. */
    int slots = slots_fd_locked();
    if ((fds[0] = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
        (fds[1] = fcntl(fds[0], F_DUPFD_CLOEXEC, 10)) < 0 ||
        ((fds[2] = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10)) < 0 &&
         (fds[2] = fcntl(fds[0], F_DUPFD_CLOEXEC, 10)) < 0) ||
        (fds[3] = fcntl(sv[1], F_DUPFD_CLOEXEC, 10)) < 0 ||
        (slots >= 0 && (fds[4] = fcntl(slots, F_DUPFD_CLOEXEC, 10)) < 0))
        r = -errno;
    if (r == 0 && (r = lift_fd(&fds[0])) == 0) {
        pid_t pid = spawn_child(-1, shim, "--server", fds, slots >= 0 ? 5 : 4, &pidfd);
        if (pid < 0)
            r = -errno;
        else {
            server.pid = pid;
            server.sock = TAKE_FD(sv[0]);
            close(pidfd); /* reaped by waitpid in server_stop_locked */
        }
    }
    for (int i = 0; i < 5; i++)
        container_close_fd(&fds[i]);
    container_close_fd(&sv[1]);
    container_close_fd(&sv[0]);
    return r;
}

static int server_request_locked(const int fds[], int nfds, bool has_netns, bool has_cgroup,
                                 uint32_t slot)
{
    struct shim_request_header hdr = {.version = SHIM_REQUEST_VERSION,
                                      .has_netns = has_netns,
                                      .has_cgroup = has_cgroup,
                                      .pid_slot = slot};
    union {
        char buf[CMSG_SPACE(sizeof(int) * SHIM_REQUEST_MAX_FDS)];
        struct cmsghdr align;
    } control = {};
    struct iovec iov = {.iov_base = &hdr, .iov_len = sizeof(hdr)};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = control.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    ssize_t sent;
    while ((sent = sendmsg(server.sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return sent == (ssize_t)sizeof(hdr) ? 0 : sent < 0 ? -errno : -EIO;
}

/* Sends the server a request for a container (its fds, without the answer's socket): 0 with
 * *ret_reply, our end of the answer's socket (non-blocking), *ret_server, the pid of the server
 * that has it, and *ret_slot, the request's pid slot (server_answer frees it); or -errno when
 * the server could not be reached (a server that died is started again, once). */
static int server_send(const char *shim, const int fds[], int nfds, bool has_netns, bool has_cgroup,
                       int *ret_reply, pid_t *ret_server, uint32_t *ret_slot)
{
    int sv[2], all[SHIM_REQUEST_MAX_FDS], r = -ENOTCONN;
    uint32_t slot = SHIM_PID_SLOT_NONE;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        return -errno;
    memcpy(all, fds, sizeof(int) * (size_t)nfds);
    all[nfds] = sv[1];
    pthread_mutex_lock(&server.lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (server.sock < 0 && (r = server_start_locked(shim)) < 0)
            break;
        if (slot == SHIM_PID_SLOT_NONE)
            slot = slot_take_locked();
        if ((r = server_request_locked(all, nfds + 1, has_netns, has_cgroup, slot)) == 0) {
            *ret_server = server.pid;
            break;
        }
        server_stop_locked();
    }
    pthread_mutex_unlock(&server.lock);
    close(sv[1]);
    if (r < 0) {
        close(sv[0]);
        slot_release(slot, false); /* no server had the request */
        return r;
    }
    *ret_reply = sv[0];
    *ret_slot = slot;
    return 0;
}

/* The answer on reply to a request sent to the server of pid gen: 0 and *ret_answer (a pid, or
 * -errno when it refused: the reason is on the sync pipe); -EAGAIN when it has not come yet
 * (unless wait); -EPIPE when that server went away without answering (stopped here, if it is
 * still the one, so that the next request starts another; a pid 1 it had cloned is killed and
 * reaped). Unless -EAGAIN, the request's *slot is freed and set to SHIM_PID_SLOT_NONE. */
static int server_answer(int reply, pid_t gen, uint32_t *slot, bool wait, int32_t *ret_answer)
{
    int r;
    for (;;) {
        ssize_t n = recv(reply, ret_answer, sizeof(*ret_answer), 0);
        if (n == (ssize_t)sizeof(*ret_answer)) {
            r = 0;
            break;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!wait)
                return -EAGAIN;
            if ((r = poll_until(reply, POLLIN, UINT64_MAX)) < 0)
                break;
            continue;
        }
        pthread_mutex_lock(&server.lock);
        if (server.pid == gen)
            server_stop_locked();
        pthread_mutex_unlock(&server.lock);
        r = -EPIPE;
        break;
    }
    slot_release(*slot, r == -EPIPE);
    *slot = SHIM_PID_SLOT_NONE;
    return r;
}

/* Asks the server for a container and waits for the answer: 0 and *ret_answer (as
 * server_answer's), or -errno when the server could not be reached. A server that died with the
 * request gets it again, once, as a new one. */
static int server_spawn(const char *shim, const int fds[], int nfds, bool has_netns,
                        bool has_cgroup, int32_t *ret_answer)
{
    int r = -EPIPE;
    for (int attempt = 0; attempt < 2 && r == -EPIPE; attempt++) {
        int reply;
        pid_t gen;
        uint32_t slot;
        if ((r = server_send(shim, fds, nfds, has_netns, has_cgroup, &reply, &gen, &slot)) < 0)
            return r;
        r = server_answer(reply, gen, &slot, true, ret_answer);
        close(reply);
    }
    return r;
}

/* c's pid 1 is answer (> 0), or the server refused it (the reason is on the sync pipe, for
 * container_finish_spawn; there is nothing to wait for). */
static int server_spawned(struct container *c, int32_t answer, struct ig_error *err)
{
    if (answer < 0) {
        c->exited = true;
        c->exit.exit_code = SHIM_EXIT_SETUP;
        return 0;
    }
    /* Our own child (CLONE_PARENT), not yet reaped: its pid cannot be reused. */
    pid_t pid = (pid_t)answer;
    if ((c->pidfd = pidfd_open(pid, 0)) < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return ig_error_set(err, e, "pidfd_open: %s", strerror(e));
    }
    c->pid = pid;
    return 0;
}

int container_server_finish(struct container *c, bool wait, struct ig_error *err)
{
    int32_t answer;
    int r = server_answer(c->reply_fd, c->server_gen, &c->server_slot, wait, &answer);
    if (r == -EAGAIN)
        return r;
    /* reply_fd stays open until destroy: the caller may still watch it (container_fork_fd). */
    c->forking = false;
    if (r < 0)
        return ig_error_set(err, -r, "container %s: the container server went away: %s", c->name,
                            strerror(-r));
    return server_spawned(c, answer, err);
}

int container_alloc(struct cg_manager *m, const struct container_options *o, bool want_netns,
                    struct container **ret, int *ret_netns, struct ig_error *err)
{
    _cleanup_close_ int stock_netns = -1;
    int r;

    *ret_netns = -1;
    struct container *c = calloc(1, sizeof(*c));
    if (!c)
        return ig_error_set(err, ENOMEM, "out of memory");
    c->pidfd = c->sync_fd = c->runtime_fd = c->stdout_fd = c->stderr_fd = c->stock_netns = -1;
    c->ctl_fd = c->reply_fd = -1;
    c->server_slot = SHIM_PID_SLOT_NONE;
    c->pid = -1;
    if (o->name) {
        if (!valid_name(o->name)) {
            r = ig_error_set(err, EINVAL,
                             "container name \"%s\" is not 1 to 95 of "
                             "[A-Za-z0-9_.-]",
                             o->name);
            goto fail;
        }
        snprintf(c->name, sizeof(c->name), "%s", o->name);
    } else {
        snprintf(c->name, sizeof(c->name), "%d-%u", (int)getpid(),
                 (unsigned)atomic_fetch_add(&name_counter, 1));
    }

    struct cg_group *stock_group = NULL;
    if (o->stock) {
        c->stock = o->stock;
        /* An owner too long to keep whole gets nothing back: two such could collide. */
        if (o->stock_owner && strlen(o->stock_owner) < sizeof(c->stock_owner))
            snprintf(c->stock_owner, sizeof(c->stock_owner), "%s", o->stock_owner);
        c->limits = o->limits;
        stock_take(o->stock, want_netns, !o->group, c->stock_owner, &o->limits, &stock_netns,
                   &stock_group);
        /* An owner's namespace may go back to the stock after the container (the stock checks
         * it); without an owner it is this container's only. */
        if (stock_netns >= 0 && c->stock_owner[0]) {
            c->stock_netns = TAKE_FD(stock_netns);
            *ret_netns = c->stock_netns;
        }
    }
    if (o->group || stock_group) {
        /* Counters are cumulative, and a borrowed group or a reused one from the stock has
         * counted earlier containers: remember where this container starts. */
        c->group = o->group ? o->group : stock_group;
        c->own_group = !o->group;
        cg_reset_peak(c->group);
        cg_read_stats(c->group, CG_STAT_CPU | CG_STAT_OOM, &c->baseline);
    } else {
        r = cg_create(m, c->name, &o->limits, &c->group, err);
        if (r < 0)
            goto fail;
        c->own_group = true;
    }
    if (stock_netns >= 0)
        *ret_netns = TAKE_FD(stock_netns);
    *ret = c;
    return 0;
fail:
    container_destroy(c, NULL);
    return r;
}

int container_spawn(struct cg_manager *m, const struct container_options *o, struct container **ret,
                    struct ig_error *err)
{
    int child[CHILD_N] = {-1, -1, -1, -1, -1, -1, -1};
    int pipe_fds[2], r;
    _cleanup_close_ int own_netns = -1; /* from the stock, no owner: the container keeps it */
    _cleanup_free_ char *text = NULL;
    struct container *c;

    const char *shim = container_shim_path();
    if (!shim)
        return ig_error_set(err, ENOENT,
                            "ignis-shim not found (next to the program, in its "
                            "build tree, or in %s)",
                            IGNIS_LIBEXECDIR);
    int netns_fd = -1;
    r = container_alloc(m, o, o->netns_fd <= 0, &c, &netns_fd, err);
    if (r < 0)
        return r;
    if (o->netns_fd > 0)
        netns_fd = o->netns_fd;
    else if (netns_fd != c->stock_netns)
        own_netns = netns_fd;

    pthread_mutex_lock(&server.lock);
    c->via_server = !server.disabled;
    pthread_mutex_unlock(&server.lock);

    /* The spec as given, plus the cgroups the shim must join. */
    struct container_spec spec = *o->spec;
    spec.cgroups = (char **)cg_group_paths(c->group);
    if (spec.cgroups && !spec.cgroups[0])
        spec.cgroups = NULL;
    char netns_path[32];
    if (netns_fd >= 0) {
        /* The server gets the fd itself; the one-container shim finds it on fd 6. */
        snprintf(netns_path, sizeof(netns_path), "/proc/self/fd/%d", SHIM_FD_NETNS);
        if (!c->via_server)
            spec.netns = netns_path;
        if ((child[CHILD_NETNS] = fcntl(netns_fd, F_DUPFD_CLOEXEC, 10)) < 0) {
            r = ig_error_set(err, errno, "dup: %s", strerror(errno));
            goto fail;
        }
    }
    r = container_spec_format(&spec, &text, err);
    if (r < 0)
        goto fail;

    if ((child[CHILD_STDIN] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        r = ig_error_set(err, errno, "/dev/null: %s", strerror(errno));
        goto fail;
    }
    for (int i = CHILD_STDOUT; i <= CHILD_STDERR; i++) {
        int given = i == CHILD_STDOUT ? o->stdout_fd : o->stderr_fd;
        if (given >= 0) {
            child[i] = fcntl(given, F_DUPFD_CLOEXEC, 10);
            if (child[i] < 0) {
                r = ig_error_set(err, errno, "dup: %s", strerror(errno));
                goto fail;
            }
            continue;
        }
        if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
            r = ig_error_set(err, errno, "pipe: %s", strerror(errno));
            goto fail;
        }
        *(i == CHILD_STDOUT ? &c->stdout_fd : &c->stderr_fd) = pipe_fds[0];
        child[i] = pipe_fds[1];
    }
    if ((r = spec_memfd(text, err)) < 0)
        goto fail;
    child[CHILD_SPEC] = r;
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        r = ig_error_set(err, errno, "pipe: %s", strerror(errno));
        goto fail;
    }
    c->sync_fd = pipe_fds[0];
    child[CHILD_SYNC] = pipe_fds[1];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pipe_fds) < 0) {
        r = ig_error_set(err, errno, "socketpair: %s", strerror(errno));
        goto fail;
    }
    c->runtime_fd = pipe_fds[0];
    child[CHILD_RUNTIME] = pipe_fds[1];
    for (int i = 0; i < CHILD_N; i++)
        if (child[i] >= 0 && (r = lift_fd(&child[i])) < 0) {
            ig_error_set(err, -r, "dup: %s", strerror(-r));
            goto fail;
        }

    if (c->via_server) {
        /* The request's fds in the order of struct shim_request (no stdin: pid 1 opens
         * /dev/null in the container). */
        int fds[SHIM_REQUEST_MAX_FDS], nfds = 0, cgroup_fd = cg_group_v2_fd(c->group);
        fds[nfds++] = child[CHILD_SPEC];
        fds[nfds++] = child[CHILD_SYNC];
        fds[nfds++] = child[CHILD_STDOUT];
        fds[nfds++] = child[CHILD_STDERR];
        fds[nfds++] = child[CHILD_RUNTIME];
        if (child[CHILD_NETNS] >= 0)
            fds[nfds++] = child[CHILD_NETNS];
        if (cgroup_fd >= 0)
            fds[nfds++] = cgroup_fd;
        bool has_netns = child[CHILD_NETNS] >= 0, has_cgroup = cgroup_fd >= 0;
        int32_t answer = 0;
        if (o->no_wait) {
            r = server_send(shim, fds, nfds, has_netns, has_cgroup, &c->reply_fd, &c->server_gen,
                            &c->server_slot);
            c->forking = r == 0;
        } else {
            r = server_spawn(shim, fds, nfds, has_netns, has_cgroup, &answer);
        }
        if (r < 0) {
            r = ig_error_set(err, -r, "starting %s --server: %s", shim, strerror(-r));
            goto fail;
        }
        if (!c->forking && (r = server_spawned(c, answer, err)) < 0)
            goto fail;
    } else {
        int nfds = child[CHILD_NETNS] >= 0 ? CHILD_N : CHILD_NETNS;
        c->pid = spawn_child(cg_group_v2_fd(c->group), shim, NULL, child, nfds, &c->pidfd);
        if (c->pid < 0) {
            r = ig_error_set(err, errno, "starting %s: %s", shim, strerror(errno));
            goto fail;
        }
    }
    for (int i = 0; i < CHILD_N; i++)
        container_close_fd(&child[i]);
    *ret = c;
    return 0;
fail:
    for (int i = 0; i < CHILD_N; i++)
        container_close_fd(&child[i]);
    container_destroy(c, NULL);
    return r;
}

int container_finish_spawn(struct container *c, struct ig_error *err)
{
    if (!c->spawn_done) {
        struct container_sync_msg msg;
        ssize_t n;
        while ((n = read(c->sync_fd, &msg, sizeof(msg))) < 0 && errno == EINTR)
            ;
        if (n == 0) {
            c->spawn_result = 0;
        } else if (n == (ssize_t)sizeof(msg)) {
            msg.message[sizeof(msg.message) - 1] = '\0';
            c->spawn_result =
                ig_error_set(&c->spawn_error, msg.code, "container %s: %s", c->name, msg.message);
        } else {
            c->spawn_result = ig_error_set(&c->spawn_error, n < 0 ? errno : EIO,
                                           "container %s: reading the sync pipe: %s", c->name,
                                           n < 0 ? strerror(errno) : "short message");
        }
        c->spawn_done = true;
        container_close_fd(&c->sync_fd);
    }
    if (c->spawn_result < 0)
        ig_error_set(err, c->spawn_error.code, "%s", c->spawn_error.message);
    return c->spawn_result;
}

void container_spawn_spoke(struct container *c)
{
    if (c->spawn_done)
        return;
    c->spawn_result = 0;
    c->spawn_done = true;
    container_close_fd(&c->sync_fd);
}

int container_create(struct cg_manager *m, const struct container_options *o,
                     struct container **ret, struct ig_error *err)
{
    struct container *c;
    int r = container_spawn(m, o, &c, err);
    if (r < 0)
        return r;
    r = container_finish_spawn(c, err);
    if (r < 0) {
        container_destroy(c, NULL);
        return r;
    }
    *ret = c;
    return 0;
}

pid_t container_pid(const struct container *c)
{
    return c->pid;
}

int container_sync_fd(const struct container *c)
{
    return c->sync_fd;
}

int container_pidfd(const struct container *c)
{
    return c->pidfd;
}

int container_runtime_fd(const struct container *c)
{
    return c->runtime_fd;
}

int container_take_runtime_fd(struct container *c)
{
    return TAKE_FD(c->runtime_fd);
}

int container_stdout_fd(const struct container *c)
{
    return c->stdout_fd;
}

int container_stderr_fd(const struct container *c)
{
    return c->stderr_fd;
}

struct cg_group *container_cgroup(const struct container *c)
{
    return c->group;
}

uint64_t container_oom_kills_at_spawn(const struct container *c)
{
    return c->baseline.oom_kills;
}

/* A container forked from a template is not our child: its pid 1 (B) reports the runtime's end
 * as a wait status on the control socket right before it exits, and a B killed reports nothing
 * (EOF). Read once its pidfd says it is gone, so that the exit is never seen before B's pid
 * namespace is. Fills info as waitid would. */
static int forked_exit(struct container *c, siginfo_t *info)
{
    int32_t status;
    struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
    if (poll(&p, 1, 0) != 1)
        return 0;
    ssize_t n = recv(c->ctl_fd, &status, sizeof(status), MSG_DONTWAIT);
    if (n == (ssize_t)sizeof(status) && WIFEXITED(status)) {
        info->si_code = CLD_EXITED;
        info->si_status = WEXITSTATUS(status);
    } else {
        info->si_code = CLD_KILLED;
        info->si_status = n == (ssize_t)sizeof(status) ? WTERMSIG(status) : SIGKILL;
    }
    info->si_pid = c->pid;
    return 0;
}

int container_poll_exit(struct container *c, struct container_exit *ret)
{
    if (!c->exited) {
        siginfo_t info = {};
        if (c->pidfd < 0)
            return -ECHILD;
        if (c->ctl_fd >= 0)
            forked_exit(c, &info);
        else if (waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &info, WEXITED | WNOHANG) < 0)
            return -errno;
        if (info.si_pid == 0)
            return -EAGAIN;
        struct container_exit e = {};
        if (info.si_code == CLD_EXITED) {
            e.exit_code = info.si_status;
            /* The shim exits 128+N when signal N killed the runtime, as a shell reports it. */
            if (e.exit_code > 128 && e.exit_code < 128 + NSIG)
                e.signal = e.exit_code - 128;
        } else {
            e.signal = info.si_status;
            e.exit_code = 128 + info.si_status;
        }
        if (cg_read_stats(c->group, CG_STAT_ALL, &e.stats) == 0) {
            e.stats.cpu_usec -= c->baseline.cpu_usec;
            e.stats.oom_kills -= c->baseline.oom_kills;
            e.oom_killed = e.stats.oom_kills > 0;
        }
        c->exit = e;
        c->exited = true;
    }
    *ret = c->exit;
    return 0;
}

int container_wait(struct container *c, struct container_exit *ret)
{
    for (;;) {
        int r = container_poll_exit(c, ret);
        if (r != -EAGAIN)
            return r;
        struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return -errno;
    }
}

int container_kill(struct container *c, struct ig_error *err)
{
    if (c->exited || c->pidfd < 0)
        return 0;
    /* Through the server, pid is the container's pid 1, our child: SIGKILL takes the pid
     * namespace with it. A one-container shim is asked with SIGTERM to kill its pid 1 and reap
     * it: killing the whole cgroup at once would kill the shim too and orphan pid 1 to the
     * host's init, which reaps it whenever it gets to it. */
    int sig = c->via_server || c->ctl_fd >= 0 ? SIGKILL : SIGTERM;
    if (pidfd_send_signal(c->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
        return ig_error_set(err, errno, "killing container %s: %s", c->name, strerror(errno));
    return 0;
}

int container_destroy(struct container *c, struct ig_error *err)
{
    int r = 0, q;

    if (!c)
        return 0;
    container_fork_cancel(c);
    struct container_exit e;
    bool running = c->pidfd >= 0 && container_poll_exit(c, &e) == -EAGAIN;
    if (running)
        r = container_kill(c, err);
    /* With a stock, its thread waits for a killed container's exit and removes the cgroup (a
     * few writes and an rmdir, with retries while the kernel finishes with the last processes)
     * off the caller's path, where the wait was the event loop's longest for a fresh
     * container; its failures are logged there. A borrowed cgroup is the caller's to use again
     * once this returns: its container is waited for here. */
    struct cg_group *own = c->own_group ? c->group : NULL;
    int dying = running && r == 0 && own ? c->pidfd : -1;
    if (c->stock && (own || c->stock_netns >= 0 || dying >= 0) &&
        stock_return(c->stock, own, c->stock_netns, dying, c->ctl_fd < 0, c->stock_owner,
                     &c->limits)) {
        own = NULL;
        c->stock_netns = -1;
        if (dying >= 0) {
            c->pidfd = -1;
            running = false;
        }
    }
    if (running)
        reap_killed(TAKE_FD(c->pidfd), c->ctl_fd < 0, c->group, c->name);
    if (own) {
        q = cg_destroy(own, err);
        if (q < 0 && r == 0)
            r = q;
    }
    container_close_fd(&c->stock_netns);
    c->group = NULL;
    container_close_fd(&c->pidfd);
    container_close_fd(&c->sync_fd);
    container_close_fd(&c->runtime_fd);
    container_close_fd(&c->stdout_fd);
    container_close_fd(&c->stderr_fd);
    container_close_fd(&c->ctl_fd);
    container_close_fd(&c->reply_fd);
    free(c);
    return r;
}
