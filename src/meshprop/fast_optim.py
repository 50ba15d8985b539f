"""``FastAdam``: torch.optim.Adam with a direct step, for a learner that steps every element.

``torch.optim.Optimizer.step`` wraps every optimizer's update in per-call machinery — a profiler
``record_function``, the step hooks, a grad-mode switch, regrouping the state into lists — that
costs more than the update itself on one small tensor (measured on the 35-neuron online
network, one thread: ``Adam(fused=True).step()`` 66 µs, the same update through the functional
API 28 µs).  :class:`FastAdam` is an ordinary ``torch.optim.Adam`` with one more method,
:meth:`FastAdam.direct_step`, which calls torch's public functional Adam
``torch.optim.adam.adam`` (in that module's ``__all__``; the function ``Adam.step`` itself
calls) with exactly the arguments ``Adam.step`` passes — the keyword set built from the
parameter group and the function's signature — on the same state tensors: the same kernel,
bit-identical weights (tested with ``torch.equal``).  This is not a second Adam: the arithmetic
is torch's, reached through public names only.

What the direct step leaves out is the machinery itself: step hooks would not run, so
registering one on a ``FastAdam`` raises (use a plain ``torch.optim.Adam``, which
:class:`meshprop.OnlineLearner` steps with ``optimizer.step()``); hooks registered globally with
``torch.optim.optimizer.register_optimizer_step_pre_hook``/``post_hook`` are not run by
``direct_step`` either.  Before the optimizer's state exists (the first step), or for parameter
groups the functional call does not cover (several groups, differentiable or capturable mode,
a missing gradient, complex parameters), ``direct_step`` is ``step()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.adam import adam

__all__ = ["FastAdam", "fast_adam"]

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


#: the tensor lists of the functional call: parameters, gradients, exp_avg, exp_avg_sq,
#: max_exp_avg_sq, step
_Lists = tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]


class FastAdam(torch.optim.Adam):
    """``torch.optim.Adam`` plus :meth:`direct_step` (see the module docstring)."""

    def __init__(self, params: Iterable[Any], **options: Any) -> None:
        super().__init__(params, **options)
        self._lists: tuple[list[torch.Tensor], list[Any]] | None = None
        #: the lists the functional call takes, for the ``_lists`` they were built from
        self._call: tuple[Any, _Lists] | None = None

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> Any:
        raise RuntimeError(
            "FastAdam.direct_step does not run step hooks: register hooks on a plain "
            "torch.optim.Adam instead (OnlineLearner steps it with optimizer.step())"
        )

    def register_step_post_hook(self, hook: Callable[..., Any]) -> Any:
        self.register_step_pre_hook(hook)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._lists = self._call = None  # the state tensors are new objects

    def direct_step(self) -> None:
        """One Adam step on the parameters' current ``.grad``: ``step()``'s update without its
        per-call machinery (bit-identical weights)."""
        lists = self._direct_lists()
        if lists is None:
            self.step()
            return
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        params, grads, avgs, squares, maxima, steps = self._arguments(lists)
        adam(
            params,
            grads,
            avgs,
            squares,
            maxima,
            steps,
            capturable=False,
            differentiable=False,
            grad_scale=None,
            found_inf=None,
            has_complex=False,
            beta1=beta1,
            beta2=beta2,
            **{key: group[key] for key in _GROUP_KEYS},
        )

    def _arguments(self, lists: tuple[list[torch.Tensor], list[Any]]) -> _Lists:
        """The functional call's tensor lists — the parameters as detached aliases (the same
        memory: the in-place update needs no ``torch.no_grad()`` block around it), the
        gradients and the state tensors — rebuilt only when one of them is another object (a
        new ``.grad``, a parameter's memory replaced, a state tensor remapped after a structure
        change)."""
        params, states = lists
        call = self._call
        if call is not None and call[0] is lists:
            detached, grads, avgs, squares, _, steps = call[1]
            if all(
                g is p.grad
                and d.data_ptr() == p.data_ptr()
                and s["exp_avg"] is a
                and s["exp_avg_sq"] is q
                and s["step"] is n
                for p, s, d, g, a, q, n in zip(
                    params, states, detached, grads, avgs, squares, steps, strict=True
                )
            ):
                return call[1]
        amsgrad = self.param_groups[0]["amsgrad"]
        arguments: _Lists = (
            [p.detach() for p in params],
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if amsgrad else [],
            [s["step"] for s in states],
        )
        self._call = (lists, arguments)
        return arguments

    def _direct_lists(self) -> tuple[list[torch.Tensor], list[Any]] | None:
        """(parameters, their states) when the functional call is exactly ``step()``'s update,
        else None (then ``step()`` runs, and the lists are looked up again after it)."""
        if len(self.param_groups) != 1:
            return None
        group = self.param_groups[0]
        params = group["params"]
        if group["differentiable"] or group["capturable"]:
            return None
        cached = self._lists
        if cached is not None and len(cached[0]) == len(params):
            state = self.state
            same = True
            for a, p, s in zip(cached[0], params, cached[1], strict=True):
                if a is not p or state.get(p) is not s or p.grad is None:
                    same = False
                    break
            if same:
                return cached
        states = [self.state.get(p) for p in params]
        self._lists = None
        if all(
            s is not None and "exp_avg" in s and p.grad is not None and not torch.is_complex(p)
            for p, s in zip(params, states, strict=True)
        ):
            self._lists = (list(params), states)
            return self._lists
        return None


def fast_adam(params: Iterable[torch.nn.Parameter], lr: float) -> FastAdam:
    """A :class:`FastAdam`, fused where this torch has a fused Adam for the parameters' device
    (one kernel per step: the per-step cost that matters when stepping after every element)."""
    params = list(params)
    try:
        return FastAdam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return FastAdam(params, lr=lr)
