/* faults: the BF_FAULT parser (faults.h). */
#include "faults.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_count(const char *item, const char *text, long lo, long *out, bf_err *err) {
    char *end;
    errno = 0;
    long v = text && *text ? strtol(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < lo)
        return bf_fail(err, "BF_FAULT: '%s': expected an integer of at least %ld, got '%s'", item, lo, text ? text : "");
    *out = v;
    return 0;
}

int bf_train_parse_faults(const char *spec, fault_plan *fp, bf_err *err) {
    static const char *const phases[] = {"before_data", "mid_data", "before_rename", "after_rename"};
    static const bf_ckpt_fault phase_fault[] = {BF_CKPT_CRASH_BEFORE_DATA, BF_CKPT_CRASH_MID_DATA,
                                                BF_CKPT_CRASH_BEFORE_RENAME, BF_CKPT_CRASH_AFTER_RENAME};
    memset(fp, 0, sizeof *fp);
    fp->save_step = -1;
    if (!spec || !*spec) return 0;
    char buf[256];
    if (strlen(spec) >= sizeof buf) return bf_fail(err, "BF_FAULT is too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save_items = NULL;
    for (char *item = strtok_r(buf, ",", &save_items); item; item = strtok_r(NULL, ",", &save_items)) {
        char whole[256];
        snprintf(whole, sizeof whole, "%s", item);
        char *part = NULL, *name = strtok_r(item, ":", &part), *a1 = strtok_r(NULL, ":", &part),
             *a2 = strtok_r(NULL, ":", &part), *extra = strtok_r(NULL, ":", &part);
        int rc = 0;
        if (extra) rc = bf_fail(err, "BF_FAULT: '%s': too many ':' fields", whole);
        else if (!strcmp(name, "nan_at_step")) {
            fp->nan_count = 1;
            rc = parse_count(whole, a1, 1, &fp->nan_step, err) || (a2 && parse_count(whole, a2, 1, &fp->nan_count, err));
        } else if (!strcmp(name, "crash_in_save")) {
            size_t i = 0;
            while (i < 4 && (!a1 || strcmp(a1, phases[i]))) i++;
            if (i == 4)
                rc = bf_fail(err, "BF_FAULT: '%s': the phase must be before_data, mid_data, before_rename or "
                                  "after_rename", whole);
            else {
                fp->save_fault = phase_fault[i];
                rc = a2 && parse_count(whole, a2, 1, &fp->save_step, err);
            }
        } else if (!strcmp(name, "enospc_in_save")) {
            fp->save_fault = BF_CKPT_ENOSPC;
            rc = (a2 ? bf_fail(err, "BF_FAULT: '%s': expected enospc_in_save[:STEP]", whole) : 0) ||
                 (a1 && parse_count(whole, a1, 1, &fp->save_step, err));
        } else if (!strcmp(name, "delay_in_save")) {
            long ms = 0;
            fp->save_fault = BF_CKPT_DELAY;
            rc = parse_count(whole, a1, 0, &ms, err) || (a2 && parse_count(whole, a2, 1, &fp->save_step, err));
            fp->save_delay_ms = (int)(ms > 600000 ? 600000 : ms);
        } else if (!strcmp(name, "slow_eval")) {
            rc = a2 ? bf_fail(err, "BF_FAULT: '%s': expected slow_eval:MS", whole)
                    : parse_count(whole, a1, 0, &fp->eval_delay_ms, err);
            if (fp->eval_delay_ms > 60000) fp->eval_delay_ms = 60000;
        } else if (!strcmp(name, "alloc_in_step")) {
            rc = a2 ? bf_fail(err, "BF_FAULT: '%s': expected alloc_in_step:N", whole)
                    : parse_count(whole, a1, 1, &fp->alloc_step, err);
        } else {
            rc = bf_fail(err, "BF_FAULT: unknown fault '%s' (known: nan_at_step:N[:COUNT], crash_in_save:PHASE[:STEP], "
                              "enospc_in_save[:STEP], delay_in_save:MS[:STEP], alloc_in_step:N, slow_eval:MS)", whole);
        }
        if (rc) return -1;
    }
    return 0;
}
