"""dE/dA on every allowed edge, present or absent, without building the N×N matrix.

An absent edge carries weight 0, so the sparse network computes the same function as the full
allowed mesh with A = 0 there; dE/dA of that mesh is what RigL grows by.  Paper 004's reciprocal
network gives it (its Eq. 4, as ``engines/bptt.py``): with δ_T = [0 … 0, ∂E/∂y],
e_n = δ_n ⊙ φ′(T_n) and δ_{n−1} = e_n A_fᵀ,

    ∂E/∂A[i, C + j] = Σ_n (S_{n−1}ᵀ e_n)[i, j] = (Sᵀ E)[i, j],

where S (T·B, N) stacks the states S_{n−1} and E (T·B, F) the errors e_n of the T ticks.  The
recursion needs the products of the present edges only — the network's own
:class:`~meshprop.layout.Transition` (``back(e)`` = e A[:, free]ᵀ), so either layout computes it
in O(T·B·N + P) memory.  The gradient itself is a sum of T·B rank-one products:
:func:`largest_absent_gradients` scores it a block of source rows at a time (R rows × F free
columns), keeping a running top-k, so nothing larger than a block is ever allocated;
:func:`dense_gradient` materialises it (N×N, memory-guarded) for small meshes and tests.
"""

from __future__ import annotations

import torch

from ..losses import LossFn, loss_and_grad
from ..memory import check_fits, format_bytes
from ..mesh import MeshNet
from ..topology import Topology
from .edges import edge_keys

__all__ = ["BLOCK_ENTRIES", "dense_gradient", "gradient_factors", "largest_absent_gradients"]

#: entries of dE/dA scored at once by :func:`largest_absent_gradients` (at least one row)
BLOCK_ENTRIES = 2**20


def _guard(need: int, what: str) -> None:
    check_fits(
        need,
        "structure",
        lambda limit: (
            f"{what} needs about {format_bytes(need)}, but the memory limit is "
            f"{format_bytes(limit)}; raise it (meshprop.set_memory_limit) or use a smaller batch"
        ),
    )


def gradient_factors(
    net: MeshNet, x: torch.Tensor, target: torch.Tensor, loss: str | LossFn = "cross_entropy"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, E): the states S_{n−1} (T·B, N) and errors e_n = ∂E/∂T_n (T·B, F) of ``net``'s ticks
    on the batch, so that dE/dA[:, free] = Sᵀ E on every allowed edge (module docstring)."""
    storage, dyn = net.storage, net.dynamics
    theta = net.parameter.detach()
    x = net.prepare_input(x)
    B, N, F, C, T = (
        dyn.batch_size(x),
        net.topology.n_neurons,
        net.topology.n_free,
        net.topology.n_clamped,
        dyn.ticks,
    )
    _guard(theta.element_size() * T * B * (N + 2 * F), "the reciprocal network's trajectory")
    if target.dtype.is_floating_point:
        target = target.to(theta.dtype)
    target = target.to(theta.device)
    with torch.no_grad():
        tr = storage.transition(dyn, theta)
        h = theta.new_zeros(B, F)
        states, slopes = [], []
        for n in range(1, T + 1):  # Eq. 3, storing S_{n-1} and φ′(T_n)
            c = dyn.clamped_state(x, n)
            states.append(torch.cat([c, h], dim=1))
            h, slope = dyn.activations(tr.pre_activation(tr.drive(c), h))
            slopes.append(slope)
        _, grad_y = loss_and_grad(loss, h[:, F - dyn.n_outputs :], target)
        delta = theta.new_zeros(B, F)
        delta[:, F - dyn.n_outputs :] = grad_y
        errors: list[torch.Tensor] = []
        for n in range(T, 0, -1):  # the reciprocal network (paper 004, rules 3-5)
            e = delta * slopes[n - 1]
            errors.append(e)
            delta = tr.back(e)[:, C:]
        errors.reverse()
    return torch.cat(states), torch.cat(errors)


def dense_gradient(
    net: MeshNet, x: torch.Tensor, target: torch.Tensor, loss: str | LossFn = "cross_entropy"
) -> torch.Tensor:
    """dE/dA (N×N) of ``net`` on every allowed edge, present or not: Sᵀ E in the free columns
    (module docstring).  Memory-guarded: ``MemoryLimitError`` where N×N does not fit."""
    S, E = gradient_factors(net, x, target, loss)
    N, C = net.topology.n_neurons, net.topology.n_clamped
    _guard(N * N * S.element_size(), f"dE/dA of {N} neurons (an N×N matrix)")
    dA = S.new_zeros(N, N)
    dA[:, C:] = S.T @ E
    return dA


def _block_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest of ``scores`` (1-D), ties to the smaller index, in index
    order; ``k`` must not exceed the count of entries above -inf."""
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    kth = torch.topk(scores, k, sorted=False).values.min()
    above = (scores > kth).nonzero().flatten()
    tied = (scores == kth).nonzero().flatten()[: k - len(above)]
    return torch.cat([above, tied]).sort().values


def largest_absent_gradients(
    topology: Topology, S: torch.Tensor, E: torch.Tensor, k: int
) -> torch.Tensor:
    """The ``k`` absent allowed edges of ``topology`` with the largest |dE/dA| = |Sᵀ E| ((k, 2),
    largest first; ties: row-major order), scored a block of rows at a time: memory
    O(BLOCK_ENTRIES + P + k), never N×N."""
    N, C, F = topology.n_neurons, topology.n_clamped, topology.n_free
    k = min(k, N * F - topology.n_edges)
    if k <= 0:
        return torch.zeros(0, 2, dtype=torch.long)
    rows = max(1, BLOCK_ENTRIES // F)
    _guard(rows * F * (S.element_size() + 9), "a block of RigL's gradient scores")
    edges, keys = topology.edges.to(S.device), edge_keys(topology).to(S.device)
    best_scores = S.new_zeros(0)
    best_keys = torch.zeros(0, dtype=torch.long, device=S.device)
    for r0 in range(0, N, rows):
        r1 = min(N, r0 + rows)
        block = (S[:, r0:r1].T @ E).abs_()  # dE/dA[r0:r1, free]
        lo = int(torch.searchsorted(keys, torch.tensor(r0 * N, device=S.device)))
        hi = int(torch.searchsorted(keys, torch.tensor(r1 * N, device=S.device)))
        present = edges[lo:hi]
        block[present[:, 0] - r0, present[:, 1] - C] = -torch.inf
        flat = block.reshape(-1)
        if len(best_keys) == k:  # only scores above the k-th best so far can enter (a tie
            pool = (flat > best_scores[-1]).nonzero().flatten()  # loses: its key is larger)
            chosen = pool[_block_largest(flat[pool], min(k, len(pool)))] if len(pool) else pool
        else:
            chosen = _block_largest(flat, min(k, (r1 - r0) * F - (hi - lo)))
        if len(chosen) == 0:
            continue
        scores = torch.cat([best_scores, flat[chosen]])
        found = torch.cat([best_keys, (r0 + chosen // F) * N + C + chosen % F])
        order = found.argsort()
        scores, found = scores[order], found[order]
        keep = torch.sort(scores, descending=True, stable=True).indices[:k]
        best_scores, best_keys = scores[keep], found[keep]
    best_keys = best_keys.cpu()
    return torch.stack([best_keys // N, best_keys % N], dim=1)
