"""``python -m fastrelu``: time the four kernels on large arrays against NumPy."""

import argparse
import os
import platform
import sys

import numpy as np


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fastrelu",
        description="Time fastrelu's four kernels on large arrays against NumPy's best equivalents.",
    )
    parser.add_argument(
        "--size", type=_positive_int, default=1 << 24, help="elements per array (default 2**24)"
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--repeat", type=_positive_int, default=10, help="timed calls per kernel (median is reported)"
    )
    parser.add_argument("--threads", type=_positive_int, help="threads for fastrelu (default: all CPUs)")
    args = parser.parse_args(argv)

    import fastrelu
    from fastrelu._throughput import cpu_model, format_table, measure

    if args.threads:
        fastrelu.set_num_threads(args.threads)
    print(
        f"fastrelu {fastrelu.__version__}, NumPy {np.__version__}, Python {platform.python_version()}\n"
        f"{cpu_model()}, {os.cpu_count()} CPUs, fastrelu threads: {fastrelu.get_num_threads()}\n"
        f"{args.size} elements of {args.dtype}, median of {args.repeat} calls, preallocated outputs\n"
    )
    print(format_table(measure(args.size, args.dtype, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
