"""Check the trained models in hub/, score the ensemble, and print the registry pins.

    python scripts/release.py                 # after `mnist-zoo train NAME --out hub/NAME ...`
    python scripts/release.py --cards-only    # re-render the cards only; no data, no scoring
    python scripts/release.py --pins          # print the registry pins of the files in hub/
    python scripts/release.py --write-pins    # ... and write them into src/mnist_zoo/models.py

For each of simplecnn, deepercnn and minivgg in ``hub/``: load the folder, score it in fp32 on
the MNIST test set and check the score is the one its card states; time inference. Then score
the three as an :class:`~mnist_zoo.Ensemble`, write ``hub/ensemble/`` (config and card: the
members, the accuracy and the inference cost), and print the ``PretrainedWeights`` pins for
``src/mnist_zoo/models.py`` (sizes and the configs' SHA-256 included). Exits 1 when a card
disagrees with its measured accuracy.

Every card, the ensemble's included, is rendered from the package's one model-card template
(``mnist_zoo/hub/templates/model_card.md``). ``--cards-only`` re-renders the four cards from
the ``config.json`` already in each folder (and brings its ``library_name`` up to date), without
reading MNIST or rewriting a single byte of the weights. ``--pins`` prints the ``PRETRAINED``
block of ``src/mnist_zoo/models.py`` for the files as they are in ``hub/``: each weights
file's SHA-256 and size and its ``config.json``'s SHA-256; ``--write-pins`` also replaces the
block in ``models.py`` with it. Run it after anything rewrites a ``config.json`` in ``hub/``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.atomic import atomic_write
from mnist_zoo.ensemble import PRETRAINED_MEMBERS
from mnist_zoo.hub import LIBRARY_NAME, save_pretrained, sha256_file, write_card

RELEASE_TAG = f"v{mnist_zoo.__version__}"
MODELS_PY = Path(__file__).resolve().parents[1] / "src" / "mnist_zoo" / "models.py"


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


def pins(hub_dir: Path, metrics: dict[str, float] | None = None) -> str:
    """The ``PRETRAINED`` block of ``src/mnist_zoo/models.py`` for the files in ``hub_dir``.

    Each member is pinned by the release tag, its weights' SHA-256 and size, and the SHA-256
    of its ``config.json``, exactly as the bytes are now.

    Args:
        hub_dir: The folder holding ``simplecnn/``, ``deepercnn/`` and ``minivgg/``.
        metrics: Test accuracy per member; default: the one each ``config.json`` records.

    Returns:
        The Python source of the block, from ``PRETRAINED = {`` to its closing brace.
    """
    lines = ["PRETRAINED = {"]
    for name in PRETRAINED_MEMBERS:
        folder = hub_dir / name
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        accuracy = (metrics or {}).get(name, config["metrics"]["test_accuracy"])
        lines += [
            f'    "{name}": PretrainedWeights(',
            f'        repo_id="{config["repo_id"]}",',
            "        revision=_RELEASE,",
            f'        sha256="{sha256_file(folder / "model.safetensors")}",',
            f"        size={(folder / 'model.safetensors').stat().st_size:_},",
            f'        config_sha256="{sha256_file(folder / "config.json")}",',
            f'        metrics={{"test_accuracy": {accuracy!r}}},',
            "    ),",
        ]
    return "\n".join([*lines, "}"])


def write_pins(block: str, models_py: Path = MODELS_PY) -> None:
    """Replace the ``PRETRAINED = {...}`` block of ``models_py`` with ``block``.

    Args:
        block: What :func:`pins` returns.
        models_py: The module that holds the block.
    """
    text = models_py.read_text(encoding="utf-8")
    pattern = re.compile(r"^PRETRAINED = \{\n.*?^\}$", flags=re.M | re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{models_py} has no single 'PRETRAINED = {{ ... }}' block to replace")
    atomic_write(models_py, pattern.sub(lambda _: block, text))


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
    p.add_argument(
        "--pins",
        action="store_true",
        help="only print the PRETRAINED block for src/mnist_zoo/models.py (no data, no scoring)",
    )
    p.add_argument(
        "--write-pins",
        action="store_true",
        help="as --pins, and write the block into src/mnist_zoo/models.py",
    )
    args = p.parse_args()
    if args.pins or args.write_pins:
        block = pins(args.hub_dir)
        print(block)
        if args.write_pins:
            write_pins(block)
            print(f"wrote {MODELS_PY}")
        return 0
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

    ensemble = mnist_zoo.Ensemble(members).eval()
    result = mnist_zoo.evaluate_model(ensemble, test.images, test.targets)
    speed = images_per_s(ensemble, test.images)
    print(f"ensemble   test {100 * result.accuracy:.2f}%, {speed:,.0f} images/s")
    write_ensemble(args.hub_dir / "ensemble", result, speed, rows)
    print("\nThe pins for src/mnist_zoo/models.py (config.json was re-written above):")
    print(pins(args.hub_dir, {name: accuracy for name, accuracy, _ in rows}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
