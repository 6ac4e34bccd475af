# Pointer-level kernels of fastnn, for other Cython modules to cimport.
#
# Every function here is a typed loop over C-contiguous buffers that the
# caller has allocated and whose sizes the caller has checked: nothing here
# checks a bound, raises, or touches a Python object. Shapes are given in
# the tutorial's notation: X is (n_samples, in_features), W is
# (in_features, out_features), b and db are (out_features,), Y and dY are
# (n_samples, out_features). Inputs are ``const``; outputs are overwritten,
# never accumulated into.

from cython cimport floating

cdef void dense_forward_kernel(
    const floating* X, const floating* W, const floating* b, floating* Y,
    Py_ssize_t n_samples, Py_ssize_t in_features, Py_ssize_t out_features,
    bint relu,
) noexcept nogil

cdef void dense_backward_kernel(
    const floating* X, const floating* W, const floating* dY,
    floating* dX, floating* dW, floating* db,
    Py_ssize_t n_samples, Py_ssize_t in_features, Py_ssize_t out_features,
) noexcept nogil

cdef void relu_forward_kernel(
    const floating* Z, floating* A, Py_ssize_t size,
) noexcept nogil

cdef void relu_backward_kernel(
    const floating* Z, const floating* dA, floating* dZ, Py_ssize_t size,
) noexcept nogil

cdef double mse_loss_kernel(
    const floating* yhat, const floating* y, Py_ssize_t size,
) noexcept nogil

cdef double mse_loss_grad_kernel(
    const floating* yhat, const floating* y, floating* grad, Py_ssize_t size,
) noexcept nogil

cdef void sgd_update_kernel(
    floating* param, const floating* grad, double lr, Py_ssize_t size,
) noexcept nogil

cdef bint all_finite_kernel(const floating* x, Py_ssize_t size) noexcept nogil

# A BLAS gemm found at run time (see fastnn/_blas.py): kind and addresses.
cdef enum:
    BLAS_NONE = 0
    BLAS_CBLAS64 = 1      # CBLAS with 64-bit integers (NumPy's scipy-openblas64)
    BLAS_FORTRAN32 = 2    # Fortran with 32-bit integers (scipy.linalg.cython_blas)

cdef struct Blas:
    int kind
    void* dgemm
    void* sgemm

cdef void gemm(
    const Blas* blas, bint trans_a, bint trans_b, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
    const floating* A, Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
    floating beta, floating* C, Py_ssize_t ldc,
) noexcept nogil
