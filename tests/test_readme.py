"""The README's two set-up commands, and CI running exactly the test one."""

import pathlib
import re

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
    # The printed results the README quotes as comments (times aside) are the ones a run prints.
    for line in out:
        if line.startswith(("Friedman", "fastnn:", "scikit-learn:")):
            quoted = line.split(", fit")[0]
            assert f"# {quoted}" in text, line
