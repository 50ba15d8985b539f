"""Synaptic filters w(q⁻¹) of paper 004 Eq. 12, built from primitive blocks.

* Case I, a scalar weight: ``Gain``.
* Case II, FIR: w(q⁻¹) = Σ_{m=0}^{M} w(m) q⁻ᵐ.  A layer of FIR synapses from n_in to n_out
  neurons (Wan 1993) is a tapped delay line followed by one gain over all taps:
  s(k) = Σ_m x(k−m) W_m = [x(k) | … | x(k−M)] W.
* Case III, IIR: w(q⁻¹) = Σ_{m=0}^{M} a(m) q⁻ᵐ / (1 − Σ_{m=1}^{N} b(m) q⁻ᵐ), one filter per
  channel (direct form): s(k) = Σ_m a(m) ⊙ u(k−m) + Σ_{m≥1} b(m) ⊙ s(k−m), the feedback loop
  closed through a unit delay.

Being made of primitive blocks, their reciprocals come from the six rules with no extra code:
the reciprocal FIR filters δ backward through w(q⁺¹) (Fig. 4b), the reciprocal IIR runs its
recursion backward in time (Fig. 4d, Eq. 13).
"""

from __future__ import annotations

import torch

from .block import Port
from .delays import Delay, TappedDelayLine
from .gains import DiagGain, Gain
from .graph import Graph
from .junctions import Sum

__all__ = ["fir_synapse", "iir_synapse", "tap_sum_matrix"]


def fir_synapse(
    d: Graph, source: Port, out_width: int, taps: int, name: str, seed: int | None = None
) -> Port:
    """FIR synapses (Case II) from ``source`` to ``out_width`` neurons with ``taps`` delays;
    trainable taps W of shape ((taps+1)·in, out) in block ``{name}_W``."""
    in_width = d.blocks[source.block].out_widths[source.index]
    line = d.add(TappedDelayLine(in_width, taps), source, name=f"{name}_tdl")
    return d.add(Gain(in_width * (taps + 1), out_width, seed=seed), line, name=f"{name}_W")


def tap_sum_matrix(width: int, taps: int) -> torch.Tensor:
    """The fixed matrix that adds the taps of [v_0 | … | v_taps−1] channel by channel."""
    return torch.eye(width, dtype=torch.float64).repeat(taps, 1)


def iir_synapse(
    d: Graph,
    source: Port,
    a_taps: int,
    b_taps: int,
    name: str,
    seed: int | None = None,
    feedback_scale: float = 0.3,
) -> Port:
    """Per-channel IIR synapses (Case III) with numerator taps a(0..a_taps) and feedback taps
    b(1..b_taps); trainable coefficients in ``{name}_a`` and ``{name}_b``.  The b(m) start
    uniform in ±feedback_scale/b_taps, so Σ|b(m)| < 1 and the initial filter is stable."""
    if b_taps < 1:
        raise ValueError(f"an IIR synapse needs b_taps >= 1, got {b_taps}")
    w = d.blocks[source.block].out_widths[source.index]
    g = None if seed is None else torch.Generator().manual_seed(int(seed))
    a0 = 2 * torch.rand(w * (a_taps + 1), generator=g, dtype=torch.float64) - 1
    b0 = (2 * torch.rand(w * b_taps, generator=g, dtype=torch.float64) - 1) * (
        feedback_scale / b_taps
    )
    line = d.add(TappedDelayLine(w, a_taps), source, name=f"{name}_xtdl")
    num = d.add(DiagGain(w * (a_taps + 1), a0), line, name=f"{name}_a")
    num = d.add(
        Gain(w * (a_taps + 1), w, tap_sum_matrix(w, a_taps + 1), trainable=False),
        num,
        name=f"{name}_asum",
    )
    s = d.add(Sum(2, w), num, None, name=f"{name}_sum")
    past = d.add(Delay(w), s, name=f"{name}_z")
    past = d.add(TappedDelayLine(w, b_taps - 1), past, name=f"{name}_ytdl")
    fb = d.add(DiagGain(w * b_taps, b0), past, name=f"{name}_b")
    fb = d.add(
        Gain(w * b_taps, w, tap_sum_matrix(w, b_taps), trainable=False), fb, name=f"{name}_bsum"
    )
    d.connect(fb, s.block, 1)
    return s
