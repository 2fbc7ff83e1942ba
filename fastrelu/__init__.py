"""fastrelu: ReLU and softplus, forward and backward, at memory bandwidth.

The functions take array-likes like NumPy's ufuncs do (any shape and
strides, broadcasting, ``out=``) and run Numba-compiled kernels, on several
threads for large arrays.  ``relu_backward_from_output`` and
``relu_with_mask``/``relu_backward_from_mask`` (with :class:`ReluMask`) let a
training step keep ReLU's output or 2 bits per element instead of its input.
"""

from ._device import cuda_available
from ._mask import ReluMask
from .activations import (
    relu,
    relu_backward,
    relu_backward_from_mask,
    relu_backward_from_output,
    relu_with_mask,
    softplus,
    softplus_backward,
)
from .config import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "relu",
    "relu_backward",
    "softplus",
    "softplus_backward",
    "relu_backward_from_output",
    "relu_with_mask",
    "relu_backward_from_mask",
    "ReluMask",
    "get_num_threads",
    "set_num_threads",
    "cuda_available",
]
