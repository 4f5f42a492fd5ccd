/* engine/rng.c - the parts of the random number generator that need libm. */
#include "rl_rng.h"

#include <math.h>

double rl_rng_normal(rl_rng *r) {
    double u1 = rl_rng_uniform(r), u2 = rl_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
