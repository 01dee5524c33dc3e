/* bf16_cpu: may this process run bf16 products (see bf_bf16_check in bf16.h)? Two things are needed: a
 * build with oneDNN, and a CPU with bf16 dot-product instructions. Without them oneDNN would still run bf16,
 * emulated several times slower than fp32; a user who asked for bf16 to go faster is told instead, unless
 * BF_BF16_EMULATE=1 asks for the emulation. */
#include "budgetformer/bf16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#ifdef BF_HAVE_DNNL
static int env_on(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

/* The CPU's bf16 features, as cpuid reports them: AVX512_BF16 (leaf 7 subleaf 1, EAX bit 5), AMX_BF16
 * (leaf 7 subleaf 0, EDX bit 22). */
static void cpu_bf16_features(int *avx512_bf16, int *amx_bf16) {
    *avx512_bf16 = *amx_bf16 = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        *amx_bf16 = (int)(d >> 22 & 1u);
        if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) *avx512_bf16 = (int)(a >> 5 & 1u);
    }
#endif
}

#endif

int bf_bf16_check(bf_err *err) {
#ifndef BF_HAVE_DNNL
    return bf_fail(err, "precision bf16: this build lacks oneDNN (install libdnnl-dev, launch/install-deps.sh, and "
                        "configure again), so only fp32 is available");
#else
    int avx, amx;
    cpu_bf16_features(&avx, &amx);
    int simulated = env_on("BF_CPU_NO_BF16");
    if (simulated) avx = amx = 0;
    if (avx || amx || env_on("BF_BF16_EMULATE")) return 0;
    return bf_fail(err, "precision bf16: this CPU has no bf16 dot-product instructions (neither avx512_bf16 nor "
                        "amx_bf16)%s, so bf16 would run emulated, slower than fp32: use precision fp32, or set "
                        "BF_BF16_EMULATE=1 to run oneDNN's emulation anyway",
                   simulated ? " (BF_CPU_NO_BF16 is set: the check acts as on such a CPU)" : "");
#endif
}
