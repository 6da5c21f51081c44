/* Replays files through a fuzz target in the normal (gcc) build, so the seed corpus and every
 * input a fuzzer once crashed on (tests/fuzz/regressions/TARGET/) run under meson test, and under
 * the sanitizers with ./scripts/test --sanitize. Linked with one fuzz_TARGET.c; each argument is a
 * directory whose files (all but dotfiles) are inputs, in name order. Each input is copied into a
 * buffer of exactly its size, as libFuzzer passes it, so a read past the end is a read past the
 * allocation. */
#include <dirent.h>
#include <string.h>

#include "fuzz.h"
#include "base/util.h"

/* Larger than any input a target is run with (scripts/fuzz's -max_len). */
#define REPLAY_INPUT_MAX (1u << 20)

static int replay_dir(const char *dir, size_t *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int status = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = 0;
        if (names[i]->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
            r = read_file(path, REPLAY_INPUT_MAX, &text, &len);
        }
        if (r < 0) {
            fprintf(stderr, "replay: %s: %s\n", path, strerror(-r));
            status = -1;
        } else if (text) {
            fprintf(stderr, "replay: %s\n", path);
            _cleanup_free_ uint8_t *exact = malloc(len ? len : 1);
            if (!exact) {
                fprintf(stderr, "replay: out of memory\n");
                status = -1;
            } else {
                memcpy(exact, text, len);
                LLVMFuzzerTestOneInput(exact, len);
                (*count)++;
            }
        }
        free(names[i]);
    }
    free(names);
    return status;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int status = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (replay_dir(argv[i], &count) < 0)
            status = 1;
    printf("replayed %zu inputs\n", count);
    if (count == 0) {
        fprintf(stderr, "replay: no inputs at all (the seed corpus is missing)\n");
        return 1;
    }
    return status;
}
