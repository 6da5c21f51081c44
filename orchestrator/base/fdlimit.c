#include "base/fdlimit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SOFT_CAP ((rlim_t)1 << 20)

void fdlimit_get(rlim_t *ret_soft, rlim_t *ret_hard)
{
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);
    *ret_soft = rl.rlim_cur;
    *ret_hard = rl.rlim_max;
}

int fdlimit_raise(struct fdlimit *ret)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    *ret = (struct fdlimit){.soft_before = rl.rlim_cur, .soft = rl.rlim_cur, .hard = rl.rlim_max};
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > SOFT_CAP ? SOFT_CAP : rl.rlim_max;
    if (want <= rl.rlim_cur)
        return 0;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    ret->soft = want;
    return 0;
}

/* The count by listing /proc/self/fd: for kernels before 6.2, whose st_size of it is 0. Each
 * entry makes a proc dentry and inode (and frees them when the listing is invalidated), so it
 * costs ~1 us per open fd: 0.5-0.8 ms of CPU per container with the stock's fds in ignisd
 * (docs/performance.md, "Fresh containers"). */
static int count_by_listing(void)
{
    int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n - 1; /* not the directory's own fd */
}

int fdlimit_in_use(void)
{
    /* Since Linux 6.2 the size of /proc/PID/fd is the number of open fds (a bitmap weight of the
     * fd table: no dentries, no fd of our own), asked once per container spawn and by the
     * stock's thread. */
    struct stat st;
    if (stat("/proc/self/fd", &st) < 0)
        return -errno;
    if (st.st_size > 0)
        return st.st_size > INT_MAX ? INT_MAX : (int)st.st_size;
    return count_by_listing();
}

unsigned fdlimit_reserve(rlim_t limit)
{
    rlim_t r = limit / 16;
    return r < 32 ? 32 : r > 1024 ? 1024 : (unsigned)r;
}

int fdlimit_admit(unsigned need, struct ig_error *err)
{
    rlim_t soft, hard;
    fdlimit_get(&soft, &hard);
    unsigned reserve = fdlimit_reserve(soft);
    int used = fdlimit_in_use();
    if (used < 0 && used != -EMFILE && used != -ENFILE)
        return 0; /* no /proc: nothing to judge by; the open itself will tell */
    if (used >= 0 && (rlim_t)used + need + reserve <= soft)
        return 0;
    if (used < 0)
        return ig_error_set_reason(err, -used, "fds_exhausted",
                                   "out of file descriptors (%s; limit %llu)", strerror(-used),
                                   (unsigned long long)soft);
    return ig_error_set_reason(err, EMFILE, "fds_exhausted",
                               "too few file descriptors left: %d of %llu in use, %u kept in "
                               "reserve for the API; retry when containers are reaped",
                               used, (unsigned long long)soft, reserve);
}

bool fdlimit_room(unsigned need)
{
    return fdlimit_admit(need, NULL) == 0;
}
