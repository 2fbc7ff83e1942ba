"""The GPU examples of the README and the documentation pages, on a GPU or
in Numba's CUDA simulator."""

import sys
from pathlib import Path

import pytest
from numba import config, cuda

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples import python_blocks, run_block  # noqa: E402

if not (config.ENABLE_CUDASIM or cuda.is_available()):
    pytest.skip("neither a GPU nor NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

BLOCKS = [block for block in python_blocks() if block[3]]


def test_the_pages_have_gpu_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("page, number, code, needs_gpu", BLOCKS, ids=[f"{p}-{n}" for p, n, *_ in BLOCKS])
def test_gpu_example_runs(page, number, code, needs_gpu):
    for library in ("cupy", "torch"):
        if f"import {library}" in code:
            pytest.importorskip(library)
    if "torch" in code and not sys.modules["torch"].cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    run_block(code)
