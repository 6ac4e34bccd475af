/* The stages of fastnn's exp, tanh and sigmoid (fastnn/_kernels.pxi), included
 * twice by it: once with FASTNN_MATH_SFX empty and FASTNN_MA_D/F(a, b, c) a
 * multiply and an add (each rounded: the scalar functions, in every build), once
 * with FASTNN_MATH_SFX _fused and FASTNN_MA_D/F a fused multiply-add where the
 * build fuses (the AVX2 and AVX-512 walker builds, as their register tiles; a
 * multiply and an add elsewhere). The array versions, which the activations run,
 * take the second.
 *
 * Each function is written as stages (reduce, polynomial, finish) so that the
 * array versions can run every stage as a loop of its own over a block: each loop
 * is then short enough for the out-of-order core to overlap many elements, where
 * one long loop body is bound by its chain's latency.
 *
 * No include guard: included once per flavour, on purpose. */

#define FASTNN_MATH_CAT_(a, b) a##b
#define FASTNN_MATH_CAT(a, b) FASTNN_MATH_CAT_(a, b)
#define FASTNN_MATH_NAME(name) FASTNN_MATH_CAT(name, FASTNN_MATH_SFX)

/* e^r - 1 - r = r^2 q(r), |r| <= ln2/2. Double: q of degree 10, 1/2 exact and
   c1..c10 the minimax fit of e^r - 1 - r - r^2/2 that tools/expm1_coefficients.py
   computes (truncation error 0.006 ulp of e^r with these rounded coefficients,
   where Taylor's of the same degree gives 1.47 and Taylor's to r^13 0.033), by
   Estrin's scheme (pairs c_2k + c_2k+1 r combined by r^2, r^4, r^8): a chain of
   5 multiply-adds where Horner's rule has 10. Float: Taylor to r^7 by Horner's
   rule (5 steps; Estrin's order measured 1.03 ulp for exp, over the bound of 1). */
FASTNN_MATH double FASTNN_MATH_NAME(fastnn_expm1_poly_d)(double r) {
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double p0 = FASTNN_MA_D(r, FASTNN_EXPM1_C1_D, 0.5);
    double p1 = FASTNN_MA_D(r, FASTNN_EXPM1_C3_D, FASTNN_EXPM1_C2_D);
    double p2 = FASTNN_MA_D(r, FASTNN_EXPM1_C5_D, FASTNN_EXPM1_C4_D);
    double p3 = FASTNN_MA_D(r, FASTNN_EXPM1_C7_D, FASTNN_EXPM1_C6_D);
    double p4 = FASTNN_MA_D(r, FASTNN_EXPM1_C9_D, FASTNN_EXPM1_C8_D);
    double q = FASTNN_MA_D(r8, FASTNN_MA_D(r2, FASTNN_EXPM1_C10_D, p4),
                           FASTNN_MA_D(r4, FASTNN_MA_D(r2, p3, p2), FASTNN_MA_D(r2, p1, p0)));
    return FASTNN_MA_D(r2, q, r);
}
FASTNN_MATH float FASTNN_MATH_NAME(fastnn_expm1_poly_f)(float r) {
    float q = 1.0f / 5040.0f;
    q = FASTNN_MA_F(q, r, 1.0f / 720.0f);
    q = FASTNN_MA_F(q, r, 1.0f / 120.0f);
    q = FASTNN_MA_F(q, r, 1.0f / 24.0f);
    q = FASTNN_MA_F(q, r, 1.0f / 6.0f);
    q = FASTNN_MA_F(q, r, 0.5f);
    return FASTNN_MA_F(r * r, q, r);
}

/* exp: x = n ln2 + r (Cody-Waite: ln2 in two parts; n = rint(x log2e) by
   adding 1.5 2^52 in the multiply-add and taking it off); stage 1 gives r and n,
   stage 2 e^r 2^n as two powers of two (a subnormal result is rounded once).
   Arguments beyond the overflow and underflow thresholds are clamped to just
   past them: the result is then inf or 0 by the arithmetic itself; NaN passes
   every clamp and propagates. */
FASTNN_MATH double FASTNN_MATH_NAME(fastnn_exp_reduce_d)(double x, double* n_out) {
    double xc = fastnn_sel_d(FASTNN_MASK_D(x > 709.8), 709.8, x);          /* NaN passes both */
    xc = fastnn_sel_d(FASTNN_MASK_D(xc < -745.2), -745.2, xc);
    double n = FASTNN_MA_D(xc, FASTNN_LOG2E_D, 0x1.8p52) - 0x1.8p52;   /* rint(xc log2e) */
    *n_out = n;
    return FASTNN_MA_D(n, -FASTNN_LN2_LO_D, FASTNN_MA_D(n, -FASTNN_LN2_HI_D, xc));
}
FASTNN_MATH double FASTNN_MATH_NAME(fastnn_exp_finish_d)(double r, double n) {
    double n1 = fastnn_rint_d(n * 0.5);
    return ((1.0 + FASTNN_MATH_NAME(fastnn_expm1_poly_d)(r)) * fastnn_pow2_d(n1)) * fastnn_pow2_d(n - n1);
}
FASTNN_MATH float FASTNN_MATH_NAME(fastnn_exp_reduce_f)(float x, float* n_out) {
    float xc = fastnn_sel_f(FASTNN_MASK_F(x > 88.8f), 88.8f, x);
    xc = fastnn_sel_f(FASTNN_MASK_F(xc < -104.0f), -104.0f, xc);
    float n = FASTNN_MA_F(xc, FASTNN_LOG2E_F, 0x1.8p23f) - 0x1.8p23f;
    *n_out = n;
    return FASTNN_MA_F(n, -FASTNN_LN2_LO_F, FASTNN_MA_F(n, -FASTNN_LN2_HI_F, xc));
}
FASTNN_MATH float FASTNN_MATH_NAME(fastnn_exp_finish_f)(float r, float n) {
    float n1 = fastnn_rint_f(n * 0.5f);
    return ((1.0f + FASTNN_MATH_NAME(fastnn_expm1_poly_f)(r)) * fastnn_pow2_f(n1)) * fastnn_pow2_f(n - n1);
}
/* The sigmoid's stage 1: exp's, of -|x|. */
FASTNN_MATH double FASTNN_MATH_NAME(fastnn_nabs_reduce_d)(double x, double* n) {
    return FASTNN_MATH_NAME(fastnn_exp_reduce_d)(-fabs(x), n);
}
FASTNN_MATH float FASTNN_MATH_NAME(fastnn_nabs_reduce_f)(float x, float* n) {
    return FASTNN_MATH_NAME(fastnn_exp_reduce_f)(-fabsf(x), n);
}

/* tanh(x) = sign(x) t / (t + 2), t = expm1(2|x|) = 2^n (expm1(r) + 1) - 1
   (expm1(r) = r + r^2 q(r), so tiny x keep their relative precision and
   tanh(+-0) is +-0). |x| >= 20 (double), 10 (float): tanh rounds to 1 (and 2^n
   stays normal). Stage 1 gives r and p = 2^n (n rounded by adding
   1.5 2^52 + 1023 to 2|x| log2e in one multiply-add: the sum holds n + 1023 in
   its low bits, 2^n's exponent field; ties go to odd n, within |r| <= ln2/2 all
   the same), stage 2 t, stage 3 the quotient with x's sign. */
FASTNN_MATH double FASTNN_MATH_NAME(fastnn_tanh_reduce_d)(double x, double* p_out) {
    double a = fabs(x);
    a = fastnn_sel_d(FASTNN_MASK_D(a > 20.0), 20.0, a);
    double y = a + a;
    double k = FASTNN_MA_D(y, FASTNN_LOG2E_D, 0x1.8p52 + 1023.0);   /* n + 1023 in the low bits */
    double n = k - (0x1.8p52 + 1023.0);
    *p_out = fastnn_as_d(fastnn_bits_d(k) << 52);                   /* 2^n */
    return FASTNN_MA_D(n, -FASTNN_LN2_LO_D, FASTNN_MA_D(n, -FASTNN_LN2_HI_D, y));
}
FASTNN_MATH double FASTNN_MATH_NAME(fastnn_tanh_t_d)(double r, double p) {
    return FASTNN_MA_D(p, FASTNN_MATH_NAME(fastnn_expm1_poly_d)(r), p - 1.0);
}
FASTNN_MATH float FASTNN_MATH_NAME(fastnn_tanh_reduce_f)(float x, float* p_out) {
    float a = fabsf(x);
    a = fastnn_sel_f(FASTNN_MASK_F(a > 10.0f), 10.0f, a);
    float y = a + a;
    float k = FASTNN_MA_F(y, FASTNN_LOG2E_F, 0x1.8p23f + 127.0f);
    float n = k - (0x1.8p23f + 127.0f);
    *p_out = fastnn_as_f(fastnn_bits_f(k) << 23);
    return FASTNN_MA_F(n, -FASTNN_LN2_LO_F, FASTNN_MA_F(n, -FASTNN_LN2_HI_F, y));
}
FASTNN_MATH float FASTNN_MATH_NAME(fastnn_tanh_t_f)(float r, float p) {
    return FASTNN_MA_F(p, FASTNN_MATH_NAME(fastnn_expm1_poly_f)(r), p - 1.0f);
}

#undef FASTNN_MATH_NAME
#undef FASTNN_MATH_CAT
#undef FASTNN_MATH_CAT_
