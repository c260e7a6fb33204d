"""The dead-unit cascade and compaction of a masked Network.

Hidden units are the outputs of layers 1..K-1 (each feeds the next layer). Two rules are applied
repeatedly until nothing changes (a fixed point):

1. A hidden unit with no active *outgoing* link loses its incoming links (the paper's rule, end
   of section 2.3: "the unit should be removed if all links connected from the unit are
   deactivated"). It had no effect on the network's output, so the output is unchanged; only
   the latent code of an autoencoder changes (that unit now reads the constant ``act(b_u)``).
2. A hidden unit with no active *incoming* link emits the constant ``act(b_u)``. Its
   contribution ``W_next[:, u] * act(b_u)`` (active links only) is folded into the next
   layer's bias, then its outgoing links are masked. The output is unchanged.

The fold is exact in order: a unit is folded only once it has no incoming link, and then nothing
can change its bias any more. After the fixed point every hidden unit has both incoming and
outgoing links ("live") or neither ("removed"); if any layer is left without a live unit, every
layer is (the cascade runs both ways), and every output is a constant.

:func:`compact_network` then drops removed units physically and returns a
:class:`~edgeprune.compacted.CompactNetwork`. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeprune.compacted import CompactLayer, CompactNetwork
from edgeprune.network import Layer, Network
from edgeprune.runtime.activations import apply_activation


def _act_const(layer: Layer, units: np.ndarray) -> np.ndarray:
    """``act(b_u)`` of the given units of ``layer`` (float64): what they emit with no input."""
    z = layer.bias[units].astype(np.float64)
    return apply_activation(z, layer.activation, layer.negative_slope)


@dataclass
class CascadeResult:
    """A cascaded network and what the cascade did.

    Layers are numbered 1..K in the reports (as in the paper), unit and feature indices are
    0-based. ``units_kept[k-1]`` counts the units of layer k with at least one incoming link;
    ``removed_units[k-1]`` lists the units of layer k without one (for the last layer these are
    the constant outputs). ``folded_units`` counts hidden units whose constant was folded into
    the next bias (rule 2); ``cut_units`` those that lost their incoming links (rule 1).
    """

    network: Network
    units_kept: list[int]
    links_kept: list[int]
    removed_units: list[list[int]]
    unused_inputs: list[int]
    constant_outputs: dict[int, float]
    folded_units: int = 0
    cut_units: int = 0
    passes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def degenerate(self) -> bool:
        """True when no output depends on the input any more (every link is gone)."""
        return self.units_kept[-1] == 0


def _cascade_in_place(net: Network) -> tuple[int, int, int]:
    """Apply rules 1 and 2 to ``net`` until a fixed point; returns (folded, cut, passes)."""
    layers = net.layers
    folded = cut = passes = 0
    changed = True
    while changed:
        changed = False
        passes += 1
        # Forward order so constants flow downstream within one pass; correctness does not
        # depend on the order (see the module docstring).
        for k in range(len(layers) - 1):
            cur, nxt = layers[k], layers[k + 1]
            has_in = cur.mask.any(axis=1)
            has_out = nxt.mask.any(axis=0)
            # Rule 1: live incoming links but nothing going out -> cut the incoming links.
            cut_units = np.flatnonzero(has_in & ~has_out)
            if cut_units.size:
                cur.mask[cut_units, :] = False
                cut += int(cut_units.size)
                changed = True
            # Rule 2: outgoing links but nothing coming in -> fold act(b_u), cut the outgoing.
            fold_units = np.flatnonzero(~has_in & has_out)
            if fold_units.size:
                const = _act_const(cur, fold_units)  # (n_fold,)
                w = np.where(nxt.mask[:, fold_units], nxt.weight[:, fold_units], 0.0)
                delta = w.astype(np.float64) @ const
                nxt.bias = (nxt.bias.astype(np.float64) + delta).astype(np.float32)
                nxt.mask[:, fold_units] = False
                folded += int(fold_units.size)
                changed = True
    return folded, cut, passes


def fold_logvar_inputs(net: Network) -> int:
    """A VAE's log-variance head reads only units the chain keeps (in place; returns how many
    links it folded): the links from units of layer ``latent - 1`` that have no incoming link
    (dead or cut by the cascade, so emitting ``act(b_u)``) are folded into the head's bias, as
    rule 2 does for the mu head. The head never keeps a trunk unit alive: the deployed path is
    the chain (docs/architecture.md, "VAEs")."""
    head = net.logvar
    if head is None or net.latent is None:
        return 0
    if net.latent == 1:  # the head reads the input: it may not read a feature the chain drops
        unread = ~net.layers[0].mask.any(axis=0)
        cut = int(head.mask[:, unread].sum())
        head.mask[:, unread] = False
        return cut
    prev = net.layers[net.latent - 2]
    dead = np.flatnonzero(~prev.mask.any(axis=1))
    links = head.mask[:, dead]
    if not links.any():
        return 0
    const = _act_const(prev, dead)
    w = np.where(links, head.weight[:, dead], 0.0).astype(np.float64)
    head.bias = (head.bias.astype(np.float64) + w @ const).astype(np.float32)
    head.mask[:, dead] = False
    return int(links.sum())


def cascade_dead_units(net: Network) -> CascadeResult:
    """Run the dead-unit cascade on a copy of ``net`` (masks and biases change; weights stay;
    a VAE's log-variance head then loses its links from removed units, folded)."""
    out = net.copy()
    folded, cut, passes = _cascade_in_place(out)
    fold_logvar_inputs(out)

    units_kept, links_kept, removed = [], [], []
    for layer in out.layers:
        live = layer.mask.any(axis=1)
        units_kept.append(int(live.sum()))
        links_kept.append(layer.n_active)
        removed.append([int(u) for u in np.flatnonzero(~live)])
    unused_inputs = [int(j) for j in np.flatnonzero(~out.layers[0].mask.any(axis=0))]
    last = out.layers[-1]
    dead_out = np.flatnonzero(~last.mask.any(axis=1))
    consts = _act_const(last, dead_out)
    constant_outputs = {int(u): float(c) for u, c in zip(dead_out, consts, strict=True)}
    notes = []
    if net.latent is not None:
        lat_removed = removed[net.latent - 1]
        if lat_removed:
            numbered = ", ".join(str(u + 1) for u in lat_removed)  # text numbers from 1
            notes.append(f"latent units {numbered} (of {net.layers[net.latent - 1].out_dim}, "
                         f"numbered from 1) of layer {net.latent} are constant after pruning; "
                         "encode() emits a constant there")
    return CascadeResult(
        network=out,
        units_kept=units_kept,
        links_kept=links_kept,
        removed_units=removed,
        unused_inputs=unused_inputs,
        constant_outputs=constant_outputs,
        folded_units=folded,
        cut_units=cut,
        passes=passes,
        notes=notes,
    )


def is_fixed_point(net: Network) -> bool:
    """True when every hidden unit of ``net`` has both incoming and outgoing links, or neither."""
    for k in range(len(net.layers) - 1):
        has_in = net.layers[k].mask.any(axis=1)
        has_out = net.layers[k + 1].mask.any(axis=0)
        if np.any(has_in != has_out):
            return False
    return True


def compact_network(net: Network) -> CompactNetwork:
    """Drop dead units physically: the deployable form of a masked network.

    The cascade is run first when ``net`` is not at its fixed point (rule 1 may then change the
    latent code of an autoencoder, never the output). Per layer the rows of live units and the
    columns of live inputs are kept; ``input_index`` lists the input features still read,
    ``output_index`` the outputs still computed and ``output_const`` the value ``act(b)`` of the
    others. If no link is left at all, ``layers`` is empty and every output is a constant.
    """
    if not is_fixed_point(net):
        net = cascade_dead_units(net).network
    if net.logvar is not None:
        net = net.copy()
        fold_logvar_inputs(net)
    layers = net.layers
    n_layers = len(layers)
    live = [layer.mask.any(axis=1) for layer in layers]
    out_dim, in_dim = net.out_dim, net.in_dim
    meta = {"sparsity": net.sparsity, "links": net.n_links, "links_kept": net.n_active}

    latent_layer = net.latent
    latent_dim = layers[net.latent - 1].out_dim if net.latent is not None else None

    def _latent_const() -> np.ndarray | None:
        if net.latent is None:
            return None
        lat = layers[net.latent - 1]
        const = np.zeros(lat.out_dim, dtype=np.float32)
        dead = np.flatnonzero(~live[net.latent - 1])
        const[dead] = _act_const(lat, dead).astype(np.float32)
        return const

    if not all(bool(v.any()) for v in live):
        # Degenerate: the output no longer depends on the input; run the network once.
        const = net.forward(np.zeros((1, in_dim), dtype=np.float32))[0].astype(np.float32)
        return CompactNetwork(
            layers=[],
            input_dim=in_dim,
            output_dim=out_dim,
            input_index=np.zeros(0, dtype=np.int64),
            output_index=np.zeros(0, dtype=np.int64),
            output_const=const,
            kind=net.kind,
            latent_layer=latent_layer,
            latent_dim=latent_dim,
            latent_const=_latent_const(),
            meta=meta,
            logvar=_compact_logvar(net, np.zeros(0, dtype=np.int64)),
        )

    input_index = np.flatnonzero(layers[0].mask.any(axis=0)).astype(np.int64)
    cols = input_index
    compact_layers = []
    for k in range(n_layers):
        layer = layers[k]
        rows = np.flatnonzero(live[k]).astype(np.int64)
        w = layer.masked_weight[np.ix_(rows, cols)]
        compact_layers.append(
            CompactLayer(
                weight=np.ascontiguousarray(w, dtype=np.float32),
                bias=layer.bias[rows].astype(np.float32),
                activation=layer.activation,
                negative_slope=float(layer.negative_slope),
                unit_index=rows,
            )
        )
        cols = rows
    last = layers[-1]
    output_index = compact_layers[-1].unit_index
    output_const = np.zeros(out_dim, dtype=np.float32)
    dead_out = np.flatnonzero(~live[-1])
    output_const[dead_out] = _act_const(last, dead_out).astype(np.float32)
    return CompactNetwork(
        layers=compact_layers,
        input_dim=in_dim,
        output_dim=out_dim,
        input_index=input_index,
        output_index=output_index,
        output_const=output_const,
        kind=net.kind,
        latent_layer=latent_layer,
        latent_dim=latent_dim,
        latent_const=_latent_const(),
        meta=meta,
        logvar=None if net.latent is None else _compact_logvar(
            net, input_index if net.latent == 1 else compact_layers[net.latent - 2].unit_index),
    )


def _compact_logvar(net: Network, cols: np.ndarray) -> CompactLayer | None:
    """A VAE's log-variance head restricted to ``cols``, the live inputs of the mu head (it
    reads no other after :func:`fold_logvar_inputs`); every latent unit keeps its row."""
    head = net.logvar
    if head is None:
        return None
    return CompactLayer(weight=np.ascontiguousarray(head.masked_weight[:, cols], np.float32),
                        bias=head.bias.astype(np.float32), activation=head.activation,
                        negative_slope=float(head.negative_slope),
                        unit_index=np.arange(head.out_dim, dtype=np.int64))
