/* The setup steps pid 1 of a container shares with a container forked from a template
 * (child.c): mounts, loopback. One implementation of each, so both paths build the same. */
#include "shim.h"

#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>

void shim_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                const char *data)
{
    if (mount(src, dst, type, flags, data) < 0)
        shim_fail(errno, "mounting %s on %s: %s", type ? type : src, dst, strerror(errno));
}

/* mount_setattr (5.12+) only sets the given flags, so flags the kernel locked on a bind (noexec
 * from the source, in a user namespace) are kept, where a MS_REMOUNT would have to repeat them
 * all. */
void shim_make_readonly(const char *path, unsigned int flags, uint64_t more)
{
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | more};
    if (mount_setattr(AT_FDCWD, path, flags, &attr, sizeof(attr)) < 0)
        shim_fail(errno, "making %s read-only: %s", path, strerror(errno));
}

void shim_mount_tmp(const char *dir, uint64_t size)
{
    char opts[64];
    snprintf(opts, sizeof(opts), "mode=1777,size=%llu", (unsigned long long)size);
    shim_mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts);
}

/* A proc of the caller's pid namespace (it is its pid 1), with /proc/sys read-only as Docker
 * does: the uid switch already denies writes there, this holds even for root in a user
 * namespace. */
void shim_mount_proc(const char *dir)
{
    char sys[256];
    snprintf(sys, sizeof(sys), "%s/sys", dir);
    shim_mount("proc", dir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    shim_mount(sys, sys, NULL, MS_BIND | MS_REC, NULL);
    shim_make_readonly(sys, AT_RECURSIVE, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
}

/* A new network namespace has only lo, and down: runtimes (the Lambda Runtime API relay) listen
 * on 127.0.0.1 inside. The kernel assigns 127.0.0.1/8 and ::1 when lo comes up. */
void shim_loopback_up(void)
{
    struct ifreq ifr = {.ifr_name = "lo"};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        shim_fail(errno, "socket: %s", strerror(errno));
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        shim_fail(errno, "reading lo's flags: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        shim_fail(errno, "bringing lo up: %s", strerror(errno));
    close(fd);
}

void shim_make_secrets(const char *dir, uint32_t uid, uint32_t gid, char *const names[],
                       const int fds[], size_t n)
{
    char opts[96], dst[PATH_MAX];
    snprintf(opts, sizeof(opts), "mode=0500,uid=%u,gid=%u,size=%u,nr_inodes=%u", uid, gid,
             (CONTAINER_SPEC_MAX_SECRETS + 1) * CONTAINER_SECRET_MAX,
             CONTAINER_SPEC_MAX_SECRETS + 8);
    shim_mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts);
    char *buf = malloc(CONTAINER_SECRET_MAX + 1);
    if (!buf)
        shim_fail(ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue; /* listed but not set: absent, as documented */
        size_t len = 0;
        ssize_t r;
        while ((r = read(fds[i], buf + len, CONTAINER_SECRET_MAX + 1 - len)) > 0)
            len += (size_t)r;
        close(fds[i]);
        if (r < 0 || len > CONTAINER_SECRET_MAX)
            shim_fail(r < 0 ? errno : EFBIG, "secret %s: cannot be read or is over %u bytes",
                      names[i], CONTAINER_SECRET_MAX);
        snprintf(dst, sizeof(dst), "%s/%s", dir, names[i]);
        int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
        if (out < 0 || write(out, buf, len) != (ssize_t)len || fchown(out, uid, gid) < 0)
            shim_fail(errno, "writing /run/secrets/%s: %s", names[i], strerror(errno));
        close(out);
    }
    explicit_bzero(buf, CONTAINER_SECRET_MAX + 1);
    free(buf);
    shim_make_readonly(dir, 0, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
}
