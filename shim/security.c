/* Privileges: resource limits, the uid/gid switch, capabilities (libcap) and the seccomp filter
 * (compiled by libseccomp at build time, seccomp-gen.c). */
#include "shim.h"

#include <grp.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "seccomp-filter.h"

void shim_set_rlimits(const struct container_spec *spec)
{
    /* RLIMIT_NPROC counts per (user namespace, uid) since 5.14, so without a user namespace
     * every container running as the same uid shares it: the pids cgroup is the per-container
     * limit, this one a backstop. */
    const struct {
        int resource;
        const char *name;
        rlim_t value;
    } limits[] = {
        {RLIMIT_NOFILE, "nofile", spec->rlimit_nofile},
        {RLIMIT_NPROC, "nproc", spec->rlimit_nproc},
        {RLIMIT_CORE, "core", 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(limits); i++) {
        struct rlimit rl = {.rlim_cur = limits[i].value, .rlim_max = limits[i].value};
        if (setrlimit(limits[i].resource, &rl) < 0)
            shim_fail(errno, "setting rlimit %s: %s", limits[i].name, strerror(errno));
    }
}

void shim_drop_privileges(const struct container_spec *spec)
{
    gid_t gid = spec->gid;

    /* cap_setgroups/cap_setuid raise CAP_SETGID/CAP_SETUID for the call and keep the permitted
     * set across the uid change (PR_SET_KEEPCAPS), so CAP_SETPCAP is still there for
     * cap_set_mode below, which needs it to drop the bounding set. */
    if (cap_setgroups(gid, 1, &gid) < 0)
        shim_fail(errno, "setting gid %u: %s", spec->gid, strerror(errno));
    if (cap_setuid(spec->uid) < 0)
        shim_fail(errno, "setting uid %u: %s", spec->uid, strerror(errno));
    /* CAP_MODE_NOPRIV (libcap 2.29+): empties the effective, permitted, inheritable, ambient and
     * bounding sets, sets and locks the securebits (no root magic) and sets no_new_privs. */
    if (cap_set_mode(CAP_MODE_NOPRIV) < 0)
        shim_fail(errno, "dropping capabilities: %s", strerror(errno));
    /* Belt and braces: the runtime must never gain privileges by exec, whatever libcap did. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        shim_fail(errno, "setting no_new_privs: %s", strerror(errno));
    if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN) != 0 || prctl(PR_CAPBSET_READ, CAP_SETPCAP) != 0)
        shim_fail(EPERM, "the capability bounding set is not empty after dropping it");
}

int shim_load_seccomp(void)
{
    /* The program seccomp-gen compiled with libseccomp at build time (see there for the rules).
     * no_new_privs is already set, so no capability is needed. */
    struct sock_fprog prog = {
        .len = (unsigned short)ARRAY_SIZE(shim_seccomp_program),
        .filter = (struct sock_filter *)shim_seccomp_program,
    };
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return -errno;
    return 0;
}
