"""A canonical byte encoding of plain values, so that equal values always hash to the same key part.

`repr` and `pickle` are not canonical (a set's order, a dict's insertion order, memory addresses), so keys are
made from this encoding instead. It covers what a constant input, a bound parameter or a module constant
usually is: None, bools, numbers, strings, bytes, the built-in containers of them, enums, paths, dates,
decimals and dataclass instances. Anything else raises `Unhashable`, and the caller says what to do instead.
"""

from __future__ import annotations

import hashlib

from .modules import module_identity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Unhashable(Exception):
    """Raised when a value has no canonical encoding. Callers turn it into a user-facing ChkptError."""


def digest(value: Any) -> bytes:
    """The sha256 of the canonical encoding of `value`."""
    parts: list[bytes] = []
    try:
        _encode(value, parts, set())
    except RecursionError:
        raise Unhashable(f"{type(value).__name__} value is nested too deeply") from None
    return hashlib.sha256(b"".join(parts)).digest()


def is_simple(value: Any) -> bool:
    """Whether `value` is made only of None, bools, numbers, strings, bytes and tuples or frozensets of them:
    the module constants that a code fingerprint records by value."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(is_simple(item) for item in value)
    return False


def _tagged(tag: bytes, text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return tag + str(len(data)).encode() + b":" + data


def _scalar(value: Any) -> bytes | None:
    kind = type(value)
    if value is None:
        return b"N"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        # str() refuses ints of over 4,300 digits (sys.set_int_max_str_digits); hex has no limit
        return _tagged(b"i", str(value)) if value.bit_length() < 14_000 else _tagged(b"I", format(value, "x"))
    if kind is float:
        return _tagged(b"f", value.hex())
    if kind is str:
        return _tagged(b"s", value)
    if kind is bytes or kind is bytearray:
        return b"b" + str(len(value)).encode() + b":" + bytes(value)
    if kind is complex:
        return _tagged(b"c", f"{value.real.hex()},{value.imag.hex()}")
    return None


def _encode(value: Any, out: list[bytes], active: set[int]) -> None:
    scalar = _scalar(value)
    if scalar is not None:
        out.append(scalar)
        return
    if id(value) in active:
        raise Unhashable(f"{type(value).__name__} value contains itself")
    active.add(id(value))
    try:
        _encode_compound(value, out, active)
    finally:
        active.discard(id(value))


def _encode_items(tag: bytes, items: list[bytes], out: list[bytes]) -> None:
    out.append(tag + str(len(items)).encode() + b"[")
    out.extend(items)
    out.append(b"]")


def _encoded(value: Any, active: set[int]) -> bytes:
    parts: list[bytes] = []
    _encode(value, parts, active)
    return b"".join(parts)


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{module_identity(kind.__module__)}.{kind.__qualname__}"


def _encode_compound(value: Any, out: list[bytes], active: set[int]) -> None:
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        tag = b"L" if type(value) is list else b"U"
        out.append(tag + str(len(value)).encode() + b"[")
        for item in value:
            _encode(item, out, active)
        out.append(b"]")
        return
    if type(value) in (set, frozenset):
        _encode_items(b"S", sorted(_encoded(item, active) for item in value), out)
        return
    if type(value) is dict:
        pairs = sorted(_encoded(k, active) + _encoded(v, active) for k, v in value.items())
        _encode_items(b"D", pairs, out)
        return
    for kind, encode in _special_encoders():
        if isinstance(value, kind):
            out.append(_tagged(b"O", _type_name(value)))
            _encode(encode(value), out, active)
            return
    fields = getattr(type(value), "__dataclass_fields__", None)
    if fields is not None and not isinstance(value, type):
        out.append(_tagged(b"O", _type_name(value)))
        _encode({name: getattr(value, name) for name in fields}, out, active)
        return
    raise Unhashable(f"no canonical form for a value of type {_type_name(value)}")


_special: list[tuple[type, Callable[[Any], Any]]] = []


def _special_encoders() -> list[tuple[type, Callable[[Any], Any]]]:
    """Types from the standard library with an obvious canonical form, imported only when a value needs them."""
    if not _special:
        _special.extend(_load_special_encoders())
    return _special


def _load_special_encoders() -> list[tuple[type, Callable[[Any], Any]]]:
    import datetime
    import decimal
    import enum
    import fractions
    import pathlib

    return [
        (enum.Enum, _enum_member),
        (pathlib.PurePath, lambda v: v.as_posix()),
        (datetime.datetime, lambda v: v.isoformat()),
        (datetime.date, lambda v: v.isoformat()),
        (datetime.time, lambda v: v.isoformat()),
        (datetime.timedelta, lambda v: (v.days, v.seconds, v.microseconds)),
        (decimal.Decimal, str),
        (fractions.Fraction, lambda v: (v.numerator, v.denominator)),
        (range, lambda v: (v.start, v.stop, v.step)),
        # A subclass of a built-in container or scalar: its type name (already written) plus the base value.
        (dict, dict),
        (list, list),
        (tuple, tuple),
        (str, str),
        (int, int),
        (float, float),
    ]


def _enum_member(member: Any) -> Any:
    """An enum member by its name and, where it has one, its value's canonical form: editing `FAST = 1` to
    `FAST = 7` changes what the member means."""
    return (member.name, member.value) if is_simple(member.value) else member.name
