from __future__ import annotations

import pytest

from mtpkdot.registry import Registry


def test_register_and_get() -> None:
    reg = Registry("thing")

    @reg.register("a")
    class A:
        """An A."""

    assert reg.get("a") is A and "a" in reg and reg.names() == ["a"]


def test_unknown_name_lists_known_names() -> None:
    reg = Registry("method")
    reg.register("pkdot")(object)
    with pytest.raises(KeyError, match="unknown method 'pkdt'.*pkdot"):
        reg.get("pkdt")


def test_duplicate_name_is_refused() -> None:
    reg = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(str)
