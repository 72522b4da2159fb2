"""Shared by the stage-graph tests: which stages a config change invalidates (the resume check)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mtpkdot.engine.checkpoint import ConfigMismatchError
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.graph import stage_names


def _names(ctx: FoldContext, methods: Sequence[str]) -> list[str]:
    return stage_names(ctx.order, list(methods), ctx.cfg.features.crossfit)


def invalidated(
    make_ctx: Callable[[list[str]], FoldContext],
    first: list[str],
    change: list[str],
    methods: Sequence[str],
    methods_after: Sequence[str] | None = None,
) -> set[str]:
    """Start every stage of a fold under overrides ``first`` (``is_done`` writes each stage's config
    section, as a started run does), then return the stages whose stored section no longer matches
    under overrides ``change`` (with ``methods_after`` as the students, default ``methods``)."""
    a = make_ctx(first)
    for name in _names(a, methods):
        assert not a.is_done(name)
    b = make_ctx(change)
    out = set()
    for name in _names(b, methods if methods_after is None else methods_after):
        try:
            b.is_done(name)
        except ConfigMismatchError:
            out.add(name)
    return out
