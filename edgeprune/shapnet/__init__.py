"""ShapNets (Wang et al., ICLR 2021): networks whose forward pass returns the prediction and its
Shapley values. Plain PyTorch models (:mod:`.modules`, :mod:`.models`), training with explanation
regularisers (:mod:`.training`), checkpoints (:mod:`.checkpoint`)."""

from edgeprune.shapnet.models import (
    DeepShapNet,
    ShallowShapNet,
    butterfly_groups,
    covering_active_sets,
)
from edgeprune.shapnet.modules import (
    ShapleyModule,
    ShapNetError,
    coalition_masks,
    shapley_mixing_weights,
)

__all__ = ["DeepShapNet", "ShallowShapNet", "ShapNetError", "ShapleyModule", "butterfly_groups",
           "coalition_masks", "covering_active_sets", "shapley_mixing_weights"]
