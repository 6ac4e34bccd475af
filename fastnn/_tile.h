/* The register-tiled product of fastnn's own loops (fastnn/_kernels.pxi,
 * _small_gemm): C (M, N) = A (M, K) @ B (K, N) [+ bias[:, None]] [then
 * max(., 0)], for the small layers that do not pay for a BLAS call.
 *
 * A's element (r, c) is at A[r * sa_r + c * sa_c], so W serves as A or as
 * A.T without a copy; B's and C's rows are contiguous, ldb and ldc apart.
 * A tile of 4 rows of C by 2 vectors stays in 8 vector accumulators while
 * K streams past: each step loads 2 vectors of one row of B and 4 values
 * of A, and does 8 vector multiplies and 8 adds. Leftover columns go one
 * vector at a time, then as one vector partly filled; leftover rows one at
 * a time. The bias starts the sums and the ReLU rides on the final store.
 *
 * The vectors are GCC/Clang vector extensions, FASTNN_TILE_BYTES / 2 bytes
 * wide (setup.py sets it per build of the walker: the build's widest
 * vector register), written out explicitly so that neither the strides of
 * A nor the compiler's vectoriser can turn the K loop into a slow
 * reduction. Every element of C is one sum in the order of K: in the AVX2
 * and AVX-512 builds one fused multiply-add per term (FASTNN_MADD_*, below;
 * setup.py defines FASTNN_TILE_FMA there), so those two give the same bits;
 * in the baseline build a multiply and an add (the compiler contracts
 * nothing: -ffp-contract=off), the same sums rounded twice per term, equal
 * to the others' to rounding. Other compilers (MSVC) get the same code with
 * one-element "vectors": plain scalars.
 */
#ifndef FASTNN_TILE_H
#define FASTNN_TILE_H

#include <stddef.h>
#include <string.h>

#ifndef FASTNN_TILE_BYTES
#define FASTNN_TILE_BYTES 32
#endif

/* From which sizes a Dense product calls BLAS instead of these loops
 * (fastnn/_kernels.pxi, use_blas): in * out >= FASTNN_BLAS_MIN_WEIGHTS and
 * min(in, out) >= FASTNN_BLAS_MIN_WIDTH and, for a batch of 8 rows or more
 * (where the tiles run), in * out >= FASTNN_BLAS_MIN_WEIGHTS_TILED: the
 * wider the tile's vectors, the larger the layers it wins on. Measured with
 * benchmarks/crossover.py on a 2-core x86-64 (README). */
#define FASTNN_BLAS_MIN_WEIGHTS 128
#define FASTNN_BLAS_MIN_WIDTH 8
#if FASTNN_TILE_BYTES >= 128
#define FASTNN_BLAS_MIN_WEIGHTS_TILED 131072
#elif FASTNN_TILE_BYTES >= 64
#define FASTNN_BLAS_MIN_WEIGHTS_TILED 4096
#else
#define FASTNN_BLAS_MIN_WEIGHTS_TILED 128
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FASTNN_VECTOR_TILE 1
#define FASTNN_ALWAYS_INLINE static inline __attribute__((always_inline))
typedef double fastnn_vd __attribute__((vector_size(FASTNN_TILE_BYTES / 2)));
typedef long long fastnn_vd_mask __attribute__((vector_size(FASTNN_TILE_BYTES / 2)));
typedef float fastnn_vf __attribute__((vector_size(FASTNN_TILE_BYTES / 2)));
typedef int fastnn_vf_mask __attribute__((vector_size(FASTNN_TILE_BYTES / 2)));
/* max(v, 0) as the scalar loops write it (v > 0 ? v : 0): NaN and -0.0 give +0.0. */
#define FASTNN_RELU(V, M, v, zero) ((V)((M)(v) & (M)((v) > (zero))))
#else
#define FASTNN_VECTOR_TILE 0
#define FASTNN_ALWAYS_INLINE static __forceinline
typedef double fastnn_vd;
typedef long long fastnn_vd_mask;
typedef float fastnn_vf;
typedef int fastnn_vf_mask;
#define FASTNN_RELU(V, M, v, zero) ((v) > (zero) ? (v) : (zero))
#endif

/* The first rem elements at p (0 < rem < the vector's length) in a vector, the
 * other lanes 0, without reading past them: a masked load where the build
 * has one, else element by element (through memory: slower). */
#if FASTNN_VECTOR_TILE && defined(__AVX512F__) && FASTNN_TILE_BYTES == 128
#include <immintrin.h>
static inline fastnn_vd fastnn_load_part_d(const double* p, ptrdiff_t rem)
{ return (fastnn_vd)_mm512_maskz_loadu_pd((__mmask8)((1u << rem) - 1u), p); }
static inline fastnn_vf fastnn_load_part_f(const float* p, ptrdiff_t rem)
{ return (fastnn_vf)_mm512_maskz_loadu_ps((__mmask16)((1u << rem) - 1u), p); }
#elif FASTNN_VECTOR_TILE && defined(__AVX2__) && FASTNN_TILE_BYTES == 64
#include <immintrin.h>
static inline fastnn_vd fastnn_load_part_d(const double* p, ptrdiff_t rem)
{ return (fastnn_vd)_mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(rem), _mm256_setr_epi64x(0, 1, 2, 3))); }
static inline fastnn_vf fastnn_load_part_f(const float* p, ptrdiff_t rem)
{ return (fastnn_vf)_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem),
                                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))); }
#else
static inline fastnn_vd fastnn_load_part_d(const double* p, ptrdiff_t rem)
{ fastnn_vd v; ptrdiff_t l; memset(&v, 0, sizeof v); for (l = 0; l < rem; l++) ((double*)&v)[l] = p[l]; return v; }
static inline fastnn_vf fastnn_load_part_f(const float* p, ptrdiff_t rem)
{ fastnn_vf v; ptrdiff_t l; memset(&v, 0, sizeof v); for (l = 0; l < rem; l++) ((float*)&v)[l] = p[l]; return v; }
#endif

/* acc + a * b for a scalar a and vectors acc, b: one fused multiply-add
 * (rounded once) where the build defines FASTNN_TILE_FMA and has FMA
 * (setup.py: the AVX2 build with -mfma, and the AVX-512 build), else a
 * multiply and an add (rounded twice: the baseline build, and MSVC). */
#if FASTNN_VECTOR_TILE && defined(FASTNN_TILE_FMA) && FASTNN_TILE_FMA && defined(__AVX512F__) \
    && FASTNN_TILE_BYTES == 128
#define FASTNN_MADD_D(acc, a, b) ((fastnn_vd)_mm512_fmadd_pd(_mm512_set1_pd(a), (__m512d)(b), (__m512d)(acc)))
#define FASTNN_MADD_F(acc, a, b) ((fastnn_vf)_mm512_fmadd_ps(_mm512_set1_ps(a), (__m512)(b), (__m512)(acc)))
#define FASTNN_TILE_FUSED 1
#elif FASTNN_VECTOR_TILE && defined(FASTNN_TILE_FMA) && FASTNN_TILE_FMA && defined(__AVX2__) \
    && defined(__FMA__) && FASTNN_TILE_BYTES == 64
#define FASTNN_MADD_D(acc, a, b) ((fastnn_vd)_mm256_fmadd_pd(_mm256_set1_pd(a), (__m256d)(b), (__m256d)(acc)))
#define FASTNN_MADD_F(acc, a, b) ((fastnn_vf)_mm256_fmadd_ps(_mm256_set1_ps(a), (__m256)(b), (__m256)(acc)))
#define FASTNN_TILE_FUSED 1
#else
#define FASTNN_MADD_D(acc, a, b) ((acc) + (a) * (b))
#define FASTNN_MADD_F(acc, a, b) ((acc) + (a) * (b))
#define FASTNN_TILE_FUSED 0
#endif

/* Defines NAME(A, sa_r, sa_c, B, ldb, C, ldc, M, N, K, bias, relu) for
 * elements of type T in vectors of type V (mask type M), loading a part of
 * a vector with LOAD_PART. */
#define FASTNN_DEFINE_SMALL_GEMM(NAME, T, V, M, LOAD_PART, MADD)                         \
FASTNN_ALWAYS_INLINE void NAME##_tile(                                                   \
    int rows, int nv, const T* a, ptrdiff_t sa_r, ptrdiff_t sa_c, const T* b,            \
    ptrdiff_t ldb, T* c, ptrdiff_t ldc, ptrdiff_t K, const T* bias, int relu)            \
{                                                                                        \
    const ptrdiff_t L = (ptrdiff_t)(sizeof(V) / sizeof(T));                              \
    V acc[4][2], bv[2], out, zero = {0};                                                 \
    T ar;                                                                                \
    ptrdiff_t k;                                                                         \
    int r, v;                                                                            \
    for (r = 0; r < rows; r++) {                                                         \
        ar = bias ? bias[r] : (T)0;                                                      \
        for (v = 0; v < nv; v++)                                                         \
            acc[r][v] = ar - zero;  /* a broadcast that keeps -0.0 */                    \
    }                                                                                    \
    for (k = 0; k < K; k++) {                                                            \
        for (v = 0; v < nv; v++)                                                         \
            memcpy(&bv[v], b + k * ldb + v * L, sizeof(V));                              \
        for (r = 0; r < rows; r++) {                                                     \
            ar = a[r * sa_r + k * sa_c];                                                 \
            for (v = 0; v < nv; v++)                                                     \
                acc[r][v] = MADD(acc[r][v], ar, bv[v]);                                  \
        }                                                                                \
    }                                                                                    \
    for (r = 0; r < rows; r++)                                                           \
        for (v = 0; v < nv; v++) {                                                       \
            out = relu ? FASTNN_RELU(V, M, acc[r][v], zero) : acc[r][v];                 \
            memcpy(c + r * ldc + v * L, &out, sizeof(V));                                \
        }                                                                                \
}                                                                                        \
                                                                                         \
static void NAME##_tail(                                                                 \
    ptrdiff_t rows, ptrdiff_t rem, const T* a, ptrdiff_t sa_r, ptrdiff_t sa_c,           \
    const T* b, ptrdiff_t ldb, T* c, ptrdiff_t ldc, ptrdiff_t K, const T* bias, int relu) \
{                                                                                        \
    V acc[4], bv, out, zero = {0};                                                       \
    T ar;                                                                                \
    ptrdiff_t k, l, r;                                                                   \
    for (r = 0; r < rows; r++)                                                           \
        acc[r] = (bias ? bias[r] : (T)0) - zero;                                         \
    for (k = 0; k < K; k++) {                                                            \
        bv = LOAD_PART(b + k * ldb, rem);                                                \
        for (r = 0; r < rows; r++) {                                                     \
            ar = a[r * sa_r + k * sa_c];                                                 \
            acc[r] = MADD(acc[r], ar, bv);                                               \
        }                                                                                \
    }                                                                                    \
    for (r = 0; r < rows; r++) {                                                         \
        out = relu ? FASTNN_RELU(V, M, acc[r], zero) : acc[r];                           \
        for (l = 0; l < rem; l++)                                                        \
            c[r * ldc + l] = ((T*)&out)[l];                                              \
    }                                                                                    \
}                                                                                        \
                                                                                         \
/* One block of `rows` rows of C (4, or 1), every column. */                             \
FASTNN_ALWAYS_INLINE void NAME##_rows(                                                   \
    int rows, const T* a, ptrdiff_t sa_r, ptrdiff_t sa_c, const T* B, ptrdiff_t ldb,     \
    T* c, ptrdiff_t ldc, ptrdiff_t N, ptrdiff_t K, const T* bias, int relu)              \
{                                                                                        \
    const ptrdiff_t L = (ptrdiff_t)(sizeof(V) / sizeof(T));                              \
    ptrdiff_t i0;                                                                        \
    for (i0 = 0; i0 + 2 * L <= N; i0 += 2 * L)                                           \
        NAME##_tile(rows, 2, a, sa_r, sa_c, B + i0, ldb, c + i0, ldc, K, bias, relu);    \
    for (; i0 + L <= N; i0 += L)                                                         \
        NAME##_tile(rows, 1, a, sa_r, sa_c, B + i0, ldb, c + i0, ldc, K, bias, relu);    \
    if (i0 < N)                                                                          \
        NAME##_tail(rows, N - i0, a, sa_r, sa_c, B + i0, ldb, c + i0, ldc, K, bias, relu); \
}                                                                                        \
                                                                                         \
static void NAME(                                                                        \
    const T* A, ptrdiff_t sa_r, ptrdiff_t sa_c, const T* B, ptrdiff_t ldb, T* C,         \
    ptrdiff_t ldc, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T* bias, int relu)       \
{                                                                                        \
    ptrdiff_t r0;                                                                        \
    /* Constant row counts, so that each inlined tile is fully unrolled. */              \
    for (r0 = 0; r0 + 4 <= M; r0 += 4)                                                   \
        NAME##_rows(4, A + r0 * sa_r, sa_r, sa_c, B, ldb, C + r0 * ldc, ldc, N, K,       \
                    bias ? bias + r0 : NULL, relu);                                      \
    for (; r0 < M; r0++)                                                                 \
        NAME##_rows(1, A + r0 * sa_r, sa_r, sa_c, B, ldb, C + r0 * ldc, ldc, N, K,       \
                    bias ? bias + r0 : NULL, relu);                                      \
}

FASTNN_DEFINE_SMALL_GEMM(fastnn_small_gemm_d, double, fastnn_vd, fastnn_vd_mask, fastnn_load_part_d, FASTNN_MADD_D)
FASTNN_DEFINE_SMALL_GEMM(fastnn_small_gemm_f, float, fastnn_vf, fastnn_vf_mask, fastnn_load_part_f, FASTNN_MADD_F)

#endif /* FASTNN_TILE_H */
