/* memusage: getrusage and /proc/self/smaps_rollup (see memusage.h). */
#include "budgetformer/memusage.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

void bf_memusage_read(bf_memusage *m) {
    m->peak_rss_kb = m->rss_kb = m->pss_kb = m->private_kb = -1;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) m->peak_rss_kb = (int64_t)ru.ru_maxrss; /* KiB on Linux */
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return;
    char line[256];
    long long clean = -1, dirty = -1;
    while (fgets(line, sizeof line, f)) {
        long long v = 0;
        if (sscanf(line, "Rss: %lld kB", &v) == 1) m->rss_kb = v;
        else if (sscanf(line, "Pss: %lld kB", &v) == 1) m->pss_kb = v;
        else if (sscanf(line, "Private_Clean: %lld kB", &v) == 1) clean = v;
        else if (sscanf(line, "Private_Dirty: %lld kB", &v) == 1) dirty = v;
    }
    fclose(f);
    if (clean >= 0 && dirty >= 0) m->private_kb = clean + dirty;
}
