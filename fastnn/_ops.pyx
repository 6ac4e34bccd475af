"""The compiled kernels behind fastnn.ops, and the CPU and build facts.

Design
------
Two layers live here.

1. ``cdef ... noexcept nogil`` loops over raw pointers, in ``_kernels.pxi``
   (included here and in the network walker, which compiles its own copy
   so that it can inline them): one body per kernel, which both sides run.
   They check nothing, raise nothing and touch no Python object.
2. ``def`` wrappers over typed, C-contiguous memoryviews (``const`` for
   inputs, so read-only arrays work), fused over float32/float64. They check
   that the shapes fit together (which is what makes ``boundscheck(False)``
   in the loops safe), release the GIL and call the loop. Outputs are
   buffers the caller allocated. The Dense wrappers take sample-major
   arrays: BLAS (``use_blas``, the walker's rule) multiplies them as they
   are, a one-output layer is a dot product per row, and every other layer
   runs the walker's feature-major Dense loops on transposed copies.

``fastnn.ops`` is the public, validated face of the wrappers (array-likes,
dtypes, finiteness, messages that name the argument); ``fastnn.reference``
holds the NumPy twin of each kernel, which the tests hold these loops to.

Compiler directives (boundscheck, wraparound, ...) are set once, in
``setup.py``; ``FASTNN_DEBUG=1`` at build time turns the checks back on.
"""

cimport numpy as cnp
from libc.stdlib cimport free, malloc


cdef extern from *:
    """
    #ifndef FASTNN_DEBUG_BUILD
    #define FASTNN_DEBUG_BUILD 0
    #endif
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    /* The AVX2 walker is compiled with FMA too (setup.py): every AVX2 CPU but a few has it. */
    static int fastnn_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    /* What the AVX-512 walker is compiled for (setup.py): F, VL, DQ and BW. The
       checks include the operating system's support for the registers. */
    static int fastnn_cpu_has_avx512(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    }
    #else
    static int fastnn_cpu_has_avx2(void) { return 0; }
    static int fastnn_cpu_has_avx512(void) { return 0; }
    #endif
    """
    int FASTNN_DEBUG_BUILD
    int fastnn_cpu_has_avx2() noexcept nogil
    int fastnn_cpu_has_avx512() noexcept nogil

#: True when this extension was compiled with bounds checking (FASTNN_DEBUG=1).
DEBUG_BUILD = bool(FASTNN_DEBUG_BUILD)


def cpu_has_avx2():
    """True when this CPU runs AVX2 instructions (GCC/Clang on x86 only; else False)."""
    return bool(fastnn_cpu_has_avx2())


def cpu_has_avx512():
    """True when this CPU (and its operating system) runs AVX-512 F, VL, DQ and BW
    instructions (GCC/Clang on x86 only; else False)."""
    return bool(fastnn_cpu_has_avx512())


include "_kernels.pxi"

cnp.import_array()


#: The BLAS of the Dense wrappers below (``set_blas``), with this module's
#: thresholds (BLAS_MIN_WEIGHTS, BLAS_MIN_WIDTH, BLAS_MIN_WEIGHTS_TILED).
cdef Blas _BLAS
blas_init(&_BLAS)


def set_blas(info):
    """Use the gemm of a ``fastnn._blas.BlasInfo`` (or none, for None) in the wrappers."""
    if info is None or info.kind not in (BLAS_CBLAS64, BLAS_FORTRAN32) or not (info.dgemm and info.sgemm):
        _BLAS.kind = BLAS_NONE
        return
    _BLAS.dgemm = <void*><size_t>info.dgemm
    _BLAS.sgemm = <void*><size_t>info.sgemm
    _BLAS.kind = info.kind


# --------------------------------------------------------------------------
# Wrappers: typed memoryviews, shape checks, GIL released around the loops.
# --------------------------------------------------------------------------

cdef inline void _check_same_size(Py_ssize_t a, Py_ssize_t b, str what) except *:
    if a != b:
        raise ValueError(f"{what}: sizes {a} and {b} differ")


cdef void* _scratch(Py_ssize_t n_values, size_t itemsize) except NULL:
    """malloc'd room for n_values values (at least one), or MemoryError."""
    cdef void* room = malloc(max(n_values, 1) * itemsize)
    if room == NULL:
        raise MemoryError(f"cannot allocate {n_values} values of scratch")
    return room


def dense_forward(
    const floating[:, ::1] X,   # IN  (n_samples, in_features)
    const floating[:, ::1] W,   # IN  (in_features, out_features)
    const floating[::1] b,      # IN  (out_features,)
    floating[:, ::1] out,       # OUT (n_samples, out_features)
):
    """Write X @ W + b into ``out``."""
    cdef Py_ssize_t n_samples = X.shape[0], in_features = X.shape[1]
    cdef Py_ssize_t out_features = W.shape[1], i
    cdef floating* XT
    cdef floating* YT
    _check_same_size(W.shape[0], in_features, "W rows vs X columns")
    _check_same_size(b.shape[0], out_features, "b vs W columns")
    _check_same_size(out.shape[0], n_samples, "out rows vs X rows")
    _check_same_size(out.shape[1], out_features, "out columns vs W columns")
    if n_samples == 0 or out_features == 0:
        return
    if in_features == 0:
        # No input: every row is b.
        for i in range(n_samples):
            out[i, :] = b
        return
    if use_blas(&_BLAS, n_samples, in_features, out_features):
        # BLAS takes the sample-major arrays as they are: out = b, then out += X @ W.
        with nogil:
            for i in range(n_samples):
                memcpy(&out[i, 0], &b[0], out_features * sizeof(floating))
            gemm(&_BLAS, False, False, n_samples, out_features, in_features,
                 &X[0, 0], in_features, &W[0, 0], out_features, 1, &out[0, 0], out_features)
        return
    if out_features == 1:
        # One output: a dot product per row, on the rows as they are (a transpose would cost
        # as much as the products).
        with nogil:
            for i in range(n_samples):
                out[i, 0] = b[0] + _dot(&X[i, 0], &W[0, 0], in_features)
        return
    XT = <floating*>_scratch(n_samples * (in_features + out_features), sizeof(floating))
    YT = XT + n_samples * in_features
    with nogil:
        transpose(&X[0, 0], XT, n_samples, in_features)
        dense_forward_kernel(&_BLAS, XT, &W[0, 0], &b[0], YT, n_samples, in_features, out_features, False)
        transpose(YT, &out[0, 0], out_features, n_samples)
    free(XT)


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
    cdef Py_ssize_t out_features = W.shape[1], i, j, kk
    cdef floating* XT
    cdef floating* G
    cdef floating* dXT
    _check_same_size(W.shape[0], in_features, "W rows vs X columns")
    _check_same_size(dY.shape[0], n_samples, "dY rows vs X rows")
    _check_same_size(dY.shape[1], out_features, "dY columns vs W columns")
    _check_same_size(dX.shape[0], n_samples, "dX rows vs X rows")
    _check_same_size(dX.shape[1], in_features, "dX columns vs X columns")
    _check_same_size(dW.shape[0], in_features, "dW rows vs W rows")
    _check_same_size(dW.shape[1], out_features, "dW columns vs W columns")
    _check_same_size(db.shape[0], out_features, "db vs W columns")
    if out_features == 0:
        dX[:, :] = 0
        return
    if n_samples == 0 or in_features == 0:
        # No sample or no input: dW (if any) and db are sums over nothing.
        dW[:, :] = 0
        db[:] = 0
        return
    if use_blas(&_BLAS, n_samples, in_features, out_features):
        # BLAS takes the sample-major arrays as they are; db sums dY's rows in order.
        with nogil:
            for j in range(out_features):
                db[j] = 0
            for i in range(n_samples):
                for j in range(out_features):
                    db[j] += dY[i, j]
            gemm(&_BLAS, False, True, n_samples, in_features, out_features,
                 &dY[0, 0], out_features, &W[0, 0], out_features, 0, &dX[0, 0], in_features)
            gemm(&_BLAS, True, False, in_features, out_features, n_samples,
                 &X[0, 0], in_features, &dY[0, 0], out_features, 0, &dW[0, 0], out_features)
        return
    if out_features == 1:
        # One output, on the rows as they are: db = sum(dY), dW = sum over rows of
        # dY[i] * X[i], dX[i] = dY[i] * W[:, 0].
        with nogil:
            db[0] = _sum(&dY[0, 0], n_samples)
            for kk in range(in_features):
                dW[kk, 0] = 0
            for i in range(n_samples):
                _axpy(dY[i, 0], &X[i, 0], &dW[0, 0], in_features)
                for kk in range(in_features):
                    dX[i, kk] = dY[i, 0] * W[kk, 0]
        return
    # XT and dXT (in_features, n), G (out_features, n); dY is G sample-major (GT).
    XT = <floating*>_scratch(n_samples * (2 * in_features + out_features), sizeof(floating))
    dXT = XT + n_samples * in_features
    G = dXT + n_samples * in_features
    with nogil:
        transpose(&X[0, 0], XT, n_samples, in_features)
        transpose(&dY[0, 0], G, n_samples, out_features)
        dense_backward_kernel(&_BLAS, XT, &W[0, 0], G, &dY[0, 0], dXT, &dW[0, 0], &db[0],
                              n_samples, in_features, out_features)
        transpose(dXT, &dX[0, 0], in_features, n_samples)
    free(XT)


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


def optimizer_update(
    str kind,
    floating[::1] param,            # IN/OUT
    const floating[::1] grad,       # IN
    floating[::1] buf1,             # IN/OUT SGD momentum buffer or Adam exp_avg (may be empty)
    floating[::1] buf2,             # IN/OUT Adam exp_avg_sq (may be empty)
    double lr, double momentum, bint nesterov, double weight_decay,
    double beta1, double beta2, double eps, long step,
):
    """One step of "sgd", "adam" or "adamw" over flat views; False (and nothing
    changed) when a new value would not be finite. ``step`` counts the
    updates already applied (Adam's t is step + 1)."""
    cdef Opt opt
    cdef Py_ssize_t n = param.shape[0]
    cdef bint ok
    cdef floating* b1 = NULL
    cdef floating* b2 = NULL
    opt.kind = {"sgd": OPT_SGD, "adam": OPT_ADAM, "adamw": OPT_ADAMW}[kind]
    opt.lr = lr
    opt.momentum = momentum
    opt.nesterov = nesterov
    opt.weight_decay = weight_decay
    opt.beta1 = beta1
    opt.beta2 = beta2
    opt.eps = eps
    opt.step = step
    _check_same_size(grad.shape[0], n, "grad vs param")
    if (opt.kind != OPT_SGD or momentum != 0):
        _check_same_size(buf1.shape[0], n, "buf1 vs param")
    if opt.kind != OPT_SGD:
        _check_same_size(buf2.shape[0], n, "buf2 vs param")
    if n == 0:
        return True
    if buf1.shape[0] > 0:
        b1 = &buf1[0]
    if buf2.shape[0] > 0:
        b2 = &buf2[0]
    with nogil:
        ok = update_kernel(&opt, &param[0], &grad[0], b1, b2, n)
    return ok


#: Activation codes of activation_forward/activation_backward.
FN_CODES = {"identity": FN_IDENTITY, "relu": FN_RELU, "leaky_relu": FN_LEAKY_RELU,
            "tanh": FN_TANH, "sigmoid": FN_SIGMOID}


def activation_forward(int fn, double param, const floating[::1] Z, floating[::1] out):
    """Write f(Z) into ``out`` for the activation code ``fn`` (flat views of one size)."""
    _check_same_size(out.shape[0], Z.shape[0], "out vs Z")
    if fn not in (FN_IDENTITY, FN_RELU, FN_LEAKY_RELU, FN_TANH, FN_SIGMOID):
        raise ValueError(f"unknown activation code {fn}")
    if Z.shape[0] == 0:
        return
    with nogil:
        act_forward_kernel(fn, param, &Z[0], &out[0], Z.shape[0])


def activation_backward(int fn, double param, const floating[::1] A, const floating[::1] dA,
                        floating[::1] out):
    """Write dA * f'(Z) into ``out``, from the activation's output A = f(Z)."""
    _check_same_size(dA.shape[0], A.shape[0], "dA vs A")
    _check_same_size(out.shape[0], A.shape[0], "out vs A")
    if fn not in (FN_IDENTITY, FN_RELU, FN_LEAKY_RELU, FN_TANH, FN_SIGMOID):
        raise ValueError(f"unknown activation code {fn}")
    if A.shape[0] == 0:
        return
    with nogil:
        act_backward_kernel(fn, param, &A[0], &dA[0], &out[0], A.shape[0])


#: Loss codes of loss_and_grad.
LOSS_CODES = {"mse": LOSS_MSE, "mae": LOSS_MAE, "huber": LOSS_HUBER,
              "cross_entropy": LOSS_CROSS_ENTROPY, "bce_with_logits": LOSS_BCE_WITH_LOGITS,
              "poisson": LOSS_POISSON}


def loss_and_grad(
    int kind, double param,
    const floating[:, ::1] yhat,    # IN  (n_samples, n_outputs)
    const floating[::1] y,          # IN  yhat's elements' targets, flat; or n_samples labels
    const floating[::1] w,          # IN  n_samples weights, or empty
    floating[:, ::1] grad,          # OUT yhat's shape, or (0, n_outputs) for no gradient
):
    """The (weighted) loss of the code ``kind`` as a float; its gradient into ``grad``."""
    cdef Py_ssize_t n = yhat.shape[0], C = yhat.shape[1], i
    cdef double loss, wsum
    cdef const floating* wp = NULL
    cdef floating* gp = NULL
    if kind not in (LOSS_MSE, LOSS_MAE, LOSS_HUBER, LOSS_CROSS_ENTROPY, LOSS_BCE_WITH_LOGITS, LOSS_POISSON):
        raise ValueError(f"unknown loss code {kind}")
    if n == 0 or C == 0:
        raise ValueError("a loss of an empty array is undefined")
    _check_same_size(y.shape[0], n if kind == LOSS_CROSS_ENTROPY else n * C, "y vs yhat")
    if kind == LOSS_CROSS_ENTROPY:
        for i in range(n):
            if not (0 <= y[i] < C and y[i] == <Py_ssize_t>y[i]):
                raise ValueError(f"label {y[i]} is not a class index in [0, {C})")
    if w.shape[0] > 0:
        _check_same_size(w.shape[0], n, "w vs yhat rows")
        wp = &w[0]
    if grad.shape[0] > 0:
        _check_same_size(grad.shape[0], n, "grad rows vs yhat rows")
        _check_same_size(grad.shape[1], C, "grad columns vs yhat columns")
        gp = &grad[0, 0]
    with nogil:
        loss = loss_grad_kernel(kind, param, &yhat[0, 0], &y[0], wp, gp, n, C, C, 1, &wsum)
    return loss


# --------------------------------------------------------------------------
# The common case, recognised here: an elementwise kernel on plain arrays
# (exactly ndarray, C-contiguous, aligned, native float32/float64, 1 to 32
# dimensions, not empty; the inputs of one dtype and one shape) runs from the
# arrays' flags, type number and shape, into a new array, counting the
# non-finite inputs in the same pass. Anything else, including a non-finite
# input, returns None: fastnn.ops then validates and converts as before (and
# raises its messages). Nothing the caller passed is written to.
# --------------------------------------------------------------------------

#: The checked elementwise loops the common case runs: this module's own
#: (SSE2 on x86-64) until ``use_kernels_of`` points them at a walker build's
#: copy of the same loops (AVX2, AVX-512; the same bits, see
#: tests/test_transcendentals.py).
cdef const PlainKernels* _PLAIN = &_PLAIN_KERNELS


def use_kernels_of(module):
    """Run the common case's loops from ``module`` (a walker build, compiled from
    the same _kernels.pxi for a wider instruction set), or this module's (None)."""
    global _PLAIN
    if module is None:
        _PLAIN = &_PLAIN_KERNELS
        return
    _PLAIN = <const PlainKernels*>PyCapsule_GetPointer(module._PLAIN_KERNELS_CAPSULE, b"fastnn._kernels.PlainKernels")


cdef int _plain_typenum(object a) noexcept:
    """NPY_FLOAT or NPY_DOUBLE for a plain array (above), else -1."""
    cdef cnp.ndarray arr
    cdef int t
    if not cnp.PyArray_CheckExact(a):
        return -1
    arr = <cnp.ndarray>a
    t = cnp.PyArray_TYPE(arr)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        return -1
    if (cnp.PyArray_NDIM(arr) < 1 or cnp.PyArray_NDIM(arr) > 32 or cnp.PyArray_SIZE(arr) == 0
            or not cnp.PyArray_ISCARRAY_RO(arr) or not cnp.PyArray_ISNOTSWAPPED(arr)):
        return -1
    return t


cdef bint _same_shape(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) != cnp.PyArray_DIM(b, d):
            return False
    return True


def activation_forward_plain(int fn, double param, object Z):
    """f(Z) as a new array for plain, finite Z (see above); else None."""
    cdef int t = _plain_typenum(Z)
    cdef cnp.ndarray z, out
    cdef Py_ssize_t n
    cdef bint ok
    if t < 0 or fn < FN_IDENTITY or fn > FN_SIGMOID:
        return None
    z = <cnp.ndarray>Z
    out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(z), cnp.PyArray_DIMS(z), t, 0)
    n = cnp.PyArray_SIZE(z)
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = _PLAIN.forward_f(fn, param, <const float*>cnp.PyArray_DATA(z), <float*>cnp.PyArray_DATA(out), n)
        else:
            ok = _PLAIN.forward_d(fn, param, <const double*>cnp.PyArray_DATA(z), <double*>cnp.PyArray_DATA(out), n)
    return out if ok else None


def activation_backward_plain(int fn, double param, object Z, object dA):
    """dA * f'(Z) as a new array for plain, finite Z and dA of one dtype and shape; else None."""
    cdef int t = _plain_typenum(Z)
    cdef cnp.ndarray z, d, out
    cdef Py_ssize_t n
    cdef bint ok
    if t < 0 or _plain_typenum(dA) != t or fn < FN_IDENTITY or fn > FN_SIGMOID:
        return None
    z = <cnp.ndarray>Z
    d = <cnp.ndarray>dA
    if not _same_shape(z, d):
        return None
    out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(z), cnp.PyArray_DIMS(z), t, 0)
    n = cnp.PyArray_SIZE(z)
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = _PLAIN.backward_f(fn, param, <const float*>cnp.PyArray_DATA(z), <const float*>cnp.PyArray_DATA(d),
                                   <float*>cnp.PyArray_DATA(out), n)
        else:
            ok = _PLAIN.backward_d(fn, param, <const double*>cnp.PyArray_DATA(z), <const double*>cnp.PyArray_DATA(d),
                                   <double*>cnp.PyArray_DATA(out), n)
    return out if ok else None


cdef bint mse_grad_checked(const floating* yhat, const floating* y, floating* grad, Py_ssize_t size) noexcept nogil:
    """grad = (2 * s) * (yhat - y) with s = 1 / size in the buffers' type (the bits
    of loss_grad_kernel's unweighted MSE gradient), and whether every yhat and y
    is finite, in one pass."""
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef floating a, b, chk, zero = 0, two = 2
    cdef floating scale = <floating>(1.0 / size)
    for i in range(size):
        a = yhat[i]
        b = y[i]
        chk = a * zero + b * zero
        if floating is float:
            bad32 |= chk != chk
        else:
            bad64 |= chk != chk
        grad[i] = (two * scale) * (a - b)
    return (bad32 | bad64) == 0


def mse_grad_plain(object yhat, object y):
    """The unweighted MSE gradient as a new array for plain, finite yhat and y of
    one dtype and shape, 1-D or 2-D; else None."""
    cdef int t = _plain_typenum(yhat)
    cdef cnp.ndarray p, q, out
    cdef Py_ssize_t n
    cdef bint ok
    if t < 0 or _plain_typenum(y) != t:
        return None
    p = <cnp.ndarray>yhat
    q = <cnp.ndarray>y
    if cnp.PyArray_NDIM(p) > 2 or not _same_shape(p, q):
        return None
    out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(p), cnp.PyArray_DIMS(p), t, 0)
    n = cnp.PyArray_SIZE(p)
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = mse_grad_checked(<const float*>cnp.PyArray_DATA(p), <const float*>cnp.PyArray_DATA(q),
                                  <float*>cnp.PyArray_DATA(out), n)
        else:
            ok = mse_grad_checked(<const double*>cnp.PyArray_DATA(p), <const double*>cnp.PyArray_DATA(q),
                                  <double*>cnp.PyArray_DATA(out), n)
    return out if ok else None


def sgd_update_plain(object param, object grad, object lr):
    """param -= lr * grad in place, for a plain, writable param and a plain grad of
    its dtype and shape that does not overlap it, a float lr in (0, inf), and
    finite values (checked by a read-only pass first: nothing is written
    otherwise). True when done; False hands the call back unchanged."""
    cdef int t = _plain_typenum(param)
    cdef cnp.ndarray p, g
    cdef Py_ssize_t n
    cdef double rate
    cdef char* p0
    cdef char* g0
    cdef bint ok = False
    if t < 0 or _plain_typenum(grad) != t or type(lr) is not float:
        return False
    rate = <double>lr
    if not (rate > 0 and rate < float("inf")):
        return False
    p = <cnp.ndarray>param
    g = <cnp.ndarray>grad
    if not cnp.PyArray_ISWRITEABLE(p) or not _same_shape(p, g):
        return False
    n = cnp.PyArray_SIZE(p)
    p0 = <char*>cnp.PyArray_DATA(p)
    g0 = <char*>cnp.PyArray_DATA(g)
    if p0 < g0 + cnp.PyArray_NBYTES(g) and g0 < p0 + cnp.PyArray_NBYTES(p):
        return False        # overlapping buffers: the converting path copies grad first
    with nogil:
        if t == cnp.NPY_FLOAT:
            if all_finite_kernel(<const float*>p0, n) and all_finite_kernel(<const float*>g0, n):
                sgd_update_kernel(<float*>p0, <const float*>g0, rate, n)
                ok = True
        else:
            if all_finite_kernel(<const double*>p0, n) and all_finite_kernel(<const double*>g0, n):
                sgd_update_kernel(<double*>p0, <const double*>g0, rate, n)
                ok = True
    return ok


def mse_loss_plain(object yhat, object y):
    """The unweighted MSE loss for plain yhat and y of one dtype and shape (1-D or
    2-D), from loss_grad_kernel as the converting path calls it (the same
    value); None for anything else, or when the loss is not finite (a
    non-finite input, or squares that overflow: the converting path then
    refuses the input or returns the overflowed loss)."""
    cdef int t = _plain_typenum(yhat)
    cdef cnp.ndarray p, q
    cdef Py_ssize_t n, C
    cdef double loss, wsum
    if t < 0 or _plain_typenum(y) != t:
        return None
    p = <cnp.ndarray>yhat
    q = <cnp.ndarray>y
    if cnp.PyArray_NDIM(p) > 2 or not _same_shape(p, q):
        return None
    n = cnp.PyArray_DIM(p, 0)
    C = cnp.PyArray_SIZE(p) // n
    with nogil:
        if t == cnp.NPY_FLOAT:
            loss = loss_grad_kernel(LOSS_MSE, 0.0, <const float*>cnp.PyArray_DATA(p), <const float*>cnp.PyArray_DATA(q),
                                    NULL, NULL, n, C, C, 1, &wsum)
        else:
            loss = loss_grad_kernel(LOSS_MSE, 0.0, <const double*>cnp.PyArray_DATA(p),
                                    <const double*>cnp.PyArray_DATA(q), NULL, NULL, n, C, C, 1, &wsum)
    if loss - loss != 0:       # NaN or infinite
        return None
    return loss
