"""Every exception mnist_zoo raises on purpose, under one base class.

```python
import mnist_zoo
try:
    model = mnist_zoo.load_pretrained("minivgg")
except mnist_zoo.MnistZooError as err:   # anything the package reports on purpose
    print(err)
```

Each class also inherits the built-in exception it resembles, so code written against the
built-ins keeps working: ``except ValueError`` still catches a malformed IDX file,
``except KeyError`` an unknown model name, ``except FileNotFoundError`` missing MNIST files,
``except ConnectionError`` an unreachable Hub.

The command line prints any of them as one line and exits with status 2 when the error is
about the caller's input (a :class:`ValueError`, :class:`KeyError` or
:class:`FileNotFoundError` underneath) and 1 when an operation failed (see
:func:`exit_status`). A genuine bug, an exception the package did not raise on purpose,
still shows its traceback. :func:`run_command` does this for ``mnist-zoo``,
``python -m mnist_zoo.serve`` and the examples, and for a script of yours.

This module is the lowest layer of the package: it imports nothing from it.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "ChecksumMismatchError",
    "CheckpointError",
    "CorruptWeightsError",
    "EnsembleFolderError",
    "DeviceNotAvailableError",
    "DownloadError",
    "ExportError",
    "HubError",
    "HubFileNotFoundError",
    "HubNotFoundError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnavailableError",
    "IDXFileNotFoundError",
    "IDXFormatError",
    "ImageError",
    "IncompatibleConfigError",
    "InvalidArgumentError",
    "InvalidHubFolderError",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "MissingDependencyError",
    "MnistZooError",
    "NoPretrainedWeightsError",
    "OutputFolderError",
    "PictureTooLargeError",
    "TrainingError",
    "UnknownModelError",
    "UnverifiedWeightsError",
    "WeightsMismatchError",
    "exit_status",
    "one_line",
    "run_command",
]


class MnistZooError(Exception):
    """Base class of every exception mnist_zoo raises on purpose."""


def exit_status(error: BaseException) -> int:
    """The command line's exit status for ``error``: 2 for bad input, 1 for a failed operation.

    Args:
        error: An exception caught by the command line.

    Returns:
        2 when the error is about what the caller asked for (it is a ``ValueError``,
        ``KeyError`` or ``FileNotFoundError``), 1 otherwise (an unreachable Hub, a failed
        download, a full disk).
    """
    return 2 if isinstance(error, (ValueError, KeyError, FileNotFoundError)) else 1


def one_line(error: BaseException) -> str:
    """The error's message on one line, as the command line prints it.

    Args:
        error: Any exception.

    Returns:
        Its message with every run of whitespace made one space (a ``KeyError``'s message
        without the quotes its ``str`` adds).
    """
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return " ".join(str(message).split())


def run_command(
    body: Callable[[], int | None], prog: str, *, data_option: str | None = "--data DIR"
) -> int:
    """Run a command-line program as ``mnist-zoo`` runs its commands: an error the package
    raises on purpose (or an ``OSError``) is one line on standard error, not a traceback.

    ``mnist-zoo``, ``python -m mnist_zoo.serve`` and the scripts in ``examples/`` run this
    way, and a script of yours can too: ``sys.exit(run_command(main, "my_script.py"))``.
    Any other exception is a bug, and keeps its traceback.

    Args:
        body: The program; it returns its exit status (``None`` counts as 0).
        prog: The program's name, which starts the line: ``PROG: error: MESSAGE``.
        data_option: The program's option for the MNIST folder. Missing MNIST files are told
            with it and ``$MNIST_ZOO_DATA``, not with Python's ``download=True``; ``None``
            prints the message as it is (for a program that words it itself).

    Returns:
        ``body``'s exit status; for an error, :func:`exit_status`'s (2 for bad input, 1 for a
        failed operation); 130 when interrupted with Ctrl-C; 141, with no error line, when
        standard output is a pipe whose reader stopped early (``| head``).
    """
    try:
        status = int(body() or 0)
        sys.stdout.flush()  # a reader that left shows here, not in Python's last flush
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (MnistZooError, OSError) as err:
        if isinstance(err, BrokenPipeError) and _stdout_reader_left():
            # The reader stopped early (`mnist-zoo list | head -1`): not an error to report.
            _stdout_to_devnull()
            return 141  # as the shell reports a program ended by SIGPIPE
        message = one_line(err)
        if data_option is not None and isinstance(err, MNISTNotFoundError):
            message = err.retold(
                f"pass {data_option} (a folder with the four MNIST IDX files) or set "
                "$MNIST_ZOO_DATA; `mnist-zoo check-data DIR --download` downloads them"
            )
        print(f"{prog}: error: {message}", file=sys.stderr)
        return exit_status(err)


def _stdout_reader_left() -> bool:
    """Whether standard output is a pipe whose reader has gone (and the broken pipe was not,
    say, a socket's): polling a pipe's write end reports an error once nothing can read it."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real file behind
        return False


def _stdout_to_devnull() -> None:
    """Point standard output at the null device, so the interpreter's last flush of what the
    closed pipe did not take fails no more (the recipe of Python's ``signal`` docs)."""
    # Captured output (no real file behind sys.stdout) has nothing left to flush there.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class InvalidArgumentError(MnistZooError, ValueError):
    """An argument, option or setting has a value the package cannot use."""


class MissingDependencyError(MnistZooError, ImportError):
    """An optional feature needs a package that is not installed; the message names the extra."""


# --- data ------------------------------------------------------------------------------------


class IDXFormatError(MnistZooError, ValueError):
    """An IDX file is missing, unreadable or malformed; the message names the file and the fault.

    Attributes:
        path: The file that was being read.
        reason: What is wrong with it, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class IDXFileNotFoundError(IDXFormatError, FileNotFoundError):
    """The IDX file does not exist; catchable as both IDXFormatError and FileNotFoundError."""


class MNISTFormatError(MnistZooError, ValueError):
    """The MNIST files were read as IDX but do not hold a valid MNIST split."""


class MNISTNotFoundError(MnistZooError, FileNotFoundError):
    """MNIST files are not in the folder; the message lists the names looked for.

    Attributes:
        root: The folder looked in (``None`` if not recorded).
        missing: The files not found, as ``"train images"``, ``"test labels"``, ...
    """

    def __init__(
        self,
        message: str,
        *,
        root: str | os.PathLike[str] | None = None,
        missing: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.root = None if root is None else Path(root)
        self.missing = tuple(missing)

    def retold(self, hint: str) -> str:
        """What is missing and where, followed by ``hint``: the error in a front end's terms.

        The command line and the examples use it to name their own options instead of the
        Python arguments the message suggests.

        Args:
            hint: What to do, in the caller's terms, without a full stop (for example
                ``"pass --data DIR or set $MNIST_ZOO_DATA"``).

        Returns:
            ``"MNIST train images not found in ROOT; HINT."``, or the message and the hint
            when the error does not record what is missing and where.
        """
        if self.root is None or not self.missing:
            return f"{self} ({hint})"
        return f"MNIST {', '.join(self.missing)} not found in {self.root}; {hint}."


class DownloadError(MnistZooError, ConnectionError):
    """Every mirror failed for a file; the message lists each mirror's failure."""


# --- models and devices ----------------------------------------------------------------------


class UnknownModelError(MnistZooError, KeyError):
    """A model name the registry does not know; the message lists the known names.

    Args:
        name: The name that was asked for.
        known: The registered names, for the message.
        hint: Appended after the first sentence, e.g. " Did you mean 'minivgg'?".
    """

    def __init__(self, name: str, known: list[str], hint: str = "") -> None:
        self.name = name
        self.known = known
        self.message = f"Unknown model {name!r}.{hint} Known models: {', '.join(known) or 'none'}."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would repr() the message, quoting it twice
        return self.message


class DeviceNotAvailableError(MnistZooError, RuntimeError):
    """An explicitly requested device does not exist on this machine."""


# --- training --------------------------------------------------------------------------------


class TrainingError(MnistZooError, RuntimeError):
    """Training could not go on (for example the loss stopped being finite)."""


class CheckpointError(MnistZooError, ValueError):
    """A checkpoint cannot be resumed from: unreadable, or written by another run."""


class OutputFolderError(InvalidArgumentError, OSError):
    """A folder a run must write to is a file, or cannot be written; found before any work."""


# --- pictures --------------------------------------------------------------------------------


class ImageError(MnistZooError, ValueError):
    """A picture cannot be used: not an image file, truncated, blank, or of the wrong shape."""


class PictureTooLargeError(ImageError):
    """A picture has more pixels than the reader accepts (a decompression bomb, say)."""


# --- the Hub and Hub folders -----------------------------------------------------------------


class HubError(MnistZooError):
    """Base class of every error raised while saving, publishing or loading Hub weights."""


class NoPretrainedWeightsError(HubError, KeyError):
    """The model is registered but has no published weights."""

    def __str__(self) -> str:  # as UnknownModelError: no repr() quotes around the message
        return str(self.args[0]) if self.args else ""


class HubUnavailableError(HubError, ConnectionError):
    """The Hub could not be reached (or offline mode is on) and the file is not cached."""


class HubNotFoundError(HubError, FileNotFoundError):
    """The Hub answered, but the repo, revision or file does not exist there."""


class HubRepoNotFoundError(HubNotFoundError):
    """The Hub repo does not exist (or is private or gated)."""


class HubRevisionNotFoundError(HubNotFoundError):
    """The repo exists but the requested revision does not."""


class HubFileNotFoundError(HubNotFoundError):
    """The repo and revision exist but the file does not."""


class ChecksumMismatchError(HubError):
    """A weights file's SHA-256 is not the expected one; the file was not loaded."""


class CorruptWeightsError(HubError, ValueError):
    """A weights file is not a readable safetensors file."""


class WeightsMismatchError(HubError, ValueError):
    """The tensors in a weights file do not fit the model's architecture."""


class InvalidHubFolderError(HubError, ValueError):
    """A local folder is not a complete, readable Hub folder."""


class EnsembleFolderError(InvalidHubFolderError):
    """A folder describes a pretrained ensemble (``hub/ensemble``) and holds no weights.

    Attributes:
        members: The pinned models it names, as ``"name@tag"`` (older folders: names).
    """

    def __init__(self, message: str, members: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.members = tuple(members)


class UnverifiedWeightsError(InvalidHubFolderError):
    """A local folder's config.json records no SHA-256, so its weights cannot be verified.

    Loading it anyway takes an explicit ``load_pretrained(folder, trust_unverified=True)``.
    """


class IncompatibleConfigError(HubError, ValueError):
    """A config.json that mnist_zoo must not act on.

    It names another architecture than the registered name it was loaded for, or was written
    by a newer mnist_zoo than this one.
    """


# --- export ----------------------------------------------------------------------------------


class ExportError(MnistZooError, RuntimeError):
    """An export failed, and no file was left at the target.

    The exporter refused the model, or the written file did not reproduce the model's logits
    within the stated tolerance when run (ONNX Runtime for ``.onnx``, PyTorch for ``.pt2``).
    """
