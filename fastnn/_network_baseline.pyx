# The network walker built for any CPU (the compiler's baseline instruction set).
# The source is fastnn/_network.pxi; fastnn/_network.py picks the build.
include "_network.pxi"
