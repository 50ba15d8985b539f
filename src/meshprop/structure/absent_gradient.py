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
    O(BLOCK_ENTRIES + P + k), never N×N.

    Only the *support* is scored first: a source i whose states S[:, i] are all zero (a neuron
    never active, e.g. a ReLU that nothing drives) or a target j whose errors E[:, j] are all
    zero (one that reaches no output in the ticks left) has dE/dA[i, j] = 0 exactly.  When the
    support holds at least ``k`` absent entries above zero, they are the answer; otherwise
    zeros enter the top k (in row-major order) and every row is scored.  On a large sparse
    ReLU mesh the support is a small part of the N·F entries."""
    N, F = topology.n_neurons, topology.n_free
    k = min(k, N * F - topology.n_edges)
    if k <= 0:
        return torch.zeros(0, 2, dtype=torch.long)
    rows = (S != 0).any(dim=0).nonzero().flatten()
    cols = (E != 0).any(dim=0).nonzero().flatten()
    if len(rows) < N or len(cols) < F:
        scores, found = _scan(topology, S, E, rows, cols, k)
        if len(found) == k and bool(scores[-1] > 0):
            return _as_edges(found, N)
    device = S.device
    scores, found = _scan(
        topology, S, E, torch.arange(N, device=device), torch.arange(F, device=device), k
    )
    return _as_edges(found, N)


def _as_edges(keys: torch.Tensor, N: int) -> torch.Tensor:
    keys = keys.cpu()
    return torch.stack([keys // N, keys % N], dim=1)


def _scan(
    topology: Topology,
    S: torch.Tensor,
    E: torch.Tensor,
    row_ids: torch.Tensor,
    col_ids: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of |dE/dA| over the absent entries of rows ``row_ids`` × free columns
    ``col_ids`` (both ascending): (scores, edge keys i·N + j), largest first, ties by key."""
    N, C = topology.n_neurons, topology.n_clamped
    Fa = len(col_ids)
    best_scores = S.new_zeros(0)
    best_keys = torch.zeros(0, dtype=torch.long, device=S.device)
    if Fa == 0 or len(row_ids) == 0:
        return best_scores, best_keys
    rows = max(1, BLOCK_ENTRIES // Fa)
    _guard(rows * Fa * (S.element_size() + 9), "a block of RigL's gradient scores")
    edges, keys = topology.edges.to(S.device), edge_keys(topology).to(S.device)
    E_cols = E if Fa == E.shape[1] else E[:, col_ids]
    for r0 in range(0, len(row_ids), rows):
        block_rows = row_ids[r0 : r0 + rows]
        block = (S[:, block_rows].T @ E_cols).abs_()  # dE/dA[block_rows, free[col_ids]]
        first, last = int(block_rows[0]), int(block_rows[-1])
        lo = int(torch.searchsorted(keys, torch.tensor(first * N, device=S.device)))
        hi = int(torch.searchsorted(keys, torch.tensor((last + 1) * N, device=S.device)))
        sources, targets = edges[lo:hi, 0].contiguous(), edges[lo:hi, 1] - C
        r = torch.searchsorted(block_rows, sources).clamp(max=len(block_rows) - 1)
        c = torch.searchsorted(col_ids, targets).clamp(max=Fa - 1)
        hit = (block_rows[r] == sources) & (col_ids[c] == targets)
        block[r[hit], c[hit]] = -torch.inf
        flat = block.reshape(-1)
        if len(best_keys) == k:  # only scores above the k-th best so far can enter (a tie
            pool = (flat > best_scores[-1]).nonzero().flatten()  # loses: its key is larger)
            chosen = pool[_block_largest(flat[pool], min(k, len(pool)))] if len(pool) else pool
        else:
            absent = len(block_rows) * Fa - int(hit.sum())
            chosen = _block_largest(flat, min(k, absent))
        if len(chosen) == 0:
            continue
        scores = torch.cat([best_scores, flat[chosen]])
        found = torch.cat([best_keys, block_rows[chosen // Fa] * N + C + col_ids[chosen % Fa]])
        order = found.argsort()
        scores, found = scores[order], found[order]
        keep = torch.sort(scores, descending=True, stable=True).indices[:k]
        best_scores, best_keys = scores[keep], found[keep]
    return best_scores, best_keys
