"""Build the Cython extensions of fastnn.

Compiler directives are set once, here. ``FASTNN_DEBUG=1`` at build time
turns bounds checking, negative indexing and initialisation checks back on
(and drops ``-O3`` for ``-O0 -g``), for a build that fails loudly on an
out-of-range index instead of corrupting memory.

Cythonization happens in ``build_ext``, not when this file is imported, so
that making the sdist (``python -m build --sdist``) generates no C: the
sdist holds the ``.pyx``/``.pxi`` sources only, and every wheel is
cythonized by the Cython of its own build. The generated C goes to the
build's temporary folder, not next to the sources.

``build_ext`` also writes ``fastnn/_build_info.py`` (never committed, never
in the sdist) next to the extensions it built: the version, the Cython and
NumPy versions, the compiler, the flags and the directives each extension
was compiled with, as they were. ``fastnn.show_config()`` prints it. When
those settings change (``FASTNN_DEBUG`` flipped, another Cython, other
``CFLAGS``) every extension is regenerated and recompiled, even if its
sources are older than the last build: a build is never half one thing and
half the other.
"""

import json
import os
import platform
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

DEBUG = os.environ.get("FASTNN_DEBUG", "0").strip().lower() not in ("", "0", "false", "no")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

if os.name == "nt":
    extra_compile_args = ["/Od", "/Zi"] if DEBUG else ["/O2"]
else:
    # No -march=native: the wheel must run on any x86-64 (or aarch64) CPU.
    # -g0: no debug information in a release build (Python's own CFLAGS
    # often hold -g), which is four fifths of an extension's size.
    extra_compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-g0"]
    # sqrt() need not set errno (fastnn never reads it): without this, every
    # sqrt carries a branch to the libm call, and loops with one do not vectorise.
    extra_compile_args.append("-fno-math-errno")
    # No fused multiply-add contracted by the compiler: a * b + c rounds twice
    # in every loop it writes, the same in every build. The register tiles of
    # the AVX2 and AVX-512 builds fuse explicitly (FASTNN_TILE_FMA, below).
    extra_compile_args.append("-ffp-contract=off")

# The register tiles (fastnn/_tile.h) of the AVX2 and AVX-512 walker builds
# use fused multiply-add intrinsics: one instruction per multiply-add where
# there were two, measured faster (README); FASTNN_TILE_FMA=0 builds them
# without (then every build gives the same bits on the same path).
TILE_FMA = os.environ.get("FASTNN_TILE_FMA", "1") != "0"
_FMA_FLAGS = ["-mfma", "-DFASTNN_TILE_FMA=1"] if TILE_FMA else ["-DFASTNN_TILE_FMA=0"]

define_macros = [
    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
    ("FASTNN_DEBUG_BUILD", "1" if DEBUG else "0"),
]


def extension(name, extra=()):
    return Extension(
        f"fastnn.{name}",
        [f"fastnn/{name}.pyx"],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args + list(extra),
        depends=["fastnn/_kernels.pxi", "fastnn/_walker.pxi", "fastnn/_tile.h", "fastnn/_math_stages.h",
                 "fastnn/_members.pxi", "fastnn/_dense_rows.pxi"],
        include_dirs=["fastnn"],
    )


def _targets_x86_64_only():
    """True when the extensions are compiled for x86-64 alone (macOS: as ARCHFLAGS says)."""
    archs = os.environ.get("ARCHFLAGS", "").split("-arch")[1:]
    if archs:  # macOS, e.g. "-arch x86_64" or "-arch arm64" (cibuildwheel) or both (universal2)
        return [arch.strip() for arch in archs] == ["x86_64"]
    return platform.machine().lower() in ("x86_64", "amd64")


extensions = [extension("_ops"), extension("_walker_baseline")]
# The walker again with AVX2 and with AVX-512, for CPUs that have them;
# fastnn/_walker.py chooses at import. FASTNN_TILE_BYTES is the width of
# the register tile's rows in fastnn/_tile.h: two of the build's widest
# vectors (the baseline's default is two SSE2 registers). GCC/Clang on x86-64.
if os.name != "nt" and _targets_x86_64_only():
    extensions.append(extension("_walker_avx2", ["-mavx2", "-DFASTNN_TILE_BYTES=64", *_FMA_FLAGS]))
    extensions.append(extension("_walker_avx512", [
        "-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mprefer-vector-width=512",
        "-DFASTNN_TILE_BYTES=128", *_FMA_FLAGS,
    ]))

BUILD_INFO_MODULE = "_build_info.py"


def _version():
    scope = {}
    with open(os.path.join("fastnn", "_version.py"), encoding="utf-8") as file:
        exec(file.read(), scope)
    return scope["__version__"]


def _compiler_version(command):
    """First line of ``CC --version`` (GCC, Clang), or None (MSVC, or it failed)."""
    if not command:
        return None
    try:
        done = subprocess.run([command[0], "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


class build_ext(_build_ext):
    """Cythonize, compile (in parallel), then record how (``fastnn/_build_info.py``)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def settings(self):
        """What the extensions are built with: when it changes, everything is rebuilt."""
        import Cython
        import numpy

        return {
            "debug": DEBUG,
            "cython": Cython.__version__,
            "numpy": numpy.__version__,
            "directives": directives,
            "extensions": {
                ext.name.rpartition(".")[2]: {
                    "extra_compile_args": list(ext.extra_compile_args),
                    "define_macros": [list(macro) for macro in ext.define_macros],
                }
                for ext in self.extensions
            },
            "cflags": os.environ.get("CFLAGS", ""),
            "cc": os.environ.get("CC", ""),
        }

    def run(self):
        import numpy
        from Cython.Build import cythonize

        settings = self.settings()
        stamp = os.path.join(self.build_temp, "fastnn-build-settings.json")
        try:
            with open(stamp, encoding="utf-8") as file:
                previous = json.load(file)
        except (OSError, ValueError):
            previous = None
        if previous != settings:
            self.force = True

        # cythonize returns new Extension objects; setuptools has already
        # registered the originals, so only their sources are swapped for the C.
        cythonized = cythonize(
            self.extensions,
            compiler_directives=directives,
            build_dir=os.path.join(self.build_temp, "cython"),
            force=self.force,
            quiet=not self.verbose,
            # one process per module and core: Cython takes ~10 s of one core per module
            nthreads=min(len(self.extensions), os.cpu_count() or 1),
        )
        for ext, generated in zip(self.extensions, cythonized):
            assert ext.name == generated.name, (ext.name, generated.name)
            ext.sources = list(generated.sources)
            if numpy.get_include() not in ext.include_dirs:
                ext.include_dirs.append(numpy.get_include())

        super().run()

        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w", encoding="utf-8") as file:
            json.dump(settings, file, indent=1)
        self.write_build_info(settings)

    def write_build_info(self, settings):
        compiler = self.compiler
        command = list(getattr(compiler, "compiler_so", None) or [])
        info = {
            "version": _version(),
            "debug": settings["debug"],
            "cython_version": settings["cython"],
            "cython_directives": settings["directives"],
            "numpy_version": settings["numpy"],
            "python_version": platform.python_version(),
            "platform": sysconfig.get_platform(),
            "machine": platform.machine(),
            "compiler_type": getattr(compiler, "compiler_type", None),
            "compiler": _compiler_version(command),
            "compiler_command": command or list(getattr(compiler, "compile_options", None) or []),
            "extensions": settings["extensions"],
        }
        text = (
            '"""How this build of fastnn was made: written by setup.py\'s build_ext. Do not edit."""\n\n'
            f"INFO = {info!r}\n"
        )
        if self.inplace:
            package_dir = self.get_finalized_command("build_py").get_package_dir("fastnn")
        else:
            package_dir = os.path.join(self.build_lib, "fastnn")
        os.makedirs(package_dir, exist_ok=True)
        path = os.path.join(package_dir, BUILD_INFO_MODULE)
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
        self.announce(f"wrote {path}", level=2)


setup(
    ext_modules=extensions,
    cmdclass={"build_ext": build_ext},
)
