"""Where a call runs, checked without a GPU: the placement rules and their
errors, and that the CPU path never loads Numba's CUDA support.  The GPU
path itself is tested in ``tests/cuda`` (simulator, PTX)."""

import subprocess
import sys

import numpy as np
import pytest

import fastrelu


class ForeignArray:
    """A device array as another library hands it over: the interface only."""

    def __init__(self, shape=(3,), typestr="<f4"):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (0, False),
            "strides": None,
            "version": 3,
        }


CALLS = {
    "relu": lambda x, g, out, **kw: fastrelu.relu(x, out=out, **kw),
    "relu_backward": lambda x, g, out, **kw: fastrelu.relu_backward(x, g, out=out, **kw),
    "softplus": lambda x, g, out, **kw: fastrelu.softplus(x, out=out, **kw),
    "softplus_backward": lambda x, g, out, **kw: fastrelu.softplus_backward(x, g, out=out, **kw),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_host_and_device_arrays_in_one_call_are_refused(name):
    out = np.full(3, 7.0, np.float32)
    call = CALLS[name]
    with pytest.raises(TypeError, match="on the GPU and out on the host"):
        call(ForeignArray(), ForeignArray(), out)
    if name.endswith("backward"):
        with pytest.raises(TypeError, match="x on the GPU and grad on the host"):
            call(ForeignArray(), np.ones(3, np.float32), None)
    with pytest.raises(TypeError, match="device='cpu', but x is on the GPU"):
        call(ForeignArray(), 1.0, None, device="cpu")
    with pytest.raises(ValueError, match="device must be"):
        call(np.ones(3, np.float32), 1.0, out, device="gpu")
    assert (out == 7.0).all()


@pytest.mark.skipif(fastrelu.cuda_available(), reason="a GPU is usable here")
def test_device_cuda_without_a_gpu_is_a_runtime_error():
    out = np.full(3, 7.0)
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        fastrelu.softplus(np.ones(3), out=out, device="cuda")
    assert (out == 7.0).all()


def test_cuda_available_answers_quietly(capfd):
    assert fastrelu.cuda_available() in (True, False)
    assert capfd.readouterr() == ("", "")


def test_device_cpu_with_host_arrays_is_the_cpu_path():
    x = np.linspace(-2, 2, 9)
    np.testing.assert_array_equal(fastrelu.relu(x, device="cpu"), fastrelu.relu(x))


def test_the_cpu_path_loads_neither_cuda_support_nor_dask_nor_torch():
    code = (
        "import sys, numpy as np, fastrelu\n"
        "fastrelu.softplus_backward(np.ones(5), 1.0, device='cpu'); fastrelu.relu(np.ones(5))\n"
        "fastrelu.relu_backward(np.ones(3), 1.0)\n"
        "prefixes = ('numba.cuda', 'numba_cuda', 'dask', 'distributed', 'torch')\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
