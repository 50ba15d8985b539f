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

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..dynamics import Dynamics
from ..losses import loss_and_grad
from .fop import edge_index

__all__ = [
    "SEQUENCE_LOSSES",
    "RTRLStepper",
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


class _Bank:
    """One carried sensitivity buffer, stored transposed: V[b, o, p] = U[b, p, o], shape
    (B, F, P), and the views a tick writes or reads."""

    def __init__(self, V: torch.Tensor, n_rows: int | None, F: int, O: int) -> None:
        B, _, P = V.shape
        self.V = V
        self.flat = V.view(B, F * P)
        self.matrix = V[0] if B == 1 else None  # (F, P): one mm instead of a bmm
        self.out = V[:, F - O :, :]  # the output neurons' rows (B, O, P), contiguous
        self.out_matrix = self.out[0].T if B == 1 else None  # (P, O)
        # B = O = 1 on a full mesh: the output row as an (N, F) grid, A.grad[:, C:]'s layout
        self.out_grid = V[0, F - 1].view(n_rows, F) if n_rows is not None and B == O == 1 else None
        # the full mesh (every (i, j) an edge, row-major, p = i·F + j): S̃ lands on the
        # diagonal V[b, j, i, j] of a (B, F, N, F) view, seen as (B, N, F)
        self.diagonal = (
            V.view(B, F, n_rows, F).diagonal(dim1=1, dim2=3) if n_rows is not None else None
        )


class RTRLStepper:
    """Online FOP (RTRL) one element at a time on preallocated buffers: the lean step path of
    :class:`meshprop.OnlineLearner`.

    Everything that does not change from element to element is built once: the edge index
    (source i_p, target j_p), the flat positions where S̃ lands, the clamped/free split, and
    the buffers S = [c | h], T, D, two carried sensitivity buffers (used in turn), the edge
    gradient and their views.  A step then runs a fixed sequence of in-place torch
    operations, with no Python-level bookkeeping.

    It carries U_n = Z_{n−1} A_f + S̃_{n−1} instead of Z_n (paper 000 Eq. 17,
    Z_n = (Z_{n−1} A_f + S̃_{n−1}) D_n = U_n D_n), so the column scaling by D_n moves onto the
    F×F matrix:

        U_{n+1} = U_n (diag(D_n) A_f) + S̃_n,        Z_n = U_n D_n,

    one (P×F)·(F×F) product and one scatter of P entries per tick and no (P×F)-sized product
    by D.  U is stored transposed, V = Uᵀ (F×P per sample), so the product is
    V_{n+1} = (diag(D_n) A_f)ᵀ V_n, an (F×F)·(F×P) product (measured 15–20 % faster than the
    (P×F)·(F×F) one for F = 33) and the output neurons' sensitivities are contiguous rows.
    After an element with a loss, Algorithm 1's last line reads
    dE/dA_p += Σ_{b,o} U[b, p, o] D[b, o] dE/dy[b, o] over the output neurons o.

    When every entry of A's free columns is an edge (a full mesh), S̃_n is added on a
    diagonal of a view of V and the gradient is written into A.grad[:, C:] as one block;
    otherwise through the index of the edges.
    """

    def __init__(self, dyn: Dynamics, A: torch.Tensor, mask: torch.Tensor, batch: int) -> None:
        self.dyn = dyn
        C, F, O = dyn.n_clamped, dyn.n_free, dyn.n_outputs
        N = C + F
        dtype, dev = A.dtype, A.device
        src, dst = edge_index(dyn, dev)
        P = len(src)
        self.P, self.B, self.C, self.F, self.O = P, batch, C, F, O
        self.src = src
        self.flat_edges = src * N + dst + C  # position of edge p in A.view(-1)
        self.scatter_at = dst * P + torch.arange(P, device=dev)  # position in V[b].view(-1)
        self.A = A  # detached view of the parameter (shares its storage)
        self.mask = mask.to(device=dev, dtype=dtype)
        # every entry of the free columns an edge: A[:, C:] is used as it is, unmasked
        self.full = bool(self.mask[:, C:].all())
        self.masked = A if self.full else torch.empty_like(A)
        W = self.masked
        self.W_free = W[:, C:]  # (N, F): T_n = S_{n-1} A[:, C:]
        self.A_fT = W[C:, C:].T.unsqueeze(0)  # (1, F, F) view: A_fᵀ
        self.uniform = dyn.activations.uniform
        self.S = torch.zeros(batch, N, dtype=dtype, device=dev)
        if dyn.topology.bias:
            self.S[:, C - 1] = 1.0
        self.S_rows = self.S.unsqueeze(2)  # (B, N, 1)
        self.x_view = self.S[:, : dyn.topology.n_inputs]
        self.h = self.S[:, C:]
        self.y = self.S[:, N - O :]
        self.T = torch.empty(batch, F, dtype=dtype, device=dev)
        self.D = torch.ones(batch, F, dtype=dtype, device=dev)
        self.D_row = self.D.unsqueeze(1)  # (B, 1, F)
        self.D_out = self.D[:, F - O :]
        self.ones = torch.ones(batch, F, dtype=dtype, device=dev)
        self.Mt = torch.empty(batch, F, F, dtype=dtype, device=dev)  # (diag(D) A_f)ᵀ
        self.Mt_matrix = self.Mt[0]
        rows = N if self.full else None
        self.bank = _Bank(torch.zeros(batch, F, P, dtype=dtype, device=dev), rows, F, O)
        self.spare = _Bank(torch.zeros(batch, F, P, dtype=dtype, device=dev), rows, F, O)
        self.w = torch.empty(batch, O, dtype=dtype, device=dev)
        self.w_row = self.w.unsqueeze(1)  # (B, 1, O)
        self.err = torch.empty(batch, O, dtype=dtype, device=dev)
        self.err_flat = self.err.view(-1)
        self.zeros_out = torch.zeros(batch, O, dtype=dtype, device=dev)
        self.grad_edges = torch.zeros(P, dtype=dtype, device=dev)
        self.grad_block = self.grad_edges.view(N, F) if self.full else None
        # B = O = 1 on a full mesh: the loss and dE/dy are scalars, kept on the host
        self.scalar = self.bank.out_grid is not None
        self._w_scalar = 0.0
        self._free_columns: tuple[torch.Tensor, torch.Tensor] | None = None  # grad, grad[:, C:]

    def reset(self) -> None:
        """A new stream: h = 0, sensitivities 0."""
        self.h.zero_()
        self.bank.V.zero_()
        self.D.fill_(1.0)

    def sensitivities(self) -> torch.Tensor:
        """Z = ∂h/∂A_p (B, P, F) after the last tick (Eq. 17's Z_n = U_n D_n; a new tensor)."""
        return self.bank.V.transpose(1, 2) * self.D.unsqueeze(1)

    def advance(self, x: torch.Tensor) -> None:
        """Present one element x (B, I) for ``ticks`` ticks: Eq. 3 and Eq. 17 in place."""
        if not self.full:
            torch.mul(self.A, self.mask, out=self.masked)
        self.x_view.copy_(x)
        dyn, S, h, T, D = self.dyn, self.S, self.h, self.T, self.D
        for _ in range(dyn.ticks):
            old, new = self.bank, self.spare
            torch.mul(self.A_fT, self.D_row, out=self.Mt)  # (diag(D_n) A_f)ᵀ = A_fᵀ diag(D_n)
            if old.matrix is not None and new.matrix is not None:
                torch.mm(self.Mt_matrix, old.matrix, out=new.matrix)
            else:
                torch.bmm(self.Mt, old.V, out=new.V)
            if new.diagonal is not None:  # + S̃_n
                new.diagonal.add_(self.S_rows)
            else:
                new.flat.index_add_(1, self.scatter_at, S.index_select(1, self.src))
            torch.mm(S, self.W_free, out=T)  # Eq. 3
            if self.uniform == "tanh":
                torch.tanh(T, out=h)
                torch.addcmul(self.ones, h, h, value=-1.0, out=D)
            else:
                value, slope = dyn.activations(T)
                h.copy_(value)
                D.copy_(slope)
            self.bank, self.spare = new, old

    def mse_output_gradient(
        self, target: torch.Tensor, mask: torch.Tensor | None, scale: float
    ) -> float:
        """Σ over the masked samples of mean_o (y − t)² (the loss of the element, summed), and
        w = scale · (y − t) ⊙ D_out kept for :meth:`accumulate` / :meth:`write_direct` (with
        scale = 2/O · 1/count: the gradient of the mean loss, dE/dy = 2(y − t)/O)."""
        err = torch.sub(self.y, target, out=self.err)
        if mask is not None:
            err.mul_(mask.unsqueeze(1))
        torch.addcmul(self.zeros_out, err, self.D_out, value=scale, out=self.w)
        if self.err_flat.numel() == 1:
            e = float(err)
            return e * e
        return float(torch.dot(self.err_flat, self.err_flat)) / self.O

    def scalar_mse(self, target: torch.Tensor) -> float:
        """B = O = 1 (:attr:`scalar`): the loss (y − t)² of the element, with
        w = 2 (y − t) D_out kept on the host for :meth:`write_scalar` (the same quantities as
        :meth:`mse_output_gradient` with scale 2, as three reads instead of three operations)."""
        err = float(self.y) - float(target)
        self._w_scalar = 2.0 * err * float(self.D_out)
        return err * err

    def write_scalar(self, grad: torch.Tensor) -> bool:
        """B = O = 1 (:attr:`scalar`): grad[:, C:] ← w · U_out, the element's gradient on the
        (N, F) grid of A.grad's free columns (one multiply by the host scalar of
        :meth:`scalar_mse`).  Returns whether it is finite."""
        grid = self.bank.out_grid
        assert grid is not None  # scalar: B = O = 1 on a full mesh
        block = torch.mul(grid, self._w_scalar, out=self._columns(grad))
        return math.isfinite(float(block.sum()))

    def _columns(self, grad: torch.Tensor) -> torch.Tensor:
        """grad[:, C:], the free columns where the gradient lands (the view kept while the
        learner passes the same buffer)."""
        cached = self._free_columns
        if cached is None or cached[0] is not grad:
            cached = self._free_columns = (grad, grad[:, self.C :])
        return cached[1]

    def output_gradient(self, g: torch.Tensor) -> None:
        """w = g ⊙ D_out for a given dE/dy g (B, O) (any loss)."""
        torch.mul(g, self.D_out, out=self.w)

    def _contract(self, out: torch.Tensor, beta: float) -> None:
        """out (P,) ← beta · out + Σ_{b,o} U[b, p, o] w[b, o]  (= Σ Z[b, p, o] dE/dy[b, o])."""
        bank = self.bank
        if bank.out_matrix is not None:
            out.addmv_(bank.out_matrix, self.w[0], beta=beta)
        elif beta == 0.0:
            torch.sum(torch.bmm(self.w_row, bank.out), dim=(0, 1), out=out)
        else:
            out.add_(torch.bmm(self.w_row, bank.out).sum(dim=(0, 1)))

    def accumulate(self) -> None:
        """Algorithm 1's last line for this element: ``grad_edges`` += Z · w."""
        self._contract(self.grad_edges, 1.0)

    def write_direct(self, grad: torch.Tensor) -> bool:
        """grad (N×N, zero off the edges) ← this element's Z · w alone (an optimizer step after
        every element: nothing is accumulated).  Returns whether it is finite (a NaN or inf
        sensitivity reaches it)."""
        bank = self.bank
        if bank.out_grid is not None and self.w.numel() == 1:  # B = O = 1, full mesh
            block = torch.mul(bank.out_grid, self.w, out=self._columns(grad))
            return math.isfinite(float(block.sum()))
        self._contract(self.grad_edges, 0.0)
        return self._write(grad)

    def write_gradient(self, grad: torch.Tensor, count: int) -> bool:
        """grad (N×N, zero off the edges) ← grad_edges / count; grad_edges ← 0.  Returns
        whether that gradient is finite."""
        self.grad_edges.div_(count)
        finite = self._write(grad)
        self.grad_edges.zero_()
        return finite

    def _write(self, grad: torch.Tensor) -> bool:
        if self.grad_block is not None:
            self._columns(grad).copy_(self.grad_block)
        else:
            grad.view(-1).index_copy_(0, self.flat_edges, self.grad_edges)
        return math.isfinite(float(self.grad_edges.sum()))

    def finite(self) -> bool:
        """Whether the carried sensitivities are finite (a sum: NaN and inf propagate)."""
        return math.isfinite(float(self.bank.V.sum()))
