"""One table of kernels: every kernel described once, and a fifth elementwise
operation added with its formula, its public function and one entry."""

import inspect
import math

import numpy as np
import pytest
from numba.extending import register_jitable

import fastrelu
from fastrelu import _elementwise, _formulas, _front, _table, config
from fastrelu._table import KERNELS, Kernel


def test_every_kernel_has_a_formula_a_public_function_and_a_parallel_size():
    for name, kernel in KERNELS.items():
        assert kernel.name == name
        formula = getattr(_formulas, kernel.formula)
        assert list(inspect.signature(formula).parameters)[: len(kernel.operands)]
        assert len(inspect.signature(formula).parameters) == len(kernel.operands) + len(kernel.scalars)
        assert callable(getattr(fastrelu, name)) and name in fastrelu.__all__
        assert config.PARALLEL_MIN_SIZE[name] == kernel.parallel_min_size > 0
        assert set(kernel.folded) <= set(kernel.scalars)


def test_folded_scalars_are_constants_of_the_compiled_loop():
    """softplus at beta = 1 compiles to a loop without the scaling by beta:
    the folded constants reach the formula, so no division is left."""
    import numba

    from fastrelu import _kernels
    from fastrelu._loops import chunk_function

    sig = numba.types.void(numba.types.int64, numba.types.int64, numba.types.int64)
    options = {k: v for k, v in _kernels._JIT_OPTIONS.items() if k != "nogil"}
    kernel = KERNELS["softplus"]
    divisions = {}
    for beta in (1.0, 2.0):
        fold = _kernels._fold(kernel, (beta, 0.0, math.inf))
        chunk = numba.cfunc(sig, **options)(chunk_function(kernel, numba.float32, fold))
        divisions[beta] = chunk.inspect_llvm().count("fdiv")
    assert divisions[1.0] == 0 < divisions[2.0]


def leaky(x, slope):
    """A leaky ReLU: the formula of the fifth kernel below."""
    return x if x > 0 else slope * x


def _leaky_types(arrays, objects, *, slope):
    result = _elementwise.float_result(arrays[0].dtype)
    compute = _elementwise.compute_dtype(result)
    slope = _elementwise.real_param("slope", slope, 0.0, 1.0)
    return result, compute, (float(compute.type(slope)),)


@pytest.fixture
def fifth_kernel(monkeypatch):
    """A leaky ReLU, added the way a fifth operation would be: its formula in
    ``_formulas``, one entry in the table, a public function with its docstring."""
    monkeypatch.setenv("FASTRELU_CACHE", "0")  # not into the session's cache
    formula = register_jitable(leaky)
    monkeypatch.setattr(_formulas, "leaky_relu_test", formula, raising=False)
    kernel = Kernel("leaky_relu_test", "leaky_relu_test", ("x",), ("slope",), _leaky_types, 1 << 12)
    monkeypatch.setitem(KERNELS, kernel.name, kernel)

    def leaky_relu_test(x, out=None, *, slope=0.01, device=None, stream=None):
        """Leaky ReLU: ``x`` where ``x > 0``, else ``slope * x``."""

    with config.set(parallel_min_size={kernel.name: 1 << 12}):  # the sizes come back after the test
        yield _front.elementwise(kernel)(leaky_relu_test)


def test_a_fifth_kernel_needs_its_formula_its_public_function_and_one_entry(fifth_kernel):
    func = fifth_kernel
    assert func.__doc__.startswith("Leaky ReLU") and "slope" in inspect.signature(func).parameters
    rng = np.random.default_rng(0)
    for shape in [(7,), (300, 200)]:  # serial, then split across threads
        x = rng.standard_normal(shape).astype(np.float32)
        want = np.where(x > 0, x, np.float32(0.25) * x)
        np.testing.assert_array_equal(func(x, slope=0.25), want)  # the fast path
        np.testing.assert_array_equal(func(x.T, slope=0.25), want.T)  # the general path
        out = np.empty_like(x)
        assert func(x, out, slope=0.25) is out
        np.testing.assert_array_equal(out, want)
    assert func(np.float32(-2.0), slope=0.5) == -1.0
    assert func(np.array([-2, 3]), slope=0.5).dtype == np.float64  # types() of the entry
    with pytest.raises(ValueError, match=r"slope must be a number in \[0, 1\]"):
        func(np.ones(3), slope=2.0)
    with pytest.raises(TypeError, match="has dtype bool"):
        func(np.ones(3, bool))


def test_kernel_entries_are_checked():
    def no_formula():
        """Nothing."""

    with pytest.raises(TypeError, match="expected"):
        _front.elementwise(KERNELS["relu_backward"])(no_formula)
    three = Kernel("three", "relu", ("x", "y", "z"), (), _table._same_as_x, 1)
    import numba

    from fastrelu import _loops

    with pytest.raises(ValueError, match="1 or 2 operands, not 3"):
        _loops.chunk_function(three, numba.float32, ())
