"""Does ``torch.compile`` speed up a bf16 training step on this machine?

    python benchmarks/compile_check.py     # about a minute on 2 CPU cores

Times the same training step (bf16 autocast, channels_last, AdamW, batch 128, random data)
eagerly and compiled with ``torch.compile`` (default mode), after a warm-up of three steps
whose time, compilation included, is printed too. The Trainer does not compile: on this project's
CPU the compiled step measured slower (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

import mnist_zoo
from mnist_zoo.errors import run_command


def images_per_s(name: str, compiled: bool, steps: int, batch: int = 128) -> tuple[float, float]:
    """(warm-up seconds, images/s) of ``steps`` training steps of model ``name``."""
    torch.manual_seed(0)
    model = mnist_zoo.create_model(name).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    forward = torch.compile(model) if compiled else model
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward(x)
        loss = F.cross_entropy(out.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(3):
        step()
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return warmup, steps * batch / (time.perf_counter() - start)


def main() -> None:
    """Print eager and compiled throughput for the chosen models."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["simplecnn", "deepercnn"])
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    for name in args.models:
        for compiled in (False, True):
            warmup, rate = images_per_s(name, compiled, args.steps)
            print(f"{name:<10} {'compiled' if compiled else 'eager':<9} warm-up {warmup:5.1f}s "
                  f"{rate:7.0f} img/s", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_command(main, "compile_check.py"))
