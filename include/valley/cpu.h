/* cpu.h — which kernels this process runs: one binary for a cluster of mixed x86 nodes.
 *
 * The SIMD kernels (direct and Winograd 3x3 convolutions, the fused BN-ReLU-pool helpers)
 * are compiled for AVX-512 and for AVX2+FMA inside a binary built for plain x86-64; the
 * path is chosen once per process from the CPU (cpuid via __builtin_cpu_supports):
 *
 *   avx512    AVX-512 F/BW/DQ/VL (Intel Skylake-SP and later, AMD Zen 4)
 *   avx2      AVX2 + FMA (Intel Haswell and later, AMD Zen 1-3)
 *   portable  im2col + OpenBLAS (which picks its own kernels for the CPU) and plain C
 *
 * VALLEY_ISA=avx2 (or portable) in the environment caps the path below what the CPU has:
 * how the tests run every path on one machine, and a way to compare paths on one node.
 */
#ifndef VALLEY_CPU_H
#define VALLEY_CPU_H

enum { VL_ISA_PORTABLE = 0, VL_ISA_AVX2 = 1, VL_ISA_AVX512 = 2 };

/* The path of this process (detected once, then fixed). */
int vl_isa(void);
/* The best path this CPU can run, whatever VALLEY_ISA says. */
int vl_isa_cpu(void);
const char *vl_isa_name(int isa);

/* Threads of this rank's kernels (parallel.threads; OpenMP): convolutions split over blocks of
 * output channels, the weight gradient over output-channel triples, batch norm over channels;
 * every output is the same sum in the same order whatever the count (bit-identical results). */
void vl_set_threads(int n);
int vl_threads(void);

#endif
