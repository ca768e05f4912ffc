"""The text form of paths (visionnet.core.pathtext): reversible, always strict UTF-8."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from visionnet.core.pathtext import to_os, to_text


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes_name_round_trips_through_utf8_text(name: bytes) -> None:
    os_form = os.fsdecode(name)
    text = to_text(os_form)
    text.encode("utf-8")  # strict: never raises
    assert to_os(text) == os_form
    assert os.fsencode(to_os(text)) == name


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_utf8_names_without_backslash_are_their_own_text_form(name: str) -> None:
    plain = name.replace("\\", "")
    assert to_text(plain) == plain
    assert to_os(plain) == plain


def test_the_documented_form() -> None:
    assert to_text(os.fsdecode(b"/p/\xff\xfe.png")) == "/p/\\xff\\xfe.png"
    assert to_text("/p/a\\b.png") == "/p/a\\\\b.png"
    assert to_text("/p/a\\xff.png") == "/p/a\\\\xff.png"  # typed, not a byte
    assert to_os("/p/a\\\\xff.png") == "/p/a\\xff.png"
    assert to_text("/p/été.png") == "/p/été.png"
