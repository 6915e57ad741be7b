"""The network side of the Hub: download files into the cache, and evict bad ones.

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache and environment
variables work as Hub users expect: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT``
(which server), ``HF_HUB_OFFLINE=1`` (no network, cache only), ``HF_HUB_DOWNLOAD_TIMEOUT``
(seconds a download may wait for data, default 10) and ``HF_HUB_ETAG_TIMEOUT`` (the same for
the metadata request, default 10). Every failure is raised as a
:class:`~mnist_zoo.errors.HubError` subclass whose message says what to do about it; a
stalled or refused connection is a :class:`~mnist_zoo.errors.HubUnavailableError`.

A file is read from the cache only through :func:`~mnist_zoo.hub.verify.read_limited` (its
size is checked before a byte is read) and is verified by the caller
(:mod:`mnist_zoo.hub.loading`) before a byte is parsed. One that fails a check is evicted:
its blob is deleted from the repo's own ``blobs/`` folder, and nothing else ever is. A snapshot
entry that resolves anywhere else (a link planted in a shared cache, say) is reported in the
error and left alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NoReturn

# huggingface_hub's download and upload clients (HfApi, hf_hub_download) are imported where
# they are used: importing them adds about 0.1 s to the start of every `mnist-zoo` run, and
# most runs load a local folder. Its constants and errors are cheap.
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors

from .._version import __version__
from ..errors import (
    ChecksumMismatchError,
    CorruptWeightsError,
    HubFileNotFoundError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnavailableError,
)
from .layout import CONFIG_NAME, HUB_FILES, SHA256_PATTERN
from .verify import read_limited, same_sha256

if TYPE_CHECKING:
    from ..registry import PretrainedWeights

__all__ = [
    "CLIENT",
    "FetchedFile",
    "blob_of",
    "check_pinned_config",
    "download",
    "evict",
    "fetch_file",
    "reject",
    "transport_errors",
]

logger = logging.getLogger(__name__)

#: How the package introduces itself to the Hub (in the User-Agent of every request).
CLIENT = {"library_name": "mnist_zoo", "library_version": __version__}


@dataclass(frozen=True)
class FetchedFile:
    """A file from the Hub cache, read after its size was checked; not yet verified.

    Attributes:
        path: The snapshot entry in the cache (``snapshots/<commit>/<filename>``).
        data: The file's bytes, exactly those that were hashed.
        commit: The commit the requested revision resolved to.
        sha256: The bytes' SHA-256.
        etag: The SHA-256 the Hub reported for the file (the name of its blob, for LFS files),
            or ``None`` when the cache does not record one: a file stored in git rather than
            LFS, or a snapshot entry that does not resolve into the repo's ``blobs/``.
    """

    path: Path
    data: bytes
    commit: str
    sha256: str
    etag: str | None


def fetch_file(
    repo_id: str,
    filename: str,
    *,
    revision: str,
    size: int | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    endpoint: str | None,
) -> FetchedFile:
    """Download a file (or take it from the cache) and read it, its size checked first.

    Args:
        repo_id: The Hub repo, ``"owner/name"``.
        filename: The file in the repo.
        revision: Branch, tag or commit.
        size: The file's exact pinned size in bytes, or ``None``.
        limit: Without ``size``, the most the file may hold, in bytes.
        cache_dir: Hub cache folder; default ``HF_HUB_CACHE``.
        local_files_only: Use only the cache, never the network.
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.

    Returns:
        The file, read but not yet verified: the caller compares ``sha256`` with what it
        expects and calls :func:`reject` when they differ.

    Raises:
        ChecksumMismatchError: Its size is not ``size``; it was evicted.
        CorruptWeightsError: It is not a regular file or is larger than ``limit``; it was
            evicted if it is a blob of the cache.
        HubNotFoundError: The repo, revision or file does not exist (a subclass says which).
        HubUnavailableError: The Hub cannot be reached and the file is not cached.
    """
    path = download(
        repo_id,
        filename,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
    )
    # The cache stores a file at <repo folder>/snapshots/<commit>/<filename>.
    depth = len(PurePosixPath(filename).parts)
    commit = path.parents[depth - 1].name
    try:
        data = read_limited(path, size=size, limit=limit)
    except (ChecksumMismatchError, CorruptWeightsError) as err:
        raise type(err)(f"{filename} of {repo_id}@{commit}: {err} {evict(path)}") from None
    blob = blob_of(path)
    etag = blob.name if blob is not None and SHA256_PATTERN.fullmatch(blob.name) else None
    return FetchedFile(path, data, commit, hashlib.sha256(data).hexdigest(), etag)


def reject(fetched: FetchedFile, message: str, *, hint: str | None = None) -> NoReturn:
    """Evict a fetched file that failed its check, and raise the error that says so.

    Args:
        fetched: The file.
        message: What is wrong with it, ending with a full stop.
        hint: What to do if downloading it afresh does not help, without a full stop.

    Raises:
        ChecksumMismatchError: Always, with ``message``, what eviction did, and ``hint``.
    """
    persists = f" If this persists, {hint}." if hint else ""
    raise ChecksumMismatchError(f"{message} {evict(fetched.path)}{persists}")


def check_pinned_config(fetched: FetchedFile, pin: PretrainedWeights) -> None:
    """Refuse a fetched ``config.json`` that is not the one a release pins.

    Args:
        fetched: The repo's ``config.json``, as :func:`fetch_file` returned it.
        pin: The release it should be; a pin without a config SHA-256 checks nothing.

    Raises:
        ChecksumMismatchError: The file's SHA-256 is not the pinned one; it was evicted.
    """
    if pin.config_sha256 and not same_sha256(fetched.sha256, pin.config_sha256):
        reject(
            fetched,
            f"{CONFIG_NAME} of {pin.repo_id}@{fetched.commit} has SHA-256 {fetched.sha256}, "
            f"but the SHA-256 mnist_zoo {__version__} pins is {pin.config_sha256}.",
            hint="the repo is not the reviewed one: update mnist_zoo or report it",
        )


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
            not cached, or the download failed or stalled (see ``HF_HUB_DOWNLOAD_TIMEOUT``).
    """
    from huggingface_hub import hf_hub_download

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
                **CLIENT,
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
        raise _not_cached(what, cache_dir, local_files_only, endpoint) from err
    except hf_errors.HfHubHTTPError as err:
        raise HubUnavailableError(
            f"Downloading {what} failed: {err}. Retry later, or work offline (see HF_HUB_OFFLINE)."
        ) from err
    except Exception as err:
        if not isinstance(err, transport_errors()):
            raise
        raise _stalled(what, endpoint, err) from err


def _not_cached(
    what: str, cache_dir: str | os.PathLike[str] | None, offline: bool, endpoint: str | None
) -> HubUnavailableError:
    cache = cache_dir or hf_constants.HF_HUB_CACHE
    if offline or hf_constants.is_offline_mode():
        why = "offline mode is on (local_files_only=True or HF_HUB_OFFLINE=1)"
    else:
        why = f"the Hub at {endpoint or hf_constants.ENDPOINT} could not be reached"
    return HubUnavailableError(
        f"Cannot get {what}: {why} and it is not in the cache at {cache}. To work offline: "
        "load it once with network access (this fills the cache), then set HF_HUB_OFFLINE=1; "
        "or pass cache_dir= pointing to a cache that has it; or pass a local folder written "
        "by save_pretrained(), e.g. load_pretrained('hub/<name>')."
    )


def _stalled(what: str, endpoint: str | None, err: Exception) -> HubUnavailableError:
    return HubUnavailableError(
        f"Downloading {what} from {endpoint or hf_constants.ENDPOINT} failed: the connection "
        f"stalled or broke ({type(err).__name__}: {err}). Each read waits "
        f"HF_HUB_DOWNLOAD_TIMEOUT = {hf_constants.HF_HUB_DOWNLOAD_TIMEOUT} s for data "
        "(huggingface_hub then retries a few times). Retry later; on a slow connection set "
        "HF_HUB_DOWNLOAD_TIMEOUT higher; or work offline with a filled cache (HF_HUB_OFFLINE=1)."
    )


def transport_errors() -> tuple[type[BaseException], ...]:
    """The network errors of the HTTP client huggingface_hub uses: refused, reset, timed out.

    huggingface_hub 1.x and later use ``httpx`` (or its fork ``httpx2``), older versions
    ``requests``; whichever is loaded is looked up, so nothing is imported for it.

    Returns:
        The base classes of those errors, possibly empty.
    """
    bases = [("httpx2", "TransportError"), ("httpx", "TransportError")]
    bases += [("requests", "ConnectionError"), ("requests", "Timeout")]
    found = (getattr(sys.modules.get(module), name, None) for module, name in bases)
    return tuple(cls for cls in found if isinstance(cls, type))


def blob_of(pointer: Path) -> Path | None:
    """The cache blob a snapshot entry resolves to, if it lies in its repo's own ``blobs/``.

    Args:
        pointer: A file under ``<cache>/models--OWNER--NAME/snapshots/<commit>/``, as
            ``hf_hub_download`` returns it.

    Returns:
        The resolved blob, or ``None`` when the entry resolves anywhere else: then it is not
        the cache's own file and must never be deleted.
    """
    snapshots = next((p for p in pointer.parents if p.name == "snapshots"), None)
    if snapshots is None:
        return None
    blobs = Path(os.path.realpath(snapshots.parent / "blobs"))
    real = Path(os.path.realpath(pointer))
    return real if real.parent == blobs and real.is_file() else None


def evict(pointer: Path) -> str:
    """Delete a bad file from the Hub cache, so that the next call downloads it afresh.

    Only a blob in the repo's own ``blobs/`` folder is ever deleted, with the snapshot link to
    it. A snapshot entry that resolves anywhere else (a link to a user's file planted in a
    shared cache, a device) is left alone and reported. A file that cannot be deleted is
    reported, not raised: the caller is already reporting the real problem.

    Args:
        pointer: The file's path under ``snapshots/`` in the cache.

    Returns:
        A sentence for the caller's error message: what was deleted, or what was not and why.
    """
    blob = blob_of(pointer)
    if blob is None:
        target = os.path.realpath(pointer)
        logger.warning(
            "Not deleting %s: it is not a blob of the Hub cache (it resolves to %s).",
            pointer,
            target,
        )
        return (
            f"It was not loaded, and nothing was deleted: the cache entry {pointer} resolves to "
            f"{target}, outside the cache's blobs/ folder, so it is not the cache's own file. "
            "Check who put it there, remove that entry yourself, and load again."
        )
    failed = []
    for path in (blob, pointer):
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            logger.warning("Could not delete %s from the cache: %s", path, err)
            failed.append(str(path))
    if failed:
        return f"It was not loaded; deleting it from the cache failed ({', '.join(failed)})."
    return "The file was deleted from the cache and not loaded. Run again to download it afresh."
