"""One model, two views: the weights W_1..W_L of a layered network as blocks of a mesh's A.

``Topology.layered(sizes, bias)`` numbers the neurons [inputs (N_0)][bias][layer 1]…[layer L]
(paper 000 Fig. 1, IHO order).  Y_h = W_h X_{h−1} with W_h of shape N_h × (N_{h−1}+1) and the
bias in the last column (paper 002 Remark 1) means, with A[i, j] the weight from i to j,

    A[layer h−1, layer h] = W_h[:, :N_{h−1}]ᵀ,        A[bias, layer h] = W_h[:, N_{h−1}].

After tick n the neurons of layer n hold X_n exactly (layer h reads layer h−1 of the previous
tick), so ``ticks = L`` ticks carry the input to the outputs and dE/dA restricted to these blocks
is dE/dW_h.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..topology import Topology

__all__ = [
    "adjacency_to_weights",
    "check_layered",
    "closest_layer_sizes",
    "infer_layer_sizes",
    "layer_starts",
    "weights_to_adjacency",
]


def layer_starts(sizes: Sequence[int], bias: bool) -> list[int]:
    """Index of the first neuron of every layer 0..L in ``Topology.layered(sizes, bias)``."""
    starts = [0]
    position = sizes[0] + int(bias)
    for size in sizes[1:]:
        starts.append(position)
        position += size
    return starts


def weights_to_adjacency(
    weights: Sequence[torch.Tensor], sizes: Sequence[int], bias: bool
) -> torch.Tensor:
    """The N×N adjacency matrix holding W_1..W_L in the blocks of ``Topology.layered``."""
    starts = layer_starts(sizes, bias)
    n = sum(sizes) + int(bias)
    A = torch.zeros(n, n, dtype=weights[0].dtype, device=weights[0].device)
    for h in range(1, len(sizes)):
        W = weights[h - 1]
        src, dst, n_in, n_out = starts[h - 1], starts[h], sizes[h - 1], sizes[h]
        A[src : src + n_in, dst : dst + n_out] = W[:, :n_in].T
        if bias:
            A[sizes[0], dst : dst + n_out] = W[:, n_in]
    return A


def adjacency_to_weights(A: torch.Tensor, sizes: Sequence[int], bias: bool) -> list[torch.Tensor]:
    """Inverse of :func:`weights_to_adjacency`: the blocks W_h of A (any N×N tensor, e.g. dE/dA)."""
    starts = layer_starts(sizes, bias)
    weights = []
    for h in range(1, len(sizes)):
        src, dst, n_in, n_out = starts[h - 1], starts[h], sizes[h - 1], sizes[h]
        block = A[src : src + n_in, dst : dst + n_out].T
        if bias:
            block = torch.cat([block, A[sizes[0], dst : dst + n_out].unsqueeze(1)], dim=1)
        weights.append(block.clone())
    return weights


def infer_layer_sizes(topology: Topology) -> list[int]:
    """The layer sizes [N_0, …, N_L] a topology claims or most plausibly has.

    ``topology.layer_sizes`` is used when present (topologies built by ``Topology.layered``).
    Otherwise every free neuron gets the layer 1 + max(layer of its non-bias predecessors of
    lower index), inputs being layer 0, and consecutive hidden neurons of one layer form a layer
    (this recovers any genuine layered mask).  When that layering does not fit the mask, the
    layering closest to it (:func:`closest_layer_sizes`) is returned instead, so that
    :func:`check_layered` names the edges that really break the structure.
    """
    if topology.layer_sizes is not None:
        return list(topology.layer_sizes)
    if topology.n_inputs < 1:
        raise ValueError("a layered network needs at least one input neuron; this mesh has none")
    mask = topology.mask
    depth: dict[int, int] = dict.fromkeys(range(topology.n_inputs), 0)
    runs: list[list[int]] = []  # [layer, count] of consecutive hidden neurons
    first_output = topology.n_neurons - topology.n_outputs
    for j in range(topology.n_clamped, first_output):
        preds = [int(i) for i in mask[:j, j].nonzero().flatten() if int(i) != topology.bias_index]
        depth[j] = 1 + max((depth[i] for i in preds), default=0)
        if runs and runs[-1][0] == depth[j]:
            runs[-1][1] += 1
        else:
            runs.append([depth[j], 1])
    sizes = [topology.n_inputs, *(count for _, count in runs), topology.n_outputs]
    expected = Topology.layered(sizes, bias=topology.bias).mask
    if torch.equal(expected, topology.mask) or topology.n_hidden > _MAX_CLOSEST_HIDDEN:
        return sizes
    return closest_layer_sizes(topology)


_MAX_CLOSEST_HIDDEN = 400


def closest_layer_sizes(topology: Topology) -> list[int]:
    """The layer sizes whose ``Topology.layered`` mask differs from ``topology.mask`` in the
    fewest non-bias edges (edges present but not layered, plus layered edges missing).

    Hidden neurons keep their order, so a layering is a split of the hidden range into
    consecutive blocks.  With M the non-bias mask, the mismatch of a split is
    E − Σ_h (2·M(block_{h−1}, block_h) − N_{h−1}N_h), so maximising the sum over consecutive
    block pairs is a dynamic programme over (previous block, current block): O(H³) work,
    vectorised over the previous block's start.
    """
    n, I, O = topology.n_neurons, topology.n_inputs, topology.n_outputs
    c, end = topology.n_clamped, n - O  # hidden neurons are c..end-1
    M = topology.mask.clone().to(torch.int64)
    if topology.bias:
        M[topology.n_inputs] = 0
    sums = torch.zeros(n + 1, n + 1, dtype=torch.int64)
    sums[1:, 1:] = M.cumsum(0).cumsum(1)
    S = sums.numpy()

    def count(r0, r1, c0: int, c1: int):
        return S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]

    if end == c:
        return [I, O]
    # V[s, e]: best score of a chain input → … → block [s, e); back[s, e] = previous start
    V = np.full((n + 1, n + 1), -np.inf)
    back = np.full((n + 1, n + 1), -1, dtype=np.int64)
    for e in range(c + 1, end + 1):
        V[c, e] = 2 * count(0, I, c, e) - I * (e - c)
    starts = np.arange(c, end)
    for e in range(c + 1, end):  # e: start of the next block, end of the previous one
        prev = starts[starts < e]
        for f in range(e + 1, end + 1):
            gain = 2 * count(prev, e, e, f) - (e - prev) * (f - e)
            total = V[prev, e] + gain
            k = int(np.argmax(total))
            if total[k] > V[e, f]:
                V[e, f], back[e, f] = total[k], prev[k]
    prev = starts
    final = V[prev, end] + 2 * count(prev, end, end, n) - (end - prev) * O
    s, e = int(prev[int(np.argmax(final))]), end
    blocks = []
    while True:
        blocks.append(e - s)
        if s == c:
            break
        s, e = int(back[s, e]), s
    return [I, *reversed(blocks), O]


def check_layered(topology: Topology, sizes: Sequence[int]) -> None:
    """Raise ValueError naming an offending edge unless the mask is ``Topology.layered(sizes)``.

    An edge present in the mesh but absent from the layered network is named first (a skip,
    lateral, recurrent or self edge); otherwise a missing edge of the layered network is named.
    """
    label = "A[" + ", ".join(str(s) for s in sizes) + "]"
    if sum(sizes) + int(topology.bias) != topology.n_neurons or sizes[0] != topology.n_inputs:
        raise ValueError(
            f"layer sizes {label} do not fit a mesh of {topology.n_inputs} inputs, "
            f"{topology.n_hidden} hidden and {topology.n_outputs} outputs"
        )
    expected = Topology.layered(sizes, bias=topology.bias).mask
    starts = layer_starts(sizes, topology.bias)

    def where(k: int) -> str:
        if topology.bias and k == topology.n_inputs:
            return "the bias neuron"
        layer = max(h for h, s in enumerate(starts) if s <= k)
        return f"neuron {k} (layer {layer})"

    extra = (topology.mask & ~expected).nonzero()
    if len(extra):
        i, j = (int(v) for v in extra[0])
        raise ValueError(
            f"the mesh is not a layered network: edge ({i}, {j}) from {where(i)} to {where(j)} "
            f"is not an edge of the layered network {label} (layer h may only feed layer h+1); "
            f"{len(extra)} such edge(s) in all"
        )
    missing = (expected & ~topology.mask).nonzero()
    if len(missing):
        i, j = (int(v) for v in missing[0])
        raise ValueError(
            f"the mesh is not a fully connected layered network: edge ({i}, {j}) from "
            f"{where(i)} to {where(j)} of the layered network {label} is missing; "
            f"{len(missing)} missing edge(s) in all"
        )
