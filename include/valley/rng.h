/* rng.h — counter-based random numbers (Philox4x32-10).
 *
 * A stream is fixed by (seed, stream id); the n-th number of a stream does not
 * depend on who draws it, so the same seed gives the same weights, data order
 * and samples on any number of ranks. Stream ids are built with rng_stream()
 * from a purpose tag and indices (tensor index, epoch, chain, sample, ...).
 * The whole state is plain data (4 uint64) and goes into checkpoints.
 */
#ifndef VALLEY_RNG_H
#define VALLEY_RNG_H
#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter; /* block counter: each block gives 4 uint32 */
    uint64_t used;    /* numbers of the current block already used (0..4) */
} vl_rng_t;

enum { /* purpose tags for rng_stream */
    RNG_INIT = 1, RNG_ORDER = 2, RNG_AUGMENT = 3, RNG_SAMPLE = 4, RNG_CURVE = 5,
    RNG_DIRECTION = 6, RNG_CHAIN = 7, RNG_SIMPLEX = 8, RNG_DATA = 9, RNG_DROPOUT = 10, RNG_HESSIAN = 11, RNG_TEST = 15
};

uint64_t rng_stream(uint32_t tag, uint64_t a, uint64_t b);
void rng_init(vl_rng_t *r, uint64_t seed, uint64_t stream);
uint32_t rng_u32(vl_rng_t *r);
double rng_uniform(vl_rng_t *r);        /* [0, 1), 53 bits */
double rng_uniform_open(vl_rng_t *r);   /* (0, 1) */
double rng_normal(vl_rng_t *r);         /* N(0,1), Box-Muller, no cached state */
uint64_t rng_below(vl_rng_t *r, uint64_t n); /* uniform integer in [0, n), unbiased */
/* Fisher-Yates permutation of 0..n-1 into perm. */
void rng_permutation(vl_rng_t *r, int64_t n, int64_t *perm);

#endif
