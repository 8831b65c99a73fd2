"""The "numpy" format: an ndarray as a .npy file, written and read without a second copy in memory.

Imported only when a stage uses the format, so numpy stays an optional extra (`pip install chkpt[numpy]`).
The checksum covers the file's bytes, header and data, but is computed from the array in memory rather than by
reading the file again: the store's generic path would cost one more pass over the data.
"""

from __future__ import annotations

import numpy as np

from .errors import SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from .checksums import Hasher


_CHUNK = 8 * 1024 * 1024


# A memory-mapped array (an input loaded with mmap=True, or a slice of one) is an ndarray in all but its buffer, and
# loads as one; other subclasses (np.matrix, masked arrays) lose what makes them so.
_PLAIN = (np.ndarray, np.memmap)
_HEADER_LIMIT = 9_000  # np.load's default max_header_size is 10,000; the header adds padding and a newline


class NumpyCodec:
    """An ndarray (not of dtype object, which would need pickle) as .npy. `read(file, mmap=True)` returns a
    read-only memory map of the checkpoint instead of an array in memory."""

    name = "numpy"
    extension = "npy"

    def can_store(self, value: Any) -> bool:
        return type(value) in _PLAIN and not value.dtype.hasobject

    def write(self, value: Any, file: BinaryIO) -> None:
        if not isinstance(value, np.ndarray):
            raise SerializationError(f"format 'numpy' stores a numpy.ndarray, not a {type(value).__name__}")
        if type(value) not in _PLAIN:
            # .npy keeps the data, not the subclass: a np.matrix would load as an ndarray, and `*` would change
            # meaning for the stages that use it
            raise SerializationError(
                f"format 'numpy' stores a plain numpy.ndarray, and would load this {type(value).__name__} as one; "
                "convert it with np.asarray(...), or use format='pickle'"
            )
        if value.dtype.hasobject:
            raise SerializationError(
                f"format 'numpy' cannot store an array of dtype {value.dtype} (it holds Python objects); "
                "use format='pickle'"
            )
        header = len(repr(np.lib.format.header_data_from_array_1_0(value)))
        if header > _HEADER_LIMIT:
            raise SerializationError(
                f"format 'numpy' cannot store an array whose .npy header is {header:,} bytes (its dtype has "
                f"{len(value.dtype.descr)} fields): np.load refuses headers over 10,000 bytes; use format='pickle'"
            )
        np.save(file, value, allow_pickle=False)

    def read(self, file: BinaryIO, mmap: bool = False) -> Any:
        if mmap:
            return np.load(file.name, mmap_mode="r", allow_pickle=False)
        return np.load(file, allow_pickle=False)

    def write_hashed(self, value: Any, file: BinaryIO, hasher: Hasher) -> None:
        """Write like `write`, and feed `hasher` the bytes written. `file` must be open for reading too."""
        # np.save writes an array straight from its memory only into a plain (unbuffered or write-only) file; a
        # read-write buffered file would make it copy the data in chunks. So it gets the raw file beneath.
        file.flush()
        raw = getattr(file, "raw", file)
        self.write(value, raw)
        end = raw.seek(0, 2)
        _hash_file_order(value, end, file, hasher)

    def read_hashed(self, file: BinaryIO, hasher: Hasher, mmap: bool = False) -> Any:
        """Read like `read`, and feed `hasher` the file's bytes."""
        if mmap:
            # Hashing through the map would map every page into this process; reading the file through one
            # reused buffer verifies it without keeping it in memory, and the map is opened after.
            buffer = bytearray(_CHUNK)
            view = memoryview(buffer)
            while size := file.readinto(buffer):  # type: ignore[attr-defined]
                hasher.update(view[:size])
            return self.read(file, mmap=True)
        raw = getattr(file, "raw", file)
        array = _read_into_array(raw, hasher)
        if array is None:
            array = self.read(file)
            _hash_file_order(array, file.seek(0, 2), file, hasher)
        return array


def _read_into_array(raw: Any, hasher: Hasher) -> Any:
    """Read a .npy file into a new array, hashing each piece while it is still in the CPU's cache: one pass over
    the data instead of a read and then a hash. None for a file this does not handle (a format version other than
    1.0 and 2.0), which is then read by np.load."""
    version = np.lib.format.read_magic(raw)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(raw)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(raw)
    else:
        raw.seek(0)
        return None
    if dtype.hasobject:
        raise ValueError(f"the file holds an array of dtype {dtype}, which needs pickle")
    start = raw.tell()
    raw.seek(0)
    hasher.update(raw.read(start))
    array = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
    data = array.reshape(-1, order="F" if fortran_order else "C").view(np.uint8).data
    position = 0
    while position < len(data):
        size = raw.readinto(data[position : position + _CHUNK])
        if not size:
            raise ValueError(f"the file ends after {position} of the array's {len(data)} bytes")
        hasher.update(data[position : position + size])
        position += size
    return array


def _hash_file_order(array: Any, end: int, file: BinaryIO, hasher: Hasher) -> None:
    """Feed `hasher` the .npy file's bytes: its header, read from the file, then the array's data in the order
    the file holds it, taken from memory. An array that is neither C- nor Fortran-contiguous was written from
    temporary copies, so its data is read back from the file instead."""
    start = end - array.nbytes
    file.seek(0)
    hasher.update(file.read(start))
    if array.flags.c_contiguous:
        hasher.update(memoryview(array.reshape(-1).view(np.uint8)))
    elif array.flags.f_contiguous:
        hasher.update(memoryview(array.reshape(-1, order="F").view(np.uint8)))
    else:
        while chunk := file.read(_CHUNK):
            hasher.update(chunk)
    file.seek(end)
