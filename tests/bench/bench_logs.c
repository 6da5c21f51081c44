/* Reading a function's logs (scripts/bench logs): what GET /v1/functions/{name}/logs costs the
 * event loop's thread for a function whose log is at its full size (two files of up to 8 MiB),
 * reading everything and reading the last 10, 100 and 10,000 records (tail=N). The log is made
 * through fnlog itself (one platform record of 222 bytes at a time, flushed in batches, so the
 * files rotate as in the daemon). The figure is the thread's CPU time, median of R reads
 * (default 15); wall time alongside. Asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records/fnlog.h"
#include "base/loop.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    char dir[] = "/tmp/ignis-bench-logs.XXXXXX";
    struct loop *l;
    if (reps < 1 || reps > 1000 || !mkdtemp(dir) || loop_new(&l) < 0 ||
        fnlog_init(l, dir, 0, 0) < 0) {
        fprintf(stderr, "usage: bench-logs [REPS 1-1000]; or no temporary directory\n");
        return 2;
    }
    char pad[81];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < 200000; i++) {
        fnlog_platform("big", i % 2 ? "a1" : "b2", "event %d %s", i, pad);
        if (i % 1000 == 999)
            fnlog_flush();
    }
    fnlog_flush();

    static const struct {
        const char *label;
        size_t tail;
    } reads[] = {
        {"everything", SIZE_MAX}, {"tail=10", 10}, {"tail=100", 100}, {"tail=10000", 10000}};
    double *cpu = calloc((size_t)reps, sizeof(double)),
           *wall = calloc((size_t)reps, sizeof(double));
    for (size_t k = 0; k < ARRAY_SIZE(reads); k++) {
        size_t bytes = 0;
        for (int r = 0; r < reps; r++) {
            char *text;
            uint64_t c0 = thread_cpu_ns(), w0 = now_usec();
            if (fnlog_read("big", NULL, 0, reads[k].tail, &text, &bytes) < 0) {
                fprintf(stderr, "bench-logs: out of memory\n");
                return 1;
            }
            cpu[r] = (double)(thread_cpu_ns() - c0) / 1e6;
            wall[r] = (double)(now_usec() - w0) / 1e3;
            free(text);
        }
        qsort(cpu, (size_t)reps, sizeof(double), cmp_double);
        qsort(wall, (size_t)reps, sizeof(double), cmp_double);
        printf("%-11s %9zu bytes  cpu %8.3f ms  wall %8.3f ms  (median of %d)\n", reads[k].label,
               bytes, cpu[reps / 2], wall[reps / 2], reps);
    }
    free(cpu);
    free(wall);
    fnlog_free();
    loop_free(l);
    rm_rf(dir);
    return 0;
}
