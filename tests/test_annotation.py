"""No Python call inside a compiled loop: `cython -a` shows every nogil function white."""

import html
import pathlib
import re
import subprocess
import sys

import pytest

import fastnn

# The same on every build, ISA, plan and wheel: run once per tree (tests/conftest.py).
pytestmark = pytest.mark.source_only

# The .pyx/.pxi sources ship with the package (in the wheel too).
SOURCE = pathlib.Path(fastnn.__file__).resolve().parent


def flattened(path: pathlib.Path) -> str:
    """The source with its `include` lines replaced by the included files."""
    def expand(match):
        return flattened(path.parent / match.group(1))
    return re.sub(r'^include "([^"]+)"$', expand, path.read_text(), flags=re.M)


def annotated_lines(tmp_path, name):
    source = tmp_path / f"{name}.pyx"
    source.write_text(flattened(SOURCE / f"{name}.pyx"))
    directives = ["boundscheck=False", "wraparound=False", "initializedcheck=False", "cdivision=True"]
    command = [sys.executable, "-m", "cython", "-3", "-a", str(source)]
    for directive in directives:
        command += ["-X", directive]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / f"{name}.html").read_text()
    rows = re.findall(r'<pre class="cython line score-(\d+)"[^>]*>(.*?)</pre>', page, flags=re.S)
    lines = []
    for score, body in rows:
        text = html.unescape(re.sub(r"<[^>]+>", "", body))
        code = re.sub(r"^\+?\s*\d+:\s?", "", text.strip("\n"))
        lines.append((int(score), code))
    return lines


def nogil_function_lines(lines):
    """(function, score, line) for each line of every `noexcept nogil` cdef function."""
    current, header, inside = None, [], False
    for score, code in lines:
        start = re.match(r"cdef\s+(?:inline\s+)?[\w\*\s]+?\b(\w+)\(", code)
        if start and not code.startswith(" "):
            current, header, inside = start.group(1), [code], False
        elif header and not inside:
            header.append(code)
        if header and not inside and re.search(r"\)\s*(?:->\s*\w+\s*)?noexcept nogil:", " ".join(header)):
            inside = True
            continue
        if inside and code.strip() and not code.startswith((" ", "\t")):
            current, header, inside = None, [], False
            continue
        if inside:
            yield current, score, code


@pytest.mark.parametrize("name", ["_walker_baseline", "_ops"])
def test_nogil_kernels_make_no_python_calls(tmp_path, name):
    lines = annotated_lines(tmp_path, name)
    kernel_lines = list(nogil_function_lines(lines))
    functions = {function for function, _, _ in kernel_lines}
    assert len(functions) >= (15 if name == "_walker_baseline" else 9), sorted(functions)
    yellow = [(function, code.strip()) for function, score, code in kernel_lines if score > 0]
    assert yellow == []
