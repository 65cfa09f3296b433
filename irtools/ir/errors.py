"""One error hierarchy: everything a user can cause is an :class:`IrtoolsError` whose text
is one line (the CLI prints it and exits with status 2)."""

from __future__ import annotations

import contextlib


class IrtoolsError(Exception):
    """Base of every error irtools raises for bad input (a model, a file, a dim, a target)."""


class CaptureError(IrtoolsError):
    """A model or file could not be captured into the IR."""


class ExportError(IrtoolsError):
    """A report could not be written in the requested format."""


class UsageError(IrtoolsError, ValueError):
    """Bad command-line or API arguments."""


class LimitError(CaptureError):
    """An input exceeds a bound irtools sets to stay fast and safe (sizes, ranks, counts)."""


@contextlib.contextmanager
def user_code(what: str, error: type[IrtoolsError] = CaptureError):
    """Run a user's code (importing a module, building it, its forward): a ``SystemExit`` it
    raises becomes one line (exit status 2), never the process's own exit status."""
    try:
        yield
    except SystemExit as exc:
        raise error(f"{what} called exit({exc.code!r}); a model must not exit the process") from None
