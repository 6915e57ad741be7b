"""Check the trained models in hub/, score the ensemble, and print the registry pins.

    python scripts/release.py                 # after `mnist-zoo train NAME --out hub/NAME ...`
    python scripts/release.py --cards-only    # re-render the cards only; no data, no scoring

For each of simplecnn, deepercnn and minivgg in ``hub/``: load the folder, score it in fp32 on
the MNIST test set and check the score is the one its card states; time inference. Then score
the three as an :class:`~mnist_zoo.Ensemble`, write ``hub/ensemble/`` (config and card: the
members, the accuracy and the inference cost), and print the ``PretrainedWeights`` pins for
``src/mnist_zoo/models.py``. Exits 1 when a card disagrees with its measured accuracy.

Every card, the ensemble's included, is rendered from the package's one model-card template
(``mnist_zoo/hub/templates/model_card.md``). ``--cards-only`` re-renders the four cards from
the ``config.json`` already in each folder (and brings its ``library_name`` up to date), without
reading MNIST or rewriting a single byte of the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.atomic import atomic_write
from mnist_zoo.ensemble import PRETRAINED_MEMBERS
from mnist_zoo.hub import LIBRARY_NAME, save_pretrained, sha256_file, write_card

RELEASE_TAG = f"v{mnist_zoo.__version__}"


def images_per_s(model: torch.nn.Module, images: torch.Tensor, seconds: float = 3.0) -> float:
    """fp32 inference throughput, batch 1000, after one warm-up batch."""
    x = images[:1000].float().div(255)
    with torch.inference_mode():
        model(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            n += len(x)
    return n / (time.perf_counter() - start)


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON with a final newline, written atomically."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def refresh_cards(hub_dir: Path) -> list[Path]:
    """Re-render the members' and the ensemble's cards from their config.json files.

    Each config's ``library_name`` is updated to this version's; the weights are left alone
    (their SHA-256 is checked before and after).

    Args:
        hub_dir: The folder holding ``simplecnn/``, ``deepercnn/``, ``minivgg/``, ``ensemble/``.

    Returns:
        The cards written.
    """
    cards = []
    for name in (*PRETRAINED_MEMBERS, "ensemble"):
        folder = hub_dir / name
        weights = folder / "model.safetensors"
        before = sha256_file(weights) if weights.exists() else None
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("library_name") != LIBRARY_NAME:
            write_json(folder / "config.json", {**config, "library_name": LIBRARY_NAME})
        cards.append(write_card(folder))
        assert before == (sha256_file(weights) if weights.exists() else None)
    return cards


def write_ensemble(out: Path, result: mnist_zoo.EvaluationResult, speed: float, rows: list) -> None:
    """Write ``out/config.json`` and, from the model-card template, ``out/README.md``."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": "ensemble",
        "members": list(PRETRAINED_MEMBERS),
        "combination": "mean of the members' softmax probabilities",
        "metrics": {**result.to_dict(), "images_per_s": round(speed)},
        "member_metrics": {n: {"test_accuracy": a, "images_per_s": round(s)} for n, a, s in rows},
        "library_name": LIBRARY_NAME,
        "library_version": mnist_zoo.__version__,
        "measured_with": "python scripts/release.py (fp32, batch 1000, "
        f"{torch.get_num_threads()} CPU threads)",
    }
    write_json(out / "config.json", config)
    write_card(out)


def main() -> int:
    """Check, score and print; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hub-dir", default="hub", type=Path)
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    p.add_argument(
        "--cards-only",
        action="store_true",
        help="only re-render the cards from the existing config.json files",
    )
    args = p.parse_args()
    if args.cards_only:
        for card in refresh_cards(args.hub_dir):
            print(f"wrote {card}")
        return 0
    test = mnist_zoo.MNIST(args.data, split="test")

    ok, members, rows = True, [], []
    for name in PRETRAINED_MEMBERS:
        folder = args.hub_dir / name
        model = mnist_zoo.load_pretrained(folder)
        # Re-write card and config with this version's template; the weights' bytes stay the same.
        config = json.loads((folder / "config.json").read_text())
        before = sha256_file(folder / "model.safetensors")
        save_pretrained(
            model, folder, name=name, model_kwargs=config["model_kwargs"],
            recipe=config["recipe"], metrics=config["metrics"], repo_id=config["repo_id"],
        )  # fmt: skip
        assert sha256_file(folder / "model.safetensors") == before
        result = mnist_zoo.evaluate_model(model, test.images, test.targets)
        card = json.loads((folder / "config.json").read_text())["metrics"]["test_accuracy"]
        same = round(100 * result.accuracy, 2) == round(100 * card, 2)
        ok &= same
        speed = images_per_s(model, test.images)
        rows.append((name, result.accuracy, speed))
        members.append(model)
        print(f"{name:<10} test {100 * result.accuracy:.2f}% (card {100 * card:.2f}%"
              f"{'' if same else ' MISMATCH'}), {speed:,.0f} images/s")  # fmt: skip
        print(f"  pin: PretrainedWeights(repo_id={model.pretrained_cfg['repo_id']!r}, "
              f"revision={RELEASE_TAG!r}, sha256={sha256_file(folder / 'model.safetensors')!r}, "
              f"metrics={{'test_accuracy': {result.accuracy!r}}})")  # fmt: skip

    ensemble = mnist_zoo.Ensemble(members).eval()
    result = mnist_zoo.evaluate_model(ensemble, test.images, test.targets)
    speed = images_per_s(ensemble, test.images)
    print(f"ensemble   test {100 * result.accuracy:.2f}%, {speed:,.0f} images/s")
    write_ensemble(args.hub_dir / "ensemble", result, speed, rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
