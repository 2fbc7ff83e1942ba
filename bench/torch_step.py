"""fastrelu.torch inside a PyTorch training step, against PyTorch's own ReLU.

    python bench/torch_step.py [--rounds N] [--width W] [--batch B]

Times, in interleaved rounds after a warm-up, one training step (forward,
loss, backward, SGD update) of a float32 MLP of three hidden layers on the
CPU with ``torch.nn.ReLU`` and with ``fastrelu.torch.ReLU``, and a forward
and backward pass of the activation alone on 16 elements, where the cost of
a custom operator (PyTorch's dispatch to Python, fastrelu's call) shows
whole.  Prints median times and the ratio of PyTorch's time to
fastrelu.torch's: above 1, fastrelu.torch is faster.
"""

import argparse
import statistics
import sys

import torch

import fastrelu.torch
from fastrelu._throughput import interleave


def training_step(relu, width, batch):
    """A callable that runs one training step of an MLP using *relu*."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, width), relu()]
    layers += [torch.nn.Linear(width, width), relu(), torch.nn.Linear(width, width), relu()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    x, target = torch.randn(batch, 64), torch.randint(0, 10, (batch,))

    def step():
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), target).backward()
        optimiser.step()

    return step


def activation_alone(relu):
    """A forward and backward pass of *relu* on 16 float32 elements."""
    x = torch.randn(16, requires_grad=True)
    grad = torch.ones(16)

    def step():
        relu(x).backward(grad)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--width", type=int, default=512, help="hidden units per layer (default 512)")
    parser.add_argument("--batch", type=int, default=256, help="examples per step (default 256)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    fastrelu.set_num_threads(threads)
    versions = f"PyTorch {torch.__version__}, fastrelu {fastrelu.__version__}"
    print(f"{versions}, {threads} threads, float32 on the CPU")
    cases = {
        f"training step, MLP 64-{args.width}x3-10, batch {args.batch}": (
            training_step(torch.nn.ReLU, args.width, args.batch),
            training_step(fastrelu.torch.ReLU, args.width, args.batch),
        ),
        "ReLU forward and backward, 16 elements": (
            activation_alone(torch.relu),
            activation_alone(fastrelu.torch.relu),
        ),
    }
    print(f"{'':<46}{'torch µs':>10}{'fastrelu µs':>13}{'ratio':>8}")
    for name, (theirs, ours) in cases.items():
        timings = interleave({"torch": theirs, "fastrelu": ours}, args.rounds)
        t, f = (statistics.median(timings[k].samples) * 1e6 for k in ("torch", "fastrelu"))
        print(f"{name:<46}{t:>10.1f}{f:>13.1f}{t / f:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
