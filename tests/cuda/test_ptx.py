"""Real code generation without a GPU: every kernel and dtype compiles to PTX
for sm_80 and sm_90, stays in registers and indexes with 64 bits."""

import re
from unittest import mock

import pytest
from numba import config, cuda

from fastrelu import _cuda
from fastrelu._table import KERNELS

if config.ENABLE_CUDASIM:
    pytest.skip("the simulator does not generate code", allow_module_level=True)


class _Device:
    """What compile_ptx asks of the current device, where there is none."""

    id = 0

    def __init__(self, cc):
        self.compute_capability = cc


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_compiles_to_clean_ptx(name, dtype, cc):
    kernel = KERNELS[name]
    arrays = [f"{dtype}[::1]"] * (len(kernel.operands) + 1)
    scalars = f"UniTuple({dtype}, {len(kernel.scalars)})" if kernel.scalars else "Tuple(())"
    sig = "(" + ", ".join([*arrays, scalars]) + ")"
    import numba.cuda.dispatcher as dispatcher

    with mock.patch.object(dispatcher, "get_current_device", lambda: _Device(cc)):
        ptx, _ = cuda.compile_ptx(_cuda.grid_kernel(kernel), sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".local" not in ptx, "registers spilled to local memory"
    assert "mul.wide.s32" in ptx or "mul.lo.s64" in ptx, "no 64-bit index arithmetic"
    if dtype == "float32":
        # float32 maths must stay float32: no double-precision instruction.
        assert not re.search(r"\.f64\b", ptx), "float64 arithmetic in a float32 kernel"


@pytest.mark.parametrize(
    "name, sig",
    [
        ("gather", "(float16[::1], int64, UniTuple(int64, 3), UniTuple(int64, 3), float32[::1])"),
        ("scatter", "(float32[::1], float16[::1], int64, UniTuple(int64, 3), UniTuple(int64, 3))"),
        ("fill", "(float64[::1], float64)"),
    ],
)
def test_layout_kernels_compile(name, sig):
    import numba.cuda.dispatcher as dispatcher

    with mock.patch.object(dispatcher, "get_current_device", lambda: _Device((9, 0))):
        ptx, _ = cuda.compile_ptx(_cuda._HELPERS[name], sig, cc=(9, 0))
    assert ".local" not in ptx
