"""The dataset reader contract: a class registered in ``mtpkdot.registry.DATASETS`` under its ``name``.

A reader turns ``data.root`` (or a manifest) into the manifest ``prepare`` reads, and declares what the
rest of the library must know about its dataset, so that a new reader needs no edit anywhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pandas as pd


class Reader:
    """Base of the registered dataset readers; subclasses set the class attributes and ``read``."""

    name: ClassVar[str]
    # the named tasks (``mtpkdot.tasks.TASKS``) this dataset has; None: none, the store counts the
    # classes from the labels unless ``data.task`` is an explicit "classification:<n>" / "regression:..."
    tasks: ClassVar[tuple[str, ...] | None] = None
    # filmed by a fixed camera: a sample whose video shows no face borrows its subject's usual face box
    fixed_camera: ClassVar[bool] = False

    @staticmethod
    def read(data_cfg: Any) -> pd.DataFrame:
        """The manifest of ``data_cfg``'s dataset (checked by ``mtpkdot.data.manifest.check_manifest``)."""
        raise NotImplementedError
