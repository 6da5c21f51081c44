#include "container/doctor.h"

#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "base/fdlimit.h"
#include "container/container.h"

/* What a warm container holds in the daemon: its runtime socket, stdout and stderr pipes, pidfd,
 * network namespace, cgroup directory and the counter files read at each invocation. */
#define DOCTOR_FDS_PER_CONTAINER 12

static const char *const status_names[] = {"ok", "degraded", "failing"};

const char *doctor_status_name(enum doctor_status s)
{
    return status_names[s];
}

void doctor_add(cJSON *arr, enum doctor_status *worst, const char *check, enum doctor_status s,
                const char *fix, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "check", check);
    cJSON_AddStringToObject(o, "status", status_names[s]);
    cJSON_AddStringToObject(o, "detail", detail);
    if (fix && s != DOCTOR_OK)
        cJSON_AddStringToObject(o, "fix", fix);
    cJSON_AddItemToArray(arr, o);
    if (s > *worst)
        *worst = s;
}

/* Kernel features by version: clone3 (5.3), CLONE_INTO_CGROUP (5.7), cgroup.kill (5.14),
 * memory.peak (5.19). */
static void check_kernel(cJSON *arr, enum doctor_status *worst)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    uname(&u);
    sscanf(u.release, "%u.%u", &major, &minor);
    unsigned v = major * 1000 + minor;
    if (v >= 5019)
        doctor_add(arr, worst, "kernel", DOCTOR_OK, NULL, "%s", u.release);
    else if (v >= 5003)
        doctor_add(arr, worst, "kernel", DOCTOR_DEGRADED, "a kernel >= 5.19", "%s: %s%s%s",
                   u.release, v < 5007 ? "no CLONE_INTO_CGROUP; " : "",
                   v < 5014 ? "no cgroup.kill (freeze-kill-thaw instead); " : "",
                   "no memory.peak (peak memory per invocation is approximate)");
    else
        doctor_add(arr, worst, "kernel", DOCTOR_FAILING, "a kernel >= 5.3 (clone3)",
                   "%s is too old", u.release);
}

/* Whether a child can unshare these namespaces (as the shim does). */
static bool can_unshare(int flags, uid_t as_uid)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (as_uid && (setgid(as_uid) < 0 || setuid(as_uid) < 0))
            _exit(2);
        _exit(unshare(flags) == 0 ? 0 : 1);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

static void check_namespaces(cJSON *arr, enum doctor_status *worst)
{
    static const struct {
        int flag;
        const char *name;
    } ns[] = {{CLONE_NEWPID, "pid"}, {CLONE_NEWNS, "mount"}, {CLONE_NEWUTS, "uts"},
              {CLONE_NEWIPC, "ipc"}, {CLONE_NEWNET, "net"},  {CLONE_NEWCGROUP, "cgroup"}};
    char missing[128] = "";
    for (size_t i = 0; i < ARRAY_SIZE(ns); i++)
        if (!can_unshare(ns[i].flag, 0))
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s",
                     ns[i].name);
    if (missing[0])
        doctor_add(arr, worst, "namespaces", DOCTOR_FAILING,
                   "run ignisd as root on a kernel with these namespaces enabled",
                   "cannot create:%s", missing);
    else
        doctor_add(arr, worst, "namespaces", DOCTOR_OK, NULL, "pid, mount, uts, ipc, net, cgroup");
    /* User namespaces are needed for specs that ask for one, and python3 templates. */
    if (can_unshare(CLONE_NEWUSER, 65534))
        doctor_add(arr, worst, "user namespaces", DOCTOR_OK, NULL,
                   "unprivileged user namespaces work");
    else
        doctor_add(
            arr, worst, "user namespaces", DOCTOR_DEGRADED,
            "sysctl kernel.unprivileged_userns_clone=1 (Debian) or user.max_user_namespaces > 0",
            "unprivileged user namespaces are off: functions cannot run with a user namespace, "
            "and python3 templates may not start (--python-templates off)");
}

static void check_cgroups(const struct doctor_env *env, cJSON *arr, enum doctor_status *worst)
{
    struct cg_manager *m = env->cg, *probe = NULL;
    struct ig_error err = {};
    if (!m) {
        char id[32];
        snprintf(id, sizeof(id), "doctor%d", (int)getpid());
        if (cg_manager_new(NULL, NULL, id, &probe, &err) < 0) {
            doctor_add(arr, worst, "cgroups", DOCTOR_FAILING,
                       "run as root on a host with cgroups mounted under /sys/fs/cgroup", "%s",
                       err.message);
            return;
        }
        /* As a daemon would: some features are known only once it sits in its leaf (v2
         * delegation, CLONE_INTO_CGROUP); freeing the probe moves us back. */
        if (cg_manager_enter_leaf(probe, &err) < 0) {
            doctor_add(arr, worst, "cgroups", DOCTOR_FAILING,
                       "run as root on a host with cgroups mounted under /sys/fs/cgroup", "%s",
                       err.message);
            cg_manager_free(probe);
            return;
        }
        m = probe;
    }
    char degraded[256];
    cg_features_degraded(cg_manager_features(m), degraded, sizeof(degraded));
    enum cg_mode mode = cg_manager_mode(m);
    if (mode == CG_MODE_NONE)
        doctor_add(arr, worst, "cgroups", DOCTOR_FAILING, "run ignisd as root",
                   "no usable cgroups: no limits, no accounting");
    else if (streq(degraded, "none"))
        doctor_add(arr, worst, "cgroups", DOCTOR_OK, NULL, "%s; every feature usable",
                   cg_mode_name(mode));
    else
        doctor_add(arr, worst, "cgroups", DOCTOR_DEGRADED,
                   "delegate these controllers to ignisd's cgroup (systemd: Delegate=yes)",
                   "%s; not usable beneath the daemon's cgroup: %s", cg_mode_name(mode), degraded);
    cg_manager_free(probe);
}

static void check_seccomp(cJSON *arr, enum doctor_status *worst)
{
    /* API level 1 or more: the kernel has seccomp filters (the containers' syscall filter). */
    if (seccomp_api_get() >= 1)
        doctor_add(arr, worst, "seccomp", DOCTOR_OK, NULL, "filters available (libseccomp API %u)",
                   seccomp_api_get());
    else
        doctor_add(arr, worst, "seccomp", DOCTOR_FAILING, "a kernel with CONFIG_SECCOMP_FILTER",
                   "seccomp filters are not available");
}

static void check_filesystems(cJSON *arr, enum doctor_status *worst)
{
    _cleanup_free_ char *fs = NULL;
    if (read_file("/proc/filesystems", 1 << 16, &fs, NULL) < 0) {
        doctor_add(arr, worst, "filesystems", DOCTOR_FAILING, "mount /proc", "cannot read %s",
                   "/proc/filesystems");
        return;
    }
    bool tmpfs = strstr(fs, "\ttmpfs\n"), proc = strstr(fs, "\tproc\n");
    if (tmpfs && proc)
        doctor_add(arr, worst, "filesystems", DOCTOR_OK, NULL, "tmpfs and proc (container roots)");
    else
        doctor_add(arr, worst, "filesystems", DOCTOR_FAILING, "a kernel with tmpfs and proc",
                   "missing:%s%s", tmpfs ? "" : " tmpfs", proc ? "" : " proc");
}

static void check_shim(cJSON *arr, enum doctor_status *worst)
{
    const char *shim = container_shim_path();
    if (shim)
        doctor_add(arr, worst, "shim", DOCTOR_OK, NULL, "%s", shim);
    else
        doctor_add(arr, worst, "shim", DOCTOR_FAILING,
                   "install ignis (meson install) or set IGNIS_SHIM", "ignis-shim not found");
}

static void check_images(const struct doctor_env *env, cJSON *arr, enum doctor_status *worst)
{
    static const char *const names[] = {"exec", "python3", "node", "provided"};
    char missing[128] = "", path[4400];
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        snprintf(path, sizeof(path), "%s/%s/ignis/bootstrap", env->images_dir, names[i]);
        if (access(path, X_OK) < 0)
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", names[i]);
    }
    if (!missing[0])
        doctor_add(arr, worst, "runtime images", DOCTOR_OK, NULL,
                   "exec, python3, node, provided in %s", env->images_dir);
    else
        doctor_add(arr, worst, "runtime images", DOCTOR_DEGRADED,
                   "build them: scripts/build-images STATE_DIR (scripts/install does it)",
                   "not built in %s:%s (functions of those runtimes cannot run)", env->images_dir,
                   missing);
}

static void check_state_dir(const struct doctor_env *env, cJSON *arr, enum doctor_status *worst)
{
    struct stat st;
    if (stat(env->state_dir, &st) < 0) {
        doctor_add(arr, worst, "state dir", DOCTOR_DEGRADED,
                   "ignisd creates it (mode 0700) at start", "%s does not exist yet",
                   env->state_dir);
        return;
    }
    if (!S_ISDIR(st.st_mode))
        doctor_add(arr, worst, "state dir", DOCTOR_FAILING,
                   "remove it or choose another --state-dir", "%s is not a directory",
                   env->state_dir);
    else if ((st.st_mode & 077) != 0 || st.st_uid != geteuid())
        doctor_add(arr, worst, "state dir", DOCTOR_DEGRADED,
                   "chown it to the daemon's user and chmod 0700",
                   "%s has mode %04o, owner %u: other users can read bundles and results",
                   env->state_dir, st.st_mode & 07777, st.st_uid);
    else
        doctor_add(arr, worst, "state dir", DOCTOR_OK, NULL, "%s, mode 0700", env->state_dir);

    struct statvfs vfs;
    if (statvfs(env->state_dir, &vfs) == 0) {
        uint64_t free_mb = (uint64_t)vfs.f_bavail * vfs.f_frsize >> 20;
        enum doctor_status s = free_mb >= 1024  ? DOCTOR_OK
                               : free_mb >= 100 ? DOCTOR_DEGRADED
                                                : DOCTOR_FAILING;
        doctor_add(arr, worst, "disk", s, "free space where the state dir is",
                   "%llu MB free for bundles, images and the store", (unsigned long long)free_mb);
    }
}

static void check_memory(cJSON *arr, enum doctor_status *worst)
{
    _cleanup_free_ char *mi = NULL;
    unsigned long long avail_kb = 0;
    const char *p;
    if (read_file("/proc/meminfo", 1 << 16, &mi, NULL) == 0 && (p = strstr(mi, "MemAvailable:")))
        sscanf(p, "MemAvailable: %llu", &avail_kb);
    unsigned long long mb = avail_kb >> 10;
    doctor_add(arr, worst, "memory", mb >= 512 ? DOCTOR_OK : DOCTOR_DEGRADED,
               "more memory: each container may use its memory_mb",
               "%llu MB available (containers' limits may add up to 80%% of MemTotal)", mb);
}

/* The daemon raised its soft limit to the hard one at start: the hard limit bounds how many
 * containers can be warm at once (each holds about a dozen fds in the daemon). */
static void check_fd_limit(cJSON *arr, enum doctor_status *worst)
{
    rlim_t soft, hard;
    fdlimit_get(&soft, &hard);
    int used = fdlimit_in_use();
    unsigned reserve = fdlimit_reserve(soft);
    long long room = used < 0 ? 0 : ((long long)soft - used - reserve) / DOCTOR_FDS_PER_CONTAINER;
    /* By the hard limit: `ignisd --doctor` runs before ignisd raised its soft one. */
    doctor_add(
        arr, worst, "fd_limit", hard >= 4096 ? DOCTOR_OK : DOCTOR_DEGRADED,
        "raise the hard RLIMIT_NOFILE (LimitNOFILE= in the unit, ulimit -Hn): ignisd raises its "
        "soft limit to it",
        "soft %llu, hard %llu, %d in use, %u kept in reserve: room for about %lld more containers",
        (unsigned long long)soft, (unsigned long long)hard, used, reserve, room < 0 ? 0 : room);
}

int doctor_run(const struct doctor_env *env, cJSON **ret, enum doctor_status *ret_worst)
{
    cJSON *arr = cJSON_CreateArray();
    enum doctor_status worst = DOCTOR_OK;
    if (!arr)
        return -ENOMEM;
    if (geteuid() == 0)
        doctor_add(arr, &worst, "privileges", DOCTOR_OK, NULL, "running as root");
    else
        doctor_add(arr, &worst, "privileges", DOCTOR_FAILING, "run ignisd as root",
                   "not root: containers need CAP_SYS_ADMIN and cgroup writes");
    check_kernel(arr, &worst);
    check_namespaces(arr, &worst);
    check_cgroups(env, arr, &worst);
    check_seccomp(arr, &worst);
    check_filesystems(arr, &worst);
    check_shim(arr, &worst);
    check_images(env, arr, &worst);
    check_state_dir(env, arr, &worst);
    check_memory(arr, &worst);
    check_fd_limit(arr, &worst);
    *ret = arr;
    *ret_worst = worst;
    return 0;
}
