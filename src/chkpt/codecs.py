"""Codecs: how a stage's value becomes bytes and comes back.

JSON, from the standard library, is the format of every stage. A codec's name is part of each key it stores
under, so a stage whose format changes never loads a checkpoint written in the old one.
"""

from __future__ import annotations

import json

from .errors import SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object

# Indenting goes through the json module's pure-Python encoder, far slower than its C one: only values whose
# compact text is at most this long are indented for a person to read.
INDENT_LIMIT = 16 * 1024


class Codec(Protocol):
    """What a format provides: a name (part of keys), a file extension, and the two conversions."""

    name: str
    extension: str

    def encode(self, value: Any) -> bytes:
        """The value as bytes; raises SerializationError naming the type when the format cannot hold it."""
        ...

    def decode(self, data: bytes) -> Any:
        """The value back from bytes that `encode` wrote; raises ValueError when they are not such bytes."""
        ...


class JsonCodec:
    """JSON text, indented when small. Like `json` itself it stores tuples as lists and turns non-string dict
    keys into strings: a stage that returns those gets them back changed when loaded."""

    name = "json"
    extension = "json"

    def encode(self, value: Any) -> bytes:
        try:
            text = json.dumps(value, allow_nan=True)
            if len(text) <= INDENT_LIMIT:
                text = json.dumps(value, allow_nan=True, indent=2)
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"a value of type {type(value).__name__} cannot be stored as json: {exc}"
            ) from None
        return text.encode("ascii")

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


JSON = JsonCodec()
