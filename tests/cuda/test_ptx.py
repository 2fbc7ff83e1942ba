"""Real code generation without a GPU: every kernel and dtype compiles to PTX
for sm_80 and sm_90, stays in registers and indexes with 64 bits."""

import re
from unittest import mock

import numpy as np
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


def compile_ptx(func, signature, cc):
    import numba.cuda.dispatcher as dispatcher

    with mock.patch.object(dispatcher, "get_current_device", lambda: _Device(cc)):
        ptx, _ = cuda.compile_ptx(func, signature, cc=cc)
    return ptx


# The 16-byte load and store each dtype's vector kernel must use.
VECTOR_ACCESS = {"float16": "v4.u32", "float32": "v4.f32", "float64": "v2.f64"}


# sm_90 in the default run, sm_80 too in -m slow.
@pytest.mark.parametrize("cc", [pytest.param((8, 0), marks=pytest.mark.slow), (9, 0)])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("vector", [False, True], ids=["scalar", "vector"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_compiles_to_clean_ptx(name, vector, dtype, cc):
    """The kernel exactly as the GPU path launches it: raw pointers to the
    result's dtype, the element count, the scalars in the compute dtype;
    element by element, or 16 bytes at a time."""
    kernel = KERNELS[name]
    result = np.dtype(dtype)
    compute = np.dtype(np.float32) if result == np.float16 else result
    spec = (*[result] * (len(kernel.operands) + 1), len(kernel.scalars))
    width = 16 // result.itemsize if vector else 1
    ptx = compile_ptx(_cuda.grid_kernel(kernel, width), _cuda.signature(name, compute, spec), cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".local" not in ptx, "registers spilled to local memory"
    assert "call" not in ptx.split(".entry")[1], "a function called out of line"
    assert "mul.wide.s32" in ptx or "mul.lo.s64" in ptx or "shl.b64" in ptx, "no 64-bit index arithmetic"
    if dtype != "float64":
        # float32 maths must stay float32: no double-precision instruction.
        assert not re.search(r"\.f64\b", ptx), "float64 arithmetic in a float32 kernel"
    access = VECTOR_ACCESS[dtype]
    loads = re.findall(r"ld\.global\.(\S+)", ptx)
    stores = re.findall(r"st\.global\.(\S+)", ptx)
    if vector:
        # Every operand is read, and the result written, 16 bytes at a time
        # in the main loop; single elements only in the tail.
        assert loads.count(access) >= 2 * len(kernel.operands), loads
        assert stores.count(access) >= 2, stores
        assert len(loads) - loads.count(access) == len(kernel.operands), loads
        assert len(stores) - stores.count(access) == 1, stores
    else:
        assert not any(a.startswith("v") for a in loads + stores), (loads, stores)


@pytest.mark.parametrize(
    "name, spec",
    [
        ("gather", (np.dtype(np.float16), np.dtype(np.float32), 3)),
        ("scatter", (np.dtype(np.float32), np.dtype(np.float16), 3)),
        ("fill", (np.dtype(np.float64),)),
    ],
)
def test_layout_kernels_compile(name, spec):
    ptx = compile_ptx(_cuda._HELPERS[name], _cuda.signature(name, None, spec), (9, 0))
    assert ".local" not in ptx


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32"])
def test_mask_kernels_compile_to_clean_ptx(dtype):
    """relu with its mask, and the backward from it: one thread per byte of
    the mask, in registers, with 64-bit indexing."""
    result = np.dtype(dtype)
    compute = np.dtype(np.float32) if result == np.float16 else result
    for name, spec in (("mask_forward", (result,)), ("mask_backward", (result, result))):
        ptx = compile_ptx(_cuda._HELPERS[name], _cuda.signature(name, compute, spec), (9, 0))
        assert ".local" not in ptx, name
        assert "call" not in ptx.split(".entry")[1], name
        assert "st.global.u8" in ptx or "st.global.b8" in ptx or name == "mask_backward", name
        if dtype in ("float16", "float32"):
            assert not re.search(r"\.f64\b", ptx), f"float64 arithmetic in {name} of {dtype}"
