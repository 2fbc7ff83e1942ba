"""What fastrelu's Python side costs per GPU call, measured without a GPU.

    python bench/launch_cost.py [--number N]

Runs each public function on stand-ins for CuPy arrays (objects with a
version-3 ``__cuda_array_interface__`` whose pointers are never touched),
with ``out=``, through everything fastrelu does before a kernel starts:
the checks, the operand inspection, the stream and device rules and the
look-up of the compiled kernel.  What needs a driver is replaced by
stand-ins: the CUDA context and device, and the last step, numba-cuda's
``_Kernel.launch`` (argument packing and the driver's launch), which is
numba-cuda's cost, not fastrelu's.  Prints the best time per call of
several repeats, in microseconds.
"""

import argparse
import contextlib
import sys
import timeit
import types
from unittest import mock


class _Device:
    id = 0
    compute_capability = (9, 0)

    def __enter__(self):  # as an entry of cuda.gpus is, making it current
        return self

    def __exit__(self, *exc_info):
        return None


class _Runtime:
    """A CUDA runtime of one context, which never reaches a driver."""

    def ensure_context(self):
        return contextlib.nullcontext()

    def get_or_create_context(self, devnum=None):
        return types.SimpleNamespace(device=_Device(), handle=1)


def without_a_driver():
    """Patches that let the GPU path run up to the kernel launch without a
    driver or a GPU; returns the list that counts the launches."""
    from numba import cuda
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import devices

    launched = []
    patches = [
        mock.patch.object(devices, "_runtime", _Runtime()),
        mock.patch.object(dispatcher, "get_current_device", _Device),
        mock.patch.object(dispatcher._Kernel, "bind", lambda self: None),
        mock.patch.object(dispatcher._Kernel, "launch", lambda self, *args, **kwargs: launched.append(1)),
        mock.patch.object(cuda, "is_available", lambda: True),
        mock.patch.object(cuda, "gpus", [_Device()]),
    ]
    for patch in patches:
        patch.start()
    return launched


class _StandInStream:
    """The legacy default stream, as far as the stubbed launch cares."""

    handle = 1


class StandIn:
    """A 1-D float32 CuPy-like array at a made-up address, on the legacy
    default stream."""

    def __init__(self, n):
        self.__cuda_array_interface__ = {
            "shape": (n,),
            "typestr": "<f4",
            "data": (0x7F00_0000_0000, False),
            "strides": None,
            "version": 3,
            "stream": 1,
        }


def measure(n=4096, number=2000, repeat=7):
    """Microseconds per call of each public function on stand-ins of *n*
    elements, with ``out=``: a dict, operation -> the best of *repeat*
    timings of *number* calls."""
    launched = without_a_driver()
    import fastrelu
    from fastrelu import _cuda
    from fastrelu._table import KERNELS

    stream = _StandInStream()
    _cuda._launch_streams[stream] = stream
    _cuda.numba_stream = lambda handle, device: stream
    x, g, o = StandIn(n), StandIn(n), StandIn(n)
    calls = {}
    for name, kernel in KERNELS.items():
        func = getattr(fastrelu, name)
        operands = (x, g)[: len(kernel.operands)]
        calls[name] = lambda func=func, operands=operands: func(*operands, out=o)
    times = {}
    for name, call in calls.items():
        call()  # compiles the kernel (for a made-up device) on the first call
        before = len(launched)
        times[name] = min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6
        if len(launched) - before != number * repeat:
            raise RuntimeError(f"{name}: {len(launched) - before} launches for {number * repeat} calls")
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per timing (default 2000)")
    args = parser.parse_args(argv)
    times = measure(number=args.number)
    print("fastrelu's Python side per GPU call, 4096 float32 elements, out= (no GPU; launch stubbed):")
    for name, us in times.items():
        print(f"  {name:<18} {us:6.2f} µs")


if __name__ == "__main__":
    sys.exit(main())
