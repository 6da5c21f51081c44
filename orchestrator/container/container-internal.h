/* The container struct, for container.c and template.c (the containers forked from a template
 * are containers like the others once made). */
#pragma once

#include "container/container.h"

struct container {
    char name[96]; /* up to 95 of [A-Za-z0-9_.-]: a function's name (63) and a number or two */
    struct cg_group *group;
    bool own_group;                /* made by container_spawn (or taken from stock), removed */
    struct container_stock *stock; /* takes own_group back after destroy, when it can */
    char stock_owner[72];
    struct cg_limits limits;
    int stock_netns;          /* from the stock, kept to hand back with the cgroup; or -1 */
    bool via_server;          /* pid is the container's pid 1, not a one-container shim */
    struct cg_stats baseline; /* the group's counters at spawn (zero: a group made for it) */
    pid_t pid;
    int pidfd;
    int sync_fd;
    int runtime_fd;
    int stdout_fd, stderr_fd;
    int spawn_result; /* after finish_spawn: 0 or -errno */
    struct ig_error spawn_error;
    bool spawn_done;
    bool exited;
    struct container_exit exit;
    /* Forked from a template (template.c): the control socket on which its pid 1 sends its
     * pidfd, gets go, and reports the runtime's end before it exits; -1 otherwise. pid and pidfd
     * are the container's pid 1 all the same, but not our child. */
    int ctl_fd;
    /* Forked, and its pid 1's pidfd has not come yet (container_fork_finish), or spawned through
     * the container server without waiting (container_options.no_wait) and its answer has not
     * come yet: pid and pidfd are -1, and destroy cancels it (container_fork_cancel). */
    bool forking;
    /* A spawn not waited for: our end of its answer's socket, the server that has it, and its
     * pid slot until the answer is read. */
    int reply_fd;
    pid_t server_gen;
    uint32_t server_slot;
    /* While forking: what go carries to it, the function's secrets (template.c). */
    struct fork_go *go;
};

/* The head of a spawn: c with its name, its cgroup (o->group, the stock's or a new one) and,
 * when want_netns, a network namespace from the stock (*ret_netns, -1: none; the caller closes
 * it). On failure nothing is left. */
int container_alloc(struct cg_manager *m, const struct container_options *o, bool want_netns,
                    struct container **ret, int *ret_netns, struct ig_error *err);
/* A pending fork goes: its pid 1 is killed if its pidfd came (and c then holds it, for destroy
 * to reap), else it exits on the control socket's EOF. A spawn not waited for is waited for, and
 * its pid 1 killed (it is our child: destroy reaps it). Nothing for a container not forking. */
void container_fork_cancel(struct container *c);
/* A spawn not waited for (c->reply_fd): the container server's answer read (waited for, if
 * wait), c's pid 1 known, or it was refused (the reason on the sync pipe, as for any spawn): 0;
 * -EAGAIN when the answer has not come; another -errno with err when the server went away or
 * pid 1 could not be watched. */
int container_server_finish(struct container *c, bool wait, struct ig_error *err);
/* Closes *fd if open and sets it to -1. */
void container_close_fd(int *fd);
