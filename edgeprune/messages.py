"""Message helpers shared by the CLI, the exporters, the bench and the runtime (stdlib only, so
:mod:`edgeprune.runtime` may import it)."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty
    (runtimes and parsers raise long multi-line messages; one line is what users see)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
