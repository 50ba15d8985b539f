"""Sequences through a mesh: paper 000's recursions carried from element to element.

A sequence x of shape (L, B, I) presents element l for ``dyn.ticks`` ticks (inputs clamped to
x[l], bias 1); the free neurons' state h carries over from one element to the next and is never
reset inside a sequence.  The output after element l is y_l = h[outputs] after its last tick.

The loss of a sequence is E = Σ_l E_l with E_l the loss of element l already weighted (see
:func:`element_loss`), so dE/dy_l is fed in after element l.  Two exact recursions compute dE/dA:

- **FOP** (paper 000 Eq. 13 / Eq. 17): the sensitivities Z[b, p, o] = ∂h_o/∂A_p of every edge p
  and every free neuron o are carried forward tick after tick, element after element,

      Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n,       dE/dA_p += Σ_{b,o} dE/dy_l[b, o] Z[b, p, o],

  the second line after each element (Algorithm 1's last line, applied at every element).  Nothing
  of the past is stored: memory O(B·P·F) whatever L — this is real-time recurrent learning.
  Unlike :class:`~meshprop.engines.fop.FOPEngine`, every column is carried (a loss may come at
  any element, so no neuron is ever "too far" from an output).
- **BPTT** (paper 004, the reciprocal network): the trajectory S_{n-1}, φ′(T_n) of every tick of
  every element is stored (memory O(L·T·B·N)); the recursion runs backwards,

      δ ← δ + [0 … 0, dE/dy_l] after element l,   e_n = δ ⊙ φ′(T_n),   dE/dA += S_{n-1}ᵀ e_n,
      δ ← e_n A_fᵀ,

  so the loss of every element enters the reciprocal network at its own time (rule 6) and the
  delays become advances (rule 5).

A state entering the sequence (a :class:`SequenceState`) is (h, Z): with Z the stream's
sensitivities the FOP gradient continues the stream exactly; without Z the entering state is a
constant (its dependence on A is cut, as in truncated BPTT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..dynamics import Dynamics
from ..losses import loss_and_grad
from .fop import edge_index

__all__ = [
    "SEQUENCE_LOSSES",
    "SequenceState",
    "bptt_sequence",
    "element_loss",
    "fop_sequence",
    "sensitivity_step",
    "unroll_states",
]

SEQUENCE_LOSSES = ("mse", "cross_entropy")

#: (l, y_l) -> (E_l, dE/dy_l) or None when element l carries no loss
ElementLoss = Callable[[int, torch.Tensor], "tuple[torch.Tensor, torch.Tensor] | None"]


@dataclass
class SequenceState:
    """The state a stream carries between calls: the free neurons' state h (B, F) and, for FOP,
    the sensitivities Z (B, P, F) of h to every edge (None: h is a constant)."""

    h: torch.Tensor | None = None
    sensitivities: torch.Tensor | None = None


def element_loss(
    loss: str, y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, total: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """E_l and dE_l/dy_l (B, O) of one element: the per-sample loss of the masked samples summed
    and divided by ``total``, the number of masked (l, b) pairs of the whole sequence, so that
    Σ_l E_l is the mean of the per-sample loss over the masked pairs.  Built on
    :func:`meshprop.losses.loss_and_grad` (mse: mean over the outputs of (y − t)²;
    cross_entropy: −log softmax(y)[label]).  None when no sample of the element is masked."""
    rows = mask.nonzero().flatten()
    m = len(rows)
    if m == 0:
        return None
    value, g_rows = loss_and_grad(loss, y[rows], target[rows])
    grad = torch.zeros_like(y)
    grad[rows] = g_rows.to(y.dtype)
    scale = m / total
    return value * scale, grad * scale


def sensitivity_step(
    Z: torch.Tensor,
    A_f: torch.Tensor,
    S_prev: torch.Tensor,
    D: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
) -> torch.Tensor:
    """One tick of paper 000 Eq. 17 on every column: Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n.

    Z: (B, P, F); S̃_{n-1}[b, p, o] = S_{n-1}[b, i_p] if o = j_p (one entry per edge, added as
    a scatter, never materialised); D_n = φ′(T_n) (B, F)."""
    P = len(src)
    Z_next = torch.matmul(Z, A_f)
    Z_next[:, torch.arange(P, device=Z.device), dst] += S_prev[:, src]
    return Z_next.mul_(D.unsqueeze(1))


def _initial_h(dyn: Dynamics, A: torch.Tensor, batch: int, state: SequenceState | None):
    if state is None or state.h is None:
        return torch.zeros(batch, dyn.n_free, dtype=A.dtype, device=A.device)
    return state.h.to(device=A.device, dtype=A.dtype)


def unroll_states(
    dyn: Dynamics, A: torch.Tensor, x: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (L, B, O), h after the last element) from h, with plain torch operations and φ from
    :meth:`NeuronActivations.value`: differentiable by autograd when A requires grad (the
    autograd oracle), a cheap forward pass otherwise."""
    Am = A * dyn.mask_like(A)
    C, F, O = dyn.n_clamped, dyn.n_free, dyn.n_outputs
    A_c, A_f = Am[:C, C:], Am[C:, C:]
    ys = []
    for l in range(x.shape[0]):
        c = dyn.clamped_state(x[l], 1)
        drive = c @ A_c  # the clamped part is the same at every tick of an element
        for _ in range(dyn.ticks):
            h = dyn.activations.value(drive + h @ A_f)
        ys.append(h[:, F - O :])
    return torch.stack(ys), h


def fop_sequence(
    dyn: Dynamics,
    A: torch.Tensor,
    x: torch.Tensor,
    feed: ElementLoss,
    state: SequenceState | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SequenceState]:
    """Forward-only gradient of Σ_l E_l over a sequence (module docstring, FOP).

    Returns (E, dE/dA (N, N), y (L, B, O), the state after the last element).  ``state.h`` and
    ``state.sensitivities`` (when given) continue a stream exactly."""
    A = A.detach()
    B, F, O, C = x.shape[1], dyn.n_free, dyn.n_outputs, dyn.n_clamped
    A_c, A_f = dyn.split(A)
    src, dst = edge_index(dyn, A.device)
    P = len(src)
    h = _initial_h(dyn, A, B, state)
    if state is not None and state.sensitivities is not None:
        Z = state.sensitivities.to(device=A.device, dtype=A.dtype)
        if Z.shape != (B, P, F):
            raise ValueError(
                f"state.sensitivities must have shape {(B, P, F)}, got {tuple(Z.shape)}"
            )
    else:
        Z = torch.zeros(B, P, F, dtype=A.dtype, device=A.device)
    grad_edges = torch.zeros(P, dtype=A.dtype, device=A.device)
    total = torch.zeros((), dtype=A.dtype, device=A.device)
    ys = []
    for l in range(x.shape[0]):
        c = dyn.clamped_state(x[l], 1)
        drive = c @ A_c
        for _ in range(dyn.ticks):
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(drive + h @ A_f)  # Eq. 3
            Z = sensitivity_step(Z, A_f, S_prev, D, src, dst)  # Eq. 17
        y = h[:, F - O :]
        ys.append(y)
        fed = feed(l, y)
        if fed is not None:  # Algorithm 1's last line at element l
            value, g = fed
            total = total + value
            grad_edges += torch.einsum("bpo,bo->p", Z[:, :, F - O :], g)
    dA = torch.zeros_like(A)
    dA[src, dst + C] = grad_edges
    return total, dA, torch.stack(ys), SequenceState(h, Z)


def bptt_sequence(
    dyn: Dynamics,
    A: torch.Tensor,
    x: torch.Tensor,
    feed: ElementLoss,
    state: SequenceState | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SequenceState]:
    """Reverse-mode gradient of Σ_l E_l over a sequence: the reciprocal network run backwards
    over the whole stored trajectory (module docstring, BPTT).  The entering state is a
    constant.  Returns (E, dE/dA, y (L, B, O), the state after the last element, without
    sensitivities)."""
    A = A.detach()
    B, F, O, C = x.shape[1], dyn.n_free, dyn.n_outputs, dyn.n_clamped
    A_c, A_f = dyn.split(A)
    h = _initial_h(dyn, A, B, state)
    history: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    ys = []
    for l in range(x.shape[0]):
        c = dyn.clamped_state(x[l], 1)
        drive = c @ A_c
        ticks = []
        for _ in range(dyn.ticks):
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(drive + h @ A_f)
            ticks.append((S_prev, D))
        history.append(ticks)
        ys.append(h[:, F - O :])
    total = torch.zeros((), dtype=A.dtype, device=A.device)
    delta = torch.zeros(B, F, dtype=A.dtype, device=A.device)
    grad_free_cols = torch.zeros(A.shape[0], F, dtype=A.dtype, device=A.device)
    A_fT = A_f.T
    for l in range(x.shape[0] - 1, -1, -1):
        fed = feed(l, ys[l])
        if fed is not None:  # rule 6: the output of element l becomes an input of dE/dy_l
            value, g = fed
            total = total + value
            delta[:, F - O :] += g
        for S_prev, D in reversed(history[l]):
            e = delta * D  # rule 3
            grad_free_cols += S_prev.T @ e
            delta = e @ A_fT  # rules 4 and 5
    dA = torch.zeros_like(A)
    dA[:, C:] = grad_free_cols
    return total, dA * dyn.mask_like(A), torch.stack(ys), SequenceState(h, None)
