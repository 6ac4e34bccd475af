"""Print the requirements of pyproject.toml's optional extras, one per line.

CI installs an extra's requirements into the venv that already holds the
editable fastnn (``pip install $(python .ci/extra_requirements.py docs)``)
instead of ``pip install -e ".[docs]"``, which would build the compiled
modules again (minutes on two cores) to install the same package.

Usage: python .ci/extra_requirements.py EXTRA [EXTRA ...]
"""
import pathlib
import sys

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10: pytest's own dependency reads TOML there
    import tomli as tomllib

extras = tomllib.loads((pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text())[
    "project"]["optional-dependencies"]
unknown = [name for name in sys.argv[1:] if name not in extras]
if unknown or len(sys.argv) < 2:
    sys.exit(f"usage: {sys.argv[0]} EXTRA [EXTRA ...]; unknown: {unknown}; extras: {sorted(extras)}")
print("\n".join(dict.fromkeys(req for name in sys.argv[1:] for req in extras[name])))
