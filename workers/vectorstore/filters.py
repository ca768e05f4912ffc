"""Search filters as Milvus boolean expressions, built from validated values only.

User text reaches an expression only as a string literal, escaped here, so a
quote cannot end the literal. A path prefix is a range of strings, not a
``like`` pattern: the two stores disagree on ``like`` (Milvus Lite reads ``_``
as a wildcard and needs it escaped; the 2.3 server reads it literally and
refuses the escape), while ``>=``/``<`` on a VARCHAR compare the same in both
(measured on both; see tests/test_manage_images.py). A backslash reaches a
prefix only as the text form of paths writes it (``\\\\`` or ``\\xNN``, checked by
the request model) and is escaped in the literal like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class FilterError(ValueError):
    """A filter the collection cannot answer (it lacks the field)."""


# Filter name -> (field, operator).
_RANGES = {
    "min_width": ("width", ">="),
    "max_width": ("width", "<="),
    "min_height": ("height", ">="),
    "max_height": ("height", "<="),
    "indexed_after": ("indexed_at", ">="),
    "indexed_before": ("indexed_at", "<"),
}


def string_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prefix_range(field: str, prefix: str) -> str:
    """Rows whose ``field`` starts with ``prefix``: ``prefix <= value < next(prefix)``.

    ``next`` raises the last character by one: the first string after every
    string that starts with ``prefix`` (UTF-8 byte order is code point order).
    """
    if not prefix:
        return ""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0x10FFFF else ""
    lower = f"{field} >= {string_literal(prefix)}"
    return f"{lower} and {field} < {string_literal(upper)}" if upper else lower


def expression(filters: Mapping[str, Any], fields: Iterable[str]) -> str:
    """One ``and`` of every filter given; "" for none."""
    known = set(fields)
    parts: list[str] = []

    def need(field: str, name: str) -> None:
        if field not in known:
            raise FilterError(
                f"this collection was made before VisionNet stored {field!r}, so it cannot "
                f"filter by {name}: index the images into a new collection"
            )

    for name, value in filters.items():
        if name == "path_prefix":
            parts.append(prefix_range("path", str(value)))
        elif name == "label":
            need("label", name)
            parts.append(f"label == {string_literal(str(value))}")
        elif name in _RANGES:
            field, op = _RANGES[name]
            need(field, name)
            parts.append(f"{field} {op} {int(value)}")
        else:
            raise FilterError(f"unknown filter {name!r}")
    return " and ".join(parts)
