"""Distillation on the validation split: does a model trained towards the published ensemble's
probabilities read validation better than its recipe trained on the labels alone?

    python benchmarks/distill.py minivgg --seeds 0 1 --data DIR
    python benchmarks/distill.py deepercnn --seeds 0 1 2 --data DIR
    python benchmarks/distill.py minivgg --teacher-only --data DIR   # cache the teacher, stop
    python benchmarks/distill.py simplecnn --quick --data DIR        # 1 epoch: a smoke run

The student trains with its v0.3.0 recipe unchanged (augmentation, AdamW with OneCycle, the EMA,
the 5,000 validation images of split seed 0 held out, as the teacher's members held them out).
Only the target changes. The loss is Hinton's:
``(1 - alpha) * CE(labels, smoothed as the recipe says) + alpha * tau**2 * KL(teacher_tau ||
student_tau)``, where ``X_tau`` is ``softmax(logits / tau)``. The teacher is the pinned
ensemble (the three v0.3.0 models of ``hub/``, each with its temperature), run once in
fp32 over the clean training images and cached; the student sees those images augmented (a
small move, a change of stroke or page keeps the digit the teacher read).

Each epoch checkpoints to ``RUN_DIR/last.pt`` and a killed run resumes from it. A finished
run's validation figures (clean accuracy, the 15 corruptions of the validation images, ECE) are
kept in ``RUN_DIR/result.json``; compare them with ``benchmarks/recipes.py``'s runs of the same
recipe (docs/benchmarks.md). The test set is never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mnist_zoo
from mnist_zoo.atomic import atomic_writer
from mnist_zoo.devices import autocast_context, seed_everything, select_precision
from mnist_zoo.errors import run_command
from mnist_zoo.inference import batched_logits
from mnist_zoo.registry import create_model, get_model_entry
from mnist_zoo.robustness import evaluate_corruptions
from mnist_zoo.training import TrainConfig
from mnist_zoo.training.augment import compose
from mnist_zoo.training.batches import TensorBatches, TensorData, in_memory, split_validation
from mnist_zoo.training.ema import ModelEMA
from mnist_zoo.training.optim import PER_BATCH_SCHEDULERS, make_optimizer, make_scheduler
from mnist_zoo.training.recipes import registered_recipe

#: The release whose recipe the student trains with.
RELEASE = "v0.3.0"
CPU = torch.device("cpu")


def distill_loss(
    logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, *,
    smoothing: float, alpha: float, tau: float,
) -> torch.Tensor:  # fmt: skip
    """Hinton's distillation loss; ``teacher`` holds the teacher's log-probabilities."""
    hard = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    if alpha == 0:
        return hard
    soft = F.kl_div(
        F.log_softmax(logits / tau, dim=1), F.log_softmax(teacher / tau, dim=1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip
    return (1 - alpha) * hard + alpha * tau**2 * soft


def student_config(name: str, seed: int = 0, *, quick: bool = False) -> tuple[TrainConfig, dict]:
    """The model's v0.3.0 recipe for ``seed``, and its builder kwargs.

    Split seed 0 for every seed: the validation images every v0.3.0 member held out, so the
    teacher never saw the images the student is scored on.

    Raises:
        SystemExit: The recipe's schedule is not stepped per batch, as this loop steps it.
    """
    recipe, kwargs = registered_recipe(get_model_entry(name), RELEASE)
    if recipe.scheduler not in PER_BATCH_SCHEDULERS:
        raise SystemExit(f"{name}'s {RELEASE} recipe schedules {recipe.scheduler} per epoch")
    epochs = 1 if quick else recipe.epochs
    return dataclasses.replace(recipe, seed=seed, split_seed=0, epochs=epochs), kwargs


def split(data: str | None, config: TrainConfig) -> tuple[TensorData, TensorData]:
    """The recipe's training images and its held-out validation images."""
    full = in_memory(mnist_zoo.MNIST(data, split="train"))
    return split_validation(full, None, val_size=config.val_size, seed=config.validation_seed)


def teacher_log_probs(teacher: list[str], train: TensorData, cache: Path) -> torch.Tensor:
    """The teacher's log-probabilities of the clean training images, computed once."""
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("teacher") == teacher and saved["targets"].equal(train.targets):
            return saved["log_probs"]
    start = time.perf_counter()
    members = [mnist_zoo.load_pretrained(member) for member in teacher]
    log_probs = batched_logits(mnist_zoo.Ensemble(members), train.images)
    agree = (log_probs.argmax(1) == train.targets).float().mean().item()
    seconds = time.perf_counter() - start
    print(f"teacher {' + '.join(teacher)}: {len(train):,} training images in {seconds:.0f}s, "
          f"reads {100 * agree:.2f}% of them right")  # fmt: skip
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(cache) as f:
        torch.save({"log_probs": log_probs, "targets": train.targets, "teacher": teacher}, f)
    return log_probs


def train_student(name: str, seed: int, args: argparse.Namespace) -> dict[str, object]:
    """Train one student; return its validation figures."""
    config, kwargs = student_config(name, seed, quick=args.quick)
    tag = f"{name}-a{args.alpha:g}-t{args.tau:g}-s{seed}-e{config.epochs}"
    run_dir = args.out / tag
    if (run_dir / "result.json").is_file():
        return json.loads((run_dir / "result.json").read_text())
    train, val = split(args.data, config)
    teacher = teacher_log_probs(args.teacher, train, args.out / "teacher-log-probs.pt")
    seed_everything(config.seed)
    model = create_model(name, **kwargs)
    precision = select_precision(config.precision, CPU)
    if precision != "fp32":  # as the Trainer does: channels-last pays off only under autocast
        model = model.to(memory_format=torch.channels_last)
    batches = TensorBatches(
        TensorData(train.images, torch.arange(len(train))),  # the "labels" are row numbers
        training=True, device=CPU, batch_size=config.batch_size, seed=config.seed,
        augment=compose(config.augment, config.appearance), channels_last=precision != "fp32",
    )  # fmt: skip
    seed_everything(config.seed)  # as Trainer.fit does, for dropout's random stream
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, batches.steps_per_epoch)
    ema = ModelEMA(model, config.ema_decay)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "ema": ema}
    run_dir.mkdir(parents=True, exist_ok=True)
    start = _resume(run_dir / "last.pt", parts)
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        loss = _epoch(model, batches, epoch, train.targets, teacher, parts, precision, config, args)
        with atomic_writer(run_dir / "last.pt") as f:
            torch.save({"epoch": epoch + 1, **{k: v.state_dict() for k, v in parts.items()}}, f)
        print(f"{tag} epoch {epoch + 1}/{config.epochs}: loss {loss:.4f} "
              f"({time.perf_counter() - began:.0f}s)", flush=True)  # fmt: skip
    scored = evaluate_corruptions(ema.module, val.images, val.targets, seed=config.validation_seed)
    result = {
        "val_acc": scored.clean_accuracy, "suite_mean": scored.mean_accuracy,
        "corruptions": scored.corruption_accuracy, "val_ece": scored.ece,
        "alpha": args.alpha, "tau": args.tau, "teacher": args.teacher, "seed": seed,
    }  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _epoch(
    model: nn.Module, batches: TensorBatches, epoch: int, targets: torch.Tensor,
    teacher: torch.Tensor, parts: dict, precision: str, config: TrainConfig,
    args: argparse.Namespace,
) -> float:  # fmt: skip
    """One epoch towards labels and teacher; returns the mean loss."""
    model.train()
    total, seen = 0.0, 0
    for x, rows in batches.epoch(epoch):
        with autocast_context(CPU, precision):
            logits = model(x)
        loss = distill_loss(
            logits.float(), targets[rows], teacher[rows],
            smoothing=config.label_smoothing, alpha=args.alpha, tau=args.tau,
        )  # fmt: skip
        parts["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        parts["optimizer"].step()
        parts["scheduler"].step()
        parts["ema"].update(model)
        total, seen = total + loss.item() * len(rows), seen + len(rows)
    return total / seen


def _resume(path: Path, parts: dict) -> int:
    """Load the last epoch's state into ``parts``; return the epoch to start from."""
    if not path.is_file():
        return 0
    saved = torch.load(path, weights_only=True)
    for key, part in parts.items():
        part.load_state_dict(saved[key])
    print(f"resumed {path} after epoch {saved['epoch']}", flush=True)
    return saved["epoch"]


def main() -> None:
    """Parse arguments, train each seed's student, print its validation figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", help="a registered model name")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher's term")
    p.add_argument("--tau", type=float, default=4.0, help="distillation temperature")
    p.add_argument(
        "--teacher",
        nargs="+",
        default=[f"hub/{n}" for n in ("simplecnn", "deepercnn", "minivgg")],
        help="the ensemble's members: names or folders load_pretrained takes",
    )
    p.add_argument("--data", default=None, help="the MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument("--out", type=Path, default=Path("runs/distill"))
    p.add_argument("--quick", action="store_true", help="one epoch: a smoke run")
    p.add_argument("--teacher-only", action="store_true", help="cache the teacher's labels, stop")
    args = p.parse_args()
    if args.teacher_only:
        train, _ = split(args.data, student_config(args.model)[0])
        teacher_log_probs(args.teacher, train, args.out / "teacher-log-probs.pt")
        return
    for seed in args.seeds:
        r = train_student(args.model, seed, args)
        low, acc = min(r["corruptions"].items(), key=lambda kv: kv[1])
        print(f"{args.model} seed {seed}: val {100 * r['val_acc']:.2f}% suite mean "
              f"{100 * r['suite_mean']:.2f}% (lowest: {low} {100 * acc:.2f}%)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_command(main, "distill.py"))
