"""Serial against multi-threaded execution by array size: the measurement
behind ``fastrelu.config.PARALLEL_MIN_SIZE``.

    python -m pytest bench/test_switchover.py --benchmark-enable -s

One benchmark per kernel and size (float32, preallocated output) times the
kernel's compiled entry asked to run serially and asked to split across
``get_num_threads()`` threads, in chunks of at least 256 elements, in
interleaved rounds (``fastrelu._throughput.interleave``); it prints the
speed-up, serial time over threaded time, also kept in ``extra_info``.  The
threaded path pays off from the size where the speed-up passes 1.  What a
public call adds to both, its Python front, is the same either way.
"""

import inspect
import statistics

import numpy as np
import pytest

import fastrelu
from fastrelu import _kernels, _threads, config
from fastrelu._table import KERNELS
from fastrelu._throughput import interleave


@pytest.fixture
def chunks_of_256():
    with config.set(parallel_min_chunk=1 << 8):
        yield


@pytest.mark.parametrize("size", [2**p for p in range(10, 25)])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_switchover(benchmark, request, chunks_of_256, rng, kernel, size):
    arrays = [rng.standard_normal(size).astype(np.float32) for _ in KERNELS[kernel].operands]
    arrays.append(np.empty_like(arrays[0]))
    dtype = arrays[0].dtype
    defaults = {  # the public function's keyword arguments, as a call without them has them
        name: p.default
        for name, p in inspect.signature(getattr(fastrelu, kernel)).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in ("device", "stream")
    }
    _, _, scalars = KERNELS[kernel].types(arrays[:-1], arrays[:-1], **defaults)
    entry, function, scalars = _kernels.fast(KERNELS[kernel], dtype, 1, scalars)
    _kernels.run_planned(entry, function, arrays, scalars, _threads.request(0))  # workers, compiled

    def asked(split_from):
        plan = _threads.request(split_from)
        return lambda: entry(function, plan, *arrays, scalars)

    calls = {"serial": asked(1 << 62), "threads": asked(0)}
    timings = {}
    rounds = max(1, request.config.getoption("benchmark_min_rounds"))
    benchmark.pedantic(lambda: timings.update(interleave(calls, rounds)), rounds=1, iterations=1)
    medians = {mode: statistics.median(t.samples) for mode, t in timings.items()}
    speedup = medians["serial"] / medians["threads"]
    benchmark.extra_info.update(
        kernel=kernel, size=size, threads=fastrelu.get_num_threads(), speedup=speedup, seconds=medians
    )
    print(
        f"\n{kernel} 2**{size.bit_length() - 1}: serial {medians['serial'] * 1e6:.3g} µs,"
        f" threads {medians['threads'] * 1e6:.3g} µs, {speedup:.2f} times as fast"
    )
