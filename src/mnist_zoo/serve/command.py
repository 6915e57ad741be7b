"""The ``mnist-zoo serve`` command: its options, and the handler that runs the server.

``mnist_zoo.cli`` adds the command with :func:`add_serve_parser`; ``python -m mnist_zoo.serve``
runs it on its own (see :func:`main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "add_serve_parser", "main", "run_serve"]

#: The address served by default: this computer only.
DEFAULT_HOST = "127.0.0.1"
#: The port served by default.
DEFAULT_PORT = 8000


_DESCRIPTION = (
    "Serve a page where you draw a digit (or drop a photo of one) and see what each model "
    "reads, with the 28x28 image they see. Everything runs on this computer."
)


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` command to the ``mnist-zoo`` command line.

    Args:
        sub: The sub-parsers of the ``mnist-zoo`` parser (``add_subparsers()``'s result).

    Returns:
        The ``serve`` parser; its ``func`` default is :func:`run_serve`.
    """
    p = sub.add_parser(
        "serve",
        help="open a page to draw digits and watch every model read them",
        description=_DESCRIPTION,
    )
    _add_options(p)
    return p


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME_OR_DIR",
        help="a pretrained model name or Hub folder; repeat for several (default: simplecnn, "
        "deepercnn and minivgg, with their ensemble)",
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="0 picks a free one (default: %(default)s)"
    )
    p.add_argument(
        "--collect",
        metavar="DIR",
        default=None,
        help="folder where the 'this was a 7' buttons save digits as an IDX pair "
        "(default: ./my-digits); nothing is written until you click one",
    )
    p.add_argument("--log", action="store_true", help="log every request, not only failed ones")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Load the models, start the server, print its address and serve until Ctrl-C.

    Args:
        args: The parsed ``serve`` options (``model``, ``host``, ``port``, ``collect``, ``log``).

    Returns:
        0 once the server was stopped with Ctrl-C.

    Raises:
        InvalidArgumentError: ``--port`` is out of range.
        UnknownModelError: A ``--model`` is neither a registered name nor a folder.
        HubError: A model could not be loaded (a subclass says why and what to do).
        OSError: The address cannot be listened on (for example, the port is in use).
    """
    # Imported here: `mnist-zoo --help` should not have to import the server.
    from ..errors import HubUnavailableError, InvalidArgumentError
    from .collect import DEFAULT_COLLECT_DIR, DigitCollector
    from .reader import DEFAULT_MODELS, DigitReader
    from .server import make_server

    if not 0 <= args.port <= 65535:  # before loading models: fail fast on a typo
        raise InvalidArgumentError(f"--port must be a number from 0 to 65535, got {args.port}.")
    try:
        reader = DigitReader.load(args.model or DEFAULT_MODELS)
    except HubUnavailableError as err:
        raise HubUnavailableError(
            f"{err} On the command line: pass --model DIR for each model, e.g. "
            "--model hub/simplecnn --model hub/deepercnn --model hub/minivgg (folders in Hub "
            "layout: a checkout of mnist_zoo has them, and `mnist-zoo train` writes one)."
        ) from err
    collector = DigitCollector(args.collect or DEFAULT_COLLECT_DIR)
    server = make_server(reader, collector, args.host, args.port, log_requests=args.log)
    if not server.loopback_only:
        print(
            f"mnist-zoo serve: warning: listening on {args.host}, so other computers can use "
            f"the page and save digits into {collector.folder}.",
            file=sys.stderr,
        )
    print(f"Models: {', '.join(reader.names)} (the answer: {reader.names[-1]})")
    print(f"Digits you label are saved to {collector.folder.resolve()} (only when you click).")
    print(f"Serving on {server.url}  (press Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    finally:
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``serve`` on its own: ``python -m mnist_zoo.serve [--model ...] [--port ...]``.

    Errors the package raises on purpose end the command with one line and status 2 (bad
    input) or 1 (a failed operation), as ``mnist-zoo`` does.

    Args:
        argv: The options; ``None`` reads ``sys.argv``.

    Returns:
        The exit status.
    """
    from ..errors import run_command

    parser = argparse.ArgumentParser(prog="python -m mnist_zoo.serve", description=_DESCRIPTION)
    _add_options(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: run_serve(args), "mnist-zoo serve", data_option=None)
