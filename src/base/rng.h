/* Small, fast, seedable random numbers (xoshiro256**, seeded with splitmix64).
 * Not for secrets: request ids use the OS random source instead. */
#ifndef ELLIOTT_BASE_RNG_H
#define ELLIOTT_BASE_RNG_H

#include <stdint.h>

typedef struct el_rng {
    uint64_t s[4];
} el_rng;

void el_rng_seed(el_rng *rng, uint64_t seed);
uint64_t el_rng_next(el_rng *rng);
/* Uniform in [0, 1) with 24 bits of precision. */
float el_rng_uniform(el_rng *rng);
/* Standard normal (Box-Muller). */
float el_rng_normal(el_rng *rng);

#endif
