"""Render a run of the benchmark suite into docs/performance.md.

    python bench/render.py RESULTS.json [MORE.json ...] [--output docs/performance.md]
        [--img-dir DIR] [--no-plot]

Reads the JSON that ``pytest --benchmark-json`` wrote for ``bench/`` (several
runs are merged: each benchmark's median over the runs) and
replaces what lies between the markers ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` of the output page with tables of throughput,
start-up and per-call cost, and a plot of throughput against size (a PNG in
``--img-dir``, by default ``img/`` next to the page).  Throughput is in GB/s
of the bytes an operation must move, ``extra_info["bytes"]``, divided by the
median time of a call.
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

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
OPERATIONS = ("relu", "relu_backward", "softplus", "softplus_backward")
DTYPES = ("float32", "float64")
PEERS = ("numpy", "torch")
PLOT_NAME = "bench-throughput.png"
ROOT = Path(__file__).resolve().parents[1]


def _fmt(value, digits=3):
    """Format *value* in fixed point to *digits* significant digits."""
    if not math.isfinite(value) or value <= 0:
        return str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _size_label(size):
    """``2**12`` for 4096; the plain number for sizes that are not powers of 2."""
    exponent = size.bit_length() - 1
    return f"2**{exponent}" if size == 1 << exponent else str(size)


def _gbps(bench):
    """Throughput of one kernel benchmark in GB/s: bytes moved / median time."""
    return bench["extra_info"]["bytes"] / bench["stats"]["median"] / 1e9


def _of_suite(benchmarks, suite):
    """The benchmarks of one part of the suite: "kernels", "startup" or "overhead"."""
    return [b for b in benchmarks if b.get("extra_info", {}).get("suite") == suite]


def throughput_rows(benchmarks):
    """One row per operation, dtype and size measured, in the tables' order.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.

    Returns
    -------
    list of dict
        Keys ``op``, ``dtype``, ``size``; ``out`` and ``alloc`` (fastrelu's
        GB/s with ``out=`` and allocating), ``peer`` (the label of the
        fastest NumPy or PyTorch implementation) and ``peer_gbps``, ``copy``
        and ``copy_fresh`` (into a fresh ``np.empty``), and the ratios
        ``to_copy`` and ``to_peer`` of fastrelu with ``out=``;
        ``None`` for whatever the run did not measure.
    """
    groups = defaultdict(list)
    for bench in _of_suite(benchmarks, "kernels"):
        info = bench["extra_info"]
        groups[info["op"], info["dtype"], info["size"]].append(bench)

    def order(key):
        op, dtype, size = key
        rank = OPERATIONS.index(op) if op in OPERATIONS else len(OPERATIONS)
        return dtype, rank, op, size

    rows = []
    for key in sorted(groups, key=order):
        row = dict(zip(("op", "dtype", "size"), key))
        row.update(out=None, alloc=None, peer=None, peer_gbps=None, copy=None, copy_fresh=None)
        row.update(to_copy=None, to_peer=None)
        for bench in groups[key]:
            info, value = bench["extra_info"], _gbps(bench)
            if info["library"] == "fastrelu":
                row["alloc" if info["allocates"] else "out"] = value
            elif info["library"] == "copy":
                row["copy_fresh" if info["allocates"] else "copy"] = value
            elif info["library"] in PEERS and (row["peer_gbps"] is None or value > row["peer_gbps"]):
                row["peer"], row["peer_gbps"] = info["impl"], value
        if row["out"] is not None:
            if row["copy"] is not None:
                row["to_copy"] = row["out"] / row["copy"]
            if row["peer_gbps"] is not None:
                row["to_peer"] = row["out"] / row["peer_gbps"]
        rows.append(row)
    return rows


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value, digits=3):
    return "–" if value is None else _fmt(value, digits)


def throughput_table(rows):
    """The markdown table of throughput for one dtype.

    Parameters
    ----------
    rows : list of dict
        That dtype's rows from :func:`throughput_rows`.

    Returns
    -------
    str
    """
    header = [
        "operation",
        "size",
        "fastrelu (out=)",
        "fastrelu (allocating)",
        "best peer",
        "copy",
        "copy into fresh memory",
        "ratio to copy",
        "ratio to best peer",
    ]
    cells = []
    for row in rows:
        peer = "–" if row["peer"] is None else f"`{row['peer']}` {_fmt(row['peer_gbps'])}"
        cells.append(
            [
                row["op"],
                _size_label(row["size"]),
                _cell(row["out"]),
                _cell(row["alloc"]),
                peer,
                _cell(row["copy"]),
                _cell(row["copy_fresh"]),
                _cell(row["to_copy"], 2),
                _cell(row["to_peer"], 2),
            ]
        )
    return _table(header, cells)


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


def overhead_table(benchmarks):
    """The markdown table of the median µs per call at small sizes.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.

    Returns
    -------
    str or None
        One row per call and one column per size; ``None`` if the run did
        not measure them.
    """
    calls = _of_suite(benchmarks, "overhead")
    if not calls:
        return None
    sizes = sorted({b["extra_info"]["size"] for b in calls})
    times = defaultdict(dict)
    for bench in calls:
        info = bench["extra_info"]
        times[info["call"]][info["size"]] = bench["stats"]["median"] * 1e6
    cells = [[f"`{call}`"] + [_cell(by_size.get(size)) for size in sizes] for call, by_size in times.items()]
    return _table(["call"] + [f"{_size_label(s)} elements" for s in sizes], cells)


GOALS_NOTE = (
    "The CPU goals of fastrelu's speed issue, each a ratio of two measurements of this run "
    "at the largest size measured (PyTorch's rows need PyTorch installed)."
)

# (what, operation, fastrelu's key, the other's key, "min" or "max", bound):
# a ratio of GB/s, or of times where the other's key names a per-call benchmark.
KERNEL_GOALS = [
    ("relu, `out=`, to the copy", "relu", "fastrelu_out", "copy", "min", 0.85),
    ("relu_backward, `out=`, to the copy", "relu_backward", "fastrelu_out", "copy", "min", 0.85),
    ("relu_backward allocating, to `threshold_backward`", "relu_backward", "fastrelu", "torch", "min", 3.0),
    ("relu_backward allocating, to the copy", "relu_backward", "fastrelu", "copy", "min", 0.6),
    ("softplus allocating, to `F.softplus`", "softplus", "fastrelu", "torch", "min", 3.0),
    ("softplus, `out=`, to `F.softplus`", "softplus", "fastrelu_out", "torch", "min", 3.0),
    (
        "softplus_backward allocating, to `aten.softplus_backward`",
        "softplus_backward",
        "fastrelu",
        "torch",
        "min",
        2.0,
    ),
    (
        "softplus_backward, `out=`, to `aten.softplus_backward`",
        "softplus_backward",
        "fastrelu_out",
        "torch",
        "min",
        2.0,
    ),
]


def goals_table(benchmarks):
    """The markdown table of the goals: measured ratio, bound, met or not.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.

    Returns
    -------
    str or None
        ``None`` if the run measured none of the ratios.
    """
    kernels = {}
    for bench in _of_suite(benchmarks, "kernels"):
        info = bench["extra_info"]
        kernels[info["op"], info["dtype"], info["size"], info["key"]] = _gbps(bench)
    cells = []

    def add(what, ratio, sense, bound):
        met = ratio >= bound if sense == "min" else ratio <= bound
        cells.append(
            [what, _fmt(ratio), ("≥ " if sense == "min" else "≤ ") + _fmt(bound), "yes" if met else "**no**"]
        )

    sizes = sorted({key[2] for key in kernels})
    for dtype in DTYPES:
        for what, op, ours, theirs, sense, bound in KERNEL_GOALS:
            if (
                sizes
                and (op, dtype, sizes[-1], ours) in kernels
                and (op, dtype, sizes[-1], theirs) in kernels
            ):
                a, b = kernels[op, dtype, sizes[-1], ours], kernels[op, dtype, sizes[-1], theirs]
                add(f"{what}, {dtype} {_size_label(sizes[-1])}", a / b, sense, bound)
    calls = {
        (b["extra_info"]["key"], b["extra_info"]["size"]): b["stats"]["median"]
        for b in _of_suite(benchmarks, "overhead")
    }
    if ("fastrelu", 4096) in calls and ("numpy", 4096) in calls:
        add(
            "time of `fastrelu.relu(x)` to `np.maximum(x, 0)`, float32 2**12",
            calls["fastrelu", 4096] / calls["numpy", 4096],
            "max",
            1.5,
        )
    steps = {b["extra_info"]["key"]: b["extra_info"]["seconds"] for b in _of_suite(benchmarks, "startup")}
    if "import" in steps:
        add("`import fastrelu`, seconds", steps["import"], "max", 0.5)
    if "first_call_warm_cache" in steps:
        add("first call in a fresh process, warm cache, seconds", steps["first_call_warm_cache"], "max", 1.0)
    if not cells:
        return None
    return _table(["goal", "measured", "bound", "met"], cells)


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
                _cell(ours),
                _cell(all_threads),
                f"`{found['numpy']['extra_info']['impl']}` {_cell(numpy)}" if numpy else "–",
                _cell(ours / numpy if ours and numpy else None),
                _cell(ours / all_threads if ours and all_threads else None),
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
    return (
        f"Run on {date} UTC: {info.get('cpu_model', 'unknown CPU')}, "
        f"{info.get('logical_cores', '?')} logical cores, fastrelu on "
        f"{info.get('fastrelu_threads', '?')} threads and PyTorch set to the same; {software}."
    )


def plot_throughput(benchmarks, path):
    """Plot GB/s against size, one panel per operation, into a PNG.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` of a pytest-benchmark JSON.
    path : Path
        The PNG to write; its folder is made if missing.

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

    series = defaultdict(dict)  # (op, library, label) -> {dtype: {size: GB/s}}
    for bench in _of_suite(benchmarks, "kernels"):
        info = bench["extra_info"]
        key = (info["op"], info["library"], info["impl"])
        series[key].setdefault(info["dtype"], {})[info["size"]] = _gbps(bench)
    colours = {"fastrelu": ["#d62728", "#ff9896"], "numpy": ["#1f77b4", "#17becf", "#9edae5", "#aec7e8"]}
    colours["torch"] = ["#2ca02c", "#98df8a"]
    colours["copy"] = ["black", "#8c8c8c"]  # the copy, then the copy into fresh memory
    markers = {"fastrelu": "o", "numpy": "s", "torch": "^"}

    fig, axes = plt.subplots(2, 2, figsize=(14, 11), layout="constrained")
    for ax, op in zip(axes.flat, OPERATIONS):
        used = defaultdict(int)
        for (name, library, label), by_dtype in series.items():
            if name != op:
                continue
            palette = colours.get(library, ["#7f7f7f"])
            colour = palette[used[library] % len(palette)]
            used[library] += 1
            legend = label
            for dtype, style in zip(DTYPES, ("-", "--")):
                points = sorted(by_dtype.get(dtype, {}).items())
                if points:
                    xs, ys = zip(*points)
                    ax.plot(
                        xs, ys, style, color=colour, marker=markers.get(library, "."), ms=3.5, label=legend
                    )
                    legend = None  # one legend entry per implementation
        ax.set_title(op)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.suptitle("Throughput against size (GB/s of bytes that must move; solid float32, dashed float64)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


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
    kernels = _of_suite(benchmarks, "kernels")
    options = kernels[0]["options"] if kernels else {}
    runs = data.get("runs", 1)
    over_runs = f", the median over {runs} runs of the suite of each run's median" if runs > 1 else ""
    parts = [
        "Generated by `python bench/run.py` (`bench/render.py`); do not edit by hand.",
        machine_summary(data),
        "Throughput in GB/s of the bytes that must move: the forward passes read `x` "
        "and write the result, the backward passes read `x` and `grad` and write the "
        f"result. Each number divides those bytes by the median time of a call{over_runs} "
        f"(pytest-benchmark: at least {options.get('min_rounds', '?')} rounds and up to "
        f"{options.get('max_time', '?')} s of them per implementation), inputs standard normal. "
        "*copy* is `np.copyto` moving as many bytes as the operation (n elements for a "
        "forward pass, 1.5 n for a backward pass), split over threads as fastrelu splits `relu`; "
        "*copy into fresh memory* is the same copy into a new `np.empty`, whose pages the "
        "operating system must map and zero on first touch, as for every allocating call. "
        "NumPy runs on one thread, fastrelu and PyTorch split large arrays across theirs. "
        "*best peer* is the fastest NumPy or "
        "PyTorch implementation of the group, allocating or not; both ratios are "
        "those of fastrelu with `out=`. PyTorch's softplus and its gradient return `x` "
        "and `grad` where `x > 20`, which standard normal inputs never reach.",
    ]
    goals = goals_table(benchmarks)
    if goals:
        parts += ["### The goals", GOALS_NOTE, goals]
    rows = throughput_rows(benchmarks)
    for dtype in sorted({row["dtype"] for row in rows}, key=lambda d: (d not in DTYPES, d)):
        parts += [f"### {dtype}", throughput_table([row for row in rows if row["dtype"] == dtype])]
    if rows:
        parts.append(plot)
        impls = defaultdict(list)
        for bench in kernels:
            info = bench["extra_info"]
            if info["impl"] not in impls[info["op"]]:
                impls[info["op"]].append(info["impl"])
        parts.append(
            "Implementations timed:\n\n"
            + "\n".join(
                f"- {op}: " + ", ".join(f"`{label}`" for label in labels) for op, labels in impls.items()
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
    overhead = overhead_table(benchmarks)
    if overhead:
        parts += ["### Per-call cost, float32", "Median µs per call, in one process.", overhead]
    dask = dask_table(benchmarks)
    if dask:
        parts += ["### Dask", DASK_NOTE, dask]
    return "\n\n".join(parts)


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
        The first run, with each benchmark's median replaced by the median
        of its medians over the runs, the samples of the start-up steps
        pooled, and ``"runs"`` set to the number of runs.
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
    drawn = plot and plot_throughput(data["benchmarks"], image)
    if drawn:
        link = Path(os.path.relpath(image, output.parent)).as_posix()
        line = f"![GB/s against size, per operation and implementation]({link})"
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
