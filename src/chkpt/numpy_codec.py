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


class NumpyCodec:
    """An ndarray (not of dtype object, which would need pickle) as .npy. `read(file, mmap=True)` returns a
    read-only memory map of the checkpoint instead of an array in memory."""

    name = "numpy"
    extension = "npy"

    def can_store(self, value: Any) -> bool:
        return isinstance(value, np.ndarray) and not value.dtype.hasobject

    def write(self, value: Any, file: BinaryIO) -> None:
        if not isinstance(value, np.ndarray):
            raise SerializationError(f"format 'numpy' stores a numpy.ndarray, not a {type(value).__name__}")
        if value.dtype.hasobject:
            raise SerializationError(
                f"format 'numpy' cannot store an array of dtype {value.dtype} (it holds Python objects); "
                "use format='pickle'"
            )
        np.save(file, value, allow_pickle=False)

    def read(self, file: BinaryIO, mmap: bool = False) -> Any:
        if mmap:
            return np.load(file.name, mmap_mode="r", allow_pickle=False)
        return np.load(file, allow_pickle=False)

    def write_hashed(self, value: Any, file: BinaryIO, hasher: Hasher) -> None:
        """Write like `write`, and feed `hasher` the bytes written. `file` must be open for reading too."""
        self.write(value, file)
        end = file.tell()
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
        array = self.read(file)
        end = file.seek(0, 2)
        _hash_file_order(array, end, file, hasher)
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
