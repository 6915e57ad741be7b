"""Training throughput: the Trainer against the study's own loop, in the same run.

    python benchmarks/throughput.py            # about 2 minutes on 2 CPU cores
    python benchmarks/throughput.py --quick    # under a minute

The study's loop is the textbook one (``study_loop.py``): a per-sample ``Dataset``, a
``DataLoader`` with batch 64 and shuffling, fp32, Adam, cross-entropy, ``loss.item()`` per
batch. The Trainer runs its registry recipe as it trains for real: in-memory batches, batch-wise
augmentation, EMA, the precision and memory format it picks for this machine. Both train the
package's models; their fast layers speed up the Trainer's bf16 channels-last step and not the
study's fp32 one (``benchmarks/fast_layers.py``). Both get a warm-up before timing; the two
are timed in alternating rounds and each side's best round is reported. The script prints
images/s for each and their ratio, and MiniVGG's achieved GFLOP/s in each loop against a matrix
multiply of the same precision timed in the same run (the machine's practical peak: bf16 for
the Trainer, fp32 for the study). It exits with status 1 when any ratio is below
``--min-ratio`` (2.0). The last line sums up the ratios.
"""

from __future__ import annotations

import argparse
import sys

import torch
from peak import matmul_gflops
from study_loop import StudyLoop
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode

import mnist_zoo
from mnist_zoo.errors import run_command
from mnist_zoo.training import Trainer


def compare(
    name: str, train: mnist_zoo.MNIST, batches: int, images: int, repeats: int
) -> tuple[float, float, str]:
    """Best images/s of the study's loop and of the Trainer, timed in alternation.

    Each round times ``batches`` batches of the study's loop (a fresh pass over its loader,
    first batches skipped) and then one epoch of the Trainer with the model's recipe on
    ``images`` images (after an untimed first epoch). Alternating the two, and keeping each
    side's best round as ``timeit`` does, cancels the drift of a shared machine, which only
    ever slows a round down. Returns (study, trainer, trainer precision).
    """
    loop = StudyLoop(name, train)
    subset = Subset(train, range(images))
    study, ours, precision = 0.0, 0.0, ""
    for _ in range(repeats):
        seen, seconds = loop.train(max_batches=batches, warmup=2)
        study = max(study, seen / seconds)
        trainer = Trainer.from_recipe(name, epochs=2, val_size=0, progress=False)
        ours = max(ours, trainer.fit(subset)["images_per_s"][-1])
        precision = trainer.precision
    return study, ours, precision


def training_flops_per_image(name: str) -> float:
    """Forward plus backward FLOPs of one training image (counted by PyTorch)."""
    model = mnist_zoo.create_model(name)
    x = torch.rand(16, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / len(x)


def main() -> int:
    """Run the comparison and print the figures; the exit status says whether it held."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer batches: under a minute")
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--models", nargs="+", default=mnist_zoo.list_models())
    p.add_argument("--min-ratio", type=float, default=2.0)
    args = p.parse_args()

    train = mnist_zoo.MNIST(args.data, split="train")
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(f"{'model':<11}{'study img/s':>12}{'trainer img/s':>15}{'precision':>10}{'ratio':>7}")
    ratios: dict[str, float] = {}
    vgg_rates = None
    for name in args.models:
        heavy = name == "minivgg"
        if args.quick:
            batches, images, repeats = (5, 768, 3) if heavy else (30, 5120, 3)
        else:
            batches, images, repeats = (15, 2048, 3) if heavy else (100, 12800, 4)
        study, ours, precision = compare(name, train, batches, images, repeats)
        ratios[name] = ours / study
        if heavy:
            vgg_rates = (study, ours)
        print(f"{name:<11}{study:>12.0f}{ours:>15.0f}{precision:>10}{ratios[name]:>6.2f}x",
              flush=True)  # fmt: skip

    if vgg_rates is not None:
        flops = training_flops_per_image("minivgg")
        seconds = 2.0 if args.quick else 5.0
        print(f"minivgg: {flops / 1e9:.3f} GFLOP per training image")
        sides = [("trainer", vgg_rates[1], torch.bfloat16, "bf16"),
                 ("study", vgg_rates[0], torch.float32, "fp32")]  # fmt: skip
        for who, rate, dtype, label in sides:
            achieved, peak = flops * rate / 1e9, matmul_gflops(dtype, seconds)
            print(f"  {who:<8}{achieved:>5.0f} GFLOP/s achieved; {label} matmul peak "
                  f"{peak:.0f} GFLOP/s ({100 * achieved / peak:.0f}% of peak)")  # fmt: skip
    ok = all(r >= args.min_ratio for r in ratios.values())
    summary = ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items())
    print(f"{'PASS' if ok else 'FAIL'}: trainer/study throughput {summary} "
          f"(need >= {args.min_ratio:.1f}x each)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "throughput.py"))
