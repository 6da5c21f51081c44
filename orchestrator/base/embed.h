/* Files embedded into a binary at build time by scripts/embed-gen.c, so that the binary alone
 * has them: the console's pages in ignisd (api/ui.c), the `ignis init` templates in the CLI
 * (cli/init.c). The generator writes `const struct embed_file SYMBOL[]` and
 * `const size_t SYMBOL_count`. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct embed_file {
    const char *name;          /* the file's path under the folder it was embedded from */
    const char *content_type;  /* by its extension; NULL when the generator knows none */
    const unsigned char *data; /* len bytes, then a NUL the length leaves out */
    size_t len;
    bool executable; /* the source file had its owner's execute bit */
};
