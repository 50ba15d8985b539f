r"""Method "uoro": Unbiased Online Recurrent Optimization (Tallec & Ollivier, ICLR 2018) on a mesh.

RTRL (method "fop") carries the F×P sensitivities J = ∂h/∂θ.  UORO carries, per stream, a
rank-one estimate J ≈ h̃ θ̃ᵀ (h̃: F numbers, θ̃: P numbers, one per edge) that is unbiased,
E[h̃ θ̃ᵀ] = J.  A tick h_n = φ̂(T_n), T_n = S_{n-1} A[:, free] (paper 000 Eq. 3), has the
Jacobians ∂h_n/∂h_{n-1} h̃ = D_n ⊙ (h̃ A_f) (D_n = φ′(T_n)) and, for edge p = (i_p → j_p),
∂h_n[j_p]/∂w_p = D_n[j_p] S_{n-1}[i_p].  With fresh random signs ν ∈ {−1, +1}^F each tick,

    g_ν[p] = (ν ⊙ D_n)[j_p] · S_{n-1}[i_p]                       (νᵀ ∂h_n/∂θ, per stream)
    ρ0 = √((‖θ̃‖ + ε) / (‖D_n ⊙ (h̃ A_f)‖ + ε)),    ρ1 = √((‖g_ν‖ + ε) / (‖ν‖ + ε))
    h̃ ← ρ0 · D_n ⊙ (h̃ A_f) + ρ1 · ν,        θ̃ ← θ̃ / ρ0 + g_ν / ρ1

(the paper's Algorithm 1 with its variance-minimising scalings; ε = 1e-7).  E[ν νᵀ] = I and the
cross terms are odd in ν (ρ1 is even in ν), so E[h̃ θ̃ᵀ] = J after every tick by induction.
After an element with a loss, dE/dθ_p += Σ_b (dE/dy_b · h̃_b[outputs]) θ̃_b[p]: an unbiased
estimate of RTRL's gradient, noisy (its variance grows with the network and the horizon).

``seed`` fixes the signs: the carry owns a ``torch.Generator`` seeded with it (None: seeded from
torch's global generator), saved by ``state_dict`` so that a resumed stream draws the same signs.

Cost per tick and stream: one forward tick, one forward product of the tangent h̃ through A_f
(the layout's ``Transition``), and O(P) per-edge work for g_ν and θ̃ (gather, multiply, two
norms) — about twice plain inference.  Memory O(B·(F + P)), flat in the stream's length.
"""

from __future__ import annotations

from typing import Any

import torch

from ..dynamics import Dynamics
from ..engines.edge_ops import edge_index_of
from ..layout import Layout
from .protocol import StateCarry, StreamMethod, take_edge_gradient

__all__ = ["UORO", "UOROCarry"]

#: ε of the scalings ρ0, ρ1 (keeps them finite while h̃ or θ̃ is 0)
EPSILON = 1e-7


class UOROCarry(StateCarry):
    """A stream of UORO: h, the rank-one factors h̃ (B, F) and θ̃ (B, P), the sign generator
    and the edge gradient (module docstring)."""

    def __init__(
        self,
        dyn: Dynamics,
        storage: Layout,
        theta: torch.Tensor,
        batch: int,
        seed: int | None,
    ) -> None:
        super().__init__(dyn, storage, batch, theta)
        dev, dtype = theta.device, theta.dtype
        F, P = dyn.n_free, dyn.topology.n_edges
        self.index = edge_index_of(dyn.topology, dev)
        self.generator = torch.Generator(device=dev)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        self.generator.manual_seed(int(seed))
        self.h_tilde = torch.zeros(batch, F, dtype=dtype, device=dev)
        self.theta_tilde = torch.zeros(batch, P, dtype=dtype, device=dev)
        self.grad_edges = torch.zeros(P, dtype=dtype, device=dev)

    def enter(self, h, sensitivities=None):
        self.enter_state(h)
        self.h_tilde.zero_()
        self.theta_tilde.zero_()

    def reset(self) -> None:
        self.enter(None)

    def _signs(self) -> torch.Tensor:
        """ν: one random sign per stream and free neuron."""
        bits = torch.randint(
            0, 2, self.h_tilde.shape, generator=self.generator, device=self.h_tilde.device
        )
        return bits.to(self.h_tilde.dtype).mul_(2.0).sub_(1.0)

    def advance(self, theta, x):
        dyn = self.dyn
        tr = self.storage.transition(dyn, theta.detach())
        src, dst = self.index.src, self.index.dst
        c = dyn.clamped_state(x, 1)
        drive = tr.drive(c)
        no_drive = tr.drive(torch.zeros_like(c))  # the tangent has no clamped part
        h, ht, tt = self._h, self.h_tilde, self.theta_tilde
        for _ in range(dyn.ticks):
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(tr.pre_activation(drive, h))  # Eq. 3
            Jh = tr.pre_activation(no_drive, ht).mul_(D)  # ∂h_n/∂h_{n-1} h̃
            nu = self._signs()
            g_nu = (nu * D)[:, dst] * S_prev[:, src]  # νᵀ ∂h_n/∂θ, (B, P)
            rho0 = ((tt.norm(dim=1) + EPSILON) / (Jh.norm(dim=1) + EPSILON)).sqrt_()
            rho1 = ((g_nu.norm(dim=1) + EPSILON) / (nu.norm(dim=1) + EPSILON)).sqrt_()
            ht = Jh.mul_(rho0.unsqueeze(1)).addcmul_(nu, rho1.unsqueeze(1))
            tt = (tt / rho0.unsqueeze(1)).addcdiv_(g_nu, rho1.unsqueeze(1))
        self.h_tilde, self.theta_tilde = ht, tt
        self.set_state(h)
        return self.y

    def feed(self, theta, grad_y):
        """dE/dθ += Σ_b (dE/dy_b · h̃_b[outputs]) θ̃_b."""
        O = self.dyn.n_outputs
        scale = (grad_y.to(self.h_tilde.dtype) * self.h_tilde[:, -O:]).sum(dim=1)  # (B,)
        self.grad_edges.addmv_(self.theta_tilde.T, scale)

    def gradient(self, theta, out=None):
        return take_edge_gradient(self.storage, self.grad_edges, out)

    def finite(self) -> bool:
        return bool(torch.isfinite(self.theta_tilde).all() and torch.isfinite(self.h_tilde).all())

    def state_dict(self) -> dict[str, Any]:
        return {
            "h": self._h.clone(),
            "h_tilde": self.h_tilde.clone(),
            "theta_tilde": self.theta_tilde.clone(),
            "grad": self.grad_edges.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore("h", self._h, state["h"])
        self._restore("h_tilde", self.h_tilde, state["h_tilde"])
        self._restore("theta_tilde", self.theta_tilde, state["theta_tilde"])
        self._restore("grad", self.grad_edges, state["grad"])
        self.generator.set_state(state["generator"].clone())


class UORO(StreamMethod):
    """ "uoro": the unbiased rank-one estimate of RTRL's sensitivities (module docstring)."""

    name = "uoro"
    online = True
    options = ("seed",)

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"method 'uoro' takes seed=an integer or None, got {seed!r}")
        super().__init__(seed=seed)
        self.seed = seed

    def start(self, dyn, storage, theta, batch):
        return UOROCarry(dyn, storage, theta, batch, self.seed)

    def estimate_bytes(self, dyn, storage, batch, itemsize, length=1):
        topo = dyn.topology
        P, N, F = topo.n_edges, topo.n_neurons, topo.n_free
        floats = batch * (4 * P + 8 * F + 2 * N) + 2 * P
        return itemsize * floats
