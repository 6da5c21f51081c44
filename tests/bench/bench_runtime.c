/* The runtime round trip: controller → runtime → controller over the runtime protocol (no
 * HTTP), one runtime in reuse mode serving invocations one after another. Prints p50, p99 and
 * mean per runtime. Usage: bench-runtime [-c] [-n ITERATIONS] [RUNTIME...] (default python3
 * node); -c runs each runtime in a real container (root), as the controller does, instead of as
 * a plain process. Started by scripts/bench runtime, which builds the images first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rtdriver.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static struct tc_env tenv;
static bool in_container;

static int bench(const char *runtime, int iterations)
{
    static const struct {
        const char *runtime, *handler;
    } handlers[] = {
        {"python3", "echo.handler"},
        {"node", "echo.handler"},
        {"exec", "echo.sh"},
        {"provided", "echo.handler"},
    };
    const char *handler = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(handlers); i++)
        if (streq(handlers[i].runtime, runtime))
            handler = handlers[i].handler;
    if (!handler) {
        fprintf(stderr, "bench-runtime: unknown runtime %s\n", runtime);
        return -1;
    }
    char bundle[4096];
    rt_source_path("tests/fixtures/runtimes/bench", bundle, sizeof(bundle));
    struct rt_options o = {.runtime = runtime,
                           .bundle = bundle,
                           .handler = handler,
                           .quiet = true,
                           .env = in_container ? &tenv : NULL};
    struct rt_proc p;
    struct rt_reply r;
    int q = rt_start(&p, &o);
    if (q < 0 || rt_wait_ready(&p, 30000, &r) < 0 || r.type != PROTO_READY) {
        fprintf(stderr, "bench-runtime: %s did not start (%s)\n", runtime,
                q < 0       ? strerror(-q)
                : r.message ? r.message
                            : "no ready frame");
        rt_stop(&p);
        return -1;
    }
    rt_reply_clear(&r);

    const char *body = "{\"n\": 1}";
    int warmup = iterations / 10 < 200 ? iterations / 10 : 200;
    uint64_t *lat = calloc((size_t)iterations, sizeof(uint64_t)), total = 0;
    for (int i = -warmup; i < iterations; i++) {
        char id[32];
        snprintf(id, sizeof(id), "b%d", i + warmup);
        uint64_t t0 = now_usec();
        q = rt_invoke(&p, id, body, strlen(body), NULL, 30000, &r);
        uint64_t dt = now_usec() - t0;
        if (q < 0 || r.type != PROTO_RESULT) {
            fprintf(stderr, "bench-runtime: %s: invocation failed (%s)\n", runtime,
                    q < 0 ? strerror(-q) : r.message);
            rt_reply_clear(&r);
            rt_stop(&p);
            free(lat);
            return -1;
        }
        rt_reply_clear(&r);
        if (i >= 0) {
            lat[i] = dt;
            total += dt;
        }
    }
    rt_stop(&p);
    qsort(lat, (size_t)iterations, sizeof(uint64_t), cmp_u64);
    printf("%-9s %-9s n=%-6d p50=%5llu us  p99=%6llu us  mean=%6.1f us  max=%7llu us\n", runtime,
           in_container ? "container" : "process", iterations,
           (unsigned long long)lat[iterations / 2],
           (unsigned long long)lat[(size_t)iterations * 99 / 100], (double)total / iterations,
           (unsigned long long)lat[iterations - 1]);
    fflush(stdout);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    int iterations = 20000, first = 1, status = 0;
    for (;;) {
        if (first < argc && streq(argv[first], "-c")) {
            in_container = true;
            first++;
        } else if (first + 1 < argc && streq(argv[first], "-n")) {
            iterations = atoi(argv[first + 1]);
            first += 2;
        } else
            break;
    }
    if (iterations < 10)
        iterations = 10;
    if (!rt_images_dir()) {
        fprintf(stderr, "bench-runtime: set IGNIS_IMAGES_DIR (scripts/bench runtime does)\n");
        return 2;
    }
    if (in_container && tc_env_setup(&tenv) < 0)
        return 2;
    const char *defaults[] = {"python3", "node"};
    int n = argc - first;
    for (int i = 0; i < (n > 0 ? n : 2); i++)
        if (bench(n > 0 ? argv[first + i] : defaults[i], iterations) < 0)
            status = 1;
    if (in_container && tc_env_teardown(&tenv) < 0)
        status = 1;
    return status;
}
