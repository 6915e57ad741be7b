"""Tests for the downloader against a local HTTP server; nothing here touches the internet.

The server serves a temporary copy of the real .gz files under a few routes that each play
one kind of mirror: ``/files/`` works, ``/missing/`` answers 404, ``/truncated/`` promises the
full Content-Length but hangs up halfway, ``/unsized/`` hangs up halfway without a length,
and ``/slow/`` answers too late. Three more play hostile mirrors: ``/junk/`` streams 64 MiB of
junk without a length, ``/huge/`` announces 300 MB, and ``/drip/`` sends one byte every quarter
second.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mnist_zoo import cli, errors
from mnist_zoo.data import (
    MIRRORS,
    MNIST,
    MNIST_MD5S,
    MNIST_SIZES,
    DownloadError,
    download_mnist,
)
from mnist_zoo.data import download as download_module

GZ_NAMES = list(MNIST_MD5S)


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.directory`` under routes that each behave like a different mirror."""

    server: MirrorServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        route, _, name = self.path.lstrip("/").partition("/")
        path = self.server.directory / name
        if route in HOSTILE_ROUTES and name in GZ_NAMES:
            try:
                HOSTILE_ROUTES[route](self)
            finally:
                self.server.done.set()
            return
        if route == "missing" or name not in GZ_NAMES or not path.is_file():
            self.send_error(404)
            return
        content = path.read_bytes()
        if route == "slow":
            time.sleep(1.0)
        self.send_response(200)
        if route != "unsized":
            self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if route in ("truncated", "unsized"):
            content = content[: len(content) // 2]
            self.close_connection = True
        # The client has already given up on /slow/, as it should.
        with contextlib.suppress(ConnectionError):
            self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest's output clean


class MirrorServer(http.server.ThreadingHTTPServer):
    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.directory = directory
        self.requests: list[str] = []
        self.sent = 0  # bytes a hostile route managed to write before the client hung up
        self.done = threading.Event()  # set when a hostile route's handler returns


def send_junk(handler: MirrorHandler) -> None:
    """64 MiB of junk and no Content-Length: only the client can stop it early."""
    handler.send_response(200)
    handler.end_headers()
    handler.close_connection = True
    junk = b"junk" * (1 << 18)
    with contextlib.suppress(ConnectionError):
        for _ in range(64):
            handler.wfile.write(junk)
            handler.server.sent += len(junk)


def announce_huge(handler: MirrorHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "300000000")
    handler.end_headers()
    handler.close_connection = True


def drip(handler: MirrorHandler) -> None:
    """The right length announced, then a byte every quarter second, for at most 15 s."""
    handler.send_response(200)
    handler.send_header("Content-Length", "28881")
    handler.end_headers()
    handler.close_connection = True
    with contextlib.suppress(ConnectionError):
        for _ in range(60):
            handler.wfile.write(b"\x1f")
            handler.wfile.flush()
            handler.server.sent += 1
            time.sleep(0.25)


HOSTILE_ROUTES = {"junk": send_junk, "huge": announce_huge, "drip": drip}


@pytest.fixture(scope="module")
def served_dir(mnist_gzip_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder with copies of the real (recompressed) .gz files."""
    directory = tmp_path_factory.mktemp("mirror")
    for name in GZ_NAMES:
        shutil.copyfile(mnist_gzip_root / name, directory / name)
    return directory


@pytest.fixture(scope="module")
def local_md5s(served_dir: Path) -> dict[str, str]:
    """The real MD5s of the served files, which differ from the published ones."""
    return {name: hashlib.md5((served_dir / name).read_bytes()).hexdigest() for name in GZ_NAMES}


@pytest.fixture(scope="module")
def server(served_dir: Path) -> Iterator[MirrorServer]:
    httpd = MirrorServer(served_dir)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def url(server: MirrorServer) -> str:
    """Base URL of the local server; append a route such as ``/files/``."""
    server.requests.clear()
    server.sent = 0
    server.done.clear()
    return f"http://127.0.0.1:{server.server_port}"


def test_mirrors_and_md5s_are_the_published_ones() -> None:
    assert MIRRORS == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    assert MNIST_MD5S == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }


def test_second_mirror_serves_when_first_404s(
    tmp_path: Path, url: str, server: MirrorServer, served_dir: Path, local_md5s: dict[str, str]
) -> None:
    root = tmp_path / "data"
    paths = download_mnist(root, mirrors=[f"{url}/missing/", f"{url}/files"], md5s=local_md5s)
    assert sorted(path.name for path in paths) == sorted(GZ_NAMES)
    assert sorted(path.name for path in root.iterdir()) == sorted(GZ_NAMES)  # no temp files
    for name in GZ_NAMES:
        assert (root / name).read_bytes() == (served_dir / name).read_bytes()
    assert server.requests[:2] == [
        "/missing/train-images-idx3-ubyte.gz",
        "/files/train-images-idx3-ubyte.gz",
    ]
    assert len(MNIST(root, split="test")) == 10_000


def test_published_md5s_refuse_the_recompressed_files(tmp_path: Path, url: str) -> None:
    root = tmp_path / "data"
    with pytest.raises(
        DownloadError,
        match=(
            r"Could not download train-images-idx3-ubyte.gz into .*; every mirror failed:\n"
            rf"  {url}/files/train-images-idx3-ubyte.gz: .*MD5 mismatch: "
            r"expected f68b3c2dcbeaaa9fbdd348bbdeb94873, got [0-9a-f]{32}"
        ),
    ):
        download_mnist(root, mirrors=[f"{url}/files/"])
    assert list(root.iterdir()) == []


def test_connection_closed_mid_transfer_leaves_nothing(
    tmp_path: Path, url: str, local_md5s: dict[str, str]
) -> None:
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"connection closed after \d+ of \d+ bytes"):
        download_mnist(root, mirrors=[f"{url}/truncated/"], md5s=local_md5s)
    assert list(root.iterdir()) == []


def test_short_body_without_length_is_caught_by_md5(
    tmp_path: Path, url: str, local_md5s: dict[str, str]
) -> None:
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        download_mnist(root, mirrors=[f"{url}/unsized/"], md5s=local_md5s)
    assert list(root.iterdir()) == []


def test_error_lists_every_mirror_failure(
    tmp_path: Path, url: str, local_md5s: dict[str, str]
) -> None:
    mirrors = [f"{url}/missing/", f"{url}/slow/", "not-a-url/"]
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=mirrors, timeout=0.3, md5s=local_md5s)
    message = str(info.value)
    assert re.search(rf"{url}/missing/train-images-idx3-ubyte.gz: HTTPError: .*404", message)
    assert re.search(rf"{url}/slow/train-images-idx3-ubyte.gz: .*timed out", message)
    assert re.search(r"not-a-url/train-images-idx3-ubyte.gz: ValueError: unknown url", message)
    assert list(tmp_path.iterdir()) == []


def test_no_mirrors(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"every mirror failed:\n  \(no mirrors given\)"):
        download_mnist(tmp_path, mirrors=[])


def test_md5s_must_cover_every_file(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="No MD5 given for train-images-idx3-ubyte.gz"):
        download_mnist(tmp_path, mirrors=[f"{url}/files/"], md5s={})


def test_present_files_are_not_downloaded_again(
    tmp_path: Path, url: str, server: MirrorServer
) -> None:
    # Kaggle-named placeholders: presence is all that is checked, under any naming.
    names = [
        "train-images.idx3-ubyte",
        "train-labels.idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte.gz",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"placeholder")
    paths = download_mnist(tmp_path, mirrors=[f"{url}/missing/"])
    assert [path.name for path in paths] == names
    assert server.requests == []


def test_only_missing_files_are_fetched(
    tmp_path: Path, url: str, server: MirrorServer, local_md5s: dict[str, str]
) -> None:
    (tmp_path / "train-images.idx3-ubyte").write_bytes(b"placeholder")
    download_mnist(tmp_path, mirrors=[f"{url}/files/"], md5s=local_md5s)
    assert sorted(server.requests) == sorted(
        f"/files/{name}" for name in GZ_NAMES if name != "train-images-idx3-ubyte.gz"
    )
    assert (tmp_path / "train-images.idx3-ubyte").read_bytes() == b"placeholder"


def test_mnist_download_true_end_to_end(
    tmp_path: Path, url: str, local_md5s: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download_module, "MIRRORS", (f"{url}/missing/", f"{url}/files/"))
    monkeypatch.setattr(download_module, "MNIST_MD5S", local_md5s)
    root = tmp_path / "new" / "folder"
    dataset = MNIST(root, split="test", download=True)
    assert len(dataset) == 10_000
    assert torch.bincount(dataset.targets, minlength=10)[5].item() == 892
    assert sorted(path.name for path in root.iterdir()) == sorted(GZ_NAMES)


def test_check_data_download_fetches_the_files_then_checks_them(
    tmp_path: Path,
    url: str,
    local_md5s: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(download_module, "MIRRORS", (f"{url}/missing/", f"{url}/files/"))
    monkeypatch.setattr(download_module, "MNIST_MD5S", local_md5s)
    monkeypatch.setenv("MNIST_ZOO_DATA", str(tmp_path / "data"))  # the folder, not given
    assert cli.main(["check-data", "--download"]) == 0
    assert "All 8 checks passed." in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == sorted(GZ_NAMES)


def test_download_error_is_a_connection_error() -> None:
    # The CLI reports it as a failed operation (exit status 1), like an unreachable Hub.
    assert DownloadError is errors.DownloadError
    assert issubclass(DownloadError, ConnectionError)
    assert issubclass(DownloadError, errors.MnistZooError)
    assert errors.exit_status(DownloadError("x")) == 1


def test_missing_md5_is_an_invalid_argument_error(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="No MD5 given"):
        download_mnist(tmp_path, mirrors=[], md5s={})


def test_files_before_a_failure_are_kept_whole_and_no_temporary_is_left(
    tmp_path: Path, url: str, local_md5s: dict[str, str], served_dir: Path
) -> None:
    md5s = {**local_md5s, "t10k-images-idx3-ubyte.gz": "0" * 32}
    with pytest.raises(DownloadError, match="t10k-images-idx3-ubyte.gz.*MD5 mismatch"):
        download_mnist(tmp_path, mirrors=[f"{url}/files/"], md5s=md5s)
    done = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert sorted(path.name for path in tmp_path.iterdir()) == done
    for name in done:
        assert (tmp_path / name).read_bytes() == (served_dir / name).read_bytes()


# --- Hostile mirrors (issue 10) ----------------------------------------------------------------


def test_sizes_are_the_published_ones() -> None:
    # The sizes the MNIST page lists for the four files, which both mirrors serve.
    assert MNIST_SIZES == {
        "train-images-idx3-ubyte.gz": 9_912_422,
        "train-labels-idx1-ubyte.gz": 28_881,
        "t10k-images-idx3-ubyte.gz": 1_648_877,
        "t10k-labels-idx1-ubyte.gz": 4_542,
    }
    assert set(MNIST_SIZES) == set(MNIST_MD5S)


def test_junk_stops_at_the_published_size(tmp_path: Path, url: str, server: MirrorServer) -> None:
    # Issue 10: 300 MB of junk were written to disk before the MD5 check rejected them.
    with pytest.raises(
        DownloadError,
        match=r"train-images-idx3-ubyte.gz: ValueError: the server sent more than the "
        r"9912422 bytes expected",
    ):
        download_mnist(tmp_path, mirrors=[f"{url}/junk/"])
    assert server.done.wait(10)
    assert server.sent < 32 << 20, f"the server got {server.sent} bytes out"
    assert list(tmp_path.iterdir()) == []


def test_an_announced_size_above_the_published_one_is_refused_unread(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(
        DownloadError,
        match=r"the server announces 300000000 bytes, more than the 9912422 expected",
    ):
        download_mnist(tmp_path, mirrors=[f"{url}/huge/"])
    assert list(tmp_path.iterdir()) == []


def test_own_md5s_and_sizes(
    tmp_path: Path, url: str, local_md5s: dict[str, str], served_dir: Path
) -> None:
    sizes = {name: (served_dir / name).stat().st_size for name in GZ_NAMES}
    download_mnist(tmp_path / "exact", mirrors=[f"{url}/files/"], md5s=local_md5s, sizes=sizes)
    small = {**sizes, "train-labels-idx1-ubyte.gz": 1000}
    with pytest.raises(DownloadError, match="announces .* bytes, more than the 1000 expected"):
        download_mnist(tmp_path / "small", mirrors=[f"{url}/files/"], md5s=local_md5s, sizes=small)
    with pytest.raises(errors.InvalidArgumentError, match="No size given for t10k-labels"):
        download_mnist(
            tmp_path / "partial", mirrors=[f"{url}/files/"], md5s=local_md5s,
            sizes={k: v for k, v in sizes.items() if not k.startswith("t10k-labels")},
        )  # fmt: skip


def test_a_dripping_server_meets_the_deadline(
    tmp_path: Path, url: str, local_md5s: dict[str, str], server: MirrorServer
) -> None:
    # Issue 10: a byte every half second never tripped the per-read timeout.
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"present")
    start = time.monotonic()
    with pytest.raises(
        DownloadError,
        match=r"train-labels-idx1-ubyte.gz: TimeoutError: the download took longer than its "
        r"1 s deadline \(\d+ of 28881 bytes received\)",
    ):
        download_mnist(tmp_path, mirrors=[f"{url}/drip/"], md5s=local_md5s, deadline=1.0)
    assert time.monotonic() - start < 3.0
    assert 2 <= server.sent < 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-images-idx3-ubyte.gz"]


@pytest.mark.parametrize("name", ["timeout", "deadline"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True])
def test_seconds_must_be_positive_and_finite(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(errors.InvalidArgumentError, match=f"{name} must be a .*number of seconds"):
        download_mnist(tmp_path, mirrors=[], **{name: value})  # type: ignore[arg-type]


def age(path: Path, seconds: float) -> Path:
    """Set ``path``'s modification time ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_stale_partial_files_are_removed_and_live_ones_kept(
    tmp_path: Path, url: str, local_md5s: dict[str, str]
) -> None:
    stale = [
        tmp_path / ".train-images-idx3-ubyte.gz.k2j3h4.tmp",
        tmp_path / ".t10k-labels-idx1-ubyte.gz.a8b7c6.part",  # 0.1's naming
    ]
    live = tmp_path / ".train-labels-idx1-ubyte.gz.live01.tmp"  # another process's, growing
    unrelated = tmp_path / ".notes.txt.x1y2z3.tmp"  # not a download's
    kept = [live, unrelated]
    for path in stale + kept:
        path.write_bytes(b"partial")
    for path in [*stale, unrelated]:
        age(path, 120)
    download_mnist(tmp_path, mirrors=[f"{url}/files/"], md5s=local_md5s)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        GZ_NAMES + [path.name for path in kept]
    )


KILLED_DOWNLOAD = """
import json, sys
from mnist_zoo.data import download_mnist
root, mirror, md5s = sys.argv[1:]
download_mnist(root, mirrors=[mirror], md5s=json.loads(md5s))
"""


def test_a_killed_download_leaves_a_partial_file_that_the_next_one_removes(
    tmp_path: Path, url: str, local_md5s: dict[str, str], served_dir: Path
) -> None:
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"present")  # the dripping file next
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_DOWNLOAD, str(tmp_path), f"{url}/drip/",
         json.dumps(local_md5s)],
    )  # fmt: skip
    try:
        for _ in range(300):  # importing torch may take a while on a busy machine
            partials = list(tmp_path.glob(".train-labels-idx1-ubyte.gz.*.tmp"))
            if partials or process.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert len(partials) == 1, "the download never started"
    assert partials[0].exists()  # a kill runs no cleanup
    age(partials[0], 120)
    download_mnist(tmp_path, mirrors=[f"{url}/files/"], md5s=local_md5s)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GZ_NAMES)
    assert (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes() == (
        served_dir / "t10k-labels-idx1-ubyte.gz"
    ).read_bytes()
