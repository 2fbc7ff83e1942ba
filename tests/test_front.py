"""The public functions' plumbing: their signatures, the fast path and the
general path, and the switch-over sizes of ``fastrelu.config``.

The fast path (``fastrelu._front``) serves native NumPy arrays of a compiled
dtype, contiguous in one order, with no broadcasting; everything else goes
to the general path.  Both must give the same bits, and the choice must
never show: errors, dtypes and layouts are those of the general path.
"""

import inspect
import pickle

import numpy as np
import pytest

import fastrelu
from fastrelu import _front, _kernels, config
from fastrelu._table import KERNELS

SHARED = ["out", "device", "stream"]


def call(name, *operands, **kwargs):
    return getattr(fastrelu, name)(*operands, **kwargs)


def operands(name, dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    found = []
    for _ in KERNELS[name].operands:
        a = (rng.standard_normal(shape) * 4).round(1).astype(dtype)
        if a.size:
            a.flat[:: max(1, a.size // 7)] = 0  # exact zeros: the kink of ReLU
        found.append(a)
    return found


@pytest.fixture
def spy_general(monkeypatch):
    """The arguments of every call that took the general path."""
    seen = []
    for name in KERNELS:
        namespace = getattr(fastrelu, name).__globals__
        real = namespace["general"]

        def general(kernel, objects, *rest, real=real):
            seen.append(kernel.name)
            return real(kernel, objects, *rest)

        monkeypatch.setitem(namespace, "general", general)
    return seen


@pytest.mark.parametrize("name", list(KERNELS))
def test_public_function_has_its_documented_signature(name):
    func = getattr(fastrelu, name)
    params = inspect.signature(func).parameters
    kernel = KERNELS[name]
    assert list(params)[: len(kernel.operands)] == list(kernel.operands)
    assert list(params)[len(kernel.operands)] == "out"
    assert list(params)[-2:] == ["device", "stream"]
    keyword_only = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keyword_only[-2:] == ["device", "stream"]
    assert func.__module__ == "fastrelu.activations" and func.__qualname__ == name
    assert "{device_parameters}" not in func.__doc__ and "stream : optional" in func.__doc__
    assert pickle.loads(pickle.dumps(func)) is func  # Dask ships them to workers by name


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_fast_and_general_paths_give_the_same_bits(spy_general, name, dtype, ndim):
    if dtype == "int32" and name.startswith("softplus"):
        pytest.skip("softplus of integers computes in float64: the general path")
    shape = (5, 7, 3)[:ndim]
    args = operands(name, dtype, shape)
    fast = call(name, *args)
    assert spy_general == []
    out = np.full(shape, 9, dtype)
    assert call(name, *args, out=out) is out and spy_general == []
    general = call(name, *args, device="cpu")  # device= takes the general path
    assert spy_general == [name]
    assert fast.dtype == general.dtype and fast.shape == general.shape
    assert fast.tobytes() == general.tobytes() == out.tobytes()


class _Subclass(np.ndarray):
    pass


def _layouts(name, dtype):
    """Calls the fast path must decline, with the operands they pass."""
    x, *rest = operands(name, dtype, (6, 4))
    big = operands(name, dtype, (12, 8), seed=1)
    yield "strided", [x[:, ::2], *(a[:, ::2] for a in rest)], {}
    yield "reversed", [x[::-1], *(a[::-1] for a in rest)], {}
    yield "fortran", [np.asfortranarray(x), *rest], {}
    yield "subclass", [x.view(_Subclass), *rest], {}
    yield "non-native", [x.astype(x.dtype.newbyteorder()), *rest], {}
    yield "float16", [x.astype(np.float16), *(a.astype(np.float16) for a in rest)], {}
    yield "list", [x.tolist(), *rest], {}
    yield "scalar", [x[0, 0], *(a[0, 0] for a in rest)], {}
    yield "out fortran", [x, *rest], {"out": np.asfortranarray(np.zeros_like(x))}
    yield "out strided", [x, *rest], {"out": np.zeros_like(big[0])[::2, ::2]}
    if rest:
        yield "broadcast", [x, rest[0][:1]], {}
        yield "python float grad", [x, 1.5], {}


@pytest.mark.parametrize("name", list(KERNELS))
def test_calls_the_fast_path_declines_are_computed_by_the_general_path(spy_general, name):
    for label, args, kwargs in _layouts(name, np.float32):
        spy_general.clear()
        got = call(name, *args, **kwargs)
        assert spy_general == [name], label
        copies = [a if type(a) is float else np.array(a) for a in args]  # contiguous, native
        want = call(name, *copies, device="cpu")
        if "out" in kwargs:
            assert got is kwargs["out"]
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=label)


@pytest.mark.parametrize("shift", [1, -1, 3])
@pytest.mark.parametrize("name", list(KERNELS))
def test_partial_overlap_with_out_is_read_before_it_is_written(name, shift):
    n = 5000
    buf = np.random.default_rng(2).standard_normal(n + 3).astype(np.float32)
    a, out = (buf[shift:][:n], buf[:n]) if shift > 0 else (buf[:n], buf[-shift:][:n])
    args = [a] + [np.ones(n, np.float32)] * (len(KERNELS[name].operands) - 1)
    want = call(name, *(np.array(x) for x in args))
    assert call(name, *args, out=out) is out
    np.testing.assert_array_equal(out, want)


def test_the_general_paths_launch_refuses_arrays_the_entry_declines():
    """The general path copies an input away from a partial overlap before it
    launches; were one to reach the entry, it is an error, not an output
    silently left as it was."""
    buf = np.linspace(-1.0, 1.0, 11)
    before = buf.copy()
    with pytest.raises(RuntimeError, match="declined"):
        _kernels.launch(KERNELS["relu"], [buf[:10], buf[1:]], ())
    np.testing.assert_array_equal(buf, before)


@pytest.mark.parametrize("name", list(KERNELS))
def test_fast_path_errors_are_the_general_paths(name):
    args = operands(name, np.float32, (4, 3))
    readonly = np.zeros((4, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        call(name, *args, out=readonly)
    with pytest.raises(TypeError, match="out has dtype float64"):
        call(name, *args, out=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\)"):
        call(name, *args, out=np.zeros((3, 4), np.float32))


def test_keyword_arguments_are_checked_whatever_the_fast_path_holds():
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    g = np.ones_like(x)
    assert fastrelu.relu_backward(x, g, at_zero=1.0).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="at_zero must be a real number, got True"):
        fastrelu.relu_backward(x, g, at_zero=True)  # equal to 1.0 as a dict key
    with pytest.raises(ValueError, match="beta must be a number"):
        fastrelu.softplus(x, beta=float("nan"))
    np.testing.assert_array_equal(fastrelu.softplus(x, beta=2), fastrelu.softplus(x, beta=2.0))
    with pytest.raises(ValueError, match="threshold must be a real number"):
        fastrelu.softplus(x, threshold=[1.0])  # unhashable: no fast-path key


def test_the_fast_path_keeps_a_bounded_table(monkeypatch):
    monkeypatch.setattr(_front, "_FAST_MAX", 8)
    _front._forget()
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    for k in range(20):
        beta = 1.0 + k / 16
        np.testing.assert_array_equal(
            fastrelu.softplus(x, beta=beta), fastrelu.softplus(x, beta=beta, device="cpu")
        )
        assert len(_front.FAST["softplus"]) <= 8


@pytest.mark.parametrize("name", list(KERNELS))
def test_a_changed_parallel_size_takes_effect_at_the_next_call(name):
    from fastrelu import _pool

    def splits(args):
        before = _pool.jobs()
        got = call(name, *args)
        count = _pool.jobs() - before
        np.testing.assert_array_equal(got, want)
        return count

    args = operands(name, np.float32, (2**13,))
    want = call(name, *args, device="cpu")
    with config.set(num_threads=2, parallel_min_size={name: 2**20}):
        assert splits(args) == 0
        config.set(parallel_min_size={name: 2**12})
        assert splits(args) == 1
        with config.set(parallel_min_size={name: 2**20}):
            assert splits(args) == 0
        assert splits(args) == 1  # the block's end brought 2**12 back
        with config.set(parallel_min_chunk=2**13):  # too small to split
            assert splits(args) == 0
        assert splits(args) == 1
    assert config.PARALLEL_MIN_SIZE[name] == KERNELS[name].parallel_min_size


def test_parallel_sizes_are_checked():
    before = dict(config.PARALLEL_MIN_SIZE)
    for bad in (-1, 1.5, True, "4096", None):
        with pytest.raises(ValueError, match=r"parallel_min_size\['relu'\] must be a non-negative integer"):
            config.set(parallel_min_size={"relu": bad})
    with pytest.raises(ValueError, match="no kernel named 'relux'"):
        config.set(parallel_min_size={"relux": 1})
    with pytest.raises(TypeError, match=r"read-only: use fastrelu\.config\.set\(parallel_min_size="):
        config.PARALLEL_MIN_SIZE["relu"] = 1
    with pytest.raises(TypeError, match="read-only"):
        del config.PARALLEL_MIN_SIZE["relu"]
    with pytest.raises(AttributeError, match="read-only"):
        config.PARALLEL_MIN_SIZE = {"relu": 1}
    assert dict(config.PARALLEL_MIN_SIZE) == before
    assert set(config.PARALLEL_MIN_SIZE) == set(KERNELS)
