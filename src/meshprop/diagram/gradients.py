"""Gradients of J = L(y(1..T), d(1..T)) with respect to every trainable parameter of a diagram.

Three peers, tested against each other:

* ``"reciprocal"`` (paper 004): run the network forward storing its signals, feed ∂L/∂y(k) into
  the reciprocal network (rule 6) and run it backward in time (the causal implementation of the
  advances, §3.2); each weight's gradient is Σ_k x(k)ᵀ δ(k) (Eq. 1), accumulated by the
  reciprocal blocks.  Memory O(T · signals).
* ``"forward"``: carry the sensitivities ∂s(k)/∂θ of every signal forward in time with the state
  (RTRL; paper 000's forward-only idea applied to a diagram) and contract them with ∂L/∂y(k) as
  the outputs appear.  Memory O(P · signals), flat in T; online for the "mse" loss.
* ``"autograd"``: PyTorch autograd over the unrolled simulation: the oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .blocks import Input, TangentContext
from .reciprocal_blocks import ReciprocalBlock
from .simulate import _check_initial, check_inputs, simulate

__all__ = ["DIAGRAM_METHODS", "gradient"]

DIAGRAM_METHODS = ("reciprocal", "autograd", "forward")

LossArg = str | Callable


def _check_targets(diagram, targets, T: int, B: int) -> tuple[dict[str, torch.Tensor], bool]:
    names = diagram.output_names
    single = isinstance(targets, torch.Tensor)
    if single:
        if len(names) != 1:
            raise ValueError(f"the diagram has outputs {names}: pass targets as a dict by name")
        targets = {names[0]: targets}
    if not isinstance(targets, Mapping):
        raise TypeError(f"targets must be a tensor or a dict, got {type(targets).__name__}")
    if set(targets) != set(names):
        raise ValueError(
            f"targets must be given for exactly {sorted(names)}, got {sorted(targets)}"
        )
    out = {}
    for name in names:
        t = targets[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"target {name!r} must be a torch.Tensor, got {type(t).__name__}")
        out[name] = t.to(diagram.device)
    return out, single


def _mse(outs: dict, targets: dict) -> torch.Tensor:
    """Σ over outputs of mean over (T, B, width) of (y − d)²."""
    return sum(((outs[n] - targets[n].to(outs[n].dtype)) ** 2).mean() for n in outs)


def _check_mse_targets(outs: dict, targets: dict) -> None:
    for n, y in outs.items():
        t = targets[n]
        if not t.dtype.is_floating_point:
            raise TypeError(f"mse expects a floating-point target for {n!r}, got {t.dtype}")
        if t.shape != y.shape:
            raise ValueError(
                f"mse target for {n!r} must have the output's shape {tuple(y.shape)}, "
                f"got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"target {n!r} contains NaN or inf")


def _call_loss(loss: Callable, outs: dict, targets: dict, single: bool) -> torch.Tensor:
    value = (
        loss(next(iter(outs.values())), next(iter(targets.values())))
        if single
        else loss(outs, targets)
    )
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError("a loss callable must return a scalar tensor")
    return value.reshape(())


def loss_and_output_grads(loss: LossArg, outs: dict, targets: dict, single: bool):
    """J and ∂J/∂y(k) for every output (rule 6's feeds), detached."""
    if loss == "mse":
        _check_mse_targets(outs, targets)
        value = _mse(outs, targets)
        grads = {n: 2.0 * (y - targets[n].to(y.dtype)) / y.numel() for n, y in outs.items()}
        return value.detach(), grads
    if not callable(loss):
        raise ValueError(f"unknown loss {loss!r}; expected 'mse' or a callable")
    leaves = {n: y.detach().clone().requires_grad_(True) for n, y in outs.items()}
    with torch.enable_grad():
        value = _call_loss(loss, leaves, targets, single)
        grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
    return value.detach(), {
        n: torch.zeros_like(y) if g is None else g
        for (n, y), g in zip(leaves.items(), grads, strict=True)
    }


def gradient(
    diagram,
    inputs,
    targets,
    loss: LossArg = "mse",
    method: str = "reciprocal",
    initial_states: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss J and {"block.param": ∂J/∂param} of ``diagram`` on one batch of sequences.

    ``inputs``: (T, B, width) (a dict by Input name when there are several); ``targets``: the
    same for the outputs.  ``loss="mse"`` is Σ_outputs mean((y − d)²) over all T, B, channels;
    a callable receives (y, targets) — tensors, or dicts when targets is a dict — and returns a
    scalar (∂J/∂y from autograd on the loss alone).
    """
    if method not in DIAGRAM_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {DIAGRAM_METHODS}")
    feeds = check_inputs(diagram, inputs)
    T, B = next(iter(feeds.values())).shape[:2]
    targets, single = _check_targets(diagram, targets, T, B)
    params = diagram.parameter_dict()
    if method == "autograd":
        value, grads = _autograd(diagram, feeds, targets, single, loss, params, initial_states)
    elif method == "reciprocal":
        value, grads = _reciprocal(diagram, feeds, targets, single, loss, params, initial_states)
    else:
        value, grads = _forward(diagram, feeds, targets, single, loss, params, initial_states)
    if not torch.isfinite(value):
        raise FloatingPointError(f"the loss is {float(value)}: the network diverged")
    return value, grads


def _autograd(diagram, feeds, targets, single, loss, params, initial_states):
    with torch.enable_grad():
        outs, _ = simulate(diagram, feeds, initial_states)
        if loss == "mse":
            _check_mse_targets(outs, targets)
            value = _mse(outs, targets)
        elif callable(loss):
            value = _call_loss(loss, outs, targets, single)
        else:
            raise ValueError(f"unknown loss {loss!r}; expected 'mse' or a callable")
        names = list(params)
        if value.requires_grad and names:
            grads = torch.autograd.grad(value, [params[n] for n in names], allow_unused=True)
        else:  # J does not depend on any parameter
            grads = [None] * len(names)
    return value.detach(), {
        n: torch.zeros_like(params[n]) if g is None else g.detach()
        for n, g in zip(names, grads, strict=True)
    }


def _reciprocal(diagram, feeds, targets, single, loss, params, initial_states):
    with torch.no_grad():
        outs, trace = simulate(diagram, feeds, initial_states, record=True)
        value, dy = loss_and_output_grads(loss, outs, targets, single)
        r = diagram.reciprocal()
        for b in r.blocks.values():
            if isinstance(b, ReciprocalBlock):
                b.bind(trace)
        # rule 6: the forward outputs are the reciprocal inputs, fed with ∂L/∂y(k)
        simulate(r, dy, reverse=True)
        grads = {n: torch.zeros_like(p) for n, p in params.items()}
        for name, b in r.blocks.items():
            if isinstance(b, ReciprocalBlock):
                for pname, g in b.grads.items():
                    key = f"{name}.{pname}"
                    if key in grads:
                        grads[key] += g
                b.bind(None)
    return value, grads


def _forward(diagram, feeds, targets, single, loss, params, initial_states):
    """Sensitivities ∂s(k)/∂θ of every signal carried forward with the state (RTRL)."""
    with torch.no_grad():
        if loss == "mse":
            dy_all = None  # online: ∂L/∂y(k) = 2 (y(k) − d(k)) / numel as y(k) appears
        else:
            outs, _ = simulate(diagram, feeds, initial_states)
            value, dy_all = loss_and_output_grads(loss, outs, targets, single)
        order = diagram.validate()
        initial_states = _check_initial(diagram, initial_states)
        ctx = TangentContext(list(params.values()))
        first = next(iter(feeds.values()))
        T, B = first.shape[:2]
        dtype, device = first.dtype, first.device
        blocks, edges = diagram.blocks, diagram.edges
        states = {n: blocks[n].init_state(B, dtype, device, initial_states.get(n)) for n in order}
        tstates = {n: blocks[n].init_tangent(B, ctx.size, dtype, device) for n in order}
        stateful = [n for n in order if states[n] is not None]
        out_names = diagram.output_names
        total = torch.zeros(ctx.size, dtype=dtype, device=device)
        mse_value = torch.zeros((), dtype=dtype, device=device)
        for k in range(T):
            sig, tan = {}, {}
            for n in order:
                b = blocks[n]
                if isinstance(b, Input):
                    sig[(n, 0)] = feeds[n][k]
                    tan[(n, 0)] = feeds[n].new_zeros(B, b.out_widths[0], ctx.size)
                    continue
                if b.feedthrough:
                    ins = [sig[edges[(n, i)]] for i in range(len(b.in_widths))]
                    tins = [tan[edges[(n, i)]] for i in range(len(b.in_widths))]
                else:
                    ins = tins = None
                for j, o in enumerate(b.outputs(ins, states[n], k)):
                    sig[(n, j)] = o
                touts = b.tangent_outputs(ins, tins, states[n], tstates[n], k, ctx)
                for j, t in enumerate(touts):
                    tan[(n, j)] = t
                if n in out_names:
                    y, S = ins[0], tins[0]
                    if dy_all is None:
                        d = targets[n][k].to(dtype)
                        if k == 0:
                            _check_mse_targets({n: y.expand(T, *y.shape)}, {n: targets[n]})
                        numel = T * y.numel()
                        mse_value += ((y - d) ** 2).sum() / numel
                        g = 2.0 * (y - d) / numel
                    else:
                        g = dy_all[n][k]
                    total += torch.einsum("bi,bip->p", g, S)
            for n in stateful:
                b = blocks[n]
                ins = [sig[edges[(n, i)]] for i in range(len(b.in_widths))]
                tins = [tan[edges[(n, i)]] for i in range(len(b.in_widths))]
                tstates[n] = b.tangent_update(ins, tins, states[n], tstates[n], k, ctx)
                states[n] = b.update(ins, states[n], k)
        if dy_all is None:
            value = mse_value
    grads = {}
    for n, p in params.items():
        off = ctx.offsets[id(p)]
        grads[n] = total[off : off + p.numel()].reshape(p.shape).clone()
    return value, grads
