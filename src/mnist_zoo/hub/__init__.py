"""Pretrained weights on the Hugging Face Hub: save, publish and load them safely.

A model's weights live in a folder laid out exactly like its Hub repo:

```text
hub/minivgg/
    model.safetensors   fp32 state dict (never pickle)
    config.json         architecture, builder kwargs, recipe, metrics, SHA-256 of the weights
    README.md           model card: Hub YAML front matter + a short human summary
```

```python
import mnist_zoo.hub as hub
model = mnist_zoo.create_model("minivgg")      # ... trained
hub.save_pretrained(model, "hub/minivgg", metrics=result.to_dict())
hub.push_to_hub("hub/minivgg", "mnist-zoo/minivgg")
model = hub.load_pretrained("minivgg")        # registry name: pinned repo, revision and SHA-256
model = hub.load_pretrained("hub/minivgg")    # or a local folder in the same layout
model = hub.load_pretrained("hf-hub:owner/name@v1")  # or any Hub repo in the same layout
```

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache and environment
variables work as Hub users expect: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT``
(which server), ``HF_HUB_OFFLINE=1`` (no network, cache only), ``HF_HUB_DOWNLOAD_TIMEOUT``
(seconds a download waits for data; default 10).

What is checked before a single byte of a weights file is parsed:

* its size, before a byte is read: the pinned size, or at most what its architecture's fp32
  state dict takes (plus 1 MiB of header); a link to a device or a huge file is never read;
* its SHA-256 (hex, any case): for a registry name at a pinned release (the default one, or
  ``revision="v0.1.0"`` / ``"minivgg@v0.1.0"``), against that release's pin, and
  ``config.json`` against its own pinned SHA-256; for an ``hf-hub:owner/name`` repo, or a
  registry name at a revision no release pins (only with ``trust_unverified=True``), against
  the Hub's ETag (for LFS files the SHA-256 the Hub computed on upload) and the SHA-256 the
  repo's ``config.json`` records. That catches corruption in transit or in the cache, not a
  repo owner changing the weights;
* local folder: trusted, but checked against the SHA-256 its ``config.json`` records; a folder
  whose config records none loads only with ``trust_unverified=True``;
* then the config (a registry name's architecture comes from the registry; a config from a
  newer mnist_zoo is refused) and the tensors (keys, shapes, dtypes, finite values).

A file from the cache that fails its check is evicted (only ever a blob in the repo's own
``blobs/`` folder) and never loaded. Nothing is ever unpickled.

The package's modules, one concern each: :mod:`~mnist_zoo.hub.layout` (the files of a Hub
folder), :mod:`~mnist_zoo.hub.verify` (the checks), :mod:`~mnist_zoo.hub.card` (the model
card, rendered from a template), :mod:`~mnist_zoo.hub.folder` (writing local folders),
:mod:`~mnist_zoo.hub.reading` (reading them and building models),
:mod:`~mnist_zoo.hub.remote` (download, evict, push) and :mod:`~mnist_zoo.hub.loading`
(``load_pretrained``).
"""

from __future__ import annotations

from ..errors import (
    ChecksumMismatchError,
    CorruptWeightsError,
    HubError,
    HubFileNotFoundError,
    HubNotFoundError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnavailableError,
    IncompatibleConfigError,
    InvalidHubFolderError,
    NoPretrainedWeightsError,
    UnverifiedWeightsError,
    WeightsMismatchError,
)
from .card import ensemble_card, model_card
from .folder import complete_save, save_pretrained, write_card
from .layout import CARD_NAME, CONFIG_NAME, HUB_FILES, LIBRARY_NAME, WEIGHTS_NAME, sha256_file
from .loading import (
    HF_HUB_PREFIX,
    PRETRAINED_MEMBERS,
    SPECIAL_LOADERS,
    load_pretrained,
    load_pretrained_ensemble,
)
from .onnx import load_onnx, write_onnx
from .push import push_to_hub

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "HF_HUB_PREFIX",
    "HUB_FILES",
    "LIBRARY_NAME",
    "PRETRAINED_MEMBERS",
    "SPECIAL_LOADERS",
    "WEIGHTS_NAME",
    "ChecksumMismatchError",
    "CorruptWeightsError",
    "HubError",
    "HubFileNotFoundError",
    "HubNotFoundError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnavailableError",
    "IncompatibleConfigError",
    "InvalidHubFolderError",
    "NoPretrainedWeightsError",
    "UnverifiedWeightsError",
    "WeightsMismatchError",
    "complete_save",
    "ensemble_card",
    "load_onnx",
    "load_pretrained",
    "load_pretrained_ensemble",
    "model_card",
    "push_to_hub",
    "save_pretrained",
    "sha256_file",
    "write_card",
    "write_onnx",
]
