"""``mnist-zoo serve`` over HTTP: the page, the readings, the collect folder, bad requests."""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mnist_zoo
from mnist_zoo.errors import (
    HubUnavailableError,
    ImageError,
    InvalidArgumentError,
    MNISTFormatError,
    MnistZooError,
)
from mnist_zoo.serve import (
    DigitCollector,
    DigitReader,
    DigitServer,
    add_serve_parser,
    make_server,
    run_serve,
)
from mnist_zoo.serve.reader import decode_picture
from mnist_zoo.serve.server import ASSETS, MAX_JSON_BYTES, MAX_UPLOAD_BYTES

REPO = Path(__file__).resolve().parents[1]
HUB_MODELS = [REPO / "hub" / name for name in ("simplecnn", "deepercnn", "minivgg")]
IMAGES = REPO / "examples" / "images"
# The example pictures are named by their digit.
DIGITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
DIGITS |= {"eight": 8, "nine": 9}


def _label_of(path: Path) -> int:
    return DIGITS[path.stem.split("_")[0]]


@pytest.fixture(scope="module")
def reader() -> DigitReader:
    return DigitReader.load(HUB_MODELS)


def _start(reader: DigitReader, collector: DigitCollector) -> DigitServer:
    server = make_server(reader, collector, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(reader: DigitReader, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DigitServer]:
    srv = _start(reader, DigitCollector(tmp_path_factory.mktemp("serve") / "my-digits"))
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(
    server: DigitServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPResponse, Any]:
    """One request on its own connection; returns the status, the response and its body
    (parsed when JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.getheader("Content-Type") == "application/json":
        data = json.loads(data)
    return response.status, response, data


def _post_picture(server: DigitServer, data: bytes, ctype: str = "image/png") -> tuple[int, Any]:
    status, _, body = _request(server, "POST", "/api/predict", data, {"Content-Type": ctype})
    return status, body


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --- the page --------------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served(server: DigitServer) -> None:
    status, response, html = _request(server, "GET", "/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html")
    csp = response.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    html = html.decode()
    linked = re.findall(r'(?:src|href)="(/[^"]*)"', html)
    assert sorted(linked) == ["/static/app.js", "/static/style.css"]
    for path in linked:
        status, response, _ = _request(server, "GET", path)
        assert status == 200, path
    status, response, body = _request(server, "HEAD", "/static/app.js")
    assert status == 200 and body == b"" and int(response.getheader("Content-Length")) > 1000


def test_every_shipped_asset_is_served_and_none_points_outside() -> None:
    static = resources.files("mnist_zoo.serve").joinpath("static")
    shipped = sorted(f.name for f in static.iterdir() if f.is_file())
    assert shipped == sorted(name for name, _ in ASSETS.values())
    for name in shipped:
        text = static.joinpath(name).read_text()
        hosts = re.findall(r"(?i)\b(?:https?:)?//([\w.-]+)", text)
        outside = [h for h in hosts if h not in ("127.0.0.1", "localhost")]
        assert not outside, f"{name} refers to {outside}"
        assert not re.search(r"(?i)@import|url\(\s*['\"]?(?:https?:)?//", text), name


def test_info_lists_the_models_and_the_collect_folder(server: DigitServer) -> None:
    status, _, info = _request(server, "GET", "/api/info")
    assert status == 200
    assert info["models"] == ["simplecnn", "deepercnn", "minivgg"]
    assert info["answer"] == "ensemble"
    assert info["max_upload_bytes"] == MAX_UPLOAD_BYTES
    assert info["collect"] == {"folder": str(server.collector.folder), "count": 0}
    assert info["version"] == mnist_zoo.__version__


# --- readings --------------------------------------------------------------------------------


def test_a_reading_is_what_the_library_computes(server: DigitServer) -> None:
    photo = IMAGES / "four.png"
    status, reading = _post_picture(server, photo.read_bytes())
    assert status == 200

    x = mnist_zoo.preprocess(mnist_zoo.load_image(photo))
    assert reading["pixels"] == torch.round(x[0] * 255).to(torch.uint8).flatten().tolist()
    members = [mnist_zoo.load_pretrained(str(folder)) for folder in HUB_MODELS]
    for shown, model in zip(reading["models"], members, strict=True):
        expected = mnist_zoo.predict(model, x[None])
        assert shown["label"] == int(expected.labels[0]) == 4
        np.testing.assert_allclose(shown["probs"], expected.probs[0].numpy(), atol=1e-6)
    ensemble = mnist_zoo.predict(mnist_zoo.Ensemble(members), x[None])
    answer = reading["answer"]
    assert answer["name"] == "ensemble" and answer["label"] == int(ensemble.labels[0]) == 4
    np.testing.assert_allclose(answer["probs"], ensemble.probs[0].numpy(), atol=1e-6)
    assert answer["confidence"] == max(answer["probs"])
    assert reading["agree"] is True and reading["warnings"] == []


class _Fixed(nn.Module):
    """A stand-in model that answers the same probabilities for every image."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(probs).log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def _sure_of(digit: int, p: float) -> list[float]:
    probs = [(1 - p) / 9] * 10
    probs[digit] = p
    return probs


def test_disagreeing_and_unsure_models_are_warned_about() -> None:
    reader = DigitReader([("a", _Fixed(_sure_of(1, 0.9))), ("b", _Fixed(_sure_of(7, 0.6)))])
    reading = reader.read((IMAGES / "four.png").read_bytes()).to_json()
    assert [m["label"] for m in reading["models"]] == [1, 7]
    assert reading["answer"]["name"] == "ensemble" and reading["answer"]["label"] == 1
    assert reading["agree"] is False
    disagree, unsure = reading["warnings"]
    assert disagree == "The models disagree: a reads 1, b reads 7."
    assert unsure.startswith("Low confidence: ensemble is only 47% sure it is a 1.")

    sure = DigitReader([("only", _Fixed(_sure_of(3, 0.95)))])
    reading = sure.read((IMAGES / "four.png").read_bytes()).to_json()
    assert reading["answer"]["name"] == "only" and reading["warnings"] == []
    assert sure.names == ["only"]


def test_several_tabs_at_once(server: DigitServer) -> None:
    photos = sorted(IMAGES.glob("*.png")) * 2

    def read(photo: Path) -> tuple[int, int, int]:
        status, reading = _post_picture(server, photo.read_bytes())
        return status, reading["answer"]["label"], _label_of(photo)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(read, photos))
    assert [status for status, _, _ in results] == [200] * len(photos)
    assert [got for _, got, _ in results] == [want for _, _, want in results]


# --- bad requests: a short JSON message, and the server keeps serving ------------------------

_GOOD_PNG = (IMAGES / "four.png").read_bytes()
_BLANK_PNG = _png(Image.new("L", (60, 60), 255))
_JSON = {"Content-Type": "application/json"}
_PNG = {"Content-Type": "image/png"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "says"),
    [
        ("GET", "/nothing-here", None, {}, 404, "Nothing here"),
        ("GET", "/static/../pyproject.toml", None, {}, 404, "Nothing here"),
        ("POST", "/api/nothing", b"{}", _JSON, 404, "Nothing here"),
        ("GET", "/api/predict", None, {}, 405, "takes POST"),
        ("PUT", "/", b"x", {}, 405, "takes GET or HEAD"),
        ("DELETE", "/api/info", None, {}, 405, "not DELETE"),
        ("OPTIONS", "/api/collect", None, {}, 405, "not OPTIONS"),
        ("POST", "/", b"x", {}, 405, "not POST"),
        ("POST", "/api/predict", b"hello", {"Content-Type": "text/plain"}, 415, "image file"),
        ("POST", "/api/predict", b"not a png at all", _PNG, 415, "not an image"),
        ("POST", "/api/predict", _GOOD_PNG[:200], _PNG, 415, "damaged or truncated"),
        ("POST", "/api/predict", _BLANK_PNG, _PNG, 422, "No digit found"),
        ("POST", "/api/predict", b"", _PNG, 400, "empty"),
        ("POST", "/api/collect", b"{not json", _JSON, 400, "Malformed JSON"),
        ("POST", "/api/collect", b"\xff\xfe", _JSON, 400, "Malformed JSON"),
        ("POST", "/api/collect", b"[1, 2]", _JSON, 400, '"label"'),
        ("POST", "/api/collect", b'{"label": 7}', _JSON, 400, '"pixels"'),
        ("POST", "/api/collect", b'{"label": 7, "pixels": [0, 1]}', _JSON, 400, "784"),
        ("POST", "/api/collect", b'{"label": 7, "pixels": "abc"}', _JSON, 400, "784"),
        ("POST", "/api/collect", json.dumps({"label": 10, "pixels": [0] * 784}).encode(), _JSON,
         400, "0-9"),
        ("POST", "/api/collect", json.dumps({"label": "7", "pixels": [0] * 784}).encode(), _JSON,
         400, "0-9"),
        ("POST", "/api/collect", json.dumps({"label": 7, "pixels": [300] * 784}).encode(), _JSON,
         400, "0-255"),
        ("POST", "/api/collect", json.dumps({"label": 7, "pixels": [0.5] * 784}).encode(), _JSON,
         400, "784 integers"),
        ("POST", "/api/collect", b"x" * (MAX_JSON_BYTES + 1), _JSON, 413, "limit"),
        ("POST", "/api/collect", b'{"label": 7}', {"Content-Type": "text/plain"}, 415, "json"),
        ("GET", "/", None, {"Host": "attacker.example"}, 403, "not served here"),
        ("POST", "/api/collect", json.dumps({"label": 7, "pixels": [0] * 784}).encode(),
         {**_JSON, "Origin": "http://attacker.example"}, 403, "not accepted"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_short_json_answer(
    server: DigitServer,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    got, response, answer = _request(server, method, path, body, headers)
    assert got == status, answer
    assert answer["status"] == status and says in answer["error"], answer
    assert len(answer["error"]) < 200
    if status == 405:
        assert response.getheader("Allow") in ("GET, HEAD", "POST")
    assert not server.collector.labels_path.exists()  # nothing saved by a refused request
    assert _post_picture(server, _GOOD_PNG)[0] == 200  # still serving


def _raw_request(server: DigitServer, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=30) as sock:
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_an_upload_over_the_limit_is_refused_before_it_is_read(server: DigitServer) -> None:
    size = MAX_UPLOAD_BYTES + 1
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    status, answer = _raw_request(server, head, b"\x89PNG")  # the rest never comes
    assert status == 413 and f"{size:,} bytes" in answer["error"]
    assert _post_picture(server, _GOOD_PNG)[0] == 200


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n\r\n", 411),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            411,
        ),
        (
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: -5\r\n\r\n",
            400,
        ),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"FROB / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
    ],
)
def test_malformed_http_gets_a_json_answer(server: DigitServer, head: bytes, status: int) -> None:
    got, answer = _raw_request(server, head)
    assert got == status and answer["error"]
    assert _post_picture(server, _GOOD_PNG)[0] == 200


def test_pictures_with_too_many_pixels_are_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match="limit is 0.0001 megapixels"):
        decode_picture(_png(Image.new("L", (20, 10), 255)), max_pixels=100)
    assert decode_picture(_png(Image.new("L", (10, 10), 255)), max_pixels=100).size == (10, 10)


def test_photos_are_turned_upright_by_their_exif_orientation() -> None:
    image = Image.new("L", (40, 20), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    assert decode_picture(out.getvalue()).size == (20, 40)


# --- collecting ------------------------------------------------------------------------------


def _collect(server: DigitServer, pixels: list[int], label: int) -> tuple[int, Any]:
    body = json.dumps({"pixels": pixels, "label": label}).encode()
    status, _, answer = _request(server, "POST", "/api/collect", body, _JSON)
    return status, answer


def test_collected_digits_form_an_idx_pair_mnist_and_evaluate_read(
    reader: DigitReader, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "my-digits"
    server = _start(reader, DigitCollector(folder))
    try:
        readings = [
            _post_picture(server, (IMAGES / n).read_bytes())[1] for n in ("four.png", "two.png")
        ]
        assert not folder.exists()  # reading pictures writes nothing
        files = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        saved = {"count": 1, "label": 4, "folder": str(folder), "files": files}
        assert _collect(server, readings[0]["pixels"], 4) == (200, saved)
        assert _collect(server, readings[1]["pixels"], 2)[1]["count"] == 2
        assert _request(server, "GET", "/api/info")[2]["collect"]["count"] == 2
    finally:
        server.shutdown()
        server.server_close()

    images = mnist_zoo.read_idx(folder / "t10k-images-idx3-ubyte")
    labels = mnist_zoo.read_idx(folder / "t10k-labels-idx1-ubyte")
    assert images.dtype == np.uint8 and images.shape == (2, 28, 28)
    assert labels.tolist() == [4, 2]
    for image, reading in zip(images, readings, strict=True):
        assert image.flatten().tolist() == reading["pixels"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]  # no temporary files left behind

    test_set = mnist_zoo.MNIST(folder, split="test")
    assert len(test_set) == 2 and test_set.targets.tolist() == [4, 2]
    from mnist_zoo.cli import main

    assert main(["evaluate", str(HUB_MODELS[0]), "--data", str(folder)]) == 0
    assert "(2 images)" in capsys.readouterr().out


def test_a_save_cut_short_between_the_two_files_is_repaired(tmp_path: Path) -> None:
    collector = DigitCollector(tmp_path)
    digit = np.arange(784) % 256
    assert collector.add(digit, 1) == 1
    # As if the process died after replacing the images file but before the labels file:
    mnist_zoo.write_idx(
        collector.images_path, np.stack([digit.reshape(28, 28)] * 2).astype(np.uint8)
    )
    assert collector.count() == 1
    assert collector.add(digit[::-1].copy(), 9) == 2
    images, labels = (
        mnist_zoo.read_idx(collector.images_path),
        mnist_zoo.read_idx(collector.labels_path),
    )
    assert labels.tolist() == [1, 9] and images.shape == (2, 28, 28)
    assert images[1].flatten().tolist() == digit[::-1].tolist()


def test_a_folder_holding_other_idx_files_is_left_alone(tmp_path: Path) -> None:
    collector = DigitCollector(tmp_path)
    mnist_zoo.write_idx(collector.images_path, np.zeros((3, 10, 10), np.uint8))
    mnist_zoo.write_idx(collector.labels_path, np.zeros(3, np.uint8))
    before = collector.images_path.read_bytes()
    with pytest.raises(MNISTFormatError, match="not 28x28 digits"):
        collector.add([0] * 784, 3)
    assert collector.images_path.read_bytes() == before
    with pytest.raises(InvalidArgumentError):
        collector.add([0] * 784, True)  # a bool is not a label


def test_concurrent_saves_all_land(tmp_path: Path) -> None:
    collector = DigitCollector(tmp_path / "new" / "folder")
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: collector.add([i] * 784, i % 10), range(24)))
    labels = mnist_zoo.read_idx(collector.labels_path)
    images = mnist_zoo.read_idx(collector.images_path)
    assert sorted(images[:, 0, 0].tolist()) == list(range(24))
    assert (images[:, 0, 0] % 10 == labels).all()


# --- the command -----------------------------------------------------------------------------


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-zoo")
    add_serve_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_the_command_line_defaults() -> None:
    args = _serve_args()
    assert (args.model, args.host, args.port, args.collect) == (None, "127.0.0.1", 8000, None)
    assert args.func is run_serve
    args = _serve_args("--model", "hub/simplecnn", "--model", "hub/minivgg", "--port", "0")
    assert args.model == ["hub/simplecnn", "hub/minivgg"] and args.port == 0


def test_a_bad_port_or_a_busy_one_is_one_clear_error(reader: DigitReader, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="--port must be a number from 0 to 65535"):
        run_serve(_serve_args("--port", "70000"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            make_server(reader, DigitCollector(tmp_path), "127.0.0.1", port)


def test_an_unreachable_hub_says_to_pass_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(names: object) -> DigitReader:
        raise HubUnavailableError("Cannot get model.safetensors: offline mode is on.")

    monkeypatch.setattr(DigitReader, "load", offline)
    with pytest.raises(HubUnavailableError, match="offline mode is on.* --model hub/simplecnn"):
        run_serve(_serve_args("--port", "0"))


def test_unknown_models_are_refused_by_name() -> None:
    with pytest.raises(MnistZooError, match="no-such-model"):
        DigitReader.load(["no-such-model"])
    with pytest.raises(InvalidArgumentError, match="own name"):
        DigitReader([("a", _Fixed(_sure_of(1, 0.9))), ("a", _Fixed(_sure_of(1, 0.9)))])


def test_closing_ends_open_connections_and_waits_for_their_threads(
    reader: DigitReader, tmp_path: Path
) -> None:
    # A tab left open holds a keep-alive connection and its (daemon) thread. Closing must end
    # both at once: a daemon thread still running when Python exits may free the models'
    # tensors mid-shutdown, which aborts the process ("terminate called without an active
    # exception", seen as `python -m mnist_zoo.serve` exiting with -6 after Ctrl-C).
    srv = _start(reader, DigitCollector(tmp_path / "digits"))
    before = set(threading.enumerate())
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=30)
    conn.request("GET", "/api/info")
    assert conn.getresponse().read()  # the connection stays open, its thread waiting
    (handler,) = set(threading.enumerate()) - before
    start = time.perf_counter()
    srv.shutdown()
    srv.server_close()
    assert time.perf_counter() - start < srv.close_timeout
    assert not handler.is_alive()
    conn.close()


def test_python_m_mnist_zoo_serve_prints_its_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mnist_zoo.serve", "--model", str(HUB_MODELS[0])]
    command += ["--port", "0", "--collect", str(tmp_path / "digits")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # The server must see Ctrl-C as a foreground command does. A test run started in the
    # background of a shell script inherits SIGINT ignored, and so would the server (Python
    # keeps an ignored SIGINT); a handler in this process is reset to the default on exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Serving on "):
                break
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", lines[-1])
        assert url, lines
        conn = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=30)
        conn.request("GET", "/api/info")
        assert json.loads(conn.getresponse().read())["models"] == ["simplecnn"]
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Stopped." in out
    assert not (tmp_path / "digits").exists()
