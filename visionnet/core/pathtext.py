"""The text form of a file path: what every job, store and API sees instead of OS bytes.

Linux file names are bytes. Python gives the bytes that are not UTF-8 as lone
surrogates (``surrogateescape``), which no UTF-8 encoder accepts: pymilvus
refuses such a path for a VARCHAR field, and so do JSON-over-UTF-8 and Redis
clients. So a path leaves the filesystem side in a reversible text form:

- each byte that is not part of valid UTF-8 is written ``\\xNN`` (two lower-case
  hex digits), so ``b"/p/\\xff.png"`` is the text ``/p/\\xff.png``;
- each literal backslash is doubled, so ``\\xff`` typed in a real name is told
  apart from the byte: ``/p/a\\b.png`` becomes ``/p/a\\\\b.png``;
- everything else is unchanged: a UTF-8 name without a backslash is its own
  text form.

``to_os`` inverts ``to_text`` exactly. It is applied once, right before the
filesystem is touched (the reader, the thumbnailer, the web's path checks).
"""

from __future__ import annotations

import re

# In the text form: a doubled backslash, or an escaped byte.
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def to_text(os_path: str) -> str:
    """The text form of a path as ``os`` functions give it (``surrogateescape``)."""
    if "\\" not in os_path and not _has_surrogates(os_path):
        return os_path  # the common case: nothing to escape
    out: list[str] = []
    for ch in os_path:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            # Not from surrogateescape (a str built by hand): its UTF-8 bytes, escaped.
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return "".join(out)


def to_os(text: str) -> str:
    """The path ``os`` functions take (undecodable bytes as lone surrogates again)."""
    if "\\" not in text:
        return text

    def undo(match: re.Match[str]) -> str:
        token = match.group(1)
        if token == "\\":
            return "\\"
        return os_byte(int(token[1:], 16))

    return _ESCAPE.sub(undo, text)


def os_byte(value: int) -> str:
    """One byte of a name as the OS str form holds it."""
    return chr(value) if value < 0x80 else chr(0xDC00 + value)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
