"""The README: its two set-up commands (CI runs exactly the test one), its examples, its size, its speed table."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_has_the_demo_and_test_commands():
    commands = readme_commands()
    assert any("pip install" in c and "-m fastnn demo" in c for c in commands)
    assert any("pip install" in c and '".[test]"' in c and "-m pytest" in c for c in commands)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c for c in readme_commands() if '".[test]"' in c and "-m pytest" in c)
    assert test_command in ci.splitlines()


def test_readme_python_examples_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # the examples write files (net.npz)
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[0.  0.5 1.  0.5 0.  0.5 1. ]"
    assert (tmp_path / "net.npz").exists()


def test_readme_is_a_landing_page():
    text = (ROOT / "README.md").read_text()
    assert len(text) < 10_000, "the README is the landing page: the rest belongs in docs/guide/"
    for heading in ("## Two commands", "## A tour", "## Speed", "## Documentation"):
        assert heading in text


def test_ci_builds_the_documentation_as_the_readme_says():
    ci = (ROOT / ".ci" / "run").read_text()
    docs_command = next(c for c in readme_commands() if "-m sphinx" in c)
    assert '".[docs]"' in docs_command and "-W -b html docs docs/_build/html" in docs_command
    # CI installs the docs extra's requirements (the editable install is there already) and
    # then builds exactly as the README says.
    install, build = docs_command.split(" && ", 1)
    assert install == '.venv/bin/python -m pip install -e ".[docs]"'
    assert any(line == ".venv/bin/python -m pip install -q $(.venv/bin/python .ci/extra_requirements.py docs) && "
               + build for line in ci.splitlines())
    printed = subprocess.run([sys.executable, str(ROOT / ".ci" / "extra_requirements.py"), "docs"],
                             capture_output=True, text=True, check=True).stdout.split()
    # pyproject.toml's docs extra, read with a pattern (Python 3.10 has no tomllib)
    pyproject = (ROOT / "pyproject.toml").read_text()
    listed = re.search(r"^docs = \[(.*?)\]$", pyproject, re.M | re.S).group(1)
    assert printed == re.findall(r'"([^"]+)"', listed)


def _readme_table():
    if not (ROOT / "docs" / "readme_table.py").exists():
        pytest.skip("docs/ is not in this tree (the sdist's tests, run against an installed wheel)")
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "docs" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_speed_table_is_the_results_file():
    """The figures are docs/results/compare.json's, drawn by docs/readme_table.py, never typed by hand."""
    readme_table = _readme_table()
    text = (ROOT / "README.md").read_text()
    block = text.split(readme_table.BEGIN, 1)[1].split(readme_table.END, 1)[0].strip()
    expected = readme_table.table(readme_table.fastnn_results.load("compare"))
    assert block == expected, "run `python docs/readme_table.py --write` after remaking docs/results/compare.json"


def test_readme_speed_table_without_a_results_file(tmp_path):
    readme_table = _readme_table()
    assert readme_table.fastnn_results.load("compare", tmp_path) is None
    assert readme_table.table(None) == "Not measured in this build: `docs/results/compare.json` is absent."


def test_readme_search_table_is_the_results_file():
    """The search's figures are docs/results/dask_search.json's, drawn by docs/readme_table.py."""
    readme_table = _readme_table()
    text = (ROOT / "README.md").read_text()
    block = text.split(readme_table.DASK_BEGIN, 1)[1].split(readme_table.DASK_END, 1)[0].strip()
    expected = readme_table.dask_table(readme_table.fastnn_results.load("dask_search"))
    assert block == expected, "run `python docs/readme_table.py --write` after remaking docs/results/dask_search.json"
    assert readme_table.dask_table(None) == "Not measured in this build: `docs/results/dask_search.json` is absent."
