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


cdef void dense_rows_dot(const floating* X, const floating* W, floating b, floating* out,
                         Py_ssize_t n_samples, Py_ssize_t in_features) noexcept nogil:
    """out[i] = b + sum(X[i, :] * W) for a sample-major X (n_samples, in_features)."""
    cdef Py_ssize_t i
    for i in range(n_samples):
        out[i] = b + _dot(&X[i * in_features], W, in_features)


cdef struct DenseRowsKernels:
    void (*dot_f)(const float*, const float*, float, float*, Py_ssize_t, Py_ssize_t) noexcept nogil
    void (*dot_d)(const double*, const double*, double, double*, Py_ssize_t, Py_ssize_t) noexcept nogil


cdef DenseRowsKernels _DENSE_ROWS_KERNELS
_DENSE_ROWS_KERNELS.dot_f = dense_rows_dot[float]
_DENSE_ROWS_KERNELS.dot_d = dense_rows_dot[double]
_DENSE_ROWS_KERNELS_CAPSULE = PyCapsule_New(&_DENSE_ROWS_KERNELS, b"fastnn._dense_rows.DenseRowsKernels", NULL)
