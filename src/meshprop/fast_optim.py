"""torch.optim.Adam's step without ``Optimizer.step``'s per-call bookkeeping, for a learner
that steps after every element of a stream.

``torch.optim.Adam.step`` spends most of its ~30 µs on one small tensor in the machinery around
the update (hooks, profiler record, grad-mode switch, regrouping the state into lists), not in
the update: the same update through torch's functional API, ``torch.optim.adam.adam`` (the
function ``Adam.step`` itself calls), takes about half the time.  :class:`DirectAdamStep` makes
that call with exactly the arguments ``Adam.step`` would pass — the same kernel on the same
state tensors, so the weights are bit-identical (tested) — and is used only where that holds:
a plain ``torch.optim.Adam`` (not a subclass) with one parameter group of real tensors, no
hooks, no differentiable/capturable mode, no gradient scaler, after its state exists.  Anything
else (a hook added later, a state reloaded) makes :meth:`DirectAdamStep.step` fall back to
``optimizer.step()``.  This is not a second Adam: the arithmetic is torch's.

For a fused Adam (``fused=True``, what :func:`meshprop.sequence.fast_adam` builds) whose
parameters share one device and dtype and whose learning rate and betas are Python floats, the
call goes one level further down, to the two operations ``torch.optim.adam._fused_adam`` ends in
for that one (device, dtype) group: ``torch._foreach_add_(steps, 1)`` (here with a tensor 1 of
the counter's dtype: the same sum, without wrapping the scalar at every call) and the fused kernel
``torch._fused_adam_`` (``torch._fused_adamw_`` with decoupled weight decay), with the arguments
it passes them.  That skips the functional API's wrapper and regrouping (~15 µs of Python per
call on one small tensor: measured 20 µs → 5 µs per step), again with bit-identical weights
(tested for every configuration).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim import Adam
from torch.optim import optimizer as optimizer_module
from torch.optim.adam import adam

__all__ = ["DirectAdamStep"]


class DirectAdamStep:
    """``step()`` ≡ ``optimizer.step()`` for an eligible ``torch.optim.Adam``, through
    ``torch.optim.adam.adam`` directly (see the module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._states: list[dict] | None = None
        # the fused kernel, where the group qualifies (set with _states: see _fused_kernel_for)
        self._fused_kernel: Callable[..., None] | None = None
        self._ones: list[torch.Tensor] = []  # a 1 beside each step counter, for its increment

    def step(self) -> None:
        """One Adam step on the parameters' current ``.grad``."""
        params = self._params_if_direct()
        if params is None:
            self.optimizer.step()
            return
        group = self.optimizer.param_groups[0]
        states = self._states
        assert states is not None
        beta1, beta2 = group["betas"]
        if self._fused_kernel is not None and group["lr"].__class__ is float:
            steps = [s["step"] for s in states]
            with torch.no_grad():
                torch._foreach_add_(steps, self._ones)  # += 1, a tensor 1 (no scalar wrap)
                self._fused_kernel(
                    params,
                    [p.grad for p in params],  # checked: none is None
                    [s["exp_avg"] for s in states],
                    [s["exp_avg_sq"] for s in states],
                    [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
                    steps,
                    amsgrad=group["amsgrad"],
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=group["maximize"],
                    grad_scale=None,
                    found_inf=None,
                )
            return
        with torch.no_grad():
            adam(
                params,
                [p.grad for p in params],  # type: ignore[misc]  # checked: none is None
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
                [s["step"] for s in states],
                amsgrad=group["amsgrad"],
                has_complex=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                foreach=group["foreach"],
                capturable=False,
                differentiable=False,
                fused=group["fused"],
                grad_scale=None,
                found_inf=None,
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )

    def _params_if_direct(self) -> list[torch.Tensor] | None:
        """The parameters when the direct call is exactly ``optimizer.step()``, else None (and
        the state is looked up again after the next regular step)."""
        opt = self.optimizer
        if (
            type(opt) is not Adam
            or len(opt.param_groups) != 1
            or opt._optimizer_step_pre_hooks
            or opt._optimizer_step_post_hooks
            or optimizer_module._global_optimizer_pre_hooks
            or optimizer_module._global_optimizer_post_hooks
            or getattr(opt, "grad_scale", None) is not None
            or getattr(opt, "found_inf", None) is not None
        ):
            self._states = None
            return None
        group = opt.param_groups[0]
        params = group["params"]
        if group["differentiable"] or group["capturable"]:
            self._states = None
            return None
        states = [opt.state.get(p) for p in params]
        cached = self._states
        if (
            cached is not None
            and len(cached) == len(states)
            and all(a is b for a, b in zip(cached, states, strict=True))
        ):
            return params if all(p.grad is not None for p in params) else None
        # first call, or the state was replaced (load_state_dict): one regular step, then direct
        if all(
            s is not None and "exp_avg" in s and p.grad is not None and not torch.is_complex(p)
            for p, s in zip(params, states, strict=True)
        ):
            self._states = states  # type: ignore[assignment]
            self._fused_kernel = _fused_kernel_for(group, params, states)  # type: ignore[arg-type]
            self._ones = [torch.ones_like(s["step"]) for s in states]  # type: ignore[index]
            return params
        self._states = None
        return None


def _fused_kernel_for(
    group: dict, params: list[torch.Tensor], states: list[dict]
) -> Callable[..., None] | None:
    """The fused kernel ``torch.optim.adam._fused_adam`` would call for this group, where its
    call reduces to that kernel on the group's lists as they are: a fused group, every
    parameter and state tensor on one device in one dtype (one (device, dtype) group, order
    kept), float betas (the learning rate is checked at each step).  None otherwise."""
    if not group["fused"] or not all(isinstance(b, float) for b in group["betas"]):
        return None
    kernel = getattr(
        torch, "_fused_adamw_" if group["decoupled_weight_decay"] else "_fused_adam_", None
    )
    if kernel is None:
        return None
    device, dtype = params[0].device, params[0].dtype
    keys = (
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        if group["amsgrad"]
        else ("exp_avg", "exp_avg_sq")
    )
    for p, s in zip(params, states, strict=True):
        tensors = [p, p.grad, *(s[k] for k in keys)]
        if any(t is None or t.device != device or t.dtype != dtype for t in tensors):
            return None
        if s["step"].device != device:
            return None
    return kernel
