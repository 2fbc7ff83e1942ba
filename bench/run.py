"""Run the benchmark suite and render it into docs/performance.md.

    python bench/run.py [--json FILE] [--output PAGE] [--repeat N] [pytest options]

Runs ``bench/test_kernels.py``, ``bench/test_mask.py``, ``bench/test_startup.py`` and
``bench/test_dask.py`` (when Dask is installed) under
pytest-benchmark, then ``bench/render.py`` on the JSON they wrote, which
keeps the results in ``--record`` (``docs/data/bench-suite.json``) and
renders them into the page; with ``--repeat N``, N times, pooling the
samples of the runs.  Options other than ``--json``, ``--record``,
``--output`` and ``--repeat`` go to pytest after the defaults here,
so that they override them (``--benchmark-max-time=2``, ``-k softplus``).
``FASTRELU_BENCH_SIZES=12,16`` restricts the sizes to 2**12 and 2**16
elements.  ``bench/test_switchover.py``, the slow serial-against-threaded
sweep, is left out; it runs on its own (see its docstring).  So is
``bench/test_gpu.py``, the GPU group: ``bash bench/gpu_check.sh OUTDIR`` runs
it on a machine with a GPU, with the GPU tests and CPU thread scaling.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import render

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["bench/test_kernels.py", "bench/test_mask.py", "bench/test_startup.py", "bench/test_dask.py"]
# pyproject's addopts hold --benchmark-disable, which --benchmark-enable
# overrides.  min-rounds is the number of interleaved rounds of each kernel
# group (test_kernels.py), the number of fresh processes per start-up step,
# and the least number of rounds of the Dask group.
PYTEST_DEFAULTS = [
    "--benchmark-enable",
    "--benchmark-min-rounds=7",
    "--benchmark-max-time=0.5",
    "--benchmark-min-time=0.0002",
    "--benchmark-columns=median,rounds",
    "-p",
    "no:cacheprovider",
]


def pytest_command(json_path, pytest_args=()):
    """The command line that runs the suite and writes *json_path*.

    Parameters
    ----------
    json_path : str or Path
        Where pytest-benchmark writes its JSON.
    pytest_args : sequence of str, optional
        Further pytest options; they come last and so take precedence.

    Returns
    -------
    list of str
    """
    return [
        sys.executable,
        "-m",
        "pytest",
        *SUITE,
        *PYTEST_DEFAULTS,
        f"--benchmark-json={json_path}",
        *pytest_args,
    ]


def main(argv=None):
    """Run the suite, then render it; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        ``--json FILE`` (default ``.benchmarks/fastrelu-bench.json``),
        ``--output PAGE`` (default ``docs/performance.md``), and pytest
        options.
    """
    parser = argparse.ArgumentParser(
        description="Run the benchmark suite in bench/ and render it into docs/performance.md.",
        epilog="Other options go to pytest.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / ".benchmarks" / "fastrelu-bench.json",
        help="the results file (default: .benchmarks/fastrelu-bench.json)",
    )
    parser.add_argument("--record", type=Path, help="default: data/bench-suite.json next to the page")
    parser.add_argument("--output", type=Path, default=render.PAGE, help="default: docs/performance.md")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the suite this many times and render the median of the runs (default: 1)",
    )
    args, pytest_args = parser.parse_known_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    base = args.json.resolve()
    base.parent.mkdir(parents=True, exist_ok=True)
    if args.repeat == 1:
        paths = [base]
    else:
        paths = [base.with_suffix(f".{i}.json") for i in range(1, args.repeat + 1)]
    for path in paths:
        path.unlink(missing_ok=True)  # never render the results of an earlier run
    for path in paths:
        status = subprocess.call(pytest_command(path, pytest_args), cwd=ROOT)
        if status != 0 or not path.exists():
            message = f"run.py: pytest exited with status {status}; {args.output} left as it was"
            print(message, file=sys.stderr)
            return status or 1
    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    options = [f"--output={args.output}", f"--command={command}"]
    options += [f"--record={args.record}"] if args.record else []
    return render.main([*map(str, paths), *options])


if __name__ == "__main__":
    sys.exit(main())
