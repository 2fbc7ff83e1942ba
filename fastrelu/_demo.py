"""``fastrelu demo``: does ReLU's subgradient at 0 matter for training?

A small multi-layer perceptron written in NumPy, whose activations and their
gradients are fastrelu's, trains on a synthetic classification task once per
subgradient choice ``at_zero`` in {0, 0.5, 1}, and once with softplus.  Every
run starts from the same weights and sees the minibatches in the same order,
so the runs differ only by the activation, and the count of pre-activations
that were exactly 0 says how often the choice at 0 was even consulted.

Two tasks:

- ``continuous``: standard normal features.  A pre-activation is a sum of
  products of real numbers and is exactly 0 only by coincidence, so the
  choice at 0 is never consulted and the three ReLU runs are identical.
- ``quantised``: sparse small-integer features (counts) and a network whose
  forward pass uses weights and biases rounded to multiples of 1/16, as in
  quantisation-aware training (the gradient reaches the unrounded weights
  unchanged, the "straight-through" estimator), with biases starting at 0.
  Pre-activations then live on a grid, and exact zeros are common.
"""

from dataclasses import dataclass, field

import numpy as np

import fastrelu

TASKS = ("continuous", "quantised")
# (label, activation, at_zero): the runs of each task, in the order shown.
RUNS = (
    ("relu, at_zero=0", "relu", 0.0),
    ("relu, at_zero=0.5", "relu", 0.5),
    ("relu, at_zero=1", "relu", 1.0),
    ("softplus", "softplus", None),
)
FEATURES, HIDDEN, CLASSES = 24, 64, 3
QUANTUM = 1 / 16  # the grid of the quantised task's weights


@dataclass
class Result:
    """One training run: its loss after each epoch and its counts."""

    task: str
    label: str
    losses: list = field(default_factory=list)  # mean training loss per epoch
    train_accuracy: float = 0.0
    test_accuracy: float = 0.0
    zeros: int = 0  # pre-activations exactly 0, over all forward passes in training
    preactivations: int = 0  # pre-activations computed in training


def make_task(task, seed, n_train=4000, n_test=2000):
    """Features and labels ``(X_train, y_train, X_test, y_test)`` of *task*.

    The labels are the argmax of a fixed random "teacher" network of the
    same shape, so that the student can learn them.
    """
    rng = np.random.default_rng([seed, TASKS.index(task)])
    n = n_train + n_test
    if task == "continuous":
        X = rng.standard_normal((n, FEATURES))
    else:
        X = rng.poisson(0.1, (n, FEATURES)).astype(np.float64)  # mostly 0, some 1s
    W1 = rng.standard_normal((FEATURES, 32))
    W2 = rng.standard_normal((32, CLASSES))
    hidden = np.maximum(X @ W1 - X.mean(0) @ W1, 0)  # centred so that every unit is active for some inputs
    logits = hidden @ W2
    y = np.argmax(logits - logits.mean(0), axis=1)  # centred so that no class dominates
    X = X.astype(np.float32)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _initial_weights(seed):
    rng = np.random.default_rng([seed, 99])
    shapes = [(FEATURES, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, CLASSES)]
    weights = [(rng.standard_normal(s) * np.sqrt(2 / s[0])).astype(np.float32) for s in shapes]
    biases = [np.zeros(s[1], np.float32) for s in shapes]
    return weights, biases


def _quantise(a):
    return (np.round(a / QUANTUM) * QUANTUM).astype(np.float32)


def _cross_entropy(logits, y):
    """Mean softmax cross-entropy of *logits* against labels *y*, and its gradient."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -log_p[np.arange(n), y].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), y] -= 1
    return float(loss), grad / n


class MLP:
    """Two hidden layers with fastrelu's activations; plain minibatch SGD."""

    def __init__(self, weights, biases, activation, at_zero, quantised):
        self.W = [w.copy() for w in weights]
        self.b = [b.copy() for b in biases]
        self.activation, self.at_zero, self.quantised = activation, at_zero, quantised

    def _params(self):
        if self.quantised:
            return [_quantise(w) for w in self.W], [_quantise(b) for b in self.b]
        return self.W, self.b

    def _act(self, z):
        return fastrelu.relu(z) if self.activation == "relu" else fastrelu.softplus(z)

    def _act_backward(self, z, grad):
        if self.activation == "relu":
            return fastrelu.relu_backward(z, grad, at_zero=self.at_zero)
        return fastrelu.softplus_backward(z, grad)

    def forward(self, X, params=None):
        """The logits, the pre-activations of the hidden layers, and each
        layer's input; with the weights and biases *params* if given."""
        W, b = self._params() if params is None else params
        pre, inputs = [], [X]
        for layer in range(2):
            pre.append(inputs[-1] @ W[layer] + b[layer])
            inputs.append(self._act(pre[-1]))
        return inputs[-1] @ W[2] + b[2], pre, inputs

    def step(self, X, y, lr):
        """One SGD step on a minibatch; returns the loss and the pre-activations."""
        W, b = self._params()
        logits, pre, inputs = self.forward(X, (W, b))
        loss, grad = _cross_entropy(logits, y)
        for layer in (2, 1, 0):
            dW, db = inputs[layer].T @ grad, grad.sum(axis=0)
            if layer:
                grad = self._act_backward(pre[layer - 1], grad @ W[layer].T)
            self.W[layer] -= lr * dW
            self.b[layer] -= lr * db
        return loss, pre

    def accuracy(self, X, y):
        return float((np.argmax(self.forward(X)[0], axis=1) == y).mean())


def train(task, label, activation, at_zero, seed=0, epochs=20, batch=50, lr=0.1, progress=None):
    """Train one network on *task* and return its :class:`Result`.

    *progress*, if given, is called once per epoch.
    """
    X, y, X_test, y_test = make_task(task, seed)
    weights, biases = _initial_weights(seed)
    net = MLP(weights, biases, activation, at_zero, quantised=task == "quantised")
    order_rng = np.random.default_rng([seed, 7])
    result = Result(task, label)
    for _ in range(epochs):
        order = order_rng.permutation(len(y))
        losses = []
        for start in range(0, len(y), batch):
            rows = order[start : start + batch]
            loss, pre = net.step(X[rows], y[rows], lr)
            losses.append(loss)
            for z in pre:
                result.zeros += int(np.count_nonzero(z == 0))
                result.preactivations += z.size
        result.losses.append(float(np.mean(losses)))
        if progress is not None:
            progress()
    result.train_accuracy = net.accuracy(X, y)
    result.test_accuracy = net.accuracy(X_test, y_test)
    return result


def run_all(seed=0, epochs=20, progress=None):
    """Every run of every task, in order: a list of :class:`Result`."""
    return [
        train(task, label, activation, at_zero, seed=seed, epochs=epochs, progress=progress)
        for task in TASKS
        for label, activation, at_zero in RUNS
    ]


def format_results(results):
    """The table the demo prints."""
    lines = [
        f"{'task':<11} {'run':<18} {'final loss':>10} {'train acc':>9} {'test acc':>8} "
        f"{'exact zeros':>12} {'of pre-activations':>18}"
    ]
    for r in results:
        share = r.zeros / r.preactivations if r.preactivations else 0.0
        lines.append(
            f"{r.task:<11} {r.label:<18} {r.losses[-1]:>10.4f} {r.train_accuracy:>9.3f} "
            f"{r.test_accuracy:>8.3f} {r.zeros:>12} {share:>18.2%}"
        )
    return "\n".join(lines)


def summary(results):
    """A sentence per task on how far apart the three ReLU runs ended up."""
    lines = []
    for task in TASKS:
        relu_runs = [r for r in results if r.task == task and r.label.startswith("relu")]
        if len(relu_runs) < 2:
            continue
        gap = max(abs(a - b) for r in relu_runs[1:] for a, b in zip(r.losses, relu_runs[0].losses))
        zeros = relu_runs[0].zeros
        if gap == 0:
            lines.append(
                f"{task}: {zeros} exact zeros with at_zero=0; the three ReLU runs are identical, "
                "epoch by epoch."
            )
        else:
            lines.append(
                f"{task}: {zeros} exact zeros with at_zero=0; the ReLU runs' per-epoch losses differ "
                f"by up to {gap:.4f}."
            )
    return "\n".join(lines)


def plot(results, path):
    """Write the loss curves of *results* to the PNG *path*: one column per
    task, the losses above and, below, how far each ReLU run's loss is from
    that of ``at_zero=0`` (the curves above lie on top of each other where
    the choice changes little)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, len(TASKS), figsize=(10, 6.4), sharex=True, squeeze=False)
    styles = {"relu, at_zero=0": "-", "relu, at_zero=0.5": "--", "relu, at_zero=1": ":", "softplus": "-."}
    colors = {label: f"C{i}" for i, label in enumerate(styles)}
    for column, task in enumerate(TASKS):
        runs = {r.label: np.asarray(r.losses) for r in results if r.task == task}
        epochs = np.arange(1, len(next(iter(runs.values()))) + 1)
        top, bottom = axes[0, column], axes[1, column]
        for label, losses in runs.items():
            top.plot(
                epochs, losses, styles.get(label, "-"), color=colors.get(label), label=label, linewidth=1.6
            )
        top.set_title(f"{task} task")
        top.set_ylabel("mean training loss")
        top.set_yscale("log")
        top.legend()
        base = runs.get("relu, at_zero=0")
        for label, losses in runs.items():
            if label.startswith("relu") and base is not None and losses is not base:
                bottom.plot(
                    epochs,
                    losses - base,
                    styles.get(label, "-"),
                    color=colors.get(label),
                    label=label,
                    linewidth=1.6,
                )
        bottom.axhline(0, color="0.6", linewidth=0.8)
        bottom.set_ylabel("loss − loss at at_zero=0")
        bottom.set_xlabel("epoch")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
