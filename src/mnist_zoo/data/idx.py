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
import struct
import zlib
from pathlib import Path

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


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a plain or gzip-compressed IDX file into a native-endian numpy array.

    The file is read in one go and checked completely before anything is returned: the data
    must be exactly as long as the header says, so a partial read is never returned silently.

    Args:
        path: The file to read. Compression is detected from the content, not the name.

    Returns:
        A writable, native-endian array with the file's dtype and shape.

    Raises:
        IDXFileNotFoundError: The file does not exist.
        IDXFormatError: The file cannot be read, is not valid gzip, or is not valid IDX.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IDXFileNotFoundError(path, "no such file") from None
    except OSError as error:
        raise IDXFormatError(path, f"cannot read file: {error.strerror or error}") from error

    if raw.startswith(_GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        # A damaged stream surfaces as any of these depending on where the damage is:
        # BadGzipFile (an OSError) for header/CRC/length, EOFError when truncated,
        # zlib.error for invalid deflate data.
        except (OSError, EOFError, zlib.error) as error:
            raise IDXFormatError(path, f"corrupt gzip data ({error})") from error
        where = "the decompressed file"
    else:
        where = "the file"
    return _parse_idx(path, raw, where)


def _parse_idx(path: Path, raw: bytes, where: str) -> np.ndarray:
    if not raw:
        raise IDXFormatError(path, f"{where} is empty")
    if len(raw) < 4:
        raise IDXFormatError(
            path, f"{where} is {len(raw)} bytes long, too short for the 4-byte IDX magic number"
        )
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0:
        raise IDXFormatError(
            path,
            f"bad magic number 0x{raw[:4].hex()}: an IDX file starts with two zero bytes "
            "(is this an IDX file?)",
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXFormatError(path, f"unknown type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise IDXFormatError(path, "header declares 0 dimensions; IDX needs at least one")

    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IDXFormatError(
            path,
            f"header is shorter than its dimensions: {ndim} dimensions need a "
            f"{header_size}-byte header, but {where} has only {len(raw)} bytes",
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = dtype.itemsize * _product(shape)
    actual = len(raw) - header_size
    if actual != expected:
        relation = "shorter" if actual < expected else "longer"
        raise IDXFormatError(
            path,
            f"data is {relation} than the header says: shape {shape} of {dtype.name} needs "
            f"{expected} bytes after the header, {where} has {actual}",
        )
    values = np.frombuffer(raw, dtype=dtype, count=_product(shape), offset=header_size)
    # astype copies: the result is native-endian, writable, and does not pin the raw buffer.
    return values.astype(dtype.newbyteorder("=")).reshape(shape)


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
