"""Speed of ReLU with a mask next to ReLU alone, from 2**16 to 2**26 elements.

    python bench/run.py                                    # with the rest of the suite
    FASTRELU_BENCH_SIZES=16,24 python bench/run.py -k mask  # only these groups

One benchmark per direction, dtype and size times, in interleaved rounds
(``fastrelu._throughput.interleave``), both forms with ``out=``: the
forward, ``relu(x, out=y)`` against ``relu_with_mask(x, y, mask_out=m)``,
and the backward, ``relu_backward(x, g, out=o)`` against
``relu_backward_from_mask(mask, g, out=o)``.  ``extra_info`` holds every
sample and the bytes each form reads and writes (a mask is a quarter of a
byte per element); ``bench/render.py`` turns them into times, GB/s and the
ratio of the two.  ``bench/mask.py`` prints the same comparison on its own,
with the bytes each form keeps and a training step's peak memory.
"""

import functools
import math

import numpy as np
import pytest
from test_kernels import DTYPES, exponents_from_environment, timed

import fastrelu

DEFAULT_EXPONENTS = tuple(range(16, 27, 2))


def _groups():
    for dtype in DTYPES:
        for exponent in exponents_from_environment(DEFAULT_EXPONENTS):
            for op in ("relu", "relu_backward"):
                yield pytest.param(op, dtype, 2**exponent, id=f"mask-{op}-{dtype}-2**{exponent}")


@pytest.mark.parametrize("op, dtype, size", list(_groups()))
def test_mask(benchmark, request, arrays, op, dtype, size):
    x, g = arrays(dtype, size)
    out = np.empty_like(x)
    y, mask = fastrelu.relu_with_mask(x)
    bits = np.empty_like(mask.bits)
    mask_bytes = math.ceil(size / 4)
    if op == "relu":
        calls = {
            "plain": functools.partial(fastrelu.relu, x, out),
            "mask": functools.partial(fastrelu.relu_with_mask, x, out, mask_out=bits),
        }
        moved = {"plain": 2 * x.nbytes, "mask": 2 * x.nbytes + mask_bytes}
        labels = {"plain": "fastrelu.relu(x, out=o)", "mask": "fastrelu.relu_with_mask(x, o, mask_out=m)"}
    else:
        calls = {
            "plain": functools.partial(fastrelu.relu_backward, x, g, out),
            "mask": functools.partial(fastrelu.relu_backward_from_mask, mask, g, out),
        }
        moved = {"plain": 3 * x.nbytes, "mask": 2 * x.nbytes + mask_bytes}
        labels = {
            "plain": "fastrelu.relu_backward(x, g, out=o)",
            "mask": "fastrelu.relu_backward_from_mask(mask, g, out=o)",
        }
    for call in calls.values():  # compiles, and faults in the pages, outside the timing
        call()
    timings = timed(benchmark, request, calls, f"mask {op} {dtype} 2**{size.bit_length() - 1}")
    benchmark.extra_info.update(
        suite="mask",
        op=op,
        dtype=dtype,
        size=size,
        implementations={
            key: {"label": labels[key], "bytes": moved[key], "samples": timings[key].samples} for key in calls
        },
    )
