"""Codecs: how a stage's value is written to a checkpoint file and read back.

A stage names its format (`Stage.wrap(format="numpy")`), or takes the config's (`Config(format=...)`, "json" by
default). The format's name is part of the stage's key, so a stage whose format changes never loads a checkpoint
written in the old one, and a checkpoint is always read with the codec its stage declares, never with one a file
on disk names: a planted file cannot make chkpt unpickle data for a stage that did not ask for pickle.

Built in: "json" (the default), "json-lossy", "text", "bytes" and "pickle" from the standard library; "numpy" and
"pandas" when those packages are installed (`pip install chkpt[numpy]`, `chkpt[pandas]`); and "auto", which picks
one of the safe codecs (never pickle) by the value's type. `register(codec)` adds a codec of your own.
"""

from __future__ import annotations

import json

from .collector import paused
from .errors import ChkptError, ConfigError, SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Protocol
else:
    Protocol = object

# Indenting goes through the json module's pure-Python encoder, far slower than its C one: only values whose
# compact text is at most this long are indented for a person to read.
INDENT_LIMIT = 16 * 1024


class Codec(Protocol):
    """What a format provides. Implement this to `register` a format of your own.

    `name` is part of every key stored in this format; `extension` names the value's file (letters and digits).
    `can_store(value)` says whether `write` can take the value; "auto" does not use your codecs. `write(value,
    file)` writes the value into a binary file opened for writing; `read(file)` reads it back from a binary file
    opened for reading, whose `name` is the checkpoint's path. chkpt verifies the file's checksum before `read`.
    """

    name: str
    extension: str

    def can_store(self, value: Any) -> bool: ...

    def write(self, value: Any, file: BinaryIO) -> None: ...

    def read(self, file: BinaryIO) -> Any: ...


class JsonCodec:
    """JSON text, indented when small. The record and the value share one file (see store.py).

    JSON would return a tuple as a list and a dict's int keys as strings, so the value a later run loads would
    not be the value this run returned. "json" refuses such values with a SerializationError; "json-lossy"
    stores them as JSON does. Floats, NaN and infinities included, round-trip exactly.
    """

    extension = "json"
    inline = True

    def __init__(self, name: str, strict: bool) -> None:
        self.name = name
        self.strict = strict

    def can_store(self, value: Any) -> bool:
        return value is None or isinstance(value, (bool, int, float, str, list, dict))

    def encode(self, value: Any) -> bytes:
        # Encoding first: it refuses a value that contains itself, which the strict check's walk would follow
        # for ever.
        try:
            text = json.dumps(value, allow_nan=True, separators=(",", ":"))
            if len(text) <= INDENT_LIMIT:
                text = json.dumps(value, allow_nan=True, indent=2)
        except (TypeError, ValueError, RecursionError) as exc:
            raise SerializationError(
                f"a value of type {type(value).__name__} cannot be stored as json: {exc}"
            ) from None
        if self.strict:
            problem = json_change(value)
            if problem is not None:
                raise SerializationError(
                    f"json would return {problem} changed when loaded; convert it (tuples to lists, keys to "
                    "str), or use format='json-lossy' to store it as JSON does, or format='pickle'"
                )
        return text.encode("ascii")

    def decode(self, data: bytes) -> Any:
        # Decoding makes many containers, and the cyclic GC would scan them again and again while they are
        # built: pausing it makes loading a big value several times faster.
        with paused():
            return json.loads(data)

    def write(self, value: Any, file: BinaryIO) -> None:
        file.write(self.encode(value))

    def read(self, file: BinaryIO) -> Any:
        return self.decode(file.read())


def json_change(value: Any) -> str | None:
    """What JSON would hand back changed (a tuple, a non-str dict key), or None if it round-trips."""
    pending = [value]
    pop, extend = pending.pop, pending.extend
    while pending:
        item = pop()
        kind = type(item)
        if kind is dict or (kind is not list and isinstance(item, dict)):
            for key in item:
                if type(key) is not str:
                    return f"a dict key of type {type(key).__name__} ({key!r:.40})"
            extend(item.values())
        elif kind is list:
            extend(item)
        elif isinstance(item, tuple):
            return f"a tuple ({item!r:.40})"
        elif isinstance(item, list):
            extend(item)
    return None


class TextCodec:
    """A str as UTF-8 text in a .txt file (lone surrogates kept)."""

    name = "text"
    extension = "txt"

    def can_store(self, value: Any) -> bool:
        return isinstance(value, str)

    def write(self, value: Any, file: BinaryIO) -> None:
        if not isinstance(value, str):
            raise SerializationError(f"format 'text' stores a str, not a {type(value).__name__}")
        file.write(value.encode("utf-8", "surrogatepass"))

    def read(self, file: BinaryIO) -> Any:
        return file.read().decode("utf-8", "surrogatepass")


class BytesCodec:
    """bytes (or a bytearray or memoryview, loaded as bytes) as they are, in a .bin file."""

    name = "bytes"
    extension = "bin"

    def can_store(self, value: Any) -> bool:
        return isinstance(value, (bytes, bytearray, memoryview))

    def write(self, value: Any, file: BinaryIO) -> None:
        if not self.can_store(value):
            raise SerializationError(f"format 'bytes' stores bytes, not a {type(value).__name__}")
        file.write(value)

    def read(self, file: BinaryIO) -> Any:
        return file.read()


class PickleCodec:
    """Anything pickle can store, with protocol 5 (large buffers are written without an extra copy).

    Loading a pickle runs code, so this format is used only by stages that ask for it, never by "auto"; keep such
    checkpoints in a folder only you can write. chkpt verifies the file's checksum before unpickling it.
    """

    name = "pickle"
    extension = "pkl"

    def can_store(self, value: Any) -> bool:
        return True

    def write(self, value: Any, file: BinaryIO) -> None:
        import pickle

        try:
            pickle.dump(value, file, protocol=5)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
            raise SerializationError(f"a value of type {type(value).__name__} cannot be pickled: {exc}") from None

    def read(self, file: BinaryIO) -> Any:
        import pickle

        return pickle.load(file)


JSON = JsonCodec("json", strict=True)
AUTO = "auto"

_registry: dict[str, Codec] = {
    codec.name: codec
    for codec in (JSON, JsonCodec("json-lossy", strict=False), TextCodec(), BytesCodec(), PickleCodec())
}
# Codecs whose library is optional: imported the first time they are asked for.
_optional = {"numpy": "numpy", "pandas": "pandas"}
# What "auto" may choose: never pickle, whose files run code when loaded.
AUTO_SAFE = frozenset({"json", "text", "bytes", "numpy", "pandas"})


def register(codec: Codec) -> None:
    """Add a format of your own, usable as `Stage.wrap(format=codec.name)`.

    Its name becomes part of the keys of every stage that uses it. Registering a different codec under a name
    that is taken is an error; registering the same object again is not.
    """
    if isinstance(codec, type):
        raise ConfigError(
            f"codecs.register() takes a codec, not its class: pass {codec.__name__}(), not {codec.__name__}"
        )
    name = getattr(codec, "name", None)
    extension = getattr(codec, "extension", None)
    if not isinstance(name, str) or not name or name == AUTO:
        raise ConfigError(f"a codec needs a non-empty str `name` other than 'auto', got {name!r}")
    if not isinstance(extension, str) or not extension.isalnum() or extension == "meta":
        raise ConfigError(f"codec '{name}' needs an `extension` of letters and digits, got {extension!r}")
    for method in ("can_store", "write", "read"):
        if not callable(getattr(codec, method, None)):
            raise ConfigError(f"codec '{name}' has no {method}() method; see chkpt.codecs.Codec")
    existing = _registry.get(name)
    if existing is not None and existing is not codec:
        raise ConfigError(f"a codec named '{name}' is registered already")
    if name in _optional and existing is None:
        raise ConfigError(f"the name '{name}' belongs to chkpt's optional {name} codec")
    _registry[name] = codec


def get(name: str) -> Codec:
    """The codec called `name`, importing an optional one's library on first use."""
    codec = _registry.get(name)
    if codec is not None:
        return codec
    if name in _optional:
        _registry[name] = codec = _load_optional(name)
        return codec
    known = sorted([*_registry, *_optional, AUTO])
    raise ConfigError(f"unknown format {name!r}; the formats are {known}, or one you register()")


def _load_optional(name: str) -> Codec:
    try:
        if name == "numpy":
            from .numpy_codec import NumpyCodec

            return NumpyCodec()
        from .pandas_codec import PandasCodec

        return PandasCodec()
    except ImportError as exc:
        raise ChkptError(
            f"format '{name}' needs {exc.name or name}, which is not installed: pip install chkpt[{name}]"
        ) from None


def for_value(value: Any) -> Codec:
    """The codec "auto" uses for `value`, by its type; never pickle."""
    kind = type(value)
    module = kind.__module__.partition(".")[0]
    if module == "numpy" and kind.__name__ in ("ndarray", "memmap"):
        return get("numpy")
    if module == "pandas" and kind.__name__ == "DataFrame":
        return get("pandas")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _registry["bytes"]
    if isinstance(value, str):
        return _registry["text"]
    if JSON.can_store(value):
        return JSON
    raise SerializationError(
        f"format 'auto' has no safe codec for a value of type {kind.__name__}; choose one, for example "
        "format='pickle' (which runs code when loaded)"
    )


def names() -> list[str]:
    """Every format name a stage may use."""
    return sorted({*_registry, *_optional, AUTO})
