/* engine/rl_rng.h - a small seeded random number generator (xoshiro256**,
 * Blackman & Vigna 2018), so results are reproducible across platforms and
 * its whole state can be saved in a checkpoint.
 */
#ifndef RL_RNG_H
#define RL_RNG_H

#include <stdint.h>

typedef struct rl_rng {
    uint64_t s[4];
} rl_rng;

/* Seeds the four words from one 64-bit seed with splitmix64. */
static inline void rl_rng_seed(rl_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}

static inline uint64_t rl_rng_next(rl_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rl_rng_uniform(rl_rng *r) {
    return (double)(rl_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller; one value per call for simplicity). */
double rl_rng_normal(rl_rng *r);

#endif
