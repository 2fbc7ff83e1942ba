"""The benchmark suite end to end: a tiny real run of ``bench/run.py``, its
page checked against the JSON it wrote.

Works without PyTorch (its benchmarks are skipped) and without matplotlib
(the plot is skipped, and the page says so).
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = {"relu": 1, "relu_backward": 2, "softplus": 1, "softplus_backward": 2}  # arrays read
DTYPES = ("float32", "float64")
BEFORE = "# A page\n\nProse before.\n\n<!-- bench:begin -->\n"
AFTER = "<!-- bench:end -->\n\nProse after.\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the suite on 2**12 elements; return the JSON, the page and the folder."""
    tmp = tmp_path_factory.mktemp("bench")
    page, results = tmp / "performance.md", tmp / "results.json"
    page.write_text(BEFORE + "stale results\n" + AFTER)
    command = [
        sys.executable,
        "bench/run.py",
        f"--json={results}",
        f"--output={page}",
        "--benchmark-min-rounds=1",
        "--benchmark-max-time=0.002",
        "--benchmark-min-time=0",
        f"--basetemp={tmp / 'pytest'}",
        "-q",
    ]
    env = {**os.environ, "FASTRELU_BENCH_SIZES": "12", "FASTRELU_BENCH_DASK": "14,12"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return json.loads(results.read_text()), page.read_text(), tmp


def tables(page):
    """The tables of *page*, by the ``###`` heading above them: lists of rows of cells."""
    found, heading = defaultdict(list), None
    for line in page.splitlines():
        if line.startswith("### "):
            heading = line[4:]
        elif line.startswith("|") and not line.startswith("|---"):
            found[heading].append([cell.strip() for cell in line.strip("|").split("|")])
    return {heading: rows[1:] for heading, rows in found.items()}  # without the header row


def assert_shows(text, value):
    """*text* is *value* rounded to the decimals *text* shows."""
    decimals = len(text.partition(".")[2])
    assert abs(float(text) - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9), (text, value)


def by_suite(data, suite):
    return [b for b in data["benchmarks"] if b["extra_info"].get("suite") == suite]


def test_page_keeps_everything_outside_the_markers(run):
    _, page, _ = run
    assert page.startswith(BEFORE) and page.endswith(AFTER)
    assert "stale results" not in page


def test_throughput_tables_agree_with_the_json(run):
    data, page, _ = run
    groups = defaultdict(dict)  # (op, dtype, size) -> {(library, allocates, label): GB/s}
    for bench in by_suite(data, "kernels"):
        info = bench["extra_info"]
        itemsize = np.dtype(info["dtype"]).itemsize
        assert info["bytes"] == (OPERATIONS[info["op"]] + 1) * info["size"] * itemsize
        gbps = info["bytes"] / bench["stats"]["median"] / 1e9
        groups[info["op"], info["dtype"], info["size"]][info["library"], info["allocates"], info["impl"]] = (
            gbps
        )
    assert {key[:2] for key in groups} == {(op, dtype) for op in OPERATIONS for dtype in DTYPES}

    shown = tables(page)
    for dtype in DTYPES:
        rows = shown[dtype]
        assert sorted(row[0] for row in rows) == sorted(OPERATIONS)
        for op, size, out, alloc, peer, copy, copy_fresh, to_copy, to_peer in rows:
            assert size == "2**12"
            group = groups[op, dtype, 4096]
            ours = {allocates: v for (lib, allocates, _), v in group.items() if lib == "fastrelu"}
            peers = {label: v for (lib, _, label), v in group.items() if lib in ("numpy", "torch")}
            copies = {allocates: v for (lib, allocates, _), v in group.items() if lib == "copy"}
            ceiling = copies[False]
            best = max(peers, key=peers.get)
            assert_shows(out, ours[False])
            assert_shows(alloc, ours[True])
            assert_shows(copy, ceiling)
            assert_shows(copy_fresh, copies[True])
            name, value = re.fullmatch(r"`(.+)` (\S+)", peer).groups()
            assert name == best
            assert_shows(value, peers[best])
            assert_shows(to_copy, ours[False] / ceiling)
            assert_shows(to_peer, ours[False] / peers[best])


def test_startup_and_overhead_tables_agree_with_the_json(run):
    data, page, _ = run
    shown = tables(page)
    startup = {row[0]: row for row in shown["Import and first call"]}
    for bench in by_suite(data, "startup"):
        info = bench["extra_info"]
        step, median, low, high, runs = startup[info["step"]]
        assert_shows(median, info["seconds"])
        assert_shows(low, min(info["samples"]))
        assert_shows(high, max(info["samples"]))
        assert int(runs) == len(info["samples"]) >= 1
    assert len(startup) == 3

    (heading,) = [h for h in shown if h and h.startswith("Per-call cost")]
    overhead = {row[0].strip("`"): row[1:] for row in shown[heading]}
    for bench in by_suite(data, "overhead"):
        info = bench["extra_info"]
        column = [16, 4096].index(info["size"])
        assert_shows(overhead[info["call"]][column], bench["stats"]["median"] * 1e6)
    assert len(overhead) == 4


def test_dask_table_agrees_with_the_json(run):
    data, page, _ = run
    benchmarks = by_suite(data, "dask")
    if importlib.util.find_spec("dask") is None:
        assert not benchmarks and "### Dask" not in page
        return
    gbps = defaultdict(dict)  # (op, scheduler) -> {key: GB/s}
    for bench in benchmarks:
        info = bench["extra_info"]
        assert (info["size"], info["chunk"]) == (2**14, 2**12)
        assert info["bytes"] == (OPERATIONS[info["op"]] + 1) * info["size"] * 4
        gbps[info["op"], info["scheduler"]][info["key"]] = info["bytes"] / bench["stats"]["median"] / 1e9
    rows = tables(page)["Dask"]
    assert len(rows) == len(gbps) == 4  # two graphs on two schedulers
    for graph, scheduler, sizes, serial, parallel, numpy_cell, to_numpy, to_parallel in rows:
        op = re.fullmatch(r"`fastrelu\.(\w+)\(.*\)`", graph).group(1)
        measured = gbps[op, scheduler]
        assert sizes == "2**14 in 2**12"
        assert_shows(serial, measured["fastrelu"])
        assert_shows(parallel, measured["fastrelu_all_threads"])
        assert_shows(numpy_cell.rpartition(" ")[2], measured["numpy"])
        assert_shows(to_numpy, measured["fastrelu"] / measured["numpy"])
        assert_shows(to_parallel, measured["fastrelu"] / measured["fastrelu_all_threads"])


def test_page_shows_the_plot_or_says_it_was_skipped(run):
    _, page, tmp = run
    if importlib.util.find_spec("matplotlib") is None:
        assert "Plot skipped: matplotlib is not installed" in page
    else:
        assert "](img/bench-throughput.png)" in page
        assert (tmp / "img" / "bench-throughput.png").read_bytes().startswith(b"\x89PNG")


def test_render_refuses_a_page_without_markers(run, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# No markers here\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(run[0]))
    proc = subprocess.run(
        [sys.executable, "bench/render.py", str(results), f"--output={page}", "--no-plot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "markers" in proc.stderr
    assert page.read_text() == "# No markers here\n"


def test_runs_merge_to_the_median_of_their_medians(run):
    """``bench/run.py --repeat N`` renders each benchmark's median over N runs."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from render import merge_runs
    finally:
        sys.path.remove(str(ROOT / "bench"))
    data = run[0]
    runs = []
    for factor in (3.0, 1.0, 2.0):
        scaled = json.loads(json.dumps(data))
        for bench in scaled["benchmarks"]:
            bench["stats"]["median"] *= factor
        runs.append(scaled)
    merged = merge_runs(runs)
    assert merged["runs"] == 3
    for before, after in zip(data["benchmarks"], merged["benchmarks"]):
        assert after["fullname"] == before["fullname"]
        assert after["stats"]["median"] == pytest.approx(2.0 * before["stats"]["median"])
        if "samples" in before["extra_info"]:
            assert len(after["extra_info"]["samples"]) == 3 * len(before["extra_info"]["samples"])


def test_goal_ratios_match_the_json(run):
    data, page, _ = run
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from render import KERNEL_GOALS
    finally:
        sys.path.remove(str(ROOT / "bench"))
    gbps = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("suite") == "kernels":
            gbps[info["op"], info["dtype"], info["key"]] = info["bytes"] / bench["stats"]["median"] / 1e9
    rows = {row[0]: row for row in tables(page)["The goals"]}
    checked = 0
    for what, op, ours, theirs, sense, bound in KERNEL_GOALS:
        for dtype in DTYPES:
            name = f"{what}, {dtype} 2**12"
            if (op, dtype, theirs) not in gbps:
                assert name not in rows
                continue
            ratio = gbps[op, dtype, ours] / gbps[op, dtype, theirs]
            assert float(rows[name][1]) == pytest.approx(ratio, rel=5e-3), name
            met = ratio >= bound if sense == "min" else ratio <= bound
            assert rows[name][3] == ("yes" if met else "**no**"), name
            checked += 1
    assert checked >= 6  # the copy goals at least, with or without PyTorch
