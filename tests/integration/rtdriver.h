/* The runtime test driver: plays the controller's side of the runtime protocol against one
 * runtime (a built image's /ignis/bootstrap) over the socket at its fd 3, so the runtimes can be
 * tested, and their round trip benchmarked, without HTTP. It starts the runtime in a real
 * container (container.h: the image as /, the bundle at /var/task, uid 65534, its own network
 * namespace) when given a test environment, else as a plain child process of the host with
 * LAMBDA_TASK_ROOT pointing at the bundle's directory. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/protocol.h"
#include "testcontainer.h"

struct rt_proc {
    struct container *c; /* container mode */
    pid_t pid;           /* plain-process mode */
    int fd;
    struct proto_decoder dec;
    char relay_addr[32];
};

struct rt_options {
    const char *images_dir; /* the images' parent dir; NULL: $IGNIS_IMAGES_DIR */
    const char *runtime;    /* exec, python3, node, provided */
    const char *bundle;     /* directory holding the function's code */
    const char *handler;
    const char *name;    /* function name (default "test") */
    unsigned memory_mb;  /* default 128 */
    unsigned timeout_ms; /* default 30000 */
    bool quiet;          /* runtime's stdout/stderr to /dev/null (benchmarks) */
    struct tc_env *env;  /* non-NULL: run in a container under env's cgroup manager */
};

#define RT_MAX_EVENTS 16

/* What came back: READY / INIT_ERROR (rt_wait_ready), RESULT / ERROR (rt_invoke), with the
 * events emitted on the way. Strings are NUL-terminated copies. */
struct rt_reply {
    enum proto_type type;
    char *id, *info, *body, *content_type, *error_type, *message, *trace;
    size_t body_len;
    size_t nevents;
    struct {
        char *type, *data, *content_type;
        size_t data_len;
    } events[RT_MAX_EVENTS];
};

/* The images dir from the environment (meson sets IGNIS_IMAGES_DIR), or NULL. */
const char *rt_images_dir(void);
/* A path under the source tree (IGNIS_SOURCE_DIR), in a static buffer per call site's copy. */
void rt_source_path(const char *rel, char *buf, size_t size);

int rt_start(struct rt_proc *p, const struct rt_options *o);
/* Waits (up to timeout_ms) for READY or INIT_ERROR. Returns 0 with *ret filled, or -errno
 * (-ETIMEDOUT, -EPIPE when the runtime closed the socket without a frame). */
int rt_wait_ready(struct rt_proc *p, int timeout_ms, struct rt_reply *ret);
/* Sends one invocation with a deadline timeout_ms from now and waits for its RESULT or ERROR
 * (collecting EVENTs), up to 10 s past the deadline. headers is a NULL-terminated list of name,
 * value, name, value... (may be NULL). */
int rt_invoke(struct rt_proc *p, const char *id, const void *body, size_t len,
              const char *const *headers, int timeout_ms, struct rt_reply *ret);
/* Closes the socket, gives the runtime a moment to exit, then SIGKILLs it (and destroys its
 * container). Returns its wait status (W* macros), or -1. */
int rt_stop(struct rt_proc *p);
void rt_reply_clear(struct rt_reply *r);
