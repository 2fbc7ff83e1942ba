"""Throughput of the four kernels next to NumPy, PyTorch and a plain copy.

    python bench/run.py                               # this and test_startup.py, then the page
    FASTRELU_BENCH_SIZES=12,16 python bench/run.py    # only 2**12 and 2**16 elements

One benchmark group per operation, dtype and size holds fastrelu writing into
a preallocated ``out=`` and allocating its result, NumPy's and PyTorch's
fastest idioms for the same result in both forms, and ``np.copyto`` moving as
many bytes as the operation must: the machine's ceiling.  Each benchmark's
``extra_info`` holds those bytes (forward: read ``x``, write the result;
backward: read ``x`` and ``grad``, write the result), so that
GB/s = bytes / median time.
"""

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import fastrelu
from fastrelu._throughput import numpy_softplus, numpy_softplus_backward, parallel_copy, torch_operations

try:
    import torch
except ImportError:
    torch = None

DTYPES = ("float32", "float64")
DEFAULT_EXPONENTS = (12, 16, 20, 24)


def exponents_from_environment():
    """The sizes to run, as exponents of 2, from ``FASTRELU_BENCH_SIZES`` ("12,16")."""
    text = os.environ.get("FASTRELU_BENCH_SIZES", "").strip()
    if not text:
        return list(DEFAULT_EXPONENTS)
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
    call: Callable  # call(x, grad, o); PyTorch's take tensors

    @property
    def library(self):
        return self.key.split("_")[0]

    @property
    def allocates(self):
        return self.key != "copy" and not self.key.endswith("_out")


aten = torch.ops.aten if torch is not None else None
# PyTorch's kernels writing into o: the ones `fastrelu bench` times too.
TORCH_OUT = torch_operations() or {}

ARRAYS_READ = {"relu": 1, "relu_backward": 2, "softplus": 1, "softplus_backward": 2}

# In the order of the tables.  torch.relu has no out= form, and aten.relu.out
# computes into a temporary and copies it; torch.clamp_min(x, 0, out=o) writes o.
IMPLEMENTATIONS = {
    "relu": [
        Impl("fastrelu_out", "fastrelu.relu(x, out=o)", lambda x, g, o: fastrelu.relu(x, out=o)),
        Impl("fastrelu", "fastrelu.relu(x)", lambda x, g, o: fastrelu.relu(x)),
        Impl("numpy_out", "np.maximum(x, 0, out=o)", lambda x, g, o: np.maximum(x, 0, out=o)),
        Impl("numpy", "np.maximum(x, 0)", lambda x, g, o: np.maximum(x, 0)),
        Impl("torch_out", "torch.clamp_min(x, 0, out=o)", TORCH_OUT.get("relu")),
        Impl("torch", "torch.relu(x)", lambda x, g, o: torch.relu(x)),
    ],
    "relu_backward": [
        Impl(
            "fastrelu_out",
            "fastrelu.relu_backward(x, g, out=o)",
            lambda x, g, o: fastrelu.relu_backward(x, g, out=o),
        ),
        Impl("fastrelu", "fastrelu.relu_backward(x, g)", lambda x, g, o: fastrelu.relu_backward(x, g)),
        Impl("numpy_out", "np.multiply(g, x > 0, out=o)", lambda x, g, o: np.multiply(g, x > 0, out=o)),
        Impl("numpy_where", "np.where(x > 0, g, 0)", lambda x, g, o: np.where(x > 0, g, 0)),
        Impl("numpy_mask", "g * (x > 0)", lambda x, g, o: g * (x > 0)),
        Impl(
            "torch_out",
            "aten.threshold_backward.grad_input(g, x, 0, grad_input=o)",
            TORCH_OUT.get("relu_backward"),
        ),
        Impl("torch", "aten.threshold_backward(g, x, 0)", lambda x, g, o: aten.threshold_backward(g, x, 0)),
    ],
    "softplus": [
        Impl("fastrelu_out", "fastrelu.softplus(x, out=o)", lambda x, g, o: fastrelu.softplus(x, out=o)),
        Impl("fastrelu", "fastrelu.softplus(x)", lambda x, g, o: fastrelu.softplus(x)),
        Impl("numpy_logaddexp_out", "np.logaddexp(0, x, out=o)", lambda x, g, o: np.logaddexp(0, x, out=o)),
        Impl("numpy_logaddexp", "np.logaddexp(0, x)", lambda x, g, o: np.logaddexp(0, x)),
        Impl(
            "numpy_stable_out", "max(x, 0) + log1p(exp(-abs(x))), out=o", lambda x, g, o: numpy_softplus(x, o)
        ),
        Impl(
            "numpy_stable",
            "np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))",
            lambda x, g, o: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
        ),
        Impl(
            "torch_out",
            "aten.softplus.out(x, 1, 20, out=o)",
            TORCH_OUT.get("softplus"),
        ),
        Impl("torch", "F.softplus(x)", lambda x, g, o: torch.nn.functional.softplus(x)),
    ],
    "softplus_backward": [
        Impl(
            "fastrelu_out",
            "fastrelu.softplus_backward(x, g, out=o)",
            lambda x, g, o: fastrelu.softplus_backward(x, g, out=o),
        ),
        Impl(
            "fastrelu", "fastrelu.softplus_backward(x, g)", lambda x, g, o: fastrelu.softplus_backward(x, g)
        ),
        Impl("numpy_out", "g / (1 + exp(-x)), out=o", lambda x, g, o: numpy_softplus_backward(x, g, o)),
        Impl("numpy", "g / (1 + np.exp(-x))", lambda x, g, o: g / (1 + np.exp(-x))),
        Impl(
            "torch_out",
            "aten.softplus_backward.grad_input(g, x, 1, 20, grad_input=o)",
            TORCH_OUT.get("softplus_backward"),
        ),
        Impl(
            "torch",
            "aten.softplus_backward(g, x, 1, 20)",
            lambda x, g, o: aten.softplus_backward(g, x, 1, 20),
        ),
    ],
}

COPY = Impl("copy", "np.copyto (same bytes, same threads)", lambda src, g, dst: parallel_copy(dst, src))
# The same copy into a fresh np.empty: what the first touch of new memory costs.
COPY_FRESH = Impl(
    "copy_fresh",
    "np.copyto into a fresh np.empty (same bytes, same threads)",
    lambda src, g, dst: parallel_copy(np.empty_like(src), src),
)
COPIES = {impl.key: impl for impl in (COPY, COPY_FRESH)}

# What every implementation must agree with, computed in float64.
REFERENCES = {
    "relu": lambda x, g: np.maximum(x, 0),
    "relu_backward": lambda x, g: np.where(x > 0, g, 0),
    "softplus": lambda x, g: np.logaddexp(0, x),
    "softplus_backward": lambda x, g: g / (1 + np.exp(-x)),
}


def _cases():
    for dtype in DTYPES:
        for exponent in exponents_from_environment():
            for op, impls in IMPLEMENTATIONS.items():
                for impl in [*impls, *COPIES.values()]:
                    marks = []
                    if impl.library == "torch" and torch is None:
                        marks.append(pytest.mark.skip(reason="PyTorch is not installed"))
                    yield pytest.param(
                        op,
                        dtype,
                        2**exponent,
                        impl.key,
                        id=f"{op}-{dtype}-2**{exponent}-{impl.key}",
                        marks=marks,
                    )


@pytest.fixture(scope="session")
def torch_threads():
    """PyTorch on as many threads as fastrelu."""
    if torch is not None:
        torch.set_num_threads(fastrelu.get_num_threads())


@pytest.mark.parametrize("op, dtype, size, key", list(_cases()))
def test_throughput(benchmark, arrays, torch_threads, op, dtype, size, key):
    impl = next((i for i in IMPLEMENTATIONS[op] if i.key == key), None) or COPIES[key]
    x, g = arrays(dtype, size)
    nbytes = (ARRAYS_READ[op] + 1) * x.nbytes

    if impl.library == "copy":
        # Copy n elements for a forward pass and 1.5 n for a backward pass:
        # read + write bytes equal to the operation's.
        count = nbytes // (2 * x.itemsize)
        args = (np.concatenate([x, g])[:count], None, np.empty(count, x.dtype))
        args[2].fill(0)
    elif impl.library == "torch":
        args = tuple(map(torch.from_numpy, (x, g, np.empty_like(x))))
    else:
        args = (x, g, np.empty_like(x))

    # Compiles fastrelu's kernel and faults in the output's pages outside the
    # timing, and checks that every implementation computes the same thing.
    result = impl.call(*args)
    if impl.library != "copy":
        head = np.asarray(result if impl.allocates else args[2])[:1024]
        expected = REFERENCES[op](x[:1024].astype(np.float64), g[:1024].astype(np.float64))
        np.testing.assert_allclose(head, expected, rtol=1e-5, atol=1e-30)

    benchmark.group = f"{op} {dtype} 2**{size.bit_length() - 1}"
    benchmark.extra_info.update(
        suite="kernels",
        op=op,
        dtype=dtype,
        size=size,
        impl=impl.label,
        key=impl.key,
        library=impl.library,
        allocates=impl.allocates,
        bytes=nbytes,
    )
    benchmark(impl.call, *args)
