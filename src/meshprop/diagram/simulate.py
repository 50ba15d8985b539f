"""Step a diagram through time: the one loop every run of a network or of its reciprocal uses.

At every step k the blocks are evaluated in the order of ``Graph.schedule`` (the topological
order of the delay-free graph; a loop closed only through the delayed taps of a tapped delay
line is swept several times, the last sweep exact): Input blocks read their feed, delays emit
their state, every other block maps its input signals to output signals; then every stateful
block updates its state with its inputs at k.  The reciprocal network runs through the same
loop with the clock reversed (k = T−1, …, 0, paper 004 §3.2), where unit advances step like
unit delays.

What a "signal" is depends on the :class:`Stepper`: a tensor for a plain run (:class:`Run`,
which can also record what every reciprocal block will need), a (value, sensitivity) pair for
the forward gradient method (``meshprop.diagram.methods``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .block import Block, Tape
from .graph import Graph
from .terminals import Input

__all__ = ["Run", "Stepper", "check_initial", "check_inputs", "simulate", "stack", "walk"]


class Stepper(Protocol):
    """How one block steps: ``walk`` calls these for every block at every step."""

    def init(
        self, name: str, block: Block, batch: int, dtype: torch.dtype, device: torch.device, initial
    ) -> Any: ...

    def feed(self, name: str, k: int) -> Any: ...

    def outputs(
        self, name: str, block: Block, inputs: list | None, state: Any, k: int, final: bool = True
    ) -> list: ...

    def placeholder(
        self, width: int, batch: int, dtype: torch.dtype, device: torch.device
    ) -> Any: ...

    def update(self, name: str, block: Block, inputs: list, state: Any, k: int) -> Any: ...


def by_name(values: object, names: list[str], kind: str) -> Mapping[str, object]:
    """``values`` as {name: value} for exactly ``names``: a lone tensor stands for the only
    one; ``kind`` ("inputs", "targets") names them in errors."""
    if isinstance(values, torch.Tensor):
        if len(names) != 1:
            raise ValueError(
                f"the diagram has {kind} {names}: pass a dict name -> (T, B, width) tensor"
            )
        values = {names[0]: values}
    if not isinstance(values, Mapping):
        raise TypeError(
            f"{kind} must be a tensor or a dict of tensors, got {type(values).__name__}"
        )
    if set(values) != set(names):
        raise ValueError(f"{kind} must be given for exactly {sorted(names)}, got {sorted(values)}")
    return values


def check_inputs(graph: Graph, inputs) -> dict[str, torch.Tensor]:
    """Validate the feeds: one (T, B, width) real, finite tensor per Input block, same T and B;
    cast to the diagram's dtype and device."""
    names = graph.input_names
    inputs = by_name(inputs, names, "inputs")
    dtype, device = graph.dtype, graph.device
    feeds: dict[str, torch.Tensor] = {}
    shape = None
    for name, width in zip(names, graph.input_widths(), strict=True):
        x = inputs[name]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input {name!r} must be a torch.Tensor, got {type(x).__name__}")
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


def check_initial(graph: Graph, initial_states: Mapping[str, Any] | None) -> dict[str, Any]:
    """{block name: initial state}, every name a block of ``graph``."""
    initial = dict(initial_states or {})
    unknown = set(initial) - set(graph.blocks)
    if unknown:
        raise ValueError(f"initial_states names unknown blocks {sorted(unknown)}")
    return initial


def walk(
    graph: Graph,
    feeds: Mapping[str, torch.Tensor],
    stepper: Stepper,
    initial_states: Mapping[str, Any] | None = None,
    reverse: bool = False,
) -> dict[str, list[Any]]:
    """Step ``graph`` over the T steps of ``feeds`` ((T, B, width) by Input name); return the
    signal reaching every output at every step ({output name: [signal at k]})."""
    schedule = graph.schedule()
    order = graph.validate()
    initial = check_initial(graph, initial_states)
    first = next(iter(feeds.values()))
    T, B = first.shape[:2]
    blocks, edges = graph.blocks, graph.edges
    states = {
        n: stepper.init(n, blocks[n], B, first.dtype, first.device, initial.get(n)) for n in order
    }
    stateful = [n for n in order if states[n] is not None]
    results: dict[str, list[Any]] = {n: [None] * T for n in graph.output_names}
    for k in range(T - 1, -1, -1) if reverse else range(T):
        sig: dict[tuple[str, int], Any] = {}
        for n, final in schedule:
            b = blocks[n]
            if isinstance(b, Input):
                sig[(n, 0)] = stepper.feed(n, k)
                continue
            ins = None
            if b.feedthrough:  # a provisional sweep of a loop may read a signal not computed yet
                ins = [
                    sig[edges[(n, i)]]
                    if edges[(n, i)] in sig
                    else stepper.placeholder(w, B, first.dtype, first.device)
                    for i, w in enumerate(b.in_widths)
                ]
            for j, o in enumerate(stepper.outputs(n, b, ins, states[n], k, final)):
                sig[(n, j)] = o
            if n in results:
                assert ins is not None
                results[n][k] = ins[0]
        for n in stateful:
            b = blocks[n]
            ins = [sig[edges[(n, i)]] for i in range(len(b.in_widths))]
            states[n] = stepper.update(n, b, ins, states[n], k)
    return results


@dataclass
class Run:
    """Plain steps: signals are tensors; block ``n`` gets ``args[n]`` as its ``p`` (its
    parameters, or a reciprocal block's Tape).  With ``record``, every block's ``record`` runs
    instead of ``outputs`` and what it returns is kept in ``saved`` ({block: [saved at k]})."""

    feeds: Mapping[str, torch.Tensor]
    args: Mapping[str, Any]
    record: bool = False
    saved: dict[str, list[Any]] = field(default_factory=dict)

    def init(self, name, block, batch, dtype, device, initial):
        return block.init_state(batch, dtype, device, initial)

    def feed(self, name: str, k: int) -> torch.Tensor:
        return self.feeds[name][k]

    def placeholder(self, width, batch, dtype, device):
        return torch.zeros(batch, width, dtype=dtype, device=device)

    def outputs(self, name, block, inputs, state, k, final=True):
        p = self.args.get(name, {})
        if not final and isinstance(p, Tape):  # a provisional sweep accumulates no gradient
            p = Tape(p.params, p.saved)
        if not self.record:
            return block.outputs(p, inputs, state, k)
        outs, saved = block.record(p, inputs, state, k)
        if saved is not None:
            if name not in self.saved:
                self.saved[name] = [None] * len(next(iter(self.feeds.values())))
            self.saved[name][k] = saved
        return outs

    def update(self, name, block, inputs, state, k):
        return block.update(self.args.get(name, {}), inputs, state, k)


def stack(results: Mapping[str, Sequence[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{output: (T, B, width)} from the per-step signals of ``walk``."""
    return {n: torch.stack(list(v)) for n, v in results.items()}


def simulate(
    graph: Graph,
    feeds: Mapping[str, torch.Tensor],
    args: Mapping[str, Any],
    initial_states: Mapping[str, Any] | None = None,
    record: bool = False,
    reverse: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, list[Any]]]:
    """Run ``graph`` on validated ``feeds``: ({output: (T, B, width)}, what ``record`` kept)."""
    run = Run(feeds, args, record)
    outs = stack(walk(graph, feeds, run, initial_states, reverse))
    return outs, run.saved
