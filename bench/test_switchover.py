"""Serial against multi-threaded execution by array size: the measurement
behind ``fastrelu.config.PARALLEL_MIN_SIZE``.

    python -m pytest bench/test_switchover.py --benchmark-enable \\
        --benchmark-group-by=param:kernel,param:size --benchmark-columns=median

Each group holds one kernel at one size, once forced serial and once split
across ``get_num_threads()`` threads; the threaded path pays off from the size
where its median drops below the serial one.
"""

import numpy as np
import pytest

import fastrelu
from fastrelu import config

KERNELS = {
    "relu": lambda x, g, o: fastrelu.relu(x, out=o),
    "relu_backward": lambda x, g, o: fastrelu.relu_backward(x, g, out=o),
    "softplus": lambda x, g, o: fastrelu.softplus(x, out=o),
    "softplus_backward": lambda x, g, o: fastrelu.softplus_backward(x, g, out=o),
}


@pytest.mark.parametrize("mode", ["serial", "threads"])
@pytest.mark.parametrize("size", [2**p for p in range(12, 25)])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_switchover(benchmark, monkeypatch, rng, kernel, size, mode):
    x = rng.standard_normal(size).astype(np.float32)
    g = rng.standard_normal(size).astype(np.float32)
    o = np.empty_like(x)
    split_from = {name: (1 << 62 if mode == "serial" else 0) for name in config.PARALLEL_MIN_SIZE}
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", split_from)
    monkeypatch.setattr(config, "PARALLEL_MIN_CHUNK", 1 << 10)
    benchmark(KERNELS[kernel], x, g, o)
