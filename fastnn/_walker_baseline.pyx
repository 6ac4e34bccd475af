# The network walker built for any CPU (the compiler's baseline instruction set).
# The source is fastnn/_walker.pxi; fastnn/_walker.py picks the build.
include "_walker.pxi"
