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
```

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache and environment
variables work as Hub users expect: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT``
(which server), ``HF_HUB_OFFLINE=1`` (no network, cache only).

How the weights file is verified before a single byte of it is parsed:

* registry name at its pinned revision: against the SHA-256 pinned in the registry;
* registry name with ``revision=`` resolving to another commit: the pin describes other bytes,
  so the file is checked against the Hub's ETag, which for LFS files is the SHA-256 the Hub
  computed on upload. That catches corruption in transit or in the cache, not a repo owner
  changing the weights: pass no ``revision`` to get the reviewed, pinned bytes;
* local folder: trusted, but checked against the SHA-256 that ``config.json`` records.

A file that fails its check is deleted from the cache and never loaded.

The package's modules, one concern each: :mod:`~mnist_zoo.hub.layout` (the files of a Hub
folder), :mod:`~mnist_zoo.hub.card` (the model card, rendered from a template),
:mod:`~mnist_zoo.hub.folder` (local folders: save, read, check),
:mod:`~mnist_zoo.hub.remote` (download, verify, evict, push) and
:mod:`~mnist_zoo.hub.loading` (``load_pretrained``).
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
    InvalidHubFolderError,
    NoPretrainedWeightsError,
    WeightsMismatchError,
)
from .card import ensemble_card, model_card
from .folder import save_pretrained, write_card
from .layout import CARD_NAME, CONFIG_NAME, HUB_FILES, LIBRARY_NAME, WEIGHTS_NAME, sha256_file
from .loading import PRETRAINED_MEMBERS, SPECIAL_LOADERS, load_pretrained, load_pretrained_ensemble
from .remote import push_to_hub

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
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
    "InvalidHubFolderError",
    "NoPretrainedWeightsError",
    "WeightsMismatchError",
    "ensemble_card",
    "load_pretrained",
    "load_pretrained_ensemble",
    "model_card",
    "push_to_hub",
    "save_pretrained",
    "sha256_file",
    "write_card",
]
