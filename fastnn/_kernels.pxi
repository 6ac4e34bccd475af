# The pointer-level loops of fastnn, included (not cimported) by each
# compiled module that runs them: fastnn._ops (behind fastnn.ops) and the
# network walkers fastnn._walker_baseline / _avx2 / _avx512. Each loop has
# one body here, fused over float32/float64, and both sides run it.
#
# Why an include and not a .pxd: a cdef function cimported from another
# module is called through a pointer, so it can be neither inlined into the
# walker's loops nor compiled for the walker's instruction set. Each module
# compiles its own copy instead, and the AVX2 build of the walker gets AVX2
# loops throughout (see setup.py and fastnn/_walker.py).
#
# Every function here is a typed loop over C-contiguous buffers that the
# caller has allocated and whose sizes the caller has checked: nothing here
# checks a bound, raises, or touches a Python object. Inputs are ``const``;
# outputs are overwritten, never accumulated into. The NumPy twin of each is
# in fastnn/reference.py.
#
# The Dense products are feature-major, as the walker keeps its activations:
# XT is (in_features, n) (row kk holds input kk of every sample), W is
# (in_features, out_features), b and db are (out_features,), YT and G are
# (out_features, n). The loops then run along the batch, which is long and
# contiguous however narrow the layer is, so they vectorise. fastnn.ops'
# sample-major arrays are transposed on the way in and out (``transpose``).

from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New
from cython cimport floating
from libc.limits cimport INT_MAX
from libc.math cimport fabs, fabsf, pow, sqrt, sqrtf
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

# A BLAS gemm found at run time (see fastnn/_blas.py): kind and addresses,
# and the rule of ``use_blas``: from which layer sizes a Dense product calls it.
cdef enum:
    BLAS_NONE = 0
    BLAS_CBLAS64 = 1      # CBLAS with 64-bit integers (NumPy's scipy-openblas64)
    BLAS_FORTRAN32 = 2    # Fortran with 32-bit integers (scipy.linalg.cython_blas)

cdef struct Blas:
    int kind
    void* dgemm
    void* sgemm
    Py_ssize_t min_weights         # in * out >= this,
    Py_ssize_t min_width           # and min(in, out) >= this,
    Py_ssize_t min_weights_tiled   # and, for a batch of TILE_MIN_BATCH or more, in * out >= this


cdef extern from "_tile.h":
    # This build's crossover between its own loops and BLAS (see fastnn/_tile.h).
    enum:
        FASTNN_BLAS_MIN_WEIGHTS
        FASTNN_BLAS_MIN_WIDTH
        FASTNN_BLAS_MIN_WEIGHTS_TILED
    # The register-tiled product, one per dtype.
    void fastnn_small_gemm_d(const double* A, Py_ssize_t sa_r, Py_ssize_t sa_c, const double* B,
                             Py_ssize_t ldb, double* C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N,
                             Py_ssize_t K, const double* bias, int relu) noexcept nogil
    void fastnn_small_gemm_f(const float* A, Py_ssize_t sa_r, Py_ssize_t sa_c, const float* B,
                             Py_ssize_t ldb, float* C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N,
                             Py_ssize_t K, const float* bias, int relu) noexcept nogil

#: A Dense product of this module's loops calls BLAS (when one was found) when
#: in_features * out_features reaches BLAS_MIN_WEIGHTS, both reach
#: BLAS_MIN_WIDTH and, for a batch of 8 rows or more (where the register
#: tiles run), in_features * out_features reaches BLAS_MIN_WEIGHTS_TILED.
BLAS_MIN_WEIGHTS = int(FASTNN_BLAS_MIN_WEIGHTS)
BLAS_MIN_WIDTH = int(FASTNN_BLAS_MIN_WIDTH)
BLAS_MIN_WEIGHTS_TILED = int(FASTNN_BLAS_MIN_WEIGHTS_TILED)

cdef enum:
    # From this batch size on, the register tiles run (see _blocked), and BLAS
    # must beat them (Blas.min_weights_tiled).
    TILE_MIN_BATCH = 8


cdef inline void blas_init(Blas* blas) noexcept nogil:
    """No BLAS, and this build's thresholds."""
    blas.kind = BLAS_NONE
    blas.dgemm = NULL
    blas.sgemm = NULL
    blas.min_weights = FASTNN_BLAS_MIN_WEIGHTS
    blas.min_width = FASTNN_BLAS_MIN_WIDTH
    blas.min_weights_tiled = FASTNN_BLAS_MIN_WEIGHTS_TILED


cdef inline bint use_blas(const Blas* blas, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    """Whether the Dense product of a batch of n, k inputs and m outputs calls BLAS."""
    if (blas.kind == BLAS_NONE or k * m < blas.min_weights or k < blas.min_width or m < blas.min_width
            or (n >= TILE_MIN_BATCH and k * m < blas.min_weights_tiled)):
        return False
    # A BLAS with 32-bit integers takes no dimension (nor leading dimension) above INT_MAX.
    return blas.kind != BLAS_FORTRAN32 or (n <= INT_MAX and k <= INT_MAX and m <= INT_MAX)


# ---------------------------------------------------------------------------
# BLAS
# ---------------------------------------------------------------------------

cdef enum:
    CBLAS_ROW_MAJOR = 101
    CBLAS_NO_TRANS = 111
    CBLAS_TRANS = 112

ctypedef void (*cblas_dgemm_t)(int, int, int, int64_t, int64_t, int64_t, double,
                               const double*, int64_t, const double*, int64_t,
                               double, double*, int64_t) noexcept nogil
ctypedef void (*cblas_sgemm_t)(int, int, int, int64_t, int64_t, int64_t, float,
                               const float*, int64_t, const float*, int64_t,
                               float, float*, int64_t) noexcept nogil
ctypedef void (*fortran_dgemm_t)(const char*, const char*, const int*, const int*, const int*,
                                 const double*, const double*, const int*, const double*,
                                 const int*, const double*, double*, const int*) noexcept nogil
ctypedef void (*fortran_sgemm_t)(const char*, const char*, const int*, const int*, const int*,
                                 const float*, const float*, const int*, const float*,
                                 const int*, const float*, float*, const int*) noexcept nogil

cdef void gemm(
    const Blas* blas, bint trans_a, bint trans_b, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
    const floating* A, Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
    floating beta, floating* C, Py_ssize_t ldc,
) noexcept nogil:
    """Row-major C (M x N) = op(A) @ op(B) + beta * C, with op(A) M x K and op(B) K x N."""
    cdef char ta, tb
    cdef int m, n, k, la, lb, lc
    cdef floating one = 1
    if blas.kind == BLAS_CBLAS64:
        if floating is double:
            (<cblas_dgemm_t>blas.dgemm)(CBLAS_ROW_MAJOR, CBLAS_TRANS if trans_a else CBLAS_NO_TRANS,
                                        CBLAS_TRANS if trans_b else CBLAS_NO_TRANS, M, N, K, 1.0,
                                        A, lda, B, ldb, beta, C, ldc)
        else:
            (<cblas_sgemm_t>blas.sgemm)(CBLAS_ROW_MAJOR, CBLAS_TRANS if trans_a else CBLAS_NO_TRANS,
                                        CBLAS_TRANS if trans_b else CBLAS_NO_TRANS, M, N, K, 1.0,
                                        A, lda, B, ldb, beta, C, ldc)
    else:
        # Column-major BLAS: C^T = op(B)^T @ op(A)^T, so swap the operands.
        ta = b'T' if trans_b else b'N'
        tb = b'T' if trans_a else b'N'
        m = <int>N
        n = <int>M
        k = <int>K
        la = <int>ldb
        lb = <int>lda
        lc = <int>ldc
        if floating is double:
            (<fortran_dgemm_t>blas.dgemm)(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc)
        else:
            (<fortran_sgemm_t>blas.sgemm)(&ta, &tb, &m, &n, &k, &one, B, &la, A, &lb, &beta, C, &lc)


# ---------------------------------------------------------------------------
# Building blocks: sums in a fixed order, the ReLU, transposes
# ---------------------------------------------------------------------------

cdef inline floating _relu(floating v) noexcept nogil:
    """max(v, 0), as every ReLU of fastnn computes it (NaN and -0.0 give +0.0;
    fastnn/_tile.h's FASTNN_RELU is its vector twin)."""
    cdef floating zero = 0     # a typed zero: loops over it vectorise
    return v if v > zero else zero


cdef inline void _axpy(floating a, const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    """y += a * x."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] += a * x[i]


cdef inline double _lanes_total_d(const double* lane) noexcept nogil:
    """The sum of 8 double lanes, as a fixed tree."""
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]))


cdef inline floating _lanes_total(const floating* lane) noexcept nogil:
    """The sum of the 8 (double) or 16 (float) lanes of _dot and _sum, as a fixed tree."""
    if floating is float:
        return ((((lane[0] + lane[8]) + (lane[4] + lane[12])) + ((lane[1] + lane[9]) + (lane[5] + lane[13])))
                + (((lane[2] + lane[10]) + (lane[6] + lane[14])) + ((lane[3] + lane[11]) + (lane[7] + lane[15]))))
    else:
        return _lanes_total_d(lane)


cdef inline floating _dot(const floating* x, const floating* y, Py_ssize_t n) noexcept nogil:
    """sum(x * y), in independent lanes that the compiler keeps in vector registers.

    A compiler may not reorder one floating-point sum, so a plain loop is a
    single chain of dependent additions; independent lanes vectorise. 64
    bytes of lanes (8 doubles, 16 floats): with fewer floats than the
    AVX-512 build's vectors hold, GCC vectorises two steps of the loop at
    once and must then add their lanes in order, one by one.
    """
    cdef floating lane[16]
    cdef floating total = 0
    cdef Py_ssize_t i = 0, t, lanes = 64 // sizeof(floating)
    if n < lanes:
        # Lane 0 alone: the same sum in the same order, without the other lanes' zeros.
        for i in range(n):
            total += x[i] * y[i]
        return total
    for t in range(lanes):
        lane[t] = 0
    while i + lanes <= n:
        for t in range(lanes):
            lane[t] += x[i + t] * y[i + t]
        i += lanes
    while i < n:
        lane[0] += x[i] * y[i]
        i += 1
    return _lanes_total(lane)


cdef inline floating _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum(x), in vectorisable lanes (as ``_dot``)."""
    cdef floating lane[16]
    cdef floating total = 0
    cdef Py_ssize_t i = 0, t, lanes = 64 // sizeof(floating)
    if n < lanes:
        for i in range(n):
            total += x[i]
        return total
    for t in range(lanes):
        lane[t] = 0
    while i + lanes <= n:
        for t in range(lanes):
            lane[t] += x[i + t]
        i += lanes
    while i < n:
        lane[0] += x[i]
        i += 1
    return _lanes_total(lane)


cdef void transpose(const floating* src, floating* dst, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """dst (cols, rows) = src (rows, cols).T"""
    cdef Py_ssize_t r, c, t, r0 = 0
    cdef floating* d
    cdef const floating* s
    if rows == 1 or cols == 1:
        memcpy(dst, src, rows * cols * sizeof(floating))
        return
    # Eight source rows at a time: each column of them is one contiguous
    # 8-element store, where a row-by-row copy would store every element
    # into another cache line.
    while r0 + 8 <= rows:
        s = src + r0 * cols
        d = dst + r0
        for c in range(cols):
            for t in range(8):
                d[c * rows + t] = s[t * cols + c]
        r0 += 8
    for r in range(r0, rows):
        for c in range(cols):
            dst[c * rows + r] = src[r * cols + c]


# ---------------------------------------------------------------------------
# Dense, feature-major (see the top of this file)
# ---------------------------------------------------------------------------

cdef inline void _small_gemm(
    const floating* A, Py_ssize_t sa_r, Py_ssize_t sa_c, const floating* B, Py_ssize_t ldb,
    floating* C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
    const floating* bias, bint relu,
) noexcept nogil:
    """C (M, N) = A (M, K) @ B (K, N) [+ bias[:, None]] [then max(., 0)], for small sizes.

    A's element (r, c) is at ``A[r * sa_r + c * sa_c]`` (so W serves as A or
    as A.T without a copy); B's rows and C's rows are contiguous, ``ldb`` and
    ``ldc`` apart. Register-tiled in explicit vectors, 4 rows of C by two of
    the build's widest vector registers (``fastnn/_tile.h``); every element
    is one sum in the order of K, so every build gives the same bits.
    """
    if floating is double:
        fastnn_small_gemm_d(A, sa_r, sa_c, B, ldb, C, ldc, M, N, K, bias, relu)
    else:
        fastnn_small_gemm_f(A, sa_r, sa_c, B, ldb, C, ldc, M, N, K, bias, relu)


cdef inline bint _blocked(Py_ssize_t n, Py_ssize_t rows, Py_ssize_t depth) noexcept nogil:
    """Whether the register-tiled product pays: 4 rows and TILE_MIN_BATCH (8)
    columns or more, and a sum of two terms or more (one is a single fused pass)."""
    return rows >= 4 and n >= TILE_MIN_BATCH and depth >= 2


cdef inline bint dense_backward_takes_GT(const Blas* blas, Py_ssize_t n, Py_ssize_t k,
                                         Py_ssize_t m) noexcept nogil:
    """Whether dense_backward_kernel multiplies dW on the register tile, from G laid
    out sample-major (GT, n * m values), when the caller hands it GT."""
    return not use_blas(blas, n, k, m) and _blocked(m, k, n)


cdef void dense_forward_kernel(
    const Blas* blas, const floating* XT, const floating* W, const floating* b,
    floating* YT, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m, bint relu,
) noexcept nogil:
    """YT (m, n) = W.T @ XT + b[:, None], then max(., 0) when ``relu`` (k >= 1).

    BLAS when ``use_blas``; else the register-tiled product for a layer of
    four outputs or more (W.T as A), else output row j is b[j] + sum over kk
    of W[kk, j] * XT[kk], where the bias rides on the first input row's pass
    and the ReLU on the last one's, so a one-input layer (the tutorial's
    first) is a single pass.
    """
    cdef Py_ssize_t i, j, kk
    cdef floating* y
    cdef const floating* x
    cdef floating bj, w
    if use_blas(blas, n, k, m):
        for j in range(m):
            y = YT + j * n
            bj = b[j]
            for i in range(n):
                y[i] = bj
        gemm(blas, True, False, m, n, k, W, m, XT, n, 1, YT, n)
        if relu:
            for i in range(m * n):
                YT[i] = _relu(YT[i])
        return
    if _blocked(n, m, k):
        _small_gemm(W, 1, m, XT, n, YT, n, m, n, k, b, relu)
        return
    for j in range(m):
        y = YT + j * n
        bj = b[j]
        w = W[j]
        x = XT
        if k == 1 and relu:
            for i in range(n):
                y[i] = _relu(bj + w * x[i])
            continue
        for i in range(n):
            y[i] = bj + w * x[i]
        for kk in range(1, k - 1):
            _axpy(W[kk * m + j], XT + kk * n, y, n)
        if k > 1:
            w = W[(k - 1) * m + j]
            x = XT + (k - 1) * n
            if relu:
                for i in range(n):
                    y[i] = _relu(y[i] + w * x[i])
            else:
                _axpy(w, x, y, n)


cdef void dense_backward_kernel(
    const Blas* blas, const floating* XT, const floating* W, const floating* G, const floating* GT,
    floating* dXT, floating* dW, floating* db, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m,
) noexcept nogil:
    """dW = XT @ G.T, db = G.sum(1), and dXT = W @ G unless dXT is NULL (G is (m, n)).

    BLAS when ``use_blas``; else (see ``_blocked``): with eight outputs and
    four inputs or more, dW is the register-tiled product X @ G.T over the
    batch, which needs G sample-major: ``GT`` (n, m), when the caller has it
    (see ``dense_backward_takes_GT``); without it (NULL), one lane-parallel
    dot product (``_dot``) per weight. With four inputs or more and a batch
    of eight or more, dXT is the register-tiled product W @ G.
    """
    cdef Py_ssize_t kk, j, i
    cdef floating* dx
    cdef floating w
    for j in range(m):
        db[j] = _sum(G + j * n, n)
    if use_blas(blas, n, k, m):
        gemm(blas, False, True, k, m, n, XT, n, G, n, 0, dW, m)
        if dXT != NULL:
            gemm(blas, False, False, k, n, m, W, m, G, n, 0, dXT, n)
        return
    if _blocked(m, k, n) and GT != NULL:
        _small_gemm(XT, n, 1, GT, m, dW, m, k, m, n, NULL, False)
    else:
        for kk in range(k):
            for j in range(m):
                dW[kk * m + j] = _dot(XT + kk * n, G + j * n, n)
    if dXT != NULL and _blocked(n, k, m):
        _small_gemm(W, m, 1, G, n, dXT, n, k, n, m, NULL, False)
    elif dXT != NULL:
        for kk in range(k):
            dx = dXT + kk * n
            w = W[kk * m]
            for i in range(n):
                dx[i] = w * G[i]
            for j in range(1, m):
                _axpy(W[kk * m + j], G + j * n, dx, n)


# ---------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------

cdef void relu_forward_kernel(
    const floating* Z, floating* A, Py_ssize_t size,
) noexcept nogil:
    """A = max(Z, 0), elementwise (A may be Z)."""
    cdef Py_ssize_t i
    for i in range(size):
        A[i] = _relu(Z[i])


cdef void relu_backward_kernel(
    const floating* Z, const floating* dA, floating* dZ, Py_ssize_t size,
) noexcept nogil:
    """dZ = dA * (Z > 0) (the subgradient at Z == 0 is taken as 0).

    A multiplication by the 0/1 mask rather than a branch: the signs of Z are
    as good as random, and a mispredicted branch per element cost more than
    the whole multiplication (measured: a quarter of a float32 training step).
    dZ may be dA itself: each element is read before it is written.
    """
    cdef Py_ssize_t i
    cdef floating zero = 0, mask
    for i in range(size):
        mask = Z[i] > zero
        dZ[i] = dA[i] * mask


cdef double mse_loss_grad_kernel(
    const floating* yhat, const floating* y, floating* grad, Py_ssize_t size,
) noexcept nogil:
    """grad = 2 * (yhat - y) / size, and return mean((yhat - y) ** 2).

    One pass computes both, as a training step needs both. The loss is summed
    in double, in eight independent lanes (one chain of dependent additions
    would not vectorise); the gradient is computed in the buffers' own type,
    as the reference computes it. ``grad`` may be ``yhat`` or ``y`` itself.
    """
    cdef Py_ssize_t i = 0, t
    cdef floating d[8]
    cdef double lane[8]
    cdef floating scale = <floating>(2.0 / size)
    for t in range(8):
        lane[t] = 0.0
    while i + 8 <= size:
        for t in range(8):
            d[t] = yhat[i + t] - y[i + t]
        for t in range(8):
            lane[t] += <double>d[t] * <double>d[t]
        for t in range(8):
            grad[i + t] = scale * d[t]
        i += 8
    while i < size:
        d[0] = yhat[i] - y[i]
        lane[0] += <double>d[0] * <double>d[0]
        grad[i] = scale * d[0]
        i += 1
    return _lanes_total_d(lane) / size


cdef void sgd_update_kernel(
    floating* param, const floating* grad, double lr, Py_ssize_t size,
) noexcept nogil:
    """param -= lr * grad, in place."""
    cdef Py_ssize_t i
    cdef floating step = <floating>lr
    for i in range(size):
        param[i] -= step * grad[i]


cdef bint all_finite_kernel(const floating* x, Py_ssize_t size) noexcept nogil:
    """True when no element of x is NaN or infinite.

    x * 0 is +-0 for every finite x and NaN for NaN and +-inf, and NaN is
    the one value unequal to itself: x * 0 is summed in independent lanes
    (128 bytes of them), a sum of zeros unless a NaN comes in, which then
    stays, in whatever order the lanes are added up. Lanes of the values' own
    type vectorise in every build; a count of the NaNs in an integer (as this
    loop was) does not for float64 in SSE2 (no packed 64-bit compare to add),
    and ran at a quarter of the speed there. 128 bytes rather than ``_sum``'s
    64: four chains of vector adds in AVX2 rather than two, which the adds'
    latency bounded on data in the first-level cache (the loss gradients'
    blocks: the check took half as long as the gradient).
    """
    cdef floating lane[32]
    cdef floating total = 0, zero = 0
    cdef Py_ssize_t i, t, half, lanes = 128 // sizeof(floating)
    if size < lanes:
        for i in range(size):
            total += x[i] * zero
        return total == total
    # The lanes start from the first values (no zeroing store) and end added in
    # halves (vector adds, not a chain of scalar ones): both cost as much as the
    # loop on a block of a few thousand values.
    for t in range(lanes):
        lane[t] = x[t] * zero
    i = lanes
    while i + lanes <= size:
        for t in range(lanes):
            lane[t] += x[i + t] * zero
        i += lanes
    while i < size:
        lane[0] += x[i] * zero
        i += 1
    half = lanes // 2
    while half > 0:
        for t in range(half):
            lane[t] += lane[t + half]
        half //= 2
    return lane[0] == lane[0]


# ---------------------------------------------------------------------------
# Optimizer updates: torch.optim.SGD (momentum, Nesterov, L2 weight decay),
# Adam (L2 weight decay) and AdamW (decoupled weight decay), elementwise
# over flat buffers, in the order of operations PyTorch uses.
# ---------------------------------------------------------------------------

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_ADAMW = 2

cdef struct Opt:
    int kind
    double lr
    double momentum        # SGD
    bint nesterov          # SGD
    double weight_decay
    double beta1, beta2    # Adam, AdamW
    double eps             # Adam, AdamW
    long step              # updates already applied (Adam's t is step + 1)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _fabs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef struct AdamRule:
    # Adam's and AdamW's constants for one step, as PyTorch computes them (in double; each
    # loop casts them to its dtype): the one home of _update_pass's and _adam_bound_pass's.
    double one_minus_b1, b2, one_minus_b2, eps
    double decay            # AdamW: 1 - lr * weight_decay (param.mul_ first); Adam: 1
    double l2               # Adam: weight_decay (added to the gradient); AdamW: 0
    double step_size        # lr / (1 - beta1 ** t)
    double bc2_sqrt         # sqrt(1 - beta2 ** t)


cdef AdamRule _adam_rule(const Opt* opt) noexcept nogil:
    cdef AdamRule rule
    cdef double t = <double>(opt.step + 1)
    rule.one_minus_b1 = 1.0 - opt.beta1
    rule.b2 = opt.beta2
    rule.one_minus_b2 = 1.0 - opt.beta2
    rule.eps = opt.eps
    rule.decay = 1.0 - opt.lr * opt.weight_decay if opt.kind == OPT_ADAMW else 1.0
    rule.l2 = 0.0 if opt.kind == OPT_ADAMW else opt.weight_decay
    rule.step_size = opt.lr / (1.0 - pow(opt.beta1, t))
    rule.bc2_sqrt = sqrt(1.0 - pow(opt.beta2, t))
    return rule


cdef bint _update_pass(
    const Opt* opt, floating* p, const floating* g, floating* buf1, floating* buf2,
    Py_ssize_t n, bint store,
) noexcept nogil:
    """Compute every updated value; store them if ``store``; return whether all are finite.

    ``buf1`` is SGD's momentum buffer or Adam's first moment (exp_avg),
    ``buf2`` Adam's second moment (exp_avg_sq); unused ones may be NULL.
    One loop per rule, with no branch inside but the store, and the
    finiteness counted in an integer (x * 0 is NaN exactly when x is not
    finite, and NaN != NaN), so that the compiler vectorises them.
    """
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0     # the flags in the values' width: they vectorise beside them
    cdef uint64_t bad64 = 0
    cdef floating lr = <floating>opt.lr, wd = <floating>opt.weight_decay
    cdef floating mom = <floating>opt.momentum, pi, gi, m, v, d, denom, chk, zero = 0
    cdef floating one_minus_b1, b2, one_minus_b2, eps, decay, l2, step_size, bc2_sqrt
    cdef AdamRule rule
    if opt.kind == OPT_SGD and opt.momentum == 0:
        # PyTorch adds weight_decay * p only when weight_decay != 0; adding 0 * p changes no value.
        for i in range(n):
            pi = p[i] - lr * (g[i] + wd * p[i])
            chk = pi * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            if store:
                p[i] = pi
    elif opt.kind == OPT_SGD and not opt.nesterov:
        for i in range(n):
            m = mom * buf1[i] + (g[i] + wd * p[i])   # first step: 0 * mom + g == g, as PyTorch's clone
            pi = p[i] - lr * m
            chk = (pi + m) * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            if store:
                buf1[i] = m
                p[i] = pi
    elif opt.kind == OPT_SGD:
        for i in range(n):
            gi = g[i] + wd * p[i]
            m = mom * buf1[i] + gi
            pi = p[i] - lr * (gi + mom * m)           # Nesterov
            chk = (pi + m) * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            if store:
                buf1[i] = m
                p[i] = pi
    else:
        # PyTorch: step_size = lr / (1 - beta1**t); denom = sqrt(v) / sqrt(1 - beta2**t) + eps.
        # AdamW first decays p (decay = 1 - lr * weight_decay); Adam adds the L2 term to g.
        rule = _adam_rule(opt)
        one_minus_b1, b2 = <floating>rule.one_minus_b1, <floating>rule.b2
        one_minus_b2, eps = <floating>rule.one_minus_b2, <floating>rule.eps
        decay, l2 = <floating>rule.decay, <floating>rule.l2
        step_size, bc2_sqrt = <floating>rule.step_size, <floating>rule.bc2_sqrt
        for i in range(n):
            pi = p[i] * decay                          # param.mul_(1 - lr * weight_decay)
            gi = g[i] + l2 * p[i]
            m = buf1[i]
            m = m + one_minus_b1 * (gi - m)            # exp_avg.lerp_(grad, 1 - beta1)
            v = buf2[i] * b2 + one_minus_b2 * (gi * gi)
            denom = _sqrt(v) / bc2_sqrt + eps
            pi = pi - step_size * (m / denom)
            chk = (pi + m + v) * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            if store:
                buf1[i] = m
                buf2[i] = v
                p[i] = pi
    return (bad32 | bad64) == 0


cdef bint _adam_bound_pass(
    const Opt* opt, const floating* p, const floating* g, const floating* buf1, const floating* buf2,
    Py_ssize_t n,
) noexcept nogil:
    """Whether a bound, without a square root or a division, proves every new value
    of an Adam or AdamW step finite: True proves it; False proves nothing.

    ``_update_pass`` computes ``m / denom`` with ``denom = sqrt(v) / bc2_sqrt +
    eps``: two divisions and a square root per value, which bound a float64
    pass by the divider, not by memory. Here, with m and v computed as there:
    when v >= 0, denom >= eps > 0 (rounding is monotonic), so
    ``|m / denom| <= |m| / eps`` and the new parameter is at most
    ``|p * decay| + step_size * |m| / eps`` in magnitude, up to a few
    roundings; twice that, plus ``|m| + v``, being finite covers the
    roundings (of ``1 / eps`` too) and the sum ``_update_pass`` checks. Every
    non-finite input makes the bound NaN or infinite. When the bound fails
    (eps below the dtype's range, huge values), the exact pass decides.
    """
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef AdamRule rule = _adam_rule(opt)
    cdef floating one_minus_b1 = <floating>rule.one_minus_b1, b2 = <floating>rule.b2
    cdef floating one_minus_b2 = <floating>rule.one_minus_b2, eps = <floating>rule.eps
    cdef floating decay = <floating>rule.decay, l2 = <floating>rule.l2
    cdef floating step_size = <floating>rule.step_size
    cdef floating inv_eps, gi, m, v, bound, zero = 0, two = 2
    if not eps > 0:
        return False
    inv_eps = 1 / eps
    for i in range(n):
        gi = g[i] + l2 * p[i]
        m = buf1[i]
        m = m + one_minus_b1 * (gi - m)
        v = buf2[i] * b2 + one_minus_b2 * (gi * gi)
        bound = two * (_fabs(p[i] * decay) + step_size * (_fabs(m) * inv_eps)) + (_fabs(m) + v)
        bound = bound * zero
        if floating is float:
            bad32 |= (bound != bound) | (v < 0)
        else:
            bad64 |= (bound != bound) | (v < 0)
    return (bad32 | bad64) == 0


cdef bint update_kernel(
    Opt* opt, floating* p, const floating* g, floating* buf1, floating* buf2, Py_ssize_t n,
) noexcept nogil:
    """Apply one optimizer step to n parameters, only if every new value is finite.

    A first pass computes the new parameters and state without storing them
    and checks them; the second repeats the same arithmetic and stores it.
    So a step that would overflow changes nothing (and returns False); a
    step that succeeds advances ``opt.step``. Adam's first pass is a bound
    (``_adam_bound_pass``), with the exact pass only when the bound fails.
    """
    if opt.kind == OPT_SGD or not _adam_bound_pass(opt, p, g, buf1, buf2, n):
        if not _update_pass(opt, p, g, buf1, buf2, n, False):
            return False
    _update_pass(opt, p, g, buf1, buf2, n, True)
    opt.step += 1
    return True



# ---------------------------------------------------------------------------
# Transcendentals: exp, log, log1p, tanh and the logistic sigmoid, each a
# branch-free C function (selects, not jumps; no table, no libm call) that
# GCC and Clang inline and vectorise inside the loops that call them, in
# every build: the baseline (SSE2), AVX2 and AVX-512 walkers and
# fastnn._ops. Only +, -, *, /, comparisons, selects and integer bit
# operations are used, each rounded once (setup.py turns the compiler's
# fused multiply-add off), so every build gives the same bits for the same
# input; except the array versions of exp, tanh and the sigmoid (the
# activations), which fuse their multiply-adds explicitly in the builds
# whose register tiles fuse (the AVX2 and AVX-512 walkers, FASTNN_TILE_FMA):
# the same bits as each other, within the same bounds, and the stages of
# all of them live in fastnn/_math_stages.h.
#
# exp: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 in two parts, the
# first with trailing zeros so that n * LN2_HI is exact), e^r by a polynomial
# (in double of degree 12, a minimax fit from tools/expm1_coefficients.py; in
# float Taylor's of degree 7: truncation under 0.05 ulp),
# then times 2^n as two powers of two built from their exponent bits (so
# that a subnormal result is rounded once). Arguments beyond the overflow
# and underflow thresholds are clamped to just past them: the result is
# then inf or 0 by the arithmetic itself; NaN passes every clamp and
# propagates.
# tanh(x) = sign(x) t / (t + 2) with t = expm1(2|x|) (the same reduction;
# expm1(r) = r + r^2 q(r), so tiny x keep their relative precision and
# tanh(+-0) is +-0); |x| is clamped where tanh rounds to 1.
# sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|):
# one exp, never overflowing.
# log: x = 2^k m with m in [sqrt(2)/2, sqrt(2)) (subnormals scaled up
# first), log(m) = 2 atanh(f / (2 + f)) with f = m - 1, by fdlibm's
# polynomial in s^2; 0 gives -inf, negatives NaN, inf inf.
# log1p(x) = log(u) + (x - (u - 1)) / u with u = 1 + x rounded.
# The error bounds in ulp, over the whole range, are in
# tests/test_transcendentals.py.
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    /* Always inlined: a loop vectorises only around inlined calls, and GCC's
       inliner, left to itself, keeps some of these out of line in a large module. */
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTNN_MATH static inline __attribute__((always_inline))
    #elif defined(_MSC_VER)
    #define FASTNN_MATH static __forceinline
    #else
    #define FASTNN_MATH static inline
    #endif

    FASTNN_MATH double fastnn_as_d(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
    FASTNN_MATH uint64_t fastnn_bits_d(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
    FASTNN_MATH float fastnn_as_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
    FASTNN_MATH uint32_t fastnn_bits_f(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

    /* m ? a : b for a mask m of all ones or all zeros, as bit operations;
       FASTNN_MASK_D/F(c) makes the mask of a comparison (in the width of the
       values: an int would not vectorise next to doubles in SSE2). GCC keeps
       a conditional expression whose arm could trap (an overflowing product
       moved into it) as a branch, and a loop with a branch vectorises only
       with AVX-512's masks. */
    #define FASTNN_MASK_D(c) ((uint64_t)(-(int64_t)(c)))
    #define FASTNN_MASK_F(c) ((uint32_t)(-(int32_t)(c)))
    FASTNN_MATH double fastnn_sel_d(uint64_t m, double a, double b) {
        return fastnn_as_d((fastnn_bits_d(a) & m) | (fastnn_bits_d(b) & ~m));
    }
    FASTNN_MATH float fastnn_sel_f(uint32_t m, float a, float b) {
        return fastnn_as_f((fastnn_bits_f(a) & m) | (fastnn_bits_f(b) & ~m));
    }

    /* 2^k for an integral k in [-1022, 1023] (double) or [-126, 127] (float):
       k + 1.5 * 2^52 + 1023 holds k + 1023 in its low bits. */
    FASTNN_MATH double fastnn_pow2_d(double k) {
        return fastnn_as_d(fastnn_bits_d(k + (0x1.8p52 + 1023.0)) << 52);
    }
    FASTNN_MATH float fastnn_pow2_f(float k) {
        return fastnn_as_f(fastnn_bits_f(k + (0x1.8p23f + 127.0f)) << 23);
    }
    /* x rounded to an integer (ties to even), for |x| < 2^51 (2^22). */
    FASTNN_MATH double fastnn_rint_d(double x) { return (x + 0x1.8p52) - 0x1.8p52; }
    FASTNN_MATH float fastnn_rint_f(float x) { return (x + 0x1.8p23f) - 0x1.8p23f; }

    #define FASTNN_LN2_HI_D 0x1.62e42fee00000p-1
    #define FASTNN_LN2_LO_D 0x1.a39ef35793c76p-33
    #define FASTNN_LOG2E_D 0x1.71547652b82fep+0
    #define FASTNN_LN2_HI_F 0x1.62e4p-1f
    #define FASTNN_LN2_LO_F 0x1.7f7d1cp-20f
    #define FASTNN_LOG2E_F 0x1.715476p+0f
    /* e^r - 1 - r - r^2/2 = c1 r^3 + ... + c10 r^12 on |r| <= ln2/2: the minimax fit
       of tools/expm1_coefficients.py (the hex values it prints; _math_stages.h). */
    #define FASTNN_EXPM1_C1_D 0x1.555555555555bp-3
    #define FASTNN_EXPM1_C2_D 0x1.555555555555ap-5
    #define FASTNN_EXPM1_C3_D 0x1.111111110ebecp-7
    #define FASTNN_EXPM1_C4_D 0x1.6c16c16c14487p-10
    #define FASTNN_EXPM1_C5_D 0x1.a01a01b3a8784p-13
    #define FASTNN_EXPM1_C6_D 0x1.a01a01b10cd9ap-16
    #define FASTNN_EXPM1_C7_D 0x1.71ddefbc85683p-19
    #define FASTNN_EXPM1_C8_D 0x1.27e4c4a4a0d19p-22
    #define FASTNN_EXPM1_C9_D 0x1.af6c8d3625936p-26
    #define FASTNN_EXPM1_C10_D 0x1.1f970036f47e9p-29

    /* exp, tanh and the sigmoid by stages (fastnn/_math_stages.h), in two flavours:
       plain (a multiply and an add, each rounded; every build) for the scalar
       functions, and _fused for the array versions, which fuse each multiply-add
       where the build fuses its register tiles (the AVX2 and AVX-512 walker builds
       with FASTNN_TILE_FMA=1: fewer instructions and a shorter chain, and within the
       same ulp bounds; tests/test_transcendentals.py). */
    #define FASTNN_MATH_SFX
    #define FASTNN_MA_D(a, b, c) ((a) * (b) + (c))
    #define FASTNN_MA_F(a, b, c) ((a) * (b) + (c))
    #include "_math_stages.h"
    #undef FASTNN_MATH_SFX
    #undef FASTNN_MA_D
    #undef FASTNN_MA_F
    #define FASTNN_MATH_SFX _fused
    #if defined(FASTNN_TILE_FMA) && FASTNN_TILE_FMA && defined(__FMA__)
    #define FASTNN_MATH_FUSED 1
    #define FASTNN_MA_D(a, b, c) fma((a), (b), (c))
    #define FASTNN_MA_F(a, b, c) fmaf((a), (b), (c))
    #else
    #define FASTNN_MATH_FUSED 0
    #define FASTNN_MA_D(a, b, c) ((a) * (b) + (c))
    #define FASTNN_MA_F(a, b, c) ((a) * (b) + (c))
    #endif
    #include "_math_stages.h"
    #undef FASTNN_MATH_SFX
    #undef FASTNN_MA_D
    #undef FASTNN_MA_F

    FASTNN_MATH double fastnn_tanh_finish_d(double t, double x) { return copysign(t / (t + 2.0), x); }
    FASTNN_MATH float fastnn_tanh_finish_f(float t, float x) { return copysignf(t / (t + 2.0f), x); }
    /* sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|):
       one exp, never overflowing. */
    FASTNN_MATH double fastnn_sigmoid_finish_d(double e, double x) {
        return fastnn_sel_d(FASTNN_MASK_D(x >= 0.0), 1.0, e) / (1.0 + e);
    }
    FASTNN_MATH float fastnn_sigmoid_finish_f(float e, float x) {
        return fastnn_sel_f(FASTNN_MASK_F(x >= 0.0f), 1.0f, e) / (1.0f + e);
    }
    FASTNN_MATH double fastnn_exp_keep_d(double e, double x) { (void)x; return e; }
    FASTNN_MATH float fastnn_exp_keep_f(float e, float x) { (void)x; return e; }

    /* The scalar functions (the losses, the softmax), the stages one after another. */
    FASTNN_MATH double fastnn_exp_d(double x) {
        double n;
        double r = fastnn_exp_reduce_d(x, &n);
        return fastnn_exp_finish_d(r, n);
    }
    FASTNN_MATH float fastnn_exp_f(float x) {
        float n;
        float r = fastnn_exp_reduce_f(x, &n);
        return fastnn_exp_finish_f(r, n);
    }
    FASTNN_MATH double fastnn_tanh_d(double x) {
        double p;
        double r = fastnn_tanh_reduce_d(x, &p);
        return fastnn_tanh_finish_d(fastnn_tanh_t_d(r, p), x);
    }
    FASTNN_MATH float fastnn_tanh_f(float x) {
        float p;
        float r = fastnn_tanh_reduce_f(x, &p);
        return fastnn_tanh_finish_f(fastnn_tanh_t_f(r, p), x);
    }
    FASTNN_MATH double fastnn_sigmoid_d(double x) {
        return fastnn_sigmoid_finish_d(fastnn_exp_d(-fabs(x)), x);
    }
    FASTNN_MATH float fastnn_sigmoid_f(float x) {
        return fastnn_sigmoid_finish_f(fastnn_exp_f(-fabsf(x)), x);
    }

    /* The array versions: out[i] = f(x[i]) for i < size (out may be x), the stages
       (the _fused flavour) as loops over blocks of FASTNN_MATH_BLOCK elements, their
       intermediate values held on the stack. The last stage of one block shares a
       loop with the first stage of the next: the quotient's divider then works beside
       the reduction's adds and multiplies (5-8% faster for tanh in a C loop). That
       loop writes the finished block straight into out, and keeps a copy of the next
       block's x on the stack for that block's finish (the sign): out's block and x's
       are disjoint even when out is x, so the loop vectorises behind one overlap
       check. (The block was finished on the stack and copied out by a `rep movsq`
       that took 13% of tanh's time.) Blocks of 128 rather than 256: the same speed
       alone, and 6 KiB rather than 12 on the stack beside a training step's tiles
       (the Tanh and Sigmoid steps measured 1-3% faster). Measured slower (Zen 3, a C
       harness): the polynomial and the quotient in one loop, the reduction alone
       (1.25x: its chain is too long for the core to overlap); the reduction and the
       polynomial in one loop; three loops; a skewed pipeline; Horner's rule for the
       polynomial (two multiplies fewer, the same time). Where the build does not
       fuse, the same operations as the scalar functions: the same bits. */
    #define FASTNN_MATH_BLOCK 128
    #define FASTNN_STAGED_ARRAY(NAME, T, REDUCE, MIDDLE, FINISH)                         \
    static void NAME(const T* x, T* out, Py_ssize_t size) {                              \
        T u[FASTNN_MATH_BLOCK], v[FASTNN_MATH_BLOCK];                                    \
        T mid[2][FASTNN_MATH_BLOCK], xk[2][FASTNN_MATH_BLOCK];                           \
        Py_ssize_t s = 0, prev_s = 0, prev_m = 0, i;                                     \
        int cur = 0;                                                                     \
        for (;;) {                                                                       \
            Py_ssize_t m = size - s < FASTNN_MATH_BLOCK ? size - s : FASTNN_MATH_BLOCK;  \
            const T* xs = x + s;                                                         \
            const T* xp = xk[cur ^ 1];                                                   \
            const T* tp = mid[cur ^ 1];                                                  \
            T* xc = xk[cur];                                                             \
            T* tc = mid[cur];                                                            \
            T* op = out + prev_s;                                                        \
            Py_ssize_t both = m < prev_m ? m : prev_m;                                   \
            for (i = 0; i < both; i++) {                                                 \
                op[i] = FINISH(tp[i], xp[i]);                                            \
                xc[i] = xs[i];                                                           \
                u[i] = REDUCE(xs[i], &v[i]);                                             \
            }                                                                            \
            for (i = both; i < prev_m; i++) op[i] = FINISH(tp[i], xp[i]);               \
            for (i = both; i < m; i++) {                                                 \
                xc[i] = xs[i];                                                           \
                u[i] = REDUCE(xs[i], &v[i]);                                             \
            }                                                                            \
            if (m <= 0) break;                                                           \
            for (i = 0; i < m; i++) tc[i] = MIDDLE(u[i], v[i]);                          \
            prev_s = s;                                                                  \
            prev_m = m;                                                                  \
            s += m;                                                                      \
            cur ^= 1;                                                                    \
        }                                                                                \
    }
    FASTNN_STAGED_ARRAY(fastnn_exp_array_d, double, fastnn_exp_reduce_d_fused, fastnn_exp_finish_d_fused, fastnn_exp_keep_d)
    FASTNN_STAGED_ARRAY(fastnn_exp_array_f, float, fastnn_exp_reduce_f_fused, fastnn_exp_finish_f_fused, fastnn_exp_keep_f)
    FASTNN_STAGED_ARRAY(fastnn_tanh_array_d, double, fastnn_tanh_reduce_d_fused, fastnn_tanh_t_d_fused, fastnn_tanh_finish_d)
    FASTNN_STAGED_ARRAY(fastnn_tanh_array_f, float, fastnn_tanh_reduce_f_fused, fastnn_tanh_t_f_fused, fastnn_tanh_finish_f)
    FASTNN_STAGED_ARRAY(fastnn_sigmoid_array_d, double, fastnn_nabs_reduce_d_fused, fastnn_exp_finish_d_fused, fastnn_sigmoid_finish_d)
    FASTNN_STAGED_ARRAY(fastnn_sigmoid_array_f, float, fastnn_nabs_reduce_f_fused, fastnn_exp_finish_f_fused, fastnn_sigmoid_finish_f)
    static int fastnn_math_fused(void) { return FASTNN_MATH_FUSED; }

    /* fdlibm's log: x = 2^k (1 + f), 1 + f in [sqrt(2)/2, sqrt(2)). */
    FASTNN_MATH double fastnn_log_d(double x) {
        uint64_t tiny = FASTNN_MASK_D(x < 0x1p-1022);
        double xs = fastnn_sel_d(tiny, x * 0x1p54, x);
        uint64_t u = fastnn_bits_d(xs) + (0x3ff0000000000000ULL - 0x3fe6a09e00000000ULL);
        /* the biased exponent (< 2^12) as a double, from its bits */
        double e = fastnn_as_d((u >> 52) | 0x4330000000000000ULL) - 0x1p52;
        /* e * 0.0 (e is finite): a select between two constants does not vectorise in SSE2 */
        double k = (e - 1023.0) - fastnn_sel_d(tiny, 54.0, e * 0.0);
        double f = fastnn_as_d((u & 0x000fffffffffffffULL) + 0x3fe6a09e00000000ULL) - 1.0;
        double hfsq = 0.5 * f * f;
        double s = f / (2.0 + f);
        double z = s * s;
        double w = z * z;
        double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
        double t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                         + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
        double R = t2 + t1;
        double y = s * (hfsq + R) + k * 1.90821492927058770002e-10 - hfsq + f + k * 6.93147180369123816490e-01;
        y = fastnn_sel_d(FASTNN_MASK_D(x > 0.0), y, (x - x) * INFINITY);    /* NaN */
        y = fastnn_sel_d(FASTNN_MASK_D(x == 0.0), -INFINITY, y);
        return fastnn_sel_d(FASTNN_MASK_D(x < INFINITY), y, x);                 /* inf gives inf; NaN (x < inf false) NaN */
    }
    FASTNN_MATH float fastnn_log_f(float x) {
        uint32_t tiny = FASTNN_MASK_F(x < 0x1p-126f);
        float xs = fastnn_sel_f(tiny, x * 0x1p25f, x);
        uint32_t u = fastnn_bits_f(xs) + (0x3f800000U - 0x3f3504f3U);
        float e = (float)(int32_t)(u >> 23);
        float k = (e - 127.0f) - fastnn_sel_f(tiny, 25.0f, e * 0.0f);
        float f = fastnn_as_f((u & 0x007fffffU) + 0x3f3504f3U) - 1.0f;
        float s = f / (2.0f + f);
        float z = s * s;
        float w = z * z;
        float t1 = w * (0xccce13.0p-25f + w * 0xf89e26.0p-26f);
        float t2 = z * (0xaaaaaa.0p-24f + w * 0x91e9ee.0p-25f);
        float R = t2 + t1;
        float hfsq = 0.5f * f * f;
        float y = s * (hfsq + R) + k * 9.0580006145e-06f - hfsq + f + k * 6.9313812256e-01f;
        y = fastnn_sel_f(FASTNN_MASK_F(x > 0.0f), y, (x - x) * INFINITY);
        y = fastnn_sel_f(FASTNN_MASK_F(x == 0.0f), -INFINITY, y);
        return fastnn_sel_f(FASTNN_MASK_F(x < INFINITY), y, x);
    }

    /* log1p(x) = log(u) + c, u = 1 + x rounded, c = (x - (u - 1)) / u its correction
       (over x rather than u = 0, where x = -1 and the numerator is 0); x itself
       where u is 1 (|x| < 2^-53 or 2^-24: x - x^2/2 rounds to x; this keeps
       -0.0); inf for inf; NaN below -1 and for NaN. */
    FASTNN_MATH double fastnn_log1p_d(double x) {
        double u = 1.0 + x;
        double c = (x - (u - 1.0)) / fastnn_sel_d(FASTNN_MASK_D(u != 0.0), u, x);
        double y = fastnn_sel_d(FASTNN_MASK_D(u == 1.0), x, fastnn_log_d(u) + c);
        y = fastnn_sel_d(FASTNN_MASK_D(x < INFINITY), y, x);
        return fastnn_sel_d(FASTNN_MASK_D(x >= -1.0), y, (x - x) * INFINITY);
    }
    FASTNN_MATH float fastnn_log1p_f(float x) {
        float u = 1.0f + x;
        float c = (x - (u - 1.0f)) / fastnn_sel_f(FASTNN_MASK_F(u != 0.0f), u, x);
        float y = fastnn_sel_f(FASTNN_MASK_F(u == 1.0f), x, fastnn_log_f(u) + c);
        y = fastnn_sel_f(FASTNN_MASK_F(x < INFINITY), y, x);
        return fastnn_sel_f(FASTNN_MASK_F(x >= -1.0f), y, (x - x) * INFINITY);
    }

    /* a < b ? x : y as a select of bits (a mask from the comparison): a branch of
       C's ?: or Cython's conditional expression whose comparison is not folded
       into abs/max is not if-converted by GCC under -ftrapping-math, and does
       not vectorise; the same value, bit for bit. */
    FASTNN_MATH double fastnn_if_lt_d(double a, double b, double x, double y) {
        return fastnn_sel_d(FASTNN_MASK_D(a < b), x, y);
    }
    FASTNN_MATH float fastnn_if_lt_f(float a, float b, float x, float y) {
        return fastnn_sel_f(FASTNN_MASK_F(a < b), x, y);
    }
    """
    double fastnn_exp_d(double) noexcept nogil
    float fastnn_exp_f(float) noexcept nogil
    double fastnn_tanh_d(double) noexcept nogil
    float fastnn_tanh_f(float) noexcept nogil
    double fastnn_sigmoid_d(double) noexcept nogil
    float fastnn_sigmoid_f(float) noexcept nogil
    double fastnn_log_d(double) noexcept nogil
    float fastnn_log_f(float) noexcept nogil
    double fastnn_log1p_d(double) noexcept nogil
    float fastnn_log1p_f(float) noexcept nogil
    double fastnn_if_lt_d(double, double, double, double) noexcept nogil
    float fastnn_if_lt_f(float, float, float, float) noexcept nogil
    void fastnn_exp_array_d(const double*, double*, Py_ssize_t) noexcept nogil
    void fastnn_exp_array_f(const float*, float*, Py_ssize_t) noexcept nogil
    void fastnn_tanh_array_d(const double*, double*, Py_ssize_t) noexcept nogil
    void fastnn_tanh_array_f(const float*, float*, Py_ssize_t) noexcept nogil
    void fastnn_sigmoid_array_d(const double*, double*, Py_ssize_t) noexcept nogil
    void fastnn_sigmoid_array_f(const float*, float*, Py_ssize_t) noexcept nogil
    int fastnn_math_fused() noexcept nogil
    uint64_t fastnn_bits_d(double) noexcept nogil
    uint32_t fastnn_bits_f(float) noexcept nogil


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return fastnn_exp_f(x)
    else:
        return fastnn_exp_d(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return fastnn_tanh_f(x)
    else:
        return fastnn_tanh_d(x)


cdef inline floating _sigmoid(floating x) noexcept nogil:
    if floating is float:
        return fastnn_sigmoid_f(x)
    else:
        return fastnn_sigmoid_d(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return fastnn_log_f(x)
    else:
        return fastnn_log_d(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return fastnn_log1p_f(x)
    else:
        return fastnn_log1p_d(x)


cdef inline floating _if_lt(floating a, floating b, floating x, floating y) noexcept nogil:
    """``x if a < b else y``, as a select that vectorises (fastnn_if_lt_*)."""
    if floating is float:
        return fastnn_if_lt_f(a, b, x, y)
    else:
        return fastnn_if_lt_d(a, b, x, y)


cdef inline void _tanh_array(const floating* x, floating* out, Py_ssize_t size) noexcept nogil:
    """out[i] = _tanh(x[i]) for i < size in staged loops (out may be x): the same bits
    where the build does not fuse multiply-adds (MATH_FUSED), within the ulp bounds where it does."""
    if floating is float:
        fastnn_tanh_array_f(x, out, size)
    else:
        fastnn_tanh_array_d(x, out, size)


cdef inline void _sigmoid_array(const floating* x, floating* out, Py_ssize_t size) noexcept nogil:
    """out[i] = _sigmoid(x[i]) for i < size in staged loops (out may be x): the same bits
    where the build does not fuse multiply-adds (MATH_FUSED), within the ulp bounds where it does."""
    if floating is float:
        fastnn_sigmoid_array_f(x, out, size)
    else:
        fastnn_sigmoid_array_d(x, out, size)


cdef inline void _exp_array(const floating* x, floating* out, Py_ssize_t size) noexcept nogil:
    """out[i] = _exp(x[i]) for i < size in staged loops (out may be x): the same bits
    where the build does not fuse multiply-adds (MATH_FUSED), within the ulp bounds where it does."""
    if floating is float:
        fastnn_exp_array_f(x, out, size)
    else:
        fastnn_exp_array_d(x, out, size)


cdef enum:
    MATH_EXP = 0
    MATH_LOG = 1
    MATH_LOG1P = 2
    MATH_TANH = 3
    MATH_SIGMOID = 4


cdef void math_kernel(int fn, const floating* x, floating* out, Py_ssize_t size) noexcept nogil:
    """out = f(x) elementwise for the function code ``fn`` (MATH_*); out may be x."""
    cdef Py_ssize_t i
    if fn == MATH_EXP:
        _exp_array(x, out, size)
    elif fn == MATH_LOG:
        for i in range(size):
            out[i] = _log(x[i])
    elif fn == MATH_LOG1P:
        for i in range(size):
            out[i] = _log1p(x[i])
    elif fn == MATH_TANH:
        _tanh_array(x, out, size)
    else:
        _sigmoid_array(x, out, size)


cdef void math_scalar_kernel(int fn, const floating* x, floating* out, Py_ssize_t size) noexcept nogil:
    """math_kernel with one call of the scalar function per element (as the losses
    call exp and the sigmoid), for the test that it gives the staged loops' bits."""
    cdef Py_ssize_t i
    for i in range(size):
        if fn == MATH_EXP:
            out[i] = _exp(x[i])
        elif fn == MATH_LOG:
            out[i] = _log(x[i])
        elif fn == MATH_LOG1P:
            out[i] = _log1p(x[i])
        elif fn == MATH_TANH:
            out[i] = _tanh(x[i])
        else:
            out[i] = _sigmoid(x[i])


#: Whether this module's array exp, tanh and sigmoid fuse their multiply-adds.
MATH_FUSED = bool(fastnn_math_fused())


def _math(int fn, const floating[::1] x, floating[::1] out, bint scalar=False):
    """Write f(x) into ``out`` (flat views of one size) for the code ``fn``: 0 exp,
    1 log, 2 log1p, 3 tanh, 4 sigmoid; by the staged array loops, or with
    ``scalar=True`` by one scalar call per element. Each compiled module has its own
    copy (the one Python-facing function of this file), so that the tests hold every
    build's transcendentals to the same bounds and the same bits."""
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"out vs x: sizes {out.shape[0]} and {x.shape[0]} differ")
    if not 0 <= fn <= MATH_SIGMOID:
        raise ValueError(f"unknown function code {fn}")
    if x.shape[0] == 0:
        return
    with nogil:
        if scalar:
            math_scalar_kernel(fn, &x[0], &out[0], x.shape[0])
        else:
            math_kernel(fn, &x[0], &out[0], x.shape[0])


# ---------------------------------------------------------------------------
# Activations, by code: each backward pass needs only the activation's
# OUTPUT A (so a network stores one array per layer): ReLU' = A > 0,
# LeakyReLU' = 1 if A > 0 else slope (slope >= 0), tanh' = 1 - A^2,
# sigmoid' = A (1 - A).
# ---------------------------------------------------------------------------

cdef enum:
    FN_IDENTITY = 0
    FN_RELU = 1
    FN_LEAKY_RELU = 2
    FN_TANH = 3
    FN_SIGMOID = 4


cdef void act_forward_kernel(
    int fn, double param, const floating* Z, floating* A, Py_ssize_t size,
) noexcept nogil:
    """A = f(Z) elementwise for the activation ``fn`` (``param``: LeakyReLU's slope).

    A may be Z itself. tanh and the sigmoid are the vectorised ``_tanh`` and
    ``_sigmoid`` above (the sigmoid's exp never overflows).
    """
    cdef Py_ssize_t i
    cdef floating z, zero = 0, slope = <floating>param
    if fn == FN_RELU:
        relu_forward_kernel(Z, A, size)
    elif fn == FN_LEAKY_RELU:
        for i in range(size):
            z = Z[i]
            A[i] = z if z > zero else z * slope
    elif fn == FN_TANH:
        _tanh_array(Z, A, size)
    elif fn == FN_SIGMOID:
        _sigmoid_array(Z, A, size)
    elif A != Z:
        memcpy(A, Z, size * sizeof(floating))


cdef void act_backward_kernel(
    int fn, double param, const floating* A, const floating* dA, floating* dZ, Py_ssize_t size,
) noexcept nogil:
    """dZ = dA * f'(Z), with f' written in terms of the output A = f(Z). dZ may be dA."""
    cdef Py_ssize_t i
    cdef floating a, one = 1, zero = 0, slope = <floating>param
    if fn == FN_RELU:
        relu_backward_kernel(A, dA, dZ, size)
    elif fn == FN_LEAKY_RELU:
        for i in range(size):
            dZ[i] = dA[i] if A[i] > zero else dA[i] * slope
    elif fn == FN_TANH:
        for i in range(size):
            a = A[i]
            dZ[i] = dA[i] * (one - a * a)
    elif fn == FN_SIGMOID:
        for i in range(size):
            a = A[i]
            dZ[i] = dA[i] * (a * (one - a))
    elif dZ != dA:
        memcpy(dZ, dA, size * sizeof(floating))


# ---------------------------------------------------------------------------
# Losses, by code, with optional sample weights: the loss is
# sum_i w_i * l_i / sum_i w_i, where l_i is sample i's loss (the mean of its
# elements' losses, or its cross-entropy); without weights, w_i = 1. The
# gradient is taken with respect to yhat. Strides make one kernel serve
# sample-major arrays (fastnn.ops: element (i, j) at i * C + j) and the
# network's feature-major activations (at j * n + i).
# ---------------------------------------------------------------------------

cdef enum:
    LOSS_MSE = 0
    LOSS_MAE = 1
    LOSS_HUBER = 2
    LOSS_CROSS_ENTROPY = 3
    LOSS_BCE_WITH_LOGITS = 4
    LOSS_POISSON = 5


cdef double _cross_entropy(
    const floating* yhat, const floating* y, const floating* w, floating* grad,
    Py_ssize_t n, Py_ssize_t C, Py_ssize_t s_i, Py_ssize_t s_j, double wsum,
) noexcept nogil:
    """loss_grad_kernel's cross-entropy: the sum over samples of (w_i / wsum) times
    (log-sum-exp of row i - its label's logit), or of the plain terms without
    weights, and the softmax gradient into ``grad`` (not overlapping ``yhat``)
    unless NULL. Blocks of 128 samples, each pass over a block a loop over the
    samples for one class (contiguous in the walker's feature-major layout, so
    it vectorises), each exp computed once and kept in ``grad``: the same
    operations per sample, in the same order, as one sample at a time."""
    cdef floating zmax[128]
    cdef floating scale[128]
    cdef double lse[128]
    cdef Py_ssize_t label[128]
    cdef Py_ssize_t i0 = 0, m, i, j, at
    cdef double total = 0.0, sample, wi = 1.0
    cdef floating z, e, one = 1, zero = 0
    while i0 < n:
        m = n - i0 if n - i0 < 128 else 128
        for i in range(m):
            zmax[i] = yhat[(i0 + i) * s_i]
            lse[i] = 0.0
        for j in range(1, C):
            for i in range(m):
                z = yhat[(i0 + i) * s_i + j * s_j]
                zmax[i] = _if_lt(zmax[i], z, z, zmax[i])           # z > zmax: z (NaN: zmax)
        if grad != NULL:
            for j in range(C):
                for i in range(m):
                    at = (i0 + i) * s_i + j * s_j
                    e = _exp(yhat[at] - zmax[i])
                    lse[i] += e
                    grad[at] = e                                    # kept for the softmax
        else:
            for j in range(C):
                for i in range(m):
                    lse[i] += _exp(yhat[(i0 + i) * s_i + j * s_j] - zmax[i])
        for i in range(m):
            if w != NULL:
                wi = w[i0 + i]
            label[i] = <Py_ssize_t>y[i0 + i]
            scale[i] = <floating>(wi / wsum)
            sample = zmax[i] + fastnn_log_d(lse[i]) - yhat[(i0 + i) * s_i + label[i] * s_j]   # log-sum-exp - z[label]
            total += (wi / wsum) * sample if w != NULL else sample
        if grad != NULL:
            for j in range(C):
                for i in range(m):
                    at = (i0 + i) * s_i + j * s_j
                    e = <floating>(grad[at] / lse[i])              # softmax
                    grad[at] = scale[i] * (e - (one if j == label[i] else zero))
        i0 += m
    return total


cdef double loss_grad_kernel(
    int kind, double param, const floating* yhat, const floating* y, const floating* w,
    floating* grad, Py_ssize_t n, Py_ssize_t C, Py_ssize_t s_i, Py_ssize_t s_j,
    double* weight_sum,
) noexcept nogil:
    """The loss of n samples of C outputs (element (i, j) at i * s_i + j * s_j),
    and its gradient into ``grad`` (same layout) unless NULL.

    ``y`` has yhat's layout, except for cross-entropy, where it holds n class
    labels (as numbers, checked integral and in range by the caller). ``w``
    holds n non-negative weights, or is NULL. ``weight_sum`` receives
    sum(w) (n without weights). With a zero weight sum the loss and the
    gradient are zero. ``param`` is Huber's delta. Poisson takes ``yhat`` as
    the log of the mean (log link) and ``y >= 0`` (checked by the caller).
    """
    cdef Py_ssize_t i, j, at
    cdef double total = 0.0, wsum = 0.0, sample
    cdef floating d, a, e, z, scale, wi = 1, one = 1, zero = 0, two = 2, half = 0.5
    cdef floating delta = <floating>param
    if w != NULL:
        for i in range(n):
            wsum += w[i]
    else:
        wsum = n
    weight_sum[0] = wsum
    if wsum == 0:
        if grad != NULL:
            for i in range(n):
                for j in range(C):
                    grad[i * s_i + j * s_j] = 0
        return 0.0
    if kind == LOSS_CROSS_ENTROPY:
        total = _cross_entropy(yhat, y, w, grad, n, C, s_i, s_j, wsum)
        return total if w != NULL else total / wsum
    # Each sample's gradient scale w_i / (C * sum(w)) is formed in double as one
    # ratio: 1 / sum(w) alone overflows when the weights are subnormal.
    scale = <floating>(1.0 / (C * wsum)) if w == NULL else zero    # weighted: set per sample
    for i in range(n):
        if w != NULL:
            wi = w[i]
            scale = <floating>(<double>wi / (C * wsum))
        sample = 0.0
        for j in range(C):
            at = i * s_i + j * s_j
            d = yhat[at] - y[at]
            if kind == LOSS_MSE:
                sample += <double>d * <double>d
                if grad != NULL:
                    grad[at] = (two * scale) * d
            elif kind == LOSS_MAE:
                a = d if d >= zero else -d
                sample += a
                if grad != NULL:
                    grad[at] = scale * (one if d > zero else (-one if d < zero else zero))
            elif kind == LOSS_HUBER:
                a = d if d >= zero else -d
                sample += half * d * d if a < delta else delta * (a - half * delta)
                if grad != NULL:
                    grad[at] = scale * (d if a < delta else (delta if d > zero else -delta))
            elif kind == LOSS_POISSON:
                # Half the Poisson deviance at the mean exp(z), as scikit-learn's
                # poisson_loss: xlogy(y, y / exp(z)) - y + exp(z)
                # = exp(z) - y z + (y log y - y), the last term 0 at y = 0.
                z = yhat[at]
                e = _exp(z)
                a = y[at]
                sample += e - a * z + (a * _log(a) - a if a > zero else zero)
                if grad != NULL:
                    grad[at] = scale * (e - a)
            else:   # BCE with logits: max(z, 0) - z * y + log(1 + exp(-|z|))
                z = yhat[at]
                a = z if z >= zero else -z
                sample += (z if z > zero else zero) - z * y[at] + _log1p(_exp(-a))
                if grad != NULL:
                    grad[at] = scale * (_sigmoid(z) - y[at])
        # Weighted: each sample's share w_i / sum(w) first, a ratio of normal
        # size even when the weights are subnormal (w_i * sample would round).
        total += (wi / wsum) * sample if w != NULL else sample
    return total / C if w != NULL else total / (C * wsum)



cdef inline floating _elementwise_loss(int kind, floating d, floating z, floating b, floating delta) noexcept nogil:
    """Element (z, b)'s loss ``kind`` (not cross-entropy), d = z - b: the very
    expression loss_grad_kernel adds to its sum, in the buffers' type. Both
    sides of a choice are computed first and the choice is a select of two
    values, taken by _if_lt's select of bits: GCC does not if-convert the
    branch of a conditional expression under the default -ftrapping-math
    (unless it folds into abs, as |d| does), and a branch does not vectorise."""
    cdef floating a, e, q, r, zero = 0, half = 0.5
    if kind == LOSS_MSE:
        return d * d       # unused: mse keeps its product in double (loss_value_kernel)
    elif kind == LOSS_MAE:
        return d if d >= zero else -d
    elif kind == LOSS_HUBER:
        a = d if d >= zero else -d
        q = half * d * d
        r = delta * (a - half * delta)
        return _if_lt(a, delta, q, r)
    elif kind == LOSS_POISSON:
        e = _exp(z)
        r = b * _log(b) - b             # NaN at b = 0 (0 * -inf), where the select drops it
        return e - b * z + _if_lt(zero, b, r, zero)
    else:   # LOSS_BCE_WITH_LOGITS
        a = z if z >= zero else -z
        return (z if z > zero else zero) - z * b + _log1p(_exp(-a))


cdef double loss_value_kernel(int kind, double param, const floating* yhat, const floating* y,
                              Py_ssize_t size) noexcept nogil:
    """The unweighted elementwise loss ``kind`` (not cross-entropy) of ``size``
    contiguous elements: the loss alone (no gradient), for fastnn.ops.

    Each element's loss is loss_grad_kernel's expression, bit for bit (in the
    buffers' type; MSE's square in double); only the order of the double sum
    differs. loss_grad_kernel sums one chain per row with the loss kind chosen
    per element, which neither vectorises nor overlaps its additions. Here the
    kind is chosen once and element i goes to lane i % 8 of eight independent
    double partial sums (vectorised: two AVX2 registers of four), folded at the
    end in a fixed order ((0+4)+(1+5))+((2+6)+(3+7)): the same bits in every
    build and for every alignment, but not those of loss_grad_kernel.

    Error bound: every lane is a recursive double sum of at most
    ceil(size / 8) terms, and the fold adds three levels, so the computed sum
    S' of the exact per-element values t_i satisfies
    |S' - S| <= (ceil(size / 8) + 3) * 2^-53 * sum |t_i| (to first order).
    All five losses have t_i >= 0 for valid input (Poisson with y >= 0, BCE
    with y in [0, 1]), so that is a relative bound on the loss: about 1.8e-12
    at 256 x 512 elements, far inside float32's rounding of the per-element
    values and inside the float64 tests' tolerance. loss_grad_kernel's
    row-by-row order has the bound (C + n) * 2^-53 * sum |t_i|; the two sums
    differ by at most the sum of both. A non-finite value stays non-finite in
    any order (NaN, inf + finite, inf - inf), so loss_plain's finiteness rule
    holds as before."""
    cdef double acc[8]
    cdef Py_ssize_t i, k, m = size - size % 8
    cdef floating d, z, b, delta = <floating>param
    for k in range(8):
        acc[k] = 0.0
    if size == 0:
        return 0.0
    if kind == LOSS_MSE:
        for i in range(0, m, 8):
            for k in range(8):
                d = yhat[i + k] - y[i + k]
                acc[k] += <double>d * <double>d
        for k in range(size - m):
            d = yhat[m + k] - y[m + k]
            acc[k] += <double>d * <double>d
    elif kind == LOSS_MAE:
        for i in range(0, m, 8):
            for k in range(8):
                acc[k] += _elementwise_loss(LOSS_MAE, yhat[i + k] - y[i + k], yhat[i + k], y[i + k], delta)
        for k in range(size - m):
            acc[k] += _elementwise_loss(LOSS_MAE, yhat[m + k] - y[m + k], yhat[m + k], y[m + k], delta)
    elif kind == LOSS_HUBER:
        for i in range(0, m, 8):
            for k in range(8):
                acc[k] += _elementwise_loss(LOSS_HUBER, yhat[i + k] - y[i + k], yhat[i + k], y[i + k], delta)
        for k in range(size - m):
            acc[k] += _elementwise_loss(LOSS_HUBER, yhat[m + k] - y[m + k], yhat[m + k], y[m + k], delta)
    elif kind == LOSS_POISSON:
        for i in range(0, m, 8):
            for k in range(8):
                acc[k] += _elementwise_loss(LOSS_POISSON, yhat[i + k] - y[i + k], yhat[i + k], y[i + k], delta)
        for k in range(size - m):
            acc[k] += _elementwise_loss(LOSS_POISSON, yhat[m + k] - y[m + k], yhat[m + k], y[m + k], delta)
    else:   # LOSS_BCE_WITH_LOGITS
        for i in range(0, m, 8):
            for k in range(8):
                acc[k] += _elementwise_loss(LOSS_BCE_WITH_LOGITS, yhat[i + k] - y[i + k], yhat[i + k], y[i + k],
                                            delta)
        for k in range(size - m):
            acc[k] += _elementwise_loss(LOSS_BCE_WITH_LOGITS, yhat[m + k] - y[m + k], yhat[m + k], y[m + k],
                                        delta)
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) / <double>size

# ---------------------------------------------------------------------------
# fastnn.ops' common case (see fastnn/_ops.pyx): the activations with the
# finiteness of their inputs checked in the same pass. Here, so that every
# build compiles them: fastnn._ops runs the copy of the widest walker build
# the CPU runs (PlainKernels, handed over in a capsule).
# ---------------------------------------------------------------------------

cdef void _act_backward_staged(
    int fn, const floating* Z, const floating* dA, floating* dZ, Py_ssize_t size,
) noexcept nogil:
    """dZ = dA * f'(Z) for tanh (1 - A^2) and the sigmoid (A (1 - A)), A = f(Z)
    computed a block at a time on the stack by the staged loops; dZ may be dA."""
    cdef floating buf[256]
    cdef floating a, one = 1
    cdef Py_ssize_t s, m, i
    s = 0
    while s < size:
        m = size - s if size - s < 256 else 256
        if fn == FN_TANH:
            _tanh_array(Z + s, buf, m)
            for i in range(m):
                a = buf[i]
                dZ[s + i] = dA[s + i] * (one - a * a)
        else:
            _sigmoid_array(Z + s, buf, m)
            for i in range(m):
                a = buf[i]
                dZ[s + i] = dA[s + i] * (a * (one - a))
        s += m


cdef bint act_forward_checked(
    int fn, double param, const floating* Z, floating* A, Py_ssize_t size,
) noexcept nogil:
    """A = f(Z) as act_forward_kernel computes it, and whether every Z is finite,
    in one pass (z * 0 is NaN exactly for a non-finite z; the flags are or-ed
    in an integer of the values' width, which vectorises)."""
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef floating z, chk, zero = 0, slope = <floating>param
    if fn == FN_RELU:
        for i in range(size):
            z = Z[i]
            chk = z * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            A[i] = _relu(z)
    elif fn == FN_LEAKY_RELU:
        for i in range(size):
            z = Z[i]
            chk = z * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            A[i] = z if z > zero else z * slope
    elif fn == FN_TANH or fn == FN_SIGMOID:
        # The check alone, then the staged loops of _tanh_array/_sigmoid_array (a
        # second read of Z, from cache: one loop body holding both was bound by the
        # transcendental's latency). A may not be Z here.
        for i in range(size):
            chk = Z[i] * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
        if (bad32 | bad64) != 0:
            return False
        if fn == FN_TANH:
            _tanh_array(Z, A, size)
        else:
            _sigmoid_array(Z, A, size)
    else:
        for i in range(size):
            z = Z[i]
            chk = z * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            A[i] = z
    return (bad32 | bad64) == 0


cdef bint act_backward_checked(
    int fn, double param, const floating* Z, const floating* dA, floating* dZ, Py_ssize_t size,
) noexcept nogil:
    """dZ = dA * f'(Z) with f' from A = f(Z), as act_forward_kernel then
    act_backward_kernel compute them (ReLU: relu_backward_kernel on Z), and
    whether every Z and dA is finite, in one pass."""
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef floating z, a, d, chk, mask, zero = 0, one = 1, slope = <floating>param
    if fn == FN_RELU:
        for i in range(size):
            z = Z[i]
            d = dA[i]
            chk = z * zero + d * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            mask = z > zero
            dZ[i] = d * mask
    elif fn == FN_LEAKY_RELU:
        for i in range(size):
            z = Z[i]
            d = dA[i]
            chk = z * zero + d * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            a = z if z > zero else z * slope
            dZ[i] = d if a > zero else d * slope
    elif fn == FN_TANH or fn == FN_SIGMOID:
        # The check alone, then A = f(Z) a block at a time by the staged loops (on
        # the stack, so that dZ may be dA), then dZ from A.
        for i in range(size):
            chk = Z[i] * zero + dA[i] * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
        if (bad32 | bad64) != 0:
            return False
        _act_backward_staged(fn, Z, dA, dZ, size)
    else:
        for i in range(size):
            z = Z[i]
            d = dA[i]
            chk = z * zero + d * zero
            if floating is float:
                bad32 |= chk != chk
            else:
                bad64 |= chk != chk
            dZ[i] = d
    return (bad32 | bad64) == 0


cdef enum:
    # Values per block of sgd_update_checked: two blocks of param and of grad (8,000 bytes
    # each in float64) are in the first-level cache while one is updated and the next
    # checked. Not a multiple of 4 KiB (which puts a block and the next in the same sets
    # of that cache), though 1,024 timed the same on Zen 3; so did 500 and 2,000 (250 was
    # slower in float32), within the VM's noise.
    SGD_BLOCK = 1000
    # Old values sgd_update_checked's log holds (the updates it cannot undo by arithmetic;
    # 4 KiB of stack in float64). The large config's float32 gradients need 20 of them in
    # its 784 x 512 matrix with lr = 0.001, 167 with 0.01, 1,049 with 0.1.
    SGD_LOG = 256
    # What _sgd_check found.
    SGD_BAD = 1
    SGD_MOVED = 2


cdef void _sgd_undo(floating* param, const floating* grad, floating step, Py_ssize_t end,
                    const Py_ssize_t* log_at, const floating* log_old, Py_ssize_t n_log) noexcept nogil:
    """Undo sgd_update_checked's updates of param[:end]: add each step back (exact
    where the check found it exact), then restore the logged old values."""
    cdef Py_ssize_t i
    for i in range(end):
        param[i] = param[i] + step * grad[i]
    for i in range(n_log):
        param[log_at[i]] = log_old[i]


cdef inline int _sgd_state(uint64_t bad, uint64_t moved) noexcept nogil:
    """What _sgd_check's flags say: ``bad`` is the OR of the bits of r * 0 (0 or
    -0 when r is finite), ``moved`` the OR of r's bits XOR p's."""
    if (bad & ~(<uint64_t>1 << 63) & ~(<uint64_t>1 << 31)) != 0:
        return SGD_BAD
    return SGD_MOVED if moved != 0 else 0


cdef inline int _sgd_check(const floating* param, const floating* grad, floating step, Py_ssize_t size) noexcept nogil:
    """SGD_BAD if an update undone, ``r = (p - u) + u`` with ``u = step * g``, is
    not finite (a param or grad is not, or a step overflows: the converting
    path then gives NumPy's result), else SGD_MOVED if an r does not have its
    param's bits, else 0."""
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0, moved32 = 0
    cdef uint64_t bad64 = 0, moved64 = 0
    cdef floating pi, u, r, zero = 0
    for i in range(size):
        pi = param[i]
        u = step * grad[i]
        r = (pi - u) + u
        if floating is float:
            bad32 |= fastnn_bits_f(r * zero)
            moved32 |= fastnn_bits_f(r) ^ fastnn_bits_f(pi)
        else:
            bad64 |= fastnn_bits_d(r * zero)
            moved64 |= fastnn_bits_d(r) ^ fastnn_bits_d(pi)
    return _sgd_state(bad32 | bad64, moved32 | moved64)


cdef bint _sgd_log(const floating* param, const floating* grad, floating step, Py_ssize_t start, Py_ssize_t end,
                   Py_ssize_t* log_at, floating* log_old, Py_ssize_t* n_log) noexcept nogil:
    """Log the old values of param[start:end] whose update adding the step back would
    not undo; False (and the log as it was) when they do not all fit."""
    cdef Py_ssize_t i, k = n_log[0]
    cdef floating u
    for i in range(start, end):
        u = step * grad[i]
        if floating is float:
            if fastnn_bits_f((param[i] - u) + u) == fastnn_bits_f(param[i]):
                continue
        else:
            if fastnn_bits_d((param[i] - u) + u) == fastnn_bits_d(param[i]):
                continue
        if k == SGD_LOG:
            return False
        log_at[k] = i
        log_old[k] = param[i]
        k += 1
    n_log[0] = k
    return True


cdef bint sgd_update_checked(floating* param, const floating* grad, double lr, Py_ssize_t size) noexcept nogil:
    """param -= lr * grad as sgd_update_kernel computes it, when every param and
    grad is finite and no step overflows; else False, and param as it was, bit
    for bit (the converting path then refuses the value by name, or gives
    NumPy's inf).

    A failed call must write nothing, and the last value may be the bad one:
    checking everything before the first store costs a second pass over both
    arrays, which, on arrays larger than the second-level cache, costs what
    NumPy's temporary costs. So the arrays go by blocks of SGD_BLOCK values,
    in one loop that updates a block checked before while it checks the next
    (memory is read without a pause), as long as every update so far can be
    undone: the check also computes ``q = p - u`` (``u = step * g``, the
    update's own arithmetic) and whether ``q + u`` gives back p's bits. Where
    it does not (a step across a power of two, or as large as p, or p = -0),
    the old value goes into a log of SGD_LOG entries. A bad value undoes the
    blocks updated before it (each step added back, the log restored) and
    returns False. When the log is full, the rest of the arrays is checked in
    one read-only pass and then updated (the two passes of before), so steps
    that are large against the parameters cost what they did.
    """
    cdef Py_ssize_t start = 0, end, nend, j, n_log = 0, width
    cdef Py_ssize_t log_at[SGD_LOG]
    cdef floating log_old[SGD_LOG]
    cdef floating step = <floating>lr, zero = 0, pi, u, r
    cdef floating* pc
    cdef floating* pn
    cdef const floating* gc
    cdef const floating* gn
    cdef uint32_t bad32, moved32
    cdef uint64_t bad64, moved64
    cdef int state
    # [0, start) is updated; [start, end) is checked (and logged) and not yet updated.
    end = SGD_BLOCK if size > SGD_BLOCK else size
    state = _sgd_check(param, grad, step, end)
    if state == SGD_BAD:
        return False
    if state == SGD_MOVED and not _sgd_log(param, grad, step, 0, end, log_at, log_old, &n_log):
        end = 0                 # nothing goes ahead of the check
    while 0 < end < size:
        nend = end + SGD_BLOCK if size - end > SGD_BLOCK else size
        width = end - start
        if nend - end == width:
            pc, gc, pn, gn = param + start, grad + start, param + end, grad + end
            bad32 = moved32 = 0
            bad64 = moved64 = 0
            for j in range(width):
                pc[j] = pc[j] - step * gc[j]
                pi = pn[j]
                u = step * gn[j]
                r = (pi - u) + u
                if floating is float:
                    bad32 |= fastnn_bits_f(r * zero)
                    moved32 |= fastnn_bits_f(r) ^ fastnn_bits_f(pi)
                else:
                    bad64 |= fastnn_bits_d(r * zero)
                    moved64 |= fastnn_bits_d(r) ^ fastnn_bits_d(pi)
            state = _sgd_state(bad32 | bad64, moved32 | moved64)
        else:                   # the last, shorter block
            state = _sgd_check(param + end, grad + end, step, nend - end)
            sgd_update_kernel(param + start, grad + start, lr, width)
        if state == SGD_BAD:
            _sgd_undo(param, grad, step, end, log_at, log_old, n_log)
            return False
        start = end
        if state == SGD_MOVED and not _sgd_log(param, grad, step, end, nend, log_at, log_old, &n_log):
            break               # [start, nend) is checked, not logged: not updated ahead of the rest
        end = nend
    if end == size:
        sgd_update_kernel(param + start, grad + start, lr, size - start)
        return True
    # The log is full: check everything not yet updated, then update it.
    if _sgd_check(param + start, grad + start, step, size - start) == SGD_BAD:
        _sgd_undo(param, grad, step, start, log_at, log_old, n_log)
        return False
    sgd_update_kernel(param + start, grad + start, lr, size - start)
    return True


cdef enum:
    # Values per block of loss_grad_checked: the block's gradient, 8 or 16 KiB, is still
    # in the first-level cache when its finiteness is read.
    LOSS_BLOCK = 2048


cdef bint loss_grad_checked(int kind, double param, const floating* yhat, const floating* y, floating* grad,
                            Py_ssize_t size) noexcept nogil:
    """The unweighted gradient of the elementwise loss ``kind`` with respect to yhat,
    bit for bit as loss_grad_kernel computes it (scale = 1 / size in the
    buffers' type, the same expression per element), and whether every yhat
    and y is finite (and, for Poisson, every y >= 0).

    The kernel's own pass carries the inputs' finiteness into its output:
    (a - a) + (b - b) is +0 when both are finite and NaN otherwise (Poisson
    makes it NaN for y < 0 too), and g - (+0) is g, bit for bit, signed zeros
    included, while g - NaN is NaN. A read of the output (vectorised:
    all_finite_kernel) then tells, block by block of LOSS_BLOCK values, while
    the block is in the first-level cache: on large arrays the check costs no
    second pass over memory (mse_grad 256x512 on Zen 3, side by side with the
    whole-array read: float32 1.04-1.16x as fast, float64 within noise). A
    non-finite gradient of finite inputs (an overflow) also hands the call
    back (the output, a new array, is dropped), and the converting path
    returns the same values. An integer flag or-ed beside
    float64 values, as the activations' checked loops keep, does not
    vectorise in fastnn._ops' SSE2 build (no packed 64-bit compare).
    fastnn.ops runs the widest walker build's copy (PlainKernels): every
    copy gives the same bits (no multiply-add is fused here, and _exp and
    _sigmoid are the scalar functions, which never fuse)."""
    cdef floating scale = <floating>(1.0 / size)
    cdef Py_ssize_t s = 0, m
    while s < size:
        m = size - s if size - s < LOSS_BLOCK else LOSS_BLOCK
        _loss_grad_block(kind, param, scale, yhat + s, y + s, grad + s, m)
        if not all_finite_kernel(grad + s, m):
            return False
        s += m
    return True


cdef void _loss_grad_block(int kind, double param, floating scale, const floating* yhat, const floating* y,
                           floating* grad, Py_ssize_t size) noexcept nogil:
    """loss_grad_checked's values for ``size`` elements, each gradient less the
    check term of its inputs; scale is 1 / the whole array's size."""
    cdef Py_ssize_t i
    cdef floating a, b, d, m, chk, zero = 0, one = 1, two = 2
    cdef floating nan = <floating>NAN
    cdef floating delta = <floating>param
    if kind == LOSS_MSE:
        for i in range(size):
            a = yhat[i]
            b = y[i]
            chk = (a - a) + (b - b)
            grad[i] = (two * scale) * (a - b) - chk
    elif kind == LOSS_MAE:
        # the sign as a difference of two comparisons (1, -1 or +0, as loss_grad_kernel's
        # chain of selects gives): it vectorises where the chain did not
        for i in range(size):
            a = yhat[i]
            b = y[i]
            chk = (a - a) + (b - b)
            d = a - b
            grad[i] = scale * (<floating>(d > zero) - <floating>(d < zero)) - chk
    elif kind == LOSS_HUBER:
        for i in range(size):
            a = yhat[i]
            b = y[i]
            chk = (a - a) + (b - b)
            d = a - b
            m = d if d >= zero else -d
            grad[i] = scale * (d if m < delta else (delta if d > zero else -delta)) - chk
    elif kind == LOSS_POISSON:
        for i in range(size):
            a = yhat[i]
            b = y[i]
            chk = (a - a) + (b - b)
            chk = nan if b < zero else chk
            grad[i] = scale * (_exp(a) - b) - chk
    else:   # LOSS_BCE_WITH_LOGITS
        for i in range(size):
            a = yhat[i]
            b = y[i]
            chk = (a - a) + (b - b)
            grad[i] = scale * (_sigmoid(a) - b) - chk


cdef struct PlainKernels:
    bint (*forward_f)(int, double, const float*, float*, Py_ssize_t) noexcept nogil
    bint (*forward_d)(int, double, const double*, double*, Py_ssize_t) noexcept nogil
    bint (*backward_f)(int, double, const float*, const float*, float*, Py_ssize_t) noexcept nogil
    bint (*backward_d)(int, double, const double*, const double*, double*, Py_ssize_t) noexcept nogil
    # The optimizer rules (update_kernel) and the checked plain SGD, in this build's instructions.
    bint (*update_f)(Opt*, float*, const float*, float*, float*, Py_ssize_t) noexcept nogil
    bint (*update_d)(Opt*, double*, const double*, double*, double*, Py_ssize_t) noexcept nogil
    bint (*sgd_f)(float*, const float*, double, Py_ssize_t) noexcept nogil
    bint (*sgd_d)(double*, const double*, double, Py_ssize_t) noexcept nogil
    # The elementwise losses' value alone (loss_value_kernel).
    double (*loss_f)(int, double, const float*, const float*, Py_ssize_t) noexcept nogil
    double (*loss_d)(int, double, const double*, const double*, Py_ssize_t) noexcept nogil
    # The elementwise losses' checked gradient (loss_grad_checked).
    bint (*loss_grad_f)(int, double, const float*, const float*, float*, Py_ssize_t) noexcept nogil
    bint (*loss_grad_d)(int, double, const double*, const double*, double*, Py_ssize_t) noexcept nogil
    # The shared loss kernel (the cross-entropy's common case) and the finiteness pass.
    double (*shared_loss_f)(int, double, const float*, const float*, const float*, float*, Py_ssize_t, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    double (*shared_loss_d)(int, double, const double*, const double*, const double*, double*, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, double*) noexcept nogil
    bint (*finite_f)(const float*, Py_ssize_t) noexcept nogil
    bint (*finite_d)(const double*, Py_ssize_t) noexcept nogil


cdef PlainKernels _PLAIN_KERNELS
_PLAIN_KERNELS.forward_f = act_forward_checked[float]
_PLAIN_KERNELS.forward_d = act_forward_checked[double]
_PLAIN_KERNELS.backward_f = act_backward_checked[float]
_PLAIN_KERNELS.backward_d = act_backward_checked[double]
_PLAIN_KERNELS.update_f = update_kernel[float]
_PLAIN_KERNELS.update_d = update_kernel[double]
_PLAIN_KERNELS.sgd_f = sgd_update_checked[float]
_PLAIN_KERNELS.sgd_d = sgd_update_checked[double]
_PLAIN_KERNELS.loss_f = loss_value_kernel[float]
_PLAIN_KERNELS.loss_d = loss_value_kernel[double]
_PLAIN_KERNELS.loss_grad_f = loss_grad_checked[float]
_PLAIN_KERNELS.loss_grad_d = loss_grad_checked[double]
_PLAIN_KERNELS.shared_loss_f = loss_grad_kernel[float]
_PLAIN_KERNELS.shared_loss_d = loss_grad_kernel[double]
_PLAIN_KERNELS.finite_f = all_finite_kernel[float]
_PLAIN_KERNELS.finite_d = all_finite_kernel[double]
_PLAIN_KERNELS_CAPSULE = PyCapsule_New(&_PLAIN_KERNELS, b"fastnn._kernels.PlainKernels", NULL)
