"""Throughput of the four kernels against NumPy's and PyTorch's equivalents.

Used by ``fastrelu bench``.  Each operation is timed with a preallocated
output on every side, so that the page faults of a fresh output do not blur
the comparison, and reported in GB/s of bytes that must move: the forward
passes read ``x`` and write ``y``; the backward passes read ``x`` and
``grad`` and write the result.  A copy of the same number of bytes, on
fastrelu's threads (on the GPU, device to device), is the machine's
ceiling.  On the GPU the peers are CuPy and PyTorch, where installed.

The interleaved timing (:func:`interleave`) also serves the benchmark suite
in ``bench/``: there a GPU sample is timed by CUDA events
(:func:`cuda_event_timer`), and ``bench/gpu_check.sh`` times the CPU kernels
on several numbers of threads through :func:`measure`.
"""

import functools
import gc
import platform
import statistics
import time
from typing import Any

import numpy as np

from . import _kernels, _threads, activations, config
from ._table import KERNELS, Kernel


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


def fastrelu_operation(name):
    """fastrelu's kernel *name* as ``call(x, g, o)``, writing into ``o``."""
    func = getattr(activations, name)
    if len(KERNELS[name].operands) == 1:
        return lambda x, g, o: func(x, out=o)
    return lambda x, g, o: func(x, g, out=o)


# NumPy's fastest idioms that write into o: name -> (the call, as shown; call(x, g, o)).
NUMPY_OPERATIONS = {
    "relu": ("np.maximum(x, 0, out=o)", lambda x, g, o: np.maximum(x, 0, out=o)),
    "relu_backward": ("np.multiply(g, x > 0, out=o)", lambda x, g, o: np.multiply(g, x > 0, out=o)),
    "softplus": ("max(x, 0) + log1p(exp(-abs(x))), out=o", lambda x, g, o: numpy_softplus(x, o)),
    "softplus_backward": ("g / (1 + exp(-x)), out=o", lambda x, g, o: numpy_softplus_backward(x, g, o)),
}


def torch_operations():
    """PyTorch's kernels that write into ``o``, as :data:`NUMPY_OPERATIONS`,
    or ``None`` without PyTorch.  They take tensors, on the CPU or the GPU.
    ``torch.relu`` has no ``out=`` form, and ``aten.relu.out`` computes into
    a temporary and copies it; ``torch.clamp_min(x, 0, out=o)`` writes ``o``."""
    try:
        import torch
    except ImportError:
        return None
    aten = torch.ops.aten
    return {
        "relu": ("torch.clamp_min(x, 0, out=o)", lambda x, g, o: torch.clamp_min(x, 0, out=o)),
        "relu_backward": (
            "aten.threshold_backward.grad_input(g, x, 0, grad_input=o)",
            lambda x, g, o: aten.threshold_backward.grad_input(g, x, 0, grad_input=o),
        ),
        "softplus": (
            "aten.softplus.out(x, 1, 20, out=o)",
            lambda x, g, o: aten.softplus.out(x, 1, 20, out=o),
        ),
        "softplus_backward": (
            "aten.softplus_backward.grad_input(g, x, 1, 20, grad_input=o)",
            lambda x, g, o: aten.softplus_backward.grad_input(g, x, 1, 20, grad_input=o),
        ),
    }


# CuPy's kernels below compute float16 in float32, as fastrelu and PyTorch
# do; C is that type.  A C-style cast is needed to and from CuPy's float16.
_CUPY_PREAMBLE = """
template <typename U, int N = sizeof(U)> struct fastrelu_compute { typedef U type; };
template <typename U> struct fastrelu_compute<U, 2> { typedef float type; };
"""
_CUPY_KERNELS = {  # name -> (formula as shown, inputs, body)
    "relu_backward": ("x > 0 ? g : 0", "T x, T g", "y = (C)x > (C)0 ? g : (T)(C)0"),
    "softplus": (
        "max(x, 0) + log1p(exp(-|x|))",
        "T x",
        "C v = (C)x; y = (T)((v > (C)0 ? v : (C)0) + log1p(exp(-fabs(v))))",
    ),
    "softplus_backward": ("g / (1 + exp(-x))", "T x, T g", "C v = (C)x; y = (T)((C)g / ((C)1 + exp(-v)))"),
}


def cupy_operations():
    """CuPy's elementwise equivalents, as :data:`NUMPY_OPERATIONS`, or
    ``None`` without CuPy: ``cp.maximum`` for relu, and for the others one
    ``cp.ElementwiseKernel`` each (one pass over memory, as fastrelu makes),
    softplus in the stable form ``max(x, 0) + log1p(exp(-|x|))``."""
    try:
        import cupy as cp
    except Exception:  # CuPy without a usable CUDA raises more than ImportError
        return None
    operations = {"relu": ("cp.maximum(x, 0, out=o)", lambda x, g, o: cp.maximum(x, 0, out=o))}
    for name, (formula, inputs, body) in _CUPY_KERNELS.items():
        kernel = cp.ElementwiseKernel(
            inputs,
            "T y",
            f"typedef fastrelu_compute<T>::type C; {body}",
            f"fastrelu_bench_{name}",
            preamble=_CUPY_PREAMBLE,
        )
        unary = len(KERNELS[name].operands) == 1
        operations[name] = (
            f"cp.ElementwiseKernel({formula}, out=o)",
            (lambda x, g, o, k=kernel: k(x, o)) if unary else (lambda x, g, o, k=kernel: k(x, g, o)),
        )
    return operations


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


# A copy as a kernel of fastrelu's own, run by the same entries and threads
# as relu: the ceiling of a kernel that moves its bytes and computes nothing.
COPY = Kernel("copy", "identity", ("x",), (), lambda arrays, objects: None, 0, streams=True)


_copies: dict[Any, Any] = {}  # dtype -> (entry, chunk function, scalars) of COPY


def parallel_copy(dst, src):
    """Copy the 1-D contiguous *src* into *dst* (same dtype and size) the way
    fastrelu runs ``relu``: the same entry, thread plan and call cost.

    Examples
    --------
    >>> import numpy as np
    >>> src, dst = np.arange(5.0), np.zeros(5)
    >>> parallel_copy(dst, src)
    >>> dst
    array([0., 1., 2., 3., 4.])
    """
    record = _copies.get(src.dtype)
    if record is None:
        record = _copies[src.dtype] = _kernels.fast(COPY, src.dtype, 1, ())
    entry, function, scalars = record
    request = _threads.request(config.PARALLEL_MIN_SIZE["relu"])
    if entry(function, request, src, dst, scalars) == _kernels.NEEDS_PLAN:
        _kernels.run_planned(entry, function, (src, dst), scalars, request)


# Interleaved timing: every implementation of a comparison is timed in turn,
# round after round, so that a machine that slows down or speeds up does so
# for all of them alike.
SAMPLE_SECONDS = 2e-3  # the least time of one sample: calls repeat until it is reached
WARMUP_CALLS = 100  # calls before the warm-up looks at the times (PyTorch's first calls are slow)
WARMUP_SECONDS = 0.2  # ... unless they take longer than this
STABLE = 0.1  # the warm-up ends once three samples in a row are within 10% of each other
WARMUP_BUDGET = 3.0  # seconds; a warm-up that never settles ends here
# Between two samples the calling thread stays busy this long, so that the
# workers of the previous implementation's thread pool have gone to sleep
# before the next one starts: PyTorch's OpenMP workers spin about 8 ms after
# a call, fastrelu's about 0.5 ms, and a spinning worker takes a core from
# whatever runs next.
SETTLE_SECONDS = 0.01


def wall_clock_timer(sync=None):
    """The default timer of :func:`interleave`: wall-clock time of the calls,
    then *sync* (which waits for a GPU), divided by their number.

    Returns
    -------
    callable
        ``timer(call, number)`` -> seconds per call.
    """
    sync = sync or (lambda: None)

    def timer(call, number):
        start = time.perf_counter()
        for _ in range(number):
            call()
        sync()
        return (time.perf_counter() - start) / number

    return timer


def cuda_event_timer(stream=0):
    """A timer for :func:`interleave` that measures the GPU's time: a CUDA
    event is recorded on *stream* before and after the calls.

    Parameters
    ----------
    stream : numba stream or 0, default 0
        Where the calls queue their work; 0 is the legacy default stream,
        the one PyTorch, CuPy and Numba use unless told otherwise.

    Returns
    -------
    callable
        ``timer(call, number)`` -> seconds per call.  While the calls are
        quicker to run than to queue, the time is that of queuing them.
    """
    from numba import cuda

    start, end = cuda.event(timing=True), cuda.event(timing=True)

    def timer(call, number):
        start.record(stream)
        for _ in range(number):
            call()
        end.record(stream)
        end.synchronize()
        return cuda.event_elapsed_time(start, end) / 1e3 / number

    return timer


class Timing:
    """The per-call times of one implementation: ``samples`` (seconds per
    call, one per round), ``number`` (calls per sample) and ``warmup_calls``."""

    def __init__(self, call, sync, timer=None):
        self.call, self.sync = call, sync
        self.timer = timer or wall_clock_timer(sync)
        self.samples, self.number, self.warmup_calls = [], 1, 0
        self.settled = False

    def _sample(self):
        return self.timer(self.call, self.number)

    def warm_up(self):
        """Call until the time per call settles; choose the calls per sample."""
        start = time.perf_counter()
        self.call()  # may compile
        self.sync()
        calls = 1
        while True:  # calls per sample: doubled until a sample lasts SAMPLE_SECONDS
            per_call = self._sample()
            calls += self.number
            if per_call * self.number >= SAMPLE_SECONDS or self.number >= 10**6:
                break
            self.number = min(10**6, max(2 * self.number, int(SAMPLE_SECONDS / max(per_call, 1e-9) / 2)))
        recent = []
        while True:
            recent = (recent + [self._sample()])[-3:]
            calls += self.number
            elapsed = time.perf_counter() - start
            enough = calls >= WARMUP_CALLS or elapsed >= WARMUP_SECONDS
            self.settled = len(recent) == 3 and max(recent) <= (1 + STABLE) * min(recent)
            if (enough and self.settled) or elapsed >= WARMUP_BUDGET:
                break
        self.warmup_calls = calls

    def record(self):
        self.samples.append(self._sample())


def _settle(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def interleave(calls, rounds, sync=None, progress=None, timer=None, settle=None):
    """Time *calls* in interleaved rounds after warming each up.

    Parameters
    ----------
    calls : dict
        Name -> a callable without arguments: one call of an implementation.
    rounds : int
        Samples per implementation, one per round; each round takes them in
        another order (rotated), so that none always goes first, and waits
        *settle* seconds after each sample.
    sync : callable, optional
        Called after an implementation's first call, and by the default
        timer after each sample's calls, to wait for a GPU.
    progress : callable, optional
        Called once per implementation warmed up and per round.
    timer : callable, optional
        ``timer(call, number)`` -> seconds per call of a sample of *number*
        calls; by default :func:`wall_clock_timer` of *sync*, and
        :func:`cuda_event_timer` for the GPU's own time.
    settle : float, optional
        Seconds of busy waiting after each sample (default
        ``SETTLE_SECONDS``), for CPU thread pools to go to sleep.

    Returns
    -------
    dict
        Name -> :class:`Timing`.
    """
    sync = sync or (lambda: None)
    settle = SETTLE_SECONDS if settle is None else settle
    timings = {name: Timing(call, sync, timer) for name, call in calls.items()}
    names = list(timings)
    collect = gc.isenabled()
    gc.disable()
    try:
        for name in names:
            timings[name].warm_up()
            _settle(settle)
            if progress:
                progress()
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                timings[name].record()
                _settle(settle)
            if progress:
                progress()
    finally:
        if collect:
            gc.enable()
    return timings


def quartiles(samples):
    """``(first quartile, median, third quartile)`` of *samples*."""
    if len(samples) == 1:
        return (samples[0],) * 3
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, median, q3


def _host_arrays(size, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size, dtype=dtype)  # drawn in dtype: no float64 temporaries
    g = rng.standard_normal(size, dtype=dtype)
    return x, g


def measure(size, dtype, repeat=10, seed=0, device="cpu", progress=None, compare=True, threads=None):
    """Time the four operations and their peers on *size* elements.

    Parameters
    ----------
    size : int
        Elements per array.
    dtype : str or dtype
        float32 or float64.
    repeat : int, default 10
        Rounds: each implementation is timed once per round, in turn,
        after a warm-up until its time per call settles.
    seed : int, default 0
        Seed of the standard normal inputs.
    device : {"cpu", "cuda"}, default "cpu"
        Where the arrays live.  On the GPU, fastrelu runs on Numba device
        arrays, next to CuPy and PyTorch where they are installed.
    progress : tqdm.tqdm, optional
        A progress bar: its total is set here, and it advances as each
        implementation is timed.
    compare : bool, default True
        Time the peers too; if False, only fastrelu and the copy.
    threads : sequence of int, optional
        On the CPU, time every operation once per number of threads in
        turn (:func:`fastrelu.set_num_threads`, PyTorch set to the same),
        on the same arrays; the setting in force before is restored after.
        By default, only the setting in force.

    Returns
    -------
    peers : list of str
        The peers timed next to fastrelu (NumPy, PyTorch, CuPy).
    rows : list of dict
        Per operation (and number of threads): ``op``, ``threads``, GB/s of
        ``fastrelu``, of each peer under ``peers`` (a dict), and of
        ``copy``, a copy of as many bytes, each from the median time of a
        call; ``spread``, half the interquartile range of fastrelu's times
        over their median.
    """
    dtype = np.dtype(dtype)
    x, g = _host_arrays(size, dtype, seed)
    # The copy reads written memory: an untouched source reads the kernel's
    # shared zero page and would overstate the machine's bandwidth.
    copy_src = np.concatenate([x, g])
    peer_threads = None  # sets the peers' threads (PyTorch's, on the CPU)
    if device == "cuda":
        from numba import cuda

        sync = cuda.synchronize
        xs, gs, os_ = cuda.to_device(x), cuda.to_device(g), cuda.device_array_like(x)
        copy_src, copy_dst = cuda.to_device(copy_src), cuda.device_array_like(copy_src)
        peers = {}
        torch_ops, cupy_ops = (torch_operations(), cupy_operations()) if compare else (None, None)
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
        peers = {"NumPy": (NUMPY_OPERATIONS, [x, g, np.empty_like(x)])} if compare else {}
        torch_ops = torch_operations() if compare else None
        if torch_ops is not None:
            import torch

            peer_threads = torch.set_num_threads
            peers["PyTorch"] = (torch_ops, [torch.from_numpy(a) for a in (x, g, np.empty_like(x))])

        def copy(n):
            parallel_copy(copy_dst[:n], copy_src[:n])

    def step():
        if progress is not None:
            progress.update(1)

    thread_counts = list(threads) if threads and device == "cpu" else [None]
    if progress is not None:
        progress.total = len(thread_counts) * len(KERNELS) * (2 + len(peers) + repeat)
        progress.refresh()
    rows = []
    in_force = config.get_num_threads()
    try:
        for n in thread_counts:
            if n is not None:
                config.set_num_threads(n)
            if peer_threads is not None:
                peer_threads(config.get_num_threads())
            rows += _time_operations(size, dtype, repeat, (xs, gs, os_), copy, peers, sync, step)
    finally:
        if thread_counts != [None]:
            config.set_num_threads(in_force)
    return list(peers), rows


def _time_operations(size, dtype, repeat, arrays, copy, peers, sync, step):
    """:func:`measure`'s rows for the thread setting in force."""
    xs, gs, os_ = arrays
    rows = []
    for name, kernel in KERNELS.items():
        ours = fastrelu_operation(name)
        nbytes = (len(kernel.operands) + 1) * size * dtype.itemsize
        # A copy moves 2 bytes per byte copied: the same traffic as the kernel.
        count = nbytes // (2 * dtype.itemsize)
        calls = {"copy": lambda: copy(count), "fastrelu": lambda: ours(xs, gs, os_)}
        for peer, (ops, (px, pg, po)) in peers.items():
            if name in ops:
                calls[peer] = functools.partial(ops[name][1], px, pg, po)
        timings = interleave(calls, repeat, sync, step)
        gbps = {key: nbytes / statistics.median(t.samples) / 1e9 for key, t in timings.items()}
        q1, median, q3 = quartiles(timings["fastrelu"].samples)
        row = {
            "op": name,
            "threads": config.get_num_threads(),
            "fastrelu": gbps["fastrelu"],
            "copy": gbps["copy"],
            "spread": (q3 - q1) / 2 / median,
        }
        row["peers"] = {peer: gbps.get(peer) for peer in peers}
        rows.append(row)
    return rows


def _digits(value):
    """*value* to three significant digits (one decimal from 100 up)."""
    return f"{value:.1f}" if value >= 99.95 else f"{value:#.3g}"


def format_table(peers, rows):
    """The table of :func:`measure`'s results: GB/s, and ratios of fastrelu to each."""
    head = f"{'operation':<18} {'fastrelu':>9} {'±':>4}"
    for peer in peers:
        head += f" {peer:>8} {'ratio':>6}"
    head += f" {'copy':>7} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for row in rows:
        line = f"{row['op']:<18} {_digits(row['fastrelu']):>9} {row['spread']:>4.0%}"
        for peer in peers:
            value = row["peers"][peer]
            if value is None:  # the peer has no equivalent of this kernel
                line += f" {'–':>8} {'–':>6}"
            else:
                line += f" {_digits(value):>8} {_digits(row['fastrelu'] / value):>6}"
        line += f" {_digits(row['copy']):>7} {_digits(row['fastrelu'] / row['copy']):>6}"
        lines.append(line)
    return "\n".join(lines)
