"""The coefficients of fastnn's double expm1 polynomial (fastnn/_math_stages.h).

e^r - 1 = r + r^2 q(r) on the reduced range |r| <= ln2/2, with
q(r) = 1/2 + c1 r + ... + c10 r^10: 1/2 kept exact (so that small r keep the
Taylor start), c1..c10 the minimax fit of the absolute error of e^r - 1 - r - r^2/2
(the error that exp, tanh and the sigmoid add to e^r, whose size is about 1 there),
by Lawson's iteratively reweighted least squares on 4001 Chebyshev points, in
mpmath at 60 digits. The coefficients are then rounded to double, and the error
of the rounded polynomial (exact arithmetic) measured on 20001 points, in ulp of
e^r. Prints C lines for _math_stages.h.

    python tools/expm1_coefficients.py [degree]     (degree of q; default 10; about 6 minutes)

Needs mpmath (pip install mpmath); not a dependency of fastnn.
"""

import sys

import mpmath as mp

mp.mp.dps = 60


def fit(degree, n_points=4001, iterations=60):
    half = mp.log(2) / 2
    xs = [half * mp.cos(mp.pi * (k + mp.mpf(0.5)) / n_points) for k in range(n_points)]
    # target: (e^r - 1 - r - r^2/2) = sum_k c_k r^(k+2), k = 1..degree
    target = [mp.expm1(x) - x - x * x / 2 for x in xs]
    basis = [[x ** (k + 2) for k in range(1, degree + 1)] for x in xs]
    weights = [mp.mpf(1)] * n_points
    coef = None
    for _ in range(iterations):
        A = mp.matrix([[mp.sqrt(w) * b for b in row] for w, row in zip(weights, basis)])
        y = mp.matrix([mp.sqrt(w) * t for w, t in zip(weights, target)])
        coef = mp.lu_solve(A.T * A, A.T * y)
        err = [abs(t - mp.fsum(c * b for c, b in zip(coef, row))) for t, row in zip(target, basis)]
        total = mp.fsum(w * e for w, e in zip(weights, err))
        weights = [w * e / total for w, e in zip(weights, err)]
    return [coef[k] for k in range(degree)]


def max_error_ulp(coefs, n_points=20001):
    """max over r of |e^r - (1 + r + r^2 q(r))| / ulp(e^r), q with the given double coefficients."""
    half = mp.log(2) / 2
    worst = (mp.mpf(0), mp.mpf(0))
    for k in range(n_points):
        r = -half + 2 * half * k / (n_points - 1)
        q = mp.mpf(0)
        for c in reversed(coefs):
            q = q * r + c
        err = abs(mp.exp(r) - (1 + r + r * r * (mp.mpf(0.5) + r * q)))
        e = mp.exp(r)
        ulp = mp.ldexp(1, int(mp.floor(mp.log(e, 2))) - 52)
        if err / ulp > worst[0]:
            worst = (err / ulp, r)
    return worst


def main():
    degree = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    coefs = [float(c) for c in fit(degree)]
    worst, where = max_error_ulp(coefs)
    print(f"/* q(r) = 1/2 + c1 r + ... + c{degree} r^{degree}: truncation error {mp.nstr(worst, 3)} ulp "
          f"of e^r (at r = {mp.nstr(where, 4)}) */")
    for k, c in enumerate(coefs, start=1):
        print(f"#define FASTNN_EXPM1_C{k}_D {c.hex()}  /* {c!r} */")
    taylor = [1.0 / float(mp.factorial(k + 2)) for k in range(1, degree + 1)]
    worst_t, _ = max_error_ulp(taylor)
    print(f"/* Taylor's coefficients, the same degree: {mp.nstr(worst_t, 3)} ulp */")


if __name__ == "__main__":
    main()
