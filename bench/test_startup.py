"""What a process pays before its first result: importing fastrelu, the first call.

Both are measured in fresh interpreters, timed inside the child around the
step alone, so that starting Python and importing NumPy do not count; each
is repeated ``--benchmark-min-rounds`` times, and the child's times go to
``extra_info`` (the benchmark's own statistics are the wall time of the
whole child process).  The first call meets an empty Numba cache
(``NUMBA_CACHE_DIR`` a fresh folder: Numba is imported and the kernel
compiled) or a warm one (the kernel loaded from disk).  The cost of each
later call is in the kernel groups' smallest sizes (``test_kernels.py``).
"""

import itertools
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IMPORT = """
import time
import numpy
t0 = time.perf_counter()
import fastrelu
print(time.perf_counter() - t0)
"""

FIRST_CALL = """
import time
import numpy as np
import fastrelu
x = np.linspace(-1, 1, 1000, dtype=np.float32)
t0 = time.perf_counter()
fastrelu.relu(x)
print(time.perf_counter() - t0)
"""

# step -> (label, child code, Numba cache: None, "empty" or "warm")
STEPS = {
    "import": ("import fastrelu (after NumPy)", IMPORT, None),
    "first_call_empty_cache": ("first relu call, empty cache (imports Numba, compiles)", FIRST_CALL, "empty"),
    "first_call_warm_cache": ("first relu call, warm cache (imports Numba, loads)", FIRST_CALL, "warm"),
}


def child_seconds(code, cache_dir):
    """Run *code* in a fresh interpreter and return the seconds it prints."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    env.pop("FASTRELU_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.split()[-1])


@pytest.mark.parametrize("step", list(STEPS))
def test_startup(benchmark, request, tmp_path, step):
    label, code, cache = STEPS[step]
    rounds = max(1, request.config.getoption("benchmark_min_rounds"))
    if cache == "warm":
        warm = tmp_path / "warm"
        child_seconds(code, warm)
        caches = itertools.repeat(warm)
    else:
        caches = (tmp_path / f"cache{i}" for i in itertools.count())
    samples = []

    def run(cache_dir):
        samples.append(child_seconds(code, cache_dir))

    benchmark.group = "startup"
    benchmark.pedantic(run, setup=lambda: ((next(caches),), {}), rounds=rounds)
    benchmark.extra_info.update(
        suite="startup", key=step, step=label, seconds=statistics.median(samples), samples=samples
    )
