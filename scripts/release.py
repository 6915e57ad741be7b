"""Check the trained models in hub/, score the ensemble, and print the registry pins.

    python scripts/release.py                 # re-check the release hub/NAME holds
    python scripts/release.py --tag v0.3.0    # after `mnist-zoo train NAME --out hub/NAME ...`
    python scripts/release.py --cards-only    # re-render the cards only; no data, no scoring
    python scripts/release.py --pins          # print the registry pins of the files in hub/
    python scripts/release.py --write-pins    # ... and write them into src/mnist_zoo/models.py
    python scripts/release.py --write-pins --tag v0.2.0   # archive hub/NAME as a new release

Versions are data. ``hub/TAG/NAME/`` is the frozen archive of release TAG (never rewritten),
and ``hub/NAME/`` holds the default release's files (what ``--model hub/NAME`` loads). The
``PRETRAINED`` block of ``src/mnist_zoo/models.py`` pins every archived tag, each by its own
files, and ``DEFAULT_RELEASE`` names the tag whose archive is byte-identical to ``hub/NAME/``.
Publishing v0.2.0 is then: train into ``hub/NAME``, ``--write-pins --tag v0.2.0`` (copies
``hub/NAME`` to ``hub/v0.2.0/NAME`` and pins it as the default), push each folder with
``mnist-zoo push`` and tag ``v0.2.0``. Nothing in the package's code changes.

For each of simplecnn, deepercnn and minivgg in ``hub/``: load the folder, score it in fp32 on
the MNIST test set and check the score is the one its card states; time inference. Then score
the three as an :class:`~mnist_zoo.Ensemble`, write ``hub/ensemble/`` (config and card: the
members, the accuracy and the inference cost), and print the ``PretrainedWeights`` pins for
``src/mnist_zoo/models.py`` (sizes and the configs' SHA-256 included). Exits 1 when a card
disagrees with its measured accuracy.

Every card, the ensemble's included, is rendered from the package's one model-card template
(``mnist_zoo/hub/templates/model_card.md``). ``--cards-only`` re-renders the four cards of the
default release, and those of each archived release in ``hub/TAG/``, from the ``config.json``
already in each folder (and brings its ``library_name`` up to date), without
reading MNIST or rewriting a single byte of the weights. ``--pins`` prints the ``PRETRAINED``
block of ``src/mnist_zoo/models.py`` for the files as they are in ``hub/``: each weights
file's SHA-256 and size and its ``config.json``'s SHA-256; ``--write-pins`` also replaces the
block in ``models.py`` with it. Run it after anything rewrites a ``config.json`` in ``hub/``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import sys
import time
from pathlib import Path

import torch

import mnist_zoo
from mnist_zoo.atomic import atomic_write
from mnist_zoo.ensemble import PRETRAINED_MEMBERS, ensemble_members
from mnist_zoo.errors import run_command
from mnist_zoo.hub import LIBRARY_NAME, save_pretrained, sha256_file, write_card
from mnist_zoo.pipeline import HUB_OWNER

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


def release_tags(hub_dir: Path) -> list[str]:
    """The archived release tags, ``hub_dir/vX.Y.Z/``, oldest first.

    Args:
        hub_dir: The folder holding ``NAME/`` (the default release) and ``TAG/NAME/``.

    Returns:
        The tags whose folder holds every pretrained member, sorted by version.
    """
    tags = [
        d.name
        for d in hub_dir.glob("v*")
        if re.fullmatch(r"v\d+(\.\d+)*", d.name)
        and all((d / n / "model.safetensors").is_file() for n in PRETRAINED_MEMBERS)
    ]
    return sorted(tags, key=lambda tag: tuple(int(x) for x in tag[1:].split(".")))


def _same_files(a: Path, b: Path) -> bool:
    names = ("model.safetensors", "config.json")
    return all(
        (a / n).is_file() and (b / n).is_file() and filecmp.cmp(a / n, b / n, shallow=False)
        for n in names
    )


def default_tag(hub_dir: Path) -> str:
    """The archived tag whose files ``hub_dir/NAME/`` holds, for every member.

    Args:
        hub_dir: As :func:`release_tags`.

    Returns:
        The tag.

    Raises:
        SystemExit: No archived tag (or several) matches ``hub_dir/NAME/``.
    """
    matching = [
        tag
        for tag in release_tags(hub_dir)
        if all(_same_files(hub_dir / n, hub_dir / tag / n) for n in PRETRAINED_MEMBERS)
    ]
    if len(matching) != 1:
        raise SystemExit(
            f"{hub_dir}/NAME matches {len(matching)} archived releases ({', '.join(matching)}), "
            "not one: archive the files in hub/NAME as a new release with --tag vX.Y.Z."
        )
    return matching[0]


def archive(hub_dir: Path, tag: str) -> None:
    """Copy ``hub_dir/NAME/`` (members and ensemble) to ``hub_dir/TAG/NAME/``, once.

    Args:
        hub_dir: As :func:`release_tags`.
        tag: The release tag, ``vX.Y.Z``.

    Raises:
        SystemExit: The tag is malformed, or its archive exists with other files (an
            archive is frozen: its pins are published).
    """
    if not re.fullmatch(r"v\d+\.\d+\.\d+", tag):
        raise SystemExit(f"--tag must look like v0.2.0, got {tag!r}")
    for name in (*PRETRAINED_MEMBERS, "ensemble"):
        src, dst = hub_dir / name, hub_dir / tag / name
        if dst.exists():
            if name != "ensemble" and not _same_files(src, dst):
                raise SystemExit(f"{dst} exists with other files: a published release is frozen")
            continue
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", ".*"))


def pins(hub_dir: Path, metrics: dict[str, float] | None = None) -> str:
    """The ``DEFAULT_RELEASE`` and ``PRETRAINED`` block of ``src/mnist_zoo/models.py``.

    Every archived tag (:func:`release_tags`) of each member is pinned by its own files: the
    weights' SHA-256 and size and the SHA-256 of its ``config.json``, exactly as the bytes
    are now. The default is the tag ``hub_dir/NAME/`` holds (:func:`default_tag`).

    Args:
        hub_dir: The folder holding ``NAME/`` and ``TAG/NAME/`` for each member.
        metrics: Test accuracy per member of the default release; default: the one each
            ``config.json`` records.

    Returns:
        The Python source, from ``DEFAULT_RELEASE = ...`` to ``PRETRAINED``'s closing brace.
    """
    default = default_tag(hub_dir)
    lines = [f'DEFAULT_RELEASE = "{default}"', "PRETRAINED = {"]
    for name in PRETRAINED_MEMBERS:
        lines.append(f'    "{name}": {{')
        for tag in release_tags(hub_dir):
            folder = hub_dir / tag / name
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            if not config.get("repo_id"):
                raise SystemExit(
                    f"{folder} names no Hub repo: score it first with python scripts/release.py "
                    f"--tag {tag}, which records the project's repo, then pin it."
                )
            accuracy = config["metrics"]["test_accuracy"]
            if tag == default:
                accuracy = (metrics or {}).get(name, accuracy)
            lines += [
                f'        "{tag}": PretrainedWeights(',
                f'            repo_id="{config["repo_id"]}",',
                f'            revision="{tag}",',
                f'            sha256="{sha256_file(folder / "model.safetensors")}",',
                f"            size={(folder / 'model.safetensors').stat().st_size:_},",
                f'            config_sha256="{sha256_file(folder / "config.json")}",',
                f'            metrics={{"test_accuracy": {accuracy!r}}},',
                "        ),",
            ]
        lines.append("    },")
    return "\n".join([*lines, "}"])


def write_pins(block: str, models_py: Path = MODELS_PY) -> None:
    """Replace the ``DEFAULT_RELEASE = ...`` and ``PRETRAINED = {...}`` block of ``models_py``.

    Args:
        block: What :func:`pins` returns.
        models_py: The module that holds the block.
    """
    text = models_py.read_text(encoding="utf-8")
    pattern = re.compile(r"^DEFAULT_RELEASE = .*?\nPRETRAINED = \{\n.*?^\}$", flags=re.M | re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(
            f"{models_py} has no single 'DEFAULT_RELEASE = ...' + 'PRETRAINED = {{ ... }}' "
            "block to replace"
        )
    atomic_write(models_py, pattern.sub(lambda _: block, text))


def member_folder(hub_dir: Path, member: str, release: str) -> Path:
    """The local folder of an ensemble member ``"name@tag"``: ``hub/NAME`` for ``release``."""
    name, _, tag = member.partition("@")
    return hub_dir / name if tag == release else hub_dir / tag / name


def write_ensemble(
    out: Path, members: list[str], result: mnist_zoo.EvaluationResult, speed: float, rows: list
) -> None:
    """Write ``out/config.json`` and, from the model-card template, ``out/README.md``."""
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": "ensemble",
        "members": members,
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
    p.add_argument(
        "--tag",
        help="with --pins/--write-pins: first archive hub/NAME as release TAG (hub/TAG/NAME); "
        "else the release hub/NAME holds (default: the archived tag it matches), whose "
        "ensemble (mnist_zoo.ensemble.ensemble_members) is scored",
    )
    args = p.parse_args()
    if args.pins or args.write_pins:
        if args.tag:
            archive(args.hub_dir, args.tag)
        block = pins(args.hub_dir)
        print(block)
        if args.write_pins:
            write_pins(block)
            print(f"wrote {MODELS_PY}")
        return 0
    if args.cards_only:
        # The archived releases' cards too: their configs are pinned, their cards are not.
        for hub_dir in (args.hub_dir, *(args.hub_dir / tag for tag in release_tags(args.hub_dir))):
            for card in refresh_cards(hub_dir):
                print(f"wrote {card}")
        return 0
    test = mnist_zoo.MNIST(args.data, split="test")

    release = args.tag or default_tag(args.hub_dir)
    ok, scored, rows, accuracies = True, {}, [], {}
    for name in PRETRAINED_MEMBERS:
        folder = args.hub_dir / name
        model = mnist_zoo.load_pretrained(folder)
        # Re-write card and config with this version's template; the weights' bytes stay the same.
        # A freshly trained folder names no repo yet: releasing it makes it the project's.
        config = json.loads((folder / "config.json").read_text())
        before = sha256_file(folder / "model.safetensors")
        save_pretrained(
            model, folder, name=name, model_kwargs=config["model_kwargs"],
            recipe=config["recipe"], metrics=config["metrics"],
            repo_id=config.get("repo_id") or f"{HUB_OWNER}/{name}",
            calibration=config.get("calibration"),
        )  # fmt: skip
        assert sha256_file(folder / "model.safetensors") == before
        result = mnist_zoo.evaluate_model(model, test.images, test.targets)
        card = json.loads((folder / "config.json").read_text())["metrics"]["test_accuracy"]
        same = round(100 * result.accuracy, 2) == round(100 * card, 2)
        ok &= same
        speed = images_per_s(model, test.images)
        rows.append((f"{name}@{release}", result.accuracy, speed))
        scored[f"{name}@{release}"], accuracies[name] = model, result.accuracy
        print(f"{name:<10} test {100 * result.accuracy:.2f}% (card {100 * card:.2f}%"
              f"{'' if same else ' MISMATCH'}), {speed:,.0f} images/s")  # fmt: skip

    names = list(ensemble_members(release))
    for member in names:
        if member not in scored:  # another tag's file, scored as its card says it was
            model = mnist_zoo.load_pretrained(member_folder(args.hub_dir, member, release))
            scored[member] = model
            accuracy = model.pretrained_cfg["metrics"]["test_accuracy"]
            rows.append((member, accuracy, images_per_s(model, test.images)))
    ensemble = mnist_zoo.Ensemble([scored[m] for m in names]).eval()
    result = mnist_zoo.evaluate_model(ensemble, test.images, test.targets)
    speed = images_per_s(ensemble, test.images)
    print(f"ensemble of {len(names)} test {100 * result.accuracy:.2f}%, {speed:,.0f} images/s")
    rows = [row for row in rows if row[0] in names]
    write_ensemble(args.hub_dir / "ensemble", names, result, speed, rows)
    if not (args.hub_dir / release).is_dir():
        print(f"\nNext: python scripts/release.py --write-pins --tag {release}")
        return 0 if ok else 1
    print("\nThe pins for src/mnist_zoo/models.py (config.json was re-written above):")
    print(pins(args.hub_dir, accuracies))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "release.py"))
