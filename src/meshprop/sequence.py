"""Sequences and streams through a MeshNet: ``sequence_gradient`` and ``OnlineLearner``.

A sequence x (L, B, I) gives an output after every element, y (L, B, O) (``MeshNet.unroll``);
the loss is the mean over the masked (l, b) pairs of the per-sample loss (mse: mean over the
outputs of (y − t)²; cross_entropy: −log softmax(y)[label]).  Both functions are built on the
stream protocol of :mod:`meshprop.streams` (a registered method's carry: ``advance`` an
element, ``feed`` its dE/dy, ask the ``gradient``), on either layout:

- :func:`sequence_gradient` is a fold over it: "fop" (RTRL, paper 000 Eq. 13 / 17 carried from
  element to element: exact, memory flat in L), "bptt" (the reciprocal network of paper 004
  over the whole stored sequence), "tbptt" (fixed windows [0, k), [k, 2k), … each a "bptt"
  fold from a constant entering state), "snap" and "uoro" (the approximate online methods,
  folded as they learn online), and "autograd" (PyTorch's graph over ``Layout.unroll``: the
  oracle);
- :class:`OnlineLearner` is a loop around an online method's carry: the loss, the
  accumulated gradient, the optimizer step.

``fop_factored`` (paper 000 Eqs. 14–16) is not offered for sequences: unrolled over a sequence
its products of Jacobians grow with (L·T)², where the carried sensitivities of ``fop`` stay flat.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .fast_optim import FastAdam, fast_adam
from .layout import Layout
from .losses import loss_and_grad, loss_value, validate_target
from .mesh import MeshNet, carry_optimizer_state
from .streams import (
    ONLINE_METHODS,
    SEQUENCE_LOSSES,
    STREAM_METHODS,
    SequenceState,
    StreamCarry,
    check_stream_memory,
    element_loss,
    get_stream_method,
)
from .topology import Topology

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

#: the methods of ``sequence_gradient``: every registered stream method and "autograd"
SEQUENCE_METHODS = (*STREAM_METHODS, "autograd")
#: the learner sums the carried sensitivities every this many elements (and checks every
#: gradient it hands the optimizer): inf/NaN raise ChaoticNetworkError
CHAOS_CHECK_EVERY = 64


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
    order: int | None = None,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of a sequence and dE/dθ by ``method``, in the storage's shape ((N, N), zero
    outside the mask, or (P,) per edge on the sparse layout).

    x: (L, B, I); target: (L, B, O) floats for "mse", (L, B) labels for "cross_entropy"; mask:
    (L, B) bool, the elements that carry a loss (default: all).  ``state`` (a
    :class:`SequenceState`, optional) is the stream's state entering x and is advanced in place
    to the state after x: with ``method="fop"`` it holds the sensitivities, so a stream cut into
    chunks gets exactly the gradient of the whole (the chunks' losses and gradients add up,
    each weighted by its share of the masked pairs); the other methods treat the entering state
    as a constant.  ``method`` is any of :data:`SEQUENCE_METHODS`: the registered stream methods
    with their options (``truncation`` for "tbptt", ``order`` for "snap" (SnAp-k), ``seed`` for
    "uoro": the approximate online methods fold over the sequence as they would learn online,
    their gradient an estimate of the exact one) and "autograd".  The parameter's ``.grad`` is
    left untouched.
    """
    net = _check_net(net)
    if method not in SEQUENCE_METHODS:
        raise ValueError(f"unknown sequence method {method!r}; expected one of {SEQUENCE_METHODS}")
    loss = _check_loss(loss)
    stream = None
    if method == "autograd":
        for key, given in (("truncation", truncation), ("order", order), ("seed", seed)):
            if given is not None:
                raise ValueError(f"{key} does not apply to method 'autograd'")
    else:  # tbptt folds over "bptt" windows; the registry checks the options
        stream = get_stream_method(method, truncation=truncation, order=order, seed=seed)
    if state is not None and not isinstance(state, SequenceState):
        raise TypeError(f"state must be a meshprop.SequenceState, got {type(state).__name__}")
    x = net.prepare_sequence(x)
    L, B = x.shape[0], x.shape[1]
    storage, theta, dyn = net.storage, net.parameter, net.dynamics
    O, F, dev = net.topology.n_outputs, net.topology.n_free, theta.device
    target = _check_sequence_target(loss, target, L, B, O, dev)
    mask = _check_mask(mask, (L, B), dev)
    total = int(mask.sum())
    if total == 0:
        raise ValueError("mask selects no element: at least one (l, b) pair must carry a loss")
    if state is not None and state.h is not None and tuple(state.h.shape) != (B, F):
        raise ValueError(f"state.h must have shape {(B, F)}, got {tuple(state.h.shape)}")
    h0 = None if state is None or state.h is None else state.h.to(theta).detach()

    if stream is None:  # autograd: the oracle
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            start = torch.zeros(B, F, dtype=theta.dtype, device=dev) if h0 is None else h0
            y, h_end = storage.unroll(dyn, leaf, x, start)
            value = loss_value(loss, y[mask], target[mask])
            (grad,) = torch.autograd.grad(value, leaf)
        if state is not None:
            state.h, state.sensitivities = h_end.detach(), None
        return value.detach(), storage.project(grad)

    itemsize = theta.element_size()
    if method == "tbptt":
        k = int(stream.settings["truncation"] or 1)  # checked (>= 1) by TBPTT
        windows = [(start, min(start + k, L)) for start in range(0, L, k)]
        stream = get_stream_method("bptt")
    else:
        windows = [(0, L)]
    check_stream_memory(stream, dyn, storage, B, itemsize, windows[0][1] - windows[0][0])
    value = torch.zeros((), dtype=theta.dtype, device=dev)
    grad = torch.zeros(storage.shape, dtype=theta.dtype, device=dev)
    h = h0
    Z = None if state is None else state.sensitivities
    carry: StreamCarry | None = None
    for begin, end in windows:  # the fold: advance, feed, gradient
        carry = stream.start(dyn, storage, theta, B)
        carry.enter(h, Z if method == "fop" else None)
        for l in range(begin, end):
            y = carry.advance(theta, x[l])
            fed = element_loss(loss, y, target[l], mask[l], total)
            if fed is not None:
                value = value + fed[0]
                carry.feed(theta, fed[1])
        grad += carry.gradient(theta)
        h = carry.h.detach().clone()  # the next window enters from a constant state
    assert carry is not None
    if state is not None:
        state.h, state.sensitivities = h, carry.sensitivities
    return value, grad


class OnlineLearner:
    """Learn from a stream one element at a time: a loop around an online stream method.

    ``step(x_t, target_t, mask_t=None)`` runs element t (x_t: (B, I)) for ``net.ticks`` ticks
    from the state left by element t−1, returns its loss (the mean over the masked samples of
    the per-sample loss; NaN when none is masked) and feeds its dE/dy to the method's carry;
    every ``update_every`` elements the optimizer is stepped with the gradient of the mean loss
    over the masked (element, sample) pairs since the last step, written to the parameter's
    ``.grad`` (a buffer the learner reuses, in the storage's shape, zero off the edges).

    ``method`` is any registered online method (``mp.ONLINE_METHODS``), with its keyword options
    (``truncation``, ``order``, ``seed``):

    - ``"fop"``: real-time recurrent learning (:mod:`meshprop.streams.rtrl`).  The
      sensitivities (paper 000 Eq. 17) are carried forward across elements and across weight
      updates, so the gradient of element t is exact through the whole past (exact while the
      weights are frozen; with updates, the past's sensitivities were computed with the older
      weights, as in RTRL).  Memory flat in the stream's length: O(B·P·F) on the dense
      representation, O(B·K) on the pattern the topology can reach, whichever
      :func:`meshprop.streams.fop_cost` finds cheaper (O(P) per tick on a recurrence of
      self-loops only).
    - ``"tbptt"``: the loss of element t is backpropagated (reciprocal network) through the last
      ``truncation`` elements, from the state that entered them (a constant).
    - ``"snap"`` with ``order=k``: SnAp-k (:mod:`meshprop.streams.snap`), RTRL's sensitivities
      kept within k ticks of each edge (the outputs' rows in full); exact once k reaches the
      saturation order.
    - ``"uoro"`` with ``seed``: UORO (:mod:`meshprop.streams.uoro`), an unbiased rank-one
      estimate of the sensitivities, O(F + P) memory per stream.

    Only the first element (or one whose shapes differ from the last's) is validated in full;
    later ones go straight to the carry.  The optimizer is stepped with ``optimizer.step()``,
    or, for a :class:`~meshprop.fast_optim.FastAdam` (what :func:`fast_adam` builds), with its
    ``direct_step()``: the same update without ``Optimizer.step``'s per-call machinery (no step
    hooks).  For throughput use :func:`fast_adam` and :func:`flush_denormals`, and one thread
    (``torch.set_num_threads(1)``: at these sizes a second thread costs more than it gives);
    ``meshprop online`` does all three.

    **Structure changes.**  The carry is built for a topology value.  When ``net.topology``
    changed (``meshprop.structure.rewire``, ``net.rewire_``), the next step rebuilds the carry
    for the new topology: the state h is carried over, the method's memory of the past (RTRL's
    sensitivities, tbptt's window) restarts from 0, and the gradient accumulated since the last
    optimizer step is dropped (it belongs to the old edges; the next update averages over the
    elements after the change).  The optimizer's per-weight state is made to follow
    (:func:`meshprop.mesh.carry_optimizer_state`, what ``net.rewire_`` does when given the
    optimizer): kept edges keep their state, removed and new edges are reset (a removed edge's
    Adam moments become 0), a parameter the change replaced is handed to the optimizer, so no
    weight ever moves off the mask.

    float32 sensitivities can overflow when the weights make the network chaotic: the learner
    raises :class:`ChaoticNetworkError` before a non-finite gradient reaches the optimizer (it
    checks every gradient it hands over, the loss of every element and the carry every
    ``CHAOS_CHECK_EVERY`` elements).  A NaN/inf input or target raises ValueError.
    """

    def __init__(
        self,
        net: MeshNet,
        optimizer: torch.optim.Optimizer,
        loss: str = "mse",
        method: str = "fop",
        truncation: int | None = None,
        update_every: int = 1,
        order: int | None = None,
        seed: int | None = None,
        *,
        lean: bool | None = None,
    ) -> None:
        self.net = _check_net(net)
        if lean is not None:
            warnings.warn(
                "OnlineLearner(lean=...) is deprecated and changes nothing: there is one path",
                DeprecationWarning,
                stacklevel=2,
            )
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        param = net.parameter
        if not any(p is param for group in optimizer.param_groups for p in group["params"]):
            raise ValueError(
                f"the optimizer does not hold net.{net.storage.parameter}: build it from "
                "net.parameters()"
            )
        self.stream = get_stream_method(
            method, online=True, truncation=truncation, order=order, seed=seed
        )
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {update_every!r}")
        self.optimizer = optimizer
        self.loss = _check_loss(loss)
        self.method = method
        self.truncation, self.order, self.seed = truncation, order, seed
        self.update_every = update_every
        self.elements = 0  # elements consumed
        self._last_gradient: torch.Tensor | None = None
        self._param = param
        self._topology: Topology = net.topology  # what the carry and the buffer are built for
        self._storage: Layout = net.storage
        self._carry: StreamCarry | None = None
        self._buffer = torch.zeros(net.storage.shape, dtype=param.dtype, device=param.device)
        # the shapes of the last checked element: later elements of these shapes skip the checks
        self._x_shape = self._target_shape = self._mask_shape = torch.Size([-1])
        self._count = 0  # masked samples since the last update
        self._since_update = 0

    # ------------------------------------------------------------ read-outs
    @property
    def state(self) -> torch.Tensor | None:
        """The free neurons' state h (B, F) after the last element (None before the first)."""
        return None if self._carry is None else self._carry.h.clone()

    @property
    def sensitivities(self) -> torch.Tensor | None:
        """method "fop": Z = ∂h/∂θ_p (B, P, F) after the last element, P edges in
        ``topology.edges`` order (None before the first element or for other methods)."""
        return None if self._carry is None else self._carry.sensitivities

    @property
    def last_output(self) -> torch.Tensor | None:
        """The network's outputs (B, O) after the element just consumed by :meth:`step`: its
        prediction for that element (a copy, detached).  None before the first element.
        Reading it costs one small copy; not reading it costs nothing."""
        carry = self._carry
        if carry is None or self.elements == 0 or getattr(carry, "y", None) is None:
            return None
        return carry.y.detach().clone()

    @property
    def last_gradient(self) -> torch.Tensor | None:
        """The gradient handed to the optimizer at the last update point (every
        ``update_every`` elements), in the storage's shape.  None before the first update
        point, and None after an update point where no sample carried a loss since the previous
        one (the optimizer is not stepped then: there is no gradient)."""
        return None if self._last_gradient is None else self._last_gradient.clone()

    def reset(self) -> None:
        """Start a new stream: state and the method's memory of the past back to 0 (the
        accumulated gradient and the optimizer are kept)."""
        if self._carry is not None:
            if self._count:  # keep the accumulated gradient: same carry, same batch
                self._carry.reset()
            else:  # rebuilt at the next element, which may bring another batch size
                self._carry = None

    # ------------------------------------------------------------ saving
    def _settings(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "loss": self.loss,
            "update_every": self.update_every,
            "truncation": self.truncation,
            "order": self.order,
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything the learner carries from element to element, to continue the stream
        exactly elsewhere (with the network's weights and ``optimizer.state_dict()``, saved
        beside it): the settings, the counters and the method's carry
        (``StreamCarry.state_dict``: h, the accumulated gradient, RTRL's sensitivities or
        tbptt's window).  One format whatever the method's internal path; tensors are copies."""
        carry = self._carry
        return {
            "format": "meshprop-online-learner",
            "version": 2,
            **self._settings(),
            "elements": self.elements,
            "count": self._count,
            "since_update": self._since_update,
            "batch": None if carry is None else carry.batch,
            "carry": None if carry is None else carry.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a learner with the same settings (method, loss,
        ``update_every``, truncation, order, seed) on a network of the same shape; ValueError
        naming what differs otherwise."""
        if not isinstance(state, dict) or state.get("format") != "meshprop-online-learner":
            raise ValueError("not an OnlineLearner state (OnlineLearner.state_dict())")
        if state.get("version") != 2:
            raise ValueError("an OnlineLearner state of an older format: start the stream anew")
        differ = [f"{k} {state.get(k)!r} (this learner: {v!r})"
                  for k, v in self._settings().items() if state.get(k) != v]  # fmt: skip
        if differ:
            raise ValueError("the saved learner differs: " + ", ".join(differ))
        self._follow_topology()
        self._carry = None
        if state["carry"] is not None:
            carry = self._start(int(state["batch"]))
            carry.load_state_dict(state["carry"])
            self._carry = carry
        self._x_shape = self._target_shape = self._mask_shape = torch.Size([-1])
        self.elements = int(state["elements"])
        self._count = int(state["count"])
        self._since_update = int(state["since_update"])

    # ------------------------------------------------------------ steps
    def step(
        self, x_t: torch.Tensor, target_t: torch.Tensor, mask_t: torch.Tensor | None = None
    ) -> float:
        """Consume element t (x_t: (B, I); target_t: (B, O) floats or (B,) labels; mask_t: (B,)
        bool, default all) and return its loss (NaN when no sample is masked)."""
        if (
            self._carry is not None
            and self.net.topology is self._topology
            and isinstance(x_t, torch.Tensor)
            and isinstance(target_t, torch.Tensor)
            and x_t.shape == self._x_shape
            and target_t.shape == self._target_shape
            and (
                mask_t is None or (mask_t.dtype is torch.bool and mask_t.shape == self._mask_shape)
            )
        ):
            return self._consume(self._carry, x_t, target_t, mask_t)
        return self._checked_step(x_t, target_t, mask_t)

    def _checked_step(
        self, x_t: torch.Tensor, target_t: torch.Tensor, mask_t: torch.Tensor | None
    ) -> float:
        """Every argument validated (the first element, one whose shapes differ from the
        last's, or the first after a structure change); then :meth:`_consume`."""
        net = self.net
        self._follow_topology()
        x = net.prepare_sequence(
            x_t.unsqueeze(0) if isinstance(x_t, torch.Tensor) and x_t.dim() == 2 else x_t
        )
        B, O, dev = x.shape[1], net.topology.n_outputs, self._param.device
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
        carry = self._carry
        if carry is not None and carry.batch != B:
            raise ValueError(f"the stream's batch is {carry.batch}, this element has {B}")
        if carry is None:
            carry = self._carry = self._start(B)
        self._x_shape, self._target_shape = x_t.shape, target_t.shape
        self._mask_shape = torch.Size([B])
        m = int(mask.sum())
        return self._consume(carry, x[0], target[0], None if m == B else mask[0])

    def _start(self, batch: int) -> StreamCarry:
        """A new carry for ``batch`` streams, after the memory guard."""
        net, param = self.net, self._param
        check_stream_memory(self.stream, net.dynamics, net.storage, batch, param.element_size())
        return self.stream.start(net.dynamics, net.storage, param, batch)

    def _follow_topology(self) -> None:
        """After a structure change (see the class docstring): a carry, a gradient buffer and
        the optimizer's per-weight state for the new topology (and for the new parameter where
        the change replaced it: the optimizer is made to step that one)."""
        net = self.net
        old_param, param = self._param, net.parameter
        if param is old_param and net.topology is self._topology:
            return
        old, new = self._storage, net.storage
        self._param, self._topology, self._storage = param, net.topology, new
        if param is old_param and net.topology == old.topology and old.shape == new.shape:
            return  # an equal value: nothing changed
        carry_optimizer_state(self.optimizer, old_param, param, old, new)
        self._buffer = torch.zeros(new.shape, dtype=param.dtype, device=param.device)
        if param.grad is not None and tuple(param.grad.shape) == tuple(new.shape):
            param.grad = new.project(param.grad)
        carry = self._carry
        if carry is not None:
            h = carry.h.detach().clone()
            self._carry = self._start(carry.batch)
            self._carry.enter(h)
        self._count = self._since_update = 0
        self._x_shape = self._target_shape = self._mask_shape = torch.Size([-1])

    def _consume(
        self,
        carry: StreamCarry,
        x: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> float:
        """The element through the carry, its loss fed, the optimizer stepped at an update
        point: no validation beyond the shapes (checked in :meth:`step`)."""
        theta = self._param
        carry.advance(theta, x)
        self.elements += 1
        if self.elements % CHAOS_CHECK_EVERY == 0 and not carry.finite():
            raise self._chaos(self.elements)
        B = carry.batch
        if mask is None:
            m = B
        else:
            m = int(mask.sum())
            if m == B:
                mask = None
        direct = self.update_every == 1  # the mean over this element's samples: scale now
        value = math.nan
        if m:
            scale = 1.0 / m if direct else 1.0
            if self.loss == "mse":
                value = carry.feed_mse(theta, target, mask, scale) / m
            else:
                y = carry.y
                rows = torch.arange(B) if mask is None else mask.nonzero().flatten()
                validate_target(self.loss, target[rows], (m, y.shape[1]))
                v, g_rows = loss_and_grad(self.loss, y[rows], target[rows])
                g = torch.zeros_like(y)
                g[rows] = g_rows.to(g.dtype) * (1 if direct else m)
                carry.feed(theta, g)
                value = float(v)
            if not math.isfinite(value):
                raise self._nonfinite_loss(x, target)
        self._count += m
        self._since_update += 1
        if self._since_update == self.update_every:
            self._update(carry, direct)
        return value

    def _update(self, carry: StreamCarry, direct: bool) -> None:
        """An update point: the mean gradient since the last one to the optimizer."""
        count = self._count
        self._count = self._since_update = 0
        if not count:
            self._last_gradient = None
            return
        grad = carry.gradient(self._param, self._buffer)
        if not direct and count != 1:
            grad.div_(count)
        if not math.isfinite(float(grad.sum())):
            raise self._chaos(self.elements)
        param = self._param
        if param.grad is not grad:  # zero_grad(set_to_none=True) may have dropped it
            param.grad = grad
        self._last_gradient = grad
        optimizer = self.optimizer
        if isinstance(optimizer, FastAdam):
            optimizer.direct_step()  # optimizer.step()'s update without its per-call machinery
        else:
            optimizer.step()

    def _nonfinite_loss(self, x: torch.Tensor, target: torch.Tensor) -> Exception:
        """The error for a NaN/inf loss: the input or target's fault, else the state's."""
        if bool(torch.isfinite(x).all()) and bool(torch.isfinite(target).all()):
            return self._chaos(self.elements)  # the state itself overflowed
        return ValueError(
            f"the loss of element {self.elements} is nan or inf: the input or the target "
            "holds NaN or inf"
        )

    def _chaos(self, element: int) -> ChaoticNetworkError:
        dtype = self._param.dtype
        return ChaoticNetworkError(
            f"the {dtype} sensitivities overflowed to inf/NaN by element {element}: "
            "the network turned chaotic (its state is unstable with these "
            "weights); lower the learning rate, use float64, or constrain the weights"
        )


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
