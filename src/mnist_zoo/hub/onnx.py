"""ONNX files beside the weights: ``model.onnx`` in a Hub folder, pinned by ``config.json``.

```python
from mnist_zoo.hub import load_onnx, write_onnx
write_onnx("hub/minivgg")            # export, check, write model.onnx, record its SHA-256
model = load_onnx("minivgg")         # the pinned repo's model.onnx, verified, in ONNX Runtime
model = load_onnx("hub/minivgg")     # or a local folder's
model.predict("three.png").labels
```

A folder's ``config.json`` records the SHA-256 of its ``model.onnx`` under
:data:`ONNX_SHA256_KEY`. For a registered name, ``config.json`` comes from the pinned revision
and is checked against the registry's pin of its SHA-256 (where the pin records one), so the
ONNX file is pinned through it: its size is bounded before it is read, and its SHA-256 must be
the one the config records (and, when the Hub reports one, its ETag) before ONNX Runtime parses
a byte of it. A file that fails is deleted from the cache and never loaded, as weights are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..errors import (
    ChecksumMismatchError,
    HubFileNotFoundError,
    InvalidArgumentError,
    InvalidHubFolderError,
)
from ..export import OnnxModel, export
from ..registry import get_model_entry, list_models
from .layout import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME
from .reading import load_folder, parse_config, read_config
from .remote import FetchedFile, check_pinned_config, fetch_file, reject
from .verify import MAX_CONFIG_BYTES, read_limited, same_sha256, size_limit

__all__ = ["ONNX_NAME", "ONNX_SHA256_KEY", "load_onnx", "write_onnx"]

#: The ``config.json`` key that records the SHA-256 of :data:`ONNX_NAME`.
ONNX_SHA256_KEY = "onnx_sha256"


def write_onnx(folder: str | os.PathLike[str], *, check_images: torch.Tensor | None = None) -> Path:
    """Export a Hub folder's model to ``model.onnx`` beside its weights and record its SHA-256.

    The model is loaded from the folder (its weights verified against ``config.json``),
    exported with :func:`mnist_zoo.export.export` (checked in ONNX Runtime before it is kept)
    and the file's SHA-256 is written into ``config.json`` as :data:`ONNX_SHA256_KEY`; both
    writes are atomic. The weights are not touched.

    Args:
        folder: A folder written by :func:`~mnist_zoo.hub.save_pretrained`.
        check_images: Images to check the export on (default: the export's check batch).

    Returns:
        The path of ``model.onnx``.

    Raises:
        HubError: The folder cannot be loaded (a subclass says why).
        ExportError: The export did not reproduce the model's logits; nothing was written.
        MissingDependencyError: The ``export`` extra is not installed.
    """
    folder = Path(folder)
    model = load_folder(folder)
    # The file's metadata names the weights it came from by where they are published, not by
    # a path on the machine that exported it.
    repo_id = model.pretrained_cfg.get("repo_id")
    beside = f" in {repo_id}" if repo_id else ""
    model.pretrained_cfg["source"] = f"the {WEIGHTS_NAME} beside this file{beside}"
    path = export(model, folder / ONNX_NAME, check_images=check_images)
    config_path = folder / CONFIG_NAME
    config = read_config(config_path)
    config[ONNX_SHA256_KEY] = hashlib.sha256(path.read_bytes()).hexdigest()
    atomic_write(config_path, json.dumps(config, indent=2, default=str) + "\n")
    return path


def load_onnx(
    name: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    threads: int | None = None,
) -> OnnxModel:
    """A published model's ``model.onnx``, verified, as an ONNX Runtime :class:`OnnxModel`.

    Args:
        name: A registered name with published weights (``"minivgg"``), or a local Hub
            folder whose ``config.json`` records :data:`ONNX_SHA256_KEY`.
        revision: Branch, tag or commit instead of the pinned one (the config is then not
            checked against the pin; the file still is against the config and the ETag).
        cache_dir: Hub cache folder; default ``HF_HUB_CACHE``.
        local_files_only: Use only the cache, never the network.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        threads: ONNX Runtime's intra-op threads; default: as
            :class:`~mnist_zoo.export.OnnxModel` chooses (``$OMP_NUM_THREADS`` when set).

    Returns:
        The ONNX model, ready to ``predict``.

    Raises:
        InvalidArgumentError: ``name`` is ``"ensemble"``, which has no published ONNX file
            (export one with :func:`mnist_zoo.export.export`) (a ``ValueError``).
        UnknownModelError: ``name`` is neither registered nor a folder (a ``KeyError``).
        InvalidHubFolderError: ``name`` is a path, but not to a folder.
        HubFileNotFoundError: The folder or repo has no ``model.onnx``, or its config records
            no SHA-256 for one.
        ChecksumMismatchError: The file is not the one the config records; it was not loaded.
        HubError: Any other failure to fetch or read the files (a subclass says why).
        MissingDependencyError: ``onnxruntime`` is not installed.
    """
    key = os.fspath(name)
    if key.lower() == "ensemble":
        raise InvalidArgumentError(
            "The ensemble has no published ONNX file; export one as a single graph: "
            "mnist_zoo.export.export(mnist_zoo.load_pretrained('ensemble'), 'ensemble.onnx')."
        )
    if not isinstance(name, os.PathLike) and key.lower() in list_models():
        where = {"cache_dir": cache_dir, "local_files_only": local_files_only, "endpoint": endpoint}
        return _load_hub_onnx(key.lower(), revision, threads, where)
    if Path(key).is_dir():
        return _load_folder_onnx(Path(key), threads)
    if not isinstance(name, os.PathLike) and "/" not in key and os.sep not in key:
        get_model_entry(key)  # an unknown name: raises UnknownModelError, with suggestions
    raise InvalidHubFolderError(
        f"{key!r} is neither a folder nor a registered model name (those are: "
        f"{', '.join(list_models())})."
    )


def _expected_sha256(config: dict[str, Any], source: str) -> str:
    recorded = config.get(ONNX_SHA256_KEY)
    if not isinstance(recorded, str) or not recorded:
        raise HubFileNotFoundError(
            f"{source} records no {ONNX_SHA256_KEY}: that release has no verified {ONNX_NAME}. "
            "Export one yourself: mnist_zoo.export.export(model, 'model.onnx')."
        )
    return recorded


def _onnx_limit(config: dict[str, Any]) -> int:
    # An ONNX file holds the weights (as fp32 initializers) plus a graph of a few KiB.
    entry = get_model_entry(config["architecture"])
    return 2 * size_limit(entry.builder, dict(config.get("model_kwargs") or {}))


def _load_folder_onnx(folder: Path, threads: int | None) -> OnnxModel:
    config = read_config(folder / CONFIG_NAME)
    expected = _expected_sha256(config, str(folder / CONFIG_NAME))
    path = folder / ONNX_NAME
    if not path.is_file():
        raise HubFileNotFoundError(
            f"{folder} has no {ONNX_NAME}; write one with "
            f"mnist_zoo.hub.write_onnx({str(folder)!r})."
        )
    data = read_limited(path, limit=_onnx_limit(config))
    actual = hashlib.sha256(data).hexdigest()
    if not same_sha256(actual, expected):
        raise ChecksumMismatchError(
            f"{path} has SHA-256 {actual}, but {folder / CONFIG_NAME} records {expected}: the "
            "file is not the one the folder was published with; it was not loaded. Write it "
            f"again with mnist_zoo.hub.write_onnx({str(folder)!r})."
        )
    model = OnnxModel(data, threads=threads)
    model.source = path
    return model


def _load_hub_onnx(name: str, revision: str | None, threads: int | None, where: Any) -> OnnxModel:
    pin = get_model_entry(name).pretrained
    if pin is None:
        raise HubFileNotFoundError(f"{name!r} has no published weights, so no {ONNX_NAME}.")
    config_file = fetch_file(
        pin.repo_id,
        CONFIG_NAME,
        revision=revision or pin.revision,
        limit=MAX_CONFIG_BYTES,
        **where,
    )
    commit = config_file.commit
    if revision in (None, pin.revision) or commit == pin.revision:
        check_pinned_config(config_file, pin)
    source = f"{CONFIG_NAME} of {pin.repo_id}@{commit}"
    config = parse_config(config_file.data, source)
    expected = _expected_sha256(config, source)
    onnx_file = fetch_file(
        pin.repo_id, ONNX_NAME, revision=commit, limit=_onnx_limit(config), **where
    )
    _verify(onnx_file, pin.repo_id, expected)
    model = OnnxModel(onnx_file.data, threads=threads)
    model.source = onnx_file.path
    return model


def _verify(fetched: FetchedFile, repo_id: str, expected: str) -> None:
    where = f"{ONNX_NAME} of {repo_id}@{fetched.commit}"
    checks = [(expected, f"the SHA-256 its {CONFIG_NAME} records"),
              (fetched.etag, "the SHA-256 the Hub reports for it (its ETag)")]  # fmt: skip
    for want, against in checks:
        if want and not same_sha256(fetched.sha256, want):
            reject(
                fetched,
                f"{where} has SHA-256 {fetched.sha256}, but {against} is {want}.",
                hint="the repo's copy may be damaged: tell the repo's owner",
            )
