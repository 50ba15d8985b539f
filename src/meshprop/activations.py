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
    """φ̂ restricted to the free neurons: groups of neurons sharing one φ."""

    names: tuple[str, ...]
    _groups: dict[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups: dict[str, list[int]] = {}
        for k, name in enumerate(self.names):
            groups.setdefault(name, []).append(k)
        object.__setattr__(self, "_groups", groups)

    @property
    def uniform(self) -> str | None:
        """The single activation name when every free neuron shares it, else None."""
        return next(iter(self._groups)) if len(self._groups) == 1 else None

    def __call__(self, t: torch.Tensor) -> Pair:
        """φ(t) and φ′(t) for pre-activations t of shape (..., F)."""
        if len(self._groups) == 1:
            return ACTIVATIONS[next(iter(self._groups))](t)
        s = torch.empty_like(t)
        d = torch.empty_like(t)
        for name, index in self._groups.items():
            idx = torch.as_tensor(index, device=t.device)
            s_g, d_g = ACTIVATIONS[name](t.index_select(-1, idx))
            s[..., idx] = s_g
            d[..., idx] = d_g
        return s, d

    def value(self, t: torch.Tensor) -> torch.Tensor:
        """φ(t) alone, differentiable by autograd (used by the autograd engine)."""
        if len(self._groups) == 1:
            return _AUTOGRAD[next(iter(self._groups))](t)
        parts: list[torch.Tensor] = [t] * len(self.names)  # every entry is replaced below
        for name, index in self._groups.items():
            idx = torch.as_tensor(index, device=t.device)
            values = _AUTOGRAD[name](t.index_select(-1, idx))
            for column, k in enumerate(index):
                parts[k] = values[..., column]
        return torch.stack(parts, dim=-1)

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
