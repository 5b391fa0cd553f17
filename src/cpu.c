/* cpu.c — the kernel path of this process (see cpu.h). */
#include "valley/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nthreads = 1;

void vl_set_threads(int n) { nthreads = n < 1 ? 1 : n; }
int vl_threads(void) { return nthreads; }

static const char *const names[] = {"portable", "avx2", "avx512"};

const char *vl_isa_name(int isa) { return isa >= 0 && isa <= VL_ISA_AVX512 ? names[isa] : "?"; }

int vl_isa_cpu(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return VL_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return VL_ISA_AVX2;
#endif
    return VL_ISA_PORTABLE;
}

int vl_isa(void)
{
    static int isa = -1;
    if (isa >= 0) return isa;
    const int cpu = vl_isa_cpu();
    int want = cpu;
    const char *e = getenv("VALLEY_ISA");
    if (e && *e) {
        want = -1;
        for (int i = 0; i <= VL_ISA_AVX512; i++)
            if (!strcmp(e, names[i])) want = i;
        if (want < 0) {
            fprintf(stderr, "valley: VALLEY_ISA=%s is not a kernel path (avx512, avx2, portable); using %s\n", e,
                    names[cpu]);
            want = cpu;
        } else if (want > cpu) {
            fprintf(stderr, "valley: VALLEY_ISA=%s: this CPU runs at most %s; using %s\n", e, names[cpu], names[cpu]);
            want = cpu;
        }
    }
    isa = want;
    return isa;
}
