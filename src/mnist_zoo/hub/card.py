"""The model card (a Hub folder's README.md), rendered from a template shipped with the package.

The card is ``templates/model_card.md``, Markdown with Jinja, rendered by
``huggingface_hub.ModelCard.from_template``: the YAML front matter comes from a
``ModelCardData`` (license, ``library_name: mnist-zoo``, tags, dataset, the test accuracy as
``model-index``), the body from the values prepared here. One template serves both a single
model's card and the ensemble's (``hub/ensemble/README.md``, written by ``scripts/release.py``).

```python
from mnist_zoo.hub.card import model_card
card = model_card(config, entry=get_model_entry("minivgg"), num_parameters=1_234_567)
card.data.library_name      # 'mnist-zoo'
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..registry import ModelEntry
from .layout import CONFIG_NAME, LIBRARY_NAME, WEIGHTS_NAME
from .provenance import train_command
from .verify import released_tag

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

__all__ = ["PROJECT_URL", "TEMPLATE_PATH", "card_markdown", "ensemble_card", "model_card"]

#: The template both cards are rendered from: Markdown with Jinja, shipped as package data.
TEMPLATE_PATH = resources.files(__package__).joinpath("templates", "model_card.md")

#: Where the card's readers find the library.
PROJECT_URL = "https://github.com/mnist-zoo/mnist_zoo"

_TAGS = ["image-classification", "mnist", "pytorch", "safetensors", LIBRARY_NAME]
_ENSEMBLE_TAGS = ["image-classification", "mnist", "pytorch", "ensemble", LIBRARY_NAME]


def model_card(config: Mapping[str, Any], *, entry: ModelEntry, num_parameters: int) -> ModelCard:
    """The model card of one trained model, rendered from its ``config.json`` content.

    Args:
        config: What :func:`~mnist_zoo.hub.save_pretrained` writes to ``config.json``:
            ``architecture``, ``model_kwargs``, ``recipe`` (a plain dict, possibly with nested
            dicts, as ``dataclasses.asdict`` of a ``TrainConfig`` gives), ``metrics`` (fractions
            in [0, 1]), ``sha256``, ``repo_id`` and ``library_version``.
        entry: The registry entry of the architecture (its name, description and pin).
        num_parameters: The model's parameter count, shown in the card.

    Returns:
        The card; ``card_markdown(card)`` is the README.md text.

    Raises:
        KeyError: ``config`` lacks ``architecture`` or ``sha256``.
    """
    metrics = dict(config.get("metrics") or {})
    recipe = dict(config.get("recipe") or {})
    repo_name = (config.get("repo_id") or entry.name).split("/")[-1]
    release = released_tag(entry, config["sha256"])
    load_name, load_comment = _load_line(config, entry, release)
    train_images = metrics.get("num_train_images")  # recorded only when --limit cut the set
    command = train_command(entry, recipe, release=release, train_images=train_images)
    kwargs = config.get("model_kwargs") or {}
    fields = {
        **_common_fields(config, metrics, title=repo_name),
        "description": entry.description,
        "name": entry.name,
        "load_name": load_name,
        "load_comment": load_comment,
        "architecture": f"{entry.name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})",
        "num_parameters": f"{num_parameters:,}",
        "recipe_rows": recipe_rows(recipe),
        "train_command": command,
        "train_images": None if train_images is None else _count(train_images),
        "validation": _validation(metrics, recipe),
        "sha256": config["sha256"],
    }
    return _render(metrics, fields, tags=_TAGS, model_name=repo_name)


def _load_line(config: Mapping[str, Any], entry: ModelEntry, tag: str | None) -> tuple[str, str]:
    """What the card's snippet passes to ``load_pretrained``, and a comment to follow it.

    ``tag`` is the release whose pinned file the weights are, if any (``released_tag``).
    """
    repo_id = config.get("repo_id")
    # A release's own file loads by its registry name; any other weights must not, or the
    # snippet would load the project's weights instead of the ones this card describes.
    if tag is not None and repo_id in (None, entry.releases[tag].repo_id):
        return (entry.name if tag == entry.default_release else f"{entry.name}@{tag}"), ""
    if repo_id:
        return f"hf-hub:{repo_id}", ""
    return "path/to/this/folder", '  # or "hf-hub:OWNER/NAME" once it is pushed there'


def ensemble_card(config: Mapping[str, Any]) -> ModelCard:
    """The card of the pretrained ensemble (``hub/ensemble/README.md``), from its config.

    Args:
        config: The ensemble's ``config.json`` content as ``scripts/release.py`` writes it:
            ``members`` (names), ``combination`` (how their outputs are combined), ``metrics``
            (the ensemble's, with ``images_per_s``), ``member_metrics`` (name ->
            ``test_accuracy`` and ``images_per_s``), ``measured_with`` and ``library_version``.

    Returns:
        The card; ``card_markdown(card)`` is the README.md text.

    Raises:
        KeyError: ``config`` lacks ``members``, or a member has no ``member_metrics``.
    """
    metrics = dict(config.get("metrics") or {})
    member_metrics = config.get("member_metrics") or {}
    members = [
        {
            "name": name,
            "accuracy": _percent(member_metrics[name]["test_accuracy"]),
            "speed": _count(member_metrics[name].get("images_per_s")),
        }
        for name in config["members"]
    ]
    fields = {
        **_common_fields(config, metrics, title="ensemble"),
        "description": (
            "The study's proposal for going further: the pretrained networks "
            f"{_and_list(config['members'])} as one model that averages their class probabilities."
        ),
        "load_name": "ensemble",
        "load_comment": "",
        "members": members,
        "combination": config.get("combination", "mean of the members' softmax probabilities"),
        "speed": _count(metrics.get("images_per_s")),
        "measured_with": config.get("measured_with"),
    }
    return _render(metrics, fields, tags=_ENSEMBLE_TAGS, model_name="ensemble")


def card_markdown(card: ModelCard) -> str:
    """The text of README.md for ``card``: YAML front matter, body, one final newline.

    Args:
        card: A card from :func:`model_card` or :func:`ensemble_card`.

    Returns:
        The Markdown text.
    """
    return str(card).rstrip("\n") + "\n"


def recipe_rows(recipe: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A recipe as (setting, value) rows of the card's table; nested dicts become dotted names.

    ``{"augment": {"degrees": 12.0}, "grad_clip": None}`` gives
    ``[("augment.degrees", "12.0"), ("grad_clip", "none")]``.

    Args:
        recipe: The recipe as plain data (``dataclasses.asdict`` of a ``TrainConfig``).
        prefix: Prepended to every name (used for the nested dicts).

    Returns:
        One row per leaf setting, in the recipe's order.
    """
    rows = []
    for key, value in recipe.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += recipe_rows(value, prefix=f"{name}.")
        else:
            rows.append((name, _value(value)))
    return rows


def _value(value: Any) -> str:
    if value is None or (isinstance(value, Mapping) and not value):
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(_value(v) for v in value)}]"
    return str(value)


def _common_fields(
    config: Mapping[str, Any], metrics: Mapping[str, Any], *, title: str
) -> dict[str, Any]:
    """The template values both cards share: title, version, results and file names."""
    accuracy = metrics.get("test_accuracy")
    per_class = metrics.get("per_class_accuracy") or []
    return {
        "title": title,
        "version": config.get("library_version") or __version__,
        "project_url": PROJECT_URL,
        "accuracy": None if accuracy is None else _percent(accuracy),
        "test_images": _count(metrics.get("num_test_images")) or None,
        "per_class": [(digit, _percent(a)) for digit, a in enumerate(per_class)],
        "confused_pairs": [tuple(pair) for pair in metrics.get("confused_pairs") or []],
        "calibration": _calibration(config.get("calibration")),
        "robustness": _robustness(metrics.get("robustness")),
        "members": None,
        "sha256": None,
        "weights_name": WEIGHTS_NAME,
        "config_name": CONFIG_NAME,
    }


def _calibration(section: Any) -> dict[str, Any] | None:
    """The card's calibration figures: the temperature, what it was fitted on, ECE and NLL."""
    if not isinstance(section, Mapping) or section.get("temperature") is None:
        return None
    fitted = section.get("fitted_on") or {}
    test = section.get("test") or {}
    images = _count(fitted.get("num_images"))
    seed = fitted.get("seed")
    split = f"the {images}-image validation split" if images else "the validation split"
    return {
        "temperature": f"{section['temperature']:.3f}",
        "fitted_on": split + (f" (seed {seed})" if seed is not None else ""),
        "test_images": _count(test.get("num_images")),
        "ece_before": _maybe_percent(test.get("ece_before")),
        "ece_after": _maybe_percent(test.get("ece_after")),
        "nll_before": _maybe_float(test.get("nll_before")),
        "nll_after": _maybe_float(test.get("nll_after")),
        "bins": test.get("ece_bins", 15),
    }


def _robustness(suite: Any) -> dict[str, Any] | None:
    """The card's corruption-suite figures: the mean and one row per corruption."""
    if not isinstance(suite, Mapping) or not suite.get("corruption_accuracy"):
        return None
    clean = suite.get("clean_accuracy")
    return {
        "mean": _percent(suite["mean_corruption_accuracy"]),
        "clean": None if clean is None else _percent(clean),
        "rows": [
            (name, _percent(acc), "" if clean is None else f"{100 * (acc - clean):+.2f}")
            for name, acc in suite["corruption_accuracy"].items()
        ],
        "count": len(suite["corruption_accuracy"]),
        "images": _count(suite.get("num_images")),
        "seed": suite.get("seed", 0),
    }


def _maybe_percent(fraction: float | None) -> str | None:
    return None if fraction is None else _percent(fraction)


def _maybe_float(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def _validation(metrics: Mapping[str, Any], recipe: Mapping[str, Any]) -> dict[str, Any] | None:
    if "val_accuracy" not in metrics or "epochs_trained" not in metrics:
        return None
    minutes = metrics.get("train_time_s", 0) / 60
    return {
        "accuracy": _percent(metrics["val_accuracy"]),
        "images": _count(recipe.get("val_size", 5000)),
        "epochs": metrics["epochs_trained"],
        "took": f" in {minutes:.1f} min of training" if minutes else "",
    }


def _render(
    metrics: Mapping[str, Any], fields: Mapping[str, Any], *, tags: list[str], model_name: str
) -> ModelCard:
    """The template filled with ``fields``, under YAML front matter whose ``model-index`` holds
    the test accuracy, if known."""
    # Imported here: huggingface_hub's card module loads its Hub client, about 0.1 s that
    # every `mnist-zoo` run would pay at start while most never write a card.
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    accuracy = metrics.get("test_accuracy")
    results = None
    if accuracy is not None:
        results = [
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type="ylecun/mnist",
                dataset_name="MNIST",
                dataset_split="test",
                metric_type="accuracy",
                metric_value=round(100 * accuracy, 2),
                metric_name="Test accuracy (%)",
            )
        ]
    data = ModelCardData(
        license="mit",
        library_name=LIBRARY_NAME,
        tags=list(tags),
        datasets=["ylecun/mnist"],
        metrics=["accuracy"],
        pipeline_tag="image-classification",
        model_name=model_name if results else None,
        eval_results=results,
    )
    return ModelCard.from_template(data, template_path=str(TEMPLATE_PATH), **fields)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _count(n: int | None) -> str:
    return f"{n:,}" if n else ""


def _and_list(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
