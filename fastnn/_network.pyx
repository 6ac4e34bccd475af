"""Walk a whole network in one call without the GIL.

Design
------
``fastnn.model.Sequential`` compiles its layers into a *plan*: a small
C-contiguous integer array with one row of ``N_FIELDS`` plain fields per
Dense layer or stand-alone ReLU (see ``PLAN_FIELDS``); a ReLU that follows a
Dense is folded into it (``relu`` flag), so its output is computed in the
Dense's output pass and only the activation is stored (``A > 0`` exactly
where ``Z > 0``, which is all the backward pass needs). All parameters live
in one flat buffer, their gradients in a second with the same layout, and
every activation and activation-gradient in one workspace, so a forward
pass, a training step or a whole epoch is one loop over the plan with no
Python object in sight.

:class:`Network` owns the plan, the buffers and the workspace. Its methods
take a fast path for input that is already right (an exact ``ndarray`` of
the network's dtype, C-contiguous, aligned, native byte order, of the right
shape); anything else returns ``SLOW`` and the Python layer validates and
converts it, then calls again. Finiteness of X and y is checked inside the
step's first pass.

Dense layers multiply with fastnn's own loops when they are small and with
a BLAS ``gemm`` (see ``fastnn._blas``) when ``n_samples * in * out`` reaches
``blas_min_work``; both are called without the GIL.

Workspace layout for a batch of ``n`` samples (``acts_width`` is the sum of
the rows' output widths, ``max_width`` the largest)::

    [ activations: n * acts_width | grad A: n * max_width | grad B: n * max_width ]

Row ``l`` writes its output at ``n * plan[l, ACT]``; the backward pass
ping-pongs between the two gradient blocks.

A training step returns its loss (>= 0), or a negative code: ``SLOW``,
``BAD_INPUT`` (NaN or infinity in X or y), ``BAD_LOSS`` (the loss is not
finite) or ``BAD_UPDATE`` (the update would make a parameter non-finite).
After a negative code the parameters are exactly as they were.
"""

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.string cimport memcpy
from cython cimport floating

from fastnn._kernels cimport (
    all_finite_kernel,
    dense_backward_kernel,
    dense_forward_kernel,
    mse_loss_grad_kernel,
    relu_backward_kernel,
    relu_forward_kernel,
)

import numpy as np

cnp.import_array()

cdef enum:
    KIND = 0        # KIND_DENSE or KIND_RELU
    IN = 1          # input width
    OUT = 2         # output width
    W_OFF = 3       # offset of W (in x out, row-major) in params; -1 for ReLU
    B_OFF = 4       # offset of b (out,) in params; -1 for ReLU
    ACT = 5         # per-sample offset of this row's output in the activations
    RELU = 6        # 1 when a ReLU is folded into this Dense
    N_FIELDS = 7

cdef enum:
    KIND_DENSE_ = 0
    KIND_RELU_ = 1

PLAN_FIELDS = ("kind", "in", "out", "w_offset", "b_offset", "act_offset", "relu")
KIND_DENSE = KIND_DENSE_
KIND_RELU = KIND_RELU_

cdef enum:
    SLOW_ = -1
    BAD_INPUT_ = -2
    BAD_LOSS_ = -3
    BAD_UPDATE_ = -4

SLOW = float(SLOW_)
BAD_INPUT = float(BAD_INPUT_)
BAD_LOSS = float(BAD_LOSS_)
BAD_UPDATE = float(BAD_UPDATE_)

#: Rows of a batch predicted at once (bounds the workspace of predict).
PREDICT_CHUNK = 1024

# ---------------------------------------------------------------------------
# BLAS
# ---------------------------------------------------------------------------

cdef enum:
    BLAS_NONE = 0
    BLAS_CBLAS64 = 1      # CBLAS, 64-bit integers (NumPy's scipy-openblas64)
    BLAS_FORTRAN32 = 2    # Fortran, 32-bit integers (scipy.linalg.cython_blas)
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

cdef struct Blas:
    int kind
    void* dgemm
    void* sgemm


cdef void _gemm(
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
# The walk
# ---------------------------------------------------------------------------

cdef struct NetC:
    const Py_ssize_t* plan
    Py_ssize_t n_rows          # rows of the plan
    Py_ssize_t n_params
    Py_ssize_t n_in, n_out
    Py_ssize_t acts_width, max_width
    Blas blas
    Py_ssize_t blas_min_work   # use BLAS when n * in * out >= this


cdef inline bint _use_blas(const NetC* net, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m) noexcept nogil:
    return net.blas.kind != BLAS_NONE and n * k * m >= net.blas_min_work


cdef inline Py_ssize_t _last_act(const NetC* net) noexcept nogil:
    return net.plan[(net.n_rows - 1) * N_FIELDS + ACT]


cdef void _dense_forward(
    const NetC* net, const floating* X, const floating* W, const floating* b,
    floating* Y, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m, bint relu,
) noexcept nogil:
    cdef Py_ssize_t i, j
    if not _use_blas(net, n, k, m):
        dense_forward_kernel(X, W, b, Y, n, k, m, relu)
        return
    for i in range(n):
        memcpy(Y + i * m, b, m * sizeof(floating))
    _gemm(&net.blas, False, False, n, m, k, X, k, W, m, 1, Y, m)
    if relu:
        relu_forward_kernel(Y, Y, n * m)


cdef void _forward(
    const NetC* net, const floating* params, const floating* X, floating* work, Py_ssize_t n,
) noexcept nogil:
    """Run every row of the plan on the n rows of X; row l's output lands at work + n * ACT."""
    cdef Py_ssize_t l
    cdef const Py_ssize_t* rec
    cdef const floating* inp = X
    cdef floating* out
    for l in range(net.n_rows):
        rec = net.plan + l * N_FIELDS
        out = work + n * rec[ACT]
        if rec[KIND] == KIND_DENSE_:
            _dense_forward(net, inp, params + rec[W_OFF], params + rec[B_OFF], out,
                           n, rec[IN], rec[OUT], rec[RELU] != 0)
        else:
            relu_forward_kernel(inp, out, n * rec[IN])
        inp = out


cdef void _dense_backward(
    const NetC* net, const floating* X, const floating* W, floating* G,
    floating* dX, floating* dW, floating* db, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m,
) noexcept nogil:
    """dW = X.T @ G, db = G.sum(0), and dX = G @ W.T unless dX is NULL."""
    cdef Py_ssize_t i, j
    cdef floating* g_row
    if not _use_blas(net, n, k, m):
        dense_backward_kernel(X, W, G, dX, dW, db, n, k, m)
        return
    for j in range(m):
        db[j] = 0
    for i in range(n):
        g_row = G + i * m
        for j in range(m):
            db[j] += g_row[j]
    _gemm(&net.blas, True, False, k, m, n, X, k, G, m, 0, dW, m)
    if dX != NULL:
        _gemm(&net.blas, False, True, n, k, m, G, m, W, m, 0, dX, k)


cdef void _backward(
    const NetC* net, const floating* params, floating* grads, const floating* X,
    floating* work, Py_ssize_t n, floating* g_cur, floating* g_next,
) noexcept nogil:
    """Back-propagate g_cur (dL/d output of the last row) into grads."""
    cdef Py_ssize_t l
    cdef const Py_ssize_t* rec
    cdef const floating* inp
    cdef floating* swap
    for l in range(net.n_rows - 1, -1, -1):
        rec = net.plan + l * N_FIELDS
        inp = X if l == 0 else work + n * net.plan[(l - 1) * N_FIELDS + ACT]
        if rec[KIND] == KIND_DENSE_:
            if rec[RELU]:
                # The folded ReLU: its output A is this row's output, and A > 0 iff Z > 0.
                relu_backward_kernel(work + n * rec[ACT], g_cur, g_cur, n * rec[OUT])
            # The network's input needs no gradient: dX is skipped for l == 0.
            _dense_backward(net, inp, params + rec[W_OFF], g_cur, g_next if l > 0 else NULL,
                            grads + rec[W_OFF], grads + rec[B_OFF], n, rec[IN], rec[OUT])
            swap = g_cur
            g_cur = g_next
            g_next = swap
        elif l > 0:
            relu_backward_kernel(inp, g_cur, g_cur, n * rec[IN])


cdef bint _sgd_step(floating* params, const floating* grads, double lr, Py_ssize_t n_params) noexcept nogil:
    """params -= lr * grads, only if every updated value is finite.

    The first pass computes the updates without storing them and checks them
    (x * 0 is NaN exactly when x is not finite); the second applies the same
    arithmetic. A step that would overflow thus changes nothing.
    """
    cdef Py_ssize_t i
    cdef floating step = <floating>lr
    cdef floating acc = 0
    for i in range(n_params):
        acc += (params[i] - step * grads[i]) * 0
    if acc != 0:
        return False
    for i in range(n_params):
        params[i] -= step * grads[i]
    return True


cdef double _train_step(
    const NetC* net, floating* params, floating* grads, const floating* X, const floating* y,
    floating* work, Py_ssize_t n, double lr, bint check_input,
) noexcept nogil:
    """One forward + MSE + backward + SGD update on n rows; the loss, or a negative code."""
    cdef floating* g_a = work + n * net.acts_width
    cdef floating* g_b = g_a + n * net.max_width
    cdef double loss
    if check_input:
        if not all_finite_kernel(X, n * net.n_in) or not all_finite_kernel(y, n * net.n_out):
            return BAD_INPUT_
    _forward(net, params, X, work, n)
    loss = mse_loss_grad_kernel(work + n * _last_act(net), y, g_a, n * net.n_out)
    if not isfinite(loss):
        return BAD_LOSS_
    _backward(net, params, grads, X, work, n, g_a, g_b)
    if not _sgd_step(params, grads, lr, net.n_params):
        return BAD_UPDATE_
    return loss


cdef double _train_epoch(
    const NetC* net, floating* params, floating* grads, const floating* X, const floating* y,
    Py_ssize_t n, const Py_ssize_t* order, Py_ssize_t batch_size, floating* work,
    floating* batch_X, floating* batch_y, double lr, Py_ssize_t* done,
) noexcept nogil:
    """One epoch of mini-batch SGD over the rows in ``order`` (NULL: in place, in order).

    Returns the mean over samples of each batch's loss before its update, or
    the first negative code (then ``done`` holds the samples already used).
    """
    cdef Py_ssize_t start = 0, stop, nb, i, row
    cdef double loss, total = 0.0
    cdef const floating* xb
    cdef const floating* yb
    while start < n:
        stop = start + batch_size if start + batch_size < n else n
        nb = stop - start
        if order != NULL:
            for i in range(nb):
                row = order[start + i]
                memcpy(batch_X + i * net.n_in, X + row * net.n_in, net.n_in * sizeof(floating))
                memcpy(batch_y + i * net.n_out, y + row * net.n_out, net.n_out * sizeof(floating))
            xb = batch_X
            yb = batch_y
        else:
            xb = X + start * net.n_in
            yb = y + start * net.n_out
        loss = _train_step(net, params, grads, xb, yb, work, nb, lr, False)
        if loss < 0:
            done[0] = start
            return loss
        total += loss * nb
        start = stop
    done[0] = n
    return total / n


# ---------------------------------------------------------------------------
# The Python face
# ---------------------------------------------------------------------------

cdef inline bint _fits(object a, int typenum, Py_ssize_t ndim) noexcept:
    """True for an exact ndarray of typenum, ndim dims, C-contiguous, aligned, native order."""
    cdef cnp.ndarray arr
    if not cnp.PyArray_CheckExact(a):
        return False
    arr = <cnp.ndarray>a
    return (cnp.PyArray_NDIM(arr) == ndim and cnp.PyArray_TYPE(arr) == typenum
            and cnp.PyArray_ISCARRAY_RO(arr) and cnp.PyArray_ISNOTSWAPPED(arr))


cdef class Network:
    """A compiled plan with its parameter, gradient and work buffers.

    Parameters
    ----------
    plan : ndarray of intp, (n_rows, N_FIELDS)
    params, grads : 1-D C-contiguous float32 or float64 arrays of one size
        Kept by reference: the network reads and updates them in place.
    blas : fastnn._blas.BlasInfo or None
    blas_min_work : int
        A Dense product uses BLAS when n_samples * in * out reaches this.
    """

    cdef NetC net
    cdef readonly object plan, params, grads
    cdef object work, batch_X, batch_y
    cdef readonly bint is_double
    cdef int typenum
    cdef readonly str blas_source

    def __init__(self, plan, params, grads, blas=None, Py_ssize_t blas_min_work=1 << 62):
        cdef Py_ssize_t l, n_in, n_out, acts_width = 0, max_width = 0
        cdef const Py_ssize_t[:, ::1] rows = plan
        params_dtype = np.dtype(params.dtype)
        if params_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"params must be float32 or float64, got {params_dtype}")
        if not (_fits(params, params_dtype.num, 1) and _fits(grads, params_dtype.num, 1)
                and cnp.PyArray_ISWRITEABLE(params) and cnp.PyArray_ISWRITEABLE(grads)):
            raise ValueError("params and grads must be writable, C-contiguous 1-D arrays of one dtype")
        if grads.shape[0] != params.shape[0]:
            raise ValueError("params and grads must have the same size")
        if rows.shape[1] != N_FIELDS or rows.shape[0] == 0:
            raise ValueError(f"plan must have shape (n_rows >= 1, {N_FIELDS})")
        for l in range(rows.shape[0]):
            n_in = rows[l, IN]
            n_out = rows[l, OUT]
            if n_in <= 0 or n_out <= 0:
                raise ValueError(f"plan row {l}: widths must be positive")
            if l > 0 and n_in != rows[l - 1, OUT]:
                raise ValueError(f"plan row {l}: input width does not chain")
            if rows[l, ACT] != acts_width:
                raise ValueError(f"plan row {l}: activation offset out of place")
            if rows[l, KIND] == KIND_DENSE_:
                if (rows[l, W_OFF] < 0 or rows[l, W_OFF] + n_in * n_out > params.shape[0]
                        or rows[l, B_OFF] < 0 or rows[l, B_OFF] + n_out > params.shape[0]):
                    raise ValueError(f"plan row {l}: parameter offsets out of range")
            elif rows[l, KIND] == KIND_RELU_:
                if n_in != n_out or rows[l, RELU] != 0:
                    raise ValueError(f"plan row {l}: a ReLU keeps its width")
            else:
                raise ValueError(f"plan row {l}: unknown kind {rows[l, KIND]}")
            acts_width += n_out
            max_width = max(max_width, n_out)
        self.plan = np.array(plan, dtype=np.intp, order="C")   # a private copy
        self.plan.setflags(write=False)
        self.params = params
        self.grads = grads
        self.is_double = params_dtype == np.dtype(np.float64)
        self.typenum = params_dtype.num
        self.net.plan = <const Py_ssize_t*>cnp.PyArray_DATA(self.plan)
        self.net.n_rows = rows.shape[0]
        self.net.n_params = params.shape[0]
        self.net.n_in = rows[0, IN]
        self.net.n_out = rows[rows.shape[0] - 1, OUT]
        self.net.acts_width = acts_width
        self.net.max_width = max_width
        self.net.blas.kind = BLAS_NONE
        self.net.blas_min_work = blas_min_work
        self.blas_source = "none"
        if blas is not None and blas.kind in (BLAS_CBLAS64, BLAS_FORTRAN32) and blas.dgemm and blas.sgemm:
            self.net.blas.kind = blas.kind
            self.net.blas.dgemm = <void*><size_t>blas.dgemm
            self.net.blas.sgemm = <void*><size_t>blas.sgemm
            self.blas_source = blas.source
            if blas.kind == BLAS_FORTRAN32:
                # 32-bit BLAS integers: keep every dimension in range by never
                # handing BLAS a batch above this many rows' worth of work.
                self.net.blas_min_work = max(blas_min_work, 0)
        self.work = np.empty(0, dtype=params_dtype)
        self.batch_X = self.batch_y = self.work

    @property
    def n_in(self):
        return self.net.n_in

    @property
    def n_out(self):
        return self.net.n_out

    @property
    def workspace_per_sample(self):
        return self.net.acts_width + 2 * self.net.max_width

    @property
    def blas_min_work(self):
        """A Dense product uses BLAS (when one was found) once n * in * out reaches this."""
        return self.net.blas_min_work

    @blas_min_work.setter
    def blas_min_work(self, Py_ssize_t value):
        self.net.blas_min_work = value

    @property
    def uses_blas(self):
        return self.net.blas.kind != BLAS_NONE

    cdef char* _workspace(self, Py_ssize_t n_samples) except NULL:
        cdef Py_ssize_t needed = n_samples * (self.net.acts_width + 2 * self.net.max_width)
        if self.work.shape[0] < needed:
            self.work = np.empty(needed, dtype=self.params.dtype)
        return <char*>cnp.PyArray_DATA(self.work)

    cdef bint _fits_y(self, object y, Py_ssize_t n) noexcept:
        if _fits(y, self.typenum, 2):
            return y.shape[0] == n and y.shape[1] == self.net.n_out
        return self.net.n_out == 1 and _fits(y, self.typenum, 1) and y.shape[0] == n

    def predict(self, X):
        """The network's output for X, or None when X must be validated first."""
        cdef Py_ssize_t n, start, nb, chunk, n_out = self.net.n_out, n_in = self.net.n_in
        cdef cnp.npy_intp dims[2]
        cdef char* work
        cdef char* xp
        cdef char* outp
        cdef char* pp = <char*>cnp.PyArray_DATA(self.params)
        cdef Py_ssize_t itemsize = 8 if self.is_double else 4
        cdef bint finite = True
        if not _fits(X, self.typenum, 2) or X.shape[1] != n_in or X.shape[0] == 0:
            return None
        n = X.shape[0]
        chunk = min(n, PREDICT_CHUNK)
        dims[0] = n
        dims[1] = n_out
        out = cnp.PyArray_EMPTY(2, dims, self.typenum, 0)
        work = self._workspace(chunk)
        xp = <char*>cnp.PyArray_DATA(X)
        outp = <char*>cnp.PyArray_DATA(out)
        with nogil:
            if self.is_double:
                finite = all_finite_kernel(<const double*>xp, n * n_in)
            else:
                finite = all_finite_kernel(<const float*>xp, n * n_in)
            start = 0
            while finite and start < n:
                nb = min(chunk, n - start)
                if self.is_double:
                    _forward(&self.net, <const double*>pp, <const double*>xp + start * n_in, <double*>work, nb)
                    memcpy(<double*>outp + start * n_out, <double*>work + nb * _last_act(&self.net),
                           nb * n_out * itemsize)
                else:
                    _forward(&self.net, <const float*>pp, <const float*>xp + start * n_in, <float*>work, nb)
                    memcpy(<float*>outp + start * n_out, <float*>work + nb * _last_act(&self.net),
                           nb * n_out * itemsize)
                start += nb
        if not finite:
            return BAD_INPUT
        return out

    def train_step(self, X, y, double lr):
        """One SGD step on the MSE of one batch: the loss before the update, or a negative code."""
        cdef Py_ssize_t n
        cdef char* work
        cdef char* pp = <char*>cnp.PyArray_DATA(self.params)
        cdef char* gp = <char*>cnp.PyArray_DATA(self.grads)
        cdef char* xp
        cdef char* yp
        cdef double loss
        if not _fits(X, self.typenum, 2) or X.shape[1] != self.net.n_in or X.shape[0] == 0:
            return SLOW
        n = X.shape[0]
        if not self._fits_y(y, n):
            return SLOW
        work = self._workspace(n)
        xp = <char*>cnp.PyArray_DATA(X)
        yp = <char*>cnp.PyArray_DATA(y)
        with nogil:
            if self.is_double:
                loss = _train_step(&self.net, <double*>pp, <double*>gp, <const double*>xp,
                                   <const double*>yp, <double*>work, n, lr, True)
            else:
                loss = _train_step(&self.net, <float*>pp, <float*>gp, <const float*>xp,
                                   <const float*>yp, <float*>work, n, lr, True)
        return loss

    def train_epoch(self, X, y, order, Py_ssize_t batch_size, double lr):
        """One epoch of mini-batch SGD in one nogil call.

        ``X`` and ``y`` must already be valid and finite (this only checks
        that they fit); ``order`` is a permutation of the rows (intp), or
        None to visit them in place, in order. The last batch may be shorter.
        Returns ``(mean loss or negative code, samples done)``.
        """
        cdef Py_ssize_t n, i, done = 0, in_batch
        cdef const Py_ssize_t[::1] rows
        cdef const Py_ssize_t* order_p = NULL
        cdef char* work
        cdef char* pp = <char*>cnp.PyArray_DATA(self.params)
        cdef char* gp = <char*>cnp.PyArray_DATA(self.grads)
        cdef char* xp
        cdef char* yp
        cdef char* bx = NULL
        cdef char* by = NULL
        cdef double loss
        if not _fits(X, self.typenum, 2) or X.shape[1] != self.net.n_in or X.shape[0] == 0:
            raise ValueError("X must be a valid, non-empty C-contiguous array of the network's dtype")
        n = X.shape[0]
        if not self._fits_y(y, n):
            raise ValueError("y must be a C-contiguous array matching X and the network's outputs")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        in_batch = min(batch_size, n)
        if order is not None:
            rows = order
            if rows.shape[0] != n:
                raise ValueError("order must have one entry per row of X")
            for i in range(n):
                if rows[i] < 0 or rows[i] >= n:
                    raise ValueError("order holds a row index out of range")
            order_p = &rows[0]
            if (self.batch_X.ndim != 2 or self.batch_X.shape[0] < in_batch
                    or self.batch_X.shape[1] != self.net.n_in):
                self.batch_X = np.empty((in_batch, self.net.n_in), dtype=self.params.dtype)
                self.batch_y = np.empty((in_batch, self.net.n_out), dtype=self.params.dtype)
            bx = <char*>cnp.PyArray_DATA(self.batch_X)
            by = <char*>cnp.PyArray_DATA(self.batch_y)
        work = self._workspace(in_batch)
        xp = <char*>cnp.PyArray_DATA(X)
        yp = <char*>cnp.PyArray_DATA(y)
        with nogil:
            if self.is_double:
                loss = _train_epoch(&self.net, <double*>pp, <double*>gp, <const double*>xp,
                                    <const double*>yp, n, order_p, batch_size, <double*>work,
                                    <double*>bx, <double*>by, lr, &done)
            else:
                loss = _train_epoch(&self.net, <float*>pp, <float*>gp, <const float*>xp,
                                    <const float*>yp, n, order_p, batch_size, <float*>work,
                                    <float*>bx, <float*>by, lr, &done)
        return loss, done
