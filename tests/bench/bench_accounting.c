/* The accountant's cost to the controller (scripts/bench accounting): what an invocation's
 * hand-off (peak reset + one cgroup read) and result (one cgroup read) take on the event loop's
 * thread, measured on a real container's cgroup over N iterations (default 20000). The figure is
 * the thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), so load from other processes on the
 * shared machine does not inflate it; wall time is printed alongside. Asserts nothing. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "records/accountant.h"
#include "records/store-internal.h"
#include "testcontainer.h"
#include "dispatch/meter.h"

struct cost {
    double cpu_us, wall_us;
};

static struct cost measure(struct cg_group *g, size_t n, int what)
{
    uint64_t c0 = thread_cpu_ns(), w0 = now_usec();
    for (size_t i = 0; i < n; i++) {
        struct acct_attempt a;
        struct acct_reading st;
        bool ok;
        switch (what) {
        case 0: /* the whole per-invocation work */
            meter_begin(&a, g, true, 128, 0);
            meter_end(&a, g);
            break;
        case 1:
            (void)cg_reset_peak(g);
            break;
        case 2:
            meter_read(g, &st, &ok);
            break;
        }
    }
    uint64_t c1 = thread_cpu_ns(), w1 = now_usec();
    return (struct cost){(double)(c1 - c0) / 1e3 / (double)n, (double)(w1 - w0) / (double)n};
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The ledger: accountant_record on the loop thread (its thread CPU), and the whole process's CPU
 * until the journal's writer has committed every row (its batched INSERT + rollup trigger). */
static int bench_ledger(const char *dir, size_t n)
{
    char path[256];
    struct store *s;
    struct loop *l;
    struct journal *j;
    struct ig_error err = {};
    snprintf(path, sizeof(path), "%s/ignis.db", dir);
    if (store_open(path, &s, &err) < 0 || loop_new(&l) < 0 || journal_new(l, path, &j, &err) < 0) {
        fprintf(stderr, "bench accounting: %s\n", err.message);
        return -1;
    }
    struct acct_usage u = {.wall_us = 12345,
                           .cpu_us = 6789,
                           .mem_peak_bytes = 9 << 20,
                           .billed_ms = 13,
                           .gb_s = 0.0015625,
                           .memory_mb = 128};
    uint64_t p0 = process_cpu_ns(), t0 = thread_cpu_ns(), w0 = now_usec();
    for (size_t i = 0; i < n; i++) {
        char id[40];
        snprintf(id, sizeof(id), "%032zx", i);
        accountant_record(j, &(struct acct_record){.id = id,
                                                   .attempt = 1,
                                                   .function = "bench",
                                                   .version = 1,
                                                   .start_wall_us = (int64_t)wall_usec(),
                                                   .status = "ok",
                                                   .usage = &u});
    }
    uint64_t t1 = thread_cpu_ns();
    journal_free(j); /* commits what is queued */
    uint64_t p1 = process_cpu_ns(), w1 = now_usec();
    printf("%-32s n=%zu  loop thread CPU %6.2f us\n", "  accountant_record (submit)", n,
           (double)(t1 - t0) / 1e3 / (double)n);
    printf("%-32s n=%zu  process CPU %6.2f us  wall %6.2f us (batched, off the loop)\n",
           "  ledger row written", n, (double)(p1 - p0) / 1e3 / (double)n,
           (double)(w1 - w0) / (double)n);
    loop_free(l);
    store_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    struct tc_env e;
    if (n == 0 || tc_env_setup(&e) < 0)
        return 1;
    struct container_spec spec;
    tc_spec(&e, (char *[]){"/bin/busybox", "sleep", "600", NULL}, &spec);
    struct container_options o = {.spec = &spec,
                                  .limits = {.memory_bytes = 128ull << 20, .cpu_millis = 1000},
                                  .stdout_fd = -1,
                                  .stderr_fd = -1};
    struct container *c;
    struct ig_error err = {};
    if (container_create(e.m, &o, &c, &err) < 0) {
        fprintf(stderr, "bench accounting: %s\n", err.message);
        tc_env_teardown(&e);
        return 1;
    }
    struct cg_group *g = container_cgroup(c);
    const struct cg_features *f = cg_manager_features(e.m);
    printf("cgroup mode %s, peak reset %s\n", cg_mode_name(cg_manager_mode(e.m)),
           f->peak_reset ? "yes" : "no");
    measure(g, n / 10 + 1, 0); /* warm the dentry and page caches */
    static const char *const what[] = {"per invocation (begin + end)", "  cg_reset_peak",
                                       "  meter_read (the result's)"};
    for (int i = 0; i < 3; i++) {
        struct cost k = measure(g, n, i);
        printf("%-32s n=%zu  controller CPU %6.2f us  wall %6.2f us\n", what[i], n, k.cpu_us,
               k.wall_us);
    }
    bench_ledger(e.dir, n);
    container_kill(c, &err);
    struct container_exit x;
    container_wait(c, &x);
    container_destroy(c, &err);
    return tc_env_teardown(&e) < 0 ? 1 : 0;
}
