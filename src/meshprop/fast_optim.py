"""torch.optim.Adam's step without ``Optimizer.step``'s per-call bookkeeping, for a learner
that steps after every element of a stream.

``torch.optim.Adam.step`` spends most of its time on one small tensor in the machinery around
the update (hooks, profiler record, grad-mode switch, regrouping the state into lists), not in
the update.  :class:`DirectAdamStep` calls torch's public functional Adam,
``torch.optim.adam.adam`` (in that module's ``__all__``; the function ``Adam.step`` itself
calls), with exactly the arguments ``Adam.step`` would pass — the keyword set built from the
parameter group and the function's signature, so every option of this torch is passed as the
group holds it — on the same state tensors: the same kernel, bit-identical weights (tested with
``torch.equal``).  It is used only where that holds: a plain ``torch.optim.Adam`` (not a
subclass) with one parameter group of real tensors, no hooks, no differentiable/capturable
mode, no gradient scaler, after its state exists.  Anything else (a hook added later, a state
reloaded) makes :meth:`DirectAdamStep.step` fall back to ``optimizer.step()``.  This is not a
second Adam: the arithmetic is torch's, reached through public names only.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.optim import Adam
from torch.optim import optimizer as optimizer_module
from torch.optim.adam import adam

__all__ = ["DirectAdamStep"]

#: the keyword arguments of ``adam`` that ``Adam.step`` takes from the parameter group as they
#: are (``betas`` is split into beta1/beta2; the rest is fixed by the eligibility check)
_GROUP_KEYS = tuple(
    name
    for name in inspect.signature(adam).parameters
    if name
    in (
        "amsgrad",
        "lr",
        "weight_decay",
        "eps",
        "maximize",
        "foreach",
        "fused",
        "decoupled_weight_decay",
    )
)


def _has_hooks(opt: torch.optim.Optimizer) -> bool:
    """Whether a step hook (the optimizer's or a global one) is registered: the tables that
    the public ``register_step_*_hook`` functions fill (read with defaults, never written)."""
    module = optimizer_module
    return bool(
        getattr(opt, "_optimizer_step_pre_hooks", None)
        or getattr(opt, "_optimizer_step_post_hooks", None)
        or getattr(module, "_global_optimizer_pre_hooks", None)
        or getattr(module, "_global_optimizer_post_hooks", None)
    )


class DirectAdamStep:
    """``step()`` ≡ ``optimizer.step()`` for an eligible ``torch.optim.Adam``, through
    ``torch.optim.adam.adam`` directly (see the module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._states: list[dict] | None = None

    @property
    def direct(self) -> bool:
        """Whether the last :meth:`step` took the direct call."""
        return self._states is not None

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
        options: dict[str, Any] = {key: group[key] for key in _GROUP_KEYS}
        with torch.no_grad():
            adam(
                params,
                [p.grad for p in params],  # type: ignore[misc]  # checked: none is None
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
                [s["step"] for s in states],
                capturable=False,
                differentiable=False,
                grad_scale=None,
                found_inf=None,
                has_complex=False,
                beta1=beta1,
                beta2=beta2,
                **options,
            )

    def _params_if_direct(self) -> list[torch.Tensor] | None:
        """The parameters when the direct call is exactly ``optimizer.step()``, else None (and
        the state is looked up again after the next regular step)."""
        opt = self.optimizer
        if (
            type(opt) is not Adam
            or len(opt.param_groups) != 1
            or _has_hooks(opt)
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
            return params
        self._states = None
        return None
