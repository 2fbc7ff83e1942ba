"""CPU loops over contiguous 1-D arrays, one per kernel.

Every loop applies one formula of :mod:`fastrelu._formulas` element by
element; :mod:`fastrelu._kernels` compiles them.  Importing this module
imports Numba, so fastrelu imports it only on the first call.
"""

from . import _formulas as f


def relu_loop(x, out):
    for i in range(out.size):
        out[i] = f.relu(x[i])


def relu_backward_loop(x, grad, out, at_zero):
    for i in range(out.size):
        out[i] = f.relu_grad(x[i], grad[i], at_zero)


# The softplus loops have a copy for the default beta = 1, where constant
# arguments let the compiler drop the exact product beta * x from the formula.


def softplus_loop(x, out, beta_hi, beta_lo, threshold):
    one, zero = type(beta_hi)(1), type(beta_hi)(0)
    if beta_hi == one and beta_lo == zero:
        for i in range(out.size):
            out[i] = f.softplus(x[i], one, zero, threshold)
    else:
        for i in range(out.size):
            out[i] = f.softplus(x[i], beta_hi, beta_lo, threshold)


def softplus_backward_loop(x, grad, out, beta_hi, beta_lo, threshold):
    one, zero = type(beta_hi)(1), type(beta_hi)(0)
    if beta_hi == one and beta_lo == zero:
        for i in range(out.size):
            out[i] = f.softplus_grad(x[i], grad[i], one, zero, threshold)
    else:
        for i in range(out.size):
            out[i] = f.softplus_grad(x[i], grad[i], beta_hi, beta_lo, threshold)


# Loop name -> (python function, number of array arguments, number of scalars).
LOOPS = {
    "relu": (relu_loop, 2, 0),
    "relu_backward": (relu_backward_loop, 3, 1),
    "softplus": (softplus_loop, 2, 3),
    "softplus_backward": (softplus_backward_loop, 3, 3),
}
