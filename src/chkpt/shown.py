"""How chkpt shows a user's value in a message, a graph's label or a record: its repr, cut short.

A repr can fail where the value is fine (an int of over 4,300 digits, past `sys.set_int_max_str_digits`), and a
message about a value must not fail because of it.
"""

from __future__ import annotations


def short_repr(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters with "..." at the end."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for str()
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
