"""The registry of stream methods: one line per method.

A new method is a new module with a :class:`~meshprop.streams.protocol.StreamMethod` subclass
(its ``name``, ``online`` and the keyword ``options`` it takes: ``truncation``, ``order``,
``seed``) and one entry in :data:`_METHODS` below; ``sequence_gradient`` and, if it is online,
``OnlineLearner`` and ``mp.ONLINE_METHODS`` then serve it.
"""

from __future__ import annotations

from typing import Any

from .bptt import BPTT
from .protocol import StreamMethod
from .rtrl import RTRL
from .snap import SnAp
from .tbptt import TBPTT
from .uoro import UORO

__all__ = ["ONLINE_METHODS", "STREAM_METHODS", "get_stream_method"]

_METHODS: dict[str, type[StreamMethod]] = {
    "fop": RTRL,
    "bptt": BPTT,
    "tbptt": TBPTT,
    "snap": SnAp,
    "uoro": UORO,
}

#: every registered stream method
STREAM_METHODS: tuple[str, ...] = tuple(_METHODS)
#: the registered methods that learn online (bounded memory): ``OnlineLearner``'s ``method``
ONLINE_METHODS: tuple[str, ...] = tuple(n for n, c in _METHODS.items() if c.online)


def get_stream_method(name: str, online: bool = False, **options: Any) -> StreamMethod:
    """The method ``name`` with its keyword ``options`` (a None option is "not given"); with
    ``online`` only the online methods.  ValueError for an unknown name or an option the
    method does not take."""
    cls = _METHODS.get(name)
    if cls is None or (online and not cls.online):
        names = ONLINE_METHODS if online else STREAM_METHODS
        kind = "online" if online else "stream"
        hint = " (full 'bptt' needs the whole sequence: use sequence_gradient)" if online else ""
        raise ValueError(f"unknown {kind} method {name!r}; expected one of {names}{hint}")
    for key, value in options.items():
        if value is not None and key not in cls.options:
            takers = " or ".join(repr(n) for n, c in _METHODS.items() if key in c.options)
            raise ValueError(f"{key} applies to method {takers or 'none'} only, not {name!r}")
    return cls(**{key: options.get(key) for key in cls.options})
