# The network walker built for CPUs with AVX2 (compiled with -mavx2).
# The source is fastnn/_network.pxi; fastnn/_network.py picks the build.
include "_network.pxi"
