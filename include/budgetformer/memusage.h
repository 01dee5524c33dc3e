/* memusage: this process's memory as Linux reports it, for the trainer's per-rank memory report.
 *
 * Peak RSS (getrusage ru_maxrss) counts every page the process ever had resident, shared ones included, so it
 * cannot tell one copy per node from one per rank; PSS (a shared page counts 1/n in each of the n processes
 * mapping it) and private memory (pages mapped by this process only) can: from /proc/self/smaps_rollup. */
#ifndef BUDGETFORMER_MEMUSAGE_H
#define BUDGETFORMER_MEMUSAGE_H

#include <stdint.h>

typedef struct {
    int64_t peak_rss_kb; /* ru_maxrss: the largest resident set so far */
    int64_t rss_kb;      /* now: Rss */
    int64_t pss_kb;      /* now: Pss */
    int64_t private_kb;  /* now: Private_Clean + Private_Dirty */
} bf_memusage;

/* Fills m; a value the system does not give (no smaps_rollup before Linux 4.14) is -1. */
void bf_memusage_read(bf_memusage *m);

#endif
