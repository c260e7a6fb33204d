"""User-facing errors: :class:`EdgepruneError` and :func:`first_line` (defined in the runtime,
which a board imports alone; see :mod:`edgeprune.runtime.errors`)."""

from edgeprune.runtime.errors import EdgepruneError, first_line

__all__ = ["EdgepruneError", "first_line"]
