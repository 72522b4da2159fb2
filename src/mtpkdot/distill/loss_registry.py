"""The registered losses (``LOSSES``) and :func:`build_loss`, which builds one by name.

A loss class (``SinkhornLoss``, ``RelationalOTLoss``) is built with the given options; a loss function
gets them bound, so either way the result is called as ``loss(student, teacher)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mtpkdot.distill.losses import (
    alignment_loss,
    ccc_loss,
    centroid_loss,
    cosine_loss,
    kl_loss,
    mse_loss,
)
from mtpkdot.distill.ot import RelationalOTLoss, SinkhornLoss
from mtpkdot.registry import LOSSES

for _name, _obj in (
    ("sinkhorn", SinkhornLoss),
    ("relational_ot", RelationalOTLoss),
    ("centroid", centroid_loss),
    ("ccc", ccc_loss),
    ("alignment", alignment_loss),
    ("cosine", cosine_loss),
    ("mse", mse_loss),
    ("kl", kl_loss),
):
    LOSSES.register(_name)(_obj)


def build_loss(name: str, **kwargs: Any) -> Callable[..., Any]:
    """The registered loss ``name`` with options ``kwargs``, called as ``loss(student, teacher)``."""
    entry = LOSSES.get(name)
    if isinstance(entry, type):
        return entry(**kwargs)
    return functools.partial(entry, **kwargs)
