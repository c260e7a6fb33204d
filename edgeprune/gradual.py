"""Gradual link pruning (``compress --steps N``): prune towards eta in N steps of a polynomial
schedule (:func:`edgeprune.prune.rules.polynomial_schedule`, as TF Model Optimization), each
step re-scoring the *current* pruned network and fine-tuning it before the next.

The fine-tune budget is shared, not added: each of the first N - 1 steps gets
``finetune_epochs // N`` epochs and the final fine-tune after the last step gets the rest, so
``--steps N`` trains exactly as many epochs as ``--steps 1``. Links pruned at one step stay
pruned (the solver only ranks active links).
"""

from __future__ import annotations

from collections.abc import Callable

from edgeprune.network import Network
from edgeprune.prune import PruneResult, prune_network
from edgeprune.prune.rules import polynomial_schedule


def gradual_prune(net: Network, ds, opts, score: Callable, finetune: Callable,
                  evaluate: Callable, adjust: Callable | None = None,
                  ) -> tuple[PruneResult, dict | None, list[dict], int]:
    """Run the schedule; returns the last step's result, its scoring summary, one record per
    step (target and achieved eta, epochs, test metrics) and the epochs left for the final
    fine-tune. ``score(net) -> (scores, summary)``, ``finetune(net, epochs) -> net``,
    ``evaluate(net) -> dict``; ``adjust(net_before, result) -> result`` (optional) runs on
    each step's pruned result before its fine-tune (``--compensate``)."""
    targets = polynomial_schedule(opts.sparsity, opts.steps)
    per_step = opts.finetune_epochs // opts.steps
    work, log = net, []
    for k, eta in enumerate(targets, start=1):
        scores, scoring = score(work)
        result = prune_network(work, scores, sparsity=eta,
                               allocation=getattr(opts, "allocation", "layer"))
        if adjust is not None:
            result = adjust(work, result)
        last = k == len(targets)
        epochs = 0 if last else per_step
        work = finetune(result.network, epochs) if epochs else result.network
        log.append({"step": k, "target_sparsity": round(eta, 6),
                    "sparsity": round(result.network.sparsity, 6), "finetune_epochs": epochs,
                    "metrics": evaluate(work)})
    return result, scoring, log, opts.finetune_epochs - per_step * (len(targets) - 1)
