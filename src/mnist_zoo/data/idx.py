"""Read and write IDX files, the format MNIST is distributed in.

An IDX file is a 4-byte magic number, one big-endian 32-bit size per dimension, then the
values in C order, big-endian:

```text
byte 0-1   0x00 0x00
byte 2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
byte 3     number of dimensions, 1-255
then       ndim sizes, each an unsigned 32-bit big-endian integer
then       prod(sizes) values of the type above, big-endian
```

Files may be gzip-compressed; :func:`read_idx` recognises gzip by its magic bytes ``1f 8b``, not
by the file name. IDX has no 0-d form, so arrays need at least one dimension (reshape a scalar
to ``(1,)``); zero-size dimensions are fine.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..atomic import atomic_write
from ..errors import IDXFileNotFoundError, IDXFormatError, InvalidArgumentError

__all__ = ["IDX_DTYPES", "IDXFileNotFoundError", "IDXFormatError", "read_idx", "write_idx"]

#: IDX type code -> big-endian numpy dtype of the stored values.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES: dict[np.dtype, int] = {dtype: code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM_SIZE = 2**32 - 1
#: Deflate expands its input at most 1032-fold (a 258-byte match coded in 2 bits), so a gzip
#: file of n bytes decompresses to at most 1032 * n bytes.
_MAX_DEFLATE_RATIO = 1032
_CHUNK_SIZE = 1 << 20


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a plain or gzip-compressed IDX file into a native-endian numpy array.

    The header is read first and everything after it is checked against it before anything is
    returned: the data must be exactly as long as the header says, so a partial read is never
    returned silently. The header also bounds the work. Nothing is allocated for a header that
    promises more than the file can hold (its size for a plain file, 1032 times its size for a
    gzip file, deflate's largest expansion), and decompression stops one byte past the size the
    header promises, so a small gzip file that would expand to gigabytes costs no more memory
    or time than the data it claims.

    Args:
        path: The file to read. Compression is detected from the content, not the name.

    Returns:
        A writable, native-endian array with the file's dtype and shape.

    Raises:
        IDXFileNotFoundError: The file does not exist.
        IDXFormatError: The file cannot be read, is not valid gzip, is not valid IDX, or
            declares a shape numpy cannot hold (more than numpy's 32 or 64 dimensions, or
            more elements than fit in memory addresses).
    """
    path = Path(path)
    try:
        file = open(path, "rb")  # noqa: SIM115 (a with block below closes it)
    except FileNotFoundError:
        raise IDXFileNotFoundError(path, "no such file") from None
    except OSError as error:
        raise IDXFormatError(path, f"cannot read file: {error.strerror or error}") from error
    with file:
        try:
            status = os.fstat(file.fileno())
            gzipped = file.read(2) == _GZIP_MAGIC
            file.seek(0)
        except OSError as error:
            raise IDXFormatError(path, f"cannot read file: {error.strerror or error}") from error
        size = status.st_size if stat.S_ISREG(status.st_mode) else None
        if not gzipped:
            try:
                return _read_stream(path, file, "the file", size)
            except OSError as error:
                message = f"cannot read file: {error.strerror or error}"
                raise IDXFormatError(path, message) from error
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _read_stream(path, stream, "the decompressed file", None, size)
        # A damaged stream surfaces as any of these depending on where the damage is:
        # BadGzipFile (an OSError) for header/CRC/length, EOFError when truncated,
        # zlib.error for invalid deflate data.
        except (OSError, EOFError, zlib.error) as error:
            raise IDXFormatError(path, f"corrupt gzip data ({_gzip_reason(error)})") from error


def _gzip_reason(error: BaseException) -> str:
    # GzipFile appends the two checksums to its CRC message; they tell a user nothing.
    reason = str(error)
    return "CRC check failed" if reason.startswith("CRC check failed") else reason


def _read_stream(
    path: Path, stream: BinaryIO, where: str, size: int | None, gzip_size: int | None = None
) -> np.ndarray:
    """Read an IDX file from ``stream``; ``size`` is its length when known (a plain file),
    ``gzip_size`` the length of the gzip file it is decompressed from."""
    shape, dtype, header_size = _read_header(path, stream, where)
    expected = dtype.itemsize * _product(shape)
    if size is not None and size - header_size != expected:
        raise _length_error(path, shape, dtype, expected, where, size - header_size)
    if gzip_size is not None and expected > _MAX_DEFLATE_RATIO * gzip_size:
        raise _length_error(
            path, shape, dtype, expected, where, f"at most {_MAX_DEFLATE_RATIO * gzip_size}, "
            f"the most a {gzip_size}-byte gzip file can expand to"
        )  # fmt: skip
    native = dtype.newbyteorder("=")
    try:
        array = np.empty(shape, dtype=native)
    except ValueError as error:  # too many dimensions, or more bytes than addresses
        raise IDXFormatError(
            path, f"numpy cannot hold the declared shape {_shape_text(shape)} ({error})"
        ) from None
    actual = _fill(stream, array.reshape(-1).view(np.uint8))
    if actual < expected:
        raise _length_error(path, shape, dtype, expected, where, actual)
    if stream.read(1):
        # Stop here: the rest of a gzip stream could be gigabytes of anything.
        raise _length_error(path, shape, dtype, expected, where, "more")
    if not dtype.isnative:
        array.byteswap(inplace=True)  # the values were stored big-endian
    return array


def _read_header(path: Path, stream: BinaryIO, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape and dtype an IDX header declares, and the header's length in bytes."""
    magic = _read_up_to(stream, 4)
    if not magic:
        raise IDXFormatError(path, f"{where} is empty")
    if len(magic) < 4:
        raise IDXFormatError(
            path, f"{where} is {len(magic)} bytes long, too short for the 4-byte IDX magic number"
        )
    zero0, zero1, code, ndim = magic
    if zero0 != 0 or zero1 != 0:
        raise IDXFormatError(
            path,
            f"bad magic number 0x{magic.hex()}: an IDX file starts with two zero bytes "
            "(is this an IDX file?)",
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXFormatError(path, f"unknown type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise IDXFormatError(path, "header declares 0 dimensions; IDX needs at least one")
    header_size = 4 + 4 * ndim
    sizes = _read_up_to(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise IDXFormatError(
            path,
            f"header is shorter than its dimensions: {ndim} dimensions need a "
            f"{header_size}-byte header, but {where} has only {4 + len(sizes)} bytes",
        )
    return struct.unpack(f">{ndim}I", sizes), IDX_DTYPES[code], header_size


def _length_error(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, expected: int, where: str, actual: object
) -> IDXFormatError:
    """``actual``: the data's length in bytes, or words saying what is known of it."""
    longer = actual == "more" or (isinstance(actual, int) and actual > expected)
    return IDXFormatError(
        path,
        f"data is {'longer' if longer else 'shorter'} than the header says: shape "
        f"{_shape_text(shape)} of {dtype.name} needs {expected} bytes after the header, "
        f"{where} has {actual}",
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    # A corrupt header may declare up to 255 dimensions; a message needs only the gist.
    if len(shape) <= 8:
        return str(shape)
    return f"({', '.join(map(str, shape[:4]))}, ... {len(shape)} dimensions)"


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream."""
    chunks, remaining = [], size
    while remaining and (chunk := stream.read(remaining)):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _fill(stream: BinaryIO, buffer: np.ndarray) -> int:
    """Read into ``buffer`` until it is full or the stream ends; return the bytes read."""
    # In pieces: GzipFile.readinto would decompress everything into one bytes object first.
    view, filled = memoryview(buffer), 0
    while filled < len(view):
        chunk = stream.read(min(_CHUNK_SIZE, len(view) - filled))
        if not chunk:
            break
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return filled


def _product(shape: tuple[int, ...]) -> int:
    # Python ints: a corrupt header's sizes must not overflow into a plausible byte count.
    result = 1
    for size in shape:
        result *= size
    return result


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> None:
    """Write an array as an IDX file, optionally gzip-compressed, atomically.

    The file appears complete or not at all (see :func:`mnist_zoo.atomic.atomic_writer`).

    Args:
        path: Where to write. Parent folders must exist.
        array: An array of dtype uint8, int8, int16, int32, float32 or float64 (any byte
            order) with at least one dimension; each dimension must be below 2**32.
        compress: ``True`` to gzip, ``False`` for a plain file, ``None`` (default) to gzip
            exactly when the file name ends in ``.gz``.

    Raises:
        InvalidArgumentError: The array's dtype or shape cannot be stored as IDX (a
            ``ValueError``).
        OSError: The file cannot be written (a missing folder, no permission, a full disk).
    """
    path = Path(path)
    array = np.asarray(array)
    big_endian = array.dtype.newbyteorder(">")
    if big_endian not in _TYPE_CODES:
        supported = ", ".join(dtype.name for dtype in IDX_DTYPES.values())
        raise InvalidArgumentError(f"IDX cannot store dtype {array.dtype}; supported: {supported}")
    if array.ndim == 0:
        raise InvalidArgumentError("IDX needs at least one dimension; reshape a scalar to (1,)")
    if array.ndim > 255:
        raise InvalidArgumentError(f"IDX allows at most 255 dimensions, got {array.ndim}")
    if any(size > _MAX_DIM_SIZE for size in array.shape):
        raise InvalidArgumentError(
            f"IDX dimension sizes must be below 2**32, got shape {array.shape}"
        )

    header = bytes([0, 0, _TYPE_CODES[big_endian], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(big_endian, copy=False).tobytes(order="C")
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        # mtime=0 makes the output byte-for-byte reproducible.
        content = gzip.compress(content, compresslevel=6, mtime=0)
    atomic_write(path, content)
