"""``fastrelu study``: does ReLU's subgradient at 0 change backpropagation?

A reproduction, on scikit-learn's bundled 8×8 digits, of the measurement of
Bertoin, Bolte, Gerchinovitz and Pauwels, *Numerical influence of ReLU'(0)
on backpropagation* (NeurIPS 2021).  A multi-layer perceptron is trained for
one epoch of minibatch SGD twice, from the same initial weights over the same
minibatches, once with ReLU'(0) = 0 and once with ReLU'(0) = 1.  The two runs
are identical up to the first step whose gradients differ, so the study
trains with 0 and, at every step with an exact zero among the ReLU inputs,
backpropagates with 1 as well and compares the gradients bit for bit.  It
reports the fraction of initialisations whose gradients differed at some
step, and the rate of exact zeros among the ReLU inputs.

Each precision computes in its own dtype: the activations and their
gradients with fastrelu's kernels in that dtype, the matrix products in that
dtype, except that in float16 a layer's products and bias are summed in
float32 and rounded once to float16, as half-precision matrix products are on
GPUs and in PyTorch's ``Linear``.

A second measurement asks whether the choice changes where training ends: a
few epochs from several seeds with ReLU'(0) in {0, 0.5, 1}, and the test
accuracy reached.  Bertoin et al.'s code sets the gradient at an exact zero to
the constant ReLU'(0) rather than ReLU'(0) times the upstream gradient; that
variant is trained too, as an ablation.
"""

import math
import textwrap
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numba import njit

import fastrelu

PRECISIONS = ("float16", "float32", "float64")
DEPTHS = (1, 2, 3, 5, 6)
WIDTHS = (16, 64, 256, 512, 1024)
DEPTH, WIDTH = 3, 256  # the network of the paper's headline numbers
BATCH = 128
LEARNING_RATE = 0.5
TEST_SIZE = 450  # of the 1797 digits
TRAIN_SIZE = 1797 - TEST_SIZE

# Bertoin et al.'s numbers for MNIST MLPs (one epoch, 1000 initialisations):
# the percentage of initialisations whose backpropagation differed between
# ReLU'(0) = 0 and 1.
PUBLISHED = {
    "headline": {"float16": 100.0, "float32": 45.0, "float64": 0.0},
    "depth": {
        "float16": {1: 87.0, 2: 100.0, 3: 100.0, 5: 100.0, 6: 100.0},
        "float32": {1: 5.0, 2: 26.0, 3: 46.0, 5: 65.0, 6: 70.0},
    },
    "width": {"float32": {16: 2.0, 64: 16.0, 256: 48.0, 512: 58.0, 1024: 87.0}},
}

MISSING = (
    "fastrelu study needs scikit-learn for its bundled digits data set, and it is not installed: "
    "pip install 'fastrelu[study]'"
)


def load_digits():
    """scikit-learn's 8x8 digits, split by a fixed permutation into
    ``(X_train, y_train, X_test, y_test)``.

    The pixels, integers from 0 to 16, are scaled to [-1, 1]: multiples of
    1/8, exact in every precision, and centred, which SGD from PyTorch's
    default initialisation needs to train in a few epochs.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError(MISSING) from error
    digits = sklearn_digits()
    X, y = digits.data / 8.0 - 1.0, digits.target
    order = np.random.default_rng(20211206).permutation(len(y))
    X, y = X[order], y[order]
    return X[TEST_SIZE:], y[TEST_SIZE:], X[:TEST_SIZE], y[:TEST_SIZE]


# NumPy's conversions between float16 and float32 take a few nanoseconds an
# element and would dominate the float16 runs; these take a fraction of one.
@njit
def _round_to_half(a, out):
    """The float16 bit patterns nearest to the float32 values *a* (ties to
    even, overflow to inf), written to *out* (uint16)."""
    bits = a.view(np.uint32)
    for i in range(a.size):
        u = bits[i]
        sign = (u >> 16) & 0x8000
        magnitude = u & 0x7FFFFFFF
        if magnitude > 0x7F800000:  # NaN
            h = 0x7E00
        elif magnitude >= 0x477FF000:  # 65520 and above round to inf
            h = 0x7C00
        elif magnitude >= 0x38800000:  # normal in float16: keep 10 bits of 23
            h = (magnitude - 0x38000000 + 0xFFF + ((magnitude >> 13) & 1)) >> 13
        else:  # subnormal in float16: a multiple of 2**-24
            h = np.uint32(np.rint(abs(a[i]) * np.float32(16777216.0)))
        out[i] = sign | h


@njit
def _widen_half(h, table, out):
    for i in range(h.size):
        out[i] = table[h[i]]


_HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def to_half(a):
    """The float32 array *a* rounded to float16."""
    out = np.empty(a.shape, np.float16)
    _round_to_half(np.ascontiguousarray(a).reshape(-1), out.reshape(-1).view(np.uint16))
    return out


def from_half(a):
    """The float16 array *a* in float32."""
    out = np.empty(a.shape, np.float32)
    _widen_half(np.ascontiguousarray(a).reshape(-1).view(np.uint16), _HALF_TO_SINGLE, out.reshape(-1))
    return out


def initial_weights(sizes, rng):
    """PyTorch's default initialisation of ``Linear`` layers, in float64:
    weights and biases uniform in ±1/sqrt(fan_in)."""
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        bound = 1 / math.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        biases.append(rng.uniform(-bound, bound, fan_out))
    return weights, biases


class Network:
    """A perceptron computing in *dtype*: fastrelu's ReLU, softmax
    cross-entropy, plain minibatch SGD.

    Arithmetic other than the activations is done in ``accumulate`` (float32
    for float16, else *dtype* itself) and rounded once to *dtype*, as GPUs
    and PyTorch do for half precision; the weights are kept in that wider
    type, holding values of *dtype*.
    """

    def __init__(self, weights, biases, dtype):
        self.dtype = np.dtype(dtype)
        self.accumulate = np.dtype(np.float32) if self.dtype == np.float16 else self.dtype
        self.W = [self._wide(self._rounded(w)) for w in weights]
        self.b = [self._wide(self._rounded(b)) for b in biases]

    def _rounded(self, a):
        """*a* rounded to the dtype."""
        if self.dtype == np.float16 and a.dtype == np.float32:
            return to_half(a)
        return a.astype(self.dtype, copy=False)  # directly: no double rounding

    def _wide(self, a):
        """*a* in the accumulating type (exact)."""
        if self.dtype == np.float16:
            return from_half(a) if a.dtype == np.float16 else a.astype(np.float32, copy=False)
        return a.astype(self.accumulate, copy=False)

    def forward(self, X):
        """The logits, every ReLU layer's input (in the dtype) and every
        layer's input (in the accumulating type)."""
        h = self._wide(X)
        pre, inputs = [], [h]
        for W, b in zip(self.W[:-1], self.b[:-1]):
            pre.append(self._rounded(h @ W + b))
            h = self._wide(fastrelu.relu(pre[-1]))
            inputs.append(h)
        return self._rounded(h @ self.W[-1] + self.b[-1]), pre, inputs

    def loss_gradient(self, logits, y):
        """The gradient of the mean cross-entropy with respect to the logits."""
        z = self._wide(logits)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        return self._rounded(p / len(y))

    def backward(self, pre, inputs, grad, at_zero, rule="scaled"):
        """The gradients of the weights and biases, in the dtype, last layer
        first.  *rule* is ``"scaled"``: ``at_zero`` times the upstream
        gradient at an exact zero, fastrelu's and the frameworks' rule; or
        ``"constant"``: the constant ``at_zero`` there, as in Bertoin et
        al.'s code."""
        grads = []
        g = self._wide(grad)
        for layer in range(len(self.W) - 1, -1, -1):
            grads.append(self._rounded(inputs[layer].T @ g))
            grads.append(self._rounded(g.sum(axis=0)))
            if layer:
                z = pre[layer - 1]
                upstream = self._rounded(g @ self.W[layer].T)
                dz = fastrelu.relu_backward(z, upstream, at_zero=at_zero if rule == "scaled" else 0.0)
                if rule == "constant":
                    dz[z == 0] = at_zero
                g = self._wide(dz)
        return grads

    def update(self, grads, lr):
        """One SGD step with the gradients of :meth:`backward`."""
        lr = self.accumulate.type(lr)
        for layer, (dW, db) in enumerate(zip(grads[-2::-2], grads[::-2])):
            self.W[layer] = self._wide(self._rounded(self.W[layer] - lr * self._wide(dW)))
            self.b[layer] = self._wide(self._rounded(self.b[layer] - lr * self._wide(db)))

    def accuracy(self, X, y):
        return float((np.argmax(self.forward(X)[0], axis=1) == y).mean())


def _same(a, b):
    """Whether two arrays hold the same bits."""
    return a.tobytes() == b.tobytes()


@dataclass
class Differences:
    """How often backpropagation with ReLU'(0) = 0 and 1 differed."""

    dtype: str
    depth: int
    width: int
    inits: int = 0
    differing: int = 0  # initialisations whose gradients differed at some step
    zeros: int = 0  # exact zeros among the ReLU inputs, over every run's epoch
    relu_inputs: int = 0

    @property
    def fraction(self):
        return self.differing / self.inits if self.inits else 0.0

    @property
    def zero_rate(self):
        return self.zeros / self.relu_inputs if self.relu_inputs else 0.0


def _train(net, data, rng, epochs, at_zero=0.0, rule="scaled", compare=False):
    """Minibatch SGD on the training data in the order *rng* draws; with
    *compare*, backpropagate with ReLU'(0) = 1 as well at every step with an
    exact zero until the gradients differ.  Returns ``(differed, zeros,
    relu_inputs)``."""
    X, y = data[0], data[1]
    differed, zeros, inputs = False, 0, 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            rows = order[start : start + BATCH]
            logits, pre, layer_inputs = net.forward(X[rows])
            step_zeros = sum(int(np.count_nonzero(z == 0)) for z in pre)
            zeros += step_zeros
            inputs += sum(z.size for z in pre)
            grad = net.loss_gradient(logits, y[rows])
            grads = net.backward(pre, layer_inputs, grad, at_zero, rule)
            if compare and step_zeros and not differed:
                other = net.backward(pre, layer_inputs, grad, 1.0)
                differed = not all(_same(a, b) for a, b in zip(grads, other))
            net.update(grads, LEARNING_RATE)
    return differed, zeros, inputs


def _network(data, dtype, depth, width, rng):
    sizes = [data[0].shape[1]] + [width] * depth + [10]
    return Network(*initial_weights(sizes, rng), dtype)


def differences(data, dtype, depth, width, inits, seed=0, progress=None):
    """Train *inits* initialisations for one epoch each; their
    :class:`Differences`."""
    result = Differences(dtype, depth, width)
    for init in range(inits):
        rng = np.random.default_rng([seed, depth, width, init])
        net = _network(data, dtype, depth, width, rng)
        differed, zeros, inputs = _train(net, data, rng, 1, compare=True)
        result.inits += 1
        result.differing += differed
        result.zeros += zeros
        result.relu_inputs += inputs
        if progress is not None:
            progress()
    return result


# The runs of the training measurement: (label, at_zero, rule).
VARIANTS = (
    ("0", 0.0, "scaled"),
    ("0.5", 0.5, "scaled"),
    ("1", 1.0, "scaled"),
    ("0.5, constant", 0.5, "constant"),
    ("1, constant", 1.0, "constant"),
)


@dataclass
class Training:
    """Where the runs of one variant and precision ended."""

    dtype: str
    label: str
    accuracies: list = field(default_factory=list)  # test accuracy of each seed's run
    changed: int = 0  # runs whose final weights differ from those with ReLU'(0) = 0
    zeros: int = 0
    relu_inputs: int = 0


def training(data, dtype, seeds, epochs, depth=DEPTH, width=WIDTH, seed=0, progress=None):
    """Train every variant from *seeds* seeds for *epochs* epochs; a list of
    :class:`Training`, one per variant."""
    results = [Training(dtype, label) for label, _, _ in VARIANTS]
    for run_seed in range(seeds):
        baseline = None
        for result, (_, at_zero, rule) in zip(results, VARIANTS):
            rng = np.random.default_rng([seed, 1 << 20, depth, width, run_seed])
            net = _network(data, dtype, depth, width, rng)
            _, zeros, inputs = _train(net, data, rng, epochs, at_zero, rule)
            weights = b"".join(w.tobytes() for w in net.W + net.b)
            baseline = weights if baseline is None else baseline
            result.changed += weights != baseline
            result.accuracies.append(net.accuracy(data[2], data[3]))
            result.zeros += zeros
            result.relu_inputs += inputs
            if progress is not None:
                progress()
    return results


# The size of an epoch of MNIST, the paper's data set, in examples.
MNIST_EPOCH = 60000


_Z95 = NormalDist().inv_cdf(0.975)


def wilson(k, n, z=_Z95):
    """The Wilson score interval of a proportion *k* of *n*, at 95%."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def projected(fraction, examples):
    """The fraction of runs that would differ over an epoch of MNIST's size,
    were each stretch of *examples* examples an independent chance."""
    return 1 - (1 - fraction) ** (MNIST_EPOCH / examples)


def _percent(value):
    return f"{100 * value:.1f}%"


def format_differences(results, examples):
    """The table of the headline measurement: one :class:`Differences` per precision."""
    published = PUBLISHED["headline"]
    zeros_published = {"float16": "about 1e-7", "float32": "below 1e-8", "float64": "-"}
    lines = [
        f"{'':<9} {'differing runs':<19} {'95% interval':<14} {'exact zeros':>11} "
        f"{'at 60000 examples':>19}   {'MNIST: differing':>16} {'exact zeros':>11}"
    ]
    for r in results:
        lo, hi = wilson(r.differing, r.inits)
        count = f"{_percent(r.fraction)} ({r.differing} of {r.inits})"
        interval = f"{100 * lo:.1f}-{100 * hi:.1f}%"
        far = [100 * projected(f, examples) for f in (r.fraction, lo, hi)]
        far = f"{far[0]:.1f}% ({far[1]:.0f}-{far[2]:.0f}%)"
        lines.append(
            f"{r.dtype:<9} {count:<19} {interval:<14} {r.zero_rate:>11.2g} {far:>19}   "
            f"{published[r.dtype]:>15.0f}% {zeros_published[r.dtype]:>11}"
        )
    return "\n".join(lines)


def format_sweep(results, axis):
    """The table of a sweep over *axis* ("depth" or "width"), with Bertoin
    et al.'s numbers in brackets where they give them."""
    values = sorted({getattr(r, axis) for r in results})
    lines = [f"{axis + ':':<9} " + " ".join(f"{v:>13}" for v in values)]
    for dtype in PRECISIONS:
        row = {getattr(r, axis): r for r in results if r.dtype == dtype}
        if not row:
            continue
        published = PUBLISHED[axis].get(dtype, {})
        cells = []
        for v in values:
            cell = _percent(row[v].fraction) if v in row else "-"
            if v in published:
                cell += f" ({published[v]:.0f}%)"
            cells.append(f"{cell:>13}")
        lines.append(f"{dtype:<9} " + " ".join(cells))
    return "\n".join(lines)


def format_training(results):
    """The table of the training measurement: one :class:`Training` per
    precision and variant."""
    head = ("", "ReLU'(0)", "test accuracy", "ends elsewhere", "exact zeros")
    lines = ["{:<9} {:<14} {:>15} {:>14} {:>11}".format(*head)]
    for r in results:
        acc = np.asarray(r.accuracies)
        elsewhere = f"{r.changed} of {len(acc)}" if r.label != VARIANTS[0][0] else "-"
        rate = r.zeros / r.relu_inputs if r.relu_inputs else 0.0
        accuracy = f"{acc.mean():.3f} ± {acc.std():.3f}"
        lines.append(f"{r.dtype:<9} {r.label:<14} {accuracy:>15} {elsewhere:>14} {rate:>11.2g}")
    return "\n".join(lines)


def plot(sweeps, path):
    """Write the fraction of differing runs against depth and against width,
    one line per precision and Bertoin et al.'s dashed, to the PNG *path*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 4), squeeze=False)
    for ax, (axis, results) in zip(axes[0], sweeps.items()):
        for i, dtype in enumerate(PRECISIONS):
            row = sorted((getattr(r, axis), r.fraction) for r in results if r.dtype == dtype)
            if row:
                v, f = zip(*row)
                ax.plot(v, 100 * np.asarray(f), "o-", color=f"C{i}", label=f"{dtype}, digits")
            published = sorted(PUBLISHED[axis].get(dtype, {}).items())
            if published:
                v, f = zip(*published)
                ax.plot(v, f, "s--", color=f"C{i}", alpha=0.6, label=f"{dtype}, Bertoin et al. (MNIST)")
        if axis == "width":
            ax.set_xscale("log", base=2)
        values = sorted({getattr(r, axis) for r in results} | set(PUBLISHED[axis].get("float32", {})))
        ax.set_xticks(values, [str(v) for v in values])
        ax.set_xlabel("hidden layers" if axis == "depth" else "units per hidden layer")
        ax.set_ylabel("runs whose gradients differed (%)")
        ax.set_ylim(-3, 103)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class Plan:
    """What one ``fastrelu study`` computes."""

    inits: int = 300  # initialisations per network and precision
    sweeps: tuple = ()  # "depth", "width"
    seeds: int = 5  # of the training measurement
    epochs: int = 10  # of the training measurement
    seed: int = 0
    depths: tuple = DEPTHS
    widths: tuple = WIDTHS

    @classmethod
    def quick(cls, inits=None, sweeps=(), seed=0):
        """A run of a few seconds, for tests."""
        return cls(inits or 12, sweeps, seeds=2, epochs=1, seed=seed, depths=(1, 2), widths=(16, 64))

    def shapes(self, axis):
        """The (depth, width) of the networks of the sweep over *axis*."""
        if axis == "depth":
            return [(d, WIDTH) for d in self.depths]
        return [(DEPTH, w) for w in self.widths]

    def networks(self):
        """The (depth, width) of every network of the one-epoch measurement."""
        shapes = [(DEPTH, WIDTH)] + [shape for axis in self.sweeps for shape in self.shapes(axis)]
        return list(dict.fromkeys(shapes))

    def steps(self):
        """Units of progress: one per initialisation and per training run."""
        return len(PRECISIONS) * (len(self.networks()) * self.inits + self.seeds * len(VARIANTS))


def run(plan, data, progress=None):
    """Every measurement of *plan* on *data* (:func:`load_digits`):
    ``(headline, sweeps, training)``, a list of :class:`Differences` per
    precision, a dict from "depth" and "width" to lists of
    :class:`Differences`, and a list of :class:`Training`."""
    # BLAS's threads use the cores for the matrix products; arrays of a few
    # thousand elements are not worth handing to fastrelu's threads too.
    with fastrelu.config.set(num_threads=1):
        measured = {
            (dtype, depth, width): differences(data, dtype, depth, width, plan.inits, plan.seed, progress)
            for depth, width in plan.networks()
            for dtype in PRECISIONS
        }
        trained = [
            r
            for dtype in PRECISIONS
            for r in training(data, dtype, plan.seeds, plan.epochs, seed=plan.seed, progress=progress)
        ]
    headline = [measured[dtype, DEPTH, WIDTH] for dtype in PRECISIONS]
    sweeps = {
        axis: [measured[dtype, depth, width] for dtype in PRECISIONS for depth, width in plan.shapes(axis)]
        for axis in plan.sweeps
    }
    return headline, sweeps, trained


def _paragraph(text):
    return textwrap.fill(text, 100)


def introduction(plan):
    """What the command prints before it trains."""
    return _paragraph(
        f"ReLU'(0) = 0 against 1 in backpropagation: multi-layer perceptrons on scikit-learn's 8x8 "
        f"digits ({TRAIN_SIZE} training examples), minibatch SGD (batch {BATCH}, learning rate "
        f"{LEARNING_RATE}) from PyTorch's default initialisation, seed {plan.seed}."
    )


def report(plan, headline, sweeps, trained):
    """The tables of :func:`run`'s results, each under what it shows."""
    parts = [
        _paragraph(
            f"Runs whose gradients differed at some step of one epoch, of {plan.inits} "
            f"initialisations of {DEPTH} hidden layers of {WIDTH} ReLUs. Exact zeros: their rate "
            "among the ReLU inputs. At 60000 examples: projected to an epoch of MNIST's size. "
            "MNIST: Bertoin et al.'s numbers."
        ),
        format_differences(headline, TRAIN_SIZE),
    ]
    for axis, results in sweeps.items():
        shape = f"of {WIDTH} ReLUs" if axis == "depth" else f"{DEPTH} hidden layers"
        parts += [
            _paragraph(
                f"Runs whose gradients differed, by {axis} ({shape}, {plan.inits} initialisations; "
                "Bertoin et al.'s on MNIST in brackets):"
            ),
            format_sweep(results, axis),
        ]
    epochs = f"{plan.epochs} epoch{'s' if plan.epochs > 1 else ''}"
    parts += [
        _paragraph(
            f"Where training ends: {epochs} from {plan.seeds} seeds, test accuracy on {TEST_SIZE} "
            "held-out digits (mean ± standard deviation). Ends elsewhere: runs whose final weights "
            "differ from those with ReLU'(0) = 0. Constant: the gradient at an exact zero set to "
            "ReLU'(0) itself, as in Bertoin et al.'s code."
        ),
        format_training(trained),
    ]
    return "\n\n".join(parts)
