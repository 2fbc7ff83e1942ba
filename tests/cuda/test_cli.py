"""``fastrelu info`` and ``fastrelu bench --device cuda`` where a GPU, or
Numba's CUDA simulator, can be used."""

import os
import re
import subprocess
import sys

import pytest
from numba import config, cuda

from fastrelu._table import KERNELS

if not (config.ENABLE_CUDASIM or cuda.is_available()):
    pytest.skip("neither a GPU nor NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


def fastrelu_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fastrelu", *args], capture_output=True, text=True, timeout=600, env=os.environ
    )


def test_info_names_the_device():
    proc = fastrelu_cli("info")
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("CUDA")]
    if config.ENABLE_CUDASIM:
        assert "usable: Numba's CUDA simulator" in line
    else:
        assert re.search(r"usable: .+, compute capability \d+\.\d+", line), line


def test_bench_on_the_device():
    size = "4096" if config.ENABLE_CUDASIM else "2**24"
    proc = fastrelu_cli("bench", "--device", "cuda", "--size", size, "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert " on cuda," in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("operation")).split()
    assert header[1:3] == ["fastrelu", "±"] and header[-2:] == ["copy", "ratio"]
    for name in KERNELS:
        (row,) = [line for line in proc.stdout.splitlines() if line.split()[:1] == [name]]
        cells = row.split()
        assert re.fullmatch(r"\d+%", cells[2]), row
        values = list(map(float, cells[1:2] + cells[3:]))
        assert all(v > 0 for v in values)
        assert values[-1] == pytest.approx(values[0] / values[-2], rel=0.06, abs=0.006)
