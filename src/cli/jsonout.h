/* jsonout: the one JSON string writer the commands' --json outputs share. */
#ifndef BUDGETFORMER_JSONOUT_H
#define BUDGETFORMER_JSONOUT_H

#include <stdio.h>

/* Writes s to f as a JSON string literal (quotes, backslash and control characters escaped; UTF-8 passes
 * through), or null when s is NULL. */
void bf_json_str(FILE *f, const char *s);

#endif
