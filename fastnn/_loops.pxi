# The pointer-level loops of fastnn, included (not cimported) by each
# compiled module that runs them: fastnn._kernels (behind fastnn.ops) and the
# network walkers fastnn._network_baseline / fastnn._network_avx2.
#
# Why an include and not a .pxd: a cdef function cimported from another
# module is called through a pointer, so it can be neither inlined into the
# walker's loops nor compiled for the walker's instruction set. Each module
# compiles its own copy instead, and the AVX2 build of the walker gets AVX2
# loops throughout (see setup.py and fastnn/_network.py).
#
# Every function here is a typed loop over C-contiguous buffers that the
# caller has allocated and whose sizes the caller has checked: nothing here
# checks a bound, raises, or touches a Python object. Shapes are given in
# the tutorial's notation: X is (n_samples, in_features), W is
# (in_features, out_features), b and db are (out_features,), Y and dY are
# (n_samples, out_features). Inputs are ``const``; outputs are overwritten,
# never accumulated into. The NumPy twin of each is in fastnn/reference.py.

from cython cimport floating
from libc.limits cimport INT_MAX
from libc.math cimport exp, expf, log, log1p, log1pf, logf, pow, sqrt, sqrtf, tanh, tanhf
from libc.stdint cimport int64_t
from libc.string cimport memcpy

# A BLAS gemm found at run time (see fastnn/_blas.py): kind and addresses.
cdef enum:
    BLAS_NONE = 0
    BLAS_CBLAS64 = 1      # CBLAS with 64-bit integers (NumPy's scipy-openblas64)
    BLAS_FORTRAN32 = 2    # Fortran with 32-bit integers (scipy.linalg.cython_blas)

cdef struct Blas:
    int kind
    void* dgemm
    void* sgemm


cdef void dense_forward_kernel(
    const floating* X, const floating* W, const floating* b, floating* Y,
    Py_ssize_t n_samples, Py_ssize_t in_features, Py_ssize_t out_features,
    bint relu,
) noexcept nogil:
    """Y = X @ W + b, then max(Y, 0) when ``relu``.

    Row by row: Y[i, :] starts at b and gains X[i, k] * W[k, :] for each k,
    so the innermost loop runs along contiguous rows of W and Y (and
    vectorises), instead of striding down the columns of W. The bias and the
    ReLU are applied in the same pass over the row, while it is in cache.
    One output (W a column) is a dot product per sample.
    """
    cdef Py_ssize_t i, k, j
    cdef floating x_ik, acc
    cdef floating* y_row
    cdef const floating* x_row
    cdef const floating* w_row
    if out_features == 1:
        for i in range(n_samples):
            x_row = X + i * in_features
            acc = b[0]
            for k in range(in_features):
                acc = acc + x_row[k] * W[k]
            Y[i] = acc if (acc > 0 or not relu) else 0
        return
    for i in range(n_samples):
        y_row = Y + i * out_features
        for j in range(out_features):
            y_row[j] = b[j]
        for k in range(in_features):
            x_ik = X[i * in_features + k]
            w_row = W + k * out_features
            for j in range(out_features):
                y_row[j] += x_ik * w_row[j]
        if relu:
            for j in range(out_features):
                y_row[j] = y_row[j] if y_row[j] > 0 else 0


cdef void dense_backward_kernel(
    const floating* X, const floating* W, const floating* dY,
    floating* dX, floating* dW, floating* db,
    Py_ssize_t n_samples, Py_ssize_t in_features, Py_ssize_t out_features,
) noexcept nogil:
    """dX = dY @ W.T (skipped when dX is NULL), dW = X.T @ dY, db = dY.sum(0).

    dX[i, k] is the dot product of the contiguous rows dY[i, :] and W[k, :];
    dW and db are accumulated one sample at a time, along contiguous rows.
    """
    cdef Py_ssize_t i, k, j
    cdef floating acc, x_ik
    cdef const floating* dy_row
    cdef const floating* w_row
    cdef floating* dw_row

    for j in range(out_features):
        db[j] = 0
    for k in range(in_features * out_features):
        dW[k] = 0

    if out_features == 1:
        # One output: dW is a column, dX[i, :] = dY[i] * W[:, 0].
        for i in range(n_samples):
            acc = dY[i]
            db[0] += acc
            for k in range(in_features):
                dW[k] += X[i * in_features + k] * acc
            if dX != NULL:
                for k in range(in_features):
                    dX[i * in_features + k] = acc * W[k]
        return

    for i in range(n_samples):
        dy_row = dY + i * out_features
        for j in range(out_features):
            db[j] += dy_row[j]
        for k in range(in_features):
            x_ik = X[i * in_features + k]
            dw_row = dW + k * out_features
            for j in range(out_features):
                dw_row[j] += x_ik * dy_row[j]
        if dX != NULL:
            for k in range(in_features):
                w_row = W + k * out_features
                acc = 0
                for j in range(out_features):
                    acc = acc + dy_row[j] * w_row[j]
                dX[i * in_features + k] = acc


cdef void relu_forward_kernel(
    const floating* Z, floating* A, Py_ssize_t size,
) noexcept nogil:
    """A = max(Z, 0), elementwise."""
    cdef Py_ssize_t i
    cdef floating zero = 0, z
    for i in range(size):
        z = Z[i]
        A[i] = z if z > zero else zero   # a typed zero: the loop then vectorises


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


cdef double mse_loss_kernel(
    const floating* yhat, const floating* y, Py_ssize_t size,
) noexcept nogil:
    """mean((yhat - y) ** 2), summed in double even for float32 input."""
    cdef Py_ssize_t i
    cdef double diff, total = 0.0
    for i in range(size):
        diff = <double>yhat[i] - <double>y[i]
        total += diff * diff
    return total / size


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
    return (((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]))) / size


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


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


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
