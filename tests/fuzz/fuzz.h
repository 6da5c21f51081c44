/* What the fuzz targets share. Each fuzz_TARGET.c defines LLVMFuzzerTestOneInput, the entry point
 * libFuzzer calls with every input it tries (build-fuzz, scripts/fuzz) and that replay.c calls
 * with every file of the seed corpus and the regressions in the normal build (meson test). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the code under test promises (a round trip gives back what went in, a refusal says
 * why). A violation aborts: libFuzzer keeps the input as a crash, replay.c's test fails. Checked
 * in every build, NDEBUG or not. */
#define fuzz_check(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
