"""Streams: gradient methods that consume a sequence one element at a time (the protocol of
:mod:`meshprop.streams.protocol`), registered by name (:mod:`meshprop.streams.registry`):
"fop" (RTRL, :mod:`~meshprop.streams.rtrl`), "bptt" (:mod:`~meshprop.streams.bptt`),
"tbptt" (:mod:`~meshprop.streams.tbptt`), and the approximate online methods "snap" (SnAp-k,
:mod:`~meshprop.streams.snap`) and "uoro" (:mod:`~meshprop.streams.uoro`).
``meshprop.sequence_gradient`` folds over them and ``meshprop.OnlineLearner`` loops around the
online ones."""

from .element import SEQUENCE_LOSSES, element_loss
from .guard import check_stream_memory
from .protocol import SequenceState, StreamCarry, StreamMethod
from .registry import ONLINE_METHODS, STREAM_METHODS, get_stream_method

__all__ = [
    "ONLINE_METHODS",
    "SEQUENCE_LOSSES",
    "STREAM_METHODS",
    "SequenceState",
    "StreamCarry",
    "StreamMethod",
    "check_stream_memory",
    "element_loss",
    "get_stream_method",
]
