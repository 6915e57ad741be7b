"""A tiny fake Hugging Face Hub on 127.0.0.1, for testing downloads without the internet.

It answers the only requests ``huggingface_hub.hf_hub_download`` (2.x) makes for a file: a HEAD
then a GET on ``/{repo_id}/resolve/{revision}/{filename}``, with the headers its client reads
(see ``file_download.get_hf_file_metadata`` and ``utils/_http.hf_raise_for_status``):

* found: 200 with ``X-Repo-Commit`` (40-hex commit the revision resolved to), ``ETag`` (quoted;
  the git blob sha1 for a regular file, the sha1 of the LFS pointer for an LFS file) and
  ``Content-Length``; LFS files (``*.safetensors``, ``*.bin``, ``*.pt`` as the Hub's default
  .gitattributes) also carry ``X-Linked-Etag`` (quoted SHA-256 of the content, which the client
  prefers and names the cached blob after) and ``X-Linked-Size``;
* unknown repo: 404 ``X-Error-Code: RepoNotFound``; unknown revision: 404
  ``X-Error-Code: RevisionNotFound``; unknown file: 404 ``X-Error-Code: EntryNotFound`` plus
  ``X-Repo-Commit`` (the client caches the file's absence under that commit); each with
  ``X-Error-Message`` and, for GET, a JSON ``{"error": ...}`` body;
* anything else (e.g. ``/api/...``, which downloads never call): plain 404.

Every request is recorded in ``FakeHub.requests`` as (method, path, user agent). A file named
in ``FakeHub.stall`` is answered with its headers at once but its body only after a wait, as a
Hub whose connection stalls mid-download; the wait is bounded and ends when the server stops.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt")
#: The longest a stalled answer waits, so that a test can never hang on the fake Hub.
MAX_STALL_S = 30.0


@dataclass
class Repo:
    """A repo's commits (sha -> {filename: bytes}) and branches (name -> sha)."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """The commit a branch name or full commit sha points to, or None."""
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class FakeHub:
    """In-memory repos served over HTTP; ``with FakeHub() as hub: hub.url`` is the endpoint."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str]] = []
        #: Filenames whose GET body is flipped in one byte after the HEAD advertised the real
        #: hashes, as if corrupted on the way.
        self.corrupt_in_transit: set[str] = set()
        #: Filename -> seconds its GET waits after the headers before sending the body (at most
        #: MAX_STALL_S; stop() ends every wait), as a stalled connection.
        self.stall: dict[str, float] = {}
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def add_commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main") -> str:
        """Commit ``files`` (the whole tree) on ``branch``; returns the commit sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        # Deterministic, so two FakeHubs given the same content agree on commit shas.
        h = hashlib.sha1(f"{repo_id}\0{repo.refs.get(branch, '')}".encode())
        for name in sorted(files):
            h.update(name.encode() + hashlib.sha256(files[name]).digest())
        commit = h.hexdigest()
        repo.commits[commit] = dict(files)
        repo.refs[branch] = commit
        return commit

    def add_folder(self, repo_id: str, folder: str | Path, *, branch: str = "main") -> str:
        """Commit every file of ``folder`` (not recursive); returns the commit sha."""
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
        return self.add_commit(repo_id, files, branch=branch)

    def add_tag(self, repo_id: str, tag: str, commit: str) -> None:
        """Point ``tag`` at ``commit``; the Hub resolves tags and branches alike."""
        self.repos[repo_id].refs[tag] = commit

    def add_release(self, repo_id: str, folder: str | Path, tag: str) -> str:
        """Commit ``folder`` on ``main`` and tag it ``tag``, as a release; returns the commit."""
        commit = self.add_folder(repo_id, folder)
        self.add_tag(repo_id, tag, commit)
        return commit

    def set_file(self, repo_id: str, commit: str, filename: str, data: bytes) -> None:
        """Replace a file's bytes in an existing commit, as a tampered server would."""
        self.repos[repo_id].commits[commit][filename] = data

    @property
    def url(self) -> str:
        """The endpoint to pass as ``endpoint=`` or ``HF_ENDPOINT``."""
        assert self._server is not None, "call start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        """Serve on a free port of 127.0.0.1 in a daemon thread."""
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval keeps stop(), which waits for the loop to notice, quick.
        loop = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        loop.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; afterwards connections are refused."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up on a stalled answer closed the connection: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def git_blob_sha1(data: bytes) -> str:
    """The sha1 git gives a blob: what the Hub uses as ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so stop() never waits on an idle keep-alive.
        protocol_version = "HTTP/1.0"

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

        def _answer(self, *, send_body: bool) -> None:
            path = urlsplit(self.path).path
            hub.requests.append((self.command, path, self.headers.get("User-Agent", "")))
            parts = path.lstrip("/").split("/")
            # /{owner}/{name}/resolve/{revision}/{filename...}; the revision is %-quoted whole.
            if len(parts) < 5 or parts[2] != "resolve":
                return self._send(404, {}, b"Not Found", send_body)
            repo_id, revision = f"{parts[0]}/{parts[1]}", unquote(parts[3])
            filename = unquote("/".join(parts[4:]))

            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error("RepoNotFound", "Repository not found", {}, send_body)
            commit = repo.resolve(revision)
            if commit is None:
                msg = f"Invalid rev id: {revision}"
                return self._error("RevisionNotFound", msg, {}, send_body)
            data = repo.commits[commit].get(filename)
            if data is None:
                headers = {"X-Repo-Commit": commit}
                return self._error("EntryNotFound", "Entry not found", headers, send_body)

            headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}
            if filename.endswith(LFS_SUFFIXES):
                sha256 = hashlib.sha256(data).hexdigest()
                pointer = (
                    f"version https://git-lfs.github.com/spec/v1\n"
                    f"oid sha256:{sha256}\nsize {len(data)}\n"
                ).encode()
                headers["ETag"] = f'"{git_blob_sha1(pointer)}"'
                headers["X-Linked-Etag"] = f'"{sha256}"'
                headers["X-Linked-Size"] = str(len(data))
            else:
                headers["ETag"] = f'"{git_blob_sha1(data)}"'
            if send_body and filename in hub.corrupt_in_transit:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            self._send(200, headers, data, send_body)

        def _error(self, code: str, message: str, headers: dict, send_body: bool) -> None:
            headers = {
                **headers,
                "X-Error-Code": code,
                "X-Error-Message": message,
                "Content-Type": "application/json",
            }
            self._send(404, headers, json.dumps({"error": message}).encode(), send_body)

        def _send(self, status: int, headers: dict, body: bytes, send_body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                filename = unquote(urlsplit(self.path).path).rsplit("/", 1)[-1]
                if filename in hub.stall:
                    self.wfile.flush()
                    hub._stopping.wait(min(hub.stall[filename], MAX_STALL_S))
                self.wfile.write(body)

    return Handler
