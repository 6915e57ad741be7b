"""Atomic file writes: a file holds either its old content or the new one, never a torn mix.

Every file the package writes (checkpoints, histories, Hub folders, downloads, IDX files) goes
through :func:`atomic_writer`: the bytes go to a temporary file beside the target, are flushed
and fsync'd, and only then renamed over the target with :func:`os.replace`, which is atomic
on POSIX and Windows. A crash or a kill at any point leaves the previous file whole and, at
worst, a hidden ``.NAME.*.tmp`` file that :func:`remove_stale_temporaries` cleans up.

```python
from mnist_zoo.atomic import atomic_write, atomic_writer
atomic_write("history.json", b"[]")
with atomic_writer("last.pt") as f:
    torch.save(state, f)
```
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_SUFFIX", "atomic_write", "atomic_writer", "remove_stale_temporaries"]

#: The suffix of the temporary files :func:`atomic_writer` writes before renaming them.
TEMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` atomically when the block ends without error.

    The temporary file gets the permissions an ordinary new file would (0o666 less the umask),
    not ``mkstemp``'s owner-only ones. If the block raises, the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: The file to write; its folder must exist.

    Yields:
        A writable binary file object.

    Raises:
        OSError: The folder does not exist or is not writable, or the disk is full.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        # Its message would name the hidden temporary file, not the path the caller asked for.
        raise type(err)(err.errno, err.strerror, str(path)) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`).

    Args:
        path: The file to write; its folder must exist.
        data: The content; a ``str`` is encoded as UTF-8.

    Raises:
        OSError: The folder does not exist or is not writable, or the disk is full.
    """
    with atomic_writer(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str = "*") -> list[Path]:
    """Delete temporary files that an interrupted :func:`atomic_writer` left in ``folder``.

    Call it only where no other process is writing into ``folder`` at the same time.

    Args:
        folder: The folder to clean; a missing folder has nothing to clean.
        name: Only temporaries of this target file name (a glob pattern).

    Returns:
        The paths that were deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for tmp in folder.glob(f".{name}.*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed
