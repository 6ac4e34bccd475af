"""Write tests/data/torch_pins.py: every case of tests/test_torch_oracle.py run by PyTorch.

Run from a checkout, in an environment with fastnn's test extra and the
PyTorch the pins name (``pip install -e ".[test,torch]"``)::

    python tests/data/make_torch_pins.py

The pins are PyTorch's own numbers for inputs the test module defines; the
wheels' test runs, which have no PyTorch, compare fastnn with them. Rerun
this after adding or changing a case (the pins hold a digest of each case's
inputs, and the test says when it no longer matches).
"""

import pprint
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

import test_torch_oracle as oracle  # noqa: E402


def main() -> None:
    if torch.__version__.split("+")[0] != oracle.TORCH_VERSION:
        sys.exit(f"the pins are made with torch {oracle.TORCH_VERSION}, this is {torch.__version__}")
    pins = oracle.make_pins()
    text = (
        '"""PyTorch\'s values for the cases of tests/test_torch_oracle.py, in float64 and float32.\n\n'
        f"Written by tests/data/make_torch_pins.py with torch {torch.__version__}; do not edit.\n"
        '"""\n\n'
        f"TORCH_VERSION = {torch.__version__!r}\n\n"
        f"PINS = {pprint.pformat(pins, width=120, compact=True, sort_dicts=True)}\n"
    )
    oracle.PINS_PATH.write_text(text)
    print(f"wrote {len(pins)} cases to {oracle.PINS_PATH} ({len(text)} characters)")


if __name__ == "__main__":
    main()
