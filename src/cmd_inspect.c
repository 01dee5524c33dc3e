/* cmd_inspect: placeholder until the command lands (being written now; replaced before commit). */
#include <stdio.h>

#include "budgetformer/cli.h"

int bf_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "budgetformer inspect: not available in this build\n");
    return 2;
}
