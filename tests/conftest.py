"""Shared fixtures: the real MNIST files, and copies of them under each naming and compression.

The real data is read from ``../shared/data/mnist`` next to the checkout, or from
``$MNIST_ZOO_TEST_DATA``; tests that need it are skipped when it is absent. Copies are made
once per session because decompressing the train images is the slowest step of the suite.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# torch, numpy and mnist_zoo are imported where they are used: the pytest-xdist controller
# loads this file too, and it starts the workers only after loading it (torch alone takes
# 1.5 s to import, and the controller never needs it).

TEST_DATA_ENV_VAR = "MNIST_ZOO_TEST_DATA"
_KINDS = ("images", "labels")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist (pyproject.toml runs one worker per core) each worker computes on one
    # thread: two workers with a thread per core each would make four spinning threads on two
    # cores. The variables reach the subprocesses that tests start (CLI, examples, torchrun).
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_variable] = "1"
    import torch

    torch.set_num_threads(1)

#: The pytest-xdist group of every test in a module that uses tests/published_logits.py.
PUBLISHED_LOGITS_GROUP = "published-logits"


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook: see _add_xdist_group_to_nodeid
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the modules that share tests/published_logits.py's computations on one worker.

    The published models' fp32 logits on the full test set take tens of seconds and are
    computed once per process: split across workers, they would be computed once per worker.
    """
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(
            getattr(value, "__module__", None) == "published_logits"
            for value in vars(module).values()
        ):
            item.add_marker(pytest.mark.xdist_group(PUBLISHED_LOGITS_GROUP))
    if getattr(config.option, "loadgroup", False):  # a pytest-xdist worker, --dist loadgroup
        for item in items:
            _add_xdist_group_to_nodeid(item)


def _add_xdist_group_to_nodeid(item: pytest.Item) -> None:
    """Give a test marked ``xdist_group`` the ``@GROUP`` suffix --dist loadgroup schedules by.

    pytest-xdist adds it by setting ``item._nodeid``, which pytest 9.2's structured node ids
    no longer read (pytest-dev/pytest-xdist#1386): the groups were silently ignored. This does
    what pytest-xdist means to do, and nothing where it already has.
    """
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    suffix = "@" + "_".join(sorted(names))
    if not names or item.nodeid.endswith(suffix):
        return
    nodeid = item.nodeid + suffix
    if hasattr(item, "_id"):  # pytest >= 9.2
        item._id = type(item._id).parse(nodeid)
    else:
        item._nodeid = nodeid


def _original_name(split: str, kind: str) -> str:
    from mnist_zoo.data import candidate_names

    return candidate_names(split, kind)[0]


def _kaggle_name(split: str, kind: str) -> str:
    from mnist_zoo.data import candidate_names

    return candidate_names(split, kind)[1]


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The folder holding the real MNIST files (any naming, plain or gzip)."""
    from mnist_zoo.data import SPLITS, find_mnist_file

    from_env = os.environ.get(TEST_DATA_ENV_VAR)
    beside_checkout = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"
    root = Path(from_env) if from_env else beside_checkout
    missing = [
        _original_name(split, kind)
        for split in SPLITS
        for kind in _KINDS
        if find_mnist_file(root, split, kind) is None
    ]
    if missing:
        pytest.skip(
            f"real MNIST not found in {root} (missing {', '.join(missing)}); "
            f"set {TEST_DATA_ENV_VAR} to a folder holding the four IDX files"
        )
    return root


@pytest.fixture(scope="session")
def mnist_contents(mnist_root: Path) -> dict[str, bytes]:
    """The decompressed content of each real file, keyed by its original (plain) name."""
    from mnist_zoo.data import SPLITS, find_mnist_file

    contents = {}
    for split in SPLITS:
        for kind in _KINDS:
            raw = find_mnist_file(mnist_root, split, kind).read_bytes()
            if raw.startswith(b"\x1f\x8b"):
                raw = gzip.decompress(raw)
            contents[_original_name(split, kind)] = raw
    return contents


def _write_copies(
    root: Path, contents: dict[str, bytes], rename: Callable[[str, str], str], compress: bool
) -> Path:
    from mnist_zoo.data import SPLITS

    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for kind in _KINDS:
            data = contents[_original_name(split, kind)]
            name = rename(split, kind)
            if compress:
                data, name = gzip.compress(data, compresslevel=1), name + ".gz"
            (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def mnist_gzip_root(
    mnist_root: Path, mnist_contents: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Real MNIST as the original distribution: ``train-images-idx3-ubyte.gz``, ..."""
    from mnist_zoo.data import SPLITS

    if all(
        (mnist_root / f"{_original_name(split, kind)}.gz").is_file()
        for split in SPLITS
        for kind in _KINDS
    ):
        return mnist_root
    target = tmp_path_factory.mktemp("mnist-gzip")
    return _write_copies(target, mnist_contents, _original_name, compress=True)


@pytest.fixture(scope="session")
def mnist_plain_root(
    mnist_contents: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Real MNIST decompressed, original naming: ``train-images-idx3-ubyte``, ..."""
    target = tmp_path_factory.mktemp("mnist-plain")
    return _write_copies(target, mnist_contents, _original_name, compress=False)


@pytest.fixture(scope="session")
def mnist_kaggle_root(
    mnist_contents: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Real MNIST decompressed, Kaggle naming: ``train-images.idx3-ubyte``, ..."""
    target = tmp_path_factory.mktemp("mnist-kaggle")
    return _write_copies(target, mnist_contents, _kaggle_name, compress=False)


#: The size of :func:`mnist_small_root`'s splits.
SMALL_TRAIN, SMALL_TEST = 6_000, 2_000


@pytest.fixture(scope="session")
def mnist_small_root(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 6,000 training and 2,000 test images of real MNIST, as plain IDX files.

    For command-line and example runs that read a folder: they load and score 2,000 test
    images instead of 10,000 where their point does not need the whole test split.
    """
    import numpy as np

    from mnist_zoo.data import MNIST, write_idx

    target = tmp_path_factory.mktemp("mnist-small")
    for split, size in (("train", SMALL_TRAIN), ("test", SMALL_TEST)):
        dataset = MNIST(mnist_root, split=split)
        write_idx(target / _original_name(split, "images"), dataset.images[:size, 0].numpy())
        write_idx(
            target / _original_name(split, "labels"),
            dataset.targets[:size].numpy().astype(np.uint8),
        )
    return target


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module on one thread: small models gain nothing from more, and when another process
    keeps the cores busy, torch's spinning worker threads make training 20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write into (root ignores permission bits: a read-only mount).

    Skips the test where there is none.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK) and os.geteuid() != 0:
        return folder
    for candidate in (Path("/sys/fs"), Path("/proc/sys")):  # root: a read-only mount
        probe = candidate / "mnist-zoo-probe"
        try:
            probe.touch()
        except OSError:
            return candidate
        probe.unlink()
    pytest.skip("no folder here that this process cannot write")
