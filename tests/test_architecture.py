"""The shape of fastnn's Python source, read with ``ast``: no import circle, short functions, no
private attribute of one module used by another.

Each rule is checked on every ``fastnn/*.py`` file, so a new module is held to it as soon as it
exists. The compiled modules (``fastnn._ops``, the walker builds) and the generated
``fastnn/_build_info.py`` import nothing of fastnn's Python: they are leaves of the graph.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import fastnn

# The same on every build, ISA, plan and wheel: run once per tree (tests/conftest.py).
pytestmark = pytest.mark.source_only

# The package the tests run against: the source tree in a checkout (an editable install), the
# installed package in the wheel runs; either way its .py files are the ones read.
PACKAGE = pathlib.Path(fastnn.__file__).resolve().parent
SOURCES = sorted(path for path in PACKAGE.glob("*.py") if path.name != "_build_info.py")

#: The longest function a reader is asked to hold: ``def`` line to last line, less its docstring
#: (a numpydoc docstring documents every parameter; it is read, not held).
MAX_FUNCTION_LINES = 60

#: (module, name) pairs allowed to use another module's private name, each with its reason.
_MEMBER = "an Ensemble's members are Sequentials, in the same part (Model)"
_RULES = "Sequential's argument rules, reused (one home per rule)"
PRIVATE_NAME_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("fastnn.ensemble", "_on_buffers"): _MEMBER + ": each is built on a row of the stacked buffers",
    ("fastnn.ensemble", "_net"): _MEMBER + ": one compiled call drives their networks",
    ("fastnn.ensemble", "_updates"): _MEMBER + ": each keeps its optimizer states, as a Sequential does",
    ("fastnn.ensemble", "_check_X"): _RULES,
    ("fastnn.ensemble", "_check_loss"): _RULES,
    ("fastnn.ensemble", "_check_optimizer"): _RULES,
    ("fastnn.ensemble", "_check_stopping"): _RULES,
    ("fastnn.ensemble", "_check_verbose"): _RULES,
    ("fastnn.ensemble", "_divergence_message"): _RULES + " (what a diverged fit says)",
}


def module_name(path: pathlib.Path) -> str:
    return "fastnn" if path.stem == "__init__" else f"fastnn.{path.stem}"


MODULES = {module_name(path): path for path in SOURCES}


def parse(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports there never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST):
    """Every import statement that can run: at the top, in functions, in classes, in try/if blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if is_type_checking_block(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(module: str, tree: ast.AST) -> set[str]:
    """The fastnn modules ``module`` imports (``fastnn`` itself is the package's ``__init__``)."""
    found = set()
    package_of = "fastnn"
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "fastnn")
            continue
        base = node.module or ""
        if node.level:                       # relative: fastnn's modules all sit in the package itself
            base = package_of + ("." + base if base else "")
        if base.split(".")[0] != "fastnn":
            continue
        if base == "fastnn":
            # ``from fastnn import x``: the submodule x if there is one, else a name of __init__.
            for alias in node.names:
                candidate = f"fastnn.{alias.name}"
                found.add(candidate if candidate in MODULES or alias.name.startswith("_") else "fastnn")
        else:
            found.add(base)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Edges between fastnn's Python modules; imports of compiled or generated modules are dropped."""
    return {name: {target for target in imported_modules(name, parse(path)) if target in MODULES}
            for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}           # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


# -- the graph helpers, on small made-up sources ----------------------------------------------------


def test_the_import_reader_sees_function_level_relative_and_package_imports():
    source = """
import numpy
import fastnn
from fastnn import ops, _ops, Sequential
from . import losses
from .model import Sequential

def later():
    from fastnn.io import save
    if True:
        import fastnn.layers

class Holder:
    def method(self):
        from fastnn.optimizers import SGD

if TYPE_CHECKING:
    from fastnn.estimators import MLPRegressor
"""
    found = imported_modules("fastnn.datasets", ast.parse(source))
    assert found == {"fastnn", "fastnn.ops", "fastnn._ops", "fastnn.losses", "fastnn.model",
                     "fastnn.io", "fastnn.layers", "fastnn.optimizers"}


def test_find_cycle_finds_indirect_cycles_and_accepts_a_diamond():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


# -- the rules, on fastnn's source --------------------------------------------------------------------


def test_every_module_is_read():
    assert {"fastnn", "fastnn.validation", "fastnn.ops", "fastnn.model", "fastnn.io"} <= set(MODULES)


def test_no_module_imports_a_module_that_imports_it_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def long_functions() -> list[str]:
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                        and isinstance(first.value.value, str)):
                    assert first.end_lineno is not None
                    length -= first.end_lineno - first.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_a_reader_can_hold():
    assert long_functions() == []


def is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def defined_names(tree: ast.AST) -> set[str]:
    """Names a module defines: functions, classes, names it assigns, attributes it assigns on
    ``self`` or ``cls``, parameters, and strings that name attributes (``__slots__``, ``getattr``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and is_self(node.value):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)
    return names


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def foreign_private_names(module: str, tree: ast.AST) -> list[tuple[str, int, str]]:
    """(module, line, name) of each ``obj._name`` (obj not self or cls, read or written) and each
    ``from fastnn.x import _name`` where ``_name`` is not defined in ``module`` itself."""
    imported = {alias.asname or alias.name for node in import_nodes(tree) for alias in node.names}
    own = defined_names(tree) - imported
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            if not is_self(node.value) and node.attr not in own:
                found.append((module, node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastnn."):
            found += [(module, node.lineno, alias.name) for alias in node.names if is_private(alias.name)]
    return [entry for entry in found if (entry[0], entry[2]) not in PRIVATE_NAME_EXCEPTIONS]


def test_the_private_name_reader_sees_reads_writes_and_imports():
    source = """
from fastnn.validation import _describe, check_array
from fastnn import _ops

class Mine:
    _slot = 1

    def method(self, other, model):
        self._own = other._slot          # defined here: fine
        model._lock = None               # written on another object: not a definition
        return model._params, _ops.FN_CODES, type(self)._slot, self._own
"""
    found = foreign_private_names("fastnn.demo", ast.parse(source))
    assert sorted(found) == [("fastnn.demo", 2, "_describe"), ("fastnn.demo", 10, "_lock"),
                             ("fastnn.demo", 11, "_params")]


def test_no_module_uses_a_private_name_of_another():
    assert all(reason.strip() for reason in PRIVATE_NAME_EXCEPTIONS.values()), "an exception needs its reason"
    found = []
    for name, path in MODULES.items():
        found += foreign_private_names(name, parse(path))
    assert found == []
