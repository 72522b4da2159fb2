"""What the commands share: the options several commands take (one definition, one help text each),
the one-line error path for expected failures, and comma-separated option values."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer

from mtpkdot.errors import STORAGE_ERRNOS, USER_ERROR_EXIT, UserError, describe_os_error, os_error_in

T = TypeVar("T")


def set_option() -> Any:
    """``--set KEY=VALUE`` (repeatable): a dotted config override."""
    return typer.Option([], "--set", help="override a config key, dotted: --set student.lr=1e-4 (repeatable)")


def out_option(default: Path | None = None) -> Any:
    """``--out DIR``: the run directory (resumed when it exists); without ``default``, the run
    directory of the config's name."""
    return typer.Option(
        default,
        "--out",
        help="run directory; an existing one resumes",
        show_default=True if default is not None else "runs/<config name>",
    )


def device_option() -> Any:
    """``--device``: where training runs."""
    return typer.Option(None, "--device", help="auto | cpu | cuda (default: the config's device)")


def wait_option(what: str) -> Any:
    """``--wait``: wait for the process that holds ``what`` instead of stopping."""
    return typer.Option(
        False, "--wait", help=f"when another process is working on {what}, wait for it instead of stopping"
    )


# Usage errors and exits of the CLI framework, taken from typer itself: recent typer versions carry their
# own copy of click (no click package need be installed), older ones use click's classes.
_CLI_EXITS = (
    typer.Exit,
    typer.Abort,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


@contextmanager
def user_errors(code: int = USER_ERROR_EXIT) -> Iterator[None]:
    """Show an expected failure as one ``error: ...`` line and exit with ``code``; ``MTPKDOT_DEBUG=1``
    shows the traceback instead.

    Expected: a :class:`~mtpkdot.errors.UserError` (bad config or data, a run directory that does
    not match, an unreadable checkpoint, a missing device), the ValueErrors and KeyErrors that
    validation raises, and any error caused by the operating system refusing a file (a full disk, a
    size limit, a read-only or forbidden folder), wherever it happens. Anything else is a bug and
    keeps its traceback."""
    try:
        yield
    except _CLI_EXITS:
        raise  # usage errors and exits: the CLI framework prints them already
    except Exception as exc:
        message = _user_message(exc)
        if message is None or os.environ.get("MTPKDOT_DEBUG"):
            raise
        typer.echo(f"error: {message}", err=True)
        typer.echo("(set MTPKDOT_DEBUG=1 to see the traceback)", err=True)
        raise typer.Exit(code) from None


def _user_message(exc: Exception) -> str | None:
    """The one line ``exc`` is shown as, or None when it is not an expected failure."""
    if isinstance(exc, OSError):
        return describe_os_error(exc, action="use")
    if isinstance(exc, (UserError, ValueError, KeyError)):
        return str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    cause = os_error_in(exc)
    if cause is not None and cause.errno in STORAGE_ERRNOS:  # e.g. torch's error after a full disk
        return describe_os_error(cause, action="write")
    return None


def comma_list(text: str | None, option: str, item: Callable[[str], T] = str) -> list[T] | None:
    """The items of a comma-separated option value (``--folds 1,2``; spaces ignored), each converted
    with ``item``; ``None`` when the option is absent or empty. A bad item is a usage error naming
    ``option``."""
    if not text:
        return None
    parts = [x for x in text.replace(" ", "").split(",") if x]
    try:
        return [item(x) for x in parts]
    except ValueError:
        kind = {int: "integers", float: "numbers"}.get(item, "values")  # type: ignore[call-overload]
        raise typer.BadParameter(f"{option} must be comma-separated {kind}, got {text!r}") from None


def log_to_stderr() -> None:
    """Show the library's ``logging`` messages (INFO and up) on stderr, once, as ``mtpkdot: ...``."""
    logging.basicConfig(level=logging.INFO, format="mtpkdot: %(message)s")
