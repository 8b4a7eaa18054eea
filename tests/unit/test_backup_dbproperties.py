"""Reading back a stored list setting, element by element, as ALTER DATABASE ... SET needs it."""

from __future__ import annotations

import pytest

from guard.backup.dbproperties import split_list


@pytest.mark.parametrize(
    ("stored", "elements"),
    [
        ('"$user", public', ["$user", "public"]),
        ("public", ["public"]),
        ('"odd, name", x', ["odd, name", "x"]),
        ('"say ""hi""", b', ['say "hi"', "b"]),
        ("a,b ,  c", ["a", "b", "c"]),
    ],
)
def test_a_stored_list_setting_splits_into_its_elements(stored: str, elements: list[str]) -> None:
    assert split_list(stored) == elements
