"""Draw the figures of the documentation site from fastrelu's own functions.

    python docs/figures.py [--output-dir DIR]

Writes ``relu-subgradient.png``, ``softplus-beta.png``, ``derivatives.png``
and ``softplus-ulp.png`` into ``--output-dir``, by default ``img/`` next to
this script: one function per figure, which takes the folder and returns the
path it wrote.  Needs matplotlib to draw; :func:`ulp_errors`, the numbers
behind the last figure, does not.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import fastrelu

BETAS = (0.5, 1.0, 2.0, 5.0)
AT_ZERO = {0.0: "at_zero=0 (PyTorch, JAX, TensorFlow)", 0.5: "at_zero=0.5", 1.0: "at_zero=1"}
# Half-widths of the grids of the ULP figure: each holds the point where
# exp overflows (88.7 in float32, 709.8 in float64) and where it underflows.
ULP_RANGES = {np.dtype(np.float32): 120.0, np.dtype(np.float64): 800.0}
ULP_POINTS = 200_001
ULP_BIN = 200  # points per bin: the figure draws each bin's largest error
ULP_FLOOR, ULP_CEILING = 1e-3, 1e9  # plotted in place of 0 ULP and of an infinite result
DPI = 110


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported only when drawing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Write *fig* to *path* as a PNG, close it and return *path*."""
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def _beta_colours():
    """One colour per beta in :data:`BETAS`, light to dark as beta grows."""
    cmap = _pyplot().get_cmap("viridis")
    return [cmap(0.85 - 0.75 * i / (len(BETAS) - 1)) for i in range(len(BETAS))]


def _frame(ax, xlim, ylim, ylabel, title=None):
    """Limits, labels, title and grid of one panel (*ylim* None: automatic)."""
    ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def _draw_relu_derivative(ax, annotate):
    """Draw ReLU's derivative as a set-valued map on *ax*.

    0 left of 0 and 1 right of it, from ``fastrelu.relu_backward``, and the
    subdifferential [0, 1] at 0 as a thick vertical segment, with a marker
    for each ``at_zero`` in :data:`AT_ZERO` (labelled when *annotate*).
    """
    for x in (np.linspace(-2.0, -0.01, 200), np.linspace(0.01, 2.0, 200)):
        ax.plot(x, fastrelu.relu_backward(x, 1.0), color="black", lw=2)
    ax.plot([0, 0], [0, 1], color="tab:red", lw=5, alpha=0.45, solid_capstyle="butt", label="[0, 1] at x = 0")
    offsets = {0.0: (0.12, -0.02), 0.5: (0.12, 0.0), 1.0: (-0.18, 0.0)}  # text clear of the graph
    for (at_zero, label), marker in zip(AT_ZERO.items(), ("o", "s", "D")):
        value = fastrelu.relu_backward(np.array([0.0]), 1.0, at_zero=at_zero)[0]
        ax.plot(0.0, value, marker, color="tab:red", ms=7, mec="black", zorder=3)
        if annotate:
            dx, dy = offsets[at_zero]
            ha = "left" if dx > 0 else "right"
            ax.text(dx, value + dy, label, ha=ha, va="center", fontsize=8.5)
    _frame(ax, (-2, 2), (-0.15, 1.2), "relu'(x)")


def relu_subgradient(output_dir):
    """ReLU with its subdifferential at 0, and its set-valued derivative: ``relu-subgradient.png``."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")

    x = np.linspace(-2.0, 2.0, 401)
    near = np.linspace(-1.2, 1.2, 241)
    left.fill_between(near, np.minimum(near, 0), np.maximum(near, 0), color="tab:red", alpha=0.12, lw=0)
    for s in np.linspace(0.0, 1.0, 5):
        left.plot(near, s * near, "--", color="tab:red", lw=0.8)
    left.plot(x, fastrelu.relu(x), color="black", lw=2, label="relu(x)")
    left.plot(0, 0, "o", color="black", ms=4)
    left.annotate(
        "slopes in [0, 1] all\nsupport the graph at 0",
        xy=(0.9, 0.45),
        xytext=(0.45, -0.95),
        fontsize=8.5,
        arrowprops={"arrowstyle": "->", "lw": 0.8},
    )
    _frame(left, (-2, 2), (-1.3, 2.1), "relu(x)", "ReLU and the lines y = s·x, s in [0, 1]")
    left.legend(loc="upper left", fontsize=8.5)

    _draw_relu_derivative(right, annotate=True)
    right.set_title("Its derivative: the set [0, 1] at 0")
    return _save(fig, Path(output_dir) / "relu-subgradient.png")


def softplus_beta(output_dir):
    """Softplus for each beta in :data:`BETAS` against ReLU, and the gap: ``softplus-beta.png``."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    x = np.linspace(-4.0, 4.0, 801)
    relu = fastrelu.relu(x)
    left.plot(x, relu, color="black", lw=2, label="relu")
    for beta, colour in zip(BETAS, _beta_colours()):
        y = fastrelu.softplus(x, beta=beta)
        left.plot(x, y, color=colour, label=f"beta = {beta:g}")
        right.semilogy(x, y - relu, color=colour, label=f"beta = {beta:g}")
        right.plot(0, np.log(2) / beta, "o", color=colour, ms=4)
    _frame(left, (-4, 4), (-0.2, 4.2), "y", "softplus tends to ReLU as beta grows")
    left.legend(loc="upper left", fontsize=8.5)
    _frame(right, (-4, 4), None, "softplus(x) - relu(x)", "The gap, largest at 0: log(2) / beta")
    right.legend(loc="lower center", fontsize=8, ncol=2)
    return _save(fig, Path(output_dir) / "softplus-beta.png")


def derivatives(output_dir):
    """ReLU's derivative beside softplus's, ``sigmoid(beta * x)``, per beta: ``derivatives.png``."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    _draw_relu_derivative(left, annotate=False)
    left.set_title("relu': a step, any value in [0, 1] at 0")

    x = np.linspace(-4.0, 4.0, 801)
    right.plot([-4, 0, 0, 4], [0, 0, 1, 1], ":", color="black", lw=1.2, label="step")
    for beta, colour in zip(BETAS, _beta_colours()):
        right.plot(x, fastrelu.softplus_backward(x, 1.0, beta=beta), color=colour, label=f"beta = {beta:g}")
    _frame(right, (-4, 4), (-0.15, 1.2), "softplus'(x)", "softplus' = sigmoid(beta x): 1/2 at 0")
    right.legend(loc="upper left", fontsize=8)
    return _save(fig, Path(output_dir) / "derivatives.png")


def ulp(ref, dtype):
    """The unit in the last place of *dtype* at each value of *ref*.

    Parameters
    ----------
    ref : ndarray of longdouble
        Exact (or nearly) values.
    dtype : dtype
        The floating dtype whose spacing is wanted.

    Returns
    -------
    ndarray of longdouble
        ``2**(floor(log2(|ref|)) - nmant)`` where ``|ref|`` is at least the
        smallest normal number of *dtype*, the subnormal spacing below.
    """
    info = np.finfo(dtype)
    _, exponent = np.frexp(np.abs(ref))  # |ref| = m * 2**exponent with 0.5 <= m < 1
    normal = np.ldexp(np.longdouble(1), (exponent - 1 - info.nmant).astype(np.int32))
    return np.where(np.abs(ref) >= info.smallest_normal, normal, np.longdouble(info.smallest_subnormal))


def ulp_errors(dtype, num=ULP_POINTS):
    """Errors in ULP of the naive softplus and of ``fastrelu.softplus``.

    Parameters
    ----------
    dtype : {float32, float64}
        The dtype of the inputs and results.
    num : int, optional
        Number of points of the grid, evenly spaced on ``[-r, r]`` with *r*
        from :data:`ULP_RANGES` (120 for float32, 800 for float64).

    Returns
    -------
    x : ndarray of dtype
        The inputs.
    naive : ndarray of float64
        ``|np.log1p(np.exp(x)) - ref| / ulp(ref)``: ``inf`` where ``exp``
        overflows.
    fast : ndarray of float64
        The same for ``fastrelu.softplus(x)``.

    Notes
    -----
    The reference ``ref`` is ``np.logaddexp(0, x)`` in ``np.longdouble``,
    which has 11 more bits than float64 on x86 (the 80-bit format): errors
    of float64 results are resolved to about 1/1000 ULP.
    """
    dtype = np.dtype(dtype)
    r = ULP_RANGES[dtype]
    x = np.linspace(-r, r, num).astype(dtype)
    ref = np.logaddexp(np.longdouble(0), x.astype(np.longdouble))
    spacing = ulp(ref, dtype)
    with np.errstate(over="ignore"):
        naive = np.log1p(np.exp(x))
    fast = fastrelu.softplus(x)
    errors = [(np.abs(y.astype(np.longdouble) - ref) / spacing).astype(np.float64) for y in (naive, fast)]
    return x, errors[0], errors[1]


def _bin_max(x, errors):
    """The centre and the largest error of each run of :data:`ULP_BIN` consecutive points."""
    starts = np.arange(0, x.size, ULP_BIN)
    centres = np.add.reduceat(x.astype(np.float64), starts) / np.diff(np.append(starts, x.size))
    return centres, np.maximum.reduceat(errors, starts)


def softplus_ulp(output_dir):
    """Error in ULP of the naive formula and of fastrelu's softplus: ``softplus-ulp.png``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
    for ax, dtype in zip(axes, (np.float32, np.float64)):
        x, naive, fast = ulp_errors(dtype)
        r = ULP_RANGES[np.dtype(dtype)]
        overflow = x[np.isinf(naive)].min()
        with np.errstate(over="ignore"):
            underflow = x[np.exp(x) == 0].max()
        ax.axvspan(overflow, r, color="tab:red", alpha=0.12, lw=0)
        ax.axvspan(-r, underflow, color="0.5", alpha=0.15, lw=0)
        ax.text(
            overflow - 0.03 * r, 1e6, f"naive: inf\nfrom x = {overflow:.2f} →", color="tab:red", ha="right"
        )
        # Where exp underflows the exact value is below half the smallest subnormal too: 0 is right.
        ax.text(underflow + 0.03 * r, 1e6, "← exp underflows:\n    both give 0", color="0.3")
        for errors, colour, label in (
            (naive, "tab:blue", f"log1p(exp(x)): max {naive[np.isfinite(naive)].max():.2f} where finite"),
            (fast, "tab:orange", f"fastrelu.softplus: max {fast.max():.2f}"),
        ):
            print(f"softplus-ulp, {np.dtype(dtype).name}: {label}")
            centres, peaks = _bin_max(x, np.clip(errors, ULP_FLOOR, ULP_CEILING))
            ax.plot(centres, peaks, color=colour, lw=1, label=label)
        ax.axhline(4, color="black", ls=":", lw=1, label="4 ULP")
        ax.set_yscale("log")
        _frame(ax, (-r, r), (ULP_FLOOR / 2, ULP_CEILING * 1e2), f"error (ULP), max per {ULP_BIN} points")
        ax.set_title(f"{np.dtype(dtype).name} (inf drawn at 1e9, < 1e-3 at 1e-3)", fontsize=11)
        ax.legend(loc="center left", bbox_to_anchor=(0.0, 0.42), fontsize=7.5)
    return _save(fig, Path(output_dir) / "softplus-ulp.png")


FIGURES = (relu_subgradient, softplus_beta, derivatives, softplus_ulp)


def main(argv=None):
    """The command line: ``python docs/figures.py [--output-dir DIR]``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; by default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(description="Draw the figures of the documentation site.")
    default = Path(__file__).resolve().parent / "img"
    parser.add_argument("--output-dir", type=Path, default=default, help="default: docs/img")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for draw in FIGURES:
        print(f"wrote {draw(args.output_dir).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
