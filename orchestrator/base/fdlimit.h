/* The process's file descriptors: RLIMIT_NOFILE raised to its hard limit at start, and a count
 * of those in use, so that new work that would hold fds (a container holds about a dozen) is
 * refused while a reserve is still free for what keeps the daemon answering: HTTP connections, the
 * store, function log files, cgroup reads. Knows nothing of what the fds are for. */
#pragma once

#include <stdbool.h>
#include <sys/resource.h>

#include "base/util.h"

struct fdlimit {
    rlim_t soft_before; /* the soft limit we were started with */
    rlim_t soft, hard;  /* after raising */
};

/* Raises the soft RLIMIT_NOFILE to the hard limit (capped at 1 << 20: select-free code does
 * not need more, and a huge fd table costs memory in every fork). Fills *ret either way; 0 or
 * -errno (the limit is then unchanged). */
int fdlimit_raise(struct fdlimit *ret);
/* The soft and hard limits now. */
void fdlimit_get(rlim_t *ret_soft, rlim_t *ret_hard);
/* How many fds the process has open (the entries of /proc/self/fd), or -errno: -EMFILE/-ENFILE
 * when not even the directory can be opened. */
int fdlimit_in_use(void);
/* The fds kept free for the daemon's own needs at a soft limit of `limit`: 1/16 of it, at least
 * 32 and at most 1024. */
unsigned fdlimit_reserve(rlim_t limit);
/* Whether `need` more fds may be taken and still leave the reserve free (true when there is no
 * /proc to count them by). */
bool fdlimit_room(unsigned need);
/* Whether `need` more fds may be taken for new work and still leave the reserve free: 0, or
 * -EMFILE with err set (reason "fds_exhausted", the counts in the message). */
int fdlimit_admit(unsigned need, struct ig_error *err);
