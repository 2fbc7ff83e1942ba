"""Throughput of the four kernels against NumPy's and PyTorch's equivalents.

Used by ``fastrelu bench``.  Each operation is timed with a preallocated
output on every side, so that the page faults of a fresh output do not blur
the comparison, and reported in GB/s of bytes that must move: the forward
passes read ``x`` and write ``y``; the backward passes read ``x`` and
``grad`` and write the result.  A copy of the same number of bytes, on
fastrelu's threads (on the GPU, device to device), is the machine's
ceiling.  On the GPU the peers are CuPy and PyTorch, where installed.
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


def torch_operations():
    """PyTorch's kernels for the four operations, writing into ``o``, or
    ``None`` without PyTorch.  They take tensors, on the CPU or the GPU."""
    try:
        import torch
    except ImportError:
        return None
    aten = torch.ops.aten
    return {
        "relu": lambda x, g, o: torch.clamp_min(x, 0, out=o),
        "relu_backward": lambda x, g, o: aten.threshold_backward.grad_input(g, x, 0, grad_input=o),
        "softplus": lambda x, g, o: aten.softplus.out(x, 1, 20, out=o),
        "softplus_backward": lambda x, g, o: aten.softplus_backward.grad_input(g, x, 1, 20, grad_input=o),
    }


def cupy_operations():
    """CuPy's elementwise equivalents, writing into ``o``, or ``None`` without CuPy."""
    try:
        import cupy as cp
    except Exception:  # CuPy without a usable CUDA raises more than ImportError
        return None
    return {
        "relu": lambda x, g, o: cp.maximum(x, 0, out=o),
        "relu_backward": lambda x, g, o: cp.multiply(g, x > 0, out=o),
        "softplus": lambda x, g, o: cp.logaddexp(0, x, out=o),
        "softplus_backward": lambda x, g, o: cp.divide(g, 1 + cp.exp(-x), out=o),
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


def median_time(func, repeat, sync=None):
    """Median wall time of *repeat* calls, after one warm-up call; *sync*,
    if given, is called after each call to wait for a GPU."""
    sync = sync or (lambda: None)
    func()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _host_arrays(size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size, dtype=np.float64).astype(dtype)
    g = rng.standard_normal(size, dtype=np.float64).astype(dtype)
    return x, g


def measure(size, dtype, repeat=10, seed=0, device="cpu", progress=None):
    """Time the four operations and their peers on *size* elements.

    Parameters
    ----------
    size : int
        Elements per array.
    dtype : str or dtype
        float32 or float64.
    repeat : int, default 10
        Timed calls per implementation; the median is kept.
    seed : int, default 0
        Seed of the standard normal inputs.
    device : {"cpu", "cuda"}, default "cpu"
        Where the arrays live.  On the GPU, fastrelu runs on Numba device
        arrays, next to CuPy and PyTorch where they are installed.
    progress : tqdm.tqdm, optional
        A progress bar: its total is set here, and it advances as each
        implementation is timed.

    Returns
    -------
    peers : list of str
        The peers timed next to fastrelu (NumPy, PyTorch, CuPy).
    rows : list of dict
        Per operation: ``op``, GB/s of ``fastrelu``, of each peer under
        ``peers`` (a dict), and of ``copy``, a copy of as many bytes.
    """
    dtype = np.dtype(dtype)
    x, g = _host_arrays(size, dtype, seed)
    # The copy reads written memory: an untouched source reads the kernel's
    # shared zero page and would overstate the machine's bandwidth.
    copy_src = np.concatenate([x, g])
    if device == "cuda":
        from numba import cuda

        sync = cuda.synchronize
        xs, gs, os_ = cuda.to_device(x), cuda.to_device(g), cuda.device_array_like(x)
        copy_src, copy_dst = cuda.to_device(copy_src), cuda.device_array_like(copy_src)
        peers = {}
        torch_ops, cupy_ops = torch_operations(), cupy_operations()
        if torch_ops is not None:
            import torch

            if torch.cuda.is_available():
                peers["PyTorch"] = (torch_ops, [torch.as_tensor(a, device="cuda") for a in (x, g, x)])
        if cupy_ops is not None:
            import cupy as cp

            peers["CuPy"] = (cupy_ops, [cp.asarray(a) for a in (x, g, x)])

        def copy(n):
            copy_dst[:n].copy_to_device(copy_src[:n])
    else:
        sync = None
        xs, gs, os_ = x, g, np.empty_like(x)
        copy_dst = np.empty_like(copy_src)
        peers = {"NumPy": ({name: op[2] for name, op in OPERATIONS.items()}, [x, g, np.empty_like(x)])}
        torch_ops = torch_operations()
        if torch_ops is not None:
            import torch

            from .config import get_num_threads

            torch.set_num_threads(get_num_threads())
            peers["PyTorch"] = (torch_ops, [torch.from_numpy(a) for a in (x, g, np.empty_like(x))])

        def copy(n):
            parallel_copy(copy_dst[:n], copy_src[:n])

    def step():
        if progress is not None:
            progress.update(1)

    if progress is not None:
        progress.total = len(OPERATIONS) * (2 + len(peers))
        progress.refresh()
    rows = []
    for name, (n_read, ours, _, _) in OPERATIONS.items():
        nbytes = (n_read + 1) * size * dtype.itemsize
        row = {"op": name, "peers": {}}
        # A copy moves 2 bytes per byte copied: the same traffic as the kernel.
        row["copy"] = nbytes / median_time(lambda: copy(nbytes // (2 * dtype.itemsize)), repeat, sync) / 1e9
        step()
        row["fastrelu"] = nbytes / median_time(lambda: ours(xs, gs, os_), repeat, sync) / 1e9
        step()
        for peer, (ops, (px, pg, po)) in peers.items():
            row["peers"][peer] = nbytes / median_time(lambda: ops[name](px, pg, po), repeat, sync) / 1e9
            step()
        rows.append(row)
    return list(peers), rows


def _digits(value):
    """*value* to three significant digits (one decimal from 100 up)."""
    return f"{value:.1f}" if value >= 99.95 else f"{value:#.3g}"


def format_table(peers, rows):
    """The table of :func:`measure`'s results: GB/s, and ratios of fastrelu to each."""
    head = f"{'operation':<18} {'fastrelu':>9}"
    for peer in peers:
        head += f" {peer:>8} {'ratio':>6}"
    head += f" {'copy':>7} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for row in rows:
        line = f"{row['op']:<18} {_digits(row['fastrelu']):>9}"
        for peer in peers:
            value = row["peers"][peer]
            line += f" {_digits(value):>8} {_digits(row['fastrelu'] / value):>6}"
        line += f" {_digits(row['copy']):>7} {_digits(row['fastrelu'] / row['copy']):>6}"
        lines.append(line)
    return "\n".join(lines)
