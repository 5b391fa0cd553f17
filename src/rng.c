/* rng.c — Philox4x32-10 (Salmon et al., SC'11), key = seed, counter = (stream, block). */
#include "valley/rng.h"

#include <math.h>

static void philox(uint32_t ctr[4], const uint32_t key_in[2])
{
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)M0 * ctr[0];
        uint64_t p1 = (uint64_t)M1 * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ ctr[1] ^ k0;
        uint32_t n2 = hi0 ^ ctr[3] ^ k1;
        ctr[0] = n0; ctr[1] = lo1; ctr[2] = n2; ctr[3] = lo0;
        k0 += W0; k1 += W1;
    }
}

uint64_t rng_stream(uint32_t tag, uint64_t a, uint64_t b)
{
    /* tag in the top 8 bits, a in the next 28, b in the low 28: distinct for
     * indices below 2^28, which covers tensors, epochs, chains and samples. */
    return ((uint64_t)(tag & 0xFF) << 56) | ((a & 0xFFFFFFFull) << 28) | (b & 0xFFFFFFFull);
}

void rng_init(vl_rng_t *r, uint64_t seed, uint64_t stream)
{
    r->seed = seed;
    r->stream = stream;
    r->counter = 0;
    r->used = 4;
}

uint32_t rng_u32(vl_rng_t *r)
{
    uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
    if (r->used >= 4) { r->counter++; r->used = 0; } /* counter = blocks started */
    uint64_t block = r->counter - 1;
    uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)r->stream,
                     (uint32_t)(r->stream >> 32)};
    philox(c, key);
    return c[r->used++];
}

double rng_uniform(vl_rng_t *r)
{
    uint64_t a = rng_u32(r) >> 5, b = rng_u32(r) >> 6; /* 27 + 26 bits */
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

double rng_uniform_open(vl_rng_t *r)
{
    double u;
    do u = rng_uniform(r); while (u == 0.0);
    return u;
}

double rng_normal(vl_rng_t *r)
{
    double u1 = rng_uniform_open(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t rng_below(vl_rng_t *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = ((uint64_t)rng_u32(r) << 32) | rng_u32(r); while (x >= limit);
    return x % n;
}

void rng_permutation(vl_rng_t *r, int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
        int64_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}
