"""CPU pieces: the exact path with ``CPU_MAX_BATCH`` against whole batches, in one run.

    python benchmarks/cpu_batches.py            # about two minutes on one core
    python benchmarks/cpu_batches.py --quick    # under a minute

For each published model (``hub/NAME``), ``batched_logits(model, x, batch_size=1000)`` runs
over the first test images twice per round: with the package's
:data:`~mnist_zoo.inference.batched.CPU_MAX_BATCH` (the model sees pieces of that many images)
and with no limit (the model sees all 1,000 at once). The two ways alternate by round and each
keeps its best round. Reported: images/s of each, the speed-up, the largest logit difference
and how many labels differ.

Exits with status 1 when a model's speed-up is below ``--min-speedup`` (1.1) or a label
differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.inference import batched

HUB = Path(__file__).resolve().parents[1] / "hub"
BATCH = 1000


def run(model: torch.nn.Module, x: torch.Tensor, limit: int | None) -> tuple[float, torch.Tensor]:
    """Seconds for one pass over ``x`` with ``CPU_MAX_BATCH = limit``, and the logits."""
    saved, batched.CPU_MAX_BATCH = batched.CPU_MAX_BATCH, limit
    try:
        start = time.perf_counter()
        logits = batched.batched_logits(model, x, batch_size=BATCH, device="cpu")
        return time.perf_counter() - start, logits
    finally:
        batched.CPU_MAX_BATCH = saved


def main() -> int:
    """Time both ways for each model, print a table, return the exit status."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--images", type=int, default=3000, help="test images per pass")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--min-speedup", type=float, default=1.1)
    p.add_argument("--quick", action="store_true", help="1,000 images, 2 rounds")
    args = p.parse_args()
    if args.quick:
        args.images, args.rounds = 1000, 2
    torch.set_num_threads(args.threads)
    x = mnist_zoo.MNIST(args.data, split="test").images[: args.images]
    piece = batched.CPU_MAX_BATCH
    if piece is None:
        raise SystemExit("CPU_MAX_BATCH is None: there are no pieces to compare with.")
    print(f"batched_logits, batch {BATCH}, {len(x):,} images, {args.threads} thread(s), "
          f"best of {args.rounds} rounds; pieces of {piece} against whole batches")  # fmt: skip
    print(f"{'model':<11}{'pieces img/s':>14}{'whole img/s':>13}{'speed-up':>10}"
          f"{'max |diff|':>12}{'labels':>8}")  # fmt: skip
    failed = False
    for name in ("simplecnn", "deepercnn", "minivgg"):
        model = mnist_zoo.load_pretrained(HUB / name).eval()
        run(model, x[:BATCH], piece)  # warm-up: first calls allocate and plan kernels
        best = {piece: 0.0, None: 0.0}
        logits = {}
        for _ in range(args.rounds):
            for limit in (piece, None):
                seconds, logits[limit] = run(model, x, limit)
                best[limit] = max(best[limit], len(x) / seconds)
        speedup = best[piece] / best[None]
        diff = float((logits[piece] - logits[None]).abs().max())
        changed = int((logits[piece].argmax(1) != logits[None].argmax(1)).sum())
        failed |= speedup < args.min_speedup or changed > 0
        print(f"{name:<11}{best[piece]:>14.0f}{best[None]:>13.0f}{speedup:>9.2f}x"
              f"{diff:>12.1e}{changed:>8}")  # fmt: skip
    if failed:
        print(f"FAIL: a speed-up below {args.min_speedup}x or a changed label", file=sys.stderr)
        return 1
    print(f"OK: every model at least {args.min_speedup}x faster in pieces, no label changed")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "cpu_batches.py"))
