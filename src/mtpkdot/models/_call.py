"""Calling a registered factory with arguments from a config, with a clear error for a wrong one."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def call_checked(what: str, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)``; an argument it does not take raises a TypeError naming ``what`` and
    the arguments it does take."""
    try:
        return factory(*args, **kwargs)
    except TypeError as exc:
        # Python binds the arguments before the factory's frame exists, so a binding error has only
        # this frame in its traceback; a TypeError raised inside the factory passes unchanged
        if exc.__traceback__ is None or exc.__traceback__.tb_next is not None:
            raise
        params = ", ".join(inspect.signature(factory).parameters)  # for the message only
        raise TypeError(f"{what}: {exc} (it takes: {params})") from None
