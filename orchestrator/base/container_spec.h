/* The container spec: what the controller tells ignis-shim to build and run, as JSON on an
 * inherited fd (docs/architecture.md, "Shim and containers"). Pure: parsing and printing only,
 * shared by the controller (which writes it) and the shim (which reads it), unit-tested. Also the
 * sync-pipe message through which the shim reports a setup failure. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"

/* The whole spec must fit in one pipe buffer (64 KiB on Linux), so the controller can write it
 * before the shim runs and never block. */
#define CONTAINER_SPEC_MAX         (60u * 1024u)
#define CONTAINER_SPEC_MAX_ARGS    256u
#define CONTAINER_SPEC_MAX_ENV     1024u
#define CONTAINER_SPEC_MAX_CGROUPS 16u
#define CONTAINER_HOSTNAME_MAX     64u
#define CONTAINER_SPEC_MAX_SECRETS 64u
/* The most bytes of one secret's value the shim copies (the API's limit, secrets.h). */
#define CONTAINER_SECRET_MAX (64u * 1024u)

/* The shim's fixed fd layout when the controller starts it (no arguments): */
#define SHIM_FD_SPEC    3 /* the spec, read to EOF */
#define SHIM_FD_SYNC    4 /* write end of the close-on-exec sync pipe */
#define SHIM_FD_RUNTIME 5 /* the runtime-protocol socket; the runtime gets it as fd 3 */
#define SHIM_FD_NETNS   6 /* optional: a network namespace to join ("netns": "/proc/self/fd/6") */
/* The server's layout (ignis-shim --server): requests on a SOCK_SEQPACKET socket, and
 * optionally a memfd of SHIM_PID_SLOTS int32 slots shared with the controller. A request names
 * a slot (or SHIM_PID_SLOT_NONE), zeroed by the controller, where the kernel stores pid 1's pid
 * as it clones it (CLONE_PARENT_SETTID), before the clone returns: a server that dies between
 * the clone and its answer leaves the controller the pid of its child to kill and reap. */
#define SHIM_FD_SERVER      3
#define SHIM_FD_SERVER_PIDS 4
#define SHIM_PID_SLOTS      1024
#define SHIM_PID_SLOT_NONE  UINT32_MAX
/* A request: this header, with SCM_RIGHTS fds: spec, sync pipe (write end), stdout, stderr,
 * runtime socket, then the network namespace and the cgroup2 directory when the header says
 * so, and last a socket for the answer (one per request, so that a requester need not wait for
 * it while the server works: the controller's event loop does not). The answer is an int32 on
 * it: the pid of the container's pid 1 (the requester's child), or -errno when no container was
 * made (the reason is on the sync pipe). */
struct shim_request_header {
    uint32_t version; /* SHIM_REQUEST_VERSION */
    uint8_t has_netns, has_cgroup;
    uint8_t reserved[2];
    uint32_t pid_slot; /* where pid 1's pid goes as it is cloned, or SHIM_PID_SLOT_NONE */
};
#define SHIM_REQUEST_VERSION 3
#define SHIM_REQUEST_MAX_FDS 8

/* Exit status of the shim when setup failed before the runtime was exec'd. */
#define SHIM_EXIT_SETUP 125
/* Exit status when an exec itself failed (as a shell's). */
#define SHIM_EXIT_EXEC 127
/* What the runtime sees. */
#define RUNTIME_FD 3

/* The highest nproc a spec may give: the kernel's highest pid_max, so a limit that never binds. */
#define CONTAINER_SPEC_NPROC_MAX (1u << 22)

struct container_spec {
    char *image;       /* runtime image directory: its top-level entries appear read-only at / */
    char *bundle;      /* function bundle directory, read-only at /var/task; NULL: empty */
    char **args;       /* NULL-terminated; args[0] is an absolute path inside the container */
    char **env;        /* NULL-terminated "KEY=value" */
    char *cwd;         /* default /var/task */
    char *hostname;    /* default "ignis" */
    uint32_t uid, gid; /* default 65534 (nobody); 0 only with a user namespace */
    uint64_t tmp_size; /* bytes of the /tmp tmpfs; default 64 MiB */
    uint64_t rlimit_nofile, rlimit_nproc; /* defaults 1024 (or the hard limit, if lower) and 1024;
                                             nproc at most CONTAINER_SPEC_NPROC_MAX */
    char **cgroups; /* NULL-terminated cgroup directories the shim joins via cgroup.procs */
    /* An existing network namespace to join (an nsfs path: /proc/PID/ns/net, /run/netns/NAME,
     * /proc/self/fd/N) instead of creating one; its loopback must already be up. NULL: new. */
    char *netns;
    /* The function's secrets directory (STATE_DIR/secrets/FUNCTION) and the names in it the
     * container sees at /run/secrets/NAME: copied by the shim into a read-only tmpfs, owned by
     * uid, mode 0400. A listed name without a file there is absent. NULL: no /run/secrets. */
    char *secrets_dir;
    char **secrets;
    /* A user namespace mapping container ids 0..count-1 to host ids base..base+count-1. */
    bool user_namespace;
    uint32_t userns_uid_base, userns_gid_base, userns_count;
    /* A template (docs/architecture.md, "Templates"): the runtime is exec'd as root of the user
     * namespace (required), with its capabilities there and no seccomp filter, and forks the
     * containers made from it; pid 1 reaps until none of them is left. */
    bool template_mode;
};

/* Sets the defaults (no image, no args: not yet valid). */
void container_spec_init(struct container_spec *s);
void container_spec_clear(struct container_spec *s);

/* Parses and validates; unknown fields and out-of-range values fail with a message naming the
 * field. On failure *ret is untouched. */
int container_spec_parse(const char *text, struct container_spec *ret, struct ig_error *err);
/* Checks what parse checks (for a spec built in code). */
int container_spec_validate(const struct container_spec *s, struct ig_error *err);
/* Prints a validated spec as compact JSON (malloc'd). */
int container_spec_format(const struct container_spec *s, char **ret, struct ig_error *err);

/* The one message the shim may write on the sync pipe: a setup step failed. EOF without it
 * means the runtime was exec'd. Fixed size and under PIPE_BUF, so it arrives whole. */
struct container_sync_msg {
    int32_t code; /* positive errno */
    char message[500];
};
