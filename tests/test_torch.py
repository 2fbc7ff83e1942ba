"""PyTorch: CPU tensors in and out of the four functions, and fastrelu.torch's
operators against PyTorch's own, with autograd and torch.compile."""

import math
import subprocess
import sys

import numpy as np
import pytest

import fastrelu

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastrelu.torch")
F = torch.nn.functional

EDGES = [-np.inf, -3.5, -1e-300, -0.0, 0.0, 5e-324, 2.0, np.finfo(np.float64).max, np.inf, np.nan]


def _relu_reference(x):
    """max(x, 0) in float64 with +0 for -0 and NaN kept: fastrelu's documented relu."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isnan(x), x, np.where(x > 0, x, 0.0))


# --- Same kind in, same kind out ----------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64, torch.int32, torch.int64])
def test_a_cpu_tensor_gives_a_tensor(dtype):
    values = torch.tensor(np.random.default_rng(1).normal(size=(7, 5)) * 10).to(dtype)
    y = fastrelu.relu(values)
    assert isinstance(y, torch.Tensor) and y.dtype == dtype and y.shape == values.shape
    expected = torch.relu(values)
    assert torch.equal(y, expected)


def test_tensor_edge_values_views_and_shapes():
    x = torch.tensor(EDGES, dtype=torch.float64)
    y = fastrelu.relu(x)
    np.testing.assert_array_equal(y.numpy(), _relu_reference(EDGES))
    assert not torch.signbit(y[3])  # -0.0 gives +0.0
    base = torch.tensor(np.random.default_rng(2).normal(size=(6, 8)), dtype=torch.float32)
    for view in (base.T, base[::2, 1::3], base[:, 0], base[0, 0], base[:0]):
        got = fastrelu.softplus(view)
        assert isinstance(got, torch.Tensor) and got.shape == view.shape
        reference = np.logaddexp(0, view.numpy().astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(got.numpy(), reference, rtol=4e-7)


def test_out_is_a_tensor_written_in_place():
    x = torch.tensor([-1.0, 0.5, -0.0, 3.0])
    address = x.data_ptr()
    assert fastrelu.relu(x, out=x) is x
    assert x.data_ptr() == address and x.tolist() == [0.0, 0.5, 0.0, 3.0]
    g = torch.full((4,), 2.0)
    o = torch.empty(4)
    assert fastrelu.relu_backward(torch.tensor([-1.0, 0.0, 1.0, np.nan]), g, out=o, at_zero=0.5) is o
    np.testing.assert_array_equal(o.numpy(), [0.0, 1.0, 2.0, np.nan])


def test_tensors_mix_with_numpy_and_python_numbers():
    x = torch.tensor([-1.0, 2.0])
    got = fastrelu.relu_backward(x, np.array([3.0, 4.0], dtype=np.float32))
    assert isinstance(got, torch.Tensor) and got.tolist() == [0.0, 4.0]
    got = fastrelu.softplus_backward(np.zeros(2), torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert isinstance(got, torch.Tensor) and got.tolist() == [1.0, 2.0]


def test_a_tensor_that_requires_grad_is_refused_while_autograd_records():
    x = torch.ones(3, requires_grad=True)
    for call in (lambda: fastrelu.relu(x), lambda: fastrelu.relu_backward(torch.ones(3), 1.0, out=x)):
        with pytest.raises(TypeError, match=r"requires grad.*fastrelu\.torch"):
            call()
    with torch.no_grad():
        y = fastrelu.relu(x)
    assert y.grad_fn is None and not y.requires_grad and y.tolist() == [1.0, 1.0, 1.0]


def test_bfloat16_and_other_devices_are_clear_errors():
    before = torch.tensor([-1.0, 1.0])
    with pytest.raises(TypeError, match="bfloat16"):
        fastrelu.relu(torch.ones(2, dtype=torch.bfloat16), out=before)
    assert before.tolist() == [-1.0, 1.0]
    with pytest.raises(TypeError, match="meta"):
        fastrelu.relu(torch.ones(2, device="meta"))


# --- fastrelu.torch -----------------------------------------------------------


def _leaf(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_matches_torch_relu_forward_and_backward(dtype):
    rng = np.random.default_rng(4)
    values = rng.normal(size=(64, 33))
    values[rng.random(values.shape) < 0.1] = 0.0  # exact zeros, where at_zero=0 agrees with PyTorch
    x, ref = _leaf(values, dtype), _leaf(values, dtype)
    upstream = torch.tensor(rng.normal(size=values.shape), dtype=dtype)
    y = ft.relu(x)
    expected = torch.relu(ref)
    assert torch.equal(y, expected)
    y.backward(upstream)
    expected.backward(upstream)
    assert torch.equal(x.grad, ref.grad)


def test_relu_backward_semantics_differ_from_torch_where_documented():
    x = _leaf([-2.0, -0.0, 0.0, 3.0, math.nan])
    upstream = torch.tensor([math.inf, 4.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    ft.relu(x, at_zero=0.25).backward(upstream)
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 5.0, math.nan])
    ref = _leaf([-2.0, -0.0, 0.0, 3.0, math.nan])
    torch.relu(ref).backward(upstream)
    assert not math.isnan(ref.grad[4])  # PyTorch passes a number at NaN; fastrelu keeps the NaN
    y = ft.relu(torch.tensor([-0.0]))
    assert not torch.signbit(y).item()  # +0.0, as fastrelu.relu


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_with_a_threshold_matches_torch_softplus(dtype, beta):
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(scale=8, size=500), [-800.0, 0.0, 25.0, 900.0]])
    x, ref = _leaf(values, dtype), _leaf(values, dtype)
    upstream = torch.tensor(rng.normal(size=values.shape), dtype=dtype)
    y = ft.softplus(x, beta=beta, threshold=20.0)
    expected = F.softplus(ref, beta=beta, threshold=20.0)
    # PyTorch's float32 gradient is itself a few float32 ULP off.
    tol = dict(rtol=1e-5, atol=0) if dtype == torch.float32 else dict(rtol=1e-14, atol=0)
    torch.testing.assert_close(y, expected, **tol)
    y.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(x.grad, ref.grad, **tol)


def test_softplus_without_threshold_is_the_exact_function():
    x = _leaf([20.5, 30.0, -30.0])
    y = ft.softplus(x)
    exact = [math.log1p(math.exp(v)) for v in (20.5, 30.0, -30.0)]
    np.testing.assert_allclose(y.detach().numpy(), exact, rtol=1e-15)
    assert y[0].item() != 20.5  # PyTorch's default threshold returns x itself there
    y.sum().backward()
    sigmoid = [1 / (1 + math.exp(-v)) for v in (20.5, 30.0, -30.0)]
    np.testing.assert_allclose(x.grad.numpy(), sigmoid, rtol=1e-15)


def test_gradcheck_in_float64():
    rng = np.random.default_rng(6)
    x = _leaf(rng.normal(size=(6, 5)))
    assert torch.autograd.gradcheck(lambda t: ft.relu(t, at_zero=0.5), (x,))
    for beta, threshold in ((1.0, None), (2.5, None), (0.7, 1.0)):
        assert torch.autograd.gradcheck(lambda t, b=beta, th=threshold: ft.softplus(t, b, th), (x,))


def test_no_grad_inputs_without_grad_and_non_contiguous_views():
    base = torch.tensor(np.random.default_rng(7).normal(size=(8, 6)), dtype=torch.float32)
    for view in (base.T, base[::2, 1::2]):
        assert torch.equal(ft.relu(view), torch.relu(view))
        torch.testing.assert_close(ft.softplus(view, threshold=20.0), F.softplus(view), rtol=2e-6, atol=0)
    with torch.no_grad():
        y = ft.relu(_leaf([1.0, -1.0]))
    assert y.grad_fn is None
    y = ft.softplus(torch.ones(3))
    assert not y.requires_grad
    leaf = base.T.clone().requires_grad_()
    ft.relu(leaf, at_zero=1.0).sum().backward()
    assert torch.equal(leaf.grad, (leaf >= 0).float())


def test_float16_rounds_the_float32_result():
    values = np.random.default_rng(8).normal(scale=4, size=1000)
    x = _leaf(values, torch.float16)
    y = ft.softplus(x)
    reference = torch.tensor(np.logaddexp(0, values.astype(np.float16).astype(np.float64))).to(torch.float16)
    assert y.dtype == torch.float16
    assert (y.float() - reference.float()).abs().max() <= torch.finfo(torch.float16).eps * 8
    y.backward(torch.ones_like(y))
    assert x.grad.dtype == torch.float16


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="bfloat16"):
        ft.relu(torch.ones(2, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="int64"):
        ft.softplus(torch.ones(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ft.relu(np.ones(2))
    with pytest.raises(ValueError, match="at_zero"):
        ft.relu(torch.ones(2), at_zero=2.0)
    with pytest.raises(ValueError, match="at_zero"):
        ft.ReLU(at_zero=-0.1)
    with pytest.raises(ValueError, match="beta"):
        ft.Softplus(beta=0.0)
    with pytest.raises(ValueError, match="threshold"):
        ft.softplus(torch.ones(2), threshold=math.nan)


def test_modules_in_a_sequential_model_train():
    torch.manual_seed(0)
    data = torch.randn(64, 5)
    target = (data[:, :1] > 0).float()
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 16), ft.ReLU(at_zero=1.0), torch.nn.Linear(16, 1), ft.Softplus()
    )
    assert "ReLU(at_zero=1.0)" in repr(model) and "Softplus(beta=1.0, threshold=None)" in repr(model)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = F.mse_loss(model(data), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.exhaustive)])
def test_torch_compile_traces_the_operators_without_graph_breaks(backend):
    torch._dynamo.reset()
    torch.manual_seed(1)
    data = torch.randn(32, 4)
    target = torch.randn(32, 1)

    def make(relu):
        torch.manual_seed(2)
        return torch.nn.Sequential(
            torch.nn.Linear(4, 8), relu, torch.nn.Linear(8, 1), ft.Softplus(threshold=20.0)
        )

    eager, compiled = make(ft.ReLU(at_zero=0.5)), make(ft.ReLU(at_zero=0.5))
    step = torch.compile(compiled, fullgraph=True, backend=backend)
    for model, run in ((eager, eager), (compiled, step)):
        optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            optimiser.zero_grad()
            F.mse_loss(run(data), target).backward()
            optimiser.step()
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_operators_are_registered():
    for name in ("relu", "relu_backward", "softplus", "softplus_backward"):
        assert hasattr(torch.ops.fastrelu, name)
    x = torch.tensor([-1.0, 0.0, 2.0])
    torch.library.opcheck(torch.ops.fastrelu.relu.default, (x, 0.5))
    torch.library.opcheck(torch.ops.fastrelu.softplus.default, (x, 1.0, None))
    torch.library.opcheck(torch.ops.fastrelu.relu_backward.default, (x, torch.ones(3), 0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU for PyTorch")
def test_cuda_tensors():
    x = torch.tensor([-1.0, 0.0, 2.0], device="cuda", requires_grad=True)
    ft.relu(x, at_zero=1.0).sum().backward()
    assert x.grad.device == x.device and x.grad.tolist() == [0.0, 1.0, 1.0]
    y = fastrelu.softplus(torch.zeros(2, device="cuda"))
    assert y.is_cuda and torch.allclose(y.cpu(), torch.full((2,), math.log(2.0)))


def test_fastrelu_torch_says_what_is_missing_without_torch():
    code = "import sys\nsys.modules['torch'] = None\nimport fastrelu.torch\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "fastrelu.torch needs PyTorch" in proc.stderr


# --- Keeping the output or a mask instead of the input -----------------------


def _saved_bytes(module, x):
    """The bytes autograd keeps for the backward pass of ``module(x)``."""
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(sizes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_relu_saving_output_or_mask_gives_the_same_gradients(dtype):
    x0 = torch.tensor(np.random.default_rng(7).normal(size=(9, 13)) * 2).round().to(dtype)
    x0[0, :4] = torch.tensor([0.0, -0.0, float("inf"), -float("inf")], dtype=dtype)
    weight = torch.tensor(np.random.default_rng(8).normal(size=13), dtype=dtype)
    weight[0] = float("inf")

    def gradient(at_zero, save):
        x = x0.clone().requires_grad_()
        (ft.ReLU(at_zero, save)(x) * weight).sum().backward()
        return x.grad

    for at_zero, saves in ((0.0, ("output", "mask")), (0.5, ("mask",)), (1.0, ("mask",))):
        expected = gradient(at_zero, "input")
        for save in saves:
            got = gradient(at_zero, save)
            assert got.dtype == dtype
            uint = f"u{got.element_size()}"
            np.testing.assert_array_equal(got.numpy().view(uint), expected.numpy().view(uint))
    x = x0.clone().requires_grad_()
    itemsize = x0.element_size()
    assert _saved_bytes(ft.ReLU(save="input"), x) == x0.numel() * itemsize
    assert _saved_bytes(ft.ReLU(save="output"), x) == x0.numel() * itemsize
    assert _saved_bytes(ft.ReLU(0.5, save="mask"), x) == 9 * 4  # 13 elements a row: 4 bytes
    assert ft.ReLU(0.5, save="mask").extra_repr() == "at_zero=0.5, save='mask'"


def test_save_output_needs_at_zero_0_and_save_is_checked():
    with pytest.raises(ValueError, match="save='output' needs at_zero=0"):
        ft.ReLU(at_zero=0.5, save="output")
    with pytest.raises(ValueError, match="save='output' needs at_zero=0"):
        ft.relu(torch.ones(2), at_zero=1.0, save="output")
    with pytest.raises(ValueError, match="save must be"):
        ft.ReLU(save="x")


def test_saving_a_mask_under_torch_compile():
    x0 = torch.tensor(np.random.default_rng(9).normal(size=(6, 10)), dtype=torch.float32).round()
    for at_zero, save in ((0.0, "output"), (0.5, "mask")):
        expected = x0.clone().requires_grad_()
        (ft.ReLU(at_zero)(expected) * 3).sum().backward()
        x = x0.clone().requires_grad_()
        step = torch.compile(ft.ReLU(at_zero, save), fullgraph=True, backend="aot_eager")
        (step(x) * 3).sum().backward()
        assert torch.equal(x.grad, expected.grad)


def test_the_mask_operators_pass_opcheck():
    x = torch.tensor(np.random.default_rng(10).normal(size=(3, 7)), dtype=torch.float32, requires_grad=True)
    bits = torch.ops.fastrelu.relu_with_mask(x.detach(), 0.0)[1]
    assert bits.dtype == torch.uint8 and tuple(bits.shape) == (3, 2)
    torch.library.opcheck(torch.ops.fastrelu.relu_with_mask.default, (x, 0.5))
    torch.library.opcheck(torch.ops.fastrelu.relu_backward_from_mask.default, (bits, torch.ones(3, 7), 0.5))
    torch.library.opcheck(torch.ops.fastrelu.relu_keeping_output.default, (x,))
