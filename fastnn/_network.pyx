"""Walk a whole network in one call without the GIL.

Design
------
``fastnn.model.Sequential`` compiles its layers into a *plan*: a small
C-contiguous integer array with one row of ``N_FIELDS`` plain fields per
layer (see ``PLAN_FIELDS``). All parameters live in one flat buffer, their
gradients in a second with the same layout, and every activation and
activation-gradient in one workspace, so a forward pass, a training step or
a whole epoch is a single loop over the plan, calling the pointer-level
kernels of ``_kernels.pxd`` with no Python object in sight.

Workspace layout for a batch of ``n`` samples (``width`` is a layer's
output width, ``acts_width`` the sum of all widths, ``max_width`` the
largest)::

    [ activations: n * acts_width | grad A: n * max_width | grad B: n * max_width ]

Layer ``l`` writes its output at ``n * plan[l, ACT]``; the backward pass
ping-pongs between the two gradient blocks (ReLU works in place).

The ``def`` entry points check the plan against the buffers they are given
(every offset and size in range) before the GIL is released: that check is
what makes the unchecked loops safe.

Each step reports a status instead of raising from inside ``nogil``:
``OK``; ``BAD_INPUT`` (a NaN or infinity in X or y, found in the step's
first pass); ``BAD_LOSS`` (the loss is not finite: nothing was updated);
``BAD_UPDATE`` (the update would make a parameter non-finite: nothing was
updated). A step that does not return ``OK`` leaves the parameters as they
were.
"""

from libc.math cimport isfinite
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

cdef enum:
    KIND = 0        # layer kind: KIND_DENSE or KIND_RELU
    IN = 1          # input width
    OUT = 2         # output width
    W_OFF = 3       # offset of W (in_features x out_features) in params; -1 if none
    B_OFF = 4       # offset of b (out_features,) in params; -1 if none
    ACT = 5         # per-sample offset of this layer's output in the activations
    N_FIELDS = 6

cdef enum:
    KIND_DENSE_ = 0
    KIND_RELU_ = 1

cdef enum:
    OK_ = 0
    BAD_INPUT_ = 1
    BAD_LOSS_ = 2
    BAD_UPDATE_ = 3

PLAN_FIELDS = ("kind", "in", "out", "w_offset", "b_offset", "act_offset")
KIND_DENSE = KIND_DENSE_
KIND_RELU = KIND_RELU_
OK = OK_
BAD_INPUT = BAD_INPUT_
BAD_LOSS = BAD_LOSS_
BAD_UPDATE = BAD_UPDATE_


cdef Py_ssize_t _check_plan(
    const Py_ssize_t[:, ::1] plan, Py_ssize_t n_params,
) except -1:
    """Check every record of the plan; return the workspace size per sample."""
    cdef Py_ssize_t n_layers = plan.shape[0], l, kind, n_in, n_out
    cdef Py_ssize_t acts_width = 0, max_width = 0, width
    if plan.shape[1] != N_FIELDS:
        raise ValueError(f"plan must have {N_FIELDS} columns, got {plan.shape[1]}")
    if n_layers == 0:
        raise ValueError("plan must have at least one layer")
    for l in range(n_layers):
        kind = plan[l, KIND]
        n_in = plan[l, IN]
        n_out = plan[l, OUT]
        if n_in <= 0 or n_out <= 0:
            raise ValueError(f"plan layer {l}: widths must be positive")
        if l > 0 and n_in != plan[l - 1, OUT]:
            raise ValueError(f"plan layer {l}: input width does not chain")
        if plan[l, ACT] != acts_width:
            raise ValueError(f"plan layer {l}: activation offset out of place")
        if kind == KIND_DENSE_:
            if (plan[l, W_OFF] < 0 or plan[l, W_OFF] + n_in * n_out > n_params
                    or plan[l, B_OFF] < 0 or plan[l, B_OFF] + n_out > n_params):
                raise ValueError(f"plan layer {l}: parameter offsets out of range")
        elif kind == KIND_RELU_:
            if n_in != n_out:
                raise ValueError(f"plan layer {l}: ReLU must keep its width")
        else:
            raise ValueError(f"plan layer {l}: unknown kind {kind}")
        acts_width += n_out
        if n_out > max_width:
            max_width = n_out
    return acts_width + 2 * max_width


cdef inline Py_ssize_t _last_act(const Py_ssize_t* plan, Py_ssize_t n_layers) noexcept nogil:
    return plan[(n_layers - 1) * N_FIELDS + ACT]


cdef void _forward(
    const Py_ssize_t* plan, Py_ssize_t n_layers, const floating* params,
    const floating* X, floating* work, Py_ssize_t n,
) noexcept nogil:
    """Run every layer on the n rows of X; layer l's output lands at work + n * ACT."""
    cdef Py_ssize_t l
    cdef const Py_ssize_t* rec
    cdef const floating* inp = X
    cdef floating* out
    for l in range(n_layers):
        rec = plan + l * N_FIELDS
        out = work + n * rec[ACT]
        if rec[KIND] == KIND_DENSE_:
            dense_forward_kernel(inp, params + rec[W_OFF], params + rec[B_OFF],
                                 out, n, rec[IN], rec[OUT])
        else:
            relu_forward_kernel(inp, out, n * rec[IN])
        inp = out


cdef void _backward(
    const Py_ssize_t* plan, Py_ssize_t n_layers, const floating* params,
    floating* grads, const floating* X, floating* work, Py_ssize_t n,
    Py_ssize_t grad_block, floating* g_cur, floating* g_next,
) noexcept nogil:
    """Back-propagate g_cur (dL/d output of the last layer) into grads."""
    cdef Py_ssize_t l
    cdef const Py_ssize_t* rec
    cdef const floating* inp
    cdef floating* swap
    for l in range(n_layers - 1, -1, -1):
        rec = plan + l * N_FIELDS
        if l == 0:
            inp = X
        else:
            inp = work + n * plan[(l - 1) * N_FIELDS + ACT]
        if rec[KIND] == KIND_DENSE_:
            # The network's input needs no gradient: dX is skipped for l == 0.
            dense_backward_kernel(inp, params + rec[W_OFF], g_cur,
                                  g_next if l > 0 else NULL,
                                  grads + rec[W_OFF], grads + rec[B_OFF],
                                  n, rec[IN], rec[OUT])
            swap = g_cur
            g_cur = g_next
            g_next = swap
        elif l > 0:
            relu_backward_kernel(inp, g_cur, g_cur, n * rec[IN])


cdef bint _sgd_step(
    floating* params, const floating* grads, double lr, Py_ssize_t n_params,
) noexcept nogil:
    """params -= lr * grads, only if every updated value is finite.

    The first pass computes the updates without storing them and checks
    them (x * 0 is NaN exactly when x is not finite); the second applies the
    same arithmetic. A step that would overflow thus changes nothing.
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


cdef int _train_step(
    const Py_ssize_t* plan, Py_ssize_t n_layers, floating* params,
    floating* grads, Py_ssize_t n_params, const floating* X, const floating* y,
    floating* work, Py_ssize_t n, Py_ssize_t acts_width, Py_ssize_t max_width,
    double lr, bint check_input, double* loss,
) noexcept nogil:
    """One forward + MSE + backward + SGD update on n rows; returns a status."""
    cdef Py_ssize_t n_in = plan[IN]
    cdef Py_ssize_t n_out = plan[(n_layers - 1) * N_FIELDS + OUT]
    cdef floating* g_a = work + n * acts_width
    cdef floating* g_b = g_a + n * max_width
    if check_input:
        if not (all_finite_kernel(X, n * n_in) and all_finite_kernel(y, n * n_out)):
            return BAD_INPUT_
    _forward(plan, n_layers, params, X, work, n)
    loss[0] = mse_loss_grad_kernel(work + n * _last_act(plan, n_layers), y, g_a, n * n_out)
    if not isfinite(loss[0]):
        return BAD_LOSS_
    _backward(plan, n_layers, params, grads, X, work, n, max_width, g_a, g_b)
    if not _sgd_step(params, grads, lr, n_params):
        return BAD_UPDATE_
    return OK_


cdef Py_ssize_t _max_width(const Py_ssize_t[:, ::1] plan) noexcept:
    cdef Py_ssize_t l, m = 0
    for l in range(plan.shape[0]):
        if plan[l, OUT] > m:
            m = plan[l, OUT]
    return m


cdef void _check_io(
    const Py_ssize_t[:, ::1] plan, Py_ssize_t n_rows_X, Py_ssize_t n_cols_X,
    Py_ssize_t work_size, Py_ssize_t per_sample, Py_ssize_t batch,
) except *:
    if n_cols_X != plan[0, IN]:
        raise ValueError(f"X has {n_cols_X} columns, the plan takes {plan[0, IN]}")
    if n_rows_X <= 0:
        raise ValueError("X must have at least one row")
    if work_size < batch * per_sample:
        raise ValueError(
            f"workspace holds {work_size} values, {batch * per_sample} are needed")


def predict(
    const Py_ssize_t[:, ::1] plan,
    const floating[::1] params,     # IN  all parameters
    const floating[:, ::1] X,       # IN  (n_samples, in_features)
    floating[::1] work,             # scratch, >= n_samples * workspace_per_sample
    floating[:, ::1] out,           # OUT (n_samples, out_features)
):
    """Forward pass of the whole network; returns a status (OK or BAD_INPUT)."""
    cdef Py_ssize_t per_sample = _check_plan(plan, params.shape[0])
    cdef Py_ssize_t n = X.shape[0], n_layers = plan.shape[0]
    cdef Py_ssize_t n_out = plan[n_layers - 1, OUT]
    cdef int status = OK_
    _check_io(plan, n, X.shape[1], work.shape[0], per_sample, n)
    if out.shape[0] != n or out.shape[1] != n_out:
        raise ValueError(f"out must have shape ({n}, {n_out})")
    with nogil:
        if not all_finite_kernel(&X[0, 0], n * X.shape[1]):
            status = BAD_INPUT_
        else:
            _forward(&plan[0, 0], n_layers, &params[0], &X[0, 0], &work[0], n)
            memcpy(&out[0, 0], &work[0] + n * _last_act(&plan[0, 0], n_layers),
                   n * n_out * sizeof(floating))
    return status


def train_step(
    const Py_ssize_t[:, ::1] plan,
    floating[::1] params,           # IN/OUT all parameters, updated in place
    floating[::1] grads,            # OUT    their gradients
    const floating[:, ::1] X,       # IN     (n_samples, in_features)
    const floating[:, ::1] y,       # IN     (n_samples, out_features)
    floating[::1] work,             # scratch
    double lr,
):
    """One SGD step on the MSE of one batch. Returns (status, loss)."""
    cdef Py_ssize_t per_sample = _check_plan(plan, params.shape[0])
    cdef Py_ssize_t n = X.shape[0], n_layers = plan.shape[0]
    cdef Py_ssize_t max_width = _max_width(plan)
    cdef Py_ssize_t acts_width = per_sample - 2 * max_width
    cdef double loss = 0.0
    cdef int status
    _check_io(plan, n, X.shape[1], work.shape[0], per_sample, n)
    if grads.shape[0] != params.shape[0]:
        raise ValueError("grads and params differ in size")
    if y.shape[0] != n or y.shape[1] != plan[n_layers - 1, OUT]:
        raise ValueError("y does not match X and the plan's output width")
    with nogil:
        status = _train_step(&plan[0, 0], n_layers, &params[0], &grads[0],
                             params.shape[0], &X[0, 0], &y[0, 0], &work[0], n,
                             acts_width, max_width, lr, True, &loss)
    return status, loss


def train_epoch(
    const Py_ssize_t[:, ::1] plan,
    floating[::1] params,             # IN/OUT all parameters, updated in place
    floating[::1] grads,              # OUT    their gradients
    const floating[:, ::1] X,         # IN     (n_samples, in_features), all finite
    const floating[:, ::1] y,         # IN     (n_samples, out_features), all finite
    const Py_ssize_t[::1] order,      # IN     row order (a permutation), or empty
    Py_ssize_t batch_size,
    floating[::1] work,               # scratch, >= batch_size * workspace_per_sample
    floating[:, ::1] batch_X,         # scratch (batch_size, in_features)
    floating[:, ::1] batch_y,         # scratch (batch_size, out_features)
    double lr,
):
    """Run one epoch of mini-batch SGD in one nogil call.

    Rows are visited in ``order`` (gathered into ``batch_X``/``batch_y``) or,
    when ``order`` is empty, in place, in their own order. The last batch may
    be shorter. X and y must have been checked finite by the caller.

    Returns ``(status, n_steps_done, mean_loss)``: ``mean_loss`` is the mean
    over the samples seen of each batch's loss before its update. A status
    other than OK stops the epoch before the failing step is applied.
    """
    cdef Py_ssize_t per_sample = _check_plan(plan, params.shape[0])
    cdef Py_ssize_t n = X.shape[0], n_layers = plan.shape[0]
    cdef Py_ssize_t n_in = X.shape[1], n_out = plan[n_layers - 1, OUT]
    cdef Py_ssize_t max_width = _max_width(plan)
    cdef Py_ssize_t acts_width = per_sample - 2 * max_width
    cdef Py_ssize_t start, stop, nb, i, row, steps = 0
    cdef bint shuffled = order.shape[0] > 0
    cdef double loss = 0.0, total = 0.0
    cdef int status = OK_
    cdef const floating* xb
    cdef const floating* yb
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    _check_io(plan, n, n_in, work.shape[0], per_sample, min(batch_size, n))
    if grads.shape[0] != params.shape[0]:
        raise ValueError("grads and params differ in size")
    if y.shape[0] != n or y.shape[1] != n_out:
        raise ValueError("y does not match X and the plan's output width")
    if shuffled:
        if order.shape[0] != n:
            raise ValueError("order must have one entry per row of X")
        for i in range(n):
            if order[i] < 0 or order[i] >= n:
                raise ValueError("order holds a row index out of range")
        if (batch_X.shape[0] < min(batch_size, n) or batch_X.shape[1] != n_in
                or batch_y.shape[0] < min(batch_size, n) or batch_y.shape[1] != n_out):
            raise ValueError("batch buffers are too small")
    with nogil:
        start = 0
        while start < n:
            stop = min(start + batch_size, n)
            nb = stop - start
            if shuffled:
                for i in range(nb):
                    row = order[start + i]
                    memcpy(&batch_X[i, 0], &X[row, 0], n_in * sizeof(floating))
                    memcpy(&batch_y[i, 0], &y[row, 0], n_out * sizeof(floating))
                xb = &batch_X[0, 0]
                yb = &batch_y[0, 0]
            else:
                xb = &X[start, 0]
                yb = &y[start, 0]
            status = _train_step(&plan[0, 0], n_layers, &params[0], &grads[0],
                                 params.shape[0], xb, yb, &work[0], nb,
                                 acts_width, max_width, lr, False, &loss)
            if status != OK_:
                break
            total += loss * nb
            steps += 1
            start = stop
    return status, steps, (total / start if start > 0 else 0.0)


def workspace_per_sample(const Py_ssize_t[:, ::1] plan, Py_ssize_t n_params):
    """Check a plan against a parameter count; return the workspace per sample."""
    return _check_plan(plan, n_params)
