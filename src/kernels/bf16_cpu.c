/* bf16_cpu: may this process run bf16 products (see bf_bf16_check in bf16.h)? Two things are needed: a
 * build with oneDNN, and a CPU with bf16 dot-product instructions. Without them oneDNN still runs bf16 on an
 * AVX-512 CPU, emulated several times slower than fp32; a user who asked for bf16 to go faster is told
 * instead, unless BF_BF16_EMULATE=1 asks for the emulation. Without AVX-512 oneDNN (2.x) has no bf16 matmul at
 * all, so the emulation is refused there too, here rather than later as an unimplemented primitive. */
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

/* What oneDNN 2.x needs for any bf16 matmul (its avx512_core): AVX-512 F, DQ, BW and VL, usable by the OS.
 * GCC's and clang's __builtin_cpu_supports check the OS's register support as well as cpuid. */
static int cpu_avx512_core(void) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
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
    if (avx || amx) return 0;
    const char *why = simulated ? " (BF_CPU_NO_BF16 is set: the check acts as on such a CPU)" : "";
    int can_emulate = cpu_avx512_core();
    if (env_on("BF_BF16_EMULATE")) {
        if (can_emulate) return 0;
        return bf_fail(err, "precision bf16: BF_BF16_EMULATE=1 is set, but this CPU has no bf16 dot-product "
                            "instructions (neither avx512_bf16 nor amx_bf16)%s and no AVX-512 (avx512f, avx512dq, "
                            "avx512bw, avx512vl), without which oneDNN cannot emulate them: use precision fp32",
                       why);
    }
    if (!can_emulate)
        return bf_fail(err, "precision bf16: this CPU has no bf16 dot-product instructions (neither avx512_bf16 nor "
                            "amx_bf16)%s and no AVX-512 for oneDNN to emulate them with: use precision fp32",
                       why);
    return bf_fail(err, "precision bf16: this CPU has no bf16 dot-product instructions (neither avx512_bf16 nor "
                        "amx_bf16)%s, so bf16 would run emulated, slower than fp32: use precision fp32, or set "
                        "BF_BF16_EMULATE=1 to run oneDNN's emulation anyway",
                   why);
#endif
}
