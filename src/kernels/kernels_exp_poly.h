/* Inside the kernels layer: the constants of e^x shared by its vector forms (exp8
 * for AVX2, exp16 for AVX-512), so that both compute the same function: x = n ln2
 * + r with ln2 split in two parts (the high one exact in a float, so n * ln2_hi
 * loses nothing), Cephes' degree-6 polynomial for e^r, 2^n put into the exponent.
 * Below KQ_EXP_X_MIN the result is 0 (masked -inf gives exactly 0). */
#ifndef ELLIOTT_KERNELS_EXP_POLY_H
#define ELLIOTT_KERNELS_EXP_POLY_H

#define KQ_EXP_X_MIN (-87.0f)
#define KQ_EXP_X_MAX 88.0f
#define KQ_EXP_LOG2E 1.44269504088896341f
#define KQ_EXP_LN2_HI 0.693359375f
#define KQ_EXP_LN2_LO (-2.12194440e-4f)
/* e^r = 1 + r + r^2 (P5 + r (P4 + r (P3 + r (P2 + r (P1 + r P0))))) */
#define KQ_EXP_P0 1.9875691500e-4f
#define KQ_EXP_P1 1.3981999507e-3f
#define KQ_EXP_P2 8.3334519073e-3f
#define KQ_EXP_P3 4.1665795894e-2f
#define KQ_EXP_P4 1.6666665459e-1f
#define KQ_EXP_P5 5.0000001201e-1f

#endif
