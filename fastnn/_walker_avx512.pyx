# The network walker built for CPUs with AVX-512 F, VL, DQ and BW (see setup.py).
# The source is fastnn/_walker.pxi; fastnn/_walker.py picks the build.
include "_walker.pxi"
