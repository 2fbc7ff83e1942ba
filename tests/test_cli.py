"""The command line, ``fastrelu info|bench|demo``, and the demo's training."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastrelu
from fastrelu import _cli, _demo
from fastrelu._table import KERNELS

OPERATIONS = tuple(KERNELS)


def fastrelu_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "fastrelu", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize("command", [[], ["info"], ["bench"], ["demo"], ["study"]])
def test_every_command_has_help(command):
    proc = fastrelu_cli(*command, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: fastrelu")
    if command == ["bench"]:
        assert all(option in proc.stdout for option in ("--size", "--dtype", "--device"))
    if command == []:
        assert all(name in proc.stdout for name in ("info", "bench", "demo", "study"))
    if command == ["study"]:
        assert all(option in proc.stdout for option in ("--inits", "--sweep", "--quick"))


@pytest.mark.parametrize(
    "bad",
    [
        ["frobnicate"],
        ["bench", "--size", "0"],
        ["bench", "--size", "2**x"],
        ["bench", "--size", "1.5e-3"],
        ["bench", "--size", "2**99999"],
        ["bench", "--dtype", "int8"],
        ["bench", "--device", "tpu"],
        ["bench", "--repeat", "x"],
        ["demo", "--epochs", "-1"],
        ["demo", "--bogus"],
        ["study", "--sweep", "height"],
        ["study", "--inits", "0"],
        ["info", "extra"],
    ],
)
def test_bad_options_give_one_line_and_status_2(bad):
    proc = fastrelu_cli(*bad)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and re.match(r"fastrelu( \w+)?: error: ", lines[0]), proc.stderr
    assert proc.stdout == ""


def test_bare_command_lists_the_commands_and_version_says_it():
    bare = fastrelu_cli()
    assert bare.returncode == 0 and bare.stderr == ""
    assert all(
        re.search(rf"^\s+{name}\s+\S", bare.stdout, re.MULTILINE)
        for name in ("info", "bench", "demo", "study")
    )
    version = fastrelu_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"fastrelu {fastrelu.__version__}"


@pytest.mark.parametrize(
    "text, value",
    [("16777216", 2**24), ("2**24", 2**24), ("1e6", 10**6), ("1.5E3", 1500), ("4e18", 4 * 10**18)],
)
def test_sizes_as_counts_powers_or_exponent_notation(text, value):
    assert _cli._size(text) == value


def test_bench_says_what_fits_instead_of_running_out_of_memory(monkeypatch, capsys):
    """A size whose arrays exceed the available memory is refused before
    anything is allocated, with what would fit."""
    monkeypatch.setattr(_cli, "_available_memory", lambda: 2**30)
    monkeypatch.setattr(
        "fastrelu._throughput.measure", lambda *a, **k: pytest.fail("measured a size that does not fit")
    )
    assert _cli.main(["bench", "--size", "2**40"]) == 1
    err = capsys.readouterr().err.strip()
    fits = 2**30 // (_cli.BENCH_ARRAYS * 4)
    assert err.startswith("fastrelu bench: error: --size 1099511627776 needs about")
    assert f"at most about 2**{fits.bit_length() - 1} elements fit" in err
    assert "\n" not in err


def test_demo_checks_its_output_before_training(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(_demo, "run_all", lambda *a, **k: pytest.fail("trained for a figure it cannot write"))
    assert _cli.main(["demo", "--output", "/proc/fastrelu/x.png"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fastrelu demo: error: cannot write the figure to /proc/fastrelu/x.png: ")
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"old")
    monkeypatch.setattr(_demo, "run_all", lambda *a, **k: [])
    monkeypatch.setattr(_demo, "format_results", lambda results: "")
    monkeypatch.setattr(_demo, "summary", lambda results: "")
    monkeypatch.setattr(_demo, "plot", lambda results, path: path.write_bytes(b"new"))
    assert _cli.main(["demo", "--output", str(existing)]) == 0
    assert existing.read_bytes() == b"new"  # the check wrote nothing of its own


def test_info_reports_versions_threads_cuda_and_cache():
    proc = fastrelu_cli("info", env={**os.environ, "FASTRELU_NUM_THREADS": "3"})
    assert proc.returncode == 0, proc.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in proc.stdout.splitlines())
    assert rows["fastrelu"] == fastrelu.__version__
    assert rows["NumPy"] == np.__version__
    import numba

    assert rows["Numba"] == numba.__version__
    assert rows["threads"].startswith("3 for large arrays")
    assert rows["CUDA"].startswith("usable" if fastrelu.cuda_available() else "not usable")
    cache = rows["kernel cache"]
    assert cache.startswith("none") or os.path.isdir(cache), cache


def test_info_without_a_cache():
    proc = fastrelu_cli("info", env={**os.environ, "FASTRELU_CACHE": "0"})
    assert proc.returncode == 0 and re.search(r"^kernel cache\s+none", proc.stdout, re.M), proc.stdout


def test_bench_prints_a_row_per_kernel_with_consistent_ratios():
    proc = fastrelu_cli("bench", "--size", "2**16", "--repeat", "2", "--threads", "2", "--dtype", "float64")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "65536 elements of float64 on cpu" in proc.stdout and "fastrelu threads: 2" in proc.stdout
    header = next(line for line in lines if line.startswith("operation")).split()
    assert header[:3] == ["operation", "fastrelu", "±"]
    peers = header[3:-2:2]
    assert peers[0] == "NumPy" and set(peers) <= {"NumPy", "PyTorch"}
    for name in OPERATIONS:
        (row,) = [line for line in lines if line.split()[:1] == [name]]
        spread = row.split()[2]
        assert re.fullmatch(r"\d+%", spread) and int(spread[:-1]) < 100, row
        values = list(map(float, row.split()[1:2] + row.split()[3:]))
        ours = values[0]
        for i in range(len(peers) + 1):  # each peer, then the copy: GB/s and fastrelu's ratio to it
            theirs, ratio = values[1 + 2 * i], values[2 + 2 * i]
            assert ours > 0 and theirs > 0
            assert ratio == pytest.approx(ours / theirs, rel=0.06, abs=0.006)


def test_bench_on_cuda_without_a_gpu_says_so():
    if fastrelu.cuda_available():
        pytest.skip("a GPU is usable here")
    proc = fastrelu_cli("bench", "--device", "cuda", "--size", "1000")
    assert proc.returncode == 1 and "no usable CUDA GPU" in proc.stderr


# The demo.


def label_entropy(y):
    """Cross-entropy of the best constant prediction: the labels' entropy."""
    p = np.bincount(y) / len(y)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def short_runs():
    return _demo.run_all(seed=3, epochs=4)


def test_demo_trains(short_runs):
    """Every run beats the best constant prediction by far: its training loss
    falls below half the labels' entropy, and its test accuracy clears the
    majority class by 0.2."""
    for r in short_runs:
        X, y, X_test, y_test = _demo.make_task(r.task, 3)
        assert r.losses[-1] < 0.5 * label_entropy(y), r
        assert r.losses[-1] < r.losses[0]
        assert r.test_accuracy > np.bincount(y_test).max() / len(y_test) + 0.2, r


def test_exact_zeros_decide_whether_the_choice_matters(short_runs):
    by = {(r.task, r.label): r for r in short_runs}
    relu_labels = [label for label, activation, _ in _demo.RUNS if activation == "relu"]
    continuous = [by["continuous", label] for label in relu_labels]
    quantised = [by["quantised", label] for label in relu_labels]
    # Real-valued data: no pre-activation is ever exactly 0, so at_zero is
    # never consulted and the runs agree bit for bit.
    assert all(r.zeros == 0 for r in continuous)
    assert all(r.losses == continuous[0].losses for r in continuous)
    # Quantised: zeros are common, and the choice changes the trajectory.
    assert all(r.zeros > 0.01 * r.preactivations for r in quantised)
    assert any(r.losses != quantised[0].losses for r in quantised[1:])


def test_demo_is_deterministic(short_runs):
    again = _demo.run_all(seed=3, epochs=4)
    assert [(r.losses, r.zeros, r.test_accuracy) for r in again] == [
        (r.losses, r.zeros, r.test_accuracy) for r in short_runs
    ]


def test_gradients_of_the_demo_network_match_finite_differences():
    """The backward pass through fastrelu's gradients, checked numerically
    on the continuous task (no kinks hit) in float64."""
    X, y, _, _ = _demo.make_task("continuous", 0)
    X, y = X[:20].astype(np.float64), y[:20]
    weights, biases = _demo._initial_weights(0)
    for activation in ("relu", "softplus"):
        net = _demo.MLP(
            [w.astype(np.float64) for w in weights],
            [b + 0.1 for b in biases],
            activation,
            0.0,
            quantised=False,
        )
        before = [w.copy() for w in net.W]
        lr = 1.0
        net.step(X, y, lr)
        analytic = (before[0] - net.W[0]) / lr  # the step applied -lr * dW
        probe = _demo.MLP(before, [b + 0.1 for b in biases], activation, 0.0, quantised=False)
        eps = 1e-6
        for i, j in [(0, 0), (3, 5), (7, 63)]:
            probe.W[0][i, j] += eps
            up = _demo._cross_entropy(probe.forward(X)[0], y)[0]
            probe.W[0][i, j] -= 2 * eps
            down = _demo._cross_entropy(probe.forward(X)[0], y)[0]
            probe.W[0][i, j] += eps
            assert analytic[i, j] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)


def test_demo_command_prints_the_table_and_writes_the_figure(tmp_path):
    out = tmp_path / "curves.png"
    args = ("demo", "--epochs", "2", "--seed", "1", "--output", str(out))
    first, second = fastrelu_cli(*args), fastrelu_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # fixed seeds: the same numbers
    rows = [
        line
        for line in first.stdout.splitlines()
        if re.match(r"(continuous|quantised) +(relu|softplus)", line)
    ]
    assert len(rows) == 8
    pytest.importorskip("matplotlib")
    assert f"written to {out.resolve()}" in first.stdout
    assert out.read_bytes().startswith(b"\x89PNG")


def test_demo_without_matplotlib_says_how_to_get_the_figure(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert _cli.main(["demo", "--epochs", "1", "--output", str(tmp_path / "x.png")]) == 0
    assert "pip install 'fastrelu[plot]'" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()
