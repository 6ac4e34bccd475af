# Members side by side in SIMD lanes: the member-major training loop that
# fastnn.ensemble.Ensemble.fit runs for its common case (a chain of Dense
# layers with identity, ReLU, LeakyReLU, tanh or sigmoid folded in, MSE
# without sample weights, SGD without momentum). Included at the end of
# _walker.pxi: it uses the walk's plan fields, statuses, Blas rules and
# _permutation.
#
# Why. On the ensembles this serves (1-16-1, 8-32-32-1) a batch is a few
# hundred multiply-adds per layer: walking one member at a time, a vector
# register holds a handful of samples and the time goes to loop set-up and
# short tails. Here a group of L members (L = one vector register: 4
# doubles or 8 floats in the AVX2 build, twice that with AVX-512, half in
# the baseline build) is trained at once, lane t of every vector holding
# member t: one instruction advances L members.
#
# Layout of a group (``L`` lanes, a batch of ``nb`` samples; element e of
# member t at ``e * L + t``): the parameters and gradients interleaved
# ([P][L], copied in at the start and out at the end), the batch's inputs
# and targets feature-major per lane ([n_in][nb][L], gathered through each
# member's own order), every row's output and the gradient block likewise.
#
# The same numbers as the walker. Each member's arithmetic is the walker's
# for that member, operation for operation, so member t ends with the bits
# Network.train_epoch gives it: every sum in the walker's order (the Dense
# sums over inputs from the bias on; ``_dot``'s and ``_sum``'s 8 (double)
# or 16 (float) lanes and their fixed tree; the MSE's 8 double lanes), and
# a multiply-add fused exactly where the walker's register tile fuses it
# (FASTNN_TILE_FUSED, where ``_blocked`` and ``dense_backward_takes_GT``
# pick the tile for that row and batch). A network any of whose rows would
# call BLAS, or that has a stand-alone activation row, is not covered
# (``lanes_cover``): Ensemble.fit walks it member by member.
#
# Divergence, per lane: a lane whose loss is not finite, or whose update
# would make a parameter not finite, stops there as the walker's member
# stops (its parameters from before the step, its gradients those the
# walker leaves: the last good step's after a bad loss, the refused step's
# after a bad update); the other lanes go on.

from libc.string cimport memset

cdef extern from *:
    """
    /* The lanes of a group: one of the build's vector registers (fastnn_vd and fastnn_vf of
       fastnn/_tile.h), as GCC/Clang vector types that may sit at any element boundary; plain
       scalars (one lane) where the compiler has no vector extensions. */
    #if FASTNN_VECTOR_TILE
    typedef double fastnn_lane_vd __attribute__((vector_size(sizeof(fastnn_vd)), aligned(8)));
    typedef long long fastnn_lane_md __attribute__((vector_size(sizeof(fastnn_vd)), aligned(8)));
    typedef float fastnn_lane_vf __attribute__((vector_size(sizeof(fastnn_vf)), aligned(4)));
    typedef int fastnn_lane_mf __attribute__((vector_size(sizeof(fastnn_vf)), aligned(4)));
    #define FASTNN_LANE_SELECT(M, keep, a, b) (((M)(a) & (keep)) | ((M)(b) & ~(keep)))
    #else
    typedef double fastnn_lane_vd;
    typedef long long fastnn_lane_md;
    typedef float fastnn_lane_vf;
    typedef int fastnn_lane_mf;
    #define FASTNN_LANE_SELECT(M, keep, a, b) ((keep) ? (a) : (b))
    #endif
    #define FASTNN_LANE_MASK(M, c) ((M)(c))
    /* _relu of fastnn/_kernels.pxi lane by lane: a if a > 0 else +0 (NaN and -0.0 give +0.0). */
    #define FASTNN_LANE_RELU(V, M, a, zero) ((V)FASTNN_LANE_SELECT(M, FASTNN_LANE_MASK(M, (a) > (zero)), a, zero))
    #define FASTNN_LANE_BYTES ((Py_ssize_t)sizeof(fastnn_lane_vd))

    /* acc + a * b, lane by lane: one fused multiply-add (rounded once) where the walker's
       register tiles fuse (FASTNN_TILE_FUSED: the AVX2 and AVX-512 builds), else a multiply
       and an add, as FASTNN_MADD_* of fastnn/_tile.h, with a vector for a. */
    #if FASTNN_TILE_FUSED && FASTNN_TILE_BYTES == 128
    #define FASTNN_LANE_FMA_D(acc, a, b) ((fastnn_lane_vd)_mm512_fmadd_pd((__m512d)(a), (__m512d)(b), (__m512d)(acc)))
    #define FASTNN_LANE_FMA_F(acc, a, b) ((fastnn_lane_vf)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(acc)))
    #elif FASTNN_TILE_FUSED && FASTNN_TILE_BYTES == 64
    #define FASTNN_LANE_FMA_D(acc, a, b) ((fastnn_lane_vd)_mm256_fmadd_pd((__m256d)(a), (__m256d)(b), (__m256d)(acc)))
    #define FASTNN_LANE_FMA_F(acc, a, b) ((fastnn_lane_vf)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(acc)))
    #else
    #define FASTNN_LANE_FMA_D(acc, a, b) ((acc) + (a) * (b))
    #define FASTNN_LANE_FMA_F(acc, a, b) ((acc) + (a) * (b))
    #endif

    /* relu_backward_kernel's mask lane by lane: 1 where a > 0, else +0. */
    #define FASTNN_LANE_STEP(V, M, a, one, zero) ((V)FASTNN_LANE_SELECT(M, FASTNN_LANE_MASK(M, (a) > (zero)), one, zero))
    /* _lanes_total's fixed tree over SL (8 or 16) sum lanes acc[0 .. SL-1]. */
    #define FASTNN_LANES_TREE(acc, SL)                                                             \
        ((SL) == 16                                                                                \
         ? ((((acc[0] + acc[8]) + (acc[4] + acc[12])) + ((acc[1] + acc[9]) + (acc[5] + acc[13])))  \
            + (((acc[2] + acc[10]) + (acc[6] + acc[14])) + ((acc[3] + acc[11]) + (acc[7] + acc[15])))) \
         : (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))))

    /* Every function takes n vectors of lanes (member t in lane t). */
    #define FASTNN_DEFINE_LANES(S, T, V, M, FMA)                                                   \
    /* y[i] = w */                                                                               \
    static inline void fastnn_lanes_fill_##S(T* y, const T* w, Py_ssize_t n)                     \
    { V wv = *(const V*)w; Py_ssize_t i; for (i = 0; i < n; i++) ((V*)y)[i] = wv; }              \
    /* y[i] = y[i] + w * x[i * xs]: fused as the tile fuses when `fused` */                      \
    static inline void fastnn_lanes_madd_##S(T* y, const T* w, const T* x, Py_ssize_t xs,        \
                                              Py_ssize_t n, int fused)                           \
    {                                                                                            \
        V wv = *(const V*)w; Py_ssize_t i;                                                       \
        if (fused)                                                                               \
            for (i = 0; i < n; i++) ((V*)y)[i] = FMA(((V*)y)[i], wv, ((const V*)x)[i * xs]);     \
        else                                                                                     \
            for (i = 0; i < n; i++) ((V*)y)[i] = ((V*)y)[i] + wv * ((const V*)x)[i * xs];        \
    }                                                                                            \
    /* y[i] = w * x[i] */                                                                        \
    static inline void fastnn_lanes_mul_##S(T* y, const T* w, const T* x, Py_ssize_t n)          \
    { V wv = *(const V*)w; Py_ssize_t i; for (i = 0; i < n; i++) ((V*)y)[i] = wv * ((const V*)x)[i]; } \
    /* out = x[0] * y[0] + ... in order from 0, a multiply and an add each (y NULL: x's sum) */  \
    static inline void fastnn_lanes_seq_##S(T* out, const T* x, const T* y, Py_ssize_t n)        \
    {                                                                                            \
        V acc; Py_ssize_t i;                                                                     \
        memset(&acc, 0, sizeof acc);    /* +0 in every lane, as the scalar loops start */        \
        if (y)                                                                                   \
            for (i = 0; i < n; i++) acc = acc + ((const V*)x)[i] * ((const V*)y)[i];             \
        else                                                                                     \
            for (i = 0; i < n; i++) acc = acc + ((const V*)x)[i];                                \
        *(V*)out = acc;                                                                          \
    }                                                                                            \
    /* y[i] (n vectors) = a sum of k terms w[kk * ws] * x[kk * xs + i] in the order of kk,       \
       starting from `init` (a vector) or, with init NULL, from the first product alone          \
       (`fused` NULL-free: from +0 when fused); multiply-adds fused as the tile's when `fused`.  \
       Eight, then four, of y's vectors stay in registers as the terms stream past; with `relu`, each \
       sum goes through _relu as it is stored (no pass of its own over y). */                   \
    static inline void fastnn_lanes_rows_##S(T* y, const T* init, const T* w, Py_ssize_t ws,     \
                                             const T* x, Py_ssize_t xs, Py_ssize_t k,            \
                                             Py_ssize_t n, int fused, int relu)                  \
    {                                                                                            \
        const Py_ssize_t L = (Py_ssize_t)(sizeof(V) / sizeof(T));                                \
        V a0, a1, a2, a3, wv, start, zero;                                                       \
        Py_ssize_t i = 0, kk, k0;                                                                \
        memset(&start, 0, sizeof start);                                                         \
        memset(&zero, 0, sizeof zero);                                                           \
        if (init) start = *(const V*)init;                                                       \
        k0 = (init || fused) ? 0 : 1;                                                            \
        /* Eight of y's vectors at a time while they last: twice the sums in flight (each sum's  \
           terms in the same order), so the adds' latency no longer bounds a deep row. */        \
        for (; i + 8 <= n; i += 8) {                                                             \
            const T* xi = x + i * L;                                                             \
            V b[8];                                                                              \
            int q;                                                                               \
            if (k0) {                                                                            \
                wv = *(const V*)w;                                                               \
                for (q = 0; q < 8; q++) b[q] = wv * ((const V*)xi)[q];                           \
            } else {                                                                             \
                for (q = 0; q < 8; q++) b[q] = start;                                            \
            }                                                                                    \
            if (fused)                                                                           \
                for (kk = k0; kk < k; kk++) {                                                    \
                    const V* xk = (const V*)(xi + kk * xs);                                      \
                    wv = *(const V*)(w + kk * ws);                                               \
                    for (q = 0; q < 8; q++) b[q] = FMA(b[q], wv, xk[q]);                         \
                }                                                                                \
            else                                                                                 \
                for (kk = k0; kk < k; kk++) {                                                    \
                    const V* xk = (const V*)(xi + kk * xs);                                      \
                    wv = *(const V*)(w + kk * ws);                                               \
                    for (q = 0; q < 8; q++) b[q] = b[q] + wv * xk[q];                            \
                }                                                                                \
            for (q = 0; q < 8; q++)                                                              \
                ((V*)y)[i + q] = relu ? FASTNN_LANE_RELU(V, M, b[q], zero) : b[q];               \
        }                                                                                        \
        for (; i < n; i += 4) {                                                                  \
            const T* xi = x + i * L;                                                             \
            int r = n - i < 4 ? (int)(n - i) : 4;                                                \
            if (k0) {                                                                            \
                wv = *(const V*)w;                                                               \
                a0 = wv * ((const V*)xi)[0];                                                     \
                a1 = r > 1 ? wv * ((const V*)xi)[1] : start;                                     \
                a2 = r > 2 ? wv * ((const V*)xi)[2] : start;                                     \
                a3 = r > 3 ? wv * ((const V*)xi)[3] : start;                                     \
            } else {                                                                             \
                a0 = a1 = a2 = a3 = start;                                                       \
            }                                                                                    \
            if (r == 4) {                                                                        \
                if (fused)                                                                       \
                    for (kk = k0; kk < k; kk++) {                                                \
                        const V* xk = (const V*)(xi + kk * xs);                                  \
                        wv = *(const V*)(w + kk * ws);                                           \
                        a0 = FMA(a0, wv, xk[0]); a1 = FMA(a1, wv, xk[1]);                        \
                        a2 = FMA(a2, wv, xk[2]); a3 = FMA(a3, wv, xk[3]);                        \
                    }                                                                            \
                else                                                                             \
                    for (kk = k0; kk < k; kk++) {                                                \
                        const V* xk = (const V*)(xi + kk * xs);                                  \
                        wv = *(const V*)(w + kk * ws);                                           \
                        a0 = a0 + wv * xk[0]; a1 = a1 + wv * xk[1];                              \
                        a2 = a2 + wv * xk[2]; a3 = a3 + wv * xk[3];                              \
                    }                                                                            \
                if (relu) {                                                                      \
                    a0 = FASTNN_LANE_RELU(V, M, a0, zero); a1 = FASTNN_LANE_RELU(V, M, a1, zero);\
                    a2 = FASTNN_LANE_RELU(V, M, a2, zero); a3 = FASTNN_LANE_RELU(V, M, a3, zero);\
                }                                                                                \
                ((V*)y)[i] = a0; ((V*)y)[i + 1] = a1; ((V*)y)[i + 2] = a2; ((V*)y)[i + 3] = a3;  \
            } else {                                                                             \
                V acc[4] = {a0, a1, a2, a3};                                                     \
                int q;                                                                           \
                for (q = 0; q < r; q++) {                                                        \
                    for (kk = k0; kk < k; kk++) {                                                \
                        wv = *(const V*)(w + kk * ws);                                           \
                        acc[q] = fused ? FMA(acc[q], wv, ((const V*)(xi + kk * xs))[q])          \
                                       : acc[q] + wv * ((const V*)(xi + kk * xs))[q];            \
                    }                                                                            \
                    ((V*)y)[i + q] = relu ? FASTNN_LANE_RELU(V, M, acc[q], zero) : acc[q];       \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    /* out = _dot(x, y, n) (y NULL: _sum(x, n)) of fastnn/_kernels.pxi in every lane: 64 bytes   \
       of sum lanes (8 doubles, 16 floats) added in blocks, the rest into the first, then the    \
       fixed tree of _lanes_total; fewer terms than sum lanes: one sum in order from +0. */      \
    static inline void fastnn_lanes_dot_##S(T* out, const T* x, const T* y, Py_ssize_t n)        \
    {                                                                                            \
        enum { SL = 64 / sizeof(T) };                                                            \
        V acc[SL], zero;                                                                         \
        const V* xv = (const V*)x;                                                               \
        const V* yv = (const V*)y;                                                               \
        Py_ssize_t i = 0, s;                                                                     \
        if (n < SL) {                                                                            \
            fastnn_lanes_seq_##S(out, x, y, n);                                                  \
            return;                                                                              \
        }                                                                                        \
        memset(&zero, 0, sizeof zero);                                                           \
        for (s = 0; s < SL; s++) acc[s] = zero;                                                  \
        if (y) {                                                                                 \
            for (; i + SL <= n; i += SL)                                                         \
                for (s = 0; s < SL; s++) acc[s] = acc[s] + xv[i + s] * yv[i + s];                \
            for (; i < n; i++) acc[0] = acc[0] + xv[i] * yv[i];                                  \
        } else {                                                                                 \
            for (; i + SL <= n; i += SL)                                                         \
                for (s = 0; s < SL; s++) acc[s] = acc[s] + xv[i + s];                            \
            for (; i < n; i++) acc[0] = acc[0] + xv[i];                                          \
        }                                                                                        \
        *(V*)out = FASTNN_LANES_TREE(acc, SL);                                                   \
    }                                                                                            \
    /* One pass over a ReLU row's output j (n vectors): G[i] = dA[i] * (A[i] > 0 as 1 or 0), as   \
       relu_backward_kernel (G may be A or dA), and from the same reads gb = _sum(G, n) and, for  \
       x not NULL, gw = _dot(x, G, n): the lanes and tree of fastnn_lanes_dot. */                 \
    static inline void fastnn_lanes_relu_back_##S(T* G, const T* A, const T* dA, Py_ssize_t n,   \
                                                  T* gb, const T* x, T* gw)                      \
    {                                                                                            \
        enum { SL = 64 / sizeof(T) };                                                            \
        V ab[SL], aw[SL], zero, one, g;                                                          \
        const V* av = (const V*)A;                                                               \
        const V* dv = (const V*)dA;                                                              \
        const V* xv = (const V*)x;                                                               \
        V* gv = (V*)G;                                                                           \
        Py_ssize_t i = 0, s, nb = n < SL ? 0 : n - n % SL;                                        \
        memset(&zero, 0, sizeof zero);                                                           \
        one = zero + (T)1;                                                                       \
        for (s = 0; s < SL; s++) { ab[s] = zero; aw[s] = zero; }                                 \
        if (xv) {                                                                                \
            for (; i < nb; i += SL)                                                              \
                for (s = 0; s < SL; s++) {                                                       \
                    g = dv[i + s] * FASTNN_LANE_STEP(V, M, av[i + s], one, zero);                \
                    gv[i + s] = g;                                                               \
                    ab[s] = ab[s] + g;                                                           \
                    aw[s] = aw[s] + xv[i + s] * g;                                               \
                }                                                                                \
            for (; i < n; i++) {                                                                 \
                g = dv[i] * FASTNN_LANE_STEP(V, M, av[i], one, zero);                            \
                gv[i] = g;                                                                       \
                ab[0] = ab[0] + g;                                                               \
                aw[0] = aw[0] + xv[i] * g;                                                       \
            }                                                                                    \
        } else {                                                                                 \
            for (; i < nb; i += SL)                                                              \
                for (s = 0; s < SL; s++) {                                                       \
                    g = dv[i + s] * FASTNN_LANE_STEP(V, M, av[i + s], one, zero);                \
                    gv[i + s] = g;                                                               \
                    ab[s] = ab[s] + g;                                                           \
                }                                                                                \
            for (; i < n; i++) {                                                                 \
                g = dv[i] * FASTNN_LANE_STEP(V, M, av[i], one, zero);                            \
                gv[i] = g;                                                                       \
                ab[0] = ab[0] + g;                                                               \
            }                                                                                    \
        }                                                                                        \
        if (n < SL) {                                                                            \
            *(V*)gb = ab[0];                                                                     \
            if (xv) *(V*)gw = aw[0];                                                             \
        } else {                                                                                 \
            *(V*)gb = FASTNN_LANES_TREE(ab, SL);                                                 \
            if (xv) *(V*)gw = FASTNN_LANES_TREE(aw, SL);                                         \
        }                                                                                        \
    }                                                                                            \
    /* SGD without momentum on n parameters: p - lr (g + wd p). live NULL: bad[t] = whether      \
       member t's new values are not all finite (nothing stored); else store the lanes live. */  \
    static inline void fastnn_lanes_sgd_##S(T* p, const T* g, Py_ssize_t n, const T* lr,         \
                                             const T* wd, const int* live, int* bad)             \
    {                                                                                            \
        V lrv = *(const V*)lr, wdv = *(const V*)wd, pi, chk, zero;                               \
        M flags, keep;                                                                           \
        Py_ssize_t i, t, L = (Py_ssize_t)(sizeof(V) / sizeof(T));                                \
        memset(&zero, 0, sizeof zero);                                                           \
        memset(&flags, 0, sizeof flags);                                                         \
        memset(&keep, 0, sizeof keep);                                                           \
        if (live)                                                                                \
            for (t = 0; t < L; t++)                                                              \
                memset((char*)&keep + t * sizeof(T), live[t] ? 0xff : 0, sizeof(T));             \
        for (i = 0; i < n; i++) {                                                                \
            pi = ((V*)p)[i] - lrv * (((const V*)g)[i] + wdv * ((V*)p)[i]);                       \
            if (live) {                                                                          \
                ((V*)p)[i] = (V)FASTNN_LANE_SELECT(M, keep, pi, ((V*)p)[i]);                     \
            } else {                                                                             \
                chk = pi * zero;                                                                 \
                flags |= FASTNN_LANE_MASK(M, chk != chk);                                        \
            }                                                                                    \
        }                                                                                        \
        if (!live)                                                                               \
            for (t = 0; t < L; t++)                                                              \
                bad[t] = memcmp((char*)&flags + t * sizeof(T), (const char*)&zero, sizeof(T)) != 0; \
    }

    FASTNN_DEFINE_LANES(d, double, fastnn_lane_vd, fastnn_lane_md, FASTNN_LANE_FMA_D)
    FASTNN_DEFINE_LANES(f, float, fastnn_lane_vf, fastnn_lane_mf, FASTNN_LANE_FMA_F)
    """
    enum:
        FASTNN_LANE_BYTES
    void fastnn_lanes_fill_d(double* y, const double* w, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_fill_f(float* y, const float* w, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_madd_d(double* y, const double* w, const double* x, Py_ssize_t xs, Py_ssize_t n,
                             int fused) noexcept nogil
    void fastnn_lanes_madd_f(float* y, const float* w, const float* x, Py_ssize_t xs, Py_ssize_t n,
                             int fused) noexcept nogil
    void fastnn_lanes_mul_d(double* y, const double* w, const double* x, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_mul_f(float* y, const float* w, const float* x, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_seq_d(double* out, const double* x, const double* y, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_seq_f(float* out, const float* x, const float* y, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_rows_d(double* y, const double* init, const double* w, Py_ssize_t ws, const double* x,
                             Py_ssize_t xs, Py_ssize_t k, Py_ssize_t n, int fused, int relu) noexcept nogil
    void fastnn_lanes_rows_f(float* y, const float* init, const float* w, Py_ssize_t ws, const float* x,
                             Py_ssize_t xs, Py_ssize_t k, Py_ssize_t n, int fused, int relu) noexcept nogil
    void fastnn_lanes_relu_back_d(double* G, const double* A, const double* dA, Py_ssize_t n, double* gb,
                                  const double* x, double* gw) noexcept nogil
    void fastnn_lanes_relu_back_f(float* G, const float* A, const float* dA, Py_ssize_t n, float* gb,
                                  const float* x, float* gw) noexcept nogil
    void fastnn_lanes_dot_d(double* out, const double* x, const double* y, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_dot_f(float* out, const float* x, const float* y, Py_ssize_t n) noexcept nogil
    void fastnn_lanes_sgd_d(double* p, const double* g, Py_ssize_t n, const double* lr, const double* wd,
                            const int* live, int* bad) noexcept nogil
    void fastnn_lanes_sgd_f(float* p, const float* g, Py_ssize_t n, const float* lr, const float* wd,
                            const int* live, int* bad) noexcept nogil


cdef enum:
    MAX_LANES = 16          # members per group at most (64 bytes of float32)
    MAX_SUM_LANES = 16      # _dot's and _sum's lanes at most (16 floats)


cdef inline void _vfill(floating* y, const floating* w, Py_ssize_t n) noexcept nogil:
    if floating is double:
        fastnn_lanes_fill_d(y, w, n)
    else:
        fastnn_lanes_fill_f(y, w, n)


cdef inline void _vmadd(floating* y, const floating* w, const floating* x, Py_ssize_t xs, Py_ssize_t n,
                        bint fused) noexcept nogil:
    if floating is double:
        fastnn_lanes_madd_d(y, w, x, xs, n, fused)
    else:
        fastnn_lanes_madd_f(y, w, x, xs, n, fused)


cdef inline void _vrows(floating* y, const floating* init, const floating* w, Py_ssize_t ws, const floating* x,
                        Py_ssize_t xs, Py_ssize_t k, Py_ssize_t n, bint fused, bint relu) noexcept nogil:
    if floating is double:
        fastnn_lanes_rows_d(y, init, w, ws, x, xs, k, n, fused, relu)
    else:
        fastnn_lanes_rows_f(y, init, w, ws, x, xs, k, n, fused, relu)


cdef inline void _vrelu_back(floating* G, const floating* A, const floating* dA, Py_ssize_t n, floating* gb,
                             const floating* x, floating* gw) noexcept nogil:
    if floating is double:
        fastnn_lanes_relu_back_d(G, A, dA, n, gb, x, gw)
    else:
        fastnn_lanes_relu_back_f(G, A, dA, n, gb, x, gw)


cdef inline void _vmul(floating* y, const floating* w, const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        fastnn_lanes_mul_d(y, w, x, n)
    else:
        fastnn_lanes_mul_f(y, w, x, n)


cdef inline void _vseq(floating* out, const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    if floating is double:
        fastnn_lanes_seq_d(out, x, y, n)
    else:
        fastnn_lanes_seq_f(out, x, y, n)


cdef inline void _vsgd(floating* p, const floating* g, Py_ssize_t n, const floating* lr, const floating* wd,
                       const int* live, int* bad) noexcept nogil:
    if floating is double:
        fastnn_lanes_sgd_d(p, g, n, lr, wd, live, bad)
    else:
        fastnn_lanes_sgd_f(p, g, n, lr, wd, live, bad)

#: Members per group in this build: float64, float32.
LANES = {"float64": FASTNN_LANE_BYTES // 8, "float32": FASTNN_LANE_BYTES // 4}


cdef bint _lanes_cover_batch(const NetC* net, Py_ssize_t nb) noexcept nogil:
    """Whether every row is a Dense (its activation folded in) that runs on fastnn's
    own loops at a batch of ``nb`` rows."""
    cdef Py_ssize_t l
    cdef const Py_ssize_t* rec
    cdef Blas tmp
    for l in range(net.n_rows):
        rec = net.plan + l * N_FIELDS
        if rec[KIND] != KIND_DENSE_:
            return False
        if use_blas(_row_blas(net, l, nb, &tmp), nb, rec[IN], rec[OUT]):
            return False
    return True


cdef bint _lanes_cover(const NetC* net, Py_ssize_t batch_size, Py_ssize_t n) noexcept nogil:
    """_lanes_cover_batch for every batch an epoch of n rows takes (the full and the last)."""
    cdef Py_ssize_t nb = batch_size if batch_size < n else n
    if n <= 0 or nb <= 0 or not _lanes_cover_batch(net, nb):
        return False
    return n % nb == 0 or _lanes_cover_batch(net, n % nb)


# -- sums in the walker's orders, L members at once ----------------------------------


cdef inline void _lanes_dot(const floating* x, const floating* y, Py_ssize_t n, floating* out) noexcept nogil:
    """out[t] = _dot(x[:, t], y[:, t], n), or _sum(x[:, t], n) for y NULL, for n elements per
    member ([n][L]): the same lanes and tree per member."""
    if floating is double:
        fastnn_lanes_dot_d(out, x, y, n)
    else:
        fastnn_lanes_dot_f(out, x, y, n)


# -- the walk -------------------------------------------------------------------------


cdef void _lanes_forward(const NetC* net, const floating* P, const floating* XT, floating* acts,
                         Py_ssize_t nb) noexcept nogil:
    """Every row of the plan for L members at once ([width][nb][L] blocks): each output
    is the bias plus the products in the order of the inputs, multiply-adds fused
    where the walker's tile runs this row (_blocked), then the activation: a ReLU as
    each sum is stored, any other act_forward_kernel's pass (elementwise: lanes are
    elements like any other)."""
    cdef Py_ssize_t L = FASTNN_LANE_BYTES // sizeof(floating)
    cdef Py_ssize_t l, j, kk, k, m, nbL = nb * L
    cdef const Py_ssize_t* rec
    cdef const floating* inp = XT
    cdef floating* out
    cdef floating* y
    cdef bint fused, relu
    for l in range(net.n_rows):
        rec = net.plan + l * N_FIELDS
        k = rec[IN]
        m = rec[OUT]
        out = acts + nbL * rec[ACT]
        fused = _blocked(nb, m, k)
        relu = rec[FN] == FN_RELU
        for j in range(m):
            _vrows(out + j * nbL, P + (rec[B_OFF] + j) * L, P + (rec[W_OFF] + j) * L, m * L, inp, nbL, k, nb,
                   fused, relu)
        if not relu:
            act_forward_kernel(<int>rec[FN], net.fn_params[l], out, out, m * nbL)
        inp = out


cdef void _lanes_backward(const NetC* net, const floating* P, floating* Gr, const floating* XT,
                          floating* acts, Py_ssize_t nb, floating* g_block) noexcept nogil:
    """Back-propagate g_block (dL/d the last row's output) into Gr, for L members at once,
    in the walker's orders (_backward and dense_backward_kernel)."""
    cdef Py_ssize_t L = FASTNN_LANE_BYTES // sizeof(floating)
    cdef Py_ssize_t l, j, kk, i, k, m, nbL = nb * L
    cdef const Py_ssize_t* rec
    cdef const floating* inp
    cdef const floating* w
    cdef floating* out
    cdef floating* G
    cdef floating* dx
    cdef floating* dW
    cdef bint tile_dW, relu_dW
    cdef Blas tmp
    for l in range(net.n_rows - 1, -1, -1):
        rec = net.plan + l * N_FIELDS
        k = rec[IN]
        m = rec[OUT]
        inp = XT if l == 0 else acts + nbL * net.plan[(l - 1) * N_FIELDS + ACT]
        out = acts + nbL * rec[ACT]
        tile_dW = m <= net.scratch_width and dense_backward_takes_GT(_row_blas(net, l, nb, &tmp), nb, k, m)
        # A ReLU row: its mask, the bias sums and (one input, no tile) the weight sums in one pass.
        relu_dW = rec[FN] == FN_RELU and k == 1 and not tile_dW
        if rec[FN] == FN_RELU:
            G = out
            for j in range(m):
                _vrelu_back(G + j * nbL, out + j * nbL, g_block + j * nbL, nb, Gr + (rec[B_OFF] + j) * L,
                            inp if relu_dW else NULL, Gr + (rec[W_OFF] + j) * L)
        else:
            if rec[FN] != FN_IDENTITY:
                act_backward_kernel(<int>rec[FN], net.fn_params[l], out, g_block, out, m * nbL)
                G = out
            elif l > 0:
                memcpy(out, g_block, m * nbL * sizeof(floating))
                G = out
            else:
                G = g_block
            for j in range(m):
                _lanes_dot(G + j * nbL, NULL, nb, Gr + (rec[B_OFF] + j) * L)
        for kk in range(0 if relu_dW else k):
            dW = Gr + (rec[W_OFF] + kk * m) * L
            if tile_dW:
                # The tile's sums (from +0, in the order of the samples), every output's at once.
                memset(dW, 0, m * L * sizeof(floating))
                for i in range(nb):
                    _vmadd(dW, inp + kk * nbL + i * L, G + i * L, nb, m, True)
            else:
                for j in range(m):
                    _lanes_dot(inp + kk * nbL, G + j * nbL, nb, dW + j * L)
        if l == 0:
            break
        # dX: the tile's sums from +0 (fused), else from the first product (a multiply and an add each).
        for kk in range(k):
            _vrows(g_block + kk * nbL, NULL, P + (rec[W_OFF] + kk * m) * L, L, G, nbL, m, nb, _blocked(nb, k, m),
                   False)


cdef void _lanes_mse(const floating* yhat, const floating* yT, floating* grad, Py_ssize_t size,
                     double* loss) noexcept nogil:
    """mse_loss_grad_kernel for L members at once: grad = 2 (yhat - y) / size, and
    loss[t] the mean of the squares, summed in 8 double lanes as the walker sums them."""
    cdef Py_ssize_t L = FASTNN_LANE_BYTES // sizeof(floating)
    cdef double acc[8 * MAX_LANES]
    cdef floating d
    cdef floating scale = <floating>(2.0 / size)
    cdef Py_ssize_t i = 0, s, t
    for s in range(8 * L):
        acc[s] = 0.0
    while i + 8 <= size:
        for s in range(8 * L):
            d = yhat[i * L + s] - yT[i * L + s]
            acc[s] += <double>d * <double>d
            grad[i * L + s] = scale * d
        i += 8
    while i < size:
        for t in range(L):
            d = yhat[i * L + t] - yT[i * L + t]
            acc[t] += <double>d * <double>d
            grad[i * L + t] = scale * d
        i += 1
    for t in range(L):
        loss[t] = (((acc[0 * L + t] + acc[4 * L + t]) + (acc[1 * L + t] + acc[5 * L + t]))
                   + ((acc[2 * L + t] + acc[6 * L + t]) + (acc[3 * L + t] + acc[7 * L + t]))) / size


cdef struct LanesC:
    const NetC* net
    Py_ssize_t n_members        # members of this call
    Py_ssize_t n                # rows of every member's X
    Py_ssize_t batch_size
    Py_ssize_t epochs
    const Py_ssize_t* rows      # member i trains row rows[i] of params and grads
    char* params                # (any, P) C-contiguous
    char* grads
    const void** X              # per member: (n, n_in)
    const void** y              # per member: (n, n_out) or (n,)
    const Py_ssize_t** orders   # per member: (epochs, n) orders, or NULL
    bitgen_t** bitgens          # per member: the stream of its orders (where orders is NULL), or NULL
    void** pcg64s               # per member: its stream's PCG64 state, drawn inline (_pcg64_of), or NULL
    const double* lrs
    const double* wds
    double* losses              # (n_members, losses_stride)
    Py_ssize_t losses_stride
    int* status
    Py_ssize_t* epochs_done
    Py_ssize_t* done
    void* work                  # _lanes_work_size elements, 64-byte aligned
    Py_ssize_t* order_buf       # L * n


cdef inline Py_ssize_t _lanes_work_size(const NetC* net, Py_ssize_t nb, Py_ssize_t L) noexcept nogil:
    """Elements of a group's workspace: parameters and gradients, then per sample the
    inputs, targets, every row's output and the gradient block, all L wide."""
    return L * (2 * net.n_params + nb * (net.n_in + net.n_out + net.acts_width + net.max_width))


cdef void _lanes_group(LanesC* c, Py_ssize_t first, Py_ssize_t n_lanes, floating dtype) noexcept nogil:
    """Train members first .. first + n_lanes - 1 of the call side by side, every epoch."""
    cdef const NetC* net = c.net
    cdef Py_ssize_t L = FASTNN_LANE_BYTES // sizeof(floating), nb_max = c.batch_size if c.batch_size < c.n else c.n
    cdef Py_ssize_t P = net.n_params, n = c.n, n_in = net.n_in, n_out = net.n_out
    cdef Py_ssize_t t, p, e, i, col, start, nb, member, size
    cdef floating* Pl = <floating*>c.work
    cdef floating* Gl = Pl + P * L
    cdef floating* XT = Gl + P * L
    cdef floating* yT = XT + nb_max * n_in * L
    cdef floating* acts = yT + nb_max * n_out * L
    cdef floating* g_block
    cdef floating* pm
    cdef const floating* Xt[MAX_LANES]
    cdef const floating* yt[MAX_LANES]
    cdef const Py_ssize_t* order[MAX_LANES]
    cdef floating* dst
    cdef Py_ssize_t rows_i[MAX_LANES]
    cdef floating lr[MAX_LANES]
    cdef floating wd[MAX_LANES]
    cdef int live[MAX_LANES]
    cdef int bad[MAX_LANES]
    cdef double loss[MAX_LANES]
    cdef double total[MAX_LANES]
    cdef double total_weight[MAX_LANES]
    cdef double running[MAX_LANES]
    cdef double scaled_weight[MAX_LANES]
    cdef double scale[MAX_LANES]
    cdef Py_ssize_t n_live = n_lanes
    # Lanes past the last member compute lane 0's data in order, never stored.
    for t in range(L):
        member = first + (t if t < n_lanes else 0)
        live[t] = t < n_lanes
        Xt[t] = <const floating*>c.X[member]
        yt[t] = <const floating*>c.y[member]
        lr[t] = <floating>c.lrs[member]
        wd[t] = <floating>c.wds[member]
        pm = <floating*>c.params + c.rows[member] * P
        for p in range(P):
            Pl[p * L + t] = pm[p]
        pm = <floating*>c.grads + c.rows[member] * P
        for p in range(P):
            Gl[p * L + t] = pm[p]
        if t < n_lanes:
            c.status[member] = OK_
            c.epochs_done[member] = 0
            c.done[member] = 0
    for e in range(c.epochs):
        if n_live == 0:
            break
        for t in range(L):
            member = first + t
            order[t] = NULL
            total[t] = 0.0
            total_weight[t] = 0.0
            running[t] = 0.0
            scaled_weight[t] = 0.0
            scale[t] = 1.0
            if not live[t]:
                continue
            if c.orders[member] != NULL:
                order[t] = c.orders[member] + e * n
            elif c.bitgens[member] != NULL:
                _permutation(c.bitgens[member], c.pcg64s[member], c.order_buf + t * n, n)
                order[t] = c.order_buf + t * n
        start = 0
        while start < n and n_live > 0:
            nb = nb_max if start + nb_max < n else n - start
            g_block = acts + nb * net.acts_width * L
            # The batch, feature-major per lane, through each member's order: sample by sample,
            # the L lanes of one feature side by side (L is a constant: the lane loops unroll).
            for i in range(nb):
                for t in range(L):
                    rows_i[t] = order[t][start + i] if order[t] != NULL else start + i
                for col in range(n_in):
                    dst = XT + (col * nb + i) * L
                    for t in range(L):
                        dst[t] = Xt[t][rows_i[t] * n_in + col]
                for col in range(n_out):
                    dst = yT + (col * nb + i) * L
                    for t in range(L):
                        dst[t] = yt[t][rows_i[t] * n_out + col]
            _lanes_forward(net, Pl, XT, acts, nb)
            size = nb * n_out
            _lanes_mse(acts + nb * _last_act(net) * L, yT, g_block, size, loss)
            for t in range(L):
                if live[t] and not isfinite(loss[t]):
                    _lanes_stop(c, first + t, BAD_LOSS_, e, start, Gl, P, t)
                    live[t] = False
                    n_live -= 1
            if n_live == 0:
                break
            _lanes_backward(net, Pl, Gl, XT, acts, nb, g_block)
            _vsgd(Pl, Gl, P, lr, wd, NULL, bad)
            for t in range(L):
                if live[t] and bad[t]:
                    _lanes_stop(c, first + t, BAD_UPDATE_, e, start, Gl, P, t)
                    live[t] = False
                    n_live -= 1
            _vsgd(Pl, Gl, P, lr, wd, live, NULL)
            # The epoch's mean loss, as _train_epoch keeps it (wsum = nb).
            for t in range(L):
                if not live[t]:
                    continue
                total[t] += loss[t] * nb
                total_weight[t] += nb
                scaled_weight[t] += nb * scale[t]
                running[t] += (loss[t] - running[t]) * (nb * scale[t] / scaled_weight[t])
                if scaled_weight[t] > 1e300:
                    scaled_weight[t] *= 5.421010862427522e-20   # 2**-64
                    scale[t] *= 5.421010862427522e-20
            start += nb
        for t in range(L):
            if not live[t]:
                continue
            member = first + t
            if isfinite(total[t]) and isfinite(total_weight[t]):
                c.losses[member * c.losses_stride + e] = total[t] / total_weight[t] if total_weight[t] > 0 else 0.0
            else:
                c.losses[member * c.losses_stride + e] = running[t]
            c.epochs_done[member] = e + 1
            c.done[member] = n
    # Every member's parameters (a stopped one's frozen since), and the gradients of those
    # that did not stop (a stopped member's were written when it stopped).
    for t in range(n_lanes):
        member = first + t
        pm = <floating*>c.params + c.rows[member] * P
        for p in range(P):
            pm[p] = Pl[p * L + t]
        if c.status[member] == OK_:
            pm = <floating*>c.grads + c.rows[member] * P
            for p in range(P):
                pm[p] = Gl[p * L + t]


cdef void _lanes_stop(LanesC* c, Py_ssize_t member, int code, Py_ssize_t epoch, Py_ssize_t start,
                      const floating* Gl, Py_ssize_t P, Py_ssize_t t) noexcept nogil:
    """Member ``member`` (lane t) stops with ``code`` in ``epoch`` at row ``start``; its
    gradients as they are now go out."""
    cdef Py_ssize_t L = FASTNN_LANE_BYTES // sizeof(floating)     # a constant: the lane loops unroll
    cdef Py_ssize_t p
    cdef floating* gm = <floating*>c.grads + c.rows[member] * P
    c.status[member] = code
    c.epochs_done[member] = epoch
    c.done[member] = start
    for p in range(P):
        gm[p] = Gl[p * L + t]


cdef void _lanes_run(LanesC* c) noexcept nogil:
    """Every group of the call, one after the other, in the network's dtype."""
    cdef Py_ssize_t L, first = 0
    if c.net.is_double:
        L = FASTNN_LANE_BYTES // sizeof(double)
        while first < c.n_members:
            _lanes_group(c, first, min(L, c.n_members - first), <double>0)
            first += L
    else:
        L = FASTNN_LANE_BYTES // sizeof(float)
        while first < c.n_members:
            _lanes_group(c, first, min(L, c.n_members - first), <float>0)
            first += L


def lanes_cover(Network net, Py_ssize_t batch_size, Py_ssize_t n_samples):
    """Whether :func:`train_members_lanes` trains networks of ``net``'s plan with batches
    of ``batch_size`` out of ``n_samples`` rows: every plan row a Dense layer (its
    activation folded in) that runs on fastnn's own loops (not BLAS) at every batch
    size an epoch takes."""
    return bool(_lanes_cover(&net.net, batch_size, n_samples))


def lanes_pay(Network net, Py_ssize_t batch_size, Py_ssize_t n_samples):
    """Whether the lanes are the faster way to train networks of ``net``'s plan at this
    batch size: no row's forward product runs on the walker's register tile at the full
    batch (``_blocked``), where the member-by-member walk already fills a vector register
    with one member's samples (measured, benchmarks/ensemble.py: 8-32-32-1 at batch 32 took
    1.7x longer in lanes; 1-16-1 at batch 16 2.5x less)."""
    cdef Py_ssize_t l, nb = min(batch_size, n_samples)
    cdef const Py_ssize_t* rec
    for l in range(net.net.n_rows):
        rec = net.net.plan + l * N_FIELDS
        if _blocked(nb, rec[OUT], rec[IN]):
            return False
    return True


def train_members_lanes(Network net, members, params, grads, list Xs, list ys, list orders, list rngs,
                        lrs, weight_decays, Py_ssize_t batch_size, Py_ssize_t epochs,
                        double[:, ::1] losses, int[::1] status, Py_ssize_t[::1] epochs_done,
                        Py_ssize_t[::1] done):
    """Train several members of one plan with MSE and SGD, side by side in SIMD lanes, in one
    nogil call; each exactly as :func:`train_members` trains it (the same bits).

    Parameters
    ----------
    net : Network
        The plan every member has (member 0's network; its parameters are not used).
    members : intp array (m,)
        Member i trains row ``members[i]`` of ``params`` and ``grads``.
    params, grads : (K, P) C-contiguous writable arrays of the network's dtype
        Every member's parameters and gradients (rows), updated in place.
    Xs, ys : lists of m arrays
        Member i's data, (n, n_in) and (n, n_out) or (n,), valid (finite), of
        the network's dtype, C-contiguous; every member with n rows.
    orders, rngs : lists of m
        As :func:`train_members`: member i's (epochs, n) intp orders, else its own
        numpy Generator to draw each epoch's ``permutation(n)`` from, else None (in
        order).
    lrs, weight_decays : float64 arrays (m,)
        Each member's SGD learning rate and weight decay (no momentum).
    batch_size, epochs : int
    losses, status, epochs_done, done
        Outputs per member, as :func:`train_members`'s.

    Returns
    -------
    int
        OK; or SLOW, with nothing changed, when ``lanes_cover`` refuses the plan
        and batch size (train with train_members instead).
    """
    cdef Py_ssize_t n_members = len(Xs), i, e, j, n, L
    cdef LanesC c
    cdef const Py_ssize_t[::1] rows
    cdef const double[::1] lr_view
    cdef const double[::1] wd_view
    cdef const Py_ssize_t[:, ::1] order_view
    cdef Py_ssize_t n_rows
    cdef char* work_buf = NULL
    if not (len(ys) == len(orders) == len(rngs) == n_members):
        raise ValueError("Xs, ys, orders and rngs must have one entry per member")
    rows = np.ascontiguousarray(members, dtype=np.intp)
    lr_view = np.ascontiguousarray(lrs, dtype=np.float64)
    wd_view = np.ascontiguousarray(weight_decays, dtype=np.float64)
    if rows.shape[0] != n_members or lr_view.shape[0] != n_members or wd_view.shape[0] != n_members:
        raise ValueError("members, lrs and weight_decays must have one entry per member")
    if (losses.shape[0] != n_members or losses.shape[1] < epochs or status.shape[0] != n_members
            or epochs_done.shape[0] != n_members or done.shape[0] != n_members):
        raise ValueError("losses must be (members, epochs), status, epochs_done and done (members,)")
    if batch_size <= 0 or epochs <= 0:
        raise ValueError(f"batch_size and epochs must be positive, got {batch_size} and {epochs}")
    for a in (params, grads):
        if not (_fits(a, net.typenum, 2) and cnp.PyArray_ISWRITEABLE(a) and _dim(a, 1) == net.net.n_params):
            raise ValueError("params and grads must be writable C-contiguous (K, n_params) arrays of the "
                             "network's dtype")
    if _dim(params, 0) != _dim(grads, 0):
        raise ValueError("params and grads must have the same rows")
    n_rows = _dim(params, 0)
    for i in range(n_members):
        if rows[i] < 0 or rows[i] >= n_rows:
            raise ValueError(f"members[{i}] is not a row of params")
        for j in range(i):
            if rows[j] == rows[i]:
                raise ValueError(f"members[{i}] repeats a row")
    if n_members == 0:
        return OK
    n = _dim(Xs[0], 0) if cnp.PyArray_Check(Xs[0]) else 0
    if not _lanes_cover(&net.net, batch_size, n):
        return SLOW
    c.net = &net.net
    c.n_members = n_members
    c.n = n
    c.batch_size = batch_size
    c.epochs = epochs
    c.rows = &rows[0]
    c.params = <char*>cnp.PyArray_DATA(params)
    c.grads = <char*>cnp.PyArray_DATA(grads)
    c.lrs = &lr_view[0]
    c.wds = &wd_view[0]
    c.losses = &losses[0, 0]
    c.losses_stride = losses.shape[1]
    c.status = &status[0]
    c.epochs_done = &epochs_done[0]
    c.done = &done[0]
    L = FASTNN_LANE_BYTES // (8 if net.net.is_double else 4)
    c.X = <const void**>malloc(n_members * sizeof(void*))
    c.y = <const void**>malloc(n_members * sizeof(void*))
    c.orders = <const Py_ssize_t**>malloc(n_members * sizeof(Py_ssize_t*))
    c.bitgens = <bitgen_t**>malloc(n_members * sizeof(bitgen_t*))
    c.pcg64s = <void**>malloc(n_members * sizeof(void*))
    c.order_buf = <Py_ssize_t*>malloc(L * n * sizeof(Py_ssize_t))
    work_buf = <char*>malloc(_lanes_work_size(&net.net, min(batch_size, n), L) * (8 if net.net.is_double else 4) + 64)
    c.work = NULL if work_buf == NULL else work_buf + (-<size_t>work_buf) % 64
    keep = []       # the orders' views, alive until the call returns
    try:
        if (c.X == NULL or c.y == NULL or c.orders == NULL or c.bitgens == NULL or c.pcg64s == NULL
                or c.order_buf == NULL or c.work == NULL):
            raise MemoryError()
        for i in range(n_members):
            X, y = Xs[i], ys[i]
            if not (net._fits_X(X) and _dim(X, 0) == n and net._fits_y(y, n)):
                raise ValueError(f"Xs[{i}] and ys[{i}] must be valid C-contiguous arrays of the network's dtype, "
                                 f"(n, n_in) and (n, n_out) or (n,), with the rows of Xs[0]")
            c.X[i] = cnp.PyArray_DATA(X)
            c.y[i] = cnp.PyArray_DATA(y)
            c.orders[i] = NULL
            c.bitgens[i] = NULL
            c.pcg64s[i] = NULL
            if orders[i] is not None:
                order_view = orders[i]
                if order_view.shape[0] < epochs or order_view.shape[1] != n:
                    raise ValueError(f"orders[{i}] must have shape (epochs, n_samples)")
                for e in range(epochs):
                    for j in range(n):
                        if order_view[e, j] < 0 or order_view[e, j] >= n:
                            raise ValueError(f"orders[{i}] holds a row index out of range")
                keep.append(order_view)
                c.orders[i] = &order_view[0, 0]
            elif rngs[i] is not None:
                c.bitgens[i] = _bitgen_of(rngs[i])
                c.pcg64s[i] = _pcg64_of(rngs[i], c.bitgens[i])
        with nogil:
            _lanes_run(&c)
    finally:
        free(c.X)
        free(c.y)
        free(c.orders)
        free(c.bitgens)
        free(c.pcg64s)
        free(c.order_buf)
        free(work_buf)
    return OK
