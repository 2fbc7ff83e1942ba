"""Speed of the kernels next to NumPy, PyTorch and a copy, from 2**4 to 2**26 elements.

    python bench/run.py                                  # this, the start-up and Dask groups, then the page
    FASTRELU_BENCH_SIZES=4,12,20 python bench/run.py     # only 2**4, 2**12 and 2**20 elements

One benchmark per operation, dtype and size times, in interleaved rounds
(``fastrelu._throughput.interleave``), every implementation of that
operation: fastrelu writing into a preallocated ``out=`` and allocating its
result, NumPy's and PyTorch's idioms for the same result in both forms, and
a copy of as many bytes on fastrelu's threads (into a preallocated array and
into fresh memory), the ceiling of a kernel that moves its bytes and
computes nothing.  Each implementation is first called until its time per
call settles; a round then takes one sample of each (a sample repeats the
call for at least 2 ms), in an order rotated from round to round, with a
pause of 10 ms between samples so that no thread pool's spinning workers
outlive their own implementation's sample.  ``extra_info`` holds every
sample and the bytes an operation must move (forward: read ``x``, write the
result; backward: read ``x`` and ``grad``, write the result);
``bench/render.py`` turns them into ratios.
"""

import functools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import fastrelu
from fastrelu._table import KERNELS
from fastrelu._throughput import (
    NUMPY_OPERATIONS,
    fastrelu_operation,
    interleave,
    parallel_copy,
    torch_operations,
)

try:
    import torch
except ImportError:
    torch = None

DTYPES = ("float32", "float64")
DEFAULT_EXPONENTS = tuple(range(4, 27, 2))


def exponents_from_environment(default=DEFAULT_EXPONENTS):
    """The sizes to run, as exponents of 2, from ``FASTRELU_BENCH_SIZES``
    ("12,16"), or *default* where it is unset."""
    text = os.environ.get("FASTRELU_BENCH_SIZES", "").strip()
    if not text:
        return list(default)
    try:
        exponents = [int(part) for part in text.split(",")]
    except ValueError:
        exponents = []
    if not exponents or not all(0 <= e <= 30 for e in exponents):
        raise ValueError(
            f"FASTRELU_BENCH_SIZES must list exponents of 2 in [0, 30], like '12,16'; got {text!r}"
        )
    return sorted(set(exponents))


@dataclass(frozen=True)
class Impl:
    key: str  # the library, then "_out" for a form that writes into a preallocated o
    label: str  # the call as the tables and plots show it
    call: Callable  # call(x, g, o); PyTorch's take tensors

    @property
    def library(self):
        return self.key.split("_")[0]

    @property
    def allocates(self):
        return not self.key.endswith("_out")


def fastrelu_implementations(name):
    """fastrelu's two forms of kernel *name*: into ``o``, and allocating."""
    func = getattr(fastrelu, name)
    names = {"x": "x", "grad": "g"}
    args = ", ".join(names[a] for a in KERNELS[name].operands)
    unary = len(KERNELS[name].operands) == 1
    return [
        Impl("fastrelu_out", f"fastrelu.{name}({args}, out=o)", fastrelu_operation(name)),
        Impl(
            "fastrelu",
            f"fastrelu.{name}({args})",
            (lambda x, g, o: func(x)) if unary else (lambda x, g, o: func(x, g)),
        ),
    ]


aten = torch.ops.aten if torch is not None else None
TORCH_OPERATIONS = torch_operations() or {}

# NumPy's and PyTorch's idioms in both forms: those that write into o are the
# ones `fastrelu bench` times too.  PyTorch's softplus and its gradient
# return x and grad where x > 20, which standard normal inputs never reach.
PEERS = {
    "relu": [
        Impl("numpy", "np.maximum(x, 0)", lambda x, g, o: np.maximum(x, 0)),
        Impl("torch", "torch.relu(x)", lambda x, g, o: torch.relu(x)),
    ],
    "relu_backward": [
        Impl("numpy", "g * (x > 0)", lambda x, g, o: g * (x > 0)),
        Impl("numpy_where", "np.where(x > 0, g, 0)", lambda x, g, o: np.where(x > 0, g, 0)),
        Impl("torch", "aten.threshold_backward(g, x, 0)", lambda x, g, o: aten.threshold_backward(g, x, 0)),
    ],
    "softplus": [
        Impl("numpy_logaddexp_out", "np.logaddexp(0, x, out=o)", lambda x, g, o: np.logaddexp(0, x, out=o)),
        Impl(
            "numpy",
            "np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))",
            lambda x, g, o: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
        ),
        Impl("torch", "F.softplus(x)", lambda x, g, o: torch.nn.functional.softplus(x)),
    ],
    "softplus_backward": [
        Impl("numpy", "g / (1 + np.exp(-x))", lambda x, g, o: g / (1 + np.exp(-x))),
        Impl(
            "torch",
            "aten.softplus_backward(g, x, 1, 20)",
            lambda x, g, o: aten.softplus_backward(g, x, 1, 20),
        ),
    ],
}
for _name, (_label, _call) in NUMPY_OPERATIONS.items():
    PEERS.setdefault(_name, []).insert(0, Impl("numpy_out", _label, _call))
for _name, (_label, _call) in TORCH_OPERATIONS.items():
    PEERS.setdefault(_name, []).insert(0, Impl("torch_out", _label, _call))

# A copy of as many bytes as the operation moves, on fastrelu's threads:
# n elements for a forward pass, 1.5 n for a backward pass (read and write).
COPIES = [
    Impl("copy_out", "copy (same bytes, same threads)", lambda src, g, dst: parallel_copy(dst, src)),
    Impl(
        "copy",
        "copy into a fresh np.empty (same bytes, same threads)",
        lambda src, g, dst: parallel_copy(np.empty_like(src), src),
    ),
]

# What every implementation must agree with, computed in float64.
REFERENCES = {
    "relu": lambda x, g: np.maximum(x, 0),
    "relu_backward": lambda x, g: np.where(x > 0, g, 0),
    "softplus": lambda x, g: np.logaddexp(0, x),
    "softplus_backward": lambda x, g: g / (1 + np.exp(-x)),
}


def implementations(op):
    """Every implementation timed for operation *op*, PyTorch's only if installed."""
    peers = [impl for impl in PEERS.get(op, []) if impl.library != "torch" or torch is not None]
    return fastrelu_implementations(op) + peers + COPIES


def _groups():
    for dtype in DTYPES:
        for exponent in exponents_from_environment():
            for op in KERNELS:
                yield pytest.param(op, dtype, 2**exponent, id=f"{op}-{dtype}-2**{exponent}")


@pytest.fixture(scope="session")
def torch_threads():
    """PyTorch on as many threads as fastrelu."""
    if torch is not None:
        torch.set_num_threads(fastrelu.get_num_threads())


@pytest.mark.parametrize("op, dtype, size", list(_groups()))
def test_kernels(benchmark, request, arrays, torch_threads, op, dtype, size):
    x, g = arrays(dtype, size)
    arrays_moved = len(KERNELS[op].operands) + 1
    nbytes = arrays_moved * x.nbytes
    # One output for every implementation that writes into one, and one
    # source and destination for both copies: no implementation finds its
    # arrays in the caches when another's would not be.
    out = np.empty_like(x)
    count = arrays_moved * size // 2
    copy_args = (np.concatenate([x, g])[:count], None, np.zeros(count, x.dtype))
    calls, found = {}, {}
    for impl in implementations(op):
        if impl.library == "copy":
            args = copy_args
        elif impl.library == "torch":
            args = tuple(map(torch.from_numpy, (x, g, out)))
        else:
            args = (x, g, out)
        # Compiles fastrelu's kernel and faults in the output's pages outside
        # the timing, and checks that every implementation computes the same.
        result = impl.call(*args)
        if impl.library != "copy" and op in REFERENCES:
            head = np.asarray(result if impl.allocates else args[2])[:1024]
            expected = REFERENCES[op](x[:1024].astype(np.float64), g[:1024].astype(np.float64))
            np.testing.assert_allclose(head, expected, rtol=1e-5, atol=1e-30)
        calls[impl.key] = functools.partial(impl.call, *args)
        found[impl.key] = impl

    timings = timed(benchmark, request, calls, f"{op} {dtype} 2**{size.bit_length() - 1}")
    benchmark.extra_info.update(
        suite="kernels",
        op=op,
        dtype=dtype,
        size=size,
        bytes=nbytes,
        threads=fastrelu.get_num_threads(),
        implementations=implementation_info(found, timings),
    )


def timed(benchmark, request, calls, group):
    """Time *calls* (name -> callable) in interleaved rounds as benchmark
    *group*, as many rounds as ``--benchmark-min-rounds`` says; return their
    :class:`fastrelu._throughput.Timing` by name."""
    rounds = max(1, request.config.getoption("benchmark_min_rounds"))
    timings = {}
    benchmark.group = group
    benchmark.pedantic(lambda: timings.update(interleave(calls, rounds)), rounds=1, iterations=1)
    return timings


def implementation_info(found, timings):
    """``extra_info["implementations"]`` of a group, which ``bench/render.py`` reads.

    Parameters
    ----------
    found : dict
        Key -> :class:`Impl` timed.
    timings : dict
        Key -> :class:`fastrelu._throughput.Timing`.

    Returns
    -------
    dict
        Key -> label, library, whether it allocates, the samples (seconds
        per call), calls per sample, warm-up calls and whether the warm-up
        settled.
    """
    return {
        key: {
            "label": impl.label,
            "library": impl.library,
            "allocates": impl.allocates,
            "samples": timings[key].samples,
            "calls_per_sample": timings[key].number,
            "warmup_calls": timings[key].warmup_calls,
            "settled": timings[key].settled,
        }
        for key, impl in found.items()
    }
