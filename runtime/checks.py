"""One-line bundle errors and the checks that raise them (standard library + numpy only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import EdgepruneError

REEXPORT = "the bundle is corrupted — re-export it with `edgeprune compress`"

__all__ = ["REEXPORT", "BundleError", "Checker"]


class BundleError(EdgepruneError):
    """A bundle that cannot be used; the message is one line: file, field, problem and fix."""


class Checker:
    """Raises :class:`BundleError` in the ``"<file>: <field> <problem>; <fix>"`` format."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, problem: str, fix: str = REEXPORT) -> BundleError:
        text = f"{self.source}: {field} {problem}; {fix}"
        return BundleError(" ".join(text.split()))

    # -- meta values ------------------------------------------------------------------------
    def integer(
        self,
        value: Any,
        field: str,
        minimum: int,
        maximum: int | None = None,
        bound_name: str = "",
    ) -> int:
        """An int in ``[minimum, maximum]``; ``bound_name`` names the limit constant, if any."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(field, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            where = f" (edgeprune.runtime.limits.{bound_name})" if bound_name else ""
            raise self.fail(field, f"is {value}, over the bound of {maximum}{where}")
        return value

    # -- arrays -----------------------------------------------------------------------------
    def array(
        self,
        arrays: dict[str, np.ndarray],
        name: str,
        dtype: np.dtype,
        length: int | None = None,
    ) -> np.ndarray:
        """Fetch a 1-D array with exactly ``dtype`` (and ``length`` when given)."""
        if name not in arrays:
            raise self.fail(name, "is missing")
        arr = arrays[name]
        if not isinstance(arr, np.ndarray):
            raise self.fail(name, f"is not an array ({type(arr).__name__})")
        self.declared(name, arr.dtype, arr.shape, dtype, length)
        return arr

    def declared(
        self,
        name: str,
        got: np.dtype,
        shape: tuple[int, ...],
        dtype: np.dtype,
        length: int | None = None,
        at_most: bool = False,
    ) -> None:
        """A 1-D ``dtype`` array of ``length`` (or at most ``length``): checks a dtype and shape,
        as read from an array or declared by its ``.npy`` header before it is read."""
        if got.hasobject:
            raise self.fail(name, "is an object array, which is refused")
        if got != dtype:
            text = str(got) if got.isnative else f"{got.str} (non-native byte order)"
            raise self.fail(name, f"has dtype {text}, expected {dtype}")
        if len(shape) != 1:
            raise self.fail(name, f"must be 1-D, got shape {shape}")
        if length is not None and (shape[0] > length if at_most else shape[0] != length):
            expected = f"at most {length}" if at_most else f"{length}"
            raise self.fail(name, f"has length {shape[0]}, expected {expected}")

    def none_of(self, bad: np.ndarray, name: str, problem: Callable[[int], str]) -> None:
        """Raise ``problem(position)`` for the first True of ``bad``, if any."""
        if bad.any():
            raise self.fail(name, problem(int(np.argmax(bad))))

    def finite(self, arr: np.ndarray, name: str) -> None:
        bad = ~np.isfinite(arr)
        if bad.any():
            pos = int(np.argmax(bad))
            raise self.fail(name, f"holds a non-finite value ({arr[pos]}) at position {pos}")

    def index_map(
        self, arr: np.ndarray, name: str, bound: int, bound_name: str, increasing: bool
    ) -> None:
        """Indices in ``[0, bound)``; strictly increasing or merely unique."""
        if arr.size == 0:
            return
        low = arr < 0
        if low.any():
            pos = int(np.argmax(low))
            raise self.fail(name, f"has negative index {arr[pos]} at position {pos}")
        high = arr >= bound
        if high.any():
            pos = int(np.argmax(high))
            raise self.fail(
                name, f"has index {arr[pos]} at position {pos} outside [0, {bound_name}={bound})"
            )
        if increasing:
            steps = np.diff(arr) <= 0
            if steps.any():
                pos = int(np.argmax(steps)) + 1
                raise self.fail(name, f"is not strictly increasing (position {pos})")
        elif np.unique(arr).shape[0] != arr.shape[0]:
            raise self.fail(name, "holds duplicate indices")
