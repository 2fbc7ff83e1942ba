"""Render a run of the benchmark suite into docs/performance.md.

    python bench/render.py RESULTS.json [MORE.json ...] [--output docs/performance.md]
        [--img-dir DIR] [--no-plot]

Reads the JSON that ``pytest --benchmark-json`` wrote for ``bench/`` (several
runs are merged: their samples pooled) and replaces what lies between the
markers ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` of the output
page with: a table of checks, a plot of fastrelu's speed relative to PyTorch,
NumPy and a copy against size (a PNG in ``--img-dir``, by default ``img/``
next to the page), one table per operation and dtype, and the start-up and
Dask tables.  A ratio is the peer's median time over fastrelu's: above 1,
fastrelu is faster.
"""

import argparse
import copy
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from fastrelu._table import KERNELS
from fastrelu._throughput import quartiles

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
OPERATIONS = tuple(KERNELS)  # the order of the page
DTYPES = ("float32", "float64")
PLOT_NAME = "bench-ratios.png"
ROOT = Path(__file__).resolve().parents[1]

# The comparisons of a group: name -> (fastrelu's key, how to find the other).
# The other is a key, or a library and a form for the fastest of them.
COMPARISONS = {
    "torch_out": ("fastrelu_out", ("torch", True)),
    "numpy_out": ("fastrelu_out", ("numpy", True)),
    "copy_out": ("fastrelu_out", ("copy", True)),
    "torch": ("fastrelu", ("torch", False)),
    "numpy": ("fastrelu", ("numpy", False)),
    "copy": ("fastrelu", ("copy", False)),
}


def _fmt(value, digits=3):
    """Format *value* in fixed point to *digits* significant digits."""
    if not math.isfinite(value) or value <= 0:
        return str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _size_label(size):
    """``2**12`` (in a code span) for 4096; the plain number for other sizes."""
    exponent = size.bit_length() - 1
    return f"`2**{exponent}`" if size == 1 << exponent else str(size)


def _of_suite(benchmarks, suite):
    """The benchmarks of one part of the suite: "kernels", "startup" or "dask"."""
    return [b for b in benchmarks if b.get("extra_info", {}).get("suite") == suite]


def group_rows(benchmarks, suite="kernels", comparisons=COMPARISONS):
    """One row per operation, dtype and size, in the tables' order.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.
    suite : str, default "kernels"
        The part of the suite whose groups to read (``extra_info["suite"]``).
    comparisons : dict, default :data:`COMPARISONS`
        The comparisons to make, in the form of :data:`COMPARISONS`.

    Returns
    -------
    list of dict
        Keys ``op``, ``dtype``, ``size``, ``bytes`` (that the operation
        must move); ``times``: implementation key ->
        ``(q1, median, q3)`` seconds per call; ``peers``: comparison name
        (of *comparisons*) -> the key of the implementation it uses;
        ``ratio``: comparison name -> the other's median time over
        fastrelu's; ``spread``: the largest half interquartile range, over
        the median, of the implementations compared.
    """
    rows = []
    for bench in _of_suite(benchmarks, suite):
        info = bench["extra_info"]
        impls = info["implementations"]
        times = {key: quartiles(impl["samples"]) for key, impl in impls.items()}
        row = {"op": info["op"], "dtype": info["dtype"], "size": info["size"], "times": times}
        row["bytes"] = info.get("bytes")
        row["peers"], row["ratio"] = {}, {}
        compared = set()
        for name, (ours, (library, out)) in comparisons.items():
            found = [
                key for key, impl in impls.items() if impl["library"] == library and impl["allocates"] != out
            ]
            if ours not in times or not found:
                continue
            best = min(found, key=lambda key: times[key][1])
            row["peers"][name] = best
            row["ratio"][name] = times[best][1] / times[ours][1]
            compared |= {ours, best}
        row["spread"] = max(((q3 - q1) / 2 / m for q1, m, q3 in (times[k] for k in compared)), default=0.0)
        rows.append(row)

    def order(row):
        rank = OPERATIONS.index(row["op"]) if row["op"] in OPERATIONS else len(OPERATIONS)
        return rank, row["op"], (row["dtype"] not in DTYPES, row["dtype"]), row["size"]

    return sorted(rows, key=order)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio_cell(row, name):
    ratio = row["ratio"].get(name)
    if ratio is None:
        return "–"
    text = _fmt(ratio, 3)
    return text if ratio >= 1 or name.startswith("copy") else f"**{text}**"


def _microseconds(row, key):
    if key not in row["times"]:
        return "–"
    q1, median, q3 = (t * 1e6 for t in row["times"][key])
    return f"{_fmt(median)} ({_fmt(q1)}–{_fmt(q3)})"


def size_table(rows, columns):
    """A markdown table with a row per size: the size, *columns*, and ``±``
    (the row's ``spread``).

    Parameters
    ----------
    rows : list of dict
        Rows from :func:`group_rows`, one per size.
    columns : list of (str, callable)
        Heading and ``cell(row)`` -> text of each column after the size.

    Returns
    -------
    str
    """
    header = ["size", *(heading for heading, _ in columns), "±"]
    cells = [
        [_size_label(row["size"]), *(cell(row) for _, cell in columns), f"{row['spread']:.0%}"]
        for row in rows
    ]
    return _table(header, cells)


def operation_table(rows):
    """The markdown table of one operation and dtype, a row per size.

    Parameters
    ----------
    rows : list of dict
        That operation's and dtype's rows from :func:`group_rows`.

    Returns
    -------
    str
    """
    columns = [
        ("`out=` µs", lambda row: _microseconds(row, "fastrelu_out")),
        ratio_column("× PyTorch", "torch_out"),
        ratio_column("× NumPy", "numpy_out"),
        ratio_column("× copy", "copy_out"),
        ("allocating µs", lambda row: _microseconds(row, "fastrelu")),
        ratio_column("× PyTorch", "torch"),
        ratio_column("× NumPy", "numpy"),
    ]
    return size_table(rows, columns)


def ratio_column(heading, name):
    """A column of :func:`size_table`: the ratio of comparison *name*, bold below 1 (but the copy's)."""
    return heading, lambda row: _ratio_cell(row, name)


# The columns of the overview: comparison name -> heading.
EVERY_SIZE = {
    "torch_out": "PyTorch, `out=`",
    "torch": "PyTorch, allocating",
    "numpy_out": "NumPy, `out=`",
    "numpy": "NumPy, allocating",
}


def lowest_ratios(rows):
    """Per operation and dtype, per comparison of :data:`EVERY_SIZE`: the
    lowest ratio over the sizes measured, and its size.

    Returns
    -------
    dict
        ``(op, dtype)`` -> comparison name -> ``(ratio, size)``.
    """
    lowest = defaultdict(dict)
    for row in rows:
        for name in EVERY_SIZE:
            ratio = row["ratio"].get(name)
            key = (row["op"], row["dtype"])
            if ratio is not None and (name not in lowest[key] or ratio < lowest[key][name][0]):
                lowest[key][name] = (ratio, row["size"])
    return lowest


def overview_table(rows):
    """The markdown table of the lowest ratio at any size, per operation and dtype."""
    cells = []
    for (op, dtype), found in lowest_ratios(rows).items():
        line = [f"{op}, {dtype}"]
        for name in EVERY_SIZE:
            if name not in found:
                line.append("–")
                continue
            ratio, size = found[name]
            text = f"{_fmt(ratio)} at {_size_label(size)}"
            line.append(text if ratio >= 1 else f"**{text}**")
        cells.append(line)
    return _table(["operation, dtype", *EVERY_SIZE.values()], cells) if cells else None


# Checks at given sizes: (what, operation (None: each), dtypes, fastrelu's
# form ("out" or "alloc"), the other (an implementation's key, or a library
# and a form for its fastest), where ("from 2**24": each size from 2**24 on;
# an int: that size), bound).  A ratio of median times, above 1 when
# fastrelu is faster (against the copy: fastrelu's speed over the copy's).
CHECKS = [
    (
        "a call on 16 elements, allocating, against PyTorch's",
        None,
        DTYPES,
        "alloc",
        ("torch", "alloc"),
        16,
        1.0,
    ),
    ("relu, `out=`, against the copy", "relu", DTYPES, "out", "copy_out", "from 2**24", 0.9),
    (
        "relu_backward, `out=`, against the copy",
        "relu_backward",
        DTYPES,
        "out",
        "copy_out",
        "from 2**24",
        0.9,
    ),
    ("softplus allocating, against `F.softplus`", "softplus", DTYPES, "alloc", "torch", "from 2**24", 3.0),
    ("softplus, `out=`, against `F.softplus`", "softplus", DTYPES, "out", "torch", "from 2**24", 3.0),
    ("softplus, `out=`, against the copy", "softplus", ("float32",), "out", "copy_out", 2**24, 0.7),
    (
        "relu_backward allocating, against `threshold_backward`",
        "relu_backward",
        DTYPES,
        "alloc",
        "torch",
        "from 2**24",
        3.0,
    ),
    (
        "relu_backward allocating, against the copy",
        "relu_backward",
        DTYPES,
        "alloc",
        "copy_out",
        "from 2**24",
        0.6,
    ),
    (
        "softplus_backward allocating, against `aten.softplus_backward`",
        "softplus_backward",
        DTYPES,
        "alloc",
        "torch",
        "from 2**24",
        2.0,
    ),
    (
        "softplus_backward, `out=`, against `aten.softplus_backward`",
        "softplus_backward",
        DTYPES,
        "out",
        "torch",
        "from 2**24",
        2.0,
    ),
    ("`fastrelu.relu(x)` against `np.maximum(x, 0)`", "relu", ("float32",), "alloc", "numpy", 4096, 1 / 1.5),
]


def _check_ratio(row, ours, theirs):
    """The other's median time over fastrelu's in *row*, or None if the run lacks either."""
    times = row["times"]
    mine = "fastrelu_out" if ours == "out" else "fastrelu"
    if isinstance(theirs, tuple):  # the fastest of a library in a form
        library, form = theirs
        theirs = row["peers"].get(f"{library}_out" if form == "out" else library)
    if mine in times and theirs in times:
        return times[theirs][1] / times[mine][1]
    return None


def check_rows(rows, benchmarks):
    """The checks measured by this run: ``(what, measured, bound, met)``.

    The kernel checks compare medians of this run; the start-up ones are
    seconds (bound: at most).
    """
    found = []
    by_key = {(r["op"], r["dtype"], r["size"]): r for r in rows}
    sizes = sorted({r["size"] for r in rows})
    for what, op, dtypes, ours, theirs, where, bound in CHECKS:
        for dtype in dtypes:
            for op_name in [op] if op else OPERATIONS:
                chosen = [s for s in sizes if s >= 2**24] if where == "from 2**24" else [where]
                ratios = [
                    (_check_ratio(by_key[op_name, dtype, s], ours, theirs), s)
                    for s in chosen
                    if (op_name, dtype, s) in by_key
                ]
                ratios = [(r, s) for r, s in ratios if r is not None]
                if not ratios:
                    continue
                ratio, size = min(ratios)
                label = what if op else f"{op_name}: {what}"
                found.append(
                    (f"{label}, {dtype} {_size_label(size)}", ratio, f"≥ {_fmt(bound)}", ratio >= bound)
                )
    steps = {b["extra_info"]["key"]: b["extra_info"]["seconds"] for b in _of_suite(benchmarks, "startup")}
    for key, what, bound in (
        ("import", "`import fastrelu`, seconds", 0.5),
        ("first_call_warm_cache", "first call in a fresh process, warm cache, seconds", 1.0),
    ):
        if key in steps:
            found.append((what, steps[key], f"≤ {_fmt(bound)}", steps[key] <= bound))
    return found


def checks_table(rows, benchmarks):
    found = check_rows(rows, benchmarks)
    if not found:
        return None
    cells = [[what, _fmt(value), bound, "yes" if met else "**no**"] for what, value, bound, met in found]
    return _table(["check", "measured", "bound", "met"], cells)


def startup_table(benchmarks):
    """The markdown table of import and first-call times, in seconds.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.

    Returns
    -------
    str or None
        ``None`` if the run did not measure them.
    """
    steps = _of_suite(benchmarks, "startup")
    if not steps:
        return None
    cells = []
    for bench in steps:
        info = bench["extra_info"]
        samples = info["samples"]
        cells.append(
            [info["step"], _fmt(info["seconds"]), _fmt(min(samples)), _fmt(max(samples)), str(len(samples))]
        )
    return _table(["step (fresh process)", "median s", "min s", "max s", "runs"], cells)


def _gbps(bench):
    """Throughput of one Dask benchmark in GB/s: bytes moved / median time."""
    return bench["extra_info"]["bytes"] / bench["stats"]["median"] / 1e9


def dask_table(benchmarks):
    """The markdown table of the Dask group: GB/s per graph and scheduler.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.

    Returns
    -------
    str or None
        ``None`` if the run has no Dask benchmarks.
    """
    groups = defaultdict(dict)
    for bench in _of_suite(benchmarks, "dask"):
        info = bench["extra_info"]
        groups[info["op"], info["scheduler"], info["size"], info["chunk"]][info["key"]] = bench
    rows = []
    for (_, scheduler, size, chunk), found in sorted(groups.items(), key=lambda item: item[0][:2]):
        gbps = {key: _gbps(bench) for key, bench in found.items()}
        ours, all_threads, numpy = (gbps.get(k) for k in ("fastrelu", "fastrelu_all_threads", "numpy"))
        rows.append(
            [
                f"`{found.get('fastrelu', next(iter(found.values())))['extra_info']['impl']}`",
                scheduler,
                f"{_size_label(size)} in {_size_label(chunk)}",
                _fmt(ours) if ours else "–",
                _fmt(all_threads) if all_threads else "–",
                f"`{found['numpy']['extra_info']['impl']}` {_fmt(numpy)}" if numpy else "–",
                _fmt(ours / numpy) if ours and numpy else "–",
                _fmt(ours / all_threads) if ours and all_threads else "–",
            ]
        )
    if not rows:
        return None
    header = [
        "graph",
        "scheduler",
        "elements in chunks",
        "fastrelu, 1 thread per task",
        "fastrelu, all threads per task",
        "NumPy, same graph",
        "fastrelu / NumPy",
        "1 thread / all threads",
    ]
    return _table(header, rows)


def machine_summary(data):
    """A sentence on the machine, the software and the date of a run.

    Parameters
    ----------
    data : dict
        A pytest-benchmark JSON, as loaded; ``bench/conftest.py`` adds
        ``machine_info["fastrelu_bench"]``.

    Returns
    -------
    str
    """
    info = data.get("machine_info", {}).get("fastrelu_bench", {})
    versions = info.get("versions", {})
    date = data.get("datetime", "an unknown date")[:16].replace("T", " ")
    software = ", ".join(
        f"{name} {versions.get(key) or 'not installed'}"
        for name, key in (
            ("Python", "python"),
            ("fastrelu", "fastrelu"),
            ("NumPy", "numpy"),
            ("Numba", "numba"),
            ("PyTorch", "torch"),
        )
    )
    runs = data.get("runs", 1)
    repeated = f" The suite ran {runs} times; each implementation's samples are pooled." if runs > 1 else ""
    return (
        f"Run on {date} UTC: {info.get('cpu_model', 'unknown CPU')}, "
        f"{info.get('logical_cores', '?')} logical cores, fastrelu on "
        f"{info.get('fastrelu_threads', '?')} threads and PyTorch set to the same; {software}.{repeated}"
    )


# The plot's lines: comparison name -> (label, colour).
PLOT_LINES = {
    "torch_out": ("PyTorch, out=", "#2ca02c"),
    "torch": ("PyTorch, allocating", "#98df8a"),
    "numpy_out": ("NumPy, out=", "#1f77b4"),
    "numpy": ("NumPy, allocating", "#aec7e8"),
    "copy_out": ("copy, out=", "black"),
}


def plot_ratios(rows, path, lines=PLOT_LINES, dtypes=DTYPES):
    """Plot fastrelu's ratios against size, a panel per operation and dtype, into a PNG.

    Parameters
    ----------
    rows : list of dict
        From :func:`group_rows`.
    path : Path
        The PNG to write; its folder is made if missing.
    lines : dict, default :data:`PLOT_LINES`
        Comparison name -> (label, colour) of each line.
    dtypes : sequence of str, default :data:`DTYPES`
        The dtypes to plot, a row of panels each, in this order.

    Returns
    -------
    bool
        False, without writing anything, if matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    ops = [op for op in OPERATIONS if any(r["op"] == op for r in rows)]
    ops += sorted({r["op"] for r in rows} - set(ops))
    dtypes = [d for d in dtypes if any(r["dtype"] == d for r in rows)]
    fig, axes = plt.subplots(
        len(dtypes), len(ops), figsize=(4 * len(ops), 3.6 * len(dtypes)), squeeze=False, layout="constrained"
    )
    for i, dtype in enumerate(dtypes):
        for j, op in enumerate(ops):
            ax = axes[i][j]
            mine = [r for r in rows if r["op"] == op and r["dtype"] == dtype]
            for name, (label, colour) in lines.items():
                points = [(r["size"], r["ratio"][name]) for r in mine if name in r["ratio"]]
                if points:
                    xs, ys = zip(*points)
                    style = "--" if name.startswith("copy") else "-"
                    ax.plot(xs, ys, style, color=colour, marker="o", ms=3, label=label)
            ax.axhline(1.0, color="#d62728", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{op}, {dtype}", fontsize=10)
            ax.set_xlabel("elements")
            if j == 0:
                ax.set_ylabel("speed-up of fastrelu")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(lines), frameon=False)
    fig.suptitle("fastrelu's speed over each peer's (above the red line: fastrelu is faster)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


METHOD = (
    "Each row compares, at one size, fastrelu with `out=` and allocating against PyTorch's and "
    "NumPy's fastest idioms in the same form (listed below) and against a copy of as many bytes "
    "(n elements for a forward pass, 1.5 n for a backward pass) run by fastrelu's own entries and "
    "threads, the ceiling of a kernel that moves its bytes and computes nothing. Every "
    "implementation was first called until its time per call settled (at least 100 calls or "
    "0.2 s, then three samples in a row within 10%); then rounds took one sample of each in turn, "
    "in an order rotated from round to round, a sample repeating the call for at least 2 ms, with "
    "10 ms between samples so that no thread pool's spinning workers (PyTorch's OpenMP threads "
    "spin about 8 ms after a call) outlive their own implementation's sample. A ratio is the "
    "other's median time per call over fastrelu's: above 1, fastrelu is faster; bold marks those "
    "below 1. *µs* is fastrelu's median time per call with its quartiles; *±* is the largest half "
    "interquartile range, relative to the median, among the implementations compared in the row. "
    "NumPy runs on one thread, fastrelu and PyTorch on the same number; inputs are standard "
    "normal, so PyTorch's softplus never reaches its threshold of 20."
)


def section(data, plot="(No plot.)"):
    """The markdown that goes between the markers.

    Parameters
    ----------
    data : dict
        A pytest-benchmark JSON, as loaded.
    plot : str, optional
        The line that shows the plot, or says why there is none.

    Returns
    -------
    str
    """
    benchmarks = data["benchmarks"]
    rows = group_rows(benchmarks)
    parts = [
        "Generated by `python bench/run.py` (`bench/render.py`); do not edit by hand.",
        machine_summary(data),
    ]
    checks = checks_table(rows, benchmarks)
    if checks:
        parts += [
            "### Checks",
            "Each a ratio of two medians of this run (above 1: fastrelu is faster; against "
            "the copy: the fraction of its speed), or seconds.",
            checks,
        ]
    overview = overview_table(rows)
    if overview:
        parts += [
            "### At every size",
            "The lowest ratio of fastrelu against each peer over all the sizes measured, and where.",
            overview,
            plot,
        ]
    if rows:
        parts += ["### By operation", METHOD]
        for op in dict.fromkeys(r["op"] for r in rows):
            for dtype in dict.fromkeys(r["dtype"] for r in rows if r["op"] == op):
                parts += [
                    f"#### {op}, {dtype}",
                    operation_table([r for r in rows if r["op"] == op and r["dtype"] == dtype]),
                ]
        labels = defaultdict(list)
        for bench in _of_suite(benchmarks, "kernels"):
            info = bench["extra_info"]
            for impl in info["implementations"].values():
                if impl["label"] not in labels[info["op"]]:
                    labels[info["op"]].append(impl["label"])
        parts.append(
            "Implementations timed:\n\n"
            + "\n".join(
                f"- {op}: " + ", ".join(f"`{label}`" for label in found) for op, found in labels.items()
            )
        )
    startup = startup_table(benchmarks)
    if startup:
        parts += [
            "### Import and first call",
            "Timed inside a fresh interpreter around the step alone; the first call is "
            "`fastrelu.relu` on 1000 float32 elements, with `NUMBA_CACHE_DIR` an empty "
            "folder or one a previous process filled.",
            startup,
        ]
    dask = dask_table(benchmarks)
    if dask:
        parts += ["### Dask", DASK_NOTE, dask]
    return "\n\n".join(parts)


DASK_NOTE = (
    "`bench/test_dask.py`: float32 graphs of one task per chunk, fastrelu's and the same "
    "NumPy expression mapped over the chunks with `da.map_blocks`, in GB/s of the bytes "
    "that must move (median of 5 rounds). A round computes the graph from inputs already "
    "in memory and keeps its result there (`persist`); the previous round's result is "
    "freed before it, untimed. The threaded scheduler runs one "
    "thread per core; the LocalCluster one single-threaded worker process per core. "
    "fastrelu runs as shipped, each task's chunk on one thread "
    "(`fastrelu.config.DASK_BLOCK_THREADS = 1`), and with each chunk split over all of "
    "fastrelu's threads (`None`)."
)


def replace_section(text, body):
    """Replace what lies between the markers of a page.

    Parameters
    ----------
    text : str
        The page.
    body : str
        The new text between the markers.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the page lacks the markers, or has them in the wrong order.

    Examples
    --------
    >>> print(replace_section("Before <!-- bench:begin --> old <!-- bench:end --> after", "new"))
    Before <!-- bench:begin -->
    new
    <!-- bench:end --> after
    """
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"the page has no {BEGIN} ... {END} markers")
    return text[: start + len(BEGIN)] + "\n" + body + "\n" + text[stop:]


def merge_runs(runs):
    """One result from several runs of the suite, to steady a noisy machine.

    Parameters
    ----------
    runs : list of dict
        pytest-benchmark JSONs of the same suite, as loaded.

    Returns
    -------
    dict
        The first run, with each kernel implementation's samples and each
        start-up step's samples pooled over the runs, each other benchmark's
        median replaced by the median of its medians, and ``"runs"`` set to
        the number of runs.
    """
    merged = copy.deepcopy(runs[0])
    by_name = defaultdict(list)
    for run in runs:
        for bench in run["benchmarks"]:
            by_name[bench["fullname"]].append(bench)
    for bench in merged["benchmarks"]:
        all_runs = by_name[bench["fullname"]]
        bench["stats"]["median"] = statistics.median(b["stats"]["median"] for b in all_runs)
        info = bench.get("extra_info", {})
        if "samples" in info:
            info["samples"] = [t for b in all_runs for t in b["extra_info"]["samples"]]
            info["seconds"] = statistics.median(info["samples"])
        for key, impl in info.get("implementations", {}).items():
            impl["samples"] = [
                t for b in all_runs for t in b["extra_info"]["implementations"][key]["samples"]
            ]
    merged["runs"] = len(runs)
    return merged


def render(json_path, output, img_dir=None, plot=True):
    """Write the results in *json_path* into the page *output*.

    Parameters
    ----------
    json_path : str or Path, or a list of them
        A pytest-benchmark JSON of the suite in ``bench/``; several are
        merged by :func:`merge_runs`.
    output : str or Path
        The markdown page; it must hold the markers, and only what lies
        between them changes.
    img_dir : str or Path, optional
        Where the plot goes; by default ``img/`` next to *output*.
    plot : bool, default True
        Draw the plot (when matplotlib is installed).

    Returns
    -------
    Path or None
        The plot written, or ``None``.
    """
    output = Path(output)
    paths = json_path if isinstance(json_path, (list, tuple)) else [json_path]
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    data = merge_runs(runs)
    text = output.read_text()
    replace_section(text, "")  # no markers: fail before drawing anything
    img_dir = output.parent / "img" if img_dir is None else Path(img_dir)
    image = img_dir / PLOT_NAME
    rows = group_rows(data["benchmarks"])
    drawn = plot and bool(rows) and plot_ratios(rows, image)
    if drawn:
        link = Path(os.path.relpath(image, output.parent)).as_posix()
        line = f"![fastrelu's speed-up over PyTorch, NumPy and a copy, against size]({link})"
    elif not rows:
        line = "(No plot: the run measured no kernels.)"
    else:
        line = "(Plot skipped: matplotlib is not installed.)" if plot else "(Plot skipped: --no-plot.)"
    output.write_text(replace_section(text, section(data, line)))
    return image if drawn else None


def main(argv=None):
    """The command line: ``python bench/render.py RESULTS.json [options]``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; by default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(description="Render a run of bench/ into a markdown page.")
    parser.add_argument("json", nargs="+", help="the file(s) written by pytest --benchmark-json")
    parser.add_argument(
        "--output", default=ROOT / "docs" / "performance.md", help="default: docs/performance.md"
    )
    parser.add_argument("--img-dir", help="where the plot goes (default: img/ next to the page)")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    try:
        image = render(args.json, args.output, args.img_dir, plot=not args.no_plot)
    except (OSError, ValueError) as exc:
        parser.exit(1, f"render.py: error: {exc}\n")
    print(f"wrote {args.output}" + (f" and {image}" if image else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
