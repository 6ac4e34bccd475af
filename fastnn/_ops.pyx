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
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int32_t
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
include "_dense_rows.pxi"

cnp.import_array()


#: The BLAS of the Dense wrappers below (``set_blas``), with this module's
#: thresholds (BLAS_MIN_WEIGHTS, BLAS_MIN_WIDTH, BLAS_MIN_WEIGHTS_TILED).
cdef Blas _BLAS
blas_init(&_BLAS)

#: The one-output Dense product the wrappers run: this module's until
#: ``use_kernels_of`` points it at a walker build's copy (the same bits).
cdef const DenseRowsKernels* _DENSE_ROWS = &_DENSE_ROWS_KERNELS


#: Whether dense_forward_plain checks a BLAS product by its output (else by its
#: inputs, first): True when the gemm computes every product (``set_blas``).
cdef bint _BLAS_CHECKS_OUTPUT = False


cdef bint _gemm_propagates(const Blas* blas, floating* scratch) noexcept nogil:
    """Whether a non-finite X or W value (inf, NaN) multiplied by zeros alone makes
    the product non-finite, in the gemm call of _dense_forward, at a batch of 1
    (where a BLAS may take gemv) and of 16 and 128 rows. A BLAS that skips the
    products of zeros (as the reference BLAS skips a zero of one operand) would
    return a finite output for a non-finite input. ``scratch`` holds 3 * 128 * 64
    values."""
    cdef Py_ssize_t shapes[3][3]
    cdef Py_ssize_t s, i, n, k, m, bad_side
    cdef floating* X = scratch
    cdef floating* W = scratch + 128 * 64
    cdef floating* out = W + 128 * 64
    cdef floating bad[2]
    cdef int v
    bad[0] = <floating>INFINITY
    bad[1] = <floating>NAN
    shapes[0][0], shapes[0][1], shapes[0][2] = 1, 16, 16
    shapes[1][0], shapes[1][1], shapes[1][2] = 16, 16, 16
    shapes[2][0], shapes[2][1], shapes[2][2] = 128, 64, 64
    for s in range(3):
        n, k, m = shapes[s][0], shapes[s][1], shapes[s][2]
        for bad_side in range(2):
            for v in range(2):
                for i in range(n * k):
                    X[i] = 0 if bad_side == 1 else 1
                for i in range(k * m):
                    W[i] = 0 if bad_side == 0 else 1
                for i in range(n * m):
                    out[i] = 0
                if bad_side == 0:
                    X[(n // 2) * k + k // 2] = bad[v]
                else:
                    W[(k // 2) * m + m // 2] = bad[v]
                gemm(blas, False, False, n, m, k, X, k, W, m, 1, out, m)
                if all_finite_kernel(out, n * m):
                    return False
    return True


def set_blas(info, check_output=None):
    """Use the gemm of a ``fastnn._blas.BlasInfo`` (or none, for None) in the wrappers.

    ``check_output``: whether dense_forward_plain checks a BLAS product's
    finiteness by its output (one pass over n * m values) instead of its inputs
    (n * k + k * m + m, first). None (the default) asks the gemm: True when a
    non-finite input times zeros alone gives a non-finite output, in both
    dtypes (``_gemm_propagates``), as in OpenBLAS; False keeps the input pass.
    """
    cdef void* scratch
    cdef bint propagates
    global _BLAS_CHECKS_OUTPUT
    _BLAS_CHECKS_OUTPUT = False
    if info is None or info.kind not in (BLAS_CBLAS64, BLAS_FORTRAN32) or not (info.dgemm and info.sgemm):
        _BLAS.kind = BLAS_NONE
        return
    _BLAS.dgemm = <void*><size_t>info.dgemm
    _BLAS.sgemm = <void*><size_t>info.sgemm
    _BLAS.kind = info.kind
    if check_output is not None:
        _BLAS_CHECKS_OUTPUT = bool(check_output)
        return
    scratch = malloc(3 * 128 * 64 * sizeof(double))
    if scratch == NULL:
        raise MemoryError()
    with nogil:
        propagates = (_gemm_propagates(&_BLAS, <float*>scratch)
                      and _gemm_propagates(&_BLAS, <double*>scratch))
    free(scratch)
    _BLAS_CHECKS_OUTPUT = propagates


def blas_checks_output():
    """Whether dense_forward_plain checks a BLAS product by its output (see ``set_blas``)."""
    return bool(_BLAS_CHECKS_OUTPUT)


# --------------------------------------------------------------------------
# Wrappers: typed memoryviews, shape checks, GIL released around the loops.
# --------------------------------------------------------------------------

cdef inline void _check_same_size(Py_ssize_t a, Py_ssize_t b, str what) except *:
    if a != b:
        raise ValueError(f"{what}: sizes {a} and {b} differ")


cdef int _dense_forward(const Blas* blas, const floating* X, const floating* W, const floating* b,
                        floating* out, Py_ssize_t n_samples, Py_ssize_t in_features,
                        Py_ssize_t out_features) noexcept nogil:
    """out = X @ W + b for sample-major arrays of checked sizes (all >= 1): BLAS as
    the arrays are, a dot product per row for one output, else the walker's
    feature-major loops on transposed copies. -1 when scratch cannot be had."""
    cdef Py_ssize_t i
    cdef floating* XT
    cdef floating* YT
    if use_blas(blas, n_samples, in_features, out_features):
        # BLAS takes the sample-major arrays as they are: out = b, then out += X @ W.
        for i in range(n_samples):
            memcpy(&out[i * out_features], b, out_features * sizeof(floating))
        gemm(blas, False, False, n_samples, out_features, in_features,
             X, in_features, W, out_features, 1, out, out_features)
        return 0
    if out_features == 1:
        # One output: a dot product per row (_dense_rows.pxi), in the widest build's
        # instructions when a row fills _dot's lanes; shorter rows (the tutorial's 1-3-1)
        # run this module's copy, measured faster there (1000 x 1: 1.8 against 3.3 us
        # in the AVX2 build). The same sums either way.
        if in_features < 64 // <Py_ssize_t>sizeof(floating):
            dense_rows_dot(X, W, b[0], out, n_samples, in_features)
        elif floating is float:
            _DENSE_ROWS.dot_f(X, W, b[0], out, n_samples, in_features)
        else:
            _DENSE_ROWS.dot_d(X, W, b[0], out, n_samples, in_features)
        return 0
    XT = <floating*>malloc(n_samples * (in_features + out_features) * sizeof(floating))
    if XT == NULL:
        return -1
    YT = XT + n_samples * in_features
    transpose(X, XT, n_samples, in_features)
    dense_forward_kernel(blas, XT, W, b, YT, n_samples, in_features, out_features, False)
    transpose(YT, out, out_features, n_samples)
    free(XT)
    return 0


def dense_forward(
    const floating[:, ::1] X,   # IN  (n_samples, in_features)
    const floating[:, ::1] W,   # IN  (in_features, out_features)
    const floating[::1] b,      # IN  (out_features,)
    floating[:, ::1] out,       # OUT (n_samples, out_features)
):
    """Write X @ W + b into ``out``."""
    cdef Py_ssize_t n_samples = X.shape[0], in_features = X.shape[1]
    cdef Py_ssize_t out_features = W.shape[1], i
    cdef int rc
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
    with nogil:
        rc = _dense_forward(&_BLAS, &X[0, 0], &W[0, 0], &b[0], &out[0, 0], n_samples, in_features, out_features)
    if rc < 0:
        raise MemoryError(f"cannot allocate {n_samples * (in_features + out_features)} values of scratch")


cdef int _dense_backward(const Blas* blas, const floating* X, const floating* W, const floating* dY,
                         floating* dX, floating* dW, floating* db, Py_ssize_t n_samples,
                         Py_ssize_t in_features, Py_ssize_t out_features) noexcept nogil:
    """dX = dY @ W.T, dW = X.T @ dY, db = dY.sum(0) for sample-major arrays of checked
    sizes (all >= 1). -1 when scratch cannot be had."""
    cdef Py_ssize_t i, j, kk
    cdef floating* XT
    cdef floating* G
    cdef floating* dXT
    if use_blas(blas, n_samples, in_features, out_features):
        # BLAS takes the sample-major arrays as they are; db sums dY's rows in order.
        for j in range(out_features):
            db[j] = 0
        for i in range(n_samples):
            for j in range(out_features):
                db[j] += dY[i * out_features + j]
        gemm(blas, False, True, n_samples, in_features, out_features,
             dY, out_features, W, out_features, 0, dX, in_features)
        gemm(blas, True, False, in_features, out_features, n_samples,
             X, in_features, dY, out_features, 0, dW, out_features)
        return 0
    if out_features == 1:
        # One output, on the rows as they are: db = sum(dY), dW = sum over rows of
        # dY[i] * X[i], dX[i] = dY[i] * W[:, 0].
        db[0] = _sum(dY, n_samples)
        for kk in range(in_features):
            dW[kk] = 0
        for i in range(n_samples):
            _axpy(dY[i], &X[i * in_features], dW, in_features)
            for kk in range(in_features):
                dX[i * in_features + kk] = dY[i] * W[kk]
        return 0
    # XT and dXT (in_features, n), G (out_features, n); dY is G sample-major (GT).
    XT = <floating*>malloc(n_samples * (2 * in_features + out_features) * sizeof(floating))
    if XT == NULL:
        return -1
    dXT = XT + n_samples * in_features
    G = dXT + n_samples * in_features
    transpose(X, XT, n_samples, in_features)
    transpose(dY, G, n_samples, out_features)
    dense_backward_kernel(blas, XT, W, G, dY, dXT, dW, db, n_samples, in_features, out_features)
    transpose(dXT, dX, in_features, n_samples)
    free(XT)
    return 0


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
    cdef int rc
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
    with nogil:
        rc = _dense_backward(&_BLAS, &X[0, 0], &W[0, 0], &dY[0, 0], &dX[0, 0], &dW[0, 0], &db[0],
                             n_samples, in_features, out_features)
    if rc < 0:
        raise MemoryError(f"cannot allocate {n_samples * (2 * in_features + out_features)} values of scratch")


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
    """Run the common case's loops and the one-output Dense product from ``module``
    (a walker build, compiled from the same _kernels.pxi and _dense_rows.pxi for a
    wider instruction set), or this module's (None)."""
    global _PLAIN, _DENSE_ROWS
    if module is None:
        _PLAIN = &_PLAIN_KERNELS
        _DENSE_ROWS = &_DENSE_ROWS_KERNELS
        return
    _PLAIN = <const PlainKernels*>PyCapsule_GetPointer(module._PLAIN_KERNELS_CAPSULE, b"fastnn._kernels.PlainKernels")
    _DENSE_ROWS = <const DenseRowsKernels*>PyCapsule_GetPointer(module._DENSE_ROWS_KERNELS_CAPSULE,
                                                                b"fastnn._dense_rows.DenseRowsKernels")


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


cdef bint _elementwise_pair(object yhat, object y, int* typenum) noexcept:
    """Whether yhat and y are plain arrays (above) of one dtype and one shape, 1-D or
    2-D: the common case of the elementwise losses (typenum receives the dtype's)."""
    cdef int t = _plain_typenum(yhat)
    if t < 0 or _plain_typenum(y) != t:
        return False
    if cnp.PyArray_NDIM(<cnp.ndarray>yhat) > 2 or not _same_shape(<cnp.ndarray>yhat, <cnp.ndarray>y):
        return False
    typenum[0] = t
    return True


cdef bint _loss_param(int kind, object param, double* value) noexcept:
    """The loss's parameter as the common case takes it: Huber's delta a Python float
    in (0, inf); the other kinds have none (0)."""
    if kind == LOSS_HUBER:
        if not _real_in(param, 0.0, True, float("inf"), True):
            return False
        value[0] = <double>param
    else:
        value[0] = 0.0
    return kind in (LOSS_MSE, LOSS_MAE, LOSS_HUBER, LOSS_BCE_WITH_LOGITS, LOSS_POISSON)


def loss_grad_plain(int kind, object param, object yhat, object y):
    """The unweighted gradient of the elementwise loss ``kind`` (LOSS_CODES, not
    cross-entropy) as a new array, for plain, finite yhat and y of one dtype
    and shape, 1-D or 2-D, and a Python float delta in (0, inf) for Huber
    (``param``; ignored by the others); else None."""
    cdef int t = -1
    cdef double value
    cdef cnp.ndarray p, q, out
    cdef Py_ssize_t n
    cdef bint ok
    if not _elementwise_pair(yhat, y, &t) or not _loss_param(kind, param, &value):
        return None
    p = <cnp.ndarray>yhat
    q = <cnp.ndarray>y
    out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(p), cnp.PyArray_DIMS(p), t, 0)
    n = cnp.PyArray_SIZE(p)
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = _PLAIN.loss_grad_f(kind, value, <const float*>cnp.PyArray_DATA(p),
                                    <const float*>cnp.PyArray_DATA(q), <float*>cnp.PyArray_DATA(out), n)
        else:
            ok = _PLAIN.loss_grad_d(kind, value, <const double*>cnp.PyArray_DATA(p),
                                    <const double*>cnp.PyArray_DATA(q), <double*>cnp.PyArray_DATA(out), n)
    return out if ok else None


cdef bint _none_negative(const floating* y, Py_ssize_t size) noexcept nogil:
    """Whether no y is below 0 (a read-only pass; NaN counts as not negative)."""
    cdef Py_ssize_t i
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    cdef floating zero = 0
    for i in range(size):
        if floating is float:
            bad32 |= y[i] < zero
        else:
            bad64 |= y[i] < zero
    return (bad32 | bad64) == 0


def loss_plain(int kind, object param, object yhat, object y):
    """The unweighted elementwise loss ``kind`` (LOSS_CODES, not cross-entropy) for
    plain yhat and y of one dtype and shape (1-D or 2-D) and a Python float
    delta in (0, inf) for Huber, from loss_value_kernel (the value alone, summed
    in eight vectorised lanes: loss_grad_kernel's per-element values, summed in
    another order, so within the bound its docstring states of the converting
    path's value, not bit for bit); None for anything else, for a Poisson ``y``
    with a value below 0, or when the loss is not finite. Every non-finite
    input makes these losses non-finite (inf - inf, 0 * inf and NaN are NaN),
    so a finite loss says the inputs were finite; a non-finite one goes to
    the converting path, which refuses a non-finite input by name or returns
    the overflowed loss."""
    cdef int t = -1
    cdef double value, loss = 0.0
    cdef cnp.ndarray p, q
    cdef Py_ssize_t n, C
    cdef bint ok = True
    if not _elementwise_pair(yhat, y, &t) or not _loss_param(kind, param, &value):
        return None
    p = <cnp.ndarray>yhat
    q = <cnp.ndarray>y
    n = cnp.PyArray_DIM(p, 0)
    C = cnp.PyArray_SIZE(p) // n
    with nogil:
        if t == cnp.NPY_FLOAT:
            if kind == LOSS_POISSON:
                ok = _none_negative(<const float*>cnp.PyArray_DATA(q), n * C)
            if ok:
                loss = _PLAIN.loss_f(kind, value, <const float*>cnp.PyArray_DATA(p),
                                     <const float*>cnp.PyArray_DATA(q), n * C)
        else:
            if kind == LOSS_POISSON:
                ok = _none_negative(<const double*>cnp.PyArray_DATA(q), n * C)
            if ok:
                loss = _PLAIN.loss_d(kind, value, <const double*>cnp.PyArray_DATA(p),
                                     <const double*>cnp.PyArray_DATA(q), n * C)
    if not ok or loss - loss != 0:       # a negative count; NaN or infinite
        return None
    return loss


cdef bint _labels_as(const char* labels, int itemsize, floating* out, Py_ssize_t n, Py_ssize_t C) noexcept nogil:
    """Copy n signed integer labels (itemsize 4 or 8) into ``out`` as numbers, and
    whether each is a class index in [0, C)."""
    cdef Py_ssize_t i, bad = 0
    cdef int64_t v
    for i in range(n):
        if itemsize == 8:
            v = (<const int64_t*>labels)[i]
        else:
            v = (<const int32_t*>labels)[i]
        bad += (v < 0) | (v >= C)
        out[i] = <floating>v
    return bad == 0


def cross_entropy_plain(object logits, object labels, bint want_grad):
    """The unweighted cross-entropy (a float) or, with ``want_grad``, its gradient (a
    new array), from loss_grad_kernel as the converting path calls it (the widest
    walker build's copy: the same bits), for
    plain finite 2-D logits and a plain 1-D array of one signed 32- or 64-bit
    integer label per row, each in [0, n_classes); else None. The logits'
    finiteness is checked in a read-only pass first: a -inf logit that is not
    the label leaves both the loss and the gradient finite, so the result
    cannot tell (the pass costs a multiply-add per value where the kernel computes
    two exponentials)."""
    cdef int t = _plain_typenum(logits)
    cdef cnp.ndarray z, lab, grad = None
    cdef Py_ssize_t n, C
    cdef int itemsize
    cdef void* scratch
    cdef void* gp = NULL
    cdef double loss = 0.0, wsum
    cdef bint ok
    if t < 0 or cnp.PyArray_NDIM(<cnp.ndarray>logits) != 2 or not cnp.PyArray_CheckExact(labels):
        return None
    z = <cnp.ndarray>logits
    lab = <cnp.ndarray>labels
    n, C = cnp.PyArray_DIM(z, 0), cnp.PyArray_DIM(z, 1)
    itemsize = cnp.PyArray_ITEMSIZE(lab)
    if (cnp.PyArray_NDIM(lab) != 1 or cnp.PyArray_DIM(lab, 0) != n or not cnp.PyArray_ISSIGNED(lab)
            or (itemsize != 4 and itemsize != 8) or not cnp.PyArray_ISCARRAY_RO(lab)
            or not cnp.PyArray_ISNOTSWAPPED(lab)):
        return None
    scratch = malloc(n * cnp.PyArray_ITEMSIZE(z))
    if scratch == NULL:
        return None
    if want_grad:
        grad = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(z), t, 0)
        gp = cnp.PyArray_DATA(grad)
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = (_labels_as(<const char*>cnp.PyArray_DATA(lab), itemsize, <float*>scratch, n, C)
                  and _PLAIN.finite_f(<const float*>cnp.PyArray_DATA(z), n * C))
            if ok:
                loss = _PLAIN.shared_loss_f(LOSS_CROSS_ENTROPY, 0.0, <const float*>cnp.PyArray_DATA(z),
                                            <const float*>scratch, NULL, <float*>gp, n, C, C, 1, &wsum)
        else:
            ok = (_labels_as(<const char*>cnp.PyArray_DATA(lab), itemsize, <double*>scratch, n, C)
                  and _PLAIN.finite_d(<const double*>cnp.PyArray_DATA(z), n * C))
            if ok:
                loss = _PLAIN.shared_loss_d(LOSS_CROSS_ENTROPY, 0.0, <const double*>cnp.PyArray_DATA(z),
                                            <const double*>scratch, NULL, <double*>gp, n, C, C, 1, &wsum)
    free(scratch)
    if not ok:
        return None
    return grad if want_grad else loss


cdef bint _apart(cnp.ndarray a, cnp.ndarray b) noexcept:
    """Whether the buffers of a and b share no byte."""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    return not (a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a))


#: sgd_update_checked's block (values) and the entries of its undo log (for the tests).
SGD_BLOCK_VALUES = int(SGD_BLOCK)
SGD_LOG_ENTRIES = int(SGD_LOG)


def sgd_update_plain(object param, object grad, object lr):
    """param -= lr * grad in place, for a plain, writable param and a plain grad of
    its dtype and shape that does not overlap it, a float lr in (0, inf), and
    finite values (sgd_update_checked, in the widest walker build's loop:
    each block checked, then updated; a bad value undoes what was written).
    True when done; False hands the call back unchanged (a non-finite value,
    or a step that overflows: the converting path gives NumPy's inf)."""
    cdef int t = _plain_typenum(param)
    cdef cnp.ndarray p, g
    cdef Py_ssize_t n
    cdef double rate
    cdef bint ok
    if t < 0 or _plain_typenum(grad) != t or type(lr) is not float:
        return False
    rate = <double>lr
    if not (rate > 0 and rate < float("inf")):
        return False
    p = <cnp.ndarray>param
    g = <cnp.ndarray>grad
    if not cnp.PyArray_ISWRITEABLE(p) or not _same_shape(p, g):
        return False
    if not _apart(p, g):
        return False        # overlapping buffers: the converting path copies grad first
    n = cnp.PyArray_SIZE(p)
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = _PLAIN.sgd_f(<float*>cnp.PyArray_DATA(p), <const float*>cnp.PyArray_DATA(g), rate, n)
        else:
            ok = _PLAIN.sgd_d(<double*>cnp.PyArray_DATA(p), <const double*>cnp.PyArray_DATA(g), rate, n)
    return ok


cdef bint _real_in(object x, double low, bint low_open, double high, bint high_open) noexcept:
    """Whether x is exactly a Python float, finite, in the interval from low to high
    (each end closed unless open): the hyperparameters the common case takes."""
    cdef double v
    if type(x) is not float:
        return False
    v = <double>x
    if not (v - v == 0):        # NaN or infinite
        return False
    return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)


cdef int _update_typenum(object param, object grad, object state1, object state2) noexcept:
    """The type number of an in-place update's plain arrays (above) of one dtype and
    shape, ``param`` and the states writable, no two sharing memory; else -1.
    ``state2`` may be None (a rule with one state)."""
    cdef int t = _plain_typenum(param)
    cdef cnp.ndarray p, g, m, v
    if t < 0 or _plain_typenum(grad) != t or _plain_typenum(state1) != t:
        return -1
    if state2 is not None and _plain_typenum(state2) != t:
        return -1
    p, g, m = <cnp.ndarray>param, <cnp.ndarray>grad, <cnp.ndarray>state1
    if not (cnp.PyArray_ISWRITEABLE(p) and cnp.PyArray_ISWRITEABLE(m)
            and _same_shape(p, g) and _same_shape(p, m)
            and _apart(p, g) and _apart(p, m) and _apart(g, m)):
        return -1
    if state2 is not None:
        v = <cnp.ndarray>state2
        if not (cnp.PyArray_ISWRITEABLE(v) and _same_shape(p, v) and _apart(p, v) and _apart(g, v)
                and _apart(m, v)):
            return -1
    return t


cdef bint _run_update(int t, Opt* opt, object param, object grad, object state1, object state2) noexcept:
    """update_kernel (a read-only pass checks every new value, then the storing pass),
    in the widest walker build's loop, on arrays _update_typenum accepted."""
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>param)
    cdef const void* g = cnp.PyArray_DATA(<cnp.ndarray>grad)
    cdef void* m = cnp.PyArray_DATA(<cnp.ndarray>state1)
    cdef void* v = NULL if state2 is None else cnp.PyArray_DATA(<cnp.ndarray>state2)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    cdef bint ok
    with nogil:
        if t == cnp.NPY_FLOAT:
            ok = _PLAIN.update_f(opt, <float*>p, <const float*>g, <float*>m, <float*>v, n)
        else:
            ok = _PLAIN.update_d(opt, <double*>p, <const double*>g, <double*>m, <double*>v, n)
    return ok


def adam_update_plain(object param, object grad, object exp_avg, object exp_avg_sq, object step, object lr,
                      object beta1, object beta2, object eps, object weight_decay, object decoupled):
    """One Adam (AdamW with ``decoupled``) step in place, as ops.adam_update's converting
    path computes it (update_kernel, see _run_update), for plain arrays of one
    dtype and shape (param and the moments writable; no two sharing memory),
    a Python int step >= 1, Python floats in range and a bool ``decoupled``.
    True when done; False hands the call back with nothing written (anything
    else, or a new value that would not be finite: the converting path then
    refuses it by name)."""
    cdef int t
    cdef Opt opt
    if type(step) is not int or not (decoupled is True or decoupled is False):
        return False
    if not (1 <= step < 2 ** 62 and _real_in(lr, 0.0, True, float("inf"), True)
            and _real_in(beta1, 0.0, False, 1.0, True) and _real_in(beta2, 0.0, False, 1.0, True)
            and _real_in(eps, 0.0, True, float("inf"), True)
            and _real_in(weight_decay, 0.0, False, float("inf"), True)):
        return False
    t = _update_typenum(param, grad, exp_avg, exp_avg_sq)
    if t < 0:
        return False
    opt.kind = OPT_ADAMW if decoupled else OPT_ADAM
    opt.lr = <double>lr
    opt.momentum = 0.0
    opt.nesterov = False
    opt.weight_decay = <double>weight_decay
    opt.beta1 = <double>beta1
    opt.beta2 = <double>beta2
    opt.eps = <double>eps
    opt.step = <long>step - 1
    return _run_update(t, &opt, param, grad, exp_avg, exp_avg_sq)


def sgd_momentum_update_plain(object param, object grad, object momentum_buffer, object lr, object momentum,
                              object nesterov, object weight_decay):
    """One step of SGD with momentum in place, as ops.sgd_momentum_update's converting
    path computes it (update_kernel, see _run_update), for plain arrays of one
    dtype and shape (param and the buffer writable; no two sharing memory),
    Python floats lr in (0, inf), momentum in (0, 1) and weight_decay in
    [0, inf), and a bool ``nesterov``. momentum 0 is handed back: the rule
    then never reads the buffer, whose finiteness the converting path checks.
    True when done; False hands the call back with nothing written (anything
    else, or a new value that would not be finite: every non-finite input
    makes one, and the converting path then refuses it by name)."""
    cdef int t
    cdef Opt opt
    if not (nesterov is True or nesterov is False):
        return False
    if not (_real_in(lr, 0.0, True, float("inf"), True) and _real_in(momentum, 0.0, True, 1.0, True)
            and _real_in(weight_decay, 0.0, False, float("inf"), True)):
        return False
    t = _update_typenum(param, grad, momentum_buffer, None)
    if t < 0:
        return False
    opt.kind = OPT_SGD
    opt.lr = <double>lr
    opt.momentum = <double>momentum
    opt.nesterov = nesterov is True
    opt.weight_decay = <double>weight_decay
    opt.beta1 = 0.9
    opt.beta2 = 0.999
    opt.eps = 1e-8
    opt.step = 0
    return _run_update(t, &opt, param, grad, momentum_buffer, None)


cdef bint _inputs_finite(int t, cnp.ndarray a, cnp.ndarray b, cnp.ndarray c) noexcept:
    """Whether every value of three plain arrays of the type number t is finite
    (read-only passes, without the GIL)."""
    cdef const void* p[3]
    cdef Py_ssize_t size[3]
    cdef bint ok = True
    cdef int i
    p[0], p[1], p[2] = cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_DATA(c)
    size[0], size[1], size[2] = cnp.PyArray_SIZE(a), cnp.PyArray_SIZE(b), cnp.PyArray_SIZE(c)
    with nogil:
        for i in range(3):
            if t == cnp.NPY_FLOAT:
                ok = ok and all_finite_kernel(<const float*>p[i], size[i])
            else:
                ok = ok and all_finite_kernel(<const double*>p[i], size[i])
    return ok


cdef bint _edges_finite(const floating* a, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """Whether row 0 and column 0 of a sample-major (rows, cols) array are finite.

    Where every term of a product is computed, a non-finite factor makes a whole
    row or column of it non-finite (inf * 0 and inf - inf are NaN, and no sum
    comes back from inf or NaN): of Y = X @ W + b, X[i, kk] all of row i, W[kk, j]
    and b[j] all of column j, so that Y's first row and first column tell (n + m
    values, not n m). An overflow of finite values elsewhere goes through, as the
    converting path returns it."""
    cdef floating lane = 0, zero = 0
    cdef Py_ssize_t i
    if not all_finite_kernel(a, cols):
        return False
    for i in range(rows):
        lane += a[i * cols] * zero
    return lane == lane


cdef int _dense_typenum(object X, object W, object other, int other_ndim) noexcept:
    """The type number of plain 2-D X and W and a plain ``other`` of other_ndim
    dimensions, all of one dtype, with X's columns W's rows; else -1."""
    cdef int t = _plain_typenum(X)
    if t < 0 or _plain_typenum(W) != t or _plain_typenum(other) != t:
        return -1
    if (cnp.PyArray_NDIM(<cnp.ndarray>X) != 2 or cnp.PyArray_NDIM(<cnp.ndarray>W) != 2
            or cnp.PyArray_NDIM(<cnp.ndarray>other) != other_ndim
            or cnp.PyArray_DIM(<cnp.ndarray>X, 1) != cnp.PyArray_DIM(<cnp.ndarray>W, 0)):
        return -1
    return t


def dense_forward_plain(object X, object W, object b):
    """X @ W + b as a new array, as dense_forward computes it, for plain finite X
    (n, k), W (k, m) and b (m,) of one dtype; else None.

    Finiteness: where every term of every output is computed, a non-finite
    input makes a whole row or column of outputs non-finite (X[i, kk] all of
    row i, W[kk, j] and b[j] all of column j; inf * 0 and inf - inf are NaN):
    the output's first row and first column afterwards tell (_edges_finite,
    n + m values), and a non-finite one hands the call to the converting
    path, which refuses the input by name or returns the overflowed product.
    This module's loops compute every term; so does a BLAS that ``set_blas``
    found to propagate a non-finite value multiplied by zeros (OpenBLAS). For
    another BLAS (which may skip the products of zeros, where inf * 0 would
    have been NaN), one read-only pass over each input first: n k + k m + m
    values (a 256 x 784 X times a 784 x 512 W: 602,000 against 768)."""
    cdef int t = _dense_typenum(X, W, b, 1)
    cdef cnp.ndarray x, w, bb, out
    cdef cnp.npy_intp dims[2]
    cdef Py_ssize_t k
    cdef int rc = 0
    cdef bint ok = True, inputs_first
    if t < 0:
        return None
    x, w, bb = <cnp.ndarray>X, <cnp.ndarray>W, <cnp.ndarray>b
    if cnp.PyArray_DIM(bb, 0) != cnp.PyArray_DIM(w, 1):
        return None
    dims[0] = cnp.PyArray_DIM(x, 0)
    dims[1] = cnp.PyArray_DIM(w, 1)
    k = cnp.PyArray_DIM(x, 1)
    out = cnp.PyArray_EMPTY(2, dims, t, 0)
    inputs_first = use_blas(&_BLAS, dims[0], k, dims[1]) and not _BLAS_CHECKS_OUTPUT
    if inputs_first:
        ok = _inputs_finite(t, x, w, bb)
    with nogil:
        if ok and t == cnp.NPY_FLOAT:
            rc = _dense_forward(&_BLAS, <const float*>cnp.PyArray_DATA(x), <const float*>cnp.PyArray_DATA(w),
                                <const float*>cnp.PyArray_DATA(bb), <float*>cnp.PyArray_DATA(out),
                                dims[0], k, dims[1])
            if rc == 0 and not inputs_first:
                ok = _edges_finite(<const float*>cnp.PyArray_DATA(out), dims[0], dims[1])
        elif ok:
            rc = _dense_forward(&_BLAS, <const double*>cnp.PyArray_DATA(x), <const double*>cnp.PyArray_DATA(w),
                                <const double*>cnp.PyArray_DATA(bb), <double*>cnp.PyArray_DATA(out),
                                dims[0], k, dims[1])
            if rc == 0 and not inputs_first:
                ok = _edges_finite(<const double*>cnp.PyArray_DATA(out), dims[0], dims[1])
    return out if ok and rc == 0 else None


def dense_backward_plain(object X, object W, object dY):
    """(dX, dW, db) as new arrays, as dense_backward computes them, for plain finite
    X (n, k), W (k, m) and dY (n, m) of one dtype; else None.

    Finiteness, as dense_forward_plain's: where every term is computed (this
    module's loops, a BLAS that propagates; see set_blas), by the outputs
    afterwards: a non-finite X[i, kk] makes row kk of dW = X.T @ dY non-finite,
    W[kk, j] column kk of dX = dY @ W.T, dY[i, j] db[j] (and more), so that dW's
    first column, dX's first row and db tell (2 k + m values). Otherwise one
    read-only pass over each input first."""
    cdef int t = _dense_typenum(X, W, dY, 2)
    cdef cnp.ndarray x, w, d, dX, dW, db
    cdef Py_ssize_t n, k, m
    cdef int rc = 0
    cdef bint ok = True, inputs_first
    if t < 0:
        return None
    x, w, d = <cnp.ndarray>X, <cnp.ndarray>W, <cnp.ndarray>dY
    if cnp.PyArray_DIM(d, 0) != cnp.PyArray_DIM(x, 0) or cnp.PyArray_DIM(d, 1) != cnp.PyArray_DIM(w, 1):
        return None
    n, k, m = cnp.PyArray_DIM(x, 0), cnp.PyArray_DIM(x, 1), cnp.PyArray_DIM(w, 1)
    dX = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(x), t, 0)
    dW = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(w), t, 0)
    db = cnp.PyArray_EMPTY(1, cnp.PyArray_DIMS(w) + 1, t, 0)
    inputs_first = use_blas(&_BLAS, n, k, m) and not _BLAS_CHECKS_OUTPUT
    if inputs_first:
        ok = _inputs_finite(t, x, w, d)
    with nogil:
        if ok and t == cnp.NPY_FLOAT:
            rc = _dense_backward(&_BLAS, <const float*>cnp.PyArray_DATA(x), <const float*>cnp.PyArray_DATA(w),
                                 <const float*>cnp.PyArray_DATA(d), <float*>cnp.PyArray_DATA(dX),
                                 <float*>cnp.PyArray_DATA(dW), <float*>cnp.PyArray_DATA(db), n, k, m)
            if rc == 0 and not inputs_first:
                ok = (all_finite_kernel(<const float*>cnp.PyArray_DATA(db), m)
                      and _edges_finite(<const float*>cnp.PyArray_DATA(dX), 1, k)
                      and _edges_finite(<const float*>cnp.PyArray_DATA(dW), k, m))
        elif ok:
            rc = _dense_backward(&_BLAS, <const double*>cnp.PyArray_DATA(x), <const double*>cnp.PyArray_DATA(w),
                                 <const double*>cnp.PyArray_DATA(d), <double*>cnp.PyArray_DATA(dX),
                                 <double*>cnp.PyArray_DATA(dW), <double*>cnp.PyArray_DATA(db), n, k, m)
            if rc == 0 and not inputs_first:
                ok = (all_finite_kernel(<const double*>cnp.PyArray_DATA(db), m)
                      and _edges_finite(<const double*>cnp.PyArray_DATA(dX), 1, k)
                      and _edges_finite(<const double*>cnp.PyArray_DATA(dW), k, m))
    return (dX, dW, db) if ok and rc == 0 else None
