"""The README's and the documentation's code examples run as written."""

import pytest
from examples import python_blocks, run_block

import fastrelu
from fastrelu import config

BLOCKS = python_blocks()


def test_the_pages_have_examples_on_the_host():
    assert sum(not gpu for *_, gpu in BLOCKS) >= 3


@pytest.mark.parametrize(
    "page, number, code, needs_gpu", BLOCKS, ids=[f"{page}-{number}" for page, number, *_ in BLOCKS]
)
def test_example_runs(page, number, code, needs_gpu):
    if needs_gpu and not fastrelu.cuda_available():
        pytest.skip("a GPU example: tests/cuda runs it in the simulator")
    with config.set(dask_block_threads=config.DASK_BLOCK_THREADS):  # restored afterwards
        run_block(code)
