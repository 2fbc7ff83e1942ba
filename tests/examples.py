"""The fenced ``python`` examples of the README and the documentation pages,
for the tests that run them (``>>>`` examples run as doctests instead)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/index.md", "docs/kink.md", "docs/gpu.md", "docs/dask.md"]
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks():
    """``(page, number, code, needs_gpu)`` of every runnable python block.

    Blocks that are doctests, or that include a file (``--8<--``, run by
    the file's own test), are left out.
    """
    found = []
    for page in PAGES:
        blocks = _FENCE.findall((ROOT / page).read_text())
        for number, code in enumerate(blocks, 1):
            if code.lstrip().startswith((">>>", "--8<--")):
                continue
            found.append((page, number, code, "cuda" in code or "cupy" in code))
    return found


def run_block(code):
    """Run *code* as a script would run."""
    exec(compile(code, "<example>", "exec"), {"__name__": "__main__"})
