"""Training and inference speed of the models' layers against the study's plain ones, in one run.

    python benchmarks/fast_layers.py            # about two minutes on 2 CPU cores
    python benchmarks/fast_layers.py --quick    # under a minute

``mnist_zoo.models.Features`` runs each ReLU -> MaxPool2d pair pool-first, and ``Flatten``
hands its gradient back channels-last. Both may change nothing but speed, so the script first
checks that a copy with plain ``nn.Sequential``/``nn.Flatten`` layers (``with_plain_layers``)
gives bitwise the same logits and gradients, then times a training step (batch 128: forward,
backward and AdamW) for both, in alternating rounds, keeping each side's best round. It times
the step as the Trainer runs it here (bf16 autocast, channels-last) and as the study's loop
does (fp32, default layout). It prints images/s and the speed-up per model.

``MaxPool2d`` pools by elementwise maxima where no gradient is recorded, so the script also
times the exact fp32 inference path (``batched_logits``, 1,000 images in the default layout)
for both versions, after checking that their logits are bitwise the same.

With ``--published DATA`` (an MNIST folder) it first compares the exact logits of every
published weight file of the checkout (``hub/**/model.safetensors``) on the full test set with
those of its plain copy: several minutes, most of them MiniVGG's.

Exits with status 1 if any output or gradient differs, or if the package's layers make exact
inference slower than ``--min-inference-speedup`` (1.05x) times the plain ones for any model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.inference.batched import batched_logits
from mnist_zoo.models import with_plain_layers

BATCH = 128


def training_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool
) -> Callable[[], None]:
    """A training step of ``model`` on (x, y): bf16 channels-last as the Trainer runs it on
    this CPU, or fp32 in the default layout as the study's loop does."""
    model = model.to(memory_format=torch.channels_last if bf16 else torch.contiguous_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def same_results(model: nn.Module, plain: nn.Module, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the two give bitwise the same logits and gradients on one bf16 step."""
    results = []
    for m in (model, plain):
        m = m.to(memory_format=torch.channels_last)
        m.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout mask
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        nn.functional.cross_entropy(out.float(), y).backward()
        results.append((out, [p.grad for p in m.parameters()]))
    (a, ga), (b, gb) = results
    return torch.equal(a, b) and all(torch.equal(g, h) for g, h in zip(ga, gb, strict=True))


def rate(step: Callable[[], None], steps: int) -> float:
    """Images/s of ``steps`` training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


def inference_speeds(name: str, rounds: int) -> tuple[bool, float, float]:
    """Whether exact fp32 inference gives bitwise the same logits, and each side's images/s.

    A freshly initialised model and its plain copy run ``batched_logits`` over the same
    1,000 images in eval mode, in alternating rounds; each side keeps its best round.
    """
    torch.manual_seed(0)
    model = mnist_zoo.create_model(name).eval()
    x = torch.rand(1000, 1, 28, 28)
    models = {"plain": with_plain_layers(model), "package": model}
    logits = {side: batched_logits(m, x) for side, m in models.items()}  # also the warm-up
    rates = {"plain": 0.0, "package": 0.0}
    for _ in range(rounds):
        for side, m in models.items():
            start = time.perf_counter()
            batched_logits(m, x)
            rates[side] = max(rates[side], len(x) / (time.perf_counter() - start))
    return torch.equal(logits["plain"], logits["package"]), rates["plain"], rates["package"]


def published_files_identical(data: str) -> bool:
    """Whether every published weight file gives its plain copy's exact logits, bit for bit."""
    hub = Path(__file__).resolve().parents[1] / "hub"
    images = mnist_zoo.MNIST(data, split="test").images
    identical = True
    for folder in sorted({path.parent for path in hub.rglob("model.safetensors")}):
        model = mnist_zoo.load_pretrained(folder).eval()
        same = torch.equal(
            batched_logits(model, images), batched_logits(with_plain_layers(model), images)
        )
        identical &= same
        print(f"{folder.relative_to(hub)}: {len(images):,} test images, logits "
              f"{'identical' if same else 'DIFFER'}", flush=True)  # fmt: skip
    return identical


def main() -> int:
    """Check, time and print; the exit status says whether the results were identical."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    p.add_argument("--models", nargs="+", default=mnist_zoo.list_models())
    p.add_argument("--min-inference-speedup", type=float, default=1.05)
    p.add_argument(
        "--published", metavar="DATA", help="also check hub/'s weights on DATA's test set"
    )
    args = p.parse_args()
    if args.published and not published_files_identical(args.published):
        return 1

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<11}{'step':<12}{'identical':>10}{'plain img/s':>13}{'package img/s':>15}"
          f"{'speed-up':>10}")  # fmt: skip
    identical = fast_enough = True
    for name in args.models:
        heavy = name == "minivgg"
        steps, rounds = (2, 2) if heavy else (10, 3)
        if not args.quick:
            steps, rounds = (4, 3) if heavy else (30, 4)
        torch.manual_seed(0)
        model = mnist_zoo.create_model(name)
        plain = with_plain_layers(model)
        x, y = torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
        same = same_results(model, plain, x, y)
        identical &= same
        for bf16 in (True, False):
            steps_of = {
                "plain": training_step(plain, x, y, bf16),
                "package": training_step(model, x, y, bf16),
            }
            for step in steps_of.values():
                step()  # warm-up
            rates = {"plain": 0.0, "package": 0.0}
            for _ in range(rounds):
                for side, step in steps_of.items():
                    rates[side] = max(rates[side], rate(step, steps))
            setting = "bf16 CL" if bf16 else "fp32"
            print(f"{name:<11}{setting:<12}{'yes' if same else 'NO':>10}{rates['plain']:>13.0f}"
                  f"{rates['package']:>15.0f}{rates['package'] / rates['plain']:>9.2f}x",
                  flush=True)  # fmt: skip
        same, plain_rate, package_rate = inference_speeds(name, rounds)
        identical &= same
        fast_enough &= package_rate >= args.min_inference_speedup * plain_rate
        print(f"{name:<11}{'fp32 infer':<12}{'yes' if same else 'NO':>10}{plain_rate:>13.0f}"
              f"{package_rate:>15.0f}{package_rate / plain_rate:>9.2f}x", flush=True)  # fmt: skip
    if not fast_enough:
        print(f"FAIL: exact inference below {args.min_inference_speedup}x", file=sys.stderr)
    return 0 if identical and fast_enough else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "fast_layers.py"))
