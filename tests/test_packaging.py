"""What a user installs: a light import, type information that tells the truth, the metadata.

These run against whatever fastnn is imported: the checkout's (editable
install) in the in-tree suite, the installed wheel in .ci/wheels.sh.
"""

import ast
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

import fastnn
from fastnn import _blas, _ops

PACKAGE = pathlib.Path(fastnn.__file__).resolve().parent
COMPILED = ("_ops", "_walker_baseline", "_walker_avx2", "_walker_avx512")
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")

#: Never imported by ``import fastnn``: plotting, SciPy, progress bars, the
#: other frameworks, Dask and fastnn's face on it, the build and test tools.
HEAVY = ("matplotlib", "scipy", "tqdm", "pandas", "torch", "sklearn", "threadpoolctl", "Cython", "setuptools",
         "pytest", "hypothesis", "fastnn.plot", "dask", "distributed", "fastnn.dask")

IMPORT_SCRIPT = """
import json, sys
import fastnn
from fastnn import _blas
loaded = sorted(sys.modules)
print(json.dumps({"modules": loaded, "blas_kind": _blas.find_blas().kind}))
"""


def imported_by_import_fastnn(**env):
    environment = {key: value for key, value in os.environ.items() if key != "FASTNN_BLAS"}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], capture_output=True, text=True,
                          env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def loaded(modules, name):
    return any(module == name or module.startswith(name + ".") for module in modules)


def test_import_fastnn_imports_nothing_heavy():
    found = imported_by_import_fastnn()
    # SciPy only where it is the BLAS fastnn calls: NumPy built without its
    # OpenBLAS (fastnn._blas's documented fallback).
    allowed = {"scipy"} if found["blas_kind"] == _blas.KIND_FORTRAN32 else set()
    heavy = [name for name in HEAVY if name not in allowed and loaded(found["modules"], name)]
    assert heavy == []


def test_import_fastnn_without_blas_imports_no_scipy_either():
    found = imported_by_import_fastnn(FASTNN_BLAS="none")
    assert found["blas_kind"] == 0
    assert [name for name in HEAVY if loaded(found["modules"], name)] == []


def test_type_information_ships_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    for name in COMPILED:
        assert (PACKAGE / f"{name}.pyi").is_file(), name


def stub_names(tree):
    """Public names a stub (module body or class body) defines or re-exports (``import x as x``)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname for alias in node.names if alias.asname == alias.name)
    return {name for name in names if not name.startswith("_")}


def runtime_names(namespace):
    return {name for name in dir(namespace)
            if not name.startswith("_") and not isinstance(getattr(namespace, name), types.ModuleType)}


def read_stub(name):
    return ast.parse((PACKAGE / f"{name}.pyi").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", COMPILED)
def test_stubs_name_what_the_compiled_modules_define(name):
    # The AVX2 and AVX-512 walkers are the baseline one compiled with other
    # flags; where they are not built (not x86-64, or MSVC), or built for
    # instructions this CPU lacks (importing them would die of SIGILL: their
    # module init is compiled with those flags too), their stubs must match
    # the baseline.
    built = importlib.util.find_spec(f"fastnn.{name}") is not None
    runs = {"_walker_avx2": _ops.cpu_has_avx2(), "_walker_avx512": _ops.cpu_has_avx512()}.get(name, True)
    module = importlib.import_module(f"fastnn.{name}" if built and runs else "fastnn._walker_baseline")
    stub = read_stub(name)
    assert stub_names(stub) == runtime_names(module)
    classes = [node for node in stub.body if isinstance(node, ast.ClassDef)]
    for node in classes:
        assert stub_names(node) == runtime_names(getattr(module, node.name)), node.name
    if name in ("_walker_avx2", "_walker_avx512"):
        # It re-exports the baseline stub's names, classes and all.
        assert stub_names(stub) == stub_names(read_stub("_walker_baseline"))
        assert all(node.module == "fastnn._walker_baseline" for node in stub.body if isinstance(node, ast.ImportFrom))


@pytest.fixture(scope="module")
def distribution():
    try:
        return importlib.metadata.distribution("fastnn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastnn is imported from a source tree that is not installed: no metadata to check")


def test_metadata_names_the_license_the_pythons_and_the_urls(distribution):
    metadata = distribution.metadata
    assert metadata["Name"] == "fastnn"
    assert metadata["Version"] == fastnn.__version__
    assert metadata["License-Expression"] == "MIT"
    assert "LICENSE" in metadata.get_all("License-File")
    assert metadata["Requires-Python"] == f">={SUPPORTED_PYTHONS[0]}"
    classifiers = metadata.get_all("Classifier")
    versions = {c.rpartition(" :: ")[2] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")}
    assert versions == set(SUPPORTED_PYTHONS)
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the expression says it (PEP 639)
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    requires = metadata.get_all("Requires-Dist")
    assert "numpy>=2" in requires
    assert any(r.startswith("threadpoolctl") and 'extra == "test"' in r for r in requires)


def test_the_license_file_is_installed(distribution):
    licenses = [f for f in distribution.files or () if f.name == "LICENSE"]
    assert licenses, "no LICENSE among the installed files"
    assert "MIT License" in licenses[0].read_text(encoding="utf-8")
