"""Helpers of the fuzz tests (``tests/test_fuzz_*.py``): hypothesis draws the
input of every public call of fastnn, and an oracle says what the call must do.

The drawn input covers

* shapes with 0 and 1 in every dimension, 0-d arrays, wrong numbers of
  dimensions and mismatched sizes;
* dtypes: bool, signed and unsigned integers, float16/32/64, longdouble,
  complex, object, strings, bytes, datetimes, structured; and non-arrays
  (None, ragged lists, dicts, scalars);
* memory layouts: C, Fortran, strided and negatively strided views,
  read-only, byte-swapped, unaligned, ndarray subclasses, nested lists,
  huge strides (a view every 1000 elements, and strides of +-2**40 on axes
  of length 0 or 1) and stride-0 broadcast views (``as_strided``);
* values: NaN, +-inf, huge (up to the dtype's max, 1e308), subnormal, -0.0.

The oracle: each call must either

* return what :mod:`fastnn.reference` returns on the equivalent clean input
  (``np.ascontiguousarray(x, dtype=<the dtype fastnn computes in>)``),
  within a tolerance derived from the magnitudes of the terms involved
  (``oracle.tolerance_bound``: no comparison of values where a bound
  overflows the computing dtype), and *exactly* what fastnn itself returns
  on that clean input: the layout of an input never changes a result; or
* raise ``TypeError`` (a dtype or kind of object is wrong) or ``ValueError``
  (a shape or a value is wrong) whose message names an argument that is
  wrong (``oracle.Blame``).

Training may also raise ``FloatingPointError`` where the reference diverges
(or where the magnitudes come within 2**8 of overflowing), never elsewhere.
A call that raises leaves the model's parameters, gradients and optimizer
state byte-identical, the layers given to a rejected ``Sequential``
untouched, and the inputs of every call unmodified.

Modules: ``profiles`` (the hypothesis settings, ``FASTNN_FUZZ_PROFILE``),
``arrays`` (reproducible arrays in any layout), ``strategies`` (what
hypothesis draws), ``oracle`` (what a call must accept, whom it must blame,
and the comparison with the reference) and ``models`` (models, their
arguments, and the reference training steps with their error bounds).

Running: the fuzz tests run under faulthandler, so that a crash is reported::

    python -X faulthandler -m pytest tests/test_fuzz_*.py
    FASTNN_FUZZ_PROFILE=long python -X faulthandler -m pytest tests/test_fuzz_*.py

A failure prints the drawn specs (``ArraySpec``...) and notes with the exact
arrays (dtype, shape, strides, flags) that were passed.
"""
