"""Speed of the kernels on a GPU next to PyTorch, CuPy and a device-to-device copy.

    bash bench/gpu_check.sh OUTDIR        # this group, the CUDA tests and CPU thread scaling, summarised
    python -m pytest bench/test_gpu.py --benchmark-enable --benchmark-json=gpu.json
    FASTRELU_BENCH_SIZES=12,20 python -m pytest bench/test_gpu.py --benchmark-enable

Skipped without a real GPU (Numba's CUDA simulator does not count), and
when neither PyTorch with CUDA nor CuPy is there to hold the arrays.  One
benchmark per operation, dtype (float32, float16, float64) and size (2**12 to
2**28 elements; ``FASTRELU_BENCH_SIZES`` as for ``bench/test_kernels.py``)
times, in interleaved rounds after a warm-up
(``fastrelu._throughput.interleave``), every implementation of that
operation on the same device memory: fastrelu writing into a preallocated
``out=`` on PyTorch CUDA tensors and on CuPy arrays, PyTorch's kernels into
``out=`` and allocating, CuPy's (``fastrelu._throughput.cupy_operations``),
and a device-to-device copy of as many bytes (n elements for a forward pass,
1.5 n for a backward pass), the ceiling of a kernel that moves its bytes and
computes nothing.  Every sample is timed by CUDA events recorded on the
legacy default stream, on which all of them queue their work here
(``fastrelu._throughput.cuda_event_timer``).  ``extra_info`` holds the
samples and the bytes as in ``bench/test_kernels.py``, with
``suite="gpu"``; ``python bench/gpu_check.py report`` makes the tables.
A peer that fails is left out of its group (``extra_info["dropped"]``, and a
warning); fastrelu failing fails the group.  With
``FASTRELU_BENCH_BUDGET=SECONDS``, the groups that would start later than
that after the module was loaded are skipped, so that a run under a time
limit still ends and writes its JSON.
"""

import dataclasses
import functools
import os
import time
import warnings

import numpy as np
import pytest
from gpu_check import gpu_missing, gpu_name

_reason = gpu_missing()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

import test_kernels as cpu_suite  # noqa: E402 (after the skip): sizes, PyTorch idioms, references
from numba import cuda  # noqa: E402

from fastrelu._table import KERNELS  # noqa: E402
from fastrelu._throughput import cuda_event_timer, cupy_operations, interleave, torch_operations  # noqa: E402

LOADED = time.monotonic()
BUDGET = float(os.environ.get("FASTRELU_BENCH_BUDGET") or "inf")
DTYPES = ("float32", "float16", "float64")  # float64 last: its largest groups take longest
DEFAULT_EXPONENTS = tuple(range(12, 29, 2))
# Relative tolerance of the check of each implementation's first result
# against the float64 reference: half a unit in the last place, and room.
RTOL = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-5}

torch = cpu_suite.torch if cpu_suite.torch is not None and cpu_suite.torch.cuda.is_available() else None
try:
    import cupy as cp

    if not cp.cuda.is_available():
        cp = None
except Exception:  # CuPy without a usable CUDA raises more than ImportError
    cp = None
if torch is None and cp is None:
    pytest.skip("neither PyTorch with CUDA nor CuPy is installed to hold the arrays", allow_module_level=True)

GPU = gpu_name()
KINDS = [kind for kind, library in (("torch", torch), ("cupy", cp)) if library is not None]
NAMES = {"torch": "PyTorch tensors", "cupy": "CuPy arrays"}
TORCH_OPERATIONS = torch_operations() if torch is not None else {}
CUPY_OPERATIONS = cupy_operations() if cp is not None else {}


def to_host(a):
    """A NumPy copy of the PyTorch tensor or CuPy array *a*."""
    return a.cpu().numpy() if hasattr(a, "cpu") else a.get()


def _device_arrays(dtype, size):
    """``{kind: (x, grad, out)}`` over the same device memory, and the copy's
    ``(source, destination)`` of 2 *size* elements, in the first kind."""
    seed = size + np.dtype(dtype).itemsize
    if torch is not None:
        generator = torch.Generator(device="cuda")
        generator.manual_seed(seed)
        x, g = (
            torch.randn(size, dtype=getattr(torch, dtype), device="cuda", generator=generator) for _ in "xg"
        )
        arrays = {"torch": (x, g, torch.empty_like(x))}
        source = torch.cat([x, g])
        copy = (source, torch.empty_like(source))
    else:
        rng = cp.random.default_rng(seed)
        x, g = (rng.standard_normal(size, dtype=np.float64).astype(dtype) for _ in "xg")
        arrays = {}
        source = cp.concatenate([x, g])
        copy = (source, cp.empty_like(source))
    if cp is not None:
        # CuPy's view of the same memory, through __cuda_array_interface__.
        arrays["cupy"] = tuple(cp.asarray(a) for a in arrays.get("torch", (x, g, cp.empty_like(x))))
    return arrays, copy


@pytest.fixture(scope="module")
def device_arrays():
    """``device_arrays(dtype, size)``: the arrays of one group; only the
    latest are kept, as the groups of one dtype and size run together."""
    cache = {}

    def get(dtype, size):
        if (dtype, size) not in cache:
            cache.clear()
            cache[dtype, size] = _device_arrays(dtype, size)
        return cache[dtype, size]

    return get


@pytest.fixture(scope="module")
def timer():
    return cuda_event_timer()


def _copy(source, destination):
    """``call(x, g, o)`` copying *source* into *destination* on the device:
    PyTorch's ``copy_``, or CuPy's copy of the memory."""
    if hasattr(destination, "copy_"):
        return lambda x, g, o: destination.copy_(source)
    return lambda x, g, o: destination.data.copy_from_device_async(source.data, destination.nbytes)


def implementations(op, copy):
    """``(Impl, kind of arrays)`` of every implementation of *op* timed here."""
    ours = cpu_suite.fastrelu_implementations(op)[0]
    found = [(dataclasses.replace(ours, label=f"{ours.label} on {NAMES[KINDS[0]]}"), KINDS[0])]
    if len(KINDS) > 1:
        label = f"{ours.label} on {NAMES['cupy']}"
        found.append((dataclasses.replace(ours, key="fastrelu_cupy_out", label=label), "cupy"))
    if op in TORCH_OPERATIONS:
        found.append((cpu_suite.Impl("torch_out", *TORCH_OPERATIONS[op]), "torch"))
        found += [(impl, "torch") for impl in cpu_suite.PEERS.get(op, []) if impl.key == "torch"]
    if op in CUPY_OPERATIONS:
        found.append((cpu_suite.Impl("cupy_out", *CUPY_OPERATIONS[op]), "cupy"))
    found.append(
        (cpu_suite.Impl("copy_out", "device-to-device copy of the same bytes", _copy(*copy)), "copy")
    )
    return found


def _groups():
    for dtype in DTYPES:
        for exponent in cpu_suite.exponents_from_environment(DEFAULT_EXPONENTS):
            for op in KERNELS:
                yield pytest.param(op, dtype, 2**exponent, id=f"{op}-{dtype}-2**{exponent}")


@pytest.mark.parametrize("op, dtype, size", list(_groups()))
def test_gpu(benchmark, request, device_arrays, timer, op, dtype, size):
    if time.monotonic() - LOADED > BUDGET:
        pytest.skip(f"FASTRELU_BENCH_BUDGET={BUDGET:g} seconds spent")
    arrays, (source, destination) = device_arrays(dtype, size)
    arrays_moved = len(KERNELS[op].operands) + 1
    x = arrays[KINDS[0]][0]
    count = arrays_moved * size // 2  # a copy moves 2 bytes per byte copied
    copy = (source[:count], destination[:count])
    head = to_host(x[:1024]).astype(np.float64), to_host(arrays[KINDS[0]][1][:1024]).astype(np.float64)
    expected = cpu_suite.REFERENCES[op](*head)
    calls, found, dropped = {}, {}, {}
    for impl, kind in implementations(op, copy):
        args = (None, None, None) if kind == "copy" else arrays[kind]
        # The first call compiles and checks the result; fastrelu failing
        # fails the group, a peer failing leaves it out.
        try:
            result = impl.call(*args)
            if kind != "copy":
                got = to_host((result if impl.allocates else args[2])[:1024])
                np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=1e-7)
        except Exception as exc:
            if impl.library == "fastrelu":
                raise
            dropped[impl.key] = f"{impl.label}: {type(exc).__name__}: {exc}"[:300]
            warnings.warn(
                f"{op} {dtype} 2**{size.bit_length() - 1}: left out {dropped[impl.key]}", stacklevel=1
            )
            continue
        calls[impl.key] = functools.partial(impl.call, *args)
        found[impl.key] = impl

    rounds = max(1, request.config.getoption("benchmark_min_rounds"))
    timings = {}
    benchmark.group = f"gpu {op} {dtype} 2**{size.bit_length() - 1}"
    benchmark.pedantic(
        lambda: timings.update(interleave(calls, rounds, cuda.synchronize, timer=timer, settle=0.0)),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        suite="gpu",
        op=op,
        dtype=dtype,
        size=size,
        bytes=arrays_moved * size * np.dtype(dtype).itemsize,
        gpu=GPU,
        timer="CUDA events on the legacy default stream",
        implementations=cpu_suite.implementation_info(found, timings),
        dropped=dropped,
    )
