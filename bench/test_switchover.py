"""Serial against multi-threaded execution by array size: the measurement
behind ``fastrelu.config.PARALLEL_MIN_SIZE``.

    python -m pytest bench/test_switchover.py --benchmark-enable -s

One benchmark per kernel and size (float32, ``out=`` preallocated) times the
call forced serial and forced onto ``get_num_threads()`` threads in
interleaved rounds (``fastrelu._throughput.interleave``), and prints the
speed-up, serial time over threaded time; it is also in ``extra_info``.
The threaded path pays off from the size where the speed-up passes 1.
"""

import statistics

import numpy as np
import pytest

import fastrelu
from fastrelu import config
from fastrelu._table import KERNELS
from fastrelu._throughput import interleave


@pytest.mark.parametrize("size", [2**p for p in range(10, 25)])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_switchover(benchmark, request, monkeypatch, rng, kernel, size):
    func = getattr(fastrelu, kernel)
    operands = [rng.standard_normal(size).astype(np.float32) for _ in KERNELS[kernel].operands]
    out = np.empty_like(operands[0])
    monkeypatch.setattr(config, "PARALLEL_MIN_CHUNK", 1 << 8)
    monkeypatch.setitem(config.PARALLEL_MIN_SIZE, kernel, config.PARALLEL_MIN_SIZE[kernel])  # restored after

    def forced(split_from):
        def call():
            config.PARALLEL_MIN_SIZE[kernel] = split_from
            func(*operands, out=out)

        return call

    calls = {"serial": forced(1 << 62), "threads": forced(0)}
    timings = {}
    rounds = max(1, request.config.getoption("benchmark_min_rounds"))
    benchmark.pedantic(lambda: timings.update(interleave(calls, rounds)), rounds=1, iterations=1)
    medians = {mode: statistics.median(t.samples) for mode, t in timings.items()}
    speedup = medians["serial"] / medians["threads"]
    benchmark.extra_info.update(
        kernel=kernel, size=size, threads=fastrelu.get_num_threads(), speedup=speedup, seconds=medians
    )
    print(f"\n{kernel} 2**{size.bit_length() - 1}: threads {speedup:.2f} times as fast as serial")
