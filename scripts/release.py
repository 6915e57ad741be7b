"""Check the trained models in hub/, score the ensemble, and print the registry pins.

    python scripts/release.py                 # after `mnist-zoo train NAME --out hub/NAME ...`

For each of simplecnn, deepercnn and minivgg in ``hub/``: load the folder, score it in fp32 on
the MNIST test set and check the score is the one its card states; time inference. Then score
the three as an :class:`~mnist_zoo.Ensemble`, write ``hub/ensemble/`` (config and card: the
members, the accuracy and the inference cost), and print the ``PretrainedWeights`` pins for
``src/mnist_zoo/models.py``. Exits 1 when a card disagrees with its measured accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.ensemble import PRETRAINED_MEMBERS
from mnist_zoo.hub import save_pretrained, sha256_file

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


def main() -> int:
    """Check, score and print; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hub-dir", default="hub", type=Path)
    p.add_argument("--data", help="MNIST folder (default: $MNIST_ZOO_DATA)")
    args = p.parse_args()
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
    out = args.hub_dir / "ensemble"
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": "ensemble",
        "members": list(PRETRAINED_MEMBERS),
        "combination": "mean of the members' softmax probabilities",
        "metrics": {**result.to_dict(), "images_per_s": round(speed)},
        "member_metrics": {n: {"test_accuracy": a, "images_per_s": round(s)} for n, a, s in rows},
        "library_name": "mnist_zoo",
        "library_version": mnist_zoo.__version__,
        "measured_with": "python scripts/release.py (fp32, batch 1000, "
        f"{torch.get_num_threads()} CPU threads)",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    lines = [
        "---", "license: mit", "library_name: pytorch", "tags: [image-classification, mnist, "
        "ensemble, mnist-zoo]", "datasets: [ylecun/mnist]", "---", "",
        "# ensemble", "",
        "The study's proposal for going further: the three pretrained networks as one model that "
        "averages their class probabilities. It holds no weights of its own; "
        '`mnist_zoo.load_pretrained("ensemble")` loads the three members from their repos.', "",
        "| model | test accuracy | inference images/s (fp32, CPU) |", "|---|---:|---:|",
    ]  # fmt: skip
    lines += [f"| {n} | {100 * a:.2f}% | {s:,.0f} |" for n, a, s in rows]
    lines += [f"| **ensemble** | **{100 * result.accuracy:.2f}%** | {speed:,.0f} |", ""]
    lines += ["Most confused pairs (true → predicted: count):", ""]
    lines += [f"- {t} → {p}: {c}" for t, p, c in result.most_confused(5)] + [""]
    (out / "README.md").write_text("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
