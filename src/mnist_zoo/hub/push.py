"""Publishing: upload a folder written by ``save_pretrained`` to a Hub repo, and tag its release.

The registry pins a release by a tag of its repo and its file's SHA-256, so a tag is never
moved: pushing with a tag that already names other weights is refused before anything is
uploaded, and one that already names these weights is left as it is.

```python
from mnist_zoo import hub
hub.push_to_hub("hub/minivgg", "mnist-zoo/minivgg", tag="v0.3.0")
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import HubUnavailableError, InvalidArgumentError, InvalidHubFolderError, MnistZooError
from ..registry import get_model_entry
from .folder import complete_save
from .layout import CONFIG_NAME, HUB_FILES, ONNX_NAME, WEIGHTS_NAME, sha256_file
from .onnx import ONNX_SHA256_KEY
from .reading import check_folder, load_folder, read_config
from .remote import CLIENT, transport_errors
from .verify import released_tag, same_sha256

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

__all__ = ["push_to_hub", "release_of"]


def push_to_hub(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload mnist_zoo weights",
    private: bool | None = None,
    endpoint: str | None = None,
    tag: str | None = None,
) -> CommitInfo:
    """Upload a folder written by :func:`~mnist_zoo.hub.save_pretrained` to a Hub model repo.

    The folder is checked (all three files present, weights load into the architecture the
    config names) before any network call; a :func:`~mnist_zoo.hub.save_pretrained`
    interrupted after its switch is finished first (see
    :func:`~mnist_zoo.hub.folder.complete_save`). It uploads the three files of the Hub layout,
    and ``model.onnx`` when the config records that very file; nothing else (checkpoints stay
    local). The repo, and the branch if ``revision`` names one, are created if missing.

    Args:
        folder: A folder written by :func:`~mnist_zoo.hub.save_pretrained`.
        repo_id: The target repo, ``"owner/name"``.
        revision: Branch to commit to; default ``main``.
        token: Hub token with write access; default: the one ``hf auth login`` saved.
        commit_message: The commit's summary line.
        private: Visibility if the repo is created; ``None`` keeps the Hub's default.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        tag: Also tag the new commit, e.g. ``"v0.3.0"``: the registry pins a release's
            weights by such a tag plus the file's SHA-256. A tag the repo already has on these
            weights is left where it is.

    Returns:
        The commit: a ``str`` of its URL, with the commit sha in ``.oid``.

    Raises:
        InvalidHubFolderError: The folder is missing or incomplete, or holds a ``model.onnx``
            that its config does not record (an export of other weights, say).
        ChecksumMismatchError: The folder's weights are not the ones its config records.
        WeightsMismatchError: The weights do not fit the architecture the config names.
        InvalidArgumentError: ``repo_id`` is not a valid repo id, or ``tag`` already names
            other weights in the repo (a ``ValueError``); nothing was uploaded.
        HubUnavailableError: The Hub could not be reached (refused, stalled, no network).
        huggingface_hub.errors.HfHubHTTPError: The Hub refused or failed a request.
    """
    folder = Path(folder)
    complete_save(folder)  # a save_pretrained interrupted after its switch is finished first
    check_folder(folder)
    load_folder(folder)  # never publish weights that would not load
    config = read_config(folder / CONFIG_NAME)  # its sha256 is the weights' (just verified)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InvalidArgumentError(f"Invalid repo_id {repo_id!r}: {err}") from None

    files = [*HUB_FILES, *_vouched_onnx(folder, config)]
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token, **CLIENT)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        if tag is not None and _tagged_already(api, repo_id, tag, config["sha256"]):
            tag = None
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            allow_patterns=files,
        )
        if tag is not None:
            api.create_tag(repo_id, tag=tag, revision=commit.oid)
    except Exception as err:
        if not isinstance(err, transport_errors()):
            raise
        raise HubUnavailableError(
            f"Cannot publish {folder} to {repo_id}: the Hub at "
            f"{endpoint or hf_constants.ENDPOINT} could not be reached ({type(err).__name__}: "
            f"{err}). Check the network and HF_ENDPOINT (or endpoint=), then push again."
        ) from err
    return commit


def _vouched_onnx(folder: Path, config: dict[str, Any]) -> list[str]:
    """``[ONNX_NAME]`` if the folder's ``model.onnx`` is the export its config records."""
    onnx = folder / ONNX_NAME
    if not onnx.exists():
        return []
    recorded = config.get(ONNX_SHA256_KEY)
    if isinstance(recorded, str) and same_sha256(sha256_file(onnx), recorded):
        return [ONNX_NAME]
    raise InvalidHubFolderError(
        f"{onnx} is not the export {CONFIG_NAME} records "
        f"({'it records none' if recorded is None else 'another SHA-256'}), so it may be from "
        "other weights, and it was not uploaded: nothing was. Delete it, or export it again "
        "with mnist_zoo.hub.write_onnx(folder), then push again."
    )


def release_of(folder: str | os.PathLike[str]) -> str | None:
    """The release whose pinned weights a folder holds: the tag ``mnist-zoo push`` gives.

    Args:
        folder: A folder written by :func:`~mnist_zoo.hub.save_pretrained`.

    Returns:
        The tag (``"v0.3.0"`` for a checkout's ``hub/minivgg``), or ``None`` for weights no
        release pins, and for a folder whose config cannot be read (pushing it says why).
    """
    try:
        config = read_config(Path(folder) / CONFIG_NAME)
        return released_tag(get_model_entry(config["architecture"]), str(config.get("sha256")))
    except (MnistZooError, OSError):
        return None


def _tagged_already(api: Any, repo_id: str, tag: str, sha256: str) -> bool:
    """Whether ``tag`` already names these weights; raise if it names others."""
    tags = {ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id).tags}
    if tag not in tags:
        return False
    files = api.get_paths_info(repo_id, [WEIGHTS_NAME], revision=tags[tag])
    tagged = next((f.lfs.sha256 for f in files if getattr(f, "lfs", None)), None)
    if tagged is not None and same_sha256(tagged, sha256):
        return True
    raise InvalidArgumentError(
        f"{repo_id} already has the tag {tag!r}, on commit {tags[tag][:12]}, whose "
        f"{WEIGHTS_NAME} is {'not there' if tagged is None else tagged[:12] + '...'}, not these "
        f"weights ({sha256[:12]}...). Nothing was uploaded. A release's tag is never moved, "
        "because load_pretrained pins the release by it: choose a new tag, or push without one."
    )
