"""Step a diagram through time.

At every step k the blocks are evaluated in the topological order of the delay-free graph
(``Diagram.validate``): Input blocks read their feed, delays emit their state, every other block
maps its input signals to output signals; then every stateful block updates its state with its
inputs at k.  The reciprocal network is simulated by the same loop with the clock reversed
(k = T−1, …, 0), where unit advances behave as unit delays.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .blocks import Input

__all__ = ["Trace", "check_inputs", "simulate"]


class Trace:
    """Every signal of a forward run, by output port and time: what the reciprocal network's
    time-varying gains read (φ′(a(k)), F′(k), x(k) for weight gradients)."""

    def __init__(self, diagram) -> None:
        self.edges = dict(diagram.edges)
        self.signals: dict[tuple[str, int], list[torch.Tensor]] = {}

    def input(self, block: str, port: int, k: int) -> torch.Tensor:
        return self.signals[self.edges[(block, port)]][k]


def check_inputs(diagram, inputs) -> dict[str, torch.Tensor]:
    """Validate the feeds: one (T, B, width) real, finite tensor per Input block, same T and B."""
    names = diagram.input_names
    if isinstance(inputs, torch.Tensor):
        if len(names) != 1:
            raise ValueError(f"the diagram has inputs {names}: pass a dict name -> (T, B, width)")
        inputs = {names[0]: inputs}
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"inputs must be a tensor or a dict of tensors, got {type(inputs).__name__}"
        )
    if set(inputs) != set(names):
        raise ValueError(f"inputs must be given for exactly {sorted(names)}, got {sorted(inputs)}")
    dtype, device = diagram.dtype, diagram.device
    feeds: dict[str, torch.Tensor] = {}
    shape = None
    for name in names:
        x = inputs[name]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input {name!r} must be a torch.Tensor, got {type(x).__name__}")
        width = diagram.blocks[name].out_widths[0]
        if x.dim() != 3 or x.shape[2] != width:
            raise ValueError(
                f"input {name!r} must have shape (T, B, {width}), got {tuple(x.shape)}"
            )
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"input {name!r} is empty: shape {tuple(x.shape)}")
        if shape is not None and x.shape[:2] != shape:
            raise ValueError(
                f"all inputs must share (T, B); {name!r} has {tuple(x.shape[:2])}, "
                f"expected {tuple(shape)}"
            )
        shape = x.shape[:2]
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"input {name!r} must hold real numbers, got dtype {x.dtype}")
        x = x.to(dtype=dtype, device=device)
        if not torch.isfinite(x).all():
            raise ValueError(f"input {name!r} contains NaN or inf")
        feeds[name] = x
    return feeds


def _check_initial(diagram, initial_states) -> dict:
    initial_states = dict(initial_states or {})
    unknown = set(initial_states) - set(diagram.blocks)
    if unknown:
        raise ValueError(f"initial_states names unknown blocks {sorted(unknown)}")
    return initial_states


def simulate(diagram, feeds, initial_states=None, record: bool = False, reverse: bool = False):
    """Run ``diagram`` on validated ``feeds``; return ({output name: (T, B, w)}, Trace or None)."""
    order = diagram.validate()
    initial_states = _check_initial(diagram, initial_states)
    first = next(iter(feeds.values()))
    T, B = first.shape[:2]
    dtype, device = first.dtype, first.device
    blocks = diagram.blocks
    edges = diagram.edges
    states = {n: blocks[n].init_state(B, dtype, device, initial_states.get(n)) for n in order}
    stateful = [n for n in order if states[n] is not None]
    outputs = {n: [None] * T for n in diagram.output_names}
    trace = Trace(diagram) if record else None
    steps = range(T - 1, -1, -1) if reverse else range(T)
    if record:
        for n in order:
            for j in range(len(blocks[n].out_widths)):
                trace.signals[(n, j)] = [None] * T
    for k in steps:
        sig: dict[tuple[str, int], torch.Tensor] = {}
        for n in order:
            b = blocks[n]
            if isinstance(b, Input):
                sig[(n, 0)] = feeds[n][k]
                continue
            ins = [sig[edges[(n, i)]] for i in range(len(b.in_widths))] if b.feedthrough else None
            for j, o in enumerate(b.outputs(ins, states[n], k)):
                sig[(n, j)] = o
            if n in outputs:
                outputs[n][k] = ins[0]
        for n in stateful:
            b = blocks[n]
            ins = [sig[edges[(n, i)]] for i in range(len(b.in_widths))]
            states[n] = b.update(ins, states[n], k)
        if record:
            for port, value in sig.items():
                trace.signals[port][k] = value
    return {n: torch.stack(v) for n, v in outputs.items()}, trace
