/* The event loop: one thread, epoll, timers in a min-heap, signals through signalfd, and a
 * thread-safe way for worker threads to hand results back. It owns no scheduling state itself;
 * it only makes sure everything that touches that state runs on one thread. */
#pragma once

#include <signal.h>
#include <stdint.h>

#include "base/util.h"

struct loop;
struct loop_timer;

typedef void (*loop_io_fn)(struct loop *l, int fd, uint32_t events, void *userdata);
typedef void (*loop_timer_fn)(struct loop *l, struct loop_timer *t, void *userdata);
typedef void (*loop_signal_fn)(struct loop *l, int signo, void *userdata);
typedef void (*loop_call_fn)(struct loop *l, void *userdata);
/* Runs before each wait; returns the longest the loop may sleep in ms (-1: no limit). */
typedef int64_t (*loop_prepare_fn)(struct loop *l, void *userdata);

int loop_new(struct loop **ret);
void loop_free(struct loop *l);

/* Watches fd for events (EPOLLIN, EPOLLOUT, ...). One watch per fd. */
int loop_add_io(struct loop *l, int fd, uint32_t events, loop_io_fn fn, void *userdata);
int loop_mod_io(struct loop *l, int fd, uint32_t events);
int loop_del_io(struct loop *l, int fd);

/* Calls fn once at monotonic time due_usec. The timer belongs to the loop until it fires or is
 * cancelled; cancelling from inside its own callback is not allowed (it is already gone). */
int loop_add_timer(struct loop *l, uint64_t due_usec, loop_timer_fn fn, void *userdata,
                   struct loop_timer **ret);
void loop_cancel_timer(struct loop *l, struct loop_timer *t);

/* Blocks signo for the process and delivers it to fn on the loop thread. */
int loop_add_signal(struct loop *l, int signo, loop_signal_fn fn, void *userdata);

int loop_add_prepare(struct loop *l, loop_prepare_fn fn, void *userdata);

/* Runs fn after every prepare hook, just before each wait: to hand what this turn produced to
 * another thread in one go (the journal's statements). fn must not make work for the loop. */
int loop_add_flush(struct loop *l, loop_call_fn fn, void *userdata);
void loop_del_flush(struct loop *l, loop_call_fn fn, void *userdata);

/* From any thread: runs fn(userdata) on the loop thread soon. Thread-safe. */
int loop_post(struct loop *l, loop_call_fn fn, void *userdata);

/* Runs every call posted so far, on the calling thread: for shutdown, once the loop no longer
 * runs, so that work handed back by threads is not lost. */
void loop_run_posted(struct loop *l);

/* Runs until loop_quit. Returns 0, or -errno when waiting failed. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l);
