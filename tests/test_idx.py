"""Tests for the IDX reader and writer: known bytes, every bad-input case, and properties."""

from __future__ import annotations

import gzip
import re
import struct
import time
import tracemalloc
import zlib
from contextlib import AbstractContextManager
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_zoo import errors
from mnist_zoo.data import IDX_DTYPES, IDXFileNotFoundError, IDXFormatError, read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
PROPERTY_SETTINGS = settings(max_examples=75, deadline=None)


def raises_about(
    path: Path, pattern: str
) -> AbstractContextManager[pytest.ExceptionInfo[IDXFormatError]]:
    """Expect an IDXFormatError whose message names ``path`` and then matches ``pattern``."""
    return pytest.raises(IDXFormatError, match=re.escape(str(path)) + ": " + pattern)


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


# --- Reading known bytes ----------------------------------------------------------------------


def test_reads_big_endian_values_as_native(tmp_path: Path) -> None:
    path = tmp_path / "values.idx"
    path.write_bytes(idx_bytes(0x0B, (2,), b"\x00\x01\xff\xfe"))
    array = read_idx(path)
    assert array.dtype == np.int16 and array.dtype.isnative
    assert array.tolist() == [1, -2]
    assert array.flags.writeable


def test_reads_every_type_code(tmp_path: Path) -> None:
    values = [0, 1, 100]
    for code, dtype in IDX_DTYPES.items():
        path = tmp_path / f"{code}.idx"
        path.write_bytes(idx_bytes(code, (3,), np.array(values, dtype=dtype).tobytes()))
        array = read_idx(path)
        assert array.dtype == dtype.newbyteorder("=")
        assert array.tolist() == values


def test_reads_many_dimensions_in_c_order(tmp_path: Path) -> None:
    path = tmp_path / "cube.idx"
    path.write_bytes(idx_bytes(0x08, (2, 1, 3), bytes(range(6))))
    assert read_idx(path).tolist() == [[[0, 1, 2]], [[3, 4, 5]]]


def test_reads_zero_size_dimension(tmp_path: Path) -> None:
    path = tmp_path / "empty.idx"
    path.write_bytes(idx_bytes(0x0D, (3, 0), b""))
    array = read_idx(path)
    assert array.shape == (3, 0) and array.dtype == np.float32


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    content = idx_bytes(0x08, (3,), b"\x01\x02\x03")
    gzipped_without_suffix = tmp_path / "labels.idx"
    gzipped_without_suffix.write_bytes(gzip.compress(content))
    plain_with_suffix = tmp_path / "labels.idx.gz"
    plain_with_suffix.write_bytes(content)
    assert read_idx(gzipped_without_suffix).tolist() == [1, 2, 3]
    assert read_idx(plain_with_suffix).tolist() == [1, 2, 3]


def test_reads_real_mnist_test_split(mnist_gzip_root: Path) -> None:
    labels = read_idx(mnist_gzip_root / "t10k-labels-idx1-ubyte.gz")
    assert labels.dtype == np.uint8 and labels.shape == (10_000,)
    images = read_idx(mnist_gzip_root / "t10k-images-idx3-ubyte.gz")
    assert images.dtype == np.uint8 and images.shape == (10_000, 28, 28)


# --- Writing ----------------------------------------------------------------------------------


def test_writes_big_endian_header_and_values(tmp_path: Path) -> None:
    path = tmp_path / "out.idx"
    write_idx(path, np.array([[1, -2]], dtype="<i4"))
    assert path.read_bytes() == idx_bytes(0x0C, (1, 2), b"\x00\x00\x00\x01\xff\xff\xff\xfe")


@pytest.mark.parametrize(
    ("name", "compress", "gzipped"),
    [
        ("a.idx", None, False),
        ("a.idx.gz", None, True),
        ("a.idx.gz", False, False),
        ("a.idx", True, True),
    ],
)
def test_write_compresses_when_asked_or_named_gz(
    tmp_path: Path, name: str, compress: bool | None, gzipped: bool
) -> None:
    path = tmp_path / name
    write_idx(path, np.arange(5, dtype=np.uint8), compress=compress)
    assert path.read_bytes().startswith(b"\x1f\x8b") == gzipped
    assert read_idx(path).tolist() == [0, 1, 2, 3, 4]


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    array = np.arange(100, dtype=np.int16)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.arange(3, dtype=np.int64), "IDX cannot store dtype int64"),
        (np.zeros(3, dtype=bool), "IDX cannot store dtype bool"),
        (np.arange(3, dtype=np.uint16), "IDX cannot store dtype uint16"),
        (np.array(7, dtype=np.uint8), r"at least one dimension; reshape a scalar to \(1,\)"),
        (np.empty((0, 2**32), dtype=np.uint8), "sizes must be below 2\\*\\*32"),
    ],
)
def test_write_rejects_what_idx_cannot_hold(
    tmp_path: Path, array: np.ndarray, message: str
) -> None:
    path = tmp_path / "out.idx"
    with pytest.raises(ValueError, match=message):
        write_idx(path, array)
    assert not path.exists()


def test_write_errors_are_invalid_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="IDX cannot store dtype int64"):
        write_idx(tmp_path / "out.idx", np.arange(3, dtype=np.int64))


def test_write_replaces_a_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.idx"
    write_idx(path, np.arange(3, dtype=np.uint8))
    write_idx(path, np.arange(4, dtype=np.uint8))
    assert read_idx(path).tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.idx"]  # no temporary left


def test_write_into_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.idx"
    with pytest.raises(FileNotFoundError) as info:
        write_idx(path, np.arange(3, dtype=np.uint8))
    # The file asked for, not the hidden temporary the atomic write would have used.
    assert info.value.filename == str(path) and str(info.value).endswith(f"'{path}'")


def test_the_errors_are_the_packages_own() -> None:
    assert IDXFormatError is errors.IDXFormatError
    assert IDXFileNotFoundError is errors.IDXFileNotFoundError
    assert issubclass(IDXFormatError, errors.MnistZooError) and issubclass(
        IDXFormatError, ValueError
    )


# --- Bad input: one test per fault, each checking the type and the message ---------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.idx"
    with raises_about(path, "no such file") as info:
        read_idx(path)
    assert isinstance(info.value, IDXFileNotFoundError)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == path


def test_unreadable_path(tmp_path: Path) -> None:
    with raises_about(tmp_path, "cannot read file"):
        read_idx(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.idx"
    path.write_bytes(b"")
    with raises_about(path, "the file is empty"):
        read_idx(path)


def test_file_shorter_than_magic(tmp_path: Path) -> None:
    path = tmp_path / "short.idx"
    path.write_bytes(b"\x00\x00\x08")
    with raises_about(path, "the file is 3 bytes long, too short for the 4-byte IDX magic number"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"\x00\x01\x08\x01\x00\x00\x00\x00", b"hello world"])
def test_wrong_magic(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "wrong.idx"
    path.write_bytes(content)
    with raises_about(path, f"bad magic number 0x{content[:4].hex()}: .* two zero bytes"):
        read_idx(path)


def test_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "code.idx"
    path.write_bytes(idx_bytes(0x0A, (1,), b"\x00"))
    with raises_about(path, r"unknown type code 0x0a \(known: 0x08, 0x09, 0x0b"):
        read_idx(path)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "scalar.idx"
    path.write_bytes(b"\x00\x00\x08\x00\x07")
    with raises_about(path, "header declares 0 dimensions"):
        read_idx(path)


def test_header_shorter_than_its_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "header.idx"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">2I", 2, 2))
    with raises_about(
        path, "header is shorter than its dimensions: 3 dimensions need a 16-byte header, "
    ):
        read_idx(path)


def test_data_shorter_than_header_says(tmp_path: Path) -> None:
    path = tmp_path / "short.idx"
    path.write_bytes(idx_bytes(0x08, (2, 3), bytes(5)))
    with raises_about(path, r"data is shorter than the header says: .* needs 6 bytes .* has 5"):
        read_idx(path)


def test_data_longer_than_header_says(tmp_path: Path) -> None:
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(0x0C, (2,), bytes(9)))
    with raises_about(path, r"data is longer than the header says: .* needs 8 bytes .* has 9"):
        read_idx(path)


@pytest.fixture
def gzipped_idx(tmp_path: Path) -> Path:
    path = tmp_path / "data.idx.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    return path


def test_corrupt_gzip_body(gzipped_idx: Path) -> None:
    raw = bytearray(gzipped_idx.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    gzipped_idx.write_bytes(bytes(raw))
    with raises_about(gzipped_idx, r"corrupt gzip data \("):
        read_idx(gzipped_idx)


def test_gzip_crc_mismatch(gzipped_idx: Path) -> None:
    raw = bytearray(gzipped_idx.read_bytes())
    raw[-8] ^= 0x01  # first byte of the CRC-32 in the trailer
    gzipped_idx.write_bytes(bytes(raw))
    with raises_about(gzipped_idx, r"corrupt gzip data \(CRC check failed\)"):
        read_idx(gzipped_idx)


def test_truncated_gzip_stream(gzipped_idx: Path) -> None:
    gzipped_idx.write_bytes(gzipped_idx.read_bytes()[:-20])
    with raises_about(gzipped_idx, r"corrupt gzip data \(.*ended before the end-of-stream"):
        read_idx(gzipped_idx)


def test_gzip_of_empty_content(tmp_path: Path) -> None:
    path = tmp_path / "empty.gz"
    path.write_bytes(gzip.compress(b""))
    with raises_about(path, "the decompressed file is empty"):
        read_idx(path)


def test_gzip_of_bad_idx_says_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (4,), bytes(3))))
    with raises_about(path, "data is shorter .* the decompressed file has 3"):
        read_idx(path)


# --- Resource limits: the header bounds the work -----------------------------------------------


def write_gzip_bomb(path: Path, header: bytes, zeros_mib: int) -> None:
    """``header`` followed by ``zeros_mib`` MiB of zeros, one gzip stream, written in pieces."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    zeros = bytes(1 << 20)
    with path.open("wb") as out:
        out.write(compressor.compress(header))
        for _ in range(zeros_mib):
            out.write(compressor.compress(zeros))
        out.write(compressor.flush())


def peak_memory_and_time(function: object) -> tuple[int, float]:
    """Run ``function()``, which must raise IDXFormatError; return its peak memory and time."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(IDXFormatError):
            function()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1], time.perf_counter() - start
    finally:
        tracemalloc.stop()


def test_gzip_bomb_stops_one_byte_past_the_promised_size(tmp_path: Path) -> None:
    # Issue 10: a 1 MB gzip file expanding to 1 GiB was decompressed whole (2.3 GB peak, 8.6 s)
    # before the header check. A quarter of that shows the same: the header promises 16
    # bytes, so reading stops at byte 17 of 256 MiB.
    path = tmp_path / "bomb.idx.gz"
    write_gzip_bomb(path, idx_bytes(0x08, (16,), b""), zeros_mib=256)
    assert path.stat().st_size < 2 << 20
    with raises_about(
        path,
        r"data is longer than the header says: shape \(16,\) of uint8 needs 16 bytes after "
        "the header, the decompressed file has more",
    ):
        read_idx(path)
    peak, seconds = peak_memory_and_time(lambda: read_idx(path))
    assert peak < 4 << 20, f"peak {peak / 2**20:.0f} MiB"
    assert seconds < 1.0


def test_header_promising_more_than_a_gzip_file_can_hold_allocates_nothing(
    tmp_path: Path,
) -> None:
    # 1 MiB of zeros compresses to about 4 KB, which deflate can expand to at most 1032 times
    # that: nowhere near the 4 GB the header promises, so nothing is allocated or read.
    path = tmp_path / "promise.idx.gz"
    write_gzip_bomb(path, idx_bytes(0x08, (2**32 - 1,), b""), zeros_mib=1)
    size = path.stat().st_size
    with raises_about(
        path,
        r"data is shorter than the header says: shape \(4294967295,\) of uint8 needs "
        rf"4294967295 bytes after the header, the decompressed file has at most {1032 * size}, "
        rf"the most a {size}-byte gzip file can expand to",
    ):
        read_idx(path)
    peak, _ = peak_memory_and_time(lambda: read_idx(path))
    assert peak < 4 << 20


def test_header_promising_more_than_a_plain_file_holds_allocates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "promise.idx"
    path.write_bytes(idx_bytes(0x0E, (2**32 - 1, 2**32 - 1), bytes(64)))
    peak, _ = peak_memory_and_time(lambda: read_idx(path))
    assert peak < 1 << 20
    needs = 8 * (2**32 - 1) ** 2
    with raises_about(path, rf"data is shorter .* needs {needs} bytes .* the file has 64"):
        read_idx(path)


@pytest.mark.parametrize(
    ("shape", "payload"),
    [((0, 2**32 - 1, 2**32 - 1), b""), ((1,) * 65, b"\x07")],
    ids=["more-elements-than-addresses", "65-dimensions"],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_shape_numpy_cannot_hold_is_an_idx_format_error(
    tmp_path: Path, shape: tuple[int, ...], payload: bytes, compress: bool
) -> None:
    # Issue 10: numpy's own ValueError ("array is too big", "maximum supported dimension")
    # escaped read_idx; IDX allows 255 dimensions of up to 2**32 - 1 each.
    path = tmp_path / "shape.idx"
    content = idx_bytes(0x08, shape, payload)
    path.write_bytes(gzip.compress(content) if compress else content)
    with raises_about(path, "numpy cannot hold the declared shape "):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_zero_item_files_read_fine(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "none.idx"
    write_idx(path, np.zeros((0, 28, 28), np.uint8), compress=compress)
    array = read_idx(path)
    assert array.shape == (0, 28, 28) and array.dtype == np.uint8
    write_idx(path, np.zeros((0, 2**32 - 1), ">f8"), compress=compress)
    assert read_idx(path).shape == (0, 2**32 - 1)


def test_reads_a_multi_member_gzip_file(tmp_path: Path) -> None:
    # Concatenated gzip members are one file to gzip(1), and were to gzip.decompress.
    content = idx_bytes(0x0B, (3,), np.array([1, -2, 300], ">i2").tobytes())
    path = tmp_path / "members.idx.gz"
    path.write_bytes(gzip.compress(content[:7]) + gzip.compress(content[7:]))
    assert read_idx(path).tolist() == [1, -2, 300]


# --- Properties -------------------------------------------------------------------------------


@st.composite
def idx_arrays(draw: st.DrawFn, max_dims: int = 4, min_side: int = 0) -> np.ndarray:
    """Arrays of every IDX dtype in either byte order, 1 to ``max_dims`` dimensions."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES))).newbyteorder(draw(st.sampled_from("<>")))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=min_side, max_side=4))
    return draw(hnp.arrays(dtype, shape))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file that property tests overwrite on each example (hypothesis reuses fixtures)."""
    return tmp_path_factory.mktemp("idx-properties") / "example.idx"


@PROPERTY_SETTINGS
@given(array=idx_arrays(max_dims=6), compress=st.booleans())
def test_round_trip(scratch: Path, array: np.ndarray, compress: bool) -> None:
    write_idx(scratch, array, compress=compress)
    back = read_idx(scratch)
    assert back.dtype.isnative
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.shape == array.shape
    # Bytes, not values: NaN payloads and -0.0 must survive too.
    assert back.tobytes() == array.astype(back.dtype).tobytes()


@PROPERTY_SETTINGS
@given(array=idx_arrays(), compress=st.booleans(), data=st.data())
def test_any_truncation_raises(
    scratch: Path, array: np.ndarray, compress: bool, data: st.DataObject
) -> None:
    write_idx(scratch, array, compress=compress)
    raw = scratch.read_bytes()
    scratch.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")])
    with pytest.raises(IDXFormatError):
        read_idx(scratch)


@PROPERTY_SETTINGS
@given(array=idx_arrays(), position=st.sampled_from([0, 1]), mask=st.integers(1, 255))
def test_flip_in_magic_zero_bytes_raises(
    scratch: Path, array: np.ndarray, position: int, mask: int
) -> None:
    raw = _plain(scratch, array)
    raw[position] ^= mask
    scratch.write_bytes(bytes(raw))
    with pytest.raises(IDXFormatError, match="magic"):
        read_idx(scratch)


@PROPERTY_SETTINGS
@given(array=idx_arrays(), code=st.integers(0, 255).filter(lambda code: code not in IDX_DTYPES))
def test_invalid_type_code_raises(scratch: Path, array: np.ndarray, code: int) -> None:
    raw = _plain(scratch, array)
    raw[2] = code
    scratch.write_bytes(bytes(raw))
    with pytest.raises(IDXFormatError, match="unknown type code"):
        read_idx(scratch)


@PROPERTY_SETTINGS
@given(array=idx_arrays(min_side=1), data=st.data())
def test_flip_in_sizes_of_nonempty_array_raises(
    scratch: Path, array: np.ndarray, data: st.DataObject
) -> None:
    # Changing one factor of a non-zero product changes the product, so the data length
    # can no longer match; with a zero-size dimension it could, so those arrays are excluded.
    raw = _plain(scratch, array)
    position = data.draw(st.integers(4, 4 + 4 * array.ndim - 1), label="position")
    raw[position] ^= data.draw(st.integers(1, 255), label="mask")
    scratch.write_bytes(bytes(raw))
    with pytest.raises(IDXFormatError, match="than the header says"):
        read_idx(scratch)


@PROPERTY_SETTINGS
@given(array=idx_arrays(), data=st.data())
def test_any_flip_in_plain_file_raises_only_idx_format_error(
    scratch: Path, array: np.ndarray, data: st.DataObject
) -> None:
    # IDX has no checksum: a flip in the values, or one turning int32 into float32 (0x0C ->
    # 0x0D), gives a valid, different file. The honest property is that reading never fails
    # with anything but IDXFormatError and never returns more or fewer values than stored.
    raw = _plain(scratch, array)
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[position] ^= data.draw(st.integers(1, 255), label="mask")
    scratch.write_bytes(bytes(raw))
    try:
        back = read_idx(scratch)
    except IDXFormatError:
        return
    assert back.nbytes + 4 + 4 * back.ndim == len(raw)


@PROPERTY_SETTINGS
@given(array=idx_arrays(), data=st.data())
def test_any_flip_in_gzip_file_raises_or_changes_nothing(
    scratch: Path, array: np.ndarray, data: st.DataObject
) -> None:
    # gzip's CRC-32 catches corrupted content (all but a 2**-32 chance). Some bytes carry no
    # content: the header's timestamp, OS and flag bits, and unused bits of the last deflate
    # byte. Flipping those leaves a valid file with the same array, which is correct.
    write_idx(scratch, array, compress=True)
    raw = bytearray(scratch.read_bytes())
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[position] ^= data.draw(st.integers(1, 255), label="mask")
    scratch.write_bytes(bytes(raw))
    try:
        back = read_idx(scratch)
    except IDXFormatError:
        return
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.tobytes() == array.astype(back.dtype).tobytes()


@PROPERTY_SETTINGS
@given(array=idx_arrays(), data=st.data())
def test_flip_in_gzip_magic_or_trailer_raises(
    scratch: Path, array: np.ndarray, data: st.DataObject
) -> None:
    write_idx(scratch, array, compress=True)
    raw = bytearray(scratch.read_bytes())
    # The two magic bytes, and the CRC-32 and length that end the stream.
    position = data.draw(st.sampled_from([0, 1, *range(len(raw) - 8, len(raw))]), label="pos")
    raw[position] ^= data.draw(st.integers(1, 255), label="mask")
    scratch.write_bytes(bytes(raw))
    with pytest.raises(IDXFormatError):
        read_idx(scratch)


def _plain(path: Path, array: np.ndarray) -> bytearray:
    write_idx(path, array, compress=False)
    return bytearray(path.read_bytes())
