"""Streams: gradient methods that consume a sequence one element at a time (the protocol of
:mod:`meshprop.streams.protocol`), registered by name (:mod:`meshprop.streams.registry`):
"fop" (RTRL, :mod:`~meshprop.streams.rtrl`), "bptt" (:mod:`~meshprop.streams.bptt`),
"tbptt" (:mod:`~meshprop.streams.tbptt`), and the approximate online methods "snap" (SnAp-k,
:mod:`~meshprop.streams.snap`) and "uoro" (:mod:`~meshprop.streams.uoro`).
``meshprop.sequence_gradient`` folds over them and ``meshprop.OnlineLearner`` loops around the
online ones.  :func:`fop_cost` says, before anything is built, what exact "fop" will cost per
tick and which representation of its sensitivities it will use (:mod:`~meshprop.streams.cost`:
dense, or the pattern the topology can reach, :mod:`~meshprop.streams.pattern`)."""

from .cost import FOPCost, fop_cost, fop_representation
from .element import SEQUENCE_LOSSES, element_loss
from .guard import check_stream_memory
from .protocol import SequenceState, StreamCarry, StreamMethod
from .registry import ONLINE_METHODS, STREAM_METHODS, get_stream_method

__all__ = [
    "ONLINE_METHODS",
    "SEQUENCE_LOSSES",
    "STREAM_METHODS",
    "FOPCost",
    "SequenceState",
    "StreamCarry",
    "StreamMethod",
    "check_stream_memory",
    "element_loss",
    "fop_cost",
    "fop_representation",
    "get_stream_method",
]
