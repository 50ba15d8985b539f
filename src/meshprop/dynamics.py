"""The state transition every engine computes: paper 000 Eq. 3 with clamped inputs.

Neurons split into the C clamped neurons (data inputs and bias) and the F free neurons (hidden
and outputs).  With S_{n-1} = [c_{n-1} | h_{n-1}] the tick is

    T_n = S_{n-1} A[:, C:] = c_{n-1} A_c + h_{n-1} A_f,        h_n = φ̂(T_n)          (Eq. 3)

where c_{n-1} = [x_{n-1}, 1] (inputs set before every tick, bias = 1), h_0 = 0,
A_c = A[:C, C:] and A_f = A[C:, C:].  Columns 0..C-1 of A are always zero (no edge may enter a
clamped neuron), so no engine ever carries them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .activations import NeuronActivations
from .finite import require_finite
from .topology import Topology

__all__ = ["Dynamics"]


@dataclass(frozen=True)
class Dynamics:
    """Everything an engine needs besides A and x: topology, tick count and φ̂."""

    topology: Topology
    ticks: int
    activations: NeuronActivations

    def __post_init__(self) -> None:
        if isinstance(self.ticks, bool) or not isinstance(self.ticks, int):
            raise TypeError(f"ticks must be an integer, got {type(self.ticks).__name__}")
        if self.ticks < 1:
            raise ValueError(f"ticks must be >= 1, got {self.ticks}")
        if len(self.activations.names) != self.topology.n_free:
            raise ValueError("one activation per free (hidden/output) neuron is required")

    # ------------------------------------------------------------------ sizes
    @property
    def n_clamped(self) -> int:
        return self.topology.n_clamped

    @property
    def n_free(self) -> int:
        return self.topology.n_free

    @property
    def n_outputs(self) -> int:
        return self.topology.n_outputs

    # ----------------------------------------------------------------- inputs
    def check_input(
        self, x: torch.Tensor, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Validate x — (B, I) used at every tick or (T, B, I), one per tick — and move it to
        the network's dtype and device.  Raises ValueError/TypeError naming what was expected."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        I, T = self.topology.n_inputs, self.ticks
        if x.dim() == 2:
            if x.shape[1] != I:
                raise ValueError(
                    f"x has {x.shape[1]} features per sample but the network has {I} inputs: "
                    f"expected shape (B, {I}) or ({T}, B, {I})"
                )
        elif x.dim() == 3:
            if x.shape[0] != T or x.shape[2] != I:
                raise ValueError(
                    f"per-tick input must have shape (ticks={T}, B, inputs={I}), "
                    f"got {tuple(x.shape)}"
                )
        else:
            raise ValueError(
                f"x must have shape (B, {I}) or ({T}, B, {I}), got {x.dim()}-D shape "
                f"{tuple(x.shape)}"
            )
        if x.shape[-2] < 1:
            raise ValueError("x holds an empty batch (B = 0)")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
        # NaN/inf are refused on the plain data even under torch.func.vmap (meshprop.finite);
        # the data-dependent check is skipped while torch.export / torch.compile trace the model
        return require_finite(x.to(device=device, dtype=dtype))

    @staticmethod
    def batch_size(x: torch.Tensor) -> int:
        return x.shape[-2]

    def clamped_state(self, x: torch.Tensor, tick: int) -> torch.Tensor:
        """c_{n-1}: the clamped neurons' state entering tick ``tick`` (1-based), shape (B, C)."""
        x_n = x[tick - 1] if x.dim() == 3 else x
        if not self.topology.bias:
            return x_n
        ones = torch.ones(x_n.shape[0], 1, dtype=x_n.dtype, device=x_n.device)
        return torch.cat([x_n, ones], dim=1)

    # ------------------------------------------------------------------ masks
    def mask_like(self, A: torch.Tensor) -> torch.Tensor:
        """The topology mask as a tensor of A's dtype and device."""
        return self.topology.dense_mask().to(device=A.device, dtype=A.dtype)

    def split(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_c, A_f) of the *masked* A: the blocks feeding the free neurons."""
        Am = A * self.mask_like(A)
        C = self.n_clamped
        return Am[:C, C:], Am[C:, C:]

    def trajectory(self, A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """All states S_0..S_T, shape (T+1, B, N), computed without gradients.

        S_n holds the state after tick n; its clamped part shows the input of tick n+1 (for
        S_T, the last input), i.e. the clamping that precedes every tick.
        """
        A_c, A_f = self.split(A)
        B = self.batch_size(x)
        h = torch.zeros(B, self.n_free, dtype=A.dtype, device=A.device)
        states = []
        for n in range(1, self.ticks + 1):
            c = self.clamped_state(x, n)
            states.append(torch.cat([c, h], dim=1))
            h, _ = self.activations(c @ A_c + h @ A_f)
        states.append(torch.cat([self.clamped_state(x, self.ticks), h], dim=1))
        return torch.stack(states)

    def output(self, A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y = S_T restricted to the output neurons, without gradients."""
        A_c, A_f = self.split(A)
        h = torch.zeros(self.batch_size(x), self.n_free, dtype=A.dtype, device=A.device)
        for n in range(1, self.ticks + 1):
            h, _ = self.activations(self.clamped_state(x, n) @ A_c + h @ A_f)
        return h[:, self.n_free - self.n_outputs :]
