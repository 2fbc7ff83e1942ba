"""``bench/gpu_check.sh``, the one command for a machine with a GPU: a smoke
run of its CPU part, and the tables and checks of ``bench/gpu_check.py``
against values worked out here."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastrelu._table import KERNELS

ROOT = Path(__file__).resolve().parents[1]
BENCH = str(ROOT / "bench")


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, BENCH)
    try:
        return importlib.import_module("gpu_check")
    finally:
        sys.path.remove(BENCH)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash")
def test_cpu_only_smoke_run(tmp_path, gpu_check):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    for name in ("FASTRELU_CHECK_SIZE", "FASTRELU_CHECK_THREADS", "FASTRELU_BENCH_SIZES"):
        env.pop(name, None)
    done = subprocess.run(
        # From another folder, with OUTDIR relative to it: the script finds its checkout itself.
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "out", "--cpu-only", "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if gpu_check.gpu_missing():
        assert "no GPU: " in done.stdout and "only the CPU thread scaling runs" in done.stdout
    else:
        assert "--cpu-only: the GPU steps are skipped" in done.stdout
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert files == ["summary.txt", "threads.json"]
    assert (out / "summary.txt").read_text().strip() == done.stdout.strip()

    result = json.loads((out / "threads.json").read_text())
    assert result["size"] == 2**16 and result["dtype"] == "float32"
    assert [(r["threads"], r["op"]) for r in result["rows"]] == [(n, op) for n in (1, 2) for op in KERNELS]
    for row in result["rows"]:
        assert 0.01 < row["gbps"] < 10_000 and 0.01 < row["copy_gbps"] < 10_000, row
    assert gpu_check.thread_table(result) in done.stdout


def test_usage_errors_exit_with_status_2(tmp_path):
    for args in ([], ["--nonsense", str(tmp_path)], [str(tmp_path), str(tmp_path / "again")]):
        done = subprocess.run(["bash", "bench/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.startswith("usage: ")


def test_thread_table(gpu_check):
    rows = []
    for threads, scale in ((1, 1.0), (2, 2.0)):
        for op, gbps, copy in (
            ("relu", 10.0, 20.0),
            ("relu_backward", 15.0, 30.0),
            ("softplus", 4.0, 20.0),
            ("softplus_backward", 6.0, 30.0),
        ):
            rows.append(
                {"threads": threads, "op": op, "gbps": gbps * scale, "copy_gbps": copy, "spread": 0.01}
            )
    assert gpu_check.thread_table({"rows": rows}).splitlines() == [
        "| threads | relu | relu_backward | softplus | softplus_backward | copy, n | copy, 1.5 n |",
        "|---|---|---|---|---|---|---|",
        "| 1 | 10.0 (0.500) | 15.0 (0.500) | 4.00 (0.200) | 6.00 (0.200) | 20.0 | 30.0 |",
        "| 2 | 20.0 (1.00) | 30.0 (1.00) | 8.00 (0.400) | 12.0 (0.400) | 20.0 | 30.0 |",
    ]


def _group(op, dtype, size, nbytes, medians):
    """A pytest-benchmark entry of the GPU group whose implementations' samples
    have the given medians and quartiles at ±5% of them."""
    libraries = {"fastrelu_out": "fastrelu", "fastrelu_cupy_out": "fastrelu", "torch_out": "torch"}
    libraries.update(torch="torch", cupy_out="cupy", copy_out="copy")
    implementations = {
        key: {
            "label": key,
            "library": libraries[key],
            "allocates": key == "torch",
            "samples": [0.9 * median, median, 1.1 * median],
        }
        for key, median in medians.items()
    }
    info = {"suite": "gpu", "op": op, "dtype": dtype, "size": size, "bytes": nbytes}
    info.update(gpu="a GPU", timer="events", implementations=implementations, dropped={})
    return {"extra_info": info}


@pytest.fixture
def benchmarks():
    medians = {"fastrelu_out": 1.0, "copy_out": 0.5, "torch_out": 2.0, "torch": 3.0}
    return [
        _group("relu", "float32", 2**20, 2e9, medians),
        _group("relu", "float16", 2**20, 4e9, dict(medians, fastrelu_out=8.0, fastrelu_cupy_out=4.0)),
        _group("relu", "float16", 2**12, 1e9, {"fastrelu_out": 2e-5, "torch_out": 1e-5, "cupy_out": 4e-5}),
        {"extra_info": {"suite": "kernels"}},  # another part of the suite: left out
    ]


def test_gpu_table(gpu_check, benchmarks):
    rows = gpu_check.gpu_rows(benchmarks)
    assert [(r["dtype"], r["size"]) for r in rows] == [
        ("float16", 2**12),
        ("float16", 2**20),
        ("float32", 2**20),
    ]
    lines = [gpu_check.gpu_table([row]).splitlines()[2] for row in rows]
    # float32: 2e9 bytes in 1 s is 2 GB/s, the copy's 0.5 s 4 GB/s; the peers' times
    # over fastrelu's: 0.5, 2 and 3; every quartile is 5% from the median.  Ratios
    # to a peer below 1 are bold.
    assert lines[2] == "| `2**20` | 2.00 | 4.00 | 0.500 | 2.00 | 3.00 | – | 5% |"
    assert lines[1] == "| `2**20` | 0.500 | 8.00 | 0.0625 | **0.250** | **0.375** | – | 5% |"
    assert lines[0] == "| `2**12` | 50000 | – | – | **0.500** | – | 2.00 | 5% |"


def test_small_call_table(gpu_check, benchmarks):
    rows = gpu_check.gpu_rows(benchmarks)
    lines = gpu_check.small_call_table(rows).splitlines()
    assert lines[0].startswith("| operation, dtype | fastrelu, PyTorch tensors | fastrelu, CuPy arrays |")
    assert lines[2:] == ["| relu, float16 | 20.0 | – | 10.0 | – | 40.0 | – | **0.500** |"]
    assert gpu_check.small_call_table(rows, size=2**30) is None


def test_report(gpu_check, benchmarks):
    text = gpu_check.report({"benchmarks": benchmarks})
    assert "GPU: a GPU; samples timed by events, 3 groups." in text
    assert "relu, float16\n\n| size |" in text and "relu, float32\n\n| size |" in text
    assert gpu_check.small_call_table(gpu_check.gpu_rows(benchmarks)) in text
    benchmarks[0]["extra_info"]["dropped"] = {"cupy_out": "it failed"}
    assert "left out where they failed:\n\ncupy_out: it failed" in gpu_check.report(
        {"benchmarks": benchmarks}
    )
    assert gpu_check.report({"benchmarks": benchmarks[3:]}).startswith("No GPU benchmark")


def test_files_over_limit(gpu_check, tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a", "b", "sub/c"):
        (tmp_path / name).write_text("")
    assert gpu_check.files_over_limit(tmp_path, limit=3) == []
    assert gpu_check.files_over_limit(tmp_path, limit=2) == ["a", "b", "sub/c"]
    assert gpu_check.main(["budget", str(tmp_path), "--limit", "2"]) == 1
    assert gpu_check.main(["budget", str(tmp_path)]) == 0


def test_settings_from_the_environment(gpu_check, monkeypatch):
    monkeypatch.delenv("FASTRELU_CHECK_SIZE", raising=False)
    monkeypatch.delenv("FASTRELU_CHECK_THREADS", raising=False)
    assert gpu_check.environment_exponent("FASTRELU_CHECK_SIZE", 26) == 26
    assert gpu_check.environment_counts("FASTRELU_CHECK_THREADS", (1, 2)) == [1, 2]
    monkeypatch.setenv("FASTRELU_CHECK_SIZE", "16")
    monkeypatch.setenv("FASTRELU_CHECK_THREADS", "1, 3,8")
    assert gpu_check.environment_exponent("FASTRELU_CHECK_SIZE", 26) == 16
    assert gpu_check.environment_counts("FASTRELU_CHECK_THREADS", (1, 2)) == [1, 3, 8]
    for bad in ("31", "-1", "2**4"):
        monkeypatch.setenv("FASTRELU_CHECK_SIZE", bad)
        with pytest.raises(ValueError, match="FASTRELU_CHECK_SIZE"):
            gpu_check.environment_exponent("FASTRELU_CHECK_SIZE", 26)
    for bad in ("0", "1,,2", "two"):
        monkeypatch.setenv("FASTRELU_CHECK_THREADS", bad)
        with pytest.raises(ValueError, match="FASTRELU_CHECK_THREADS"):
            gpu_check.environment_counts("FASTRELU_CHECK_THREADS", (1, 2))
