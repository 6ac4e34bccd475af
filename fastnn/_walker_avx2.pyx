# The network walker built for CPUs with AVX2 (compiled with -mavx2).
# The source is fastnn/_walker.pxi; fastnn/_walker.py picks the build.
include "_walker.pxi"
