"""The one base class of user-facing errors (standard library only).

It lives in the runtime because a board imports only ``edgeprune.runtime``; the host side
imports it as :mod:`edgeprune.errors`.

Every problem a user can fix — a bad option, file, data set or bundle — is raised as a subclass
of :class:`EdgepruneError` with a one-line message naming the option, file or field and the fix.
The CLI renders exactly these as ``Error: <message>``; any other exception is a bug and is
reported as one ("unexpected ..., please report it"). ``EdgepruneError`` subclasses
``ValueError`` so callers that caught ``ValueError`` before keep working.
"""

from __future__ import annotations

__all__ = ["EdgepruneError", "first_line"]


class EdgepruneError(ValueError):
    """A one-line, user-facing problem: what is wrong, where, and how to fix it."""


def first_line(exc: BaseException | str) -> str:
    """The first non-empty line of an exception's message (libraries raise multi-line ones),
    or the exception's type name when it has no message."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0].strip()
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
