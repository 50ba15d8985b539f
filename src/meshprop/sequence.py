"""Sequences and streams through a MeshNet: ``sequence_gradient`` and ``OnlineLearner``.

A sequence x (L, B, I) gives an output after every element, y (L, B, O) (``MeshNet.unroll``);
the loss is the mean over the masked (l, b) pairs of the per-sample loss (mse: mean over the
outputs of (y − t)²; cross_entropy: −log softmax(y)[label]).  Its gradient dE/dA comes from:

- ``"fop"``: paper 000 Eq. 13 / 17 carried from element to element
  (:func:`meshprop.engines.sequence.fop_sequence`): exact, forward in time, memory flat in L;
- ``"bptt"``: the reciprocal network of paper 004 over the whole stored sequence
  (:func:`meshprop.engines.sequence.bptt_sequence`): exact, memory O(L);
- ``"autograd"``: PyTorch's graph over the unrolled sequence (the oracle);
- ``"tbptt"`` with ``truncation=k``: windows [0, k), [k, 2k), …; the state entering a window is
  a constant; the gradient of the same total loss with those cuts (BPTT inside each window).

``fop_factored`` (paper 000 Eqs. 14–16) is not offered for sequences: unrolled over a sequence
its products of Jacobians grow with (L·T)², where the carried sensitivities of ``fop`` stay flat.

:class:`OnlineLearner` consumes a stream one element at a time: real-time recurrent learning when
``method="fop"`` (the sensitivities are carried across elements *and* across weight updates, as
RTRL does), truncated BPTT through the last ``truncation`` elements when ``method="tbptt"``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .engines.fop import edge_index
from .engines.sequence import (
    SEQUENCE_LOSSES,
    RTRLStepper,
    SequenceState,
    bptt_sequence,
    element_loss,
    fop_sequence,
    sensitivity_step,
    unroll_states,
)
from .fast_optim import DirectAdamStep
from .losses import loss_and_grad, loss_value, validate_target
from .mesh import MeshNet

__all__ = [
    "ONLINE_METHODS",
    "SEQUENCE_METHODS",
    "ChaoticNetworkError",
    "OnlineLearner",
    "SequenceState",
    "fast_adam",
    "flush_denormals",
    "sequence_gradient",
]

SEQUENCE_METHODS = ("fop", "bptt", "autograd", "tbptt")
#: the lean path sums its carried sensitivities every this many elements (and checks every
#: gradient it hands the optimizer): inf/NaN raise ChaoticNetworkError
CHAOS_CHECK_EVERY = 64
ONLINE_METHODS = ("fop", "tbptt")


class ChaoticNetworkError(FloatingPointError):
    """The carried sensitivities overflowed (inf/NaN): the network turned chaotic."""


def _check_net(net: object) -> MeshNet:
    if not isinstance(net, MeshNet):
        raise TypeError(f"net must be a meshprop.MeshNet, got {type(net).__name__}")
    return net


def _check_loss(loss: object) -> str:
    if loss not in SEQUENCE_LOSSES:
        raise ValueError(f"unknown sequence loss {loss!r}; expected one of {SEQUENCE_LOSSES}")
    return str(loss)


def _check_truncation(method: str, truncation: object) -> int | None:
    if method == "tbptt":
        if isinstance(truncation, bool) or not isinstance(truncation, int) or truncation < 1:
            raise ValueError(
                f"method 'tbptt' needs truncation=k, an integer >= 1 (the window length), "
                f"got {truncation!r}"
            )
        return truncation
    if truncation is not None:
        raise ValueError(f"truncation applies to method 'tbptt' only, not {method!r}")
    return None


def _check_mask(mask: object, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        what = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a torch.bool tensor of shape {shape}, got {what}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask must have shape {shape} (elements, batch), got {tuple(mask.shape)}")
    return mask.to(device)


def _check_sequence_target(
    loss: str, target: object, L: int, B: int, O: int, device: torch.device
) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    expected = (L, B, O) if loss == "mse" else (L, B)
    if tuple(target.shape) != expected:
        what = "floats" if loss == "mse" else "class labels"
        raise ValueError(
            f"{loss} over a sequence expects a target of shape {expected} ({what}), "
            f"got {tuple(target.shape)}"
        )
    flat = target.reshape(L * B, O) if loss == "mse" else target.reshape(L * B)
    validate_target(loss, flat, (L * B, O))
    return target.to(device)


def sequence_gradient(
    net: MeshNet,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str = "mse",
    method: str = "fop",
    mask: torch.Tensor | None = None,
    truncation: int | None = None,
    state: SequenceState | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of a sequence and dE/dA (N×N, zero outside the mask) by ``method``.

    x: (L, B, I); target: (L, B, O) floats for "mse", (L, B) labels for "cross_entropy"; mask:
    (L, B) bool, the elements that carry a loss (default: all).  ``state`` (a
    :class:`SequenceState`, optional) is the stream's state entering x and is advanced in place
    to the state after x: with ``method="fop"`` it holds the sensitivities, so a stream cut into
    chunks gets exactly the gradient of the whole (the chunks' losses and gradients add up,
    each weighted by its share of the masked pairs); the other methods treat the entering state
    as a constant.  ``net.A.grad`` is left untouched.
    """
    net = _check_net(net)
    if method not in SEQUENCE_METHODS:
        raise ValueError(f"unknown sequence method {method!r}; expected one of {SEQUENCE_METHODS}")
    loss = _check_loss(loss)
    k = _check_truncation(method, truncation)
    if state is not None and not isinstance(state, SequenceState):
        raise TypeError(f"state must be a meshprop.SequenceState, got {type(state).__name__}")
    x = net.prepare_sequence(x)
    L, B = x.shape[0], x.shape[1]
    O, F, dev = net.topology.n_outputs, net.topology.n_free, net.A.device
    target = _check_sequence_target(loss, target, L, B, O, dev)
    mask = _check_mask(mask, (L, B), dev)
    total = int(mask.sum())
    if total == 0:
        raise ValueError("mask selects no element: at least one (l, b) pair must carry a loss")
    if state is not None and state.h is not None and tuple(state.h.shape) != (B, F):
        raise ValueError(f"state.h must have shape {(B, F)}, got {tuple(state.h.shape)}")
    dyn, A = net.dynamics, net.A

    def feed(offset: int):
        def one(l: int, y: torch.Tensor):
            return element_loss(loss, y, target[offset + l], mask[offset + l], total)

        return one

    if method == "autograd":
        h0 = (
            torch.zeros(B, F, dtype=A.dtype, device=dev)
            if state is None or state.h is None
            else state.h
        )
        with torch.enable_grad():
            leaf = A.detach().requires_grad_(True)
            y, h = unroll_states(dyn, leaf, x, h0.detach().to(A.dtype))
            value = loss_value(loss, y[mask], target[mask])
            (dA,) = torch.autograd.grad(value, leaf)
        if state is not None:
            state.h, state.sensitivities = h.detach(), None
        return value.detach(), dA * dyn.mask_like(A)
    if method == "fop":
        value, dA, _, after = fop_sequence(dyn, A, x, feed(0), state)
    elif method == "bptt":
        value, dA, _, after = bptt_sequence(dyn, A, x, feed(0), state)
    else:  # tbptt: BPTT inside each window, the entering state a constant
        assert k is not None
        value = torch.zeros((), dtype=A.dtype, device=dev)
        dA = torch.zeros_like(A)
        after = SequenceState(None if state is None else state.h, None)
        for start in range(0, L, k):
            v, g, _, after = bptt_sequence(dyn, A, x[start : start + k], feed(start), after)
            value, dA = value + v, dA + g
    if state is not None:
        state.h, state.sensitivities = after.h, after.sensitivities
    return value, dA


class OnlineLearner:
    """Learn from a stream one element at a time.

    ``step(x_t, target_t, mask_t=None)`` runs element t (x_t: (B, I)) for ``net.ticks`` ticks
    from the state left by element t−1, returns its loss (the mean over the masked samples of
    the per-sample loss; NaN when none is masked) and accumulates its gradient; every
    ``update_every`` elements the optimizer is stepped with the gradient of the mean loss over
    the masked (element, sample) pairs since the last step (written to ``net.A.grad``, kept in
    :attr:`last_gradient`).

    - ``method="fop"``: real-time recurrent learning.  The sensitivities Z = ∂h/∂A (paper 000
      Eq. 17) are carried forward across elements and across weight updates, so the gradient of
      element t is exact through the whole past (exact while the weights are frozen; with
      updates, the past's sensitivities were computed with the older weights, as in RTRL).
      Memory O(B·P·F), flat in the stream's length.
    - ``method="tbptt"``: the loss of element t is backpropagated (reciprocal network) through
      the last ``truncation`` elements, from the state that entered them (a constant).  Memory
      O(truncation).

    The lean path (``lean=True``, the default for "fop"): the first element is validated in
    full and builds a :class:`~meshprop.engines.sequence.RTRLStepper` (index tensors and
    buffers, once); later elements of the same shapes go straight to its fixed sequence of
    in-place operations (no per-element validation, dispatch or allocation), and with
    ``update_every=1`` the element's gradient is written directly into ``net.A.grad``, a
    buffer the learner reuses (so ``net.A.grad`` is left set after each step; other
    parameters' gradients are not touched).  ``lean=False`` runs the general per-element path
    (``sensitivity_step``); both give the same gradients (tests/test_online_lean.py).  For
    throughput use a fused ``torch.optim.Adam`` (:func:`fast_adam`) and flush denormals
    (:func:`flush_denormals`); ``meshprop online`` does both.

    float32 sensitivities can overflow when the weights make the network chaotic: the learner
    raises :class:`ChaoticNetworkError` before a non-finite gradient reaches the optimizer (the
    lean path checks every gradient it hands over, the loss of every element and the carried
    sensitivities every ``CHAOS_CHECK_EVERY`` elements; the general path checks the
    sensitivities after every element).  A NaN/inf input or target raises ValueError.
    """

    def __init__(
        self,
        net: MeshNet,
        optimizer: torch.optim.Optimizer,
        loss: str = "mse",
        method: str = "fop",
        truncation: int | None = None,
        update_every: int = 1,
        *,
        lean: bool = True,
    ) -> None:
        self.net = _check_net(net)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not any(p is net.A for group in optimizer.param_groups for p in group["params"]):
            raise ValueError("the optimizer does not hold net.A: build it from net.parameters()")
        if method not in ONLINE_METHODS:
            raise ValueError(
                f"unknown online method {method!r}; expected one of {ONLINE_METHODS} (full "
                "'bptt' needs the whole sequence: use sequence_gradient)"
            )
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {update_every!r}")
        self.optimizer = optimizer
        self.loss = _check_loss(loss)
        self.method = method
        self.truncation = _check_truncation(method, truncation)
        self.update_every = update_every
        self.elements = 0  # elements consumed
        self._last_gradient: torch.Tensor | None = None
        self._lean = bool(lean) and method == "fop"
        self._param = net.A
        self._stepper: RTRLStepper | None = None
        self._direct = DirectAdamStep(optimizer)
        # the shapes of the last checked element: the lean path takes elements of these shapes
        self._x_shape = self._target_shape = self._mask_shape = torch.Size([-1])
        self._h: torch.Tensor | None = None
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None
        self._Z: torch.Tensor | None = None
        self._window: deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = deque()
        self._grad = torch.zeros_like(net.A, memory_format=torch.contiguous_format).detach()
        self._grad_buffer = torch.zeros_like(self._grad)  # the lean path's net.A.grad
        self._count = 0
        self._since_update = 0

    @property
    def state(self) -> torch.Tensor | None:
        """The free neurons' state h (B, F) after the last element (None before the first)."""
        if self._stepper is not None:
            return self._stepper.h.clone()
        return self._h

    @property
    def sensitivities(self) -> torch.Tensor | None:
        """method "fop": Z = ∂h/∂A_p (B, P, F) after the last element, P edges in
        ``topology.edges`` order (None before the first element or for "tbptt")."""
        if self._stepper is not None:
            return self._stepper.sensitivities()
        return self._Z

    @property
    def last_gradient(self) -> torch.Tensor | None:
        """The gradient (N×N) handed to the optimizer at its last step (None before)."""
        return None if self._last_gradient is None else self._last_gradient.clone()

    def reset(self) -> None:
        """Start a new stream: state and sensitivities back to 0 (the accumulated gradient and
        the optimizer are kept)."""
        self._h, self._Z = None, None
        if self._stepper is not None:
            if self._count:  # keep the accumulated edge gradient: same buffers, same batch
                self._stepper.reset()
            else:  # rebuilt at the next element, which may bring another batch size
                self._stepper = None
        self._window.clear()

    def state_dict(self) -> dict[str, Any]:
        """Everything the learner carries from element to element, to continue the stream
        exactly elsewhere (with the network's weights and ``optimizer.state_dict()``, saved
        beside it): the counters, the accumulated gradient, the state h and, for "fop", the
        sensitivities (the lean path's carried U = Z/D and D; the general path's Z); for
        "tbptt", the window of the last elements.  Tensors are copies."""
        state: dict[str, Any] = {
            "format": "meshprop-online-learner",
            "method": self.method,
            "loss": self.loss,
            "update_every": self.update_every,
            "truncation": self.truncation,
            "lean": self._lean,
            "elements": self.elements,
            "count": self._count,
            "since_update": self._since_update,
        }
        stepper = self._stepper
        if stepper is not None:
            state.update(
                batch=stepper.B,
                h=stepper.h.clone(),
                carried=stepper.bank.V.clone(),
                slopes=stepper.D.clone(),
                grad=stepper.grad_edges.clone(),
            )
        else:
            state.update(
                batch=None if self._h is None else self._h.shape[0],
                h=None if self._h is None else self._h.clone(),
                Z=None if self._Z is None else self._Z.clone(),
                grad=self._grad.clone(),
                window=[[t.clone() for t in item] for item in self._window],
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a learner with the same settings (method, loss,
        ``update_every``, truncation, lean or general path) on a network of the same shape;
        ValueError naming what differs otherwise."""
        if not isinstance(state, dict) or state.get("format") != "meshprop-online-learner":
            raise ValueError("not an OnlineLearner state (OnlineLearner.state_dict())")
        mine = {
            "method": self.method,
            "loss": self.loss,
            "update_every": self.update_every,
            "truncation": self.truncation,
            "lean": self._lean,
        }
        differ = [f"{k} {state.get(k)!r} (this learner: {v!r})" for k, v in mine.items()
                  if state.get(k) != v]  # fmt: skip
        if differ:
            raise ValueError("the saved learner differs: " + ", ".join(differ))
        net, A = self.net, self.net.A.detach()
        F = net.topology.n_free
        batch, h = state["batch"], state["h"]
        if h is not None and tuple(h.shape) != (batch, F):
            raise ValueError(f"the saved state h has shape {tuple(h.shape)}, expected {(batch, F)}")
        self.reset()
        self._stepper = None
        self._x_shape = self._target_shape = self._mask_shape = torch.Size([-1])
        self.elements = int(state["elements"])
        self._count = int(state["count"])
        self._since_update = int(state["since_update"])
        if self._lean:
            if h is not None:
                self._param = net.A
                stepper = RTRLStepper(net.dynamics, A, net.mask, batch)
                for buffer, key in (
                    (stepper.h, "h"),
                    (stepper.bank.V, "carried"),
                    (stepper.D, "slopes"),
                    (stepper.grad_edges, "grad"),
                ):
                    value = state[key]
                    if tuple(value.shape) != tuple(buffer.shape):
                        raise ValueError(
                            f"the saved {key} has shape {tuple(value.shape)}, expected "
                            f"{tuple(buffer.shape)} for this network"
                        )
                    buffer.copy_(value)
                self._stepper = stepper
            return
        like = dict(dtype=A.dtype, device=A.device)
        self._h = None if h is None else h.to(**like).clone()
        Z = state.get("Z")
        self._Z = None if Z is None else Z.to(**like).clone()
        grad = state["grad"]
        if tuple(grad.shape) != tuple(self._grad.shape):
            raise ValueError(
                f"the saved gradient has shape {tuple(grad.shape)}, expected "
                f"{tuple(self._grad.shape)}"
            )
        self._grad.copy_(grad)
        for item in state.get("window", []):
            self._window.append(tuple(t.clone() for t in item))

    def step(
        self, x_t: torch.Tensor, target_t: torch.Tensor, mask_t: torch.Tensor | None = None
    ) -> float:
        """Consume element t (x_t: (B, I); target_t: (B, O) floats or (B,) labels; mask_t: (B,)
        bool, default all) and return its loss (NaN when no sample is masked)."""
        if (
            self._stepper is not None
            and isinstance(x_t, torch.Tensor)
            and isinstance(target_t, torch.Tensor)
            and x_t.shape == self._x_shape
            and target_t.shape == self._target_shape
            and (
                mask_t is None or (mask_t.dtype is torch.bool and mask_t.shape == self._mask_shape)
            )
        ):
            return self._lean_step(x_t, target_t, mask_t)
        return self._checked_step(x_t, target_t, mask_t)

    def _checked_step(
        self, x_t: torch.Tensor, target_t: torch.Tensor, mask_t: torch.Tensor | None
    ) -> float:
        """Every argument validated (the first element, or one whose shapes differ from the
        last's); then the lean or the general path."""
        net = self.net
        x = net.prepare_sequence(
            x_t.unsqueeze(0) if isinstance(x_t, torch.Tensor) and x_t.dim() == 2 else x_t
        )
        B, O, dev = x.shape[1], net.topology.n_outputs, net.A.device
        target = _check_sequence_target(
            self.loss,
            target_t.unsqueeze(0) if isinstance(target_t, torch.Tensor) else target_t,
            1,
            B,
            O,
            dev,
        )
        mask = _check_mask(
            None
            if mask_t is None
            else mask_t.unsqueeze(0)
            if isinstance(mask_t, torch.Tensor)
            else mask_t,
            (1, B),
            dev,
        )
        if self._h is not None and self._h.shape[0] != B:
            raise ValueError(f"the stream's batch is {self._h.shape[0]}, this element has {B}")
        if self._stepper is not None and self._stepper.B != B:
            raise ValueError(f"the stream's batch is {self._stepper.B}, this element has {B}")
        m = int(mask.sum())
        value = math.nan
        if self._lean:
            if self._param is not net.A:  # net.A was replaced: rebuild on the new parameter
                self._param, self._stepper = net.A, None
            if self._stepper is None:
                self._stepper = RTRLStepper(net.dynamics, net.A.detach(), net.mask, B)
            self._x_shape, self._target_shape = x_t.shape, target_t.shape
            self._mask_shape = torch.Size([B])
            return self._lean_step(x[0], target[0], None if m == B else mask[0])
        if self.method == "fop":
            value = self._fop_step(x[0], target[0], mask[0], m)
        else:
            value = self._tbptt_step(x[0], target[0], mask[0], m)
        self._count += m
        self.elements += 1
        self._since_update += 1
        if self._since_update == self.update_every:
            self._update()
        return value

    def _lean_step(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> float:
        """RTRL on :class:`~meshprop.engines.sequence.RTRLStepper`: a fixed sequence of in-place
        operations, no validation beyond the shapes (checked in :meth:`step`)."""
        stepper = self._stepper
        assert stepper is not None
        stepper.advance(x)
        B = stepper.B
        if mask is None:
            m = B
        else:
            m = int(mask.sum())
            if m == B:
                mask = None
        self.elements += 1
        if self.elements % CHAOS_CHECK_EVERY == 0 and not stepper.finite():
            raise self._chaos(self.elements)
        value = math.nan
        direct = self.update_every == 1
        if direct and m and stepper.scalar and self.loss == "mse":  # B = O = 1: host scalars
            value = stepper.scalar_mse(target)
            if not math.isfinite(value):
                raise self._nonfinite_loss(x, target)
            grad = self._grad_buffer
            if not stepper.write_scalar(grad):
                raise self._chaos(self.elements)
            self._step_optimizer(grad)
            return value
        if m:
            if self.loss == "mse":
                scale = 2.0 / (stepper.O * m) if direct else 2.0 / stepper.O
                value = stepper.mse_output_gradient(target, mask, scale) / m
            else:
                rows = torch.arange(B) if mask is None else mask.nonzero().flatten()
                validate_target(self.loss, target[rows], (m, stepper.O))
                v, g_rows = loss_and_grad(self.loss, stepper.y[rows], target[rows])
                g = torch.zeros_like(stepper.y)
                g[rows] = g_rows.to(g.dtype) * (1 if direct else m)
                stepper.output_gradient(g)
                value = float(v)
            if not math.isfinite(value):
                raise self._nonfinite_loss(x, target)
            if direct:
                grad = self._grad_buffer
                if not stepper.write_direct(grad):
                    raise self._chaos(self.elements)
                self._step_optimizer(grad)
                return value
            stepper.accumulate()
        self._count += m
        self._since_update += 1
        if self._since_update == self.update_every:
            if self._count:
                grad = self._grad_buffer
                if not stepper.write_gradient(grad, self._count):
                    raise self._chaos(self.elements)
                self._step_optimizer(grad)
            self._count = 0
            self._since_update = 0
        return value

    def _step_optimizer(self, grad: torch.Tensor) -> None:
        if self._param.grad is not grad:  # zero_grad(set_to_none=True) may have dropped it
            self._param.grad = grad
        self._last_gradient = grad
        if self._direct.optimizer is not self.optimizer:  # the optimizer was replaced
            self._direct = DirectAdamStep(self.optimizer)
        self._direct.step()  # optimizer.step(), minus its per-call bookkeeping where exact

    def _nonfinite_loss(self, x: torch.Tensor, target: torch.Tensor) -> Exception:
        """The error for a NaN/inf loss: the input or target's fault, else the state's."""
        if bool(torch.isfinite(x).all()) and bool(torch.isfinite(target).all()):
            return self._chaos(self.elements)  # the state itself overflowed
        return ValueError(
            f"the loss of element {self.elements} is nan or inf: the input or the target "
            "holds NaN or inf"
        )

    def _chaos(self, element: int) -> ChaoticNetworkError:
        dtype = self.net.A.dtype
        return ChaoticNetworkError(
            f"the {dtype} sensitivities overflowed to inf/NaN by element {element}: "
            "the network turned chaotic (its state is unstable with these "
            "weights); lower the learning rate, use float64, or constrain the weights"
        )

    def _fop_step(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, m: int) -> float:
        """One element of RTRL: the ticks with Eq. 3 and Eq. 17 (``sensitivity_step``), then
        Algorithm 1's last line with dE_t/dy_t."""
        net = self.net
        dyn, A = net.dynamics, net.A.detach()
        B, F, O, C = x.shape[0], dyn.n_free, dyn.n_outputs, dyn.n_clamped
        if self._edges is None:
            self._edges = edge_index(dyn, A.device)
        src, dst = self._edges
        if self._h is None or self._Z is None:
            self._h = torch.zeros(B, F, dtype=A.dtype, device=A.device)
            self._Z = torch.zeros(B, len(src), F, dtype=A.dtype, device=A.device)
        A_c, A_f = dyn.split(A)
        h, Z = self._h, self._Z
        c = dyn.clamped_state(x, 1)
        drive = c @ A_c
        for _ in range(dyn.ticks):
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(drive + h @ A_f)  # Eq. 3
            Z = sensitivity_step(Z, A_f, S_prev, D, src, dst)  # Eq. 17
        if not math.isfinite(float(Z.sum())):
            raise self._chaos(self.elements + 1)
        self._h, self._Z = h, Z
        if not m:
            return math.nan
        value, g = element_loss(self.loss, h[:, F - O :], target, mask, m)  # type: ignore[misc]
        grad_edges = torch.einsum("bpo,bo->p", Z[:, :, F - O :], g)
        self._grad[src, dst + C] += grad_edges * m
        return float(value)

    def _tbptt_step(
        self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, m: int
    ) -> float:
        net = self.net
        dyn, A = net.dynamics, net.A.detach()
        B, F = x.shape[0], net.topology.n_free
        h_in = self._h if self._h is not None else torch.zeros(B, F, dtype=A.dtype, device=A.device)
        self._window.append((x, target, mask, h_in))
        assert self.truncation is not None
        while len(self._window) > self.truncation:
            self._window.popleft()
        xs = torch.stack([w[0] for w in self._window])
        last = len(self._window) - 1

        def feed(l: int, y: torch.Tensor):
            return element_loss(self.loss, y, target, mask, m) if (l == last and m) else None

        value, dA, _, after = bptt_sequence(
            dyn, A, xs, feed, SequenceState(self._window[0][3], None)
        )
        self._h = after.h
        self._grad += dA * m
        return float(value) if m else math.nan

    def _update(self) -> None:
        if self._count:
            grad = self._grad / self._count
            self.net.A.grad = grad.clone()
            self._last_gradient = grad
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self._grad.zero_()
        self._count = 0
        self._since_update = 0


def fast_adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """torch.optim.Adam, fused where this torch has a fused Adam for the parameters' device
    (one kernel per step; the per-step cost that matters when stepping after every element)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Denormal floats flushed to zero inside the block (torch's default, off, restored after).

    Long streams drive some sensitivities and Adam moments into the denormal range, where CPU
    arithmetic is many times slower (measured on the delayed-recall network: 2.5× fewer ticks
    per second); flushing changes only values below ~1e-38 (float32) / 1e-308 (float64)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
