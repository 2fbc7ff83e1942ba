"""What keeping a ReLU mask costs and saves: the time of ``relu_with_mask``
and ``relu_backward_from_mask`` against ``relu`` and ``relu_backward``, the
bytes the backward pass keeps per element, and the peak memory of a NumPy
MLP's training step keeping ``x``, ``y`` or the mask.

    python bench/mask.py            # 2**16 to 2**26 float32, 2**24 float64
    python bench/mask.py --small    # a quick run on small arrays

Each function is timed with ``out=`` (and ``mask_out=``) in interleaved
rounds after warming up (``fastrelu._throughput.interleave``); the tables
give the median time per call and the GB/s of the bytes each call reads and
writes.
"""

import argparse
import gc
import math
import tracemalloc

import numpy as np

import fastrelu
from fastrelu import _throughput


def _bytes_moved(name, n, itemsize):
    mask = math.ceil(n / 4)
    return {
        "relu": 2 * n * itemsize,
        "relu_with_mask": 2 * n * itemsize + mask,
        "relu_backward": 3 * n * itemsize,
        "relu_backward_from_mask": 2 * n * itemsize + mask,
    }[name]


def time_size(n, dtype, rounds):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    y, out = np.empty_like(x), np.empty_like(x)
    _, mask = fastrelu.relu_with_mask(x)
    bits = mask.bits.copy()
    calls = {
        "relu": lambda: fastrelu.relu(x, y),
        "relu_with_mask": lambda: fastrelu.relu_with_mask(x, y, mask_out=bits),
        "relu_backward": lambda: fastrelu.relu_backward(x, grad, out),
        "relu_backward_from_mask": lambda: fastrelu.relu_backward_from_mask(mask, grad, out),
    }
    timings = _throughput.interleave(calls, rounds)
    return {name: _throughput.quartiles(t.samples)[1] for name, t in timings.items()}


def speed(sizes, float64_sizes, rounds):
    print("Time per call (median of interleaved rounds) and GB/s of the bytes read and written:")
    print(
        f"{'dtype':8} {'size':>6} {'relu':>18} {'relu_with_mask':>18} {'relu_backward':>18} "
        f"{'from_mask':>18} {'mask/backward':>14}"
    )
    for dtype, exponents in ((np.float32, sizes), (np.float64, float64_sizes)):
        itemsize = np.dtype(dtype).itemsize
        for e in exponents:
            n = 2**e
            times = time_size(n, dtype, rounds)
            cells = []
            for name in ("relu", "relu_with_mask", "relu_backward", "relu_backward_from_mask"):
                t = times[name]
                cells.append(f"{t * 1e6:9.1f} µs {_bytes_moved(name, n, itemsize) / t / 1e9:5.1f}")
            ratio = times["relu_backward_from_mask"] / times["relu_backward"]
            print(
                f"{np.dtype(dtype).name:8} {'2**' + str(e):>6} "
                + " ".join(f"{c:>18}" for c in cells)
                + f" {ratio:14.2f}"
            )
            gc.collect()


def kept_bytes():
    print("Bytes the backward pass keeps per element:")
    print(f"{'dtype':8} {'input x':>8} {'output y':>9} {'mask':>6}")
    for dtype in (np.float16, np.float32, np.float64):
        itemsize = np.dtype(dtype).itemsize
        print(f"{np.dtype(dtype).name:8} {itemsize:8d} {itemsize:9d} {0.25:6.2f}")
    print("(keeping y costs nothing more where relu(x, out=x) overwrites x and the next layer keeps y)")


def mlp_peak(batch, width, layers, keep):
    """Peak traced memory of one forward and backward pass of a NumPy MLP
    with ReLUs, keeping for each ReLU: "input" (x and y), "output" (y only,
    relu in place) or "mask" (y and the mask, relu in place, x freed)."""
    rng = np.random.default_rng(0)
    weights = [
        (rng.standard_normal((width, width)) / math.sqrt(width)).astype(np.float32) for _ in range(layers)
    ]
    data = rng.standard_normal((batch, width)).astype(np.float32)
    gc.collect()
    tracemalloc.start()
    h, saved = data, []
    for w in weights:
        x = h @ w
        if keep == "input":
            y = fastrelu.relu(x)
            saved.append((h, x))
        elif keep == "output":
            y = fastrelu.relu(x, out=x)
            saved.append((h, y))
        else:
            y, mask = fastrelu.relu_with_mask(x, out=x)
            saved.append((h, mask))
        h = y
    grad = np.ones_like(h)
    for w, (inputs, kept) in zip(weights[::-1], saved[::-1]):
        if keep == "input":
            g = fastrelu.relu_backward(kept, grad, out=grad)
        elif keep == "output":
            g = fastrelu.relu_backward_from_output(kept, grad, out=grad)
        else:
            g = fastrelu.relu_backward_from_mask(kept, grad, out=grad)
        _ = inputs.T @ g  # the weights' gradient
        grad = g @ w.T
        del inputs, kept
    saved.clear()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def memory(batch, width, layers):
    print(
        f"Peak memory of a NumPy MLP training step (tracemalloc), batch {batch}, "
        f"{layers} layers of {width}, float32:"
    )
    peaks = {keep: mlp_peak(batch, width, layers, keep) for keep in ("input", "output", "mask")}
    for keep, label in (
        ("input", "keeping x and y"),
        ("output", "keeping y (relu in place)"),
        ("mask", "keeping y's mask (relu in place)"),
    ):
        print(f"  {label:34} {peaks[keep] / 2**20:8.1f} MiB  {peaks[keep] / peaks['input']:.2f} of keeping x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run on small arrays")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per size")
    args = parser.parse_args(argv)
    if args.small:
        speed([12], [12], 2)
        kept_bytes()
        memory(256, 64, 3)
    else:
        speed(range(16, 27, 2), [24], args.rounds)
        kept_bytes()
        memory(8192, 1024, 4)


if __name__ == "__main__":
    main()
