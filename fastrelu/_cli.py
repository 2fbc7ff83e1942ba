"""The command line: ``fastrelu info``, ``fastrelu bench``, ``fastrelu demo``,
``fastrelu study`` (also ``python -m fastrelu ...``)."""

import argparse
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not usage and a line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _size(text):
    """An element count: 16777216, 2**24 or 1.6e7."""
    base, _, exponent = text.partition("**")
    try:
        if exponent:
            value = int(base) ** int(exponent) if len(exponent) <= 3 else 0
        elif "e" in base.lower():
            number = float(base)
            value = int(number) if number.is_integer() else 0
        else:
            value = int(base)
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number of elements like 16777216, 2**24 or 1.6e7, got {text!r}"
        )
    return value


def _available_memory():
    """Bytes of memory this machine can give without swapping (Linux's
    MemAvailable), or None where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# Arrays of the bench's size that `fastrelu bench` holds at once on the host
# (x and grad, the copy's source and destination, two each, the outputs and
# the peers'): its peak memory was 9.4 of them beyond Python's own.
BENCH_ARRAYS = 10


def _bench_fits(size, dtype):
    """None, or why *size* elements of *dtype* do not fit in memory."""
    available = _available_memory()
    per_element = BENCH_ARRAYS * np.dtype(dtype).itemsize
    needed = size * per_element
    if available is None or needed <= available:
        return None
    fits = available // per_element
    return (
        f"--size {size} needs about {needed / 2**30:.3g} GiB for {BENCH_ARRAYS} arrays of {dtype}, "
        f"but {available / 2**30:.3g} GiB of memory is available; "
        f"at most about 2**{int(fits).bit_length() - 1} elements fit"
    )


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _progress(**kwargs):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, delay=0.2, **kwargs)


def _cuda_device():
    """The name and compute capability of the GPU in use, or why there is none."""
    import fastrelu

    if not fastrelu.cuda_available():
        if _version("numba-cuda") == "not installed":
            return "not usable: numba-cuda is not installed (pip install 'fastrelu[cuda]')"
        return "not usable: no CUDA driver or GPU found"
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return "usable: Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), no real GPU"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    major, minor = device.compute_capability
    return f"usable: {name}, compute capability {major}.{minor}"


def _cache_location():
    """Where Numba keeps fastrelu's compiled kernels, without compiling any."""
    from . import _kernels

    path = _kernels.cache_location()
    if path is None:
        return "none: kernels are compiled in memory in each process (FASTRELU_CACHE=0 or no writable folder)"
    return path


def info(args):
    """Print versions, threads, CUDA and the kernel cache."""
    import fastrelu

    from ._throughput import cpu_model

    rows = [
        ("fastrelu", fastrelu.__version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("NumPy", np.__version__),
        ("Numba", _version("numba")),
        ("numba-cuda", _version("numba-cuda")),
        ("Dask", _version("dask")),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores"),
        (
            "threads",
            f"{fastrelu.get_num_threads()} for large arrays, in fastrelu's own thread pool "
            "(workers waiting in compiled code; Numba's threading layer is not used)",
        ),
        ("CUDA", _cuda_device()),
        ("kernel cache", _cache_location()),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def bench(args):
    """Time the four kernels against NumPy (and PyTorch) and print a table."""
    import fastrelu

    from ._throughput import cpu_model, format_table, measure

    if args.device == "cuda" and not fastrelu.cuda_available():
        print("fastrelu bench: error: --device cuda, but no usable CUDA GPU was found", file=sys.stderr)
        return 1
    why = _bench_fits(args.size, args.dtype)
    if why:
        print(f"fastrelu bench: error: {why}", file=sys.stderr)
        return 1
    if args.threads:
        fastrelu.set_num_threads(args.threads)
    where = cpu_model() if args.device == "cpu" else _cuda_device().partition(": ")[2]
    print(
        f"fastrelu {fastrelu.__version__}, NumPy {np.__version__}, Python {platform.python_version()}\n"
        f"{where}; fastrelu threads: {fastrelu.get_num_threads()}\n"
        f"{args.size} elements of {args.dtype} on {args.device}, preallocated outputs; each "
        f"implementation warmed up, then timed in {args.repeat} interleaved rounds\n",
        flush=True,
    )
    with _progress(desc="timing", unit="kernel") as bar:
        peers, rows = measure(args.size, args.dtype, args.repeat, device=args.device, progress=bar)
    print(format_table(peers, rows))
    print(
        "\nGB/s of the bytes that must move (forward: read x, write y; backward: read x and grad, "
        "write the result), from the median time of a call.\n±: half the interquartile range of "
        "fastrelu's times over their median. ratio: fastrelu's GB/s over the column to its left.\n"
        "copy: a copy of as many bytes by fastrelu's entries and threads, the ceiling of a kernel "
        "that moves its bytes and computes nothing."
    )
    return 0


def demo(args):
    """Train the demo's networks, print the table and write the figure."""
    from . import _demo

    path = None if args.no_plot else Path(args.output)
    if path is not None:
        why = _unwritable(path)
        if why:
            print(f"fastrelu demo: error: cannot write the figure to {path}: {why}", file=sys.stderr)
            return 1
    runs = len(_demo.TASKS) * len(_demo.RUNS)
    print(
        f"Training a {_demo.FEATURES}-{_demo.HIDDEN}-{_demo.HIDDEN}-{_demo.CLASSES} perceptron "
        f"with fastrelu's activations: {runs} runs of {args.epochs} epochs, seed {args.seed}.\n",
        flush=True,
    )
    with _progress(total=runs * args.epochs, desc="training", unit="epoch") as bar:
        results = _demo.run_all(seed=args.seed, epochs=args.epochs, progress=lambda: bar.update(1))
    print(_demo.format_results(results))
    print()
    print(_demo.summary(results))
    if args.no_plot:
        return 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("\nNo figure: matplotlib is not installed (pip install 'fastrelu[plot]').")
        return 0
    _demo.plot(results, path)
    print(f"\nLoss curves written to {path.resolve()}")
    return 0


def study(args):
    """Measure how often ReLU'(0) changes backpropagation and training on the
    digits data, print the tables and draw the sweeps."""
    from . import _study

    try:
        data = _study.load_digits()
    except ImportError as error:
        print(f"fastrelu study: error: {error}", file=sys.stderr)
        return 1
    sweeps = tuple(dict.fromkeys(args.sweep or ()))
    path = None if args.no_plot or not sweeps else Path(args.output)
    if path is not None:
        why = _unwritable(path)
        if why:
            print(f"fastrelu study: error: cannot write the figure to {path}: {why}", file=sys.stderr)
            return 1
    if args.quick:
        plan = _study.Plan.quick(args.inits, sweeps, args.seed)
    else:
        plan = _study.Plan(args.inits or _study.Plan.inits, sweeps, seed=args.seed)
    print(_study.introduction(plan) + "\n", flush=True)
    with _progress(total=plan.steps(), desc="training", unit="run") as bar:
        results = _study.run(plan, data, progress=lambda: bar.update(1))
    print(_study.report(plan, *results))
    if path is None:
        return 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("\nNo figure: matplotlib is not installed (pip install 'fastrelu[study]').")
        return 0
    _study.plot(results[1], path)
    print(f"\nFigure written to {path}")
    return 0


def _unwritable(path):
    """None if a file can be written at *path* (its folder made if need be),
    else why not; checked before the work whose result it will hold."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as error:
        return error.strerror or str(error)
    return None


def make_parser():
    parser = _Parser(
        prog="fastrelu",
        description="fastrelu: ReLU and softplus, forward and backward, at memory bandwidth.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fastrelu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="versions, threads, CUDA and the kernel cache")
    p.set_defaults(func=info)

    p = sub.add_parser(
        "bench",
        help="time the four kernels against NumPy (and PyTorch, if installed)",
        description="Time fastrelu's four kernels on large arrays against NumPy's best equivalents "
        "(and PyTorch's, if installed), with preallocated outputs, and print GB/s and ratios.",
    )
    p.add_argument(
        "--size", type=_size, default=1 << 24, help="elements per array, like 2**24 or 1e6 (default 2**24)"
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="default float32")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where the arrays live (default cpu)"
    )
    p.add_argument(
        "--repeat", type=_positive_int, default=10, help="interleaved rounds of timing (default 10)"
    )
    p.add_argument("--threads", type=_positive_int, help="threads for fastrelu (default: all CPUs)")
    p.set_defaults(func=bench)

    p = sub.add_parser(
        "demo",
        help="train a small NumPy network with each subgradient choice at 0",
        description="Train a small multi-layer perceptron written in NumPy, whose activations are "
        "fastrelu's, with ReLU's subgradient at 0 set to 0, 0.5 and 1, and with softplus, on a task "
        "where exact zeros are rare and one where they are common; print the results and plot the "
        "loss curves.",
    )
    p.add_argument("--epochs", type=_positive_int, default=20, help="epochs per run (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the weights (default 0)")
    p.add_argument(
        "--output", default="fastrelu-demo.png", help="the PNG of loss curves (default fastrelu-demo.png)"
    )
    p.add_argument("--no-plot", action="store_true", help="print the results only")
    p.set_defaults(func=demo)

    p = sub.add_parser(
        "study",
        help="how often ReLU's subgradient at 0 changes backpropagation, on real data",
        description="Train multi-layer perceptrons on scikit-learn's digits data with ReLU'(0) = 0 "
        "and 1 from the same weights and minibatches, in float16, float32 and float64, and count "
        "the runs whose gradients differ (after Bertoin et al., NeurIPS 2021); then train with "
        "ReLU'(0) in {0, 0.5, 1} and compare where training ends.  Needs scikit-learn "
        "(pip install 'fastrelu[study]').",
    )
    p.add_argument(
        "--inits",
        type=_positive_int,
        help="initialisations per network and precision (default 300, 12 with --quick)",
    )
    p.add_argument(
        "--sweep",
        action="append",
        choices=["depth", "width"],
        help="also vary the depth or the width (may be given twice); draws the figure",
    )
    p.add_argument("--quick", action="store_true", help="a run of a few seconds, for testing")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and batches (default 0)")
    p.add_argument(
        "--output", default="fastrelu-study.png", help="the PNG of the sweeps (default fastrelu-study.png)"
    )
    p.add_argument("--no-plot", action="store_true", help="print the results only")
    p.set_defaults(func=study)
    return parser


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `fastrelu`: what it can do
        parser.print_help()
        return 0
    return args.func(args)
