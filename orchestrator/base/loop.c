#include "base/loop.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>

#include "base/log.h"

struct io_watch {
    int fd;
    loop_io_fn fn; /* NULL once removed: events already fetched for it are dropped */
    void *userdata;
    struct io_watch *next_dead;
};

struct loop_timer {
    uint64_t due;
    uint64_t seq; /* ties broken by creation order, so equal deadlines fire FIFO */
    size_t index;
    loop_timer_fn fn;
    void *userdata;
};

struct posted {
    loop_call_fn fn;
    void *userdata;
    struct posted *next;
};

struct loop {
    int epfd;
    int wakefd;
    int sigfd;
    sigset_t sigmask;
    struct {
        loop_signal_fn fn;
        void *userdata;
    } signals[65];
    struct io_watch **byfd; /* indexed by fd */
    size_t nbyfd;
    struct io_watch *dead; /* removed during a batch, freed after it */
    struct loop_timer **heap;
    size_t nheap, heapcap;
    uint64_t seq;
    struct {
        loop_prepare_fn fn;
        void *userdata;
    } prepare[8];
    size_t nprepare;
    struct {
        loop_call_fn fn;
        void *userdata;
    } flush[4];
    size_t nflush;
    pthread_mutex_t post_lock;
    struct posted *posted_head, *posted_tail;
    bool quit;
};

int loop_new(struct loop **ret)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->sigfd = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&l->post_lock, NULL);
    sigemptyset(&l->sigmask);
    if (l->epfd < 0 || l->wakefd < 0) {
        int r = -errno;
        loop_free(l);
        return r;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
        int r = -errno;
        loop_free(l);
        return r;
    }
    *ret = l;
    return 0;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nbyfd; i++)
        free(l->byfd[i]);
    free(l->byfd);
    while (l->dead) {
        struct io_watch *w = l->dead;
        l->dead = w->next_dead;
        free(w);
    }
    for (size_t i = 0; i < l->nheap; i++)
        free(l->heap[i]);
    free(l->heap);
    while (l->posted_head) {
        struct posted *p = l->posted_head;
        l->posted_head = p->next;
        free(p);
    }
    /* The signals stay blocked: a SIGTERM arriving while the owner tears down (after the loop
     * stopped) must not kill the process half way through. */
    if (l->sigfd >= 0)
        close(l->sigfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    if (l->epfd >= 0)
        close(l->epfd);
    pthread_mutex_destroy(&l->post_lock);
    free(l);
}

int loop_add_io(struct loop *l, int fd, uint32_t events, loop_io_fn fn, void *userdata)
{
    if (fd < 0)
        return -EBADF;
    if ((size_t)fd >= l->nbyfd) {
        size_t n = l->nbyfd ? l->nbyfd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct io_watch **t = realloc(l->byfd, n * sizeof(*t));
        if (!t)
            return -ENOMEM;
        memset(t + l->nbyfd, 0, (n - l->nbyfd) * sizeof(*t));
        l->byfd = t;
        l->nbyfd = n;
    }
    if (l->byfd[fd])
        return -EEXIST;
    struct io_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (struct io_watch){.fd = fd, .fn = fn, .userdata = userdata};
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int r = -errno;
        free(w);
        return r;
    }
    l->byfd[fd] = w;
    return 0;
}

static struct io_watch *find_watch(struct loop *l, int fd)
{
    return fd >= 0 && (size_t)fd < l->nbyfd ? l->byfd[fd] : NULL;
}

int loop_mod_io(struct loop *l, int fd, uint32_t events)
{
    struct io_watch *w = find_watch(l, fd);
    if (!w)
        return -ENOENT;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del_io(struct loop *l, int fd)
{
    struct io_watch *w = find_watch(l, fd);
    if (!w)
        return -ENOENT;
    l->byfd[fd] = NULL;
    /* Failing, the fd was closed while watched (a bug): the kernel keeps the entry while any copy
     * of the file is open (a fork's), and its events would name the watch freed below. */
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
        log_error("an fd was closed before its watch was removed", "fd=%d error=\"%s\"", fd,
                  strerror(errno));
    /* Events for this watch may still be in the current batch: disarm it now, free it after. */
    w->fn = NULL;
    w->next_dead = l->dead;
    l->dead = w;
    return 0;
}

/* Min-heap on (due, seq). */
static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_swap(struct loop *l, size_t i, size_t j)
{
    struct loop_timer *t = l->heap[i];
    l->heap[i] = l->heap[j];
    l->heap[j] = t;
    l->heap[i]->index = i;
    l->heap[j]->index = j;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0 && timer_before(l->heap[i], l->heap[(i - 1) / 2])) {
        heap_swap(l, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t m = i, a = 2 * i + 1, b = 2 * i + 2;
        if (a < l->nheap && timer_before(l->heap[a], l->heap[m]))
            m = a;
        if (b < l->nheap && timer_before(l->heap[b], l->heap[m]))
            m = b;
        if (m == i)
            return;
        heap_swap(l, i, m);
        i = m;
    }
}

static void heap_remove(struct loop *l, size_t i)
{
    l->nheap--;
    if (i != l->nheap) {
        heap_swap(l, i, l->nheap);
        heap_down(l, i);
        heap_up(l, i);
    }
}

int loop_add_timer(struct loop *l, uint64_t due_usec, loop_timer_fn fn, void *userdata,
                   struct loop_timer **ret)
{
    if (l->nheap == l->heapcap) {
        size_t cap = l->heapcap ? l->heapcap * 2 : 64;
        struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        l->heap = h;
        l->heapcap = cap;
    }
    struct loop_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    *t = (struct loop_timer){
        .due = due_usec, .seq = l->seq++, .index = l->nheap, .fn = fn, .userdata = userdata};
    l->heap[l->nheap++] = t;
    heap_up(l, t->index);
    if (ret)
        *ret = t;
    return 0;
}

void loop_cancel_timer(struct loop *l, struct loop_timer *t)
{
    if (!t)
        return;
    heap_remove(l, t->index);
    free(t);
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == sizeof(si))
        if (si.ssi_signo < ARRAY_SIZE(l->signals) && l->signals[si.ssi_signo].fn)
            l->signals[si.ssi_signo].fn(l, (int)si.ssi_signo, l->signals[si.ssi_signo].userdata);
}

int loop_add_signal(struct loop *l, int signo, loop_signal_fn fn, void *userdata)
{
    if (signo <= 0 || (size_t)signo >= ARRAY_SIZE(l->signals))
        return -EINVAL;
    sigaddset(&l->sigmask, signo);
    if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
        return -errno;
    int fd = signalfd(l->sigfd, &l->sigmask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (l->sigfd < 0) {
        l->sigfd = fd;
        int r = loop_add_io(l, fd, EPOLLIN, on_signal, NULL);
        if (r < 0)
            return r;
    }
    l->signals[signo].fn = fn;
    l->signals[signo].userdata = userdata;
    return 0;
}

int loop_add_prepare(struct loop *l, loop_prepare_fn fn, void *userdata)
{
    if (l->nprepare == ARRAY_SIZE(l->prepare))
        return -ENOSPC;
    l->prepare[l->nprepare].fn = fn;
    l->prepare[l->nprepare].userdata = userdata;
    l->nprepare++;
    return 0;
}

int loop_add_flush(struct loop *l, loop_call_fn fn, void *userdata)
{
    if (l->nflush == ARRAY_SIZE(l->flush))
        return -ENOSPC;
    l->flush[l->nflush].fn = fn;
    l->flush[l->nflush].userdata = userdata;
    l->nflush++;
    return 0;
}

void loop_del_flush(struct loop *l, loop_call_fn fn, void *userdata)
{
    for (size_t i = 0; i < l->nflush; i++)
        if (l->flush[i].fn == fn && l->flush[i].userdata == userdata) {
            l->flush[i] = l->flush[--l->nflush];
            return;
        }
}

int loop_post(struct loop *l, loop_call_fn fn, void *userdata)
{
    struct posted *p = malloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    *p = (struct posted){.fn = fn, .userdata = userdata};
    pthread_mutex_lock(&l->post_lock);
    if (l->posted_tail)
        l->posted_tail->next = p;
    else
        l->posted_head = p;
    l->posted_tail = p;
    pthread_mutex_unlock(&l->post_lock);
    uint64_t one = 1;
    (void)!write(l->wakefd, &one, sizeof(one));
    return 0;
}

void loop_run_posted(struct loop *l)
{
    uint64_t n;
    (void)!read(l->wakefd, &n, sizeof(n));
    pthread_mutex_lock(&l->post_lock);
    struct posted *p = l->posted_head;
    l->posted_head = l->posted_tail = NULL;
    pthread_mutex_unlock(&l->post_lock);
    while (p) {
        struct posted *next = p->next;
        p->fn(l, p->userdata);
        free(p);
        p = next;
    }
}

void loop_quit(struct loop *l)
{
    l->quit = true;
}

int loop_run(struct loop *l)
{
    struct epoll_event events[64];

    l->quit = false;
    while (!l->quit) {
        int64_t timeout_ms = -1;
        for (size_t i = 0; i < l->nprepare; i++) {
            int64_t t = l->prepare[i].fn(l, l->prepare[i].userdata);
            if (t >= 0 && (timeout_ms < 0 || t < timeout_ms))
                timeout_ms = t;
        }
        if (l->quit)
            break;
        if (l->nheap > 0) {
            uint64_t now = now_usec(), due = l->heap[0]->due;
            int64_t t = due <= now ? 0 : (int64_t)((due - now + 999) / 1000);
            if (timeout_ms < 0 || t < timeout_ms)
                timeout_ms = t;
        }
        if (timeout_ms > INT32_MAX)
            timeout_ms = INT32_MAX;
        for (size_t i = 0; i < l->nflush; i++)
            l->flush[i].fn(l, l->flush[i].userdata);
        int n = epoll_wait(l->epfd, events, (int)ARRAY_SIZE(events), (int)timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            struct io_watch *w = events[i].data.ptr;
            if (!w) {
                loop_run_posted(l);
                continue;
            }
            if (w->fn)
                w->fn(l, w->fd, events[i].events, w->userdata);
        }
        while (l->dead) {
            struct io_watch *w = l->dead;
            l->dead = w->next_dead;
            free(w);
        }
        uint64_t now = now_usec();
        while (l->nheap > 0 && l->heap[0]->due <= now) {
            struct loop_timer *t = l->heap[0];
            heap_remove(l, 0);
            t->fn(l, t, t->userdata);
            free(t);
        }
    }
    return 0;
}
