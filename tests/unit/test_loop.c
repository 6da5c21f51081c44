/* The event loop: timers in order and cancellable, fd watches, removal during a batch, posts
 * from other threads, and signals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// cmocka needs the above first
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>

#include "base/loop.h"

static char order[64];
static size_t norder;

static void on_timer(struct loop *l, struct loop_timer *t, void *userdata)
{
    if (norder < sizeof(order) - 1)
        order[norder] = *(const char *)userdata;
    norder++;
    if (*(const char *)userdata == 'z')
        loop_quit(l);
}

static void test_timers_fire_in_order(void **state)
{
    struct loop *l;
    struct loop_timer *cancelled;
    assert_int_equal(loop_new(&l), 0);
    uint64_t now = now_usec();
    norder = 0;
    /* Added out of order; equal deadlines fire in the order they were added. */
    assert_int_equal(loop_add_timer(l, now + 30000, on_timer, "c", NULL), 0);
    assert_int_equal(loop_add_timer(l, now + 10000, on_timer, "a", NULL), 0);
    assert_int_equal(loop_add_timer(l, now + 20000, on_timer, "b", NULL), 0);
    assert_int_equal(loop_add_timer(l, now + 20000, on_timer, "B", NULL), 0);
    assert_int_equal(loop_add_timer(l, now + 15000, on_timer, "x", &cancelled), 0);
    assert_int_equal(loop_add_timer(l, now + 40000, on_timer, "z", NULL), 0);
    loop_cancel_timer(l, cancelled);
    assert_int_equal(loop_run(l), 0);
    order[norder] = '\0';
    assert_string_equal(order, "abBcz");
    assert_true(now_usec() - now >= 40000);
    loop_free(l);
}

static void test_many_timers(void **state)
{
    struct loop *l;
    struct loop_timer *t[200];
    assert_int_equal(loop_new(&l), 0);
    uint64_t now = now_usec();
    norder = 0;
    for (int i = 0; i < 200; i++)
        assert_int_equal(
            loop_add_timer(l, now + 1000 + (uint64_t)((i * 7919) % 200) * 10, on_timer, "t", &t[i]),
            0);
    for (int i = 0; i < 200; i += 2)
        loop_cancel_timer(l, t[i]);
    assert_int_equal(loop_add_timer(l, now + 5000, on_timer, "z", NULL), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(norder, 101);
    loop_free(l);
}

struct pipe_state {
    int fds[2][2];
    int hits;
};

static void on_readable(struct loop *l, int fd, uint32_t events, void *userdata)
{
    struct pipe_state *ps = userdata;
    char c;
    ps->hits++;
    assert_int_equal(read(fd, &c, 1), 1);
    /* Removing the other watch while its event may be in this same batch must be safe. */
    int other = fd == ps->fds[0][0] ? ps->fds[1][0] : ps->fds[0][0];
    loop_del_io(l, other);
    loop_del_io(l, fd);
    loop_quit(l);
}

static void test_io_and_removal_in_batch(void **state)
{
    struct loop *l;
    struct pipe_state ps = {};
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(pipe(ps.fds[0]), 0);
    assert_int_equal(pipe(ps.fds[1]), 0);
    assert_int_equal(loop_add_io(l, ps.fds[0][0], EPOLLIN, on_readable, &ps), 0);
    assert_int_equal(loop_add_io(l, ps.fds[1][0], EPOLLIN, on_readable, &ps), 0);
    assert_int_equal(loop_add_io(l, ps.fds[1][0], EPOLLIN, on_readable, &ps), -EEXIST);
    assert_int_equal(write(ps.fds[0][1], "x", 1), 1);
    assert_int_equal(write(ps.fds[1][1], "y", 1), 1);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(ps.hits, 1);
    assert_int_equal(loop_del_io(l, ps.fds[0][0]), -ENOENT);
    for (int i = 0; i < 2; i++) {
        close(ps.fds[i][0]);
        close(ps.fds[i][1]);
    }
    loop_free(l);
}

static int posted_sum;

static void on_posted(struct loop *l, void *userdata)
{
    posted_sum += (int)(intptr_t)userdata;
    if (posted_sum == 4 * 1000 * 1001 / 2)
        loop_quit(l);
}

static void *poster(void *arg)
{
    for (int i = 1; i <= 1000; i++)
        loop_post(arg, on_posted, (void *)(intptr_t)i);
    return NULL;
}

static void test_post_from_threads(void **state)
{
    struct loop *l;
    pthread_t th[4];
    assert_int_equal(loop_new(&l), 0);
    posted_sum = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, poster, l), 0);
    assert_int_equal(loop_run(l), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(posted_sum, 4 * 1000 * 1001 / 2);
    loop_free(l);
}

static int prepared, flushed, flushed_after_prepare;

static int64_t on_prepare_count(struct loop *l, void *userdata)
{
    prepared++;
    return -1;
}

static void on_flush(struct loop *l, void *userdata)
{
    flushed++;
    flushed_after_prepare += prepared == flushed;
}

static void on_tick(struct loop *l, struct loop_timer *t, void *userdata)
{
    int *left = userdata;
    if (--*left == 0)
        loop_quit(l);
    else
        loop_add_timer(l, now_usec() + 1000, on_tick, left, NULL);
}

/* A flush hook runs once before each wait, after the prepare hooks; removed, it runs no more. */
static void test_flush_hooks(void **state)
{
    struct loop *l;
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(loop_add_flush(l, on_flush, NULL), 0);
    assert_int_equal(loop_add_prepare(l, on_prepare_count, NULL), 0);
    int left = 5;
    assert_int_equal(loop_add_timer(l, now_usec(), on_tick, &left, NULL), 0);
    assert_int_equal(loop_run(l), 0);
    assert_true(flushed >= 5);
    assert_int_equal(flushed, prepared);
    assert_int_equal(flushed_after_prepare, flushed);
    loop_del_flush(l, on_flush, NULL);
    int before = flushed;
    left = 3;
    assert_int_equal(loop_add_timer(l, now_usec(), on_tick, &left, NULL), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(flushed, before);
    loop_free(l);
}

static int got_signal;

static void on_sig(struct loop *l, int signo, void *userdata)
{
    got_signal = signo;
    loop_quit(l);
}

static void test_signal(void **state)
{
    struct loop *l;
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(loop_add_signal(l, SIGUSR1, on_sig, NULL), 0);
    assert_int_equal(loop_add_signal(l, SIGUSR2, on_sig, NULL), 0);
    raise(SIGUSR2);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(got_signal, SIGUSR2);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_many_timers),
        cmocka_unit_test(test_io_and_removal_in_batch),
        cmocka_unit_test(test_post_from_threads),
        cmocka_unit_test(test_flush_hooks),
        cmocka_unit_test(test_signal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
