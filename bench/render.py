"""Render the benchmark suite's results into docs/performance.md.

    python bench/render.py [RESULTS.json ...] [--record FILE] [--output PAGE] [--no-plot]

With RESULTS (JSON written by ``pytest --benchmark-json`` for ``bench/``;
several runs pool their samples), first condense them into the record
``docs/data/bench-suite.json``: per implementation the quartiles of its time
per call, per start-up step its samples, per Dask graph its median.  Then
write the tables rendered from the record between the markers
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` of the page, and the plot
of fastrelu's speed-ups next to it.  Without RESULTS, render the record
already there.  The page's prose says how to read the tables.
"""

import argparse
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
ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "data" / "bench-suite.json"
PAGE = ROOT / "docs" / "performance.md"
PLOT_NAME = "bench-ratios.png"
OPERATIONS = tuple(KERNELS)
DTYPES = ("float32", "float64")

# Comparison -> (fastrelu's implementation, the peer library, whether the
# peer allocates); the fastest implementation of that library and form is
# the peer.
COMPARISONS = {
    "torch_out": ("fastrelu_out", "torch", False),
    "numpy_out": ("fastrelu_out", "numpy", False),
    "copy_out": ("fastrelu_out", "copy", False),
    "torch": ("fastrelu", "torch", True),
    "numpy": ("fastrelu", "numpy", True),
    "copy": ("fastrelu", "copy", True),
}
# The overview's and the plot's columns: comparison -> (heading, colour).
PEERS = {
    "torch_out": ("PyTorch, `out=`", "#2ca02c"),
    "torch": ("PyTorch, allocating", "#98df8a"),
    "numpy_out": ("NumPy, `out=`", "#1f77b4"),
    "numpy": ("NumPy, allocating", "#aec7e8"),
}


def condense(runs, command):
    """The record of one or more pytest-benchmark JSONs of the suite (loaded)."""
    info = runs[0].get("machine_info", {}).get("fastrelu_bench", {})
    record = {
        "command": command,
        "date": runs[0].get("datetime", "")[:16].replace("T", " "),
        "machine": info,
        "runs": len(runs),
        "kernels": [],
        "startup": [],
        "dask": [],
    }
    pooled = defaultdict(list)
    for run in runs:
        for bench in run["benchmarks"]:
            pooled[bench["fullname"]].append(bench)
    for found in pooled.values():
        extra = found[0]["extra_info"]
        suite = extra.get("suite")
        if suite == "kernels":
            record["kernels"].append(group_row(found))
        elif suite == "startup":
            samples = [t for b in found for t in b["extra_info"]["samples"]]
            record["startup"].append({"step": extra["step"], "samples": samples})
        elif suite == "mask":
            impls = {}
            for key, impl in extra["implementations"].items():
                samples = [t for b in found for t in b["extra_info"]["implementations"][key]["samples"]]
                impls[key] = {"label": impl["label"], "bytes": impl["bytes"], "quartiles": quartiles(samples)}
            record.setdefault("mask", []).append(
                {**{k: extra[k] for k in ("op", "dtype", "size")}, "implementations": impls}
            )
        elif suite == "dask":
            fields = {k: extra[k] for k in ("op", "scheduler", "size", "chunk", "key", "impl", "bytes")}
            median = statistics.median(b["stats"]["median"] for b in found)
            record["dask"].append({**fields, "median": median})
    rank = {op: i for i, op in enumerate(OPERATIONS)}
    record["kernels"].sort(key=lambda r: (rank.get(r["op"], len(rank)), r["op"], r["dtype"], r["size"]))
    return record


def group_row(runs):
    """A row of the record: one group of implementations (the same benchmark
    in one or more *runs*), each with the quartiles of its pooled samples."""
    extra = runs[0]["extra_info"]
    impls = {}
    for key, impl in extra["implementations"].items():
        samples = [t for b in runs for t in b["extra_info"]["implementations"][key]["samples"]]
        impls[key] = {k: impl[k] for k in ("label", "library", "allocates")}
        impls[key]["quartiles"] = quartiles(samples)
    return {**{k: extra[k] for k in ("op", "dtype", "size", "bytes")}, "implementations": impls}


def _rounded(value):
    """*value* with its floats rounded to 6 significant digits, more than the tables show."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def fmt(value, digits=3):
    """*value* in fixed point to *digits* significant digits."""
    if not math.isfinite(value) or value <= 0:
        return str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def size_label(size):
    """``2**12`` (a code span, so that Markdown shows it as written) for 4096."""
    exponent = size.bit_length() - 1
    return f"`2**{exponent}`" if size == 1 << exponent else str(size)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def ratios(row, comparisons=COMPARISONS):
    """Comparison -> the peer's median time over fastrelu's, for a row of the record."""
    impls, found = row["implementations"], {}
    for name, (ours, library, allocates) in comparisons.items():
        peers = [i for i in impls.values() if i["library"] == library and i["allocates"] == allocates]
        if ours in impls and peers:
            found[name] = min(p["quartiles"][1] for p in peers) / impls[ours]["quartiles"][1]
    return found


def spread(row, comparisons=COMPARISONS):
    """The largest half interquartile range, over its median, of the implementations compared."""
    impls = row["implementations"]
    compared = {ours for ours, _, _ in comparisons.values() if ours in impls}
    for _, library, allocates in comparisons.values():
        peers = [k for k, i in impls.items() if i["library"] == library and i["allocates"] == allocates]
        if peers:
            compared.add(min(peers, key=lambda k: impls[k]["quartiles"][1]))
    return max(((q3 - q1) / 2 / m for q1, m, q3 in (impls[k]["quartiles"] for k in compared)), default=0.0)


def ratio_cell(value, bold_below_one=True):
    if value is None:
        return "–"
    return f"**{fmt(value)}**" if bold_below_one and value < 1 else fmt(value)


def _microseconds(row, key):
    if key not in row["implementations"]:
        return "–"
    q1, median, q3 = (t * 1e6 for t in row["implementations"][key]["quartiles"])
    return f"{fmt(median)} ({fmt(q1)}–{fmt(q3)})"


def operation_table(rows):
    cells = []
    for row in rows:
        r = ratios(row)
        cells.append(
            [
                size_label(row["size"]),
                _microseconds(row, "fastrelu_out"),
                ratio_cell(r.get("torch_out")),
                ratio_cell(r.get("numpy_out")),
                ratio_cell(r.get("copy_out"), bold_below_one=False),
                _microseconds(row, "fastrelu"),
                ratio_cell(r.get("torch")),
                ratio_cell(r.get("numpy")),
                f"{spread(row):.0%}",
            ]
        )
    ratio_headers = ["× PyTorch", "× NumPy"]
    header = ["size", "`out=` µs", *ratio_headers, "× copy", "allocating µs", *ratio_headers, "±"]
    return table(header, cells)


def overview_table(rows):
    """The lowest ratio against each peer over the sizes, and where, per operation and dtype."""
    lowest = defaultdict(dict)
    for row in rows:
        for name, value in ratios(row).items():
            best = lowest[row["op"], row["dtype"]].get(name)
            if name in PEERS and (best is None or value < best[0]):
                lowest[row["op"], row["dtype"]][name] = (value, row["size"])
    cells = []
    for (op, dtype), found in lowest.items():
        line = [f"{op}, {dtype}"]
        for name in PEERS:
            value, size = found.get(name, (None, None))
            text = "–" if value is None else f"{fmt(value)} at {size_label(size)}"
            line.append(f"**{text}**" if value is not None and value < 1 else text)
        cells.append(line)
    return table(["operation, dtype", *(heading for heading, _ in PEERS.values())], cells)


def startup_table(steps):
    cells = [
        [s["step"], fmt(statistics.median(s["samples"])), fmt(min(s["samples"])), fmt(max(s["samples"]))]
        + [str(len(s["samples"]))]
        for s in steps
    ]
    return table(["step (fresh process)", "median s", "min s", "max s", "runs"], cells)


def dask_table(graphs):
    groups = defaultdict(dict)
    for graph in graphs:
        groups[graph["op"], graph["scheduler"], graph["size"], graph["chunk"]][graph["key"]] = graph
    cells = []
    for (_, scheduler, size, chunk), found in sorted(groups.items(), key=lambda item: item[0][:2]):
        gbps = {key: g["bytes"] / g["median"] / 1e9 for key, g in found.items()}
        ours, wide, numpy = (gbps.get(k) for k in ("fastrelu", "fastrelu_all_threads", "numpy"))
        cells.append(
            [
                f"`{found.get('fastrelu', next(iter(found.values())))['impl']}`",
                scheduler,
                f"{size_label(size)} in {size_label(chunk)}",
                fmt(ours) if ours else "–",
                fmt(wide) if wide else "–",
                f"`{found['numpy']['impl']}` {fmt(numpy)}" if numpy else "–",
                fmt(ours / numpy) if ours and numpy else "–",
                fmt(ours / wide) if ours and wide else "–",
            ]
        )
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
    return table(header, cells)


def machine_summary(record):
    info = record["machine"]
    versions = info.get("versions", {})
    names = dict(python="Python", fastrelu="fastrelu", numpy="NumPy", numba="Numba", torch="PyTorch")
    software = ", ".join(f"{name} {versions.get(key) or 'not installed'}" for key, name in names.items())
    runs = record["runs"]
    pooled = f" The suite ran {runs} times; each implementation's samples are pooled." if runs > 1 else ""
    return (
        f"Run on {record['date'] or 'an unknown date'} UTC: {info.get('cpu_model', 'unknown CPU')}, "
        f"{info.get('logical_cores', '?')} logical cores, fastrelu on {info.get('fastrelu_threads', '?')} "
        f"threads and PyTorch set to the same; {software}.{pooled}"
    )


def plot_ratios(rows, path, lines=None, comparisons=COMPARISONS):
    """Draw fastrelu's speed-ups against size, a panel per operation and dtype,
    a line per comparison of *lines* (name -> label and colour; by default the
    peers and the copy); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ops = list(dict.fromkeys(r["op"] for r in rows))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    fig, axes = plt.subplots(
        len(dtypes), len(ops), figsize=(4 * len(ops), 3.6 * len(dtypes)), squeeze=False, layout="constrained"
    )
    if lines is None:
        lines = {name: (heading.replace("`", ""), colour) for name, (heading, colour) in PEERS.items()}
        lines["copy_out"] = ("copy, out=", "black")
    for i, dtype in enumerate(dtypes):
        for j, op in enumerate(ops):
            ax = axes[i][j]
            mine = [(r["size"], ratios(r, comparisons)) for r in rows if (r["op"], r["dtype"]) == (op, dtype)]
            for name, (label, colour) in lines.items():
                points = [(size, found[name]) for size, found in mine if name in found]
                if points:
                    style = "--" if name == "copy_out" else "-"
                    ax.plot(*zip(*points), style, color=colour, marker="o", ms=3, label=label)
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


def section(record, plot_line, source=RECORD):
    """The Markdown between the markers: the tables of *record*, read from *source*."""
    rows = record["kernels"]
    source = Path(os.path.relpath(source, ROOT)).as_posix()
    parts = [f"Generated by `{record['command']}` (kept in `{source}`).", machine_summary(record)]
    if rows:
        parts += ["### At every size", overview_table(rows), plot_line, "### By operation"]
        for op, dtype in dict.fromkeys((r["op"], r["dtype"]) for r in rows):
            mine = [r for r in rows if (r["op"], r["dtype"]) == (op, dtype)]
            parts += [f"#### {op}, {dtype}", operation_table(mine)]
        labels = defaultdict(dict)
        for row in rows:
            labels[row["op"]].update(dict.fromkeys(i["label"] for i in row["implementations"].values()))
        listed = (f"- {op}: " + ", ".join(f"`{label}`" for label in found) for op, found in labels.items())
        parts.append("Implementations timed:\n\n" + "\n".join(listed))
    if record["startup"]:
        parts += ["### Import and first call", startup_table(record["startup"])]
    if record["dask"]:
        parts += ["### Dask", dask_table(record["dask"])]
    if record.get("mask"):
        parts += ["### Keeping a mask", mask_table(record["mask"])]
    return "\n\n".join(parts)


def mask_table(rows):
    """ReLU with its mask against ReLU alone: median times, GB/s of the bytes
    each moves, and the ratio of the times."""
    body = []
    order = {"relu": 0, "relu_backward": 1}
    for row in sorted(rows, key=lambda r: (order.get(r["op"], 2), r["dtype"], r["size"])):
        plain, mask = row["implementations"]["plain"], row["implementations"]["mask"]
        cells = []
        for impl in (plain, mask):
            median = impl["quartiles"][1]
            cells += [fmt(median * 1e6), fmt(impl["bytes"] / median / 1e9)]
        ratio = mask["quartiles"][1] / plain["quartiles"][1]
        body.append([f"`{mask['label']}`", row["dtype"], size_label(row["size"]), *cells, fmt(ratio)])
    header = ["with the mask", "dtype", "size", "without, µs", "GB/s", "with, µs", "GB/s", "with / without"]
    return table(header, body)


def replace_section(text, body):
    """*text* with what lies between its markers replaced by *body*; ValueError without markers.

    >>> print(replace_section("Before <!-- bench:begin --> old <!-- bench:end --> after", "new"))
    Before <!-- bench:begin -->
    new
    <!-- bench:end --> after
    """
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"the page has no {BEGIN} ... {END} markers")
    return text[: start + len(BEGIN)] + "\n" + body + "\n" + text[stop:]


def render(record, output, img_dir=None, plot=True, source=RECORD):
    """Write *record*'s tables into the page *output*, and its plot; return the plot's path or None."""
    output = Path(output)
    text = output.read_text()
    replace_section(text, "")  # no markers: fail before drawing anything
    image = (output.parent / "img" if img_dir is None else Path(img_dir)) / PLOT_NAME
    drawn = plot and bool(record["kernels"]) and plot_ratios(record["kernels"], image)
    if drawn:
        link = Path(os.path.relpath(image, output.parent)).as_posix()
        line = f"![fastrelu's speed-up over PyTorch, NumPy and a copy, against size]({link})"
    elif not record["kernels"]:
        line = "(No plot: the run measured no kernels.)"
    else:
        line = "(Plot skipped: matplotlib is not installed.)" if plot else "(Plot skipped: --no-plot.)"
    output.write_text(replace_section(text, section(record, line, source)))
    return image if drawn else None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render the benchmark suite's results into a Markdown page.")
    parser.add_argument("json", nargs="*", help="files written by pytest --benchmark-json (default: none)")
    parser.add_argument("--record", type=Path, help="default: data/bench-suite.json next to the page")
    parser.add_argument("--output", type=Path, default=PAGE, help=f"default: {PAGE.relative_to(ROOT)}")
    parser.add_argument("--img-dir", help="where the plot goes (default: img/ next to the page)")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only")
    parser.add_argument("--command", default="python bench/render.py", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.record is None:
        args.record = args.output.parent / RECORD.relative_to(PAGE.parent)
    try:
        replace_section(args.output.read_text(), "")  # no markers: fail before writing anything
        if args.json:
            runs = [json.loads(Path(path).read_text()) for path in args.json]
            record = _rounded(condense(runs, args.command))
            args.record.parent.mkdir(parents=True, exist_ok=True)
            args.record.write_text(json.dumps(record, indent=1) + "\n")
        else:
            record = json.loads(args.record.read_text())
        image = render(record, args.output, args.img_dir, not args.no_plot, args.record)
    except (OSError, ValueError, KeyError) as exc:
        parser.exit(1, f"render.py: error: {exc!s}\n")
    print(f"wrote {args.output}" + (f" and {image}" if image else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
