"""Fill the registries: the built-in entries and those of installed third-party packages.

Every entry registers itself when its module is imported (``@METHODS.register()``, ...). :func:`load`
imports the built-in registering packages and then every entry point of group ``mtpkdot.plugins``, so
a package adds methods, losses, backbones, fusions or dataset readers by declaring, in its own
``pyproject.toml``::

    [project.entry-points."mtpkdot.plugins"]
    mypkg = "mypkg.mtpkdot_entries"            # a module: imported
    # mypkg = "mypkg.entries:register"         # or a function: imported and called

The CLI and the Python API call :func:`load` before they look a name up. This module sits above every
package that registers (it imports them), so nothing of the library imports it except those two.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

GROUP = "mtpkdot.plugins"

# the packages whose modules register the built-in entries (imported here, not found through the
# installed metadata, so a source checkout on sys.path works too)
BUILTIN = ("mtpkdot.data", "mtpkdot.distill", "mtpkdot.models")

_loaded: set[str] = set()  # entry point values already loaded: a register function runs once


def load_builtin() -> None:
    """Import the packages that register the built-in entries."""
    for module in BUILTIN:
        importlib.import_module(module)


def load() -> None:
    """Fill every registry: the built-in entries, then each entry point of group ``mtpkdot.plugins``
    (a module is imported, a ``module:function`` is called once). A plugin that fails to load raises
    an ``ImportError`` naming it."""
    load_builtin()
    for ep in entry_points(group=GROUP):
        if ep.value not in _loaded:
            _load_entry_point(ep)
            _loaded.add(ep.value)


def _load_entry_point(ep: EntryPoint) -> None:
    try:
        obj = ep.load()
        if ep.attr:  # "module:function": the function registers
            obj()
    except Exception as exc:
        dist = f" of {ep.dist.name}" if ep.dist is not None else ""
        raise ImportError(f"mtpkdot plugin {ep.name!r}{dist} ({ep.value}) failed to load: {exc}") from exc
