# fastnn.ops' one-output Dense product (dense_forward with out_features == 1),
# included after _kernels.pxi by fastnn._ops and, at the end of _walker.pxi,
# by every walker build: fastnn._ops runs the copy of the widest build the
# CPU runs (``use_kernels_of``), as it does the activations' loops.
#
# A one-output layer is a dot product per row, on the rows as they are (a
# transpose would cost as much as the products): memory-bound on X, so the
# vector width counts; NumPy's matmul calls OpenBLAS's AVX2 gemv here. Each
# row's sum is ``_dot``'s, lanes in a fixed order and no fused multiply-add
# (-ffp-contract=off in every build), so every build gives the same bits.


cdef inline void _dot4(const floating* X, Py_ssize_t k, const floating* W, floating b,
                       floating* out) noexcept nogil:
    """out[r] = b + _dot(X + r * k, W, k) for r < 4, k at least _dot's lanes: the same
    sums in the same order (lane t adds x[j + t] * w[j + t], the tail goes to lane 0,
    then _lanes_total), four rows at a time, so that each value of W is loaded
    once for four rows and four chains of additions run side by side."""
    cdef floating l0[16]
    cdef floating l1[16]
    cdef floating l2[16]
    cdef floating l3[16]
    cdef const floating* x0 = X
    cdef const floating* x1 = X + k
    cdef const floating* x2 = X + 2 * k
    cdef const floating* x3 = X + 3 * k
    cdef floating w
    cdef Py_ssize_t j = 0, t, lanes = 64 // sizeof(floating)
    for t in range(lanes):
        l0[t] = 0
        l1[t] = 0
        l2[t] = 0
        l3[t] = 0
    while j + lanes <= k:
        for t in range(lanes):
            w = W[j + t]
            l0[t] += x0[j + t] * w
            l1[t] += x1[j + t] * w
            l2[t] += x2[j + t] * w
            l3[t] += x3[j + t] * w
        j += lanes
    while j < k:
        w = W[j]
        l0[0] += x0[j] * w
        l1[0] += x1[j] * w
        l2[0] += x2[j] * w
        l3[0] += x3[j] * w
        j += 1
    out[0] = b + _lanes_total(l0)
    out[1] = b + _lanes_total(l1)
    out[2] = b + _lanes_total(l2)
    out[3] = b + _lanes_total(l3)


cdef void dense_rows_dot(const floating* X, const floating* W, floating b, floating* out,
                         Py_ssize_t n_samples, Py_ssize_t in_features) noexcept nogil:
    """out[i] = b + sum(X[i, :] * W) for a sample-major X (n_samples, in_features):
    each row's sum is _dot's; for float32, four rows at a time where a row fills the
    lanes (256 x 256 on AVX2: 6.6 -> 5.1 us). GCC 12 does not vectorise _dot4's
    float64 lanes (scalar code, three times slower than _dot a row at a time),
    so float64 takes the rows one by one."""
    cdef Py_ssize_t i = 0
    if floating is float and in_features >= 16:
        while i + 4 <= n_samples:
            _dot4(&X[i * in_features], in_features, W, b, &out[i])
            i += 4
    while i < n_samples:
        out[i] = b + _dot(&X[i * in_features], W, in_features)
        i += 1


cdef struct DenseRowsKernels:
    void (*dot_f)(const float*, const float*, float, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void (*dot_d)(const double*, const double*, double, double*, Py_ssize_t, Py_ssize_t) noexcept nogil


cdef DenseRowsKernels _DENSE_ROWS_KERNELS
_DENSE_ROWS_KERNELS.dot_f = dense_rows_dot[float]
_DENSE_ROWS_KERNELS.dot_d = dense_rows_dot[double]
_DENSE_ROWS_KERNELS_CAPSULE = PyCapsule_New(&_DENSE_ROWS_KERNELS, b"fastnn._dense_rows.DenseRowsKernels", NULL)
