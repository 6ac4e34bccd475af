"""fastnn.show_config() and `python -m fastnn info` tell the truth about the build.

The build facts come from ``fastnn/_build_info.py``, which setup.py's
build_ext writes when it compiles the extensions. These tests hold that
record to what can be read off the compiled modules themselves (the
``FASTNN_DEBUG_BUILD`` macro behind ``_ops.DEBUG_BUILD``, the Cython
runtime every extension carries, which extensions exist) and to the build
switch CI sets (``FASTNN_DEBUG``, as tests/test_build.py does).
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

import fastnn
from fastnn import _blas, _ops, _walker

WALKERS = ("_walker_baseline", "_walker_avx2", "_walker_avx512")


def wanted_debug():
    return os.environ.get("FASTNN_DEBUG", "0").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def info():
    # No fallback: the suite runs against builds made by setup.py, which
    # always records them.
    from fastnn._build_info import INFO

    return INFO


def run_info(*args, **env):
    environment = {key: value for key, value in os.environ.items() if key not in ("FASTNN_ISA", "FASTNN_BLAS")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-m", "fastnn", "info", *args], capture_output=True, text=True,
                          env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_record_sits_beside_the_extensions_it_describes(info):
    import fastnn._build_info

    here = pathlib.Path(_ops.__file__).parent
    assert pathlib.Path(fastnn._build_info.__file__).parent == here
    assert info["version"] == fastnn.__version__


def test_debug_build_is_the_compiled_one_and_the_one_ci_asked_for(info):
    assert info["debug"] is bool(_ops.DEBUG_BUILD) is wanted_debug()
    for directive in ("boundscheck", "wraparound", "initializedcheck"):
        assert info["cython_directives"][directive] is info["debug"], directive


def test_each_extension_records_the_flags_of_its_build(info):
    debug = info["debug"]
    for name, ext in info["extensions"].items():
        flags = ext["extra_compile_args"]
        if os.name == "nt":
            assert flags[: 2 if debug else 1] == (["/Od", "/Zi"] if debug else ["/O2"]), (name, flags)
        else:
            assert flags[:2] == (["-O0", "-g"] if debug else ["-O3", "-g0"]), (name, flags)
            assert "-march=native" not in flags
        assert dict(map(tuple, ext["define_macros"]))["FASTNN_DEBUG_BUILD"] == ("1" if debug else "0")
    assert info["compiler_command"], "the compiler's command line was not recorded"


def test_the_recorded_extensions_are_the_ones_that_exist(info):
    for name in ("_ops", *WALKERS):
        exists = importlib.util.find_spec(f"fastnn.{name}") is not None
        assert (name in info["extensions"]) is exists, name
    if "_walker_avx2" in info["extensions"]:
        assert "-mavx2" in info["extensions"]["_walker_avx2"]["extra_compile_args"]
    if "_walker_avx512" in info["extensions"]:
        assert "-mavx512f" in info["extensions"]["_walker_avx512"]["extra_compile_args"]
    assert not any(flag.startswith(("-mavx", "-march")) for flag in info["extensions"]["_walker_baseline"]["extra_compile_args"])
    if os.name != "nt":
        for name, ext in info["extensions"].items():
            # Without it, the AVX-512 build would fuse multiply-adds and give other bits.
            assert "-ffp-contract=off" in ext["extra_compile_args"], name


def test_cython_version_is_the_one_the_extensions_carry(info):
    # Cython puts its shared types (cyfunction, ...) in a module named after
    # its version, "_cython_3_1_2": the binary's own word on what made it.
    runtime = type(_ops.cpu_has_avx2).__module__
    assert runtime == "_cython_" + info["cython_version"].replace(".", "_")


def test_show_config_prints_the_facts(capsys, info):
    assert fastnn.show_config() is None
    out = capsys.readouterr().out
    assert out.startswith(f"fastnn {fastnn.__version__}\n")
    assert f"bounds-checked build (FASTNN_DEBUG=1): {'yes' if wanted_debug() else 'no'}" in out
    assert f"Cython: {info['cython_version']}" in out
    assert "boundscheck=" + str(info["debug"]) in out
    assert " ".join(info["compiler_command"]) in out
    for name, ext in info["extensions"].items():
        assert f"    {name}: {' '.join(ext['extra_compile_args'])}" in out
    assert f"network walker: {_walker.ISA} build ({_walker.Network.__module__})" in out
    assert f"BLAS for large layers: {_blas.find_blas().source}" in out
    assert "WARNING" not in out


def test_show_config_dicts(info):
    facts = fastnn.show_config(mode="dicts")
    assert facts["fastnn"]["version"] == fastnn.__version__
    assert facts["build"]["debug_build"] is facts["build"]["debug"] is info["debug"]
    assert facts["build"]["cython_runtime"] == info["cython_version"]
    assert facts["runtime"]["walker"]["isa"] == _walker.ISA
    assert facts["runtime"]["blas"]["source"] == _blas.find_blas().source
    json.dumps(facts)  # plain data all the way down
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts', got 'yaml'"):
        fastnn.show_config(mode="yaml")


def test_threads_are_threadpoolctls_count_of_the_blas_fastnn_calls():
    import threadpoolctl

    if not _blas.find_blas().kind:
        assert fastnn.show_config(mode="dicts")["runtime"]["blas"]["note"] == "no BLAS"
        return
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert fastnn.show_config(mode="dicts")["runtime"]["blas"]["num_threads"] == 1
    counts = {entry["num_threads"] for entry in threadpoolctl.threadpool_info() if entry["user_api"] == "blas"}
    assert fastnn.show_config(mode="dicts")["runtime"]["blas"]["num_threads"] in counts


def test_threads_are_unknown_without_threadpoolctl(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl raises ImportError
    fastnn.show_config()
    out = capsys.readouterr().out
    if _blas.find_blas().kind:
        assert "threads: unknown (threadpoolctl is not installed)" in out
    assert fastnn.show_config(mode="dicts")["runtime"]["blas"]["num_threads"] is None


def test_python_m_fastnn_info_in_a_fresh_process(info):
    out = run_info(FASTNN_ISA="baseline", FASTNN_BLAS="none")
    assert out.startswith(f"fastnn {fastnn.__version__}\n")
    assert "network walker: baseline build (fastnn._walker_baseline)" in out
    assert f"BLAS for large layers: {_blas.BlasInfo().source}; FASTNN_BLAS=none" in out
    assert f"Cython: {info['cython_version']}" in out
    # The same switches as this process, so the fresh one picks the same walker and BLAS.
    same = {key: os.environ[key] for key in ("FASTNN_ISA", "FASTNN_BLAS") if key in os.environ}
    facts = json.loads(run_info("--json", **same))
    assert facts["build"]["debug_build"] is wanted_debug()
    assert facts["runtime"]["walker"]["isa"] == _walker.ISA
    assert facts["runtime"]["blas"]["source"] == _blas.find_blas().source
