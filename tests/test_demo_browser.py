"""The ``mnist-zoo serve`` page in a real browser: draw with pointer events, upload, collect.

Runs headless Chromium through Selenium against a server on a free port with the three
``hub/`` models. It also writes the screenshot the docs show, ``docs/img/serve.png``.
Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without
them the tests are skipped.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mnist_zoo
from mnist_zoo.serve import DigitCollector, DigitReader, DigitServer, make_server

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HUB_MODELS = [REPO / "hub" / name for name in ("simplecnn", "deepercnn", "minivgg")]
SCREENSHOT = REPO / "docs" / "img" / "serve.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: How long a test waits for the page to reach a state.
WAIT_SECONDS = 20

pytestmark = [
    pytest.mark.slow,
    # One pytest-xdist worker: one browser and one server for the module, and one writer of the
    # screenshot.
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="headless Chromium is not installed; install it with "
        "`apt-get install -y chromium chromium-driver` (Debian/Ubuntu) to run the browser tests",
    ),
]

# Strokes as fractions of the pad: (x, y) points drawn with the pointer held down.
ONE = [[(0.52, 0.14), (0.51, 0.35), (0.50, 0.60), (0.49, 0.86)]]
SEVEN = [[(0.24, 0.18), (0.50, 0.18), (0.76, 0.18), (0.62, 0.45), (0.50, 0.68), (0.42, 0.88)]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DigitServer]:
    reader = DigitReader.load(HUB_MODELS)
    collector = DigitCollector(tmp_path_factory.mktemp("browser") / "my-digits")
    srv = make_server(reader, collector, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def docs_server(server: DigitServer) -> Iterator[DigitServer]:
    """The same models, showing the default collect folder as the docs' figure does; the tests
    using it never save, so nothing is written there."""
    existed = Path("my-digits").exists()
    srv = make_server(server.reader, DigitCollector("my-digits"), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    assert Path("my-digits").exists() == existed


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--window-size=1280,960",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(WAIT_SECONDS)  # how long _wait waits
    yield driver
    driver.quit()


def _open(browser: webdriver.Chrome, server: DigitServer) -> None:
    browser.get(server.url)
    _wait(browser, ("body", "data-state", "==", "empty"))


#: Resolves once every check holds: the page's own MutationObserver watches for it, so waiting
#: costs no WebDriver round trips (polling them kept the browser and its driver busy).
_WAIT_SCRIPT = """
const [checks, done] = [arguments[0], arguments[arguments.length - 1]];
const holds = () => checks.every(([selector, attribute, op, value]) => {
  const element = document.querySelector(selector);
  const seen = element && element.getAttribute(attribute);
  return seen !== null && (op === ">" ? Number(seen) > value : seen === String(value));
});
if (holds()) { done(true); return; }
const observer = new MutationObserver(() => {
  if (holds()) { observer.disconnect(); done(true); }
});
observer.observe(document.documentElement, {attributes: true, childList: true, subtree: true});
"""


def _wait(browser: webdriver.Chrome, *checks: tuple[str, str, str, object]) -> None:
    """Wait until, for each ``(selector, attribute, op, value)``, the first element matching
    ``selector`` has ``attribute`` equal to (``"=="``) or, as a number, above (``">"``) value."""
    try:
        browser.execute_async_script(_WAIT_SCRIPT, [list(check) for check in checks])
    except TimeoutException:
        pytest.fail(f"the page did not reach {checks} within {WAIT_SECONDS} s")


def _wait_for_reading(browser: webdriver.Chrome, readings_before: int) -> None:
    """Wait for the page to show a reading newer than the ``readings_before``-th."""
    _wait(
        browser,
        ("body", "data-readings", ">", readings_before),
        ("body", "data-state", "==", "ready"),
    )


def _readings(browser: webdriver.Chrome) -> int:
    return int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-readings"))


def _draw(browser: webdriver.Chrome, strokes: list[list[tuple[float, float]]], kind: str) -> None:
    """Draw each stroke with real pointer events of ``kind`` (mouse, pen or touch), then wait
    for the page to show the reading of the finished drawing."""
    canvas = browser.find_element(By.ID, "canvas")
    width, height = canvas.size["width"], canvas.size["height"]
    for stroke in strokes:
        before = _readings(browser)
        pointer = PointerInput(kind, kind)
        actions = ActionBuilder(browser, mouse=pointer, duration=15)

        def at(x: float, y: float) -> tuple[int, int]:
            # Selenium's element offsets are from the element's centre.
            return round((x - 0.5) * width), round((y - 0.5) * height)

        actions.pointer_action.move_to(canvas, *at(*stroke[0])).pointer_down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            for t in np.linspace(0, 1, 6)[1:]:  # several moves per segment, as a hand makes
                actions.pointer_action.move_to(canvas, *at(x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
        actions.pointer_action.pointer_up()
        actions.perform()
        _wait_for_reading(browser, before)


#: Each model row as the page shows it, read in one script (not one WebDriver call per bar).
_SHOWN_SCRIPT = """
return Array.from(document.querySelectorAll("#models .model"), (row) => {
  const bars = Array.from(row.querySelectorAll(".bar"));
  return {
    name: row.dataset.name,
    label: Number(row.dataset.label),
    probs: bars.map((bar) => Number(bar.dataset.prob)),
    digit: row.querySelector(".model-pick strong").innerText,
    percent: row.querySelector(".model-pick .prob").innerText,
    best: bars.filter((bar) => bar.classList.contains("best")).map((bar) => bar.dataset.digit),
  };
});
"""


def _shown(browser: webdriver.Chrome) -> dict[str, dict]:
    """Each model row as the page shows it: the digit, the bars' probabilities, the text."""
    return {row.pop("name"): row for row in browser.execute_script(_SHOWN_SCRIPT)}


def _check_answer(browser: webdriver.Chrome, digit: int) -> dict[str, dict]:
    shown = _shown(browser)
    assert list(shown) == ["ensemble", "simplecnn", "deepercnn", "minivgg"]
    for name, row in shown.items():
        assert len(row["probs"]) == 10
        assert sum(row["probs"]) == pytest.approx(1, abs=1e-3), name
        assert int(np.argmax(row["probs"])) == row["label"], name
        assert row["digit"] == str(row["label"]) and row["best"] == [str(row["label"])], name
        assert row["percent"].endswith("%")
        assert float(row["percent"][:-1]) == pytest.approx(100 * max(row["probs"]), abs=0.6)
    assert shown["ensemble"]["label"] == digit, shown
    assert shown["ensemble"]["probs"][digit] > 0.5
    assert browser.find_element(By.ID, "answer-digit").text == str(digit)
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-answer") == str(digit)
    return shown


def _seen_pixels(browser: webdriver.Chrome) -> np.ndarray:
    """The 28x28 image the page shows as what the models see, read back from its canvas."""
    rgba = browser.execute_script(
        "const c = document.getElementById('seen').getContext('2d');"
        "return Array.from(c.getImageData(0, 0, 28, 28).data);"
    )
    return np.array(rgba, dtype=np.uint8).reshape(28, 28, 4)[..., 0]


def _screenshot(browser: webdriver.Chrome, path: Path, width: int = 1280) -> None:
    """Save the whole page, sized to its content, as the docs' figure."""
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        height = browser.execute_script("return document.documentElement.scrollHeight;")
        metrics["height"] = height  # the layout at this width may be shorter or taller
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(path))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_drawing_a_one_and_a_seven(browser: webdriver.Chrome, docs_server: DigitServer) -> None:
    _open(browser, docs_server)
    _draw(browser, ONE, interaction.POINTER_MOUSE)
    _check_answer(browser, 1)
    seen = _seen_pixels(browser)
    assert seen.max() == 255 and (seen > 0).mean() < 0.3  # a white stroke on black

    browser.find_element(By.ID, "clear").click()
    _wait(browser, ("body", "data-state", "==", "empty"))
    assert _seen_pixels(browser).max() == 0
    _draw(browser, SEVEN, interaction.POINTER_PEN)
    _check_answer(browser, 7)

    _screenshot(browser, SCREENSHOT)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_undo_takes_back_the_last_stroke(browser: webdriver.Chrome, server: DigitServer) -> None:
    _open(browser, server)
    _draw(browser, ONE, interaction.POINTER_TOUCH)
    _check_answer(browser, 1)
    one = _seen_pixels(browser)
    # A horizontal bar across the top turns the 1 into a 7 ...
    _draw(browser, [[(0.22, 0.14), (0.52, 0.14)]], interaction.POINTER_MOUSE)
    assert not np.array_equal(_seen_pixels(browser), one)
    # ... and undo brings back exactly the 1's input.
    before = _readings(browser)
    browser.find_element(By.ID, "undo").click()
    _wait_for_reading(browser, before)
    np.testing.assert_array_equal(_seen_pixels(browser), one)


def test_uploading_a_photo(browser: webdriver.Chrome, server: DigitServer) -> None:
    _open(browser, server)
    photo = REPO / "examples" / "images" / "four.png"
    before = _readings(browser)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    _wait_for_reading(browser, before)
    _check_answer(browser, 4)
    # The page shows what the library computes for the same file.
    expected = mnist_zoo.preprocess(mnist_zoo.load_image(photo))
    np.testing.assert_array_equal(
        _seen_pixels(browser), np.round(expected[0].numpy() * 255).astype(np.uint8)
    )


def test_dropping_a_photo_on_the_pad(browser: webdriver.Chrome, server: DigitServer) -> None:
    _open(browser, server)
    before = _readings(browser)
    # Selenium cannot drag a file from the desktop; this is the event the browser makes of one.
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const data = new DataTransfer();"
        "data.items.add(new File([bytes], 'two.png', {type: 'image/png'}));"
        "const pad = document.getElementById('pad');"
        "pad.dispatchEvent(new DragEvent('dragover', {bubbles: true, dataTransfer: data}));"
        "pad.dispatchEvent(new DragEvent('drop', {bubbles: true, dataTransfer: data}));",
        base64.b64encode((REPO / "examples" / "images" / "two.png").read_bytes()).decode(),
    )
    _wait_for_reading(browser, before)
    _check_answer(browser, 2)


def test_this_was_a_seven_saves_the_idx_pair(
    browser: webdriver.Chrome, server: DigitServer
) -> None:
    collector = server.collector
    _open(browser, server)
    _draw(browser, SEVEN, interaction.POINTER_MOUSE)
    seen = _seen_pixels(browser)
    assert not collector.labels_path.exists()  # nothing is written before the click
    button = browser.find_element(By.CSS_SELECTOR, "#labels [aria-label='This was a 7']")
    button.click()
    _wait(browser, ("#collect-status", "data-count", "==", 1))
    status = browser.find_element(By.ID, "collect-status")
    assert "Saved as a 7" in status.text

    images = mnist_zoo.read_idx(collector.images_path)
    labels = mnist_zoo.read_idx(collector.labels_path)
    assert images.shape == (1, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [7]
    np.testing.assert_array_equal(images[0], seen)
    test_set = mnist_zoo.MNIST(collector.folder, split="test")
    assert len(test_set) == 1 and int(test_set[0][1]) == 7


def test_the_page_loads_nothing_from_outside(
    browser: webdriver.Chrome, server: DigitServer
) -> None:
    browser.get_log("performance")  # start from a clean log
    _open(browser, server)
    _draw(browser, ONE, interaction.POINTER_MOUSE)
    base = server.url.rstrip("/")
    local = (f"{base}/", "data:", "blob:")
    entries = browser.execute_script("return performance.getEntries().map(e => e.name);")
    resources = [e for e in entries if "://" in e or e.startswith(("data:", "blob:"))]
    assert resources and all(name.startswith(local) for name in resources), resources
    assert f"{base}/static/app.js" in resources and f"{base}/api/predict" in resources

    requested = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert requested and all(url.startswith(local) for url in requested), requested
