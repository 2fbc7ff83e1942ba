"""fastrelu: ReLU and softplus, forward and backward, at memory bandwidth.

The four functions take array-likes like NumPy's ufuncs do (any shape and
strides, broadcasting, ``out=``) and run Numba-compiled kernels, on several
threads for large arrays.
"""

from ._device import cuda_available
from .activations import relu, relu_backward, softplus, softplus_backward
from .config import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "relu",
    "relu_backward",
    "softplus",
    "softplus_backward",
    "get_num_threads",
    "set_num_threads",
    "cuda_available",
]
