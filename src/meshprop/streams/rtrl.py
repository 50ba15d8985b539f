"""Method "fop": real-time recurrent learning — paper 000 Eq. 13 / Eq. 17 carried from element to
element (Algorithm 1's last line applied after every element that carries a loss).

The sensitivities Z[b, p, o] = ∂h_o/∂θ_p of every edge p and every free neuron o are carried
forward tick after tick, element after element,

    Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n,        dE/dθ_p += Σ_{b,o} dE/dy[b, o] Z[b, p, o],

so the gradient is exact through the whole past and nothing of the past is stored: memory flat
whatever the stream's length.  Every column is carried (a loss may come at any element).

**What exact FOP costs.**  Z[p, o] can be non-zero only where the edge's target j_p reaches o
by free edges; :mod:`meshprop.streams.cost` counts that pattern (K pairs, M transitions between
them) from the edge list and ``fop`` runs whichever representation its cost model finds
cheaper per tick:

- *dense* (:class:`RTRLStepper`, below): all P·F entries, B·F²·P multiply-adds per tick (one
  (F×F)·(F×P) product), memory O(B·P·F) — a full or strongly connected mesh, where the pattern
  is everything (K = P·F, M = P·F²);
- *pattern* (:class:`~meshprop.streams.pattern.PatternCarry` on the saturated pattern, the
  machinery of SnAp-k at k ≥ its saturation order): B·(K + M + 2P) gathered entries per tick,
  memory O(B·K) floats and O(K + M) indices — a recurrence of self-loops only
  (K, M ≈ P·(1 + O): O(P) per tick), feed-forward paths inside a mesh, modular meshes.

Both are exact (the pattern drops only entries that are zero forever);
``meshprop.streams.fop_cost(topology, batch, dtype)`` says which one will run, its pairs,
transitions, bytes and modelled time per tick before anything is built, and the memory guard
checks that representation's bytes.  The products of the dense stepper use the dense view A of
the weights (``Layout.dense``; the memory guard covers it); the gradient lands on the edges of
the storage (``Layout.edge_grid`` / ``Layout.write_edge_values``), never off them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..dynamics import Dynamics
from ..engines.fop import edge_index
from ..layout import Layout
from .cost import cost_for
from .pattern import PatternCarry, pattern_plan
from .protocol import StreamCarry, StreamMethod

__all__ = ["RTRL", "RTRLCarry", "RTRLStepper"]


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
        # B = O = 1: the output row, the P edges' sensitivities in edge order
        self.out_row = V[0, F - 1] if B == O == 1 else None
        # B = O = 1 on a full mesh: that row as the (N, F) grid of the edges
        self.out_grid = (
            self.out_row.view(n_rows, F)
            if n_rows is not None and self.out_row is not None
            else None
        )
        # the full mesh (every (i, j) an edge, row-major, p = i·F + j): S̃ lands on the
        # diagonal V[b, j, i, j] of a (B, F, N, F) view, seen as (B, N, F)
        self.diagonal = (
            V.view(B, F, n_rows, F).diagonal(dim1=1, dim2=3) if n_rows is not None else None
        )


class RTRLStepper:
    """RTRL one element at a time on preallocated buffers (Eq. 3 and Eq. 17 in place).

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
    V_{n+1} = (diag(D_n) A_f)ᵀ V_n, an (F×F)·(F×P) product, and the output neurons'
    sensitivities are contiguous rows.  After an element with a loss, Algorithm 1's last line
    reads dE/dθ_p += Σ_{b,o} U[b, p, o] D[b, o] dE/dy[b, o] over the output neurons o.

    The weights: where the storage's dense view shares the parameter's memory (the dense
    layout) the products read it in place (an optimizer's in-place update is seen at once);
    otherwise the edge values are copied into an N×N buffer before every element.  When every
    (neuron, free neuron) pair is an edge (a full mesh), S̃_n is added on a diagonal of a view
    of V and gradients are written through the storage's (N, F) edge grid.
    """

    def __init__(self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int) -> None:
        self.dyn, self.storage = dyn, storage
        C, F, O = dyn.n_clamped, dyn.n_free, dyn.n_outputs
        N = C + F
        theta = theta.detach()
        dtype, dev = theta.dtype, theta.device
        src, dst = edge_index(dyn, dev)
        P = len(src)
        self.P, self.B, self.C, self.F, self.O, self.N = P, batch, C, F, O, N
        self.src = src
        self.flat_edges = src * N + dst + C  # position of edge p in A.view(-1)
        self.scatter_at = dst * P + torch.arange(P, device=dev)  # position in V[b].view(-1)
        self.full = P == N * F  # every (i, free j) pair an edge, p = i·F + j
        self._bind(theta)
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
        self.w_scalar = 0.0
        self._grid: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (out, its grid)

    def _bind(self, theta: torch.Tensor) -> None:
        """The N×N weights the products read, and their views (see the class docstring)."""
        dense = self.storage.dense(theta)
        self.shared = dense.data_ptr() == theta.data_ptr() and dense.shape == (self.N, self.N)
        self.ptr = theta.data_ptr()
        if self.shared:
            self.A = dense  # a view of the parameter: in-place updates are seen
            # entries off the edges are 0 by the storage's invariant; a full mesh has none
            self.masked = dense if self.full else torch.empty_like(dense)
            self.mask = self.dyn.mask_like(dense)
        else:
            self.A = dense.clone()  # our own buffer, the edges refreshed before each element
            self.masked = self.A
        self.W_free = self.masked[:, self.C :]  # (N, F): T_n = S_{n-1} A[:, C:]
        self.A_fT = self.masked[self.C :, self.C :].T.unsqueeze(0)  # (1, F, F) view: A_fᵀ

    def refresh(self, theta: torch.Tensor) -> None:
        """Read the current weights (before an element)."""
        if self.shared:
            if theta.data_ptr() != self.ptr:  # the parameter's memory was replaced
                self._bind(theta.detach())
            if self.masked is not self.A:
                torch.mul(self.A, self.mask, out=self.masked)
        else:
            self.A.view(-1).index_copy_(
                0, self.flat_edges, self.storage.edge_values(theta.detach())
            )

    def reset(self) -> None:
        """A new stream: h = 0, sensitivities 0."""
        self.h.zero_()
        self.bank.V.zero_()
        self.D.fill_(1.0)

    def sensitivities(self) -> torch.Tensor:
        """Z = ∂h/∂θ_p (B, P, F) after the last tick (Eq. 17's Z_n = U_n D_n; a new tensor)."""
        return self.bank.V.transpose(1, 2) * self.D.unsqueeze(1)

    def enter(self, Z: torch.Tensor) -> None:
        """Carry the sensitivities Z (B, P, F) as they are: U = Z with D = 1 (Z_n = U_n D_n)."""
        if tuple(Z.shape) != (self.B, self.P, self.F):
            raise ValueError(
                f"state.sensitivities must have shape {(self.B, self.P, self.F)}, "
                f"got {tuple(Z.shape)}"
            )
        self.bank.V.copy_(Z.transpose(1, 2))
        self.D.fill_(1.0)

    def advance(self, x: torch.Tensor) -> None:
        """Present one element x (B, I) for ``ticks`` ticks: Eq. 3 and Eq. 17 in place (the
        weights read by :meth:`refresh` before)."""
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
        """Σ over the masked samples of mean_o (y − t)², and w = scale · (y − t) ⊙ D_out kept
        for :meth:`contract` (scale = 2/O times the caller's weight: dE/dy = 2(y − t)/O)."""
        err = torch.sub(self.y, target, out=self.err)
        if mask is not None:
            err.mul_(mask.unsqueeze(1))
        torch.addcmul(self.zeros_out, err, self.D_out, value=scale, out=self.w)
        if self.err_flat.numel() == 1:
            e = float(err)
            return e * e
        return float(torch.dot(self.err_flat, self.err_flat)) / self.O

    def scalar_mse(self, target: torch.Tensor, scale: float) -> float:
        """B = O = 1: the loss (y − t)² with w = scale · 2 (y − t) D_out kept on the host
        (:attr:`w_scalar`): the quantities of :meth:`mse_output_gradient`, as three reads."""
        err = float(self.y) - float(target)
        self.w_scalar = scale * 2.0 * err * float(self.D_out)
        return err * err

    def output_gradient(self, g: torch.Tensor) -> None:
        """w = g ⊙ D_out for a given dE/dy g (B, O) (any loss)."""
        torch.mul(g, self.D_out, out=self.w)

    def contract(self, out: torch.Tensor, beta: float) -> None:
        """out (P,) ← beta · out + Σ_{b,o} U[b, p, o] w[b, o]  (= Σ Z[b, p, o] dE/dy[b, o])."""
        bank = self.bank
        if bank.out_matrix is not None:
            out.addmv_(bank.out_matrix, self.w[0], beta=beta)
        elif beta == 0.0:
            torch.sum(torch.bmm(self.w_row, bank.out), dim=(0, 1), out=out)
        else:
            out.add_(torch.bmm(self.w_row, bank.out).sum(dim=(0, 1)))

    def contract_scalar(self, out: torch.Tensor, beta: float) -> None:
        """:meth:`contract` for B = O = 1 with the host scalar w (:meth:`scalar_mse`)."""
        row = self.bank.out_row
        assert row is not None
        if beta == 0.0:
            torch.mul(row, self.w_scalar, out=out)
        else:
            out.add_(row, alpha=self.w_scalar)

    def grid(self, out: torch.Tensor) -> torch.Tensor | None:
        """The storage's (N, F) edge grid of ``out`` (full meshes), the view kept while the
        caller passes the same buffer."""
        cached = self._grid
        if cached is None or cached[0] is not out:
            cached = self._grid = (out, self.storage.edge_grid(out) if self.full else None)
        return cached[1]

    def write(self, out: torch.Tensor) -> None:
        """out (storage shape) ← grad_edges at the edges."""
        grid = self.grid(out)
        if grid is not None and self.grad_block is not None:
            grid.copy_(self.grad_block)
        else:
            self.storage.write_edge_values(out, self.grad_edges)

    def write_scalar(self, out: torch.Tensor) -> None:
        """out ← w · U_out at the edges (B = O = 1 on a full mesh: one multiply on the grid)."""
        grid = self.grid(out)
        assert grid is not None and self.bank.out_grid is not None
        torch.mul(self.bank.out_grid, self.w_scalar, out=grid)

    def finite(self) -> bool:
        """Whether the carried sensitivities are finite (a sum: NaN and inf propagate)."""
        return math.isfinite(float(self.bank.V.sum()))


class RTRLCarry(StreamCarry):
    """A stream of RTRL (:class:`RTRLStepper`).  The contribution of the element just fed is
    contracted lazily — when the next element arrives, or by :meth:`gradient` — so that a
    gradient asked for right after one element is written straight into ``out`` (the optimizer
    step after every element: no accumulator traffic)."""

    def __init__(self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int) -> None:
        super().__init__(dyn, storage, batch)
        self.stepper = RTRLStepper(dyn, storage, theta, batch)
        self.y = self.stepper.y
        self._pending = 0  # 0: nothing; 1: w fed, not contracted; 2: the host scalar w
        self._accumulated = False  # grad_edges holds a sum

    @property
    def h(self) -> torch.Tensor:
        return self.stepper.h

    @property
    def sensitivities(self) -> torch.Tensor:
        return self.stepper.sensitivities()

    def enter(self, h, sensitivities=None):
        self._flush()
        if h is None:
            self.stepper.h.zero_()
        else:
            self.stepper.h.copy_(h)
        if sensitivities is None:
            self.stepper.bank.V.zero_()
            self.stepper.D.fill_(1.0)
        else:
            self.stepper.enter(sensitivities)

    def reset(self) -> None:
        self._flush()
        self.stepper.reset()

    def _flush(self) -> None:
        """Contract the pending element into grad_edges (Algorithm 1's last line)."""
        if self._pending:
            beta = 1.0 if self._accumulated else 0.0
            if self._pending == 2:
                self.stepper.contract_scalar(self.stepper.grad_edges, beta)
            else:
                self.stepper.contract(self.stepper.grad_edges, beta)
            self._pending, self._accumulated = 0, True

    def advance(self, theta, x):
        if self._pending:
            self._flush()
        stepper = self.stepper
        stepper.refresh(theta)
        stepper.advance(x)
        return stepper.y

    def feed(self, theta, grad_y):
        if self._pending:
            self._flush()
        self.stepper.output_gradient(grad_y)
        self._pending = 1

    def feed_mse(self, theta, target, mask, scale):
        if self._pending:
            self._flush()
        stepper = self.stepper
        if stepper.scalar and mask is None:
            value = stepper.scalar_mse(target, scale)
            self._pending = 2
            return value
        value = stepper.mse_output_gradient(target, mask, 2.0 * scale / stepper.O)
        self._pending = 1
        return value

    def gradient(self, theta, out=None):
        stepper = self.stepper
        if out is None:
            out = torch.zeros(
                self.storage.shape, dtype=stepper.grad_edges.dtype, device=stepper.grad_edges.device
            )
        if self._pending == 2 and not self._accumulated and stepper.scalar:
            stepper.write_scalar(out)  # one element, B = O = 1: straight onto the grid
        else:
            if not self._pending and not self._accumulated:
                stepper.grad_edges.zero_()
            self._flush()
            stepper.write(out)
        self._pending, self._accumulated = 0, False
        return out

    def finite(self) -> bool:
        return self.stepper.finite()

    def state_dict(self) -> dict[str, Any]:
        self._flush()  # the pending element contracted now rather than at the next one
        s = self.stepper
        grad = s.grad_edges.clone() if self._accumulated else torch.zeros_like(s.grad_edges)
        return {"h": s.h.clone(), "carried": s.bank.V.clone(), "slopes": s.D.clone(), "grad": grad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = self.stepper
        for key, buffer in (("h", s.h), ("carried", s.bank.V), ("slopes", s.D)):
            self._restore(key, buffer, state[key])
        self._restore("grad", s.grad_edges, state["grad"])
        self._pending, self._accumulated = 0, True


class RTRL(StreamMethod):
    """ "fop": RTRL, exact through the whole past, on the dense or the pattern representation,
    whichever :func:`~meshprop.streams.cost.fop_cost` finds cheaper (module docstring)."""

    name = "fop"
    online = True

    def start(self, dyn, storage, theta, batch):
        if cost_for(dyn.topology, batch, theta.element_size()).representation == "pattern":
            plan = pattern_plan(dyn.topology, None)
            return PatternCarry(dyn, storage, theta, batch, plan, exact=True)
        return RTRLCarry(dyn, storage, theta, batch)

    def estimate_bytes(self, dyn, storage, batch, itemsize, length=1):
        return cost_for(dyn.topology, batch, itemsize).bytes

    def describe_cost(self, dyn, batch, itemsize) -> str:
        """One line for the memory guard's message: the representation and its size."""
        return cost_for(dyn.topology, batch, itemsize).describe()
