"""Pruning strategies of the neuron game (Stier et al. 2018, Table 1): which units to remove.

Every strategy is a spec ``name:param``:

- ``svbottom:k``    the k units with the smallest Shapley value;
- ``svbottom-p:p``  every unit with ``phi(i) < p * scale / n`` (n = units left): below p times
                    the share each unit would have if the value were spread uniformly;
- ``svbucket:p``    the largest set of smallest-valued units whose values sum to less than
                    ``p * scale`` (units sorted ascending; the longest prefix with sum < p);
- ``random:k``      k units drawn uniformly at random;
- ``wbottom:k``     the k units with the smallest norm of their incoming weights,
                    ``sqrt(sum_j w_ij^2)`` over the active links of the unit.

``scale`` is 1 when Shapley values are already fractions (the accuracy game, the paper's
setting) and ``|v(all)|`` otherwise, so p is read as a fraction of the total value (see
:func:`edgeprune.prune.neuron_walk.shapley_scale`). When no unit meets its criterion,
svbottom-p and svbucket take the unit with the smallest value, as in the paper (and Leon's
method it cites); every strategy therefore picks at least one unit. Ties in a value are broken by
the lower unit index. A selection may cover every unit; the walk then stops. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeprune.network import ModelError

#: Strategy name -> (parameter kind, example).
STRATEGIES = {
    "svbottom": ("k", "svbottom:1"),
    "svbottom-p": ("p", "svbottom-p:0.5"),
    "svbucket": ("p", "svbucket:0.2"),
    "random": ("k", "random:1"),
    "wbottom": ("k", "wbottom:1"),
}
_ALIASES = {"svbottomp": "svbottom-p", "svbottom_p": "svbottom-p", "sv-bottom-p": "svbottom-p",
            "sv-bucket": "svbucket", "sv-bottom": "svbottom", "w-bottom": "wbottom"}


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy: ``name`` from :data:`STRATEGIES` and its parameter (k or p)."""

    name: str
    param: float

    @property
    def uses_shapley(self) -> bool:
        return self.name.startswith("sv")

    @property
    def spec(self) -> str:
        if STRATEGIES[self.name][0] == "k":
            return f"{self.name}:{int(self.param)}"
        return f"{self.name}:{self.param:g}"

    def __str__(self) -> str:
        return self.spec


def parse_strategy(spec: str | Strategy) -> Strategy:
    """``"svbucket:0.2"`` -> Strategy("svbucket", 0.2); one-line errors name ``--strategy``."""
    if isinstance(spec, Strategy):
        return spec
    examples = ", ".join(ex for _, ex in STRATEGIES.values())
    if not isinstance(spec, str) or ":" not in spec:
        raise ModelError(f"--strategy {spec!r}: expected NAME:VALUE, one of {examples}")
    name, _, value = spec.strip().partition(":")
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in STRATEGIES:
        raise ModelError(f"--strategy {spec!r}: unknown strategy {name!r}; use one of {examples}")
    kind = STRATEGIES[name][0]
    try:
        param = float(value)
    except ValueError:
        raise ModelError(f"--strategy {spec!r}: {value!r} is not a number") from None
    if kind == "k" and (param != int(param) or param < 1):
        raise ModelError(f"--strategy {spec!r}: k must be a positive integer, e.g. {name}:1")
    if kind == "p" and not (np.isfinite(param) and param > 0):
        raise ModelError(f"--strategy {spec!r}: p must be a positive number, e.g. "
                         f"{STRATEGIES[name][1]}")
    return Strategy(name, float(int(param)) if kind == "k" else param)


def ascending(values: np.ndarray) -> np.ndarray:
    """Indices that sort ``values`` ascending, ties by the lower index (stable)."""
    return np.argsort(np.asarray(values, dtype=np.float64), kind="stable")


def svbottom(phi: np.ndarray, k: int) -> np.ndarray:
    """The k units with the smallest Shapley values."""
    return np.sort(ascending(phi)[:max(1, int(k))])


def svbottom_p(phi: np.ndarray, p: float, scale: float = 1.0) -> np.ndarray:
    """Units with ``phi(i) < p * scale / n``; the smallest one when none is below."""
    phi = np.asarray(phi, dtype=np.float64)
    chosen = np.flatnonzero(phi < p * scale / len(phi))
    return chosen if len(chosen) else ascending(phi)[:1]


def svbucket(phi: np.ndarray, p: float, scale: float = 1.0) -> np.ndarray:
    """The longest prefix of the ascending values whose sum stays below ``p * scale``; the
    smallest unit when even that one does not fit."""
    order = ascending(phi)
    csum = np.cumsum(np.asarray(phi, dtype=np.float64)[order])
    fits = np.flatnonzero(csum < p * scale)
    n_take = int(fits[-1]) + 1 if len(fits) else 1
    return np.sort(order[:n_take])


def random_units(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k units drawn uniformly without replacement."""
    return np.sort(rng.choice(n, size=min(int(k), n), replace=False))


def wbottom(norms: np.ndarray, k: int) -> np.ndarray:
    """The k units with the smallest incoming-weight norm."""
    return np.sort(ascending(norms)[:max(1, int(k))])


def incoming_norms(weight: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``norm(n) = sqrt(sum_j w_jn^2)`` over the active incoming links of every unit (row)."""
    w = np.asarray(weight, dtype=np.float64)
    if mask is not None:
        w = np.where(mask, w, 0.0)
    return np.sqrt(np.sum(w * w, axis=1))


def select_units(strategy: Strategy | str, phi: np.ndarray | None = None, *,
                 norms: np.ndarray | None = None, scale: float = 1.0,
                 rng: np.random.Generator | None = None, n: int | None = None) -> np.ndarray:
    """The (sorted, 0-based) units ``strategy`` removes. ``phi``: Shapley values (needed by the
    sv* strategies), ``norms``: incoming weight norms (wbottom), ``rng``: for random, ``n``:
    the number of units when neither array is given."""
    s = parse_strategy(strategy)
    if s.uses_shapley and phi is None:
        raise ModelError(f"--strategy {s}: needs Shapley values")
    if s.name == "svbottom":
        return svbottom(phi, int(s.param))
    if s.name == "svbottom-p":
        return svbottom_p(phi, s.param, scale)
    if s.name == "svbucket":
        return svbucket(phi, s.param, scale)
    if s.name == "wbottom":
        if norms is None:
            raise ModelError(f"--strategy {s}: needs the units' weight norms")
        return wbottom(norms, int(s.param))
    size = n if n is not None else len(phi if phi is not None else norms)
    return random_units(size, int(s.param), rng if rng is not None else np.random.default_rng())
