"""``bench/launch_cost.py`` measures the GPU path's Python side without a
GPU: it runs, every call reaches the (stubbed) launch, and it reports a
time for each kernel."""

import os
import re
import subprocess
import sys
from pathlib import Path

from fastrelu._table import KERNELS

ROOT = Path(__file__).resolve().parents[2]


def test_launch_cost_runs_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "launch_cost.py"), "--number", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    times = dict(re.findall(r"^\s+(\w+)\s+([\d.]+) µs$", done.stdout, re.MULTILINE))
    assert set(times) == set(KERNELS), done.stdout
    assert all(0 < float(us) < 10_000 for us in times.values()), times
    # What docs/data keeps of an earlier run, and the pages show, has the same form.
    kept = (ROOT / "docs" / "data" / "launch-cost.txt").read_text().split("\n", 1)[1]
    assert re.sub(r"[\d.]+ µs", "µs", kept) == re.sub(r"[\d.]+ µs", "µs", done.stdout)
