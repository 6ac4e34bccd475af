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

from cython cimport floating
from libc.limits cimport INT_MAX
from libc.math cimport exp, expf, log, log1p, log1pf, pow, sqrt, sqrtf, tanh, tanhf
from libc.stdint cimport int64_t
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

    x * 0 is 0 for every finite x and NaN for NaN and +-inf, and NaN is the
    one value unequal to itself: the count of such elements is an integer
    sum, which the compiler vectorises (a floating-point sum it may not
    reorder).
    """
    cdef Py_ssize_t i, bad = 0
    cdef floating chk, zero = 0
    for i in range(size):
        chk = x[i] * zero
        bad += chk != chk
    return bad == 0


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
    cdef Py_ssize_t i, bad = 0
    cdef floating lr = <floating>opt.lr, wd = <floating>opt.weight_decay
    cdef floating mom = <floating>opt.momentum, pi, gi, m, v, d, denom, chk, zero = 0
    cdef floating one_minus_b1 = <floating>(1.0 - opt.beta1), b2 = <floating>opt.beta2
    cdef floating one_minus_b2 = <floating>(1.0 - opt.beta2), eps = <floating>opt.eps
    cdef floating decay = <floating>(1.0 - opt.lr * opt.weight_decay)
    cdef floating l2 = wd
    cdef double t = <double>(opt.step + 1)
    cdef floating step_size, bc2_sqrt
    if opt.kind == OPT_SGD and opt.momentum == 0:
        # PyTorch adds weight_decay * p only when weight_decay != 0; adding 0 * p changes no value.
        for i in range(n):
            pi = p[i] - lr * (g[i] + wd * p[i])
            chk = pi * zero
            bad += chk != chk
            if store:
                p[i] = pi
    elif opt.kind == OPT_SGD and not opt.nesterov:
        for i in range(n):
            m = mom * buf1[i] + (g[i] + wd * p[i])   # first step: 0 * mom + g == g, as PyTorch's clone
            pi = p[i] - lr * m
            chk = (pi + m) * zero
            bad += chk != chk
            if store:
                buf1[i] = m
                p[i] = pi
    elif opt.kind == OPT_SGD:
        for i in range(n):
            gi = g[i] + wd * p[i]
            m = mom * buf1[i] + gi
            pi = p[i] - lr * (gi + mom * m)           # Nesterov
            chk = (pi + m) * zero
            bad += chk != chk
            if store:
                buf1[i] = m
                p[i] = pi
    else:
        # PyTorch: step_size = lr / (1 - beta1**t); denom = sqrt(v) / sqrt(1 - beta2**t) + eps.
        # AdamW first decays p (decay = 1 - lr * weight_decay); Adam adds the L2 term to g.
        step_size = <floating>(opt.lr / (1.0 - pow(opt.beta1, t)))
        bc2_sqrt = <floating>sqrt(1.0 - pow(opt.beta2, t))
        if opt.kind == OPT_ADAMW:
            l2 = 0
        else:
            decay = 1
        for i in range(n):
            pi = p[i] * decay                          # param.mul_(1 - lr * weight_decay)
            gi = g[i] + l2 * p[i]
            m = buf1[i]
            m = m + one_minus_b1 * (gi - m)            # exp_avg.lerp_(grad, 1 - beta1)
            v = buf2[i] * b2 + one_minus_b2 * (gi * gi)
            denom = _sqrt(v) / bc2_sqrt + eps
            pi = pi - step_size * (m / denom)
            chk = (pi + m + v) * zero
            bad += chk != chk
            if store:
                buf1[i] = m
                buf2[i] = v
                p[i] = pi
    return bad == 0


cdef bint update_kernel(
    Opt* opt, floating* p, const floating* g, floating* buf1, floating* buf2, Py_ssize_t n,
) noexcept nogil:
    """Apply one optimizer step to n parameters, only if every new value is finite.

    A first pass computes the new parameters and state without storing them
    and checks them; the second repeats the same arithmetic and stores it.
    So a step that would overflow changes nothing (and returns False); a
    step that succeeds advances ``opt.step``.
    """
    if not _update_pass(opt, p, g, buf1, buf2, n, False):
        return False
    _update_pass(opt, p, g, buf1, buf2, n, True)
    opt.step += 1
    return True



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


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef void act_forward_kernel(
    int fn, double param, const floating* Z, floating* A, Py_ssize_t size,
) noexcept nogil:
    """A = f(Z) elementwise for the activation ``fn`` (``param``: LeakyReLU's slope).

    A may be Z itself. The sigmoid is 1 / (1 + exp(-z)) for z >= 0 and
    exp(z) / (1 + exp(z)) below, so that exp never overflows: it is exact to
    rounding for any finite z.
    """
    cdef Py_ssize_t i
    cdef floating z, e, zero = 0, one = 1, slope = <floating>param
    if fn == FN_RELU:
        relu_forward_kernel(Z, A, size)
    elif fn == FN_LEAKY_RELU:
        for i in range(size):
            z = Z[i]
            A[i] = z if z > zero else z * slope
    elif fn == FN_TANH:
        for i in range(size):
            A[i] = _tanh(Z[i])
    elif fn == FN_SIGMOID:
        for i in range(size):
            z = Z[i]
            if z >= zero:
                A[i] = one / (one + _exp(-z))
            else:
                e = _exp(z)
                A[i] = e / (one + e)
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


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


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
    gradient are zero. ``param`` is Huber's delta.
    """
    cdef Py_ssize_t i, j, at, label
    cdef double total = 0.0, wsum = 0.0, sample
    cdef floating d, a, e, z, zmax, scale, wi = 1, one = 1, zero = 0, two = 2, half = 0.5
    cdef floating delta = <floating>param
    cdef double lse
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
        for i in range(n):
            if w != NULL:
                wi = w[i]
            label = <Py_ssize_t>y[i]
            zmax = yhat[i * s_i]
            for j in range(1, C):
                z = yhat[i * s_i + j * s_j]
                if z > zmax:
                    zmax = z
            lse = 0.0
            for j in range(C):
                lse += _exp(yhat[i * s_i + j * s_j] - zmax)
            sample = zmax + log(lse) - yhat[i * s_i + label * s_j]   # log-sum-exp - z[label]
            total += (wi / wsum) * sample if w != NULL else sample
            if grad != NULL:
                scale = <floating>(wi / wsum)
                for j in range(C):
                    at = i * s_i + j * s_j
                    e = <floating>(_exp(yhat[at] - zmax) / lse)          # softmax
                    grad[at] = scale * (e - one) if j == label else scale * e
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
            else:   # BCE with logits: max(z, 0) - z * y + log(1 + exp(-|z|))
                z = yhat[at]
                a = z if z >= zero else -z
                sample += (z if z > zero else zero) - z * y[at] + _log1p(_exp(-a))
                if grad != NULL:
                    e = one / (one + _exp(-z)) if z >= zero else _exp(z) / (one + _exp(z))
                    grad[at] = scale * (e - y[at])
        # Weighted: each sample's share w_i / sum(w) first, a ratio of normal
        # size even when the weights are subnormal (w_i * sample would round).
        total += (wi / wsum) * sample if w != NULL else sample
    return total / C if w != NULL else total / (C * wsum)
