"""Typed loops behind fastnn.ops: Dense, ReLU, MSE and SGD.

Design
------
Two layers live in this file.

1. ``cdef ... noexcept nogil`` kernels over raw pointers (declared in
   ``_kernels.pxd`` so that ``_network.pyx`` can walk a whole network with
   them). They check nothing, raise nothing and touch no Python object.
2. ``def`` wrappers over typed, C-contiguous memoryviews (``const`` for
   inputs, so read-only arrays work), fused over float32/float64. They check
   that the shapes fit together (which is what makes ``boundscheck(False)``
   in the kernels safe), release the GIL and call the kernel. Outputs are
   buffers the caller allocated, so a model can reuse them.

``fastnn.ops`` is the public, validated face of the wrappers (array-likes,
dtypes, finiteness, messages that name the argument); ``fastnn.reference``
holds the NumPy twin of each kernel, which the tests hold these loops to.

Compiler directives (boundscheck, wraparound, ...) are set once, in
``setup.py``; ``FASTNN_DEBUG=1`` at build time turns the checks back on.
"""

from cython cimport floating
from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #ifndef FASTNN_DEBUG_BUILD
    #define FASTNN_DEBUG_BUILD 0
    #endif
    """
    int FASTNN_DEBUG_BUILD

#: True when this extension was compiled with bounds checking (FASTNN_DEBUG=1).
DEBUG_BUILD = bool(FASTNN_DEBUG_BUILD)


# --------------------------------------------------------------------------
# Kernels: raw pointers, no checks, no GIL.
# --------------------------------------------------------------------------

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
    in double; the gradient is computed in the buffers' own type, as the
    reference computes it.
    """
    cdef Py_ssize_t i = 0
    cdef floating d0, d1
    cdef floating scale = <floating>(2.0 / size)
    cdef double t0 = 0.0, t1 = 0.0
    while i + 2 <= size:
        d0 = yhat[i] - y[i]
        d1 = yhat[i + 1] - y[i + 1]
        t0 += <double>d0 * <double>d0
        t1 += <double>d1 * <double>d1
        grad[i] = scale * d0
        grad[i + 1] = scale * d1
        i += 2
    if i < size:
        d0 = yhat[i] - y[i]
        t0 += <double>d0 * <double>d0
        grad[i] = scale * d0
    return (t0 + t1) / size


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

    x * 0 is 0 for every finite x and NaN for NaN and +-inf, so the sum is 0
    exactly when all are finite: a branch-free loop the compiler vectorises.
    """
    cdef Py_ssize_t i = 0
    cdef floating a0 = 0, a1 = 0, a2 = 0, a3 = 0
    # Four partial sums: the compiler may not reorder one floating-point sum,
    # and a single chain waits on the adder's latency at every element.
    while i + 4 <= size:
        a0 += x[i] * 0
        a1 += x[i + 1] * 0
        a2 += x[i + 2] * 0
        a3 += x[i + 3] * 0
        i += 4
    while i < size:
        a0 += x[i] * 0
        i += 1
    return (a0 + a1) + (a2 + a3) == 0


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


#: The BLAS the ``def`` wrappers below use for large products (``set_blas``).
cdef Blas _BLAS
_BLAS.kind = BLAS_NONE

#: The wrappers multiply with BLAS once n_samples * in * out reaches this and
#: in * out reaches OPS_BLAS_MIN_WEIGHTS (as the model does; see fastnn.model).
OPS_BLAS_MIN_WORK = 2048
OPS_BLAS_MIN_WEIGHTS = 64


def set_blas(info):
    """Use the gemm of a ``fastnn._blas.BlasInfo`` (or none, for None) in the wrappers."""
    if info is None or info.kind not in (BLAS_CBLAS64, BLAS_FORTRAN32) or not (info.dgemm and info.sgemm):
        _BLAS.kind = BLAS_NONE
        return
    _BLAS.dgemm = <void*><size_t>info.dgemm
    _BLAS.sgemm = <void*><size_t>info.sgemm
    _BLAS.kind = info.kind


cdef bint _ops_use_blas(Py_ssize_t n, Py_ssize_t k, Py_ssize_t m):
    if _BLAS.kind == BLAS_NONE or k * m < OPS_BLAS_MIN_WEIGHTS or n * k * m < OPS_BLAS_MIN_WORK:
        return False
    return _BLAS.kind != BLAS_FORTRAN32 or max(n, k, m) <= INT_MAX


# --------------------------------------------------------------------------
# Wrappers: typed memoryviews, shape checks, GIL released around the loops.
# --------------------------------------------------------------------------

cdef inline void _check_same_size(Py_ssize_t a, Py_ssize_t b, str what) except *:
    if a != b:
        raise ValueError(f"{what}: sizes {a} and {b} differ")


def dense_forward(
    const floating[:, ::1] X,   # IN  (n_samples, in_features)
    const floating[:, ::1] W,   # IN  (in_features, out_features)
    const floating[::1] b,      # IN  (out_features,)
    floating[:, ::1] out,       # OUT (n_samples, out_features)
):
    """Write X @ W + b into ``out``."""
    cdef Py_ssize_t n_samples = X.shape[0], in_features = X.shape[1]
    cdef Py_ssize_t out_features = W.shape[1]
    _check_same_size(W.shape[0], in_features, "W rows vs X columns")
    _check_same_size(b.shape[0], out_features, "b vs W columns")
    _check_same_size(out.shape[0], n_samples, "out rows vs X rows")
    _check_same_size(out.shape[1], out_features, "out columns vs W columns")
    if n_samples == 0 or out_features == 0:
        return
    cdef bint use_blas = in_features > 0 and _ops_use_blas(n_samples, in_features, out_features)
    cdef Py_ssize_t i
    with nogil:
        if use_blas:
            for i in range(n_samples):
                memcpy(&out[i, 0], &b[0], out_features * sizeof(floating))
            gemm(&_BLAS, False, False, n_samples, out_features, in_features,
                 &X[0, 0], in_features, &W[0, 0], out_features, 1, &out[0, 0], out_features)
        else:
            dense_forward_kernel(
                &X[0, 0] if in_features > 0 else NULL,
                &W[0, 0] if in_features > 0 else NULL,
                &b[0], &out[0, 0], n_samples, in_features, out_features, False,
            )


def dense_backward(
    const floating[:, ::1] X,    # IN  (n_samples, in_features)
    const floating[:, ::1] W,    # IN  (in_features, out_features)
    const floating[:, ::1] dY,   # IN  (n_samples, out_features)
    floating[:, ::1] dX,         # OUT (n_samples, in_features)
    floating[:, ::1] dW,         # OUT (in_features, out_features)
    floating[::1] db,            # OUT (out_features,)
):
    """Write dY @ W.T into ``dX``, X.T @ dY into ``dW`` and dY.sum(0) into ``db``."""
    cdef Py_ssize_t n_samples = X.shape[0], in_features = X.shape[1]
    cdef Py_ssize_t out_features = W.shape[1]
    _check_same_size(W.shape[0], in_features, "W rows vs X columns")
    _check_same_size(dY.shape[0], n_samples, "dY rows vs X rows")
    _check_same_size(dY.shape[1], out_features, "dY columns vs W columns")
    _check_same_size(dX.shape[0], n_samples, "dX rows vs X rows")
    _check_same_size(dX.shape[1], in_features, "dX columns vs X columns")
    _check_same_size(dW.shape[0], in_features, "dW rows vs W rows")
    _check_same_size(dW.shape[1], out_features, "dW columns vs W columns")
    _check_same_size(db.shape[0], out_features, "db vs W columns")
    if out_features == 0:
        return
    if n_samples == 0 or in_features == 0:
        # No sample or no input: dW (if any) and db are sums over nothing.
        dW[:, :] = 0
        db[:] = 0
        return
    cdef bint use_blas = _ops_use_blas(n_samples, in_features, out_features)
    cdef Py_ssize_t i, j
    with nogil:
        if use_blas:
            for j in range(out_features):
                db[j] = 0
            for i in range(n_samples):
                for j in range(out_features):
                    db[j] += dY[i, j]
            gemm(&_BLAS, False, True, n_samples, in_features, out_features,
                 &dY[0, 0], out_features, &W[0, 0], out_features, 0, &dX[0, 0], in_features)
            gemm(&_BLAS, True, False, in_features, out_features, n_samples,
                 &X[0, 0], in_features, &dY[0, 0], out_features, 0, &dW[0, 0], out_features)
        else:
            dense_backward_kernel(
                &X[0, 0], &W[0, 0], &dY[0, 0], &dX[0, 0], &dW[0, 0], &db[0],
                n_samples, in_features, out_features,
            )


def relu_forward(const floating[::1] Z, floating[::1] out):
    """Write max(Z, 0) into ``out`` (both flat views of the same shape)."""
    _check_same_size(out.shape[0], Z.shape[0], "out vs Z")
    if Z.shape[0] == 0:
        return
    with nogil:
        relu_forward_kernel(&Z[0], &out[0], Z.shape[0])


def relu_backward(const floating[::1] Z, const floating[::1] dA, floating[::1] out):
    """Write dA * (Z > 0) into ``out`` (flat views of the same shape)."""
    _check_same_size(dA.shape[0], Z.shape[0], "dA vs Z")
    _check_same_size(out.shape[0], Z.shape[0], "out vs Z")
    if Z.shape[0] == 0:
        return
    with nogil:
        relu_backward_kernel(&Z[0], &dA[0], &out[0], Z.shape[0])


def mse_loss(const floating[::1] yhat, const floating[::1] y):
    """Return mean((yhat - y) ** 2) as a Python float (flat views)."""
    cdef double loss
    _check_same_size(y.shape[0], yhat.shape[0], "y vs yhat")
    if yhat.shape[0] == 0:
        raise ValueError("mse_loss of an empty array is undefined")
    with nogil:
        loss = mse_loss_kernel(&yhat[0], &y[0], yhat.shape[0])
    return loss


def mse_grad(const floating[::1] yhat, const floating[::1] y, floating[::1] out):
    """Write 2 * (yhat - y) / yhat.size into ``out``; return the MSE too."""
    cdef double loss
    _check_same_size(y.shape[0], yhat.shape[0], "y vs yhat")
    _check_same_size(out.shape[0], yhat.shape[0], "out vs yhat")
    if yhat.shape[0] == 0:
        raise ValueError("mse_grad of an empty array is undefined")
    with nogil:
        loss = mse_loss_grad_kernel(&yhat[0], &y[0], &out[0], yhat.shape[0])
    return loss


def sgd_update(floating[::1] param, const floating[::1] grad, double lr):
    """param -= lr * grad, in place (flat views of the same size)."""
    _check_same_size(grad.shape[0], param.shape[0], "grad vs param")
    if param.shape[0] == 0:
        return
    with nogil:
        sgd_update_kernel(&param[0], &grad[0], lr, param.shape[0])


def all_finite(const floating[::1] x):
    """True when no element of the flat view ``x`` is NaN or infinite."""
    cdef bint result
    if x.shape[0] == 0:
        return True
    with nogil:
        result = all_finite_kernel(&x[0], x.shape[0])
    return result
