"""Activation functions φ and their derivatives φ′, one per neuron (paper 000 §2.1: φ̂ may apply
a different φ to each neuron).

Every engine needs both φ(T_n) and ∂φ(T_n)/∂T_n (Eq. 13, 15).  Derivatives are written out by
hand and match PyTorch autograd's conventions at the kinks (relu′(0) = 0, leaky_relu′(0) = slope,
softplus′(t) = 1 above torch's threshold of 20), so engines and autograd agree to the last bit
of the maths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "LEAKY_SLOPE", "NeuronActivations", "resolve_activations"]

LEAKY_SLOPE = 0.01
_SOFTPLUS_THRESHOLD = 20.0

Pair = tuple[torch.Tensor, torch.Tensor]


def _relu(t: torch.Tensor) -> Pair:
    s = torch.relu(t)
    return s, torch.sign(s)  # 1 where t > 0, else 0: one pass instead of compare + convert


def _tanh(t: torch.Tensor) -> Pair:
    s = torch.tanh(t)
    return s, 1 - s * s


def _sigmoid(t: torch.Tensor) -> Pair:
    s = torch.sigmoid(t)
    return s, s * (1 - s)


def _identity(t: torch.Tensor) -> Pair:
    return t, torch.ones_like(t)


def _leaky_relu(t: torch.Tensor) -> Pair:
    positive = t > 0
    return (
        F.leaky_relu(t, LEAKY_SLOPE),
        torch.where(positive, torch.ones_like(t), torch.full_like(t, LEAKY_SLOPE)),
    )


def _softplus(t: torch.Tensor) -> Pair:
    above = t > _SOFTPLUS_THRESHOLD
    return F.softplus(t), torch.where(above, torch.ones_like(t), torch.sigmoid(t))


#: name → function returning (φ(t), φ′(t)) for a tensor of pre-activations t.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], Pair]] = {
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "identity": _identity,
    "leaky_relu": _leaky_relu,
    "softplus": _softplus,
}


# NumPy twins for the literal reference engine.
def _np_sigmoid(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = 0.5 * (1 + np.tanh(0.5 * t))  # overflow-free logistic
    return s, s * (1 - s)


def _np_tanh(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.tanh(t)
    return s, 1 - s * s


def _np_softplus(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    above = t > _SOFTPLUS_THRESHOLD
    value = np.where(above, t, np.log1p(np.exp(np.minimum(t, _SOFTPLUS_THRESHOLD))))
    return value, np.where(above, 1.0, _np_sigmoid(t)[0]).astype(t.dtype)


_NUMPY: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "relu": lambda t: (np.maximum(t, 0), (t > 0).astype(t.dtype)),
    "tanh": _np_tanh,
    "sigmoid": _np_sigmoid,
    "identity": lambda t: (t, np.ones_like(t)),
    "leaky_relu": lambda t: (
        np.where(t > 0, t, LEAKY_SLOPE * t),
        np.where(t > 0, 1.0, LEAKY_SLOPE).astype(t.dtype),
    ),
    "softplus": _np_softplus,
}


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r} {where}; expected one of {sorted(ACTIVATIONS)}"
        )
    return name


def resolve_activations(
    activation: str | Sequence[str],
    n_neurons: int,
    n_clamped: int,
    n_outputs: int,
    output_activation: str | None = None,
) -> tuple[str, ...]:
    """The activation name of every free (hidden and output) neuron, in neuron order.

    ``activation`` is one name for all non-input neurons or a sequence of N names (entries of
    clamped neurons are ignored but must still be valid names); ``output_activation`` overrides
    the output neurons.
    """
    if isinstance(activation, str):
        names = [_check_name(activation, "(activation)")] * n_neurons
    else:
        names = list(activation)
        if len(names) != n_neurons:
            raise ValueError(
                f"activation must be one name or a sequence of N={n_neurons} names, "
                f"got a sequence of {len(names)}"
            )
        for k, name in enumerate(names):
            _check_name(name, f"for neuron {k}")
    if output_activation is not None:
        _check_name(output_activation, "(output_activation)")
        names[n_neurons - n_outputs :] = [output_activation] * n_outputs
    return tuple(names[n_clamped:])


@dataclass(frozen=True)
class NeuronActivations:
    """φ̂ restricted to the free neurons: groups of neurons sharing one φ.

    Mixed activations cost about what one activation costs: the layout of the groups is worked
    out once, at construction, and the tensors that select them are built once per device and
    kept.  :meth:`__call__` applies the largest group's φ to every column and overwrites the
    columns of the other groups (a slice when a group's neurons are contiguous — hidden then
    outputs — an index otherwise); :meth:`value` selects each group's φ with ``torch.where``.
    """

    names: tuple[str, ...]
    _groups: dict[str, list[int]] = field(init=False, repr=False, compare=False)
    #: the largest group's name, then every other group with its slice (None when scattered)
    _main: str | None = field(init=False, repr=False, compare=False)
    _others: tuple[tuple[str, slice | None], ...] = field(init=False, repr=False, compare=False)
    _device_tensors: dict[torch.device, dict[str, tuple[torch.Tensor, torch.Tensor]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        groups: dict[str, list[int]] = {}
        for k, name in enumerate(self.names):
            groups.setdefault(name, []).append(k)
        main = max(groups, key=lambda name: len(groups[name]), default=None)
        others = tuple(
            (
                name,
                slice(index[0], index[-1] + 1) if index[-1] - index[0] + 1 == len(index) else None,
            )
            for name, index in groups.items()
            if name != main
        )
        object.__setattr__(self, "_groups", groups)
        object.__setattr__(self, "_main", main)
        object.__setattr__(self, "_others", others)
        object.__setattr__(self, "_device_tensors", {})

    @property
    def uniform(self) -> str | None:
        """The single activation name when every free neuron shares it, else None."""
        return self._main if len(self._groups) == 1 else None

    def _selectors(self, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """For every group other than the largest, on ``device``: its neurons (an index) and a
        boolean mask over the free neurons (built on first use, then kept)."""
        selectors = self._device_tensors.get(device)
        if selectors is None:
            selectors = {}
            for name, _ in self._others:
                index = torch.as_tensor(self._groups[name], dtype=torch.long, device=device)
                mask = torch.zeros(len(self.names), dtype=torch.bool, device=device)
                selectors[name] = (index, mask.index_fill_(0, index, True))
            self._device_tensors[device] = selectors
        return selectors

    def __call__(self, t: torch.Tensor) -> Pair:
        """φ(t) and φ′(t) for pre-activations t of shape (..., F)."""
        if self._main is None:  # no free neuron
            return torch.empty_like(t), torch.empty_like(t)
        s, d = ACTIVATIONS[self._main](t)
        if not self._others:
            return s, d
        # s and d are overwritten in place below: s must not be t (identity) nor a result
        # autograd keeps for its backward (tanh, sigmoid, relu); every φ′ is a fresh tensor
        if s is t or (t.requires_grad and torch.is_grad_enabled()):
            s = s.clone()
        selectors = None
        for name, columns in self._others:
            if columns is not None:
                s[..., columns], d[..., columns] = ACTIVATIONS[name](t[..., columns])
            else:
                selectors = selectors or self._selectors(t.device)
                index = selectors[name][0]
                s[..., index], d[..., index] = ACTIVATIONS[name](t.index_select(-1, index))
        return s, d

    def value(self, t: torch.Tensor) -> torch.Tensor:
        """φ(t) alone, differentiable by autograd (used by the autograd engine)."""
        if self._main is None:  # no free neuron
            return t.clone()
        s = _AUTOGRAD[self._main](t)
        if self._others:
            selectors = self._selectors(t.device)
            for name, _ in self._others:
                s = torch.where(selectors[name][1], _AUTOGRAD[name](t), s)
        return s

    def numpy(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """φ(t) and φ′(t) in NumPy (the reference engine)."""
        s = np.empty_like(t)
        d = np.empty_like(t)
        for name, index in self._groups.items():
            s[..., index], d[..., index] = _NUMPY[name](t[..., index])
        return s, d


# Plain PyTorch functions: the autograd oracle must not share code with the hand derivatives.
_AUTOGRAD: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda t: t,
    "leaky_relu": lambda t: F.leaky_relu(t, LEAKY_SLOPE),
    "softplus": F.softplus,
}
