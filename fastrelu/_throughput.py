"""Throughput of the four kernels against NumPy's best equivalents.

Used by ``python -m fastrelu``.  Each operation is timed with a preallocated
output on both sides, so that the page faults of a fresh output do not blur
the comparison, and reported in GB/s of bytes that must move: the forward
passes read ``x`` and write ``y``; the backward passes read ``x`` and
``grad`` and write the result.  ``np.copyto`` of the same number of bytes,
on fastrelu's threads, is the machine's ceiling.
"""

import platform
import statistics
import time

import numpy as np

from .activations import relu, relu_backward, softplus, softplus_backward


def numpy_softplus(x, out):
    """NumPy's stable three-op softplus of *x* into *out*."""
    # max(x, 0) + log1p(exp(-|x|))
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(x, 0)


def numpy_softplus_backward(x, grad, out):
    """NumPy's ``grad * sigmoid(x)`` into *out*."""
    # grad / (1 + exp(-x)): exp overflows to inf for very negative x, which
    # still gives the right limit 0.
    with np.errstate(over="ignore"):
        np.exp(np.negative(x), out=out)
    out += 1
    np.divide(grad, out, out=out)


# name -> (arrays read, fastrelu call, NumPy's best equivalent, its description)
OPERATIONS = {
    "relu": (
        1,
        lambda x, g, o: relu(x, out=o),
        lambda x, g, o: np.maximum(x, 0, out=o),
        "np.maximum(x, 0, out=o)",
    ),
    "relu_backward": (
        2,
        lambda x, g, o: relu_backward(x, g, out=o),
        lambda x, g, o: np.multiply(g, x > 0, out=o),
        "np.multiply(g, x > 0, out=o)",
    ),
    "softplus": (
        1,
        lambda x, g, o: softplus(x, out=o),
        lambda x, g, o: numpy_softplus(x, o),
        "max(x,0) + log1p(exp(-|x|))",
    ),
    "softplus_backward": (
        2,
        lambda x, g, o: softplus_backward(x, g, out=o),
        lambda x, g, o: numpy_softplus_backward(x, g, o),
        "g / (1 + exp(-x))",
    ),
}


def cpu_model():
    """The CPU's model name, as Linux reports it, or what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parallel_copy(dst, src):
    """``np.copyto(dst, src)`` of 1-D arrays, split over fastrelu's threads
    from the size where ``relu`` is: the machine's copy bandwidth, measured
    the way fastrelu runs a memory-bound kernel."""
    from . import _threads

    _threads.run("relu", lambda s, d: np.copyto(d, s), src.size, (src, dst), ())


def best_time(func, repeat):
    """Median wall time of *repeat* calls, after one warm-up call."""
    func()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(size, dtype, repeat=10, seed=0):
    """Return rows ``(name, gbps_fastrelu, gbps_numpy, gbps_copy, numpy_desc)``."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    o = np.empty_like(x)
    # Written first: a copy from untouched memory reads the kernel's shared
    # zero page and would overstate the machine's bandwidth.
    copy_src = np.concatenate([x, g])
    copy_dst = np.empty_like(copy_src)
    rows = []
    for name, (n_read, ours, theirs, desc) in OPERATIONS.items():
        nbytes = (n_read + 1) * size * dtype.itemsize
        # A copy moves 2 bytes per byte copied: the same traffic as the kernel.
        half = nbytes // (2 * dtype.itemsize)
        t_copy = best_time(lambda: parallel_copy(copy_dst[:half], copy_src[:half]), repeat)
        t_ours = best_time(lambda: ours(x, g, o), repeat)
        t_theirs = best_time(lambda: theirs(x, g, o), repeat)
        rows.append((name, nbytes / t_ours / 1e9, nbytes / t_theirs / 1e9, nbytes / t_copy / 1e9, desc))
    return rows


def format_table(rows):
    head = f"{'operation':<18} {'fastrelu':>9} {'NumPy':>9} {'ratio':>6} {'copy':>7}  NumPy's equivalent"
    lines = [head, "-" * len(head)]
    for name, ours, theirs, copy, desc in rows:
        lines.append(f"{name:<18} {ours:9.1f} {theirs:9.1f} {ours / theirs:6.1f} {copy:7.1f}  {desc}")
    lines.append(
        "(GB/s of bytes that must move; ratio = fastrelu / NumPy; "
        "copy = np.copyto of the same bytes, on the same threads)"
    )
    return "\n".join(lines)
