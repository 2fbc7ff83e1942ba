"""The Python half of ``bench/gpu_check.sh``: finding the GPU, the CPU
thread scaling, and the tables of the GPU benchmark group.

    python bench/gpu_check.py detect                  # "GPU: ..." (exit 0) or "no GPU: ..." (exit 3)
    python bench/gpu_check.py threads THREADS.json    # time the CPU kernels on 1, 2, 4, ... threads
    python bench/gpu_check.py report BENCH.json [--plot PNG]
    python bench/gpu_check.py budget FOLDER [--limit 8]

``threads`` times fastrelu's four kernels on ``2**FASTRELU_CHECK_SIZE``
float32 elements (default ``2**26``) with each number of threads of
``FASTRELU_CHECK_THREADS`` (default ``1,2,4,8,16``), next to a copy of as
many bytes on the same threads (``fastrelu._throughput.parallel_copy``), in
interleaved rounds (``fastrelu._throughput.measure``); it writes the JSON and
prints GB/s and the ratio to the copy.  ``report`` prints the GPU group's
tables (``bench/test_gpu.py``): GB/s and ratios to the copy, PyTorch and CuPy
per operation, dtype and size, and the time of one call at ``2**12``
elements; with ``--plot``, it draws the ratios against size.  ``budget``
fails when a folder holds more files than the limit.  Nothing here imports
Dask, and ``detect`` imports no GPU library beyond Numba's CUDA support.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from render import fmt, group_row, plot_ratios, ratio_cell, ratios, size_label, spread, table

from fastrelu._table import KERNELS

THREAD_EXPONENT = 26
THREAD_COUNTS = (1, 2, 4, 8, 16)
ROUNDS = 5
FILE_LIMIT = 8
SMALL_CALL = 2**12

OPERATIONS = tuple(KERNELS)
GPU_DTYPES = ("float16", "float32", "float64")  # the order of the tables and the plot

# The GPU group's comparisons, in the form of render.COMPARISONS: every one
# against fastrelu writing into a preallocated output.
GPU_COMPARISONS = {
    "copy_out": ("fastrelu_out", "copy", False),
    "torch_out": ("fastrelu_out", "torch", False),
    "torch": ("fastrelu_out", "torch", True),
    "cupy_out": ("fastrelu_out", "cupy", False),
}
GPU_LINES = {
    "torch_out": ("PyTorch, out=", "#2ca02c"),
    "torch": ("PyTorch, allocating", "#98df8a"),
    "cupy_out": ("CuPy, out=", "#9467bd"),
    "copy_out": ("device-to-device copy", "black"),
}


def gpu_missing():
    """Why no real GPU can run fastrelu's kernels here, or None if one can.

    Returns
    -------
    str or None
        The reason, in the words of ``fastrelu info``; Numba's CUDA
        simulator counts as no GPU.
    """
    from fastrelu._cli import _cuda_device

    state, _, words = _cuda_device().partition(": ")
    if state != "usable":
        return words
    from numba import config

    return words if config.ENABLE_CUDASIM else None


def gpu_name():
    """The GPU in use and its compute capability, as ``fastrelu info`` says."""
    from fastrelu._cli import _cuda_device

    return _cuda_device().partition(": ")[2]


def environment_exponent(name, default):
    """An exponent of 2 in [0, 30] from the environment variable *name*, or *default*."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) > 30:
        raise ValueError(f"{name} must be an exponent of 2 from 0 to 30, like 26; got {text!r}")
    return int(text)


def environment_counts(name, default):
    """Positive integers, from a comma-separated environment variable *name*, or *default*."""
    text = os.environ.get(name, "").strip()
    if not text:
        return list(default)
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f"{name} must list positive integers, like 1,2,4; got {text!r}")
    return [int(part) for part in parts]


def thread_scaling(size, thread_counts, rounds=ROUNDS):
    """Time the four kernels on the CPU with each number of threads.

    Parameters
    ----------
    size : int
        float32 elements per array.
    thread_counts : sequence of int
        The numbers of threads, in the order timed.
    rounds : int, default 5
        Interleaved rounds per kernel and number of threads.

    Returns
    -------
    dict
        ``size``, ``dtype``, ``rounds``, ``cpu``, ``logical_cores``, and
        ``rows``: per number of threads and operation, ``threads``, ``op``,
        ``gbps`` (fastrelu's), ``copy_gbps`` (the copy of as many bytes on
        as many threads), ``spread`` (half the interquartile range of
        fastrelu's times over their median).
    """
    from fastrelu._throughput import cpu_model, measure

    _, rows = measure(size, "float32", repeat=rounds, compare=False, threads=thread_counts)
    return {
        "size": size,
        "dtype": "float32",
        "rounds": rounds,
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "rows": [
            {
                "threads": row["threads"],
                "op": row["op"],
                "gbps": row["fastrelu"],
                "copy_gbps": row["copy"],
                "spread": row["spread"],
            }
            for row in rows
        ],
    }


def thread_table(result):
    """The markdown table of :func:`thread_scaling`'s result.

    A row per number of threads; per operation, fastrelu's GB/s and, in
    parentheses, that over the copy's GB/s; last, the copy's GB/s for a
    forward pass (n elements) and a backward pass (1.5 n).

    Parameters
    ----------
    result : dict
        From :func:`thread_scaling`.

    Returns
    -------
    str
    """
    cells = {(row["threads"], row["op"]): row for row in result["rows"]}
    counts = list(dict.fromkeys(row["threads"] for row in result["rows"]))
    ops = [op for op in OPERATIONS if any(row["op"] == op for row in result["rows"])]
    forward = next((op for op in ops if len(KERNELS[op].operands) == 1), None)
    backward = next((op for op in ops if len(KERNELS[op].operands) == 2), None)
    lines = []
    for count in counts:
        line = [str(count)]
        for op in ops:
            row = cells.get((count, op))
            line.append(f"{fmt(row['gbps'])} ({fmt(row['gbps'] / row['copy_gbps'])})" if row else "–")
        for op in (forward, backward):
            row = cells.get((count, op))
            line.append(fmt(row["copy_gbps"]) if row else "–")
        lines.append(line)
    return table(["threads", *ops, "copy, n", "copy, 1.5 n"], lines)


def gpu_rows(benchmarks):
    """The GPU group's rows (``render.group_rows`` with :data:`GPU_COMPARISONS`),
    by operation, then dtype (:data:`GPU_DTYPES`), then size."""
    rows = [group_row([b]) for b in benchmarks if b.get("extra_info", {}).get("suite") == "gpu"]

    def order(row):
        dtype = GPU_DTYPES.index(row["dtype"]) if row["dtype"] in GPU_DTYPES else len(GPU_DTYPES)
        return OPERATIONS.index(row["op"]), dtype, row["size"]

    return sorted(rows, key=order)


def _gbps(row, key):
    """GB/s of implementation *key* in *row*: the bytes that must move over its median time per call."""
    if key not in row["implementations"]:
        return "–"
    return fmt(row["bytes"] / row["implementations"][key]["quartiles"][1] / 1e9)


def gpu_table(rows):
    """The markdown table of one operation and dtype on the GPU, a row per size.

    fastrelu's and the copy's GB/s (bytes that must move over the median
    time per call), then ratios of median times: a peer's over fastrelu's (above 1,
    fastrelu is faster; bold below 1), and the copy's over fastrelu's (the
    fraction of the copy's speed); ``±`` is the largest half interquartile range over
    the median among the implementations compared.

    Parameters
    ----------
    rows : list of dict
        That operation's and dtype's rows from :func:`gpu_rows`.

    Returns
    -------
    str
    """
    header = ["size", "fastrelu GB/s", "copy GB/s", "× copy", "× PyTorch `out=`", "× PyTorch allocating"]
    header += ["× CuPy", "±"]
    cells = []
    for row in rows:
        found = ratios(row, GPU_COMPARISONS)
        cells.append(
            [size_label(row["size"]), _gbps(row, "fastrelu_out"), _gbps(row, "copy_out")]
            + [ratio_cell(found.get("copy_out"), bold_below_one=False)]
            + [ratio_cell(found.get(name)) for name in ("torch_out", "torch", "cupy_out")]
            + [f"{spread(row, GPU_COMPARISONS):.0%}"]
        )
    return table(header, cells)


# The columns of the table of small calls: implementation key -> heading.
SMALL_CALL_COLUMNS = {
    "fastrelu_out": "fastrelu, PyTorch tensors",
    "fastrelu_cupy_out": "fastrelu, CuPy arrays",
    "torch_out": "PyTorch `out=`",
    "torch": "PyTorch allocating",
    "cupy_out": "CuPy",
    "copy_out": "copy",
}


def small_call_table(rows, size=SMALL_CALL):
    """The markdown table of the median time of one call, in µs, at *size*
    elements: a row per operation and dtype, a column per implementation,
    and PyTorch's ``out=`` time over fastrelu's.

    Parameters
    ----------
    rows : list of dict
        From :func:`gpu_rows`.
    size : int, default 2**12

    Returns
    -------
    str or None
        None if no row has that size.
    """
    cells = []
    for row in rows:
        if row["size"] != size:
            continue
        impls = row["implementations"]
        line = [f"{row['op']}, {row['dtype']}"]
        line += [fmt(impls[k]["quartiles"][1] * 1e6) if k in impls else "–" for k in SMALL_CALL_COLUMNS]
        line.append(ratio_cell(ratios(row, GPU_COMPARISONS).get("torch_out")))
        cells.append(line)
    if not cells:
        return None
    return table(["operation, dtype", *SMALL_CALL_COLUMNS.values(), "× PyTorch `out=`"], cells)


def report(data):
    """The text that ``report`` prints for a pytest-benchmark JSON of the GPU group."""
    benchmarks = data["benchmarks"]
    rows = gpu_rows(benchmarks)
    if not rows:
        return "No GPU benchmark in the results (bench/test_gpu.py skipped or failed)."
    info = next(b["extra_info"] for b in benchmarks if b.get("extra_info", {}).get("suite") == "gpu")
    parts = [
        f"GPU: {info.get('gpu', 'unknown')}; samples timed by {info.get('timer', 'unknown')}, "
        f"{len(rows)} groups. GB/s: bytes that must move over fastrelu's median time per call "
        "(out=, PyTorch tensors where installed). × peer: the peer's median time over fastrelu's "
        "(above 1: fastrelu is faster); × copy: the fraction of a device-to-device copy's speed."
    ]
    for op in dict.fromkeys(r["op"] for r in rows):
        for dtype in dict.fromkeys(r["dtype"] for r in rows if r["op"] == op):
            parts += [f"{op}, {dtype}", gpu_table([r for r in rows if r["op"] == op and r["dtype"] == dtype])]
    small = small_call_table(rows)
    if small:
        parts += [f"Median time of one call at {size_label(SMALL_CALL)} elements, µs", small]
    dropped = sorted(
        {
            f"{key}: {why}"
            for b in benchmarks
            for key, why in b.get("extra_info", {}).get("dropped", {}).items()
        }
    )
    if dropped:
        parts += ["Implementations left out where they failed:", "\n".join(dropped)]
    return "\n\n".join(parts)


def files_over_limit(folder, limit=FILE_LIMIT):
    """The files under *folder* (at any depth), sorted, if there are more than *limit*; else []."""
    files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
    return files if len(files) > limit else []


def main(argv=None):
    """Run one subcommand (see the module's docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("detect", help="say whether a real GPU can run fastrelu's kernels")
    p = sub.add_parser("threads", help="CPU thread scaling, into a JSON file")
    p.add_argument("json", type=Path)
    p = sub.add_parser("report", help="the GPU group's tables, from its pytest-benchmark JSON")
    p.add_argument("json", type=Path)
    p.add_argument("--plot", type=Path, help="also draw the ratios into this PNG")
    p = sub.add_parser("budget", help="fail if a folder holds more files than the limit")
    p.add_argument("folder", type=Path)
    p.add_argument("--limit", type=int, default=FILE_LIMIT)
    args = parser.parse_args(argv)

    if args.command == "detect":
        reason = gpu_missing()
        print(f"no GPU: {reason}" if reason else f"GPU: {gpu_name()}")
        return 3 if reason else 0
    if args.command == "threads":
        size = 2 ** environment_exponent("FASTRELU_CHECK_SIZE", THREAD_EXPONENT)
        counts = environment_counts("FASTRELU_CHECK_THREADS", THREAD_COUNTS)
        print(
            f"fastrelu on {size_label(size)} float32 elements with {', '.join(map(str, counts))} "
            f"threads, {ROUNDS} interleaved rounds each (CPU with {os.cpu_count()} logical cores)",
            flush=True,
        )
        result = thread_scaling(size, counts)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nGB/s (× copy) on {result['cpu']}\n\n{thread_table(result)}")
        return 0
    if args.command == "report":
        data = json.loads(args.json.read_text())
        print(report(data))
        rows = gpu_rows(data["benchmarks"])
        if rows and args.plot:
            drawn = plot_ratios(rows, args.plot, lines=GPU_LINES, comparisons=GPU_COMPARISONS)
            print(f"\nPlot: {args.plot}" if drawn else "\nNo plot: matplotlib is not installed.")
        return 0 if rows else 1
    extra = files_over_limit(args.folder, args.limit)
    if extra:
        print(f"{args.folder} holds {len(extra)} files, more than {args.limit}: {', '.join(extra)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
