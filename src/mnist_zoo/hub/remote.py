"""The network side of the Hub: download and verify weights, evict bad ones, publish folders.

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache and environment
variables work as Hub users expect: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT``
(which server), ``HF_HUB_OFFLINE=1`` (no network, cache only). Every failure is raised as a
:class:`~mnist_zoo.errors.HubError` subclass whose message says what to do about it.

How a downloaded weights file is verified before a single byte of it is parsed:

* at its pinned revision: against the SHA-256 pinned in the registry;
* with ``revision=`` resolving to another commit: the pin describes other bytes, so the file is
  checked against the Hub's ETag, which for LFS files is the SHA-256 the Hub computed on
  upload. That catches corruption in transit or in the cache, not a repo owner changing the
  weights: pass no ``revision`` to get the reviewed, pinned bytes.

A file that fails its check is deleted from the cache and never loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from huggingface_hub import CommitInfo, HfApi, hf_hub_download
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .._version import __version__
from ..errors import (
    ChecksumMismatchError,
    HubFileNotFoundError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnavailableError,
    InvalidArgumentError,
)
from ..registry import PretrainedWeights
from .folder import check_folder, load_folder
from .layout import HUB_FILES, SHA256_PATTERN

__all__ = ["FetchedWeights", "download", "evict", "fetch_weights", "push_to_hub"]

logger = logging.getLogger(__name__)

#: How the package introduces itself to the Hub (in the User-Agent of every request).
_CLIENT = {"library_name": "mnist_zoo", "library_version": __version__}


@dataclass(frozen=True)
class FetchedWeights:
    """A weights file from the Hub cache whose bytes passed their check.

    Attributes:
        path: The file in the cache (``snapshots/<commit>/<filename>``).
        data: Its bytes, exactly those that were hashed.
        commit: The commit the requested revision resolved to.
        sha256: The bytes' SHA-256.
    """

    path: Path
    data: bytes
    commit: str
    sha256: str


def fetch_weights(
    name: str,
    pin: PretrainedWeights,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    endpoint: str | None,
) -> FetchedWeights:
    """Download a registered model's weights file (or take it from the cache) and verify it.

    Args:
        name: The model's registry name, for messages.
        pin: Where its weights live and the SHA-256 of the reviewed bytes.
        revision: Branch, tag or commit instead of the pinned one; ``None`` for the pin.
        cache_dir: Hub cache folder; default ``HF_HUB_CACHE``.
        local_files_only: Use only the cache, never the network.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.

    Returns:
        The verified file.

    Raises:
        ChecksumMismatchError: The bytes are not the expected ones; the file was evicted.
        HubNotFoundError: The repo, revision or file does not exist (a subclass says which).
        HubUnavailableError: The Hub cannot be reached and the file is not cached.
    """
    path = download(
        pin.repo_id,
        pin.filename,
        revision=revision or pin.revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
    )
    # The cache stores a file at snapshots/<commit>/<filename>.
    commit = path.parents[len(PurePosixPath(pin.filename).parts) - 1].name
    where = f"{pin.filename} of {pin.repo_id}@{commit}"

    pinned = revision in (None, pin.revision) or commit == pin.revision
    if pinned:
        expected, against = pin.sha256, f"the SHA-256 mnist_zoo {__version__} pins"
        hint = "the weights on the Hub are not the reviewed ones: update mnist_zoo or report it"
    else:
        # The cache names blobs by ETag, and the Hub's ETag of an LFS file is its SHA-256.
        etag = Path(os.path.realpath(path)).name
        expected = etag if SHA256_PATTERN.fullmatch(etag) else None
        against = "the SHA-256 the Hub reports for it (its ETag)"
        hint = "the Hub's copy may be damaged: tell the repo's owner"
        logger.warning(
            "Loading %s at revision %r (commit %s) instead of the pinned %s: checking it against "
            "%s, not against the reviewed pin.",
            name,
            revision,
            commit[:12],
            pin.revision[:12],
            against if expected else "nothing (the cache does not record the ETag)",
        )

    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if expected is not None and sha256 != expected:
        evict(path)
        raise ChecksumMismatchError(
            f"{where} has SHA-256 {sha256}, but {against} is {expected}. The file was deleted "
            f"from the cache and not loaded. Run again to download it afresh; if this persists, "
            f"{hint}."
        )
    return FetchedWeights(path, data, commit, sha256)


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    endpoint: str | None,
) -> Path:
    """``hf_hub_download``, its failures raised as subclasses of ``HubError`` that say what to do.

    Args:
        repo_id: The Hub repo, ``"owner/name"``.
        filename: The file in the repo.
        revision: Branch, tag or commit.
        cache_dir: Hub cache folder; default ``HF_HUB_CACHE``.
        local_files_only: Use only the cache, never the network.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.

    Returns:
        The file's path in the cache.

    Raises:
        HubRevisionNotFoundError: The revision does not exist in the repo.
        HubFileNotFoundError: The repo at that revision has no such file.
        HubRepoNotFoundError: The repo does not exist (or is private or gated).
        HubUnavailableError: The Hub cannot be reached (or offline mode is on) and the file is
            not cached, or the download failed.
    """
    what = f"{filename} of {repo_id} at revision {revision!r}"
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                endpoint=endpoint,
                **_CLIENT,
            )
        )
    # Order matters: the first three are all HTTP errors, a gated repo is a RepositoryNotFound.
    except hf_errors.RevisionNotFoundError as err:
        raise HubRevisionNotFoundError(
            f"Revision {revision!r} does not exist in {repo_id}. Pass a branch, tag or commit "
            "of that repo, or no revision to get the pinned one."
        ) from err
    except hf_errors.RemoteEntryNotFoundError as err:
        raise HubFileNotFoundError(
            f"{repo_id} at revision {revision!r} has no file {filename!r}: the repo is not in "
            f"mnist_zoo's Hub layout ({', '.join(HUB_FILES)}). Pick another revision, or "
            "re-publish it with mnist_zoo.hub.push_to_hub()."
        ) from err
    except hf_errors.RepositoryNotFoundError as err:
        raise HubRepoNotFoundError(
            f"Hub repo {repo_id!r} was not found at {endpoint or hf_constants.ENDPOINT}. Check "
            "the repo id and HF_ENDPOINT; if the repo is private or gated, log in with "
            "`hf auth login` (or set HF_TOKEN)."
        ) from err
    except hf_errors.LocalEntryNotFoundError as err:
        cache = cache_dir or hf_constants.HF_HUB_CACHE
        if local_files_only or hf_constants.is_offline_mode():
            why = "offline mode is on (local_files_only=True or HF_HUB_OFFLINE=1)"
        else:
            why = f"the Hub at {endpoint or hf_constants.ENDPOINT} could not be reached"
        raise HubUnavailableError(
            f"Cannot get {what}: {why} and it is not in the cache at {cache}. To work offline: "
            "load it once with network access (this fills the cache), then set HF_HUB_OFFLINE=1; "
            "or pass cache_dir= pointing to a cache that has it; or pass a local folder written "
            "by save_pretrained(), e.g. load_pretrained('hub/<name>')."
        ) from err
    except hf_errors.HfHubHTTPError as err:
        raise HubUnavailableError(
            f"Downloading {what} failed: {err}. Retry later, or work offline (see HF_HUB_OFFLINE)."
        ) from err


def evict(pointer: Path) -> None:
    """Delete a file from the Hub cache, so that the next call downloads it afresh.

    The snapshot entry is usually a symlink to a blob: both are removed, or the bad bytes would
    be found again. A file that cannot be deleted is logged, not raised: the caller is already
    reporting the real problem.

    Args:
        pointer: The file's path under ``snapshots/`` in the cache.
    """
    for path in {Path(os.path.realpath(pointer)), pointer}:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            logger.warning("Could not delete %s from the cache: %s", path, err)


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
    config names) before any network call. The repo, and the branch if ``revision`` names
    one, are created if missing.

    Args:
        folder: A folder written by :func:`~mnist_zoo.hub.save_pretrained`.
        repo_id: The target repo, ``"owner/name"``.
        revision: Branch to commit to; default ``main``.
        token: Hub token with write access; default: the one ``hf auth login`` saved.
        commit_message: The commit's summary line.
        private: Visibility if the repo is created; ``None`` keeps the Hub's default.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        tag: Also tag the new commit, e.g. ``"v0.1.0"``: the registry pins a release's
            weights by such a tag plus the file's SHA-256.

    Returns:
        The commit: a ``str`` of its URL, with the commit sha in ``.oid``.

    Raises:
        InvalidHubFolderError: The folder is missing or incomplete.
        ChecksumMismatchError: The folder's weights are not the ones its config records.
        WeightsMismatchError: The weights do not fit the architecture the config names.
        InvalidArgumentError: ``repo_id`` is not a valid repo id (a ``ValueError``).
        huggingface_hub.errors.HfHubHTTPError: The Hub refused or failed a request.
    """
    folder = Path(folder)
    check_folder(folder)
    load_folder(folder)  # never publish weights that would not load
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InvalidArgumentError(f"Invalid repo_id {repo_id!r}: {err}") from None

    api = HfApi(endpoint=endpoint, token=token, **_CLIENT)
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    if revision not in (None, "main"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        revision=revision,
        commit_message=commit_message,
        allow_patterns=list(HUB_FILES),
    )
    if tag is not None:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, exist_ok=True)
    return commit
