"""The HTTP side of ``mnist-zoo serve``: the page, its assets and a small JSON API.

Built on the standard library's :class:`http.server.ThreadingHTTPServer` (one thread per
connection, so several tabs are served at once), with every request bounded:

| request | answer |
| --- | --- |
| ``GET /``, ``GET /static/{app.js,style.css}`` | the page and its assets, from the package |
| ``GET /api/info`` | the served models, the limits, the collect folder |
| ``POST /api/predict``, body: an image file | the 28x28 input and every model's reading |
| ``POST /api/collect``, JSON ``{"pixels": [784 ints], "label": 7}`` | appends to the IDX pair |

Errors are JSON ``{"error": "..."}``: 400 malformed request or JSON, 403 a foreign ``Host`` or
``Origin``, 404 unknown path, 405 wrong method, 411 no ``Content-Length``, 413 body or picture
too large, 415 not an image, 422 a blank picture, 500 a bug (logged with its traceback). A
failed request never stops the server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import sys
import threading
import traceback
from collections.abc import Collection
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .._version import __version__
from ..errors import ImageError, InvalidArgumentError, MnistZooError
from .collect import DigitCollector
from .reader import DigitReader, PictureTooLargeError

__all__ = ["MAX_JSON_BYTES", "MAX_UPLOAD_BYTES", "DigitServer", "make_server"]

#: The largest picture upload accepted, in bytes.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: The largest JSON body accepted (a collected digit is about 4 KB).
MAX_JSON_BYTES = 64 * 1024

#: The files the page is made of: URL path -> (file in ``static/``, content type).
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
_API_GET = {"/api/info"}
_API_POST = {"/api/predict", "/api/collect"}
_PICTURE_TYPES = ("image/", "application/octet-stream")
# Everything the page uses comes from this server; the browser enforces it as well.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class _Rejected(InvalidArgumentError):
    """A request the server refuses; carries the HTTP status. Never leaves the handler."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class DigitServer(ThreadingHTTPServer):
    """Serves the page and answers its requests with a :class:`DigitReader`.

    Args:
        host: The address to listen on (``"127.0.0.1"``, ``"::1"``, ``"0.0.0.0"``, ...).
        port: The port; 0 picks a free one (read it back from :attr:`url`).
        reader: The models.
        collector: Where the collect buttons save digits.
        max_upload_bytes: The largest picture upload accepted.
        log_requests: Log every request to standard error, not only the failed ones.

    Raises:
        OSError: The address cannot be listened on (in use, not an address of this machine).
    """

    #: Seconds :meth:`server_close` waits for each connection's thread after ending it.
    close_timeout = 10.0

    def __init__(
        self,
        host: str,
        port: int,
        reader: DigitReader,
        collector: DigitCollector,
        *,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        log_requests: bool = False,
    ) -> None:
        self.reader = reader
        self.collector = collector
        self.max_upload_bytes = max_upload_bytes
        self.log_requests = log_requests
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        self.assets = {
            path: (resources.files(__package__).joinpath("static", name).read_bytes(), ctype)
            for path, (name, ctype) in ASSETS.items()
        }
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Answer a connection in a daemon thread that :meth:`server_close` can end and join.

        Args:
            request: The connection's socket.
            client_address: The client's address.
        """
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()]
            self._handler_threads.append(thread)
            self._connections.add(request)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        """Close a connection whose thread is done with it.

        Args:
            request: The connection's socket.
        """
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, end every open connection and wait for its thread to finish.

        The threads are daemons, and a tab left open keeps its connection (and thread) waiting
        for the next request, so without this Ctrl-C would leave them running while Python
        shuts down. A thread that then drops the last reference to the server frees the
        models' tensors in PyTorch's C++ code, and Python ending that thread mid-call aborts
        the process ("terminate called without an active exception"). Shutting the sockets
        down wakes each waiting thread at once; a thread in the middle of a prediction
        finishes it first.
        """
        super().server_close()
        with self._lock:
            connections, threads = list(self._connections), list(self._handler_threads)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its own thread
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(self.close_timeout)

    def server_bind(self) -> None:
        """Bind the socket, skipping ``HTTPServer``'s reverse DNS lookup of the host name."""
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def loopback_only(self) -> bool:
        """Whether the server listens on a loopback address only (the default 127.0.0.1)."""
        try:
            return ipaddress.ip_address(self.server_name).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8000/``."""
        host = self.server_name
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_port}/"

    def info(self) -> dict[str, Any]:
        """What ``GET /api/info`` answers: the models, the limits and the collect folder.

        Returns:
            A JSON-ready dict.
        """
        try:
            count: int | None = self.collector.count()
            problem = None
        except (MnistZooError, OSError) as err:
            count, problem = None, str(err)
        return {
            "version": __version__,
            "models": [name for name, _ in self.reader.models],
            "answer": self.reader.names[-1],
            "low_confidence": self.reader.low_confidence,
            "max_upload_bytes": self.max_upload_bytes,
            "collect": {"folder": str(self.collector.folder), "count": count},
            "collect_problem": problem,
        }


class _Handler(BaseHTTPRequestHandler):
    """One request: route it, bound it, answer it in JSON or with an asset."""

    server: DigitServer
    protocol_version = "HTTP/1.1"  # keep-alive: the page makes a request per stroke
    server_version = f"mnist-zoo/{__version__}"
    timeout = 60  # a client that stops sending frees its thread after this many seconds

    def do_GET(self) -> None:  # http.server dispatches to do_METHOD
        """Answer a GET: an asset or ``/api/info``."""
        self._dispatch(self.command)

    def do_POST(self) -> None:
        """Answer a POST: ``/api/predict`` or ``/api/collect``."""
        self._dispatch(self.command)

    # HEAD is a GET without the body; the other methods get a 405 that names the right one.
    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self, method: str) -> None:
        try:
            self._check_host()
            path = urlsplit(self.path).path
            allowed = self._allowed_methods(path)
            if not allowed:
                raise _Rejected(HTTPStatus.NOT_FOUND, f"Nothing here: {path}")
            if method not in allowed:
                raise _Rejected(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{path} takes {' or '.join(sorted(allowed))}, not {method}.",
                )
            if method == "POST":
                self._post(path)
            elif path in self.server.assets:
                body, ctype = self.server.assets[path]
                self._send(HTTPStatus.OK, body, ctype, head_only=method == "HEAD")
            else:
                self._send_json(HTTPStatus.OK, self.server.info(), head_only=method == "HEAD")
        except _Rejected as err:
            self._send_error(err.status, str(err), allowed=self._allowed_methods(self.path))
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away; nobody to answer
        except Exception:  # a bug: say so, log it, keep serving
            traceback.print_exc(file=sys.stderr)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error (see the log).")

    def _allowed_methods(self, path: str) -> set[str]:
        path = urlsplit(path).path
        if path in self.server.assets or path in _API_GET:
            return {"GET", "HEAD"}
        return {"POST"} if path in _API_POST else set()

    def _check_host(self) -> None:
        # On a loopback address, only loopback names: a web page whose DNS name is re-pointed
        # at 127.0.0.1 (DNS rebinding) then cannot read the API or save digits.
        if not self.server.loopback_only:
            return
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        if host not in ("localhost", "127.0.0.1", "::1") and not host.startswith("127."):
            raise _Rejected(HTTPStatus.FORBIDDEN, f"Host {host!r} is not served here.")

    def _post(self, path: str) -> None:
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc != self.headers.get("Host"):
            # Another site's page posting into this one (it could fill the collect folder).
            raise _Rejected(HTTPStatus.FORBIDDEN, f"Requests from {origin} are not accepted.")
        ctype = self.headers.get_content_type()
        if path == "/api/predict":
            if not ctype.startswith(_PICTURE_TYPES):
                raise _Rejected(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    f"Send an image file (image/png, image/jpeg, ...), not {ctype}.",
                )
            self._predict(self._body(self.server.max_upload_bytes))
        else:
            if ctype != "application/json":
                raise _Rejected(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Send application/json, not {ctype}."
                )
            self._collect(self._body(MAX_JSON_BYTES))

    def _body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _Rejected(HTTPStatus.LENGTH_REQUIRED, "Send a Content-Length, not chunks.")
        length = self.headers.get("Content-Length")
        if length is None:
            raise _Rejected(HTTPStatus.LENGTH_REQUIRED, "The request needs a Content-Length.")
        if not length.strip().isdigit():
            raise _Rejected(HTTPStatus.BAD_REQUEST, f"Bad Content-Length {length!r}.")
        if int(length) > limit:
            raise _Rejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"The upload is {int(length):,} bytes; the limit is {limit:,}.",
            )
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise ConnectionError("the client sent less than its Content-Length")
        if not body:
            raise _Rejected(HTTPStatus.BAD_REQUEST, "The request body is empty.")
        return body

    def _predict(self, body: bytes) -> None:
        try:
            reading = self.server.reader.read(body)
        except PictureTooLargeError as err:
            raise _Rejected(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(err)) from None
        except ImageError as err:
            # A picture with no digit on it is a readable image the models cannot answer for.
            blank = "No digit found" in str(err) or "empty" in str(err)
            status = HTTPStatus.UNPROCESSABLE_ENTITY if blank else HTTPStatus.UNSUPPORTED_MEDIA_TYPE
            raise _Rejected(status, str(err)) from None
        self._send_json(HTTPStatus.OK, reading.to_json())

    def _collect(self, body: bytes) -> None:
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Rejected(HTTPStatus.BAD_REQUEST, f"Malformed JSON: {err}.") from None
        if not isinstance(request, dict) or not {"pixels", "label"} <= request.keys():
            raise _Rejected(
                HTTPStatus.BAD_REQUEST, 'Send {"pixels": [784 values 0-255], "label": 0-9}.'
            )
        try:
            count = self.server.collector.add(request["pixels"], request["label"])
        except InvalidArgumentError as err:
            raise _Rejected(HTTPStatus.BAD_REQUEST, str(err)) from None
        except (MnistZooError, OSError) as err:  # the folder's files, or the disk
            raise _Rejected(HTTPStatus.CONFLICT, f"Could not save the digit: {err}") from None
        collector = self.server.collector
        self._send_json(
            HTTPStatus.OK,
            {
                "count": count,
                "label": request["label"],
                "folder": str(collector.folder),
                "files": [collector.images_path.name, collector.labels_path.name],
            },
        )

    def _send_json(self, status: HTTPStatus, payload: Any, *, head_only: bool = False) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, body, "application/json", head_only=head_only)

    def _send_error(self, status: HTTPStatus, message: str, allowed: Collection[str] = ()) -> None:
        # The body of a refused request may be unread: close rather than parse it as a request.
        self.close_connection = True
        extra = {"Allow": ", ".join(sorted(allowed))} if status == 405 else {}
        body = json.dumps({"error": message, "status": int(status)}).encode()
        self._send(status, body, "application/json", extra=extra)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        ctype: str,
        *,
        head_only: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        headers = {
            "Content-Type": ctype,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            **(extra or {}),
        }
        if ctype.startswith("text/html"):
            headers["Content-Security-Policy"] = _CSP
        if self.close_connection:
            headers["Connection"] = "close"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request http.server could not parse (bad request line, huge headers) in
        JSON, like every other error."""
        status = HTTPStatus(code)
        self._send_error(status, message or status.phrase)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log failed requests (4xx, 5xx), or every request when the server says so."""
        failed = str(code).isdigit() and int(code) >= 400
        if failed or self.server.log_requests:
            super().log_request(code, size)


def make_server(
    reader: DigitReader,
    collector: DigitCollector,
    host: str = "127.0.0.1",
    port: int = 8000,
    **kwargs: Any,
) -> DigitServer:
    """Create (and bind) the server; call ``serve_forever()`` on it to start answering.

    Args:
        reader: The models.
        collector: Where the collect buttons save digits.
        host: The address to listen on; the default is reachable from this computer only.
        port: The port, 0-65535; 0 picks a free one.
        **kwargs: ``max_upload_bytes``, ``log_requests`` (see :class:`DigitServer`).

    Returns:
        The bound server.

    Raises:
        InvalidArgumentError: ``port`` is not in 0-65535.
        OSError: The address cannot be listened on, with the address in the message.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgumentError(f"--port must be a number from 0 to 65535, got {port!r}.")
    try:
        return DigitServer(host, port, reader, collector, **kwargs)
    except OSError as err:
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror or err}") from err
