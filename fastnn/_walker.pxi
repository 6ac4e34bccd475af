"""Walk a whole network in one call without the GIL.

This source is compiled up to three times (see setup.py): as
fastnn._walker_baseline for any x86-64 (or other) CPU, and as
fastnn._walker_avx2 and fastnn._walker_avx512 for CPUs that have AVX2 or
AVX-512; fastnn._walker imports them, and the plan (fastnn._planner)
picks one per network. Sums in a fixed order, and no fused multiply-add
but in the register tiles of the AVX2 and AVX-512 builds (TILE_FMA): on
the same path (BLAS or own loops for each layer), the AVX2 and AVX-512
builds give the same bits, and the baseline build the same to rounding
(the same bits as they do when built with FASTNN_TILE_FMA=0).

Design
------
``fastnn.model.Sequential`` compiles its layers into a *plan*: a small
C-contiguous integer array with one row of ``N_FIELDS`` plain fields per
Dense layer or stand-alone activation (see ``PLAN_FIELDS``). An activation
that follows a Dense is folded into its row (the ``fn`` field), so it is
computed in the Dense's output pass and only its output A is stored: every
activation's derivative is written in terms of A (ReLU: A > 0, exactly
where Z > 0; tanh: 1 - A^2; ...). All parameters live in one flat buffer,
their gradients in a second with the same layout, the optimizer's state in
more, and every activation and activation-gradient in one workspace, so a
forward pass, a training step or a whole epoch is one loop over the plan
with no Python object in sight.

:class:`Network` owns the plan, the buffers and the workspace. Its methods
take a fast path for input that is already right (an exact ``ndarray`` of
the network's dtype, C-contiguous, aligned, native byte order, of the right
shape); anything else returns ``SLOW`` and the Python layer validates and
converts it, then calls again. Finiteness of X, y and the sample weights
(and the labels' range) is checked inside the step's first pass.

The loops themselves (Dense, activations, losses, optimizer updates) are
those of ``_kernels.pxi``, which fastnn.ops runs too; this file holds the
walk. Dense layers multiply with fastnn's own loops when they are small and
with a BLAS ``gemm`` (see ``fastnn._blas``) when the layer is large enough
(``use_blas``, from this build's thresholds in ``_tile.h``, measured with
``benchmarks/crossover.py``); both run without the GIL. The dtype is
picked once per call, in ``_run``.

Some functions here are longer than a reader would like, on purpose:
``_forward`` and ``_backward`` keep every kind of row in one loop over the
plan, and ``_train_step`` the forward pass, loss, backward pass and update
in one body, because they run once per mini-batch, where a whole tutorial
step takes well under a microsecond: splitting them would add calls and
pointer set-up on that path. (Likewise ``_update_pass`` and
``loss_grad_kernel`` in ``_kernels.pxi`` keep one branch-free loop per rule
inline, so that the compiler vectorises each.) ``Network.__init__`` checks
the whole plan in one place, before anything is kept.

Inside a step everything is feature-major, ``(width, n)``. Workspace layout
for a batch of ``n`` samples (``acts_width`` is the sum of the rows' output
widths, ``max_width`` the largest)::

    [ XT: n * n_in | yT: n * n_out | w: n | activations: n * acts_width
      | gradient: n * max_width | scratch: n * scratch_width ]

Row ``l`` writes its output at ``n * plan[l, ACT]`` within the activations;
the backward pass writes each row's gradient through its activation over
that row's output (see ``_backward``), puts dX in the gradient block, and
lays a layer's output gradient out sample-major in the scratch block to
multiply it for dW on fastnn's own loops. The scratch block is as wide as
the widest output of the Dense layers that may take that path (none, in a
network whose every layer of 4 inputs and 8 outputs or more uses BLAS:
its workspace is no larger than it needs).

Every entry point returns a status, as a BLAS routine returns ``info``:
``OK`` (0), or ``SLOW`` (the arguments are not of the exact type, dtype,
layout or shape the fast path takes: validate and convert them, then call
again), ``BAD_INPUT`` (NaN or infinity in X, y or the weights, or a bad
label), ``BAD_LOSS`` (the loss is not finite) or ``BAD_UPDATE`` (the update
would make a parameter or optimizer state non-finite). The results are
fields of the :class:`Network`: ``last_loss`` (a C double; a loss can be any
finite number: BCE with targets outside [0, 1] is negative) and
``last_done``. After a code from ``train_step`` the parameters, gradients
and optimizer state are exactly as they were; after one from
``train_epoch``, the parameters and optimizer state are those from before
the refused step, and the gradients are the refused step's (an epoch keeps
no copy of the gradients: it would double the memory a step needs beyond
the parameters). ``predict`` returns its output array, or None for input
that must first be validated (including input that is not finite).
"""

cimport numpy as cnp
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.math cimport NAN, isfinite
from libc.stdint cimport UINT32_MAX, uint64_t
from libc.stdlib cimport free, malloc
from numpy.random cimport bitgen_t

include "_kernels.pxi"


import numpy as np

cnp.import_array()

cdef enum:
    KIND = 0        # KIND_DENSE_ or KIND_ACT_
    IN = 1          # input width
    OUT = 2         # output width
    W_OFF = 3       # offset of W (in x out, row-major) in params; -1 for an activation
    B_OFF = 4       # offset of b (out,) in params; -1 for an activation
    ACT = 5         # per-sample offset of this row's output in the activations
    FN = 6          # activation (FN_* code) applied to this row's output; a Dense's folded one
    N_FIELDS = 7

cdef enum:
    KIND_DENSE_ = 0
    KIND_ACT_ = 1

PLAN_FIELDS = ("kind", "in", "out", "w_offset", "b_offset", "act_offset", "fn")
KIND_DENSE = KIND_DENSE_
KIND_ACT = KIND_ACT_
#: Activation codes of the plan's ``fn`` field.
FN_CODES = {"identity": FN_IDENTITY, "relu": FN_RELU, "leaky_relu": FN_LEAKY_RELU,
            "tanh": FN_TANH, "sigmoid": FN_SIGMOID}

cdef enum:
    OK_ = 0
    SLOW_ = -1
    BAD_INPUT_ = -2
    BAD_LOSS_ = -3
    BAD_UPDATE_ = -4

#: Status codes of train_step and train_epoch.
OK = int(OK_)
SLOW = int(SLOW_)
BAD_INPUT = int(BAD_INPUT_)
BAD_LOSS = int(BAD_LOSS_)
BAD_UPDATE = int(BAD_UPDATE_)

cdef extern from "_tile.h":
    enum:
        FASTNN_TILE_FUSED

#: Whether this build's register tiles fuse each multiply-add (FMA, rounded
#: once): the AVX2 and AVX-512 builds unless built with FASTNN_TILE_FMA=0.
#: Builds that agree on it give the same bits on the same path.
TILE_FMA = bool(FASTNN_TILE_FUSED)

#: Rows of a batch predicted at once (bounds the workspace of predict).
PREDICT_CHUNK = 1024

# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------

cdef struct NetC:
    const Py_ssize_t* plan
    const double* fn_params    # per row: the activation's parameter (LeakyReLU's slope)
    Py_ssize_t n_rows          # rows of the plan
    Py_ssize_t n_params
    Py_ssize_t n_in, n_out
    Py_ssize_t acts_width, max_width
    Blas blas                  # the gemm of large Dense products, and from which sizes (use_blas)
    const Py_ssize_t* row_batch  # per plan row, the batch from which BLAS takes it (the plan's choice); or NULL
    void* grad_backup          # n_params values: the gradients before the current step
    Py_ssize_t scratch_width   # per-sample width of the workspace's scratch block (_scratch_width)
    bint is_double             # the dtype of every buffer: float64, else float32


cdef inline const Blas* _row_blas(const NetC* net, Py_ssize_t l, Py_ssize_t n, Blas* tmp) noexcept nogil:
    """The BLAS rule of plan row ``l`` at a batch of ``n`` rows: the network's; or,
    where the plan chose per row, for a batch of TILE_MIN_BATCH rows or more
    BLAS from the row's own batch size on (still only for a layer of
    blas.min_weights and blas.min_width), fastnn's tiles below it."""
    if net.row_batch == NULL:
        return &net.blas
    tmp[0] = net.blas
    tmp.min_weights_tiled = 0 if n >= net.row_batch[l] else PY_SSIZE_T_MAX
    return tmp


cdef inline Py_ssize_t _last_act(const NetC* net) noexcept nogil:
    return net.plan[(net.n_rows - 1) * N_FIELDS + ACT]


# Inside a step every activation is stored feature-major, (width, n): row j
# holds unit j for every sample of the batch, as the Dense loops of
# _kernels.pxi take them; the input is transposed once on the way in (fused
# with the mini-batch gather) and the output once on the way out.

cdef void _gather_transpose(
    const floating* src, Py_ssize_t cols, const Py_ssize_t* rows, Py_ssize_t n_rows, floating* dst,
) noexcept nogil:
    """dst (cols, n_rows) = src[rows].T: the mini-batch gather and the transpose in one pass."""
    cdef Py_ssize_t i, c, t, i0 = 0
    cdef const floating* row
    cdef const floating* block[8]
    cdef floating* d
    # Eight gathered rows at a time, as transpose() takes its rows: each column of them is
    # one contiguous 8-element store, where a row-by-row gather would store every element
    # into another cache line.
    if cols > 1:
        while i0 + 8 <= n_rows:
            for t in range(8):
                block[t] = src + rows[i0 + t] * cols
            d = dst + i0
            for c in range(cols):
                for t in range(8):
                    d[c * n_rows + t] = block[t][c]
            i0 += 8
    for i in range(i0, n_rows):
        row = src + rows[i] * cols
        for c in range(cols):
            dst[c * n_rows + i] = row[c]


cdef void _forward(
    const NetC* net, const floating* params, const floating* XT, floating* acts, Py_ssize_t n,
) noexcept nogil:
    """Run every row of the plan on XT (n_in, n); row l's output lands at acts + n * ACT."""
    cdef Py_ssize_t l
    cdef Blas row_blas
    cdef const Py_ssize_t* rec
    cdef const floating* inp = XT
    cdef floating* out
    for l in range(net.n_rows):
        rec = net.plan + l * N_FIELDS
        out = acts + n * rec[ACT]
        if rec[KIND] == KIND_DENSE_:
            # A folded ReLU rides on the product's last pass; other activations follow it.
            dense_forward_kernel(_row_blas(net, l, n, &row_blas), inp, params + rec[W_OFF], params + rec[B_OFF], out,
                                 n, rec[IN], rec[OUT], rec[FN] == FN_RELU)
            if rec[FN] != FN_RELU and rec[FN] != FN_IDENTITY:
                act_forward_kernel(<int>rec[FN], net.fn_params[l], out, out, n * rec[OUT])
        else:
            act_forward_kernel(<int>rec[FN], net.fn_params[l], inp, out, n * rec[IN])
        inp = out


cdef void _backward(
    const NetC* net, const floating* params, floating* grads, const floating* XT,
    floating* acts, Py_ssize_t n, floating* g_block, floating* scratch,
) noexcept nogil:
    """Back-propagate ``g_block`` (dL/d output of the last row, feature-major) into grads.

    One gradient block is enough: each row writes the gradient through its
    activation over its own output A in the activations (elementwise, each
    A[i] read before it is overwritten; A is not needed after that), so that
    a Dense row's dX can go to the gradient block while its G stays put.
    """
    cdef Py_ssize_t l
    cdef const Py_ssize_t* rec
    cdef const floating* inp
    cdef floating* out
    cdef floating* g_cur = g_block
    cdef Blas row_blas
    cdef floating* G
    cdef floating* GT
    for l in range(net.n_rows - 1, -1, -1):
        rec = net.plan + l * N_FIELDS
        inp = XT if l == 0 else acts + n * net.plan[(l - 1) * N_FIELDS + ACT]
        out = acts + n * rec[ACT]
        if rec[KIND] == KIND_DENSE_:
            if rec[FN] != FN_IDENTITY:
                # The folded activation, through its output A (this row's output).
                act_backward_kernel(<int>rec[FN], net.fn_params[l], out, g_cur, out, n * rec[OUT])
                G = out
            elif g_cur == g_block and l > 0:
                # dX goes to the gradient block: move G out of its way.
                memcpy(out, g_cur, n * rec[OUT] * sizeof(floating))
                G = out
            else:
                G = g_cur
            GT = NULL
            if rec[OUT] <= net.scratch_width and dense_backward_takes_GT(_row_blas(net, l, n, &row_blas), n,
                                                                         rec[IN], rec[OUT]):
                transpose(G, scratch, rec[OUT], n)
                GT = scratch
            # The network's input needs no gradient: dX is skipped for l == 0.
            dense_backward_kernel(_row_blas(net, l, n, &row_blas), inp, params + rec[W_OFF], G, GT, g_block if l > 0 else NULL,
                                  grads + rec[W_OFF], grads + rec[B_OFF], n, rec[IN], rec[OUT])
            g_cur = g_block
        elif l > 0:
            act_backward_kernel(<int>rec[FN], net.fn_params[l], out, g_cur, out, n * rec[IN])
            g_cur = out


cdef inline Py_ssize_t _work_per_sample(const NetC* net) noexcept nogil:
    # XT, yT (the targets, or the labels), w (sample weights), activations, the gradient
    # block and the scratch block
    return net.n_in + net.n_out + 1 + net.acts_width + net.max_width + net.scratch_width


cdef struct LossC:
    int kind            # LOSS_* code
    double param        # Huber's delta
    bint weighted       # sample weights in the workspace


cdef inline Py_ssize_t _y_width(const NetC* net, const LossC* loss) noexcept nogil:
    """Targets per sample: one class label for cross-entropy, else one per output."""
    return 1 if loss.kind == LOSS_CROSS_ENTROPY else net.n_out


cdef inline double _batch_loss(
    const NetC* net, const LossC* lossc, const floating* acts, const floating* yT, const floating* w,
    floating* g_a, Py_ssize_t n, double* weight_sum,
) noexcept nogil:
    """The loss of the batch whose forward pass is in ``acts``, and its gradient with
    respect to the network's output into ``g_a`` (feature-major, n_out * n values)."""
    if lossc.kind == LOSS_MSE and not lossc.weighted:
        # The common case: one flat, vectorised pass (the output block is contiguous).
        weight_sum[0] = n
        return mse_loss_grad_kernel(acts + n * _last_act(net), yT, g_a, n * net.n_out)
    return loss_grad_kernel(lossc.kind, lossc.param, acts + n * _last_act(net), yT,
                            w if lossc.weighted else NULL, g_a, n, net.n_out, 1, n, weight_sum)


cdef int _train_step(
    const NetC* net, floating* params, floating* grads, floating* work, Py_ssize_t n,
    Opt* opt, floating* buf1, floating* buf2, const LossC* lossc, double* weight_sum,
    double* loss_out, bint keep_grads,
) noexcept nogil:
    """One forward + loss + backward + optimizer update on the batch already in
    the workspace (XT, yT and w, feature-major): OK_ with the loss in ``loss_out``,
    or a negative code. With ``keep_grads``, a refused update also leaves the
    gradients as they were (from ``net.grad_backup``); without, they are the
    refused step's."""
    cdef floating* XT = work
    cdef floating* yT = XT + n * net.n_in
    cdef floating* w = yT + n * net.n_out
    cdef floating* acts = w + n
    cdef floating* g_a = acts + n * net.acts_width
    cdef floating* scratch = g_a + n * net.max_width
    cdef double loss
    _forward(net, params, XT, acts, n)
    loss = _batch_loss(net, lossc, acts, yT, w, g_a, n, weight_sum)
    if not isfinite(loss):
        return BAD_LOSS_
    if keep_grads:
        # The gradients of the last good step are kept aside, so that a step whose
        # update is refused leaves the gradients (layer.dW, layer.db) as they were too.
        memcpy(<floating*>net.grad_backup, grads, net.n_params * sizeof(floating))
    _backward(net, params, grads, XT, acts, n, g_a, scratch)
    if not update_kernel(opt, params, grads, buf1, buf2, net.n_params):
        if keep_grads:
            memcpy(grads, <floating*>net.grad_backup, net.n_params * sizeof(floating))
        return BAD_UPDATE_
    loss_out[0] = loss
    return OK_


cdef void _load_batch(
    const NetC* net, const LossC* lossc, const floating* X, const floating* y, const floating* w,
    const Py_ssize_t* order, Py_ssize_t start, Py_ssize_t nb, floating* work,
) noexcept nogil:
    """Lay rows start..start+nb (through ``order`` if not NULL) out feature-major in the
    workspace (the targets too, unless ``y`` is NULL)."""
    cdef Py_ssize_t yw = _y_width(net, lossc)
    cdef floating* XT = work
    cdef floating* yT = XT + nb * net.n_in
    cdef floating* wT = yT + nb * net.n_out
    if order != NULL:
        _gather_transpose(X, net.n_in, order + start, nb, XT)
        if y != NULL:
            _gather_transpose(y, yw, order + start, nb, yT)
        if lossc.weighted:
            _gather_transpose(w, 1, order + start, nb, wT)
    else:
        transpose(X + start * net.n_in, XT, nb, net.n_in)
        if y != NULL:
            transpose(y + start * yw, yT, nb, yw)
        if lossc.weighted:
            memcpy(wT, w + start, nb * sizeof(floating))


cdef int _train_epoch(
    const NetC* net, floating* params, floating* grads, const floating* X, const floating* y,
    const floating* w, Py_ssize_t n, const Py_ssize_t* order, Py_ssize_t batch_size,
    floating* work, Opt* opt, floating* buf1, floating* buf2, const LossC* lossc, Py_ssize_t* done,
    double* mean_out,
) noexcept nogil:
    """One epoch of mini-batch training over the rows in ``order`` (NULL: in order).

    Returns OK_ and writes to ``mean_out`` the weighted mean over the samples
    of each batch's loss before its update (sum over batches of loss * weight
    sum, over the total weight); or returns the first negative code (then
    ``done`` holds the samples already used).

    Where that sum or the total weight overflows (every loss finite, but a
    loss times its batch's weight sum beyond the dtype's range), the mean is
    the running weighted mean instead, kept alongside: m += (loss - m) *
    wsum / total, with the weights rescaled by 2**-64 whenever their total
    passes 1e300, so that it stays finite. Elsewhere the plain quotient is
    kept, for the same bits as fastnn.reference's fit_epoch.
    """
    cdef Py_ssize_t start = 0, stop, nb
    cdef int status
    cdef double loss = 0.0, wsum = 0.0, total = 0.0, total_weight = 0.0
    cdef double running = 0.0, scaled_weight = 0.0, scale = 1.0
    while start < n:
        stop = start + batch_size if start + batch_size < n else n
        nb = stop - start
        _load_batch(net, lossc, X, y, w, order, start, nb, work)
        # No gradient backup in an epoch (fit documents it): a copy of every
        # gradient per step, and as much memory again as the parameters.
        status = _train_step(net, params, grads, work, nb, opt, buf1, buf2, lossc, &wsum, &loss, False)
        if status != OK_:
            done[0] = start
            return status
        total += loss * wsum
        total_weight += wsum
        if wsum > 0:
            scaled_weight += wsum * scale
            running += (loss - running) * (wsum * scale / scaled_weight)
            if scaled_weight > 1e300:
                scaled_weight *= 5.421010862427522e-20   # 2**-64
                scale *= 5.421010862427522e-20
        start = stop
    done[0] = n
    if isfinite(total) and isfinite(total_weight):
        mean_out[0] = total / total_weight if total_weight > 0 else 0.0
    else:
        mean_out[0] = running
    return OK_


cdef double _l2_penalty(const NetC* net, const floating* params, floating* grads, double l2) noexcept nogil:
    """l2 / 2 * the sum of every Dense weight squared (not the biases); adds l2 * W to
    the weights' gradients."""
    cdef Py_ssize_t l, i, size
    cdef const Py_ssize_t* rec
    cdef const floating* W
    cdef floating* dW
    cdef floating scale = <floating>l2
    cdef double total = 0.0
    for l in range(net.n_rows):
        rec = net.plan + l * N_FIELDS
        if rec[KIND] != KIND_DENSE_:
            continue
        W = params + rec[W_OFF]
        dW = grads + rec[W_OFF]
        size = rec[IN] * rec[OUT]
        for i in range(size):
            total += <double>W[i] * <double>W[i]
            dW[i] += scale * W[i]
    return 0.5 * l2 * total


cdef int _loss_grad(
    const NetC* net, const floating* params, floating* grads, floating* part, const floating* X,
    const floating* y, const floating* w, Py_ssize_t n, Py_ssize_t batch_size, floating* work,
    const LossC* lossc, double l2, double* loss_out,
) noexcept nogil:
    """The loss over all ``n`` rows, and its gradient with respect to every parameter into
    ``grads``, ``batch_size`` rows at a time through the workspace (the L-BFGS objective).

    Each chunk's loss and output gradient are its own weighted mean (over its weight
    sum, as ``_train_step`` takes them); the chunk counts with its share of the
    total weight, ``wsum / total``, its output gradient scaled by it before the
    backward pass (not at all when one chunk holds every row), so that the result
    is the full batch's loss and gradient to rounding. A later chunk's gradient
    goes to ``part`` (n_params values) and is added to ``grads``. Plus
    ``_l2_penalty``. Returns OK_ with the loss in ``loss_out``, or BAD_LOSS_.
    The data must be valid (checked by the caller: finite, labels in range,
    weights >= 0 with a positive sum).
    """
    cdef Py_ssize_t start = 0, nb, i
    cdef double total = 0.0, loss, wsum, share, value = 0.0
    cdef floating scale
    cdef floating* XT
    cdef floating* acts
    cdef floating* g_a
    if lossc.weighted:
        for i in range(n):
            total += w[i]
    else:
        total = n
    while start < n:
        nb = batch_size if batch_size < n - start else n - start
        _load_batch(net, lossc, X, y, w, NULL, start, nb, work)
        XT = work
        acts = XT + nb * (net.n_in + net.n_out + 1)
        g_a = acts + nb * net.acts_width
        _forward(net, params, XT, acts, nb)
        loss = _batch_loss(net, lossc, acts, XT + nb * net.n_in, XT + nb * (net.n_in + net.n_out), g_a, nb, &wsum)
        if not isfinite(loss):
            return BAD_LOSS_
        share = wsum / total
        if nb < n:
            scale = <floating>share
            for i in range(nb * net.n_out):
                g_a[i] *= scale
        _backward(net, params, grads if start == 0 else part, XT, acts, nb, g_a, g_a + nb * net.max_width)
        if start > 0:
            for i in range(net.n_params):
                grads[i] += part[i]
        value += loss * share
        start += nb
    if l2 != 0:
        value += _l2_penalty(net, params, grads, l2)
    if not isfinite(value):
        return BAD_LOSS_
    loss_out[0] = value
    return OK_


cdef void _predict_chunk(
    const NetC* net, const floating* params, const floating* X, floating* work,
    Py_ssize_t n, floating* out,
) noexcept nogil:
    """out (n, n_out) = the network on X (n, n_in), through the feature-major workspace."""
    cdef floating* XT = work
    cdef floating* acts = XT + n * net.n_in + n * net.n_out + n
    transpose(X, XT, n, net.n_in)
    _forward(net, params, XT, acts, n)
    transpose(acts + n * _last_act(net), out, net.n_out, n)


cdef int _predict(
    const NetC* net, const floating* params, const floating* X, floating* work, Py_ssize_t n,
    Py_ssize_t chunk, floating* out,
) noexcept nogil:
    """out (n, n_out) = the network on X (n, n_in), ``chunk`` rows at a time (the
    workspace holds that many); BAD_INPUT_ if X is not finite."""
    cdef Py_ssize_t start = 0, nb
    if not all_finite_kernel(X, n * net.n_in):
        return BAD_INPUT_
    while start < n:
        nb = chunk if chunk < n - start else n - start
        _predict_chunk(net, params, X + start * net.n_in, work, nb, out + start * net.n_out)
        start += nb
    return OK_


cdef bint _valid_targets(const NetC* net, const LossC* lossc, const floating* y,
                         const floating* w, Py_ssize_t n) noexcept nogil:
    """Finite targets (integral labels in range, for cross-entropy) and weights (>= 0, sum > 0)."""
    cdef Py_ssize_t i
    cdef floating label
    if lossc.kind == LOSS_CROSS_ENTROPY:
        for i in range(n):
            label = y[i]
            if not (label >= 0 and label < net.n_out and label == <Py_ssize_t>label):
                return False
    elif not all_finite_kernel(y, n * net.n_out):
        return False
    return _valid_weights(lossc, w, n)


cdef bint _valid_weights(const LossC* lossc, const floating* w, Py_ssize_t n) noexcept nogil:
    """No weights, or finite weights >= 0 with a positive sum."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    if lossc.weighted:
        if not all_finite_kernel(w, n):
            return False
        for i in range(n):
            if w[i] < 0:
                return False
            total += w[i]
        if not total > 0:
            return False
    return True


cdef int _step_on(
    const NetC* net, floating* params, floating* grads, const floating* X, const floating* y,
    const Py_ssize_t* labels, const floating* w, floating* work, Py_ssize_t n, Opt* opt,
    floating* buf1, floating* buf2, const LossC* lossc, double* loss_out,
) noexcept nogil:
    """Check X, the targets and w, lay them out feature-major, and take one step
    (status as _train_step). The targets are ``y``, or, for cross-entropy, integer
    class ``labels`` (then ``y`` is NULL), converted to the dtype on the way in."""
    cdef double wsum
    cdef Py_ssize_t i
    cdef floating* yT = work + n * net.n_in
    if not all_finite_kernel(X, n * net.n_in):
        return BAD_INPUT_
    if labels != NULL:
        for i in range(n):
            if labels[i] < 0 or labels[i] >= net.n_out:
                return BAD_INPUT_
        if not _valid_weights(lossc, w, n):
            return BAD_INPUT_
    elif not _valid_targets(net, lossc, y, w, n):
        return BAD_INPUT_
    _load_batch(net, lossc, X, y, w, NULL, 0, n, work)
    if labels != NULL:
        for i in range(n):
            yT[i] = <floating>labels[i]
    return _train_step(net, params, grads, work, n, opt, buf1, buf2, lossc, &wsum, loss_out, True)


# ---------------------------------------------------------------------------
# The one float/double dispatch: the face fills a Call with the addresses of
# its buffers, all of the network's dtype, and _run casts them once.
# ---------------------------------------------------------------------------

cdef enum:
    ENTRY_PREDICT = 0
    ENTRY_STEP = 1
    ENTRY_EPOCH = 2
    ENTRY_LOSS_GRAD = 3


cdef struct Call:
    int entry                   # ENTRY_*
    void* params
    void* grads
    void* work
    const void* X
    const void* y               # targets, or NULL with labels
    const Py_ssize_t* labels    # ENTRY_STEP: intp class labels, or NULL
    const void* w               # sample weights, or NULL
    const Py_ssize_t* order     # ENTRY_EPOCH: the rows' order, or NULL
    void* out                   # ENTRY_PREDICT: (n, n_out)
    void* buf1
    void* buf2
    void* part                  # ENTRY_LOSS_GRAD: a later chunk's gradient (n_params), or NULL
    double l2                   # ENTRY_LOSS_GRAD: the L2 factor of the Dense weights
    Opt* opt
    LossC loss
    Py_ssize_t n                # rows of X
    Py_ssize_t batch_size       # ENTRY_EPOCH: rows per step; ENTRY_PREDICT, ENTRY_LOSS_GRAD: rows per chunk
    double loss_value           # OUT: the step's loss, the epoch's mean loss, or the whole data's loss
    Py_ssize_t done             # OUT: ENTRY_EPOCH's samples used


cdef int _run_typed(const NetC* net, Call* c, floating dtype) noexcept nogil:
    """Run ``c.entry`` with every buffer of ``c`` taken as ``floating`` (``dtype`` only
    picks the specialization)."""
    if c.entry == ENTRY_PREDICT:
        return _predict(net, <const floating*>c.params, <const floating*>c.X, <floating*>c.work, c.n,
                        c.batch_size, <floating*>c.out)
    if c.entry == ENTRY_STEP:
        return _step_on(net, <floating*>c.params, <floating*>c.grads, <const floating*>c.X,
                        <const floating*>c.y, c.labels, <const floating*>c.w, <floating*>c.work, c.n,
                        c.opt, <floating*>c.buf1, <floating*>c.buf2, &c.loss, &c.loss_value)
    if c.entry == ENTRY_LOSS_GRAD:
        return _loss_grad(net, <const floating*>c.params, <floating*>c.grads, <floating*>c.part,
                          <const floating*>c.X, <const floating*>c.y, <const floating*>c.w, c.n, c.batch_size,
                          <floating*>c.work, &c.loss, c.l2, &c.loss_value)
    return _train_epoch(net, <floating*>c.params, <floating*>c.grads, <const floating*>c.X,
                        <const floating*>c.y, <const floating*>c.w, c.n, c.order, c.batch_size,
                        <floating*>c.work, c.opt, <floating*>c.buf1, <floating*>c.buf2, &c.loss,
                        &c.done, &c.loss_value)


cdef inline int _run(const NetC* net, Call* c) noexcept nogil:
    """Run ``c.entry`` in the network's dtype: its status (OK_ or a code)."""
    if net.is_double:
        return _run_typed(net, c, <double>0)
    return _run_typed(net, c, <float>0)


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


cdef class Update:
    """An optimizer's rule, hyperparameters and state for one network.

    Made by :meth:`Network.make_update`; the state buffers (``buf1``:
    SGD's momentum buffer or Adam's first moment; ``buf2``: Adam's second
    moment) are flat arrays of the network's dtype and size, updated in
    place. ``step`` counts the updates applied.
    """

    cdef Opt opt
    cdef readonly object buf1, buf2
    cdef Py_ssize_t n_params
    cdef int typenum

    @property
    def kind(self):
        return self.opt.kind

    @property
    def lr(self):
        return self.opt.lr

    @lr.setter
    def lr(self, double value):
        self.opt.lr = value

    @property
    def step(self):
        return self.opt.step

    @step.setter
    def step(self, long value):
        if value < 0:
            raise ValueError(f"step must be >= 0, got {value}")
        self.opt.step = value


OPTIMIZER_KINDS = {"sgd": OPT_SGD, "adam": OPT_ADAM, "adamw": OPT_ADAMW}
#: Loss codes of train_step/train_epoch.
LOSS_CODES = {"mse": LOSS_MSE, "mae": LOSS_MAE, "huber": LOSS_HUBER,
              "cross_entropy": LOSS_CROSS_ENTROPY, "bce_with_logits": LOSS_BCE_WITH_LOGITS,
              "poisson": LOSS_POISSON}


cdef inline Py_ssize_t _dim(object a, int axis) noexcept:
    """a.shape[axis], for an ndarray that ``_fits`` accepted, without a Python call."""
    return cnp.PyArray_DIM(<cnp.ndarray>a, axis)


cdef class Network:
    """A compiled plan with its parameter, gradient and work buffers.

    Parameters
    ----------
    plan : ndarray of intp, (n_rows, N_FIELDS)
    params, grads : 1-D C-contiguous float32 or float64 arrays of one size
        Kept by reference: the network reads and updates them in place.
    blas : fastnn._blas.BlasInfo or None
        The gemm of large Dense products (None: own loops for every size).
    fn_params : sequence of float, optional
        Per plan row, its activation's parameter (LeakyReLU's slope); zeros.
    blas_min_weights, blas_min_width, blas_min_weights_tiled : int
        A Dense product uses BLAS when in * out reaches ``blas_min_weights``,
        both in and out reach ``blas_min_width`` and, for a batch of 8 rows
        or more (where own loops run their register tiles), in * out reaches
        ``blas_min_weights_tiled``. The defaults are this build's crossover,
        the module's BLAS_MIN_WEIGHTS, BLAS_MIN_WIDTH and
        BLAS_MIN_WEIGHTS_TILED; other values serve the tests and benchmarks
        that force a path.
    """

    cdef NetC net
    cdef readonly object plan, params, grads, fn_params
    cdef object work, grad_backup, grad_part, row_batch
    cdef Py_ssize_t work_size
    cdef int typenum
    cdef readonly str blas_source
    #: The loss of the last train_step (before its update) or the mean loss of the
    #: last train_epoch that returned OK; NaN after another status.
    cdef readonly double last_loss
    #: The samples the last train_epoch used (all of them after OK).
    cdef readonly Py_ssize_t last_done

    def __init__(self, plan, params, grads, blas=None, fn_params=None, *,
                 Py_ssize_t blas_min_weights=FASTNN_BLAS_MIN_WEIGHTS,
                 Py_ssize_t blas_min_width=FASTNN_BLAS_MIN_WIDTH,
                 Py_ssize_t blas_min_weights_tiled=FASTNN_BLAS_MIN_WEIGHTS_TILED):
        cdef Py_ssize_t l, n_in, n_out, acts_width = 0, max_width = 0
        cdef const Py_ssize_t[:, ::1] rows = plan
        fn_params = np.zeros(rows.shape[0]) if fn_params is None else np.array(fn_params, dtype=np.float64)
        if fn_params.shape != (rows.shape[0],) or not np.all(np.isfinite(fn_params)):
            raise ValueError("fn_params must hold one finite number per plan row")
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
            elif rows[l, KIND] == KIND_ACT_:
                if n_in != n_out:
                    raise ValueError(f"plan row {l}: an activation keeps its width")
            else:
                raise ValueError(f"plan row {l}: unknown kind {rows[l, KIND]}")
            if rows[l, FN] not in (FN_IDENTITY, FN_RELU, FN_LEAKY_RELU, FN_TANH, FN_SIGMOID):
                raise ValueError(f"plan row {l}: unknown activation {rows[l, FN]}")
            if rows[l, FN] == FN_LEAKY_RELU and fn_params[l] < 0:
                raise ValueError(f"plan row {l}: LeakyReLU's slope must be >= 0")
            acts_width += n_out
            max_width = max(max_width, n_out)
        self.plan = np.array(plan, dtype=np.intp, order="C")   # a private copy
        self.fn_params = fn_params
        self.plan.setflags(write=False)
        self.params = params
        self.grads = grads
        self.net.is_double = params_dtype == np.dtype(np.float64)
        self.typenum = params_dtype.num
        self.net.plan = <const Py_ssize_t*>cnp.PyArray_DATA(self.plan)
        self.net.fn_params = <const double*>cnp.PyArray_DATA(self.fn_params)
        self.grad_backup = None
        self.grad_part = None
        self.net.grad_backup = NULL
        self.net.n_rows = rows.shape[0]
        self.net.n_params = params.shape[0]
        self.net.n_in = rows[0, IN]
        self.net.n_out = rows[rows.shape[0] - 1, OUT]
        self.net.acts_width = acts_width
        self.net.max_width = max_width
        self.net.scratch_width = 0
        self.row_batch = None
        self.net.row_batch = NULL
        blas_init(&self.net.blas)
        self.net.blas.min_weights = blas_min_weights
        self.net.blas.min_width = blas_min_width
        self.net.blas.min_weights_tiled = blas_min_weights_tiled
        self.blas_source = "none"
        if blas is not None and blas.kind in (BLAS_CBLAS64, BLAS_FORTRAN32) and blas.dgemm and blas.sgemm:
            self.net.blas.kind = blas.kind
            self.net.blas.dgemm = <void*><size_t>blas.dgemm
            self.net.blas.sgemm = <void*><size_t>blas.sgemm
            self.blas_source = blas.source
        self._scratch_width()
        self.work = np.empty(0, dtype=params_dtype)
        self.work_size = 0
        self.last_loss = NAN
        self.last_done = 0

    @property
    def n_in(self):
        return self.net.n_in

    @property
    def n_out(self):
        return self.net.n_out

    @property
    def workspace_per_sample(self):
        return _work_per_sample(&self.net)

    @property
    def is_double(self):
        return self.net.is_double

    @property
    def blas_min_weights(self):
        """A Dense product uses BLAS (when one was found) once in * out reaches this,"""
        return self.net.blas.min_weights

    @blas_min_weights.setter
    def blas_min_weights(self, Py_ssize_t value):
        self.net.blas.min_weights = value
        self._rows_follow_thresholds()

    @property
    def blas_min_width(self):
        """... and min(in, out) reaches this,"""
        return self.net.blas.min_width

    @blas_min_width.setter
    def blas_min_width(self, Py_ssize_t value):
        self.net.blas.min_width = value
        self._rows_follow_thresholds()

    @property
    def blas_min_weights_tiled(self):
        """... and, for a batch of 8 rows or more, in * out reaches this."""
        return self.net.blas.min_weights_tiled

    @blas_min_weights_tiled.setter
    def blas_min_weights_tiled(self, Py_ssize_t value):
        self.net.blas.min_weights_tiled = value
        self._rows_follow_thresholds()

    cdef int _rows_follow_thresholds(self) except -1:
        """Setting a threshold hands every row back to the thresholds (row_blas_min_batch None)."""
        self.row_batch = None
        self.net.row_batch = NULL
        return self._scratch_width()

    @property
    def row_blas_min_batch(self):
        """Per plan row, the batch size from which BLAS takes that Dense layer
        (a read-only copy), or None when every row follows the network's
        thresholds. The planner sets it: for a batch of 8 rows or more, a layer
        whose in * out and min(in, out) reach blas_min_weights and
        blas_min_width runs on BLAS from this many rows on and on fastnn's
        tiles below (0: BLAS at every such batch; a number larger than any
        batch: never); a batch of fewer than 8 rows follows the thresholds.
        Setting any of the thresholds sets this back to None."""
        if self.row_batch is None:
            return None
        copy = np.array(self.row_batch)
        copy.setflags(write=False)
        return copy

    @row_blas_min_batch.setter
    def row_blas_min_batch(self, values):
        if values is None:
            self.row_batch = None
            self.net.row_batch = NULL
        else:
            rows = np.array(values, dtype=np.intp)
            if rows.shape != (self.net.n_rows,):
                raise ValueError(f"row_blas_min_batch must hold one int per plan row ({self.net.n_rows})")
            if np.any(rows < 0):
                raise ValueError("row_blas_min_batch must be >= 0")
            self.row_batch = rows
            self.net.row_batch = <const Py_ssize_t*>cnp.PyArray_DATA(rows)
        self._scratch_width()

    @property
    def uses_blas(self):
        return self.net.blas.kind != BLAS_NONE

    cdef int _scratch_width(self) except -1:
        """Size the scratch block for the Dense layers that may take the tiled dW
        path on own loops for some batch size (``dense_backward_takes_GT``:
        whether BLAS takes a layer depends on the batch only through
        TILE_MIN_BATCH)."""
        cdef Py_ssize_t l, k, m, width = 0
        cdef const Py_ssize_t* rec
        cdef Blas row_blas
        cdef const Blas* rule
        for l in range(self.net.n_rows):
            rec = self.net.plan + l * N_FIELDS
            k, m = rec[IN], rec[OUT]
            rule = _row_blas(&self.net, l, TILE_MIN_BATCH, &row_blas)
            if rec[KIND] == KIND_DENSE_ and (dense_backward_takes_GT(rule, 2, k, m)
                                             or dense_backward_takes_GT(rule, TILE_MIN_BATCH, k, m)):
                width = max(width, m)
        self.net.scratch_width = width
        return 0

    cdef char* _workspace(self, Py_ssize_t n_samples) except NULL:
        """The workspace for a batch of n_samples, starting on a 64-byte boundary: NumPy
        aligns to 16 bytes only, and AVX-512 loads that straddle cache lines are slower."""
        cdef Py_ssize_t needed = n_samples * _work_per_sample(&self.net)
        cdef char* start
        if self.work_size < needed:
            self.work = np.empty(needed * self.params.dtype.itemsize + 64, dtype=np.uint8)
            self.work_size = needed
        start = <char*>cnp.PyArray_DATA(self.work)
        return start + (-<size_t>start) % 64

    cdef bint _fits_X(self, object X) noexcept:
        return (_fits(X, self.typenum, 2) and _dim(X, 1) == self.net.n_in and _dim(X, 0) > 0)

    cdef bint _fits_y(self, object y, Py_ssize_t n) noexcept:
        if _fits(y, self.typenum, 2):
            return _dim(y, 0) == n and _dim(y, 1) == self.net.n_out
        return self.net.n_out == 1 and _fits(y, self.typenum, 1) and _dim(y, 0) == n

    def predict(self, X):
        """The network's output for X, or None when X must be validated first
        (not of the exact type, dtype, layout or shape the fast path takes, or
        not finite: the caller's check then says what is wrong)."""
        cdef Call c
        cdef cnp.npy_intp dims[2]
        cdef int status
        if not self._fits_X(X):
            return None
        c.entry = ENTRY_PREDICT
        c.n = _dim(X, 0)
        c.batch_size = min(c.n, PREDICT_CHUNK)
        dims[0] = c.n
        dims[1] = self.net.n_out
        out = cnp.PyArray_EMPTY(2, dims, self.typenum, 0)
        c.params = cnp.PyArray_DATA(self.params)
        c.X = cnp.PyArray_DATA(X)
        c.out = cnp.PyArray_DATA(out)
        c.work = self._workspace(c.batch_size)
        with nogil:
            status = _run(&self.net, &c)
        return out if status == OK_ else None

    def make_update(self, str kind, double lr, double momentum=0.0, bint nesterov=False,
                    double weight_decay=0.0, double beta1=0.9, double beta2=0.999,
                    double eps=1e-8, buf1=None, buf2=None, long step=0):
        """An :class:`Update` for this network (hyperparameters checked by the caller).

        The state buffers the rule needs are allocated (zeros) unless given:
        flat, C-contiguous, writable arrays of this network's dtype and size.
        """
        cdef Update u = Update.__new__(Update)
        if kind not in OPTIMIZER_KINDS:
            raise ValueError(f"kind must be one of {sorted(OPTIMIZER_KINDS)}, got {kind!r}")
        u.opt.kind = OPTIMIZER_KINDS[kind]
        u.opt.lr = lr
        u.opt.momentum = momentum
        u.opt.nesterov = nesterov
        u.opt.weight_decay = weight_decay
        u.opt.beta1 = beta1
        u.opt.beta2 = beta2
        u.opt.eps = eps
        u.opt.step = step
        u.n_params = self.net.n_params
        u.typenum = self.typenum
        needs = (1 if momentum != 0 else 0) if u.opt.kind == OPT_SGD else 2
        bufs = [buf1, buf2]
        for i in range(2):
            if i >= needs:
                bufs[i] = None
            elif bufs[i] is None:
                bufs[i] = np.zeros(self.net.n_params, dtype=self.params.dtype)
            elif not (_fits(bufs[i], self.typenum, 1) and _dim(bufs[i], 0) == self.net.n_params
                      and cnp.PyArray_ISWRITEABLE(bufs[i])):
                raise ValueError(f"optimizer state must be a writable C-contiguous {self.params.dtype} "
                                 f"array of shape ({self.net.n_params},)")
        u.buf1, u.buf2 = bufs
        return u

    cdef bint _fits_targets(self, object y, object w, Py_ssize_t n, const LossC* lossc) noexcept:
        """y (and w) fit this batch: labels (n,) for cross-entropy, else (n, n_out) or (n,)."""
        if lossc.kind == LOSS_CROSS_ENTROPY:
            if not (_fits(y, self.typenum, 1) and _dim(y, 0) == n):
                return False
        elif not self._fits_y(y, n):
            return False
        return self._fits_weights(w, n)

    cdef bint _fits_weights(self, object w, Py_ssize_t n) noexcept:
        """No sample weights, or (n,) of the network's dtype."""
        return w is None or (_fits(w, self.typenum, 1) and _dim(w, 0) == n)

    cdef int _start_training(self, Call* c, Update u, str loss, double loss_param,
                             object sample_weight) except -1:
        """Check the update and the loss; put the buffers of both into ``c``."""
        if u.n_params != self.net.n_params or u.typenum != self.typenum:
            raise ValueError("this optimizer state was made for another network")
        if loss not in LOSS_CODES:
            raise ValueError(f"loss must be one of {sorted(LOSS_CODES)}, got {loss!r}")
        c.loss.kind = LOSS_CODES[loss]
        c.loss.param = loss_param
        c.loss.weighted = sample_weight is not None
        c.params = cnp.PyArray_DATA(self.params)
        c.grads = cnp.PyArray_DATA(self.grads)
        c.opt = &u.opt
        c.buf1 = NULL if u.buf1 is None else cnp.PyArray_DATA(u.buf1)
        c.buf2 = NULL if u.buf2 is None else cnp.PyArray_DATA(u.buf2)
        c.loss_value = NAN
        return 0

    def train_step(self, X, y, Update u, str loss="mse", double loss_param=0.0, sample_weight=None):
        """One optimizer step on the loss of one batch; returns a status.

        ``OK``: ``last_loss`` is the batch's loss before the update. ``SLOW``:
        validate X, y and sample_weight first, then call again. Other codes:
        nothing was changed. For cross-entropy, y may hold the class labels
        as floats of the network's dtype or as intp integers."""
        cdef Call c
        cdef int status = SLOW_
        self._start_training(&c, u, loss, loss_param, sample_weight)
        c.entry = ENTRY_STEP
        c.labels = NULL
        if self._fits_X(X):
            c.n = _dim(X, 0)
            if (c.loss.kind == LOSS_CROSS_ENTROPY and _fits(y, cnp.NPY_INTP, 1) and _dim(y, 0) == c.n
                    and self._fits_weights(sample_weight, c.n)):
                c.labels = <const Py_ssize_t*>cnp.PyArray_DATA(y)    # integer labels, the usual kind
                status = OK_
            elif self._fits_targets(y, sample_weight, c.n, &c.loss):
                status = OK_
        if status == OK_:
            c.X = cnp.PyArray_DATA(X)
            c.y = NULL if c.labels != NULL else cnp.PyArray_DATA(y)
            c.w = NULL if sample_weight is None else cnp.PyArray_DATA(sample_weight)
            c.work = self._workspace(c.n)
            if self.grad_backup is None:
                # Made by the first train_step (a fit never needs it).
                self.grad_backup = np.empty(max(self.params.shape[0], 1), dtype=self.params.dtype)
                self.net.grad_backup = cnp.PyArray_DATA(self.grad_backup)
            with nogil:
                status = _run(&self.net, &c)
        self.last_loss = c.loss_value if status == OK_ else NAN
        return status

    def train_epoch(self, X, y, order, Py_ssize_t batch_size, Update u, str loss="mse",
                    double loss_param=0.0, sample_weight=None):
        """One epoch of mini-batch training in one nogil call.

        ``X``, ``y`` and ``sample_weight`` must already be valid (this only
        checks that they fit); ``order`` is a permutation of the rows (intp),
        or None to visit them in order. The last batch may be shorter.
        Returns a status: after ``OK``, ``last_loss`` is the mean loss;
        ``last_done`` holds the samples used (before the refused step, after
        another code; then the gradients are those of the refused step).
        """
        cdef Call c
        cdef Py_ssize_t i
        cdef const Py_ssize_t[::1] rows
        cdef int status
        self._start_training(&c, u, loss, loss_param, sample_weight)
        c.entry = ENTRY_EPOCH
        if not self._fits_X(X):
            raise ValueError("X must be a valid, non-empty C-contiguous array of the network's dtype")
        c.n = _dim(X, 0)
        if not self._fits_targets(y, sample_weight, c.n, &c.loss):
            raise ValueError("y and sample_weight must be C-contiguous arrays matching X and the network")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        c.batch_size = batch_size
        c.order = NULL
        if order is not None:
            rows = order
            if rows.shape[0] != c.n:
                raise ValueError("order must have one entry per row of X")
            for i in range(c.n):
                if rows[i] < 0 or rows[i] >= c.n:
                    raise ValueError("order holds a row index out of range")
            c.order = &rows[0]
        c.X = cnp.PyArray_DATA(X)
        c.y = cnp.PyArray_DATA(y)
        c.w = NULL if sample_weight is None else cnp.PyArray_DATA(sample_weight)
        c.work = self._workspace(min(batch_size, c.n))
        c.done = 0
        with nogil:
            status = _run(&self.net, &c)
        self.last_loss = c.loss_value if status == OK_ else NAN
        self.last_done = c.done
        return status

    def loss_grad(self, X, y, Py_ssize_t batch_size, str loss="mse", double loss_param=0.0,
                  sample_weight=None, double l2=0.0):
        """The loss over all of X and y, and its gradient into ``grads``, in one nogil call.

        ``X``, ``y`` and ``sample_weight`` must already be valid (this only checks
        that they fit, as ``train_epoch``); they are taken ``batch_size`` rows at a
        time, each chunk weighted by its share of the total weight, so that the
        result is the full batch's to rounding. ``l2``: adds ``l2 / 2 * sum(W**2)``
        over the Dense weights (not the biases) to the loss and ``l2 * W`` to their
        gradients. Returns a status: after ``OK``, ``last_loss`` is the loss and
        ``grads`` its gradient; after ``BAD_LOSS`` (a loss that is not finite),
        ``grads`` holds partial sums. The parameters are never changed.
        """
        cdef Call c
        cdef int status
        if loss not in LOSS_CODES:
            raise ValueError(f"loss must be one of {sorted(LOSS_CODES)}, got {loss!r}")
        c.loss.kind = LOSS_CODES[loss]
        c.loss.param = loss_param
        c.loss.weighted = sample_weight is not None
        if not self._fits_X(X):
            raise ValueError("X must be a valid, non-empty C-contiguous array of the network's dtype")
        c.n = _dim(X, 0)
        if not self._fits_targets(y, sample_weight, c.n, &c.loss):
            raise ValueError("y and sample_weight must be C-contiguous arrays matching X and the network")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not (l2 >= 0 and isfinite(l2)):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
        c.entry = ENTRY_LOSS_GRAD
        c.batch_size = min(batch_size, c.n)
        c.l2 = l2
        c.params = cnp.PyArray_DATA(self.params)
        c.grads = cnp.PyArray_DATA(self.grads)
        c.part = NULL
        if c.batch_size < c.n:
            if self.grad_part is None:
                self.grad_part = np.empty(max(self.params.shape[0], 1), dtype=self.params.dtype)
            c.part = cnp.PyArray_DATA(self.grad_part)
        c.X = cnp.PyArray_DATA(X)
        c.y = cnp.PyArray_DATA(y)
        c.w = NULL if sample_weight is None else cnp.PyArray_DATA(sample_weight)
        c.work = self._workspace(c.batch_size)
        c.loss_value = NAN
        with nogil:
            status = _run(&self.net, &c)
        self.last_loss = c.loss_value if status == OK_ else NAN
        return status


# ---------------------------------------------------------------------------
# Many members in one call: fastnn.ensemble.Ensemble
# ---------------------------------------------------------------------------


cdef struct MemberC:
    const NetC* net
    Call call
    const Py_ssize_t* orders   # ENTRY_EPOCH: (epochs, n) rows' orders, or NULL
    bitgen_t* bitgen           # ENTRY_EPOCH: the stream each epoch's order is drawn from, or NULL
    void* pcg64                # its state, where the stream is NumPy's PCG64 drawn inline (_pcg64_of), or NULL


cdef extern from *:
    """
    /* NumPy's PCG64, drawn here without its function pointers: the state NumPy keeps behind a
       PCG64's bitgen_t (struct pcg64_state of numpy/random/src/pcg64/pcg64.h, the same since
       NumPy 1.17: a pointer to the 128-bit LCG {state, inc}, then the half of the last 64-bit
       draw that next_uint32 keeps for its next call), read and written as NumPy's own
       pcg64_next32/pcg64_next64 do. Only for a generator whose bit generator is exactly
       numpy.random.PCG64 and whose layout fastnn_pcg64_layout_ok accepts (_pcg64_of); the
       compiled permutations are held to Generator.permutation at run time (fastnn.ensemble's
       _draws_as_numpy) and by tests/test_ensemble.py. */
    typedef struct {
        uint64_t state[2];          /* pcg128_t: low word first (__uint128_t on a little-endian machine) */
        uint64_t inc[2];
    } fastnn_pcg64_lcg;
    typedef struct {
        fastnn_pcg64_lcg* pcg_state;
        int has_uint32;
        uint32_t uinteger;
    } fastnn_pcg64_state;

    #if defined(__SIZEOF_INT128__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define FASTNN_PCG64_INLINE 1
    typedef unsigned __int128 fastnn_u128;
    /* PCG_DEFAULT_MULTIPLIER_128 */
    #define FASTNN_PCG64_MULT (((fastnn_u128)2549297995355413924ULL << 64) + 4865540595714422341ULL)

    /* pcg_setseq_128_xsl_rr_64_random_r: step, then the XSL-RR output of the new state. */
    static inline uint64_t fastnn_pcg64_next64(fastnn_u128* s, fastnn_u128 inc)
    {
        uint64_t hi, v;
        unsigned rot;
        *s = *s * FASTNN_PCG64_MULT + inc;
        hi = (uint64_t)(*s >> 64);
        v = hi ^ (uint64_t)*s;
        rot = (unsigned)(hi >> 58);
        return (v >> rot) | (v << ((-rot) & 63));
    }

    /* out = arange(n) shuffled as _permutation (below) shuffles it, every draw of
       random_interval taken from the PCG64 whose pcg64_state is `st`; the state (LCG and the
       kept half) held in registers during the loop and stored back after it.
       random_interval(i) for i < 2**32 masks 32-bit draws and draws again while the value
       exceeds i; here every 32-bit draw is one pass of a loop without a data-dependent
       branch: a value within i swaps out[i] with out[value] and moves on to i - 1, a value
       beyond swaps out[i] with itself and stays (the same draws, the same swaps, in the same
       order: a rejection costs no mispredicted branch). */
    static void fastnn_pcg64_permutation(void* st, Py_ssize_t* out, Py_ssize_t n)
    {
        fastnn_pcg64_state* ps = (fastnn_pcg64_state*)st;
        fastnn_pcg64_lcg* lcg = ps->pcg_state;
        fastnn_u128 s = ((fastnn_u128)lcg->state[1] << 64) | lcg->state[0];
        fastnn_u128 inc = ((fastnn_u128)lcg->inc[1] << 64) | lcg->inc[0];
        int has = ps->has_uint32;
        uint32_t kept = ps->uinteger;
        Py_ssize_t i, j, tmp;
        uint64_t max_value, mask, value, next, accept;
        for (i = 0; i < n; i++)
            out[i] = i;
        /* Beyond 2**32 - 1 (n > 2**32), random_interval draws 64 bits at a time, in a loop. */
        for (i = n - 1; i > 0 && (uint64_t)i > 0xffffffffULL; i--) {
            max_value = (uint64_t)i;
            mask = ~(uint64_t)0 >> __builtin_clzll(max_value);
            do {
                value = fastnn_pcg64_next64(&s, inc) & mask;
            } while (value > max_value);
            j = (Py_ssize_t)value;
            tmp = out[i];
            out[i] = out[j];
            out[j] = tmp;
        }
        if (i > 0) {
            mask = ~(uint64_t)0 >> __builtin_clzll((uint64_t)i);    /* random_interval's mask */
            while (i > 0) {
                if (has) {                                          /* pcg64_next32 */
                    has = 0;
                    value = kept;
                } else {
                    next = fastnn_pcg64_next64(&s, inc);
                    has = 1;
                    kept = (uint32_t)(next >> 32);
                    value = (uint32_t)(next & 0xffffffffULL);
                }
                value &= mask;
                accept = (uint64_t)(value <= (uint64_t)i);
                j = (Py_ssize_t)((uint64_t)i ^ ((value ^ (uint64_t)i) & (0 - accept)));    /* value, or i */
                tmp = out[i];
                out[i] = out[j];
                out[j] = tmp;
                i -= (Py_ssize_t)accept;
                mask >>= (uint64_t)((uint64_t)i <= (mask >> 1));    /* i's mask (i drops by one at most) */
            }
        }
        lcg->state[0] = (uint64_t)s;
        lcg->state[1] = (uint64_t)(s >> 64);
        ps->has_uint32 = has;
        ps->uinteger = kept;
    }
    #else
    #define FASTNN_PCG64_INLINE 0
    static void fastnn_pcg64_permutation(void* st, Py_ssize_t* out, Py_ssize_t n) { (void)st; (void)out; (void)n; }
    #endif

    /* Whether `st` (a numpy.random.PCG64's bitgen_t state) is laid out as fastnn_pcg64_state: its
       LCG held by the same object, just after it (NumPy's PCG64 keeps both in itself), so that
       the pointer is read, never followed, before it is known to be one. */
    static int fastnn_pcg64_layout_ok(const void* st)
    {
        const char* lcg = (const char*)((const fastnn_pcg64_state*)st)->pcg_state;
        return FASTNN_PCG64_INLINE && lcg >= (const char*)st + sizeof(fastnn_pcg64_state)
               && lcg <= (const char*)st + 256;
    }
    """
    enum:
        FASTNN_PCG64_INLINE
    ctypedef struct fastnn_pcg64_lcg:
        uint64_t state[2]
        uint64_t inc[2]
    ctypedef struct fastnn_pcg64_state:
        fastnn_pcg64_lcg* pcg_state
        int has_uint32
        uint32_t uinteger
    void fastnn_pcg64_permutation(void* st, Py_ssize_t* out, Py_ssize_t n) noexcept nogil
    int fastnn_pcg64_layout_ok(const void* st) noexcept nogil


cdef inline uint64_t _random_interval(bitgen_t* bitgen, uint64_t max_value) noexcept nogil:
    """A uniform integer in [0, max_value], as NumPy's ``random_interval``
    (numpy/random/src/distributions/distributions.c) draws it: masked
    rejection sampling on 32-bit draws (64-bit ones beyond 2**32 - 1)."""
    cdef uint64_t mask = max_value, value
    if max_value == 0:
        return 0
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    mask |= mask >> 32
    if max_value <= UINT32_MAX:
        value = bitgen.next_uint32(bitgen.state) & mask
        while value > max_value:
            value = bitgen.next_uint32(bitgen.state) & mask
    else:
        value = bitgen.next_uint64(bitgen.state) & mask
        while value > max_value:
            value = bitgen.next_uint64(bitgen.state) & mask
    return value


cdef void _permutation(bitgen_t* bitgen, void* pcg64, Py_ssize_t* out, Py_ssize_t n) noexcept nogil:
    """out = ``Generator.permutation(n)`` of the Generator whose bit generator is ``bitgen``:
    ``arange(n)`` shuffled by NumPy's Fisher-Yates loop (``_shuffle_raw`` of
    numpy/random/_generator.pyx: for i from n - 1 down to 1, swap i with
    ``random_interval(i)``). The same numbers from the same state, and the state
    advanced as NumPy advances it (tests/test_ensemble.py holds it to NumPy).
    With ``pcg64`` (``_pcg64_of``: the bit generator is NumPy's PCG64) the draws are
    PCG64's steps inlined (fastnn_pcg64_permutation), else calls of ``bitgen``'s
    function pointers."""
    cdef Py_ssize_t i, j, tmp
    if pcg64 != NULL:
        fastnn_pcg64_permutation(pcg64, out, n)
        return
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>_random_interval(bitgen, <uint64_t>i)
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


def permutations(rng, Py_ssize_t n, Py_ssize_t count):
    """``numpy.stack([rng.permutation(n) for _ in range(count)])``, drawn as train_members
    draws each epoch's order from a member's own Generator (the tests compare the two)."""
    cdef Py_ssize_t e
    cdef bitgen_t* bitgen = _bitgen_of(rng)
    cdef void* pcg64 = _pcg64_of(rng, bitgen)
    out = np.empty((count, n), dtype=np.intp)
    cdef Py_ssize_t[:, ::1] rows = out
    if n > 0:
        with nogil:
            for e in range(count):
                _permutation(bitgen, pcg64, &rows[e, 0], n)
    return out


#: Whether NumPy's PCG64 keeps its state as fastnn_pcg64_state (-1: not checked yet; checked
#: once per process, with the GIL, by _pcg64_checked).
cdef int _pcg64_layout = -1


cdef bint _pcg64_checked():
    """Whether this NumPy's PCG64 keeps its state laid out as fastnn_pcg64_state: on a fresh
    PCG64 with a half of a draw kept, the LCG state, increment and kept half read through
    that layout are those ``PCG64.state`` reports."""
    global _pcg64_layout
    cdef bitgen_t* bitgen
    cdef const fastnn_pcg64_state* ps
    if _pcg64_layout >= 0:
        return _pcg64_layout == 1
    _pcg64_layout = 0
    if not FASTNN_PCG64_INLINE:
        return False
    try:
        rng = np.random.Generator(np.random.PCG64(20261202))
        rng.integers(1 << 31)               # one next_uint32: half of a 64-bit draw kept
        bitgen = _bitgen_of(rng)
        if not fastnn_pcg64_layout_ok(bitgen.state):
            return False
        ps = <const fastnn_pcg64_state*>bitgen.state
        told = rng.bit_generator.state
        read = {"state": (int(ps.pcg_state.state[1]) << 64) | int(ps.pcg_state.state[0]),
                "inc": (int(ps.pcg_state.inc[1]) << 64) | int(ps.pcg_state.inc[0])}
        if (told["bit_generator"] == "PCG64" and told["state"] == read and told["has_uint32"] == ps.has_uint32 == 1
                and told["uinteger"] == ps.uinteger):
            _pcg64_layout = 1
    except Exception:       # pragma: no cover - a NumPy whose PCG64 reports its state otherwise
        _pcg64_layout = 0
    return _pcg64_layout == 1


cdef void* _pcg64_of(object rng, bitgen_t* bitgen):
    """``bitgen``'s state where ``rng``'s bit generator is exactly numpy.random.PCG64 laid out
    as fastnn_pcg64_state (draw it inline: fastnn_pcg64_permutation); else NULL (draw through
    ``bitgen``'s function pointers)."""
    if type(rng.bit_generator) is not np.random.PCG64 or not _pcg64_checked():
        return NULL
    if not fastnn_pcg64_layout_ok(bitgen.state):
        return NULL
    return bitgen.state


cdef bitgen_t* _bitgen_of(object rng) except NULL:
    """The C bit generator of a numpy Generator (its capsule's pointer)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"expected a numpy Generator, got {type(rng).__name__}")
    return <bitgen_t*>PyCapsule_GetPointer(rng.bit_generator.capsule, "BitGenerator")


def train_members(list networks, list updates, list Xs, list ys, list ws, list orders, list rngs,
                  Py_ssize_t batch_size, str loss, double loss_param, Py_ssize_t epochs,
                  double[:, ::1] losses, int[::1] status, Py_ssize_t[::1] epochs_done,
                  Py_ssize_t[::1] done):
    """Train several networks (an ensemble's members), ``epochs`` epochs each, in one nogil call.

    Member ``k`` is ``networks[k]`` trained with ``updates[k]`` on ``Xs[k]``,
    ``ys[k]`` and ``ws[k]`` (sample weights or None), as ``epochs`` calls of
    :meth:`Network.train_epoch` would train it: epoch ``e`` visits the rows in
    the order ``orders[k][e]`` (``orders[k]`` an (epochs, n) intp array), or,
    where ``orders[k]`` is None and ``rngs[k]`` a numpy Generator, in the order
    ``rngs[k].permutation(n)`` would give, drawn here without the GIL from that
    Generator's bit generator (which must be used by nothing else meanwhile:
    give each member its own); with neither, in order. The data must already
    be valid (this only checks that they fit, as ``train_epoch`` does). Members
    share nothing but read-only data: several threads may call this at once
    on disjoint members.

    Outputs, per member: ``losses[k, e]`` the mean loss of epoch ``e``;
    ``status[k]`` OK, or the code of the refused step, after which the member
    stopped (its parameters and optimizer state those from before that step);
    ``epochs_done[k]`` the epochs completed; ``done[k]`` the samples used in
    the epoch that stopped it (``n`` when OK).
    """
    cdef Py_ssize_t n_members = len(networks), k, e, i, n
    cdef Network net
    cdef Update u
    cdef MemberC* members
    cdef MemberC* m
    cdef const Py_ssize_t[:, ::1] rows
    cdef int st
    cdef Py_ssize_t max_n = 0, work_bytes = 0
    cdef Py_ssize_t* order_buf = NULL
    cdef char* work_buf = NULL
    if not (len(updates) == len(Xs) == len(ys) == len(ws) == len(orders) == len(rngs) == n_members):
        raise ValueError("networks, updates, Xs, ys, ws, orders and rngs must have one entry per member")
    if (losses.shape[0] != n_members or losses.shape[1] < epochs or status.shape[0] != n_members
            or epochs_done.shape[0] != n_members or done.shape[0] != n_members):
        raise ValueError("losses must be (members, epochs), status, epochs_done and done (members,)")
    if batch_size <= 0 or epochs <= 0:
        raise ValueError(f"batch_size and epochs must be positive, got {batch_size} and {epochs}")
    if n_members == 0:
        return
    members = <MemberC*>malloc(n_members * sizeof(MemberC))
    if members == NULL:
        raise MemoryError()
    try:
        for k in range(n_members):
            net = networks[k]
            u = updates[k]
            m = &members[k]
            m.net = &net.net
            X, y, w = Xs[k], ys[k], ws[k]
            net._start_training(&m.call, u, loss, loss_param, w)
            m.call.entry = ENTRY_EPOCH
            if not net._fits_X(X):
                raise ValueError(f"Xs[{k}] must be a valid, non-empty C-contiguous array of the network's dtype")
            n = _dim(X, 0)
            m.call.n = n
            if not net._fits_targets(y, w, n, &m.call.loss):
                raise ValueError(f"ys[{k}] and ws[{k}] must be C-contiguous arrays matching Xs[{k}] and the network")
            m.call.batch_size = batch_size
            m.orders = NULL
            if orders[k] is not None:
                rows = orders[k]
                if rows.shape[0] < epochs or rows.shape[1] != n:
                    raise ValueError(f"orders[{k}] must have shape (epochs, n_samples)")
                for e in range(epochs):
                    for i in range(n):
                        if rows[e, i] < 0 or rows[e, i] >= n:
                            raise ValueError(f"orders[{k}] holds a row index out of range")
                m.orders = &rows[0, 0]
            m.bitgen = NULL
            m.pcg64 = NULL
            if m.orders == NULL and rngs[k] is not None:
                m.bitgen = _bitgen_of(rngs[k])
                m.pcg64 = _pcg64_of(rngs[k], m.bitgen)
                max_n = max(max_n, n)
            m.call.order = NULL
            m.call.X = cnp.PyArray_DATA(X)
            m.call.y = cnp.PyArray_DATA(y)
            m.call.w = NULL if w is None else cnp.PyArray_DATA(w)
            # One workspace for every member of this call (they run one after the other), sized
            # for the widest: an ensemble of many members needs no workspace per member.
            work_bytes = max(work_bytes, min(batch_size, n) * _work_per_sample(&net.net)
                             * (8 if net.net.is_double else 4))
            m.call.done = 0
        work_buf = <char*>malloc(work_bytes + 64)
        if work_buf == NULL:
            raise MemoryError()
        for k in range(n_members):
            # 64-byte aligned, as Network._workspace aligns its own
            members[k].call.work = work_buf + (-<size_t>work_buf) % 64
        if max_n > 0:
            order_buf = <Py_ssize_t*>malloc(max_n * sizeof(Py_ssize_t))
            if order_buf == NULL:
                raise MemoryError()
        with nogil:
            for k in range(n_members):
                m = &members[k]
                status[k] = OK_
                epochs_done[k] = 0
                for e in range(epochs):
                    if m.orders != NULL:
                        m.call.order = m.orders + e * m.call.n
                    elif m.bitgen != NULL:
                        _permutation(m.bitgen, m.pcg64, order_buf, m.call.n)
                        m.call.order = order_buf
                    m.call.done = 0
                    st = _run(m.net, &m.call)
                    done[k] = m.call.done
                    if st != OK_:
                        status[k] = st
                        break
                    losses[k, e] = m.call.loss_value
                    epochs_done[k] = e + 1
    finally:
        free(work_buf)
        free(order_buf)
        free(members)


def predict_members(list networks, list Xs, out):
    """``out[k]`` (n, n_out) = ``networks[k]`` on ``Xs[k]`` for every member, in one nogil call.

    ``out`` is a C-contiguous (members, n, n_out) array of the networks'
    dtype; every ``Xs[k]`` must fit as :meth:`Network.predict`'s fast path
    takes it, with ``n`` rows. Returns OK, or BAD_INPUT if an X is not finite.
    """
    cdef Py_ssize_t n_members = len(networks), k, n
    cdef Network net
    cdef MemberC* members
    cdef MemberC* m
    cdef int st = OK_
    cdef char* base
    cdef char* work_buf = NULL
    cdef Py_ssize_t stride, work_bytes = 0
    if len(Xs) != n_members:
        raise ValueError("networks and Xs must have one entry per member")
    if n_members == 0:
        return OK
    n = _dim(Xs[0], 0) if cnp.PyArray_Check(Xs[0]) else 0
    net = networks[0]
    if not (_fits(out, net.typenum, 3) and _dim(out, 0) == n_members and _dim(out, 1) == n
            and _dim(out, 2) == net.net.n_out and cnp.PyArray_ISWRITEABLE(out)):
        raise ValueError("out must be a writable C-contiguous (members, n, n_out) array of the networks' dtype")
    base = <char*>cnp.PyArray_DATA(out)
    stride = n * net.net.n_out * cnp.PyArray_ITEMSIZE(out)
    members = <MemberC*>malloc(n_members * sizeof(MemberC))
    if members == NULL:
        raise MemoryError()
    try:
        for k in range(n_members):
            net = networks[k]
            X = Xs[k]
            if not (net._fits_X(X) and _dim(X, 0) == n and net.typenum == cnp.PyArray_TYPE(out)
                    and net.net.n_out == _dim(out, 2)):
                raise ValueError(f"Xs[{k}] must be a valid C-contiguous ({n}, n_in) array of the network's dtype")
            m = &members[k]
            m.net = &net.net
            m.call.entry = ENTRY_PREDICT
            m.call.n = n
            m.call.batch_size = min(n, PREDICT_CHUNK)
            m.call.params = cnp.PyArray_DATA(net.params)
            m.call.X = cnp.PyArray_DATA(X)
            m.call.out = base + k * stride
            work_bytes = max(work_bytes, m.call.batch_size * _work_per_sample(&net.net)
                             * (8 if net.net.is_double else 4))
        work_buf = <char*>malloc(work_bytes + 64)       # one workspace, as in train_members
        if work_buf == NULL:
            raise MemoryError()
        for k in range(n_members):
            members[k].call.work = work_buf + (-<size_t>work_buf) % 64
        with nogil:
            for k in range(n_members):
                if _run(members[k].net, &members[k].call) != OK_:
                    st = BAD_INPUT_
                    break
    finally:
        free(work_buf)
        free(members)
    return int(st)


# ---------------------------------------------------------------------------
# Members side by side in SIMD lanes (Ensemble.fit's common case)
# ---------------------------------------------------------------------------

include "_members.pxi"


# ---------------------------------------------------------------------------
# fastnn.ops' one-output Dense product, in this build's instructions (not
# used by the walk; fastnn._ops takes it through _DENSE_ROWS_KERNELS_CAPSULE).
# ---------------------------------------------------------------------------

include "_dense_rows.pxi"
