"""The benchmark suite end to end: a tiny real run of ``bench/run.py``, its
page checked against the JSON it wrote.

Works without PyTorch (its benchmarks are skipped) and without matplotlib
(the plot is skipped, and the page says so).
"""

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from fastrelu._table import KERNELS

# Running the suite takes half a minute: -m slow.  The default run renders the
# kept record (tests/test_docs.py) and times the kernels (fastrelu bench, in
# tests/test_cli.py).
pytestmark = pytest.mark.exhaustive

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "float64")
SIZES = (16, 4096)
BEFORE = "# A page\n\nProse before.\n\n<!-- bench:begin -->\n"
AFTER = "<!-- bench:end -->\n\nProse after.\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the suite on 2**4 and 2**12 elements; return the JSON, the page and the folder."""
    tmp = tmp_path_factory.mktemp("bench")
    page, results = tmp / "performance.md", tmp / "results.json"
    page.write_text(BEFORE + "stale results\n" + AFTER)
    command = [
        sys.executable,
        "bench/run.py",
        f"--json={results}",
        f"--output={page}",
        f"--record={tmp / 'record.json'}",
        "--benchmark-min-rounds=2",
        "--benchmark-max-time=0.002",
        "--benchmark-min-time=0",
        f"--basetemp={tmp / 'pytest'}",
        "-q",
    ]
    env = {**os.environ, "FASTRELU_BENCH_SIZES": "4,12", "FASTRELU_BENCH_DASK": "14,12"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return json.loads(results.read_text()), page.read_text(), tmp


def tables(page):
    """The tables of *page*, by the heading above them: lists of rows of cells."""
    found, heading = defaultdict(list), None
    for line in page.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and not line.startswith("|---"):
            found[heading].append([cell.strip() for cell in line.strip("|").split("|")])
    return {heading: rows[1:] for heading, rows in found.items()}  # without the header row


def assert_shows(text, value):
    """*text* is *value* rounded to the decimals *text* shows (bold allowed)."""
    text = text.strip("*")
    decimals = len(text.partition(".")[2])
    assert abs(float(text) - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9), (text, value)


def by_suite(data, suite):
    return [b for b in data["benchmarks"] if b["extra_info"].get("suite") == suite]


def median(samples):
    return statistics.median(samples)


def kernel_groups(data):
    """``(op, dtype, size)`` -> the ``extra_info`` of that kernel group."""
    groups = {}
    for bench in by_suite(data, "kernels"):
        info = bench["extra_info"]
        groups[info["op"], info["dtype"], info["size"]] = info
    return groups


def best(impls, library, allocates):
    """The median time of the fastest implementation of *library* in that form, or None."""
    times = [
        median(i["samples"])
        for i in impls.values()
        if i["library"] == library and i["allocates"] == allocates
    ]
    return min(times) if times else None


def test_page_keeps_everything_outside_the_markers(run):
    _, page, _ = run
    assert page.startswith(BEFORE) and page.endswith(AFTER)
    assert "stale results" not in page


def test_every_kernel_of_the_table_is_timed_with_its_peers(run):
    data, _, _ = run
    groups = kernel_groups(data)
    assert set(groups) == {(op, dtype, size) for op in KERNELS for dtype in DTYPES for size in SIZES}
    torch = importlib.util.find_spec("torch") is not None
    for (op, dtype, size), info in groups.items():
        itemsize = 4 if dtype == "float32" else 8
        assert info["bytes"] == (len(KERNELS[op].operands) + 1) * size * itemsize
        libraries = {(i["library"], i["allocates"]) for i in info["implementations"].values()}
        expected = {(lib, alloc) for lib in ("fastrelu", "numpy", "copy") for alloc in (True, False)}
        if torch:
            expected |= {("torch", True), ("torch", False)}
        assert libraries == expected, (op, dtype, size)
        for impl in info["implementations"].values():
            assert len(impl["samples"]) == 2 and all(t > 0 for t in impl["samples"])
            assert impl["warmup_calls"] >= 2 and impl["calls_per_sample"] >= 1


def test_operation_tables_agree_with_the_json(run):
    data, page, _ = run
    groups = kernel_groups(data)
    shown = tables(page)
    for (op, dtype, size), info in groups.items():
        rows = {row[0]: row for row in shown[f"{op}, {dtype}"]}
        size_label, out_us, torch_out, numpy_out, copy_out, alloc_us, torch_alloc, numpy_alloc, spread = rows[
            f"`2**{size.bit_length() - 1}`"
        ]
        impls = info["implementations"]
        ours_out = median(impls["fastrelu_out"]["samples"])
        ours_alloc = median(impls["fastrelu"]["samples"])
        assert_shows(out_us.split()[0], ours_out * 1e6)
        assert_shows(alloc_us.split()[0], ours_alloc * 1e6)
        assert_shows(numpy_out, best(impls, "numpy", False) / ours_out)
        assert_shows(numpy_alloc, best(impls, "numpy", True) / ours_alloc)
        assert_shows(copy_out, median(impls["copy_out"]["samples"]) / ours_out)
        for cell, allocates, ours in ((torch_out, False, ours_out), (torch_alloc, True, ours_alloc)):
            theirs = best(impls, "torch", allocates)
            if theirs is None:
                assert cell == "–"
            else:
                assert_shows(cell, theirs / ours)
                assert cell.startswith("**") == (theirs / ours < 1)
        assert re.fullmatch(r"\d+%", spread)


def test_overview_shows_the_lowest_ratio_per_peer(run):
    data, page, _ = run
    groups = kernel_groups(data)
    rows = {row[0]: row[1:] for row in tables(page)["At every size"]}
    for op in KERNELS:
        for dtype in DTYPES:
            numpy_out = rows[f"{op}, {dtype}"][2]
            ratios = {}
            for size in SIZES:
                impls = groups[op, dtype, size]["implementations"]
                ratios[size] = best(impls, "numpy", False) / median(impls["fastrelu_out"]["samples"])
            low = min(ratios, key=ratios.get)
            value, _, where = numpy_out.strip("*").partition(" at ")
            assert_shows(value, ratios[low])
            assert where == f"`2**{low.bit_length() - 1}`"


def test_startup_table_agrees_with_the_json(run):
    data, page, _ = run
    startup = {row[0]: row for row in tables(page)["Import and first call"]}
    for bench in by_suite(data, "startup"):
        info = bench["extra_info"]
        step, shown_median, low, high, runs = startup[info["step"]]
        assert_shows(shown_median, info["seconds"])
        assert_shows(low, min(info["samples"]))
        assert_shows(high, max(info["samples"]))
        assert int(runs) == len(info["samples"]) >= 1
    assert len(startup) == 3


def test_dask_table_agrees_with_the_json(run):
    data, page, _ = run
    benchmarks = by_suite(data, "dask")
    if importlib.util.find_spec("dask") is None:
        assert not benchmarks and "Dask" not in tables(page)
        return
    gbps = defaultdict(dict)  # (op, scheduler) -> {key: GB/s}
    for bench in benchmarks:
        info = bench["extra_info"]
        assert (info["size"], info["chunk"]) == (2**14, 2**12)
        assert info["bytes"] == (len(KERNELS[info["op"]].operands) + 1) * info["size"] * 4
        gbps[info["op"], info["scheduler"]][info["key"]] = info["bytes"] / bench["stats"]["median"] / 1e9
    rows = tables(page)["Dask"]
    assert len(rows) == len(gbps) == 4  # two graphs on two schedulers
    for graph, scheduler, sizes, serial, parallel, numpy_cell, to_numpy, to_parallel in rows:
        op = re.fullmatch(r"`fastrelu\.(\w+)\(.*\)`", graph).group(1)
        measured = gbps[op, scheduler]
        assert sizes == "`2**14` in `2**12`"
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
        assert "](img/bench-ratios.png)" in page
        assert (tmp / "img" / "bench-ratios.png").read_bytes().startswith(b"\x89PNG")


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


def test_runs_pool_their_samples(run):
    """``bench/run.py --repeat N`` renders the samples of N runs together."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from render import condense
    finally:
        sys.path.remove(str(ROOT / "bench"))
    data = run[0]
    runs = []
    for factor in (3.0, 1.0, 2.0):
        scaled = json.loads(json.dumps(data))
        for bench in scaled["benchmarks"]:
            bench["stats"]["median"] *= factor
            info = bench["extra_info"]
            if "samples" in info:
                info["samples"] = [t * factor for t in info["samples"]]
            for impl in info.get("implementations", {}).values():
                impl["samples"] = [t * factor for t in impl["samples"]]
        runs.append(scaled)
    record = condense(runs, "python bench/run.py --repeat 3")
    assert record["runs"] == 3 and record["command"] == "python bench/run.py --repeat 3"
    groups = kernel_groups(data)
    assert len(record["kernels"]) == len(groups)
    for row in record["kernels"]:
        for key, impl in groups[row["op"], row["dtype"], row["size"]]["implementations"].items():
            pooled = [t * f for f in (3.0, 1.0, 2.0) for t in impl["samples"]]
            expected = statistics.quantiles(pooled, n=4, method="inclusive")
            assert row["implementations"][key]["quartiles"] == pytest.approx(expected)
    steps = {b["extra_info"]["step"]: b["extra_info"]["samples"] for b in by_suite(data, "startup")}
    for step in record["startup"]:
        assert sorted(step["samples"]) == pytest.approx(
            sorted(t * f for f in (3.0, 1.0, 2.0) for t in steps[step["step"]])
        )
    medians = {b["fullname"]: b["stats"]["median"] for b in by_suite(data, "dask")}
    assert sorted(g["median"] for g in record["dask"]) == pytest.approx(
        sorted(2.0 * m for m in medians.values())
    )


def test_sizes_render_as_code_not_emphasis(run):
    """``2**12`` outside a code span would render as bold in Markdown."""
    _, page, _ = run
    outside_code = re.sub(r"`[^`]*`", "", page)
    assert not re.search(r"\d\*\*\d", outside_code)
