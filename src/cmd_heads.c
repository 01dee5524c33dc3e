/* cmd_heads: placeholder until the command lands (being written now; replaced before commit). */
#include <stdio.h>

#include "budgetformer/cli.h"

int bf_cmd_heads(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "budgetformer heads: not available in this build\n");
    return 2;
}
