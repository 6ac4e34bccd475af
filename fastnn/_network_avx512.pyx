# The network walker built for CPUs with AVX-512 F, VL, DQ and BW (see setup.py).
# The source is fastnn/_network.pxi; fastnn/_network.py picks the build.
include "_network.pxi"
