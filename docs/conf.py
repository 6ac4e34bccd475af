"""Sphinx configuration of fastnn's documentation.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (the
``docs`` extra installs what it needs). Three things are made at build time,
so that nobody edits the docs when the package changes:

* the API reference (``docs/api/``, not committed), one page per name in the
  ``__all__`` of fastnn and of each public module (:func:`write_api_pages`);
* the gallery (``docs/auto_examples/``), by running every ``examples/plot_*.py``;
* the performance tables and charts, from ``docs/results/*.json``
  (``docs/_ext/fastnn_results.py``).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import fastnn  # noqa: E402

project = "fastnn"
author = "The fastnn developers"
copyright = "The fastnn developers"
release = fastnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "fastnn_results",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]
html_theme = "pydata_sphinx_theme"
html_title = f"fastnn {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_show_sourcelink = False

autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "none"              # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False     # the class template lists the members itself
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": str(HERE / "auto_examples"),
    "filename_pattern": r"/plot_",      # every example runs
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
}

# -- the API reference, generated from __all__ --------------------------------------

#: Modules with a section of their own, in this order; other public modules
#: with an ``__all__`` (fastnn.export, when it exists) follow, found at build time.
API_MODULES = ["fastnn.ops", "fastnn.reference", "fastnn.datasets", "fastnn.plot", "fastnn.callbacks",
               "fastnn.estimators", "fastnn.io", "fastnn.dask"]
#: Public modules that are not the user's: their names are documented at the top level.
API_SKIP = {"fastnn.layers", "fastnn.losses", "fastnn.model", "fastnn.optimizers", "fastnn.validation"}


def api_modules() -> list[str]:
    """The modules of the API reference: API_MODULES, then every other public one that imports."""
    found = [f"fastnn.{info.name}" for info in pkgutil.iter_modules(fastnn.__path__)
             if not info.name.startswith("_")]
    names = []
    for name in API_MODULES + sorted(set(found) - set(API_MODULES)):
        if name in API_SKIP or name in names:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:             # an optional dependency missing: no section
            continue
        if getattr(module, "__all__", None):
            names.append(name)
    return names


def public_names(module) -> list[str]:
    """The names of ``module.__all__`` that get a page: no submodules, no dunders."""
    return [name for name in module.__all__
            if not name.startswith("__") and not isinstance(getattr(module, name), type(fastnn))]


def _section(title: str, module: str, names: list[str], current: str) -> list[str]:
    lines = [title, "-" * len(title), "", f".. currentmodule:: {current}", ""]
    if module:
        lines += [f".. automodule:: {module}", "   :no-members:", "   :no-index:", ""]
    lines += [".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
    lines += [f"   {name}" for name in names] + [""]
    return lines


def write_api_pages() -> list[str]:
    """Write ``docs/api/index.rst``: one autosummary section per module; returns every documented name."""
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    top = public_names(fastnn)
    lines = ["API reference", "=============", "",
             "Every public name of fastnn, from its docstring. This page is generated from the",
             "modules' ``__all__`` when the documentation is built.", ""]
    lines += _section("fastnn", "", top, "fastnn")
    documented = [f"fastnn.{name}" for name in top]
    for name in api_modules():
        module = importlib.import_module(name)
        names = public_names(module)
        lines += _section(name, name, names, name)
        documented += [f"{name}.{item}" for item in names]
    text = "\n".join(lines)
    index = out / "index.rst"
    if not index.exists() or index.read_text() != text:
        index.write_text(text)
    return documented


# Written when this file is read, before Sphinx looks for source files and autosummary writes its stubs.
write_api_pages()


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's metadata-routing setters (set_fit_request, ...): its docs, not ours."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
