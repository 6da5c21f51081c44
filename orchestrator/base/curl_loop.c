#include "base/curl_loop.h"

#include <sys/epoll.h>

struct curl_loop {
    struct loop *loop;
    CURLM *multi;
    struct loop_timer *timer;
    curl_loop_done_fn done;
    void *userdata;
};

static void check_done(struct curl_loop *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode code = msg->data.result;
        curl_multi_remove_handle(c->multi, e);
        c->done(e, code, c->userdata);
    }
}

static void on_socket_ready(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct curl_loop *c = userdata;
    int flags = 0, running;
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_done(c);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curl_loop *c = userp;
    if (what == CURL_POLL_REMOVE) {
        if (socketp)
            loop_del_io(c->loop, fd);
        curl_multi_assign(c->multi, fd, NULL);
        return 0;
    }
    uint32_t ev = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (socketp)
        loop_mod_io(c->loop, fd, ev);
    else if (loop_add_io(c->loop, fd, ev, on_socket_ready, c) == 0)
        curl_multi_assign(c->multi, fd, c);
    return 0;
}

static void on_timer_due(struct loop *l, struct loop_timer *t, void *userdata)
{
    struct curl_loop *c = userdata;
    int running;
    c->timer = NULL;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    struct curl_loop *c = userp;
    if (c->timer) {
        loop_cancel_timer(c->loop, c->timer);
        c->timer = NULL;
    }
    if (timeout_ms >= 0)
        loop_add_timer(c->loop, now_usec() + (uint64_t)timeout_ms * 1000, on_timer_due, c,
                       &c->timer);
    return 0;
}

int curl_loop_new(struct loop *l, curl_loop_done_fn done, void *userdata, struct curl_loop **ret,
                  struct ig_error *err)
{
    struct curl_loop *c = calloc(1, sizeof(*c));
    if (!c)
        return ig_error_set(err, ENOMEM, "out of memory");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c->loop = l;
    c->done = done;
    c->userdata = userdata;
    if (!(c->multi = curl_multi_init())) {
        free(c);
        return ig_error_set(err, ENOMEM, "curl_multi_init failed");
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    *ret = c;
    return 0;
}

void curl_loop_free(struct curl_loop *c)
{
    if (!c)
        return;
    /* Cleaning up drops libcurl's sockets and may re-arm its timer (through the callbacks
     * above), so the timer goes last. */
    curl_multi_cleanup(c->multi);
    if (c->timer)
        loop_cancel_timer(c->loop, c->timer);
    free(c);
}

int curl_loop_add(struct curl_loop *c, CURL *easy)
{
    return curl_multi_add_handle(c->multi, easy) == CURLM_OK ? 0 : -EIO;
}

void curl_loop_remove(struct curl_loop *c, CURL *easy)
{
    curl_multi_remove_handle(c->multi, easy);
}
