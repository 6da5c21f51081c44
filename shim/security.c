/* Privileges: resource limits, the uid/gid switch, capabilities (libcap) and the seccomp filter
 * (libseccomp). */
#include "shim.h"

#include <grp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>

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

/* Docker's default profile refuses these (plus the new mount API and a few more that only a
 * capability would allow; refusing them keeps the answer uniform: EPERM). */
static const char *const denied[] = {
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    "stime",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "nfsservctl",
    "uselib",
    "_sysctl",
    "get_kernel_syms",
    "query_module",
};

/* The namespace flags clone must not carry (Docker's mask 0x7E020000): NEWNS, NEWCGROUP,
 * NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. */
static const uint64_t clone_ns_flags[] = {0x00020000, 0x02000000, 0x04000000, 0x08000000,
                                          0x10000000, 0x20000000, 0x40000000};

int shim_load_seccomp(void)
{
    /* Syscalls of another ABI (i386 via int 0x80, x32) would bypass a native-only filter;
     * libseccomp's default bad-arch action kills the process, which is what we want. */
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int r;

    if (!ctx)
        return -ENOMEM;
    /* We set no_new_privs ourselves, and want a failure to load to be reported. */
    for (size_t i = 0; i < ARRAY_SIZE(denied); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < ARRAY_SIZE(clone_ns_flags); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
        if (r < 0)
            goto out;
    }
    /* clone3 passes its flags in memory a filter cannot read: answer ENOSYS so that libcs fall
     * back to clone, whose flags the rules above check (Docker does the same). */
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        goto out;
    r = seccomp_load(ctx);
out:
    seccomp_release(ctx);
    return r;
}
