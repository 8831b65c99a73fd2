"""Checksums that verify a checkpoint on every load.

sha256 from the standard library always works, at about 2 GB/s. With the optional `chkpt[fast]` extra
(xxhash), new checkpoints use xxh3-128, at memory speed, so verifying a big array costs a fraction of reading it.
Each record names its algorithm, so a checkpoint is always verified with the one it was written with.
"""

from __future__ import annotations

import hashlib

from .errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Hasher(Protocol):
        def update(self, data: bytes | memoryview, /) -> None: ...

        def hexdigest(self) -> str: ...


SHA256 = "sha256"
XXH3 = "xxh3_128"
ALGORITHMS = (SHA256, XXH3)

_fast: list[bool] = []


def preferred() -> str:
    """The algorithm for new checkpoints: xxh3-128 when xxhash is installed, else sha256."""
    if not _fast:
        try:
            import xxhash  # noqa: F401
        except ImportError:
            _fast.append(False)
        else:
            _fast.append(True)
    return XXH3 if _fast[0] else SHA256


def new(algorithm: str) -> Hasher:
    """A fresh hasher for `algorithm`; StoreError if this machine cannot compute it."""
    if algorithm == SHA256:
        return hashlib.sha256()
    if algorithm == XXH3:
        try:
            import xxhash
        except ImportError:
            raise StoreError(
                "this checkpoint was verified with xxh3_128, which needs the xxhash package: "
                "pip install chkpt[fast] (or delete the checkpoint to recompute it)"
            ) from None
        hasher: Hasher = xxhash.xxh3_128()
        return hasher
    raise StoreError(f"unknown checksum algorithm {algorithm!r} in a checkpoint record")


def label(algorithm: str, hasher: Hasher) -> str:
    """How a checksum is written in a record: `algorithm:hexdigest`."""
    return f"{algorithm}:{hasher.hexdigest()}"
