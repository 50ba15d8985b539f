"""What meshprop does while ``torch.compile`` traces it, kept out of the import of meshprop.

``torch.compiler.disable`` and ``torch.compiler.assume_constant_result`` import
``torch._dynamo`` when they decorate a function: about 1.3 s of CPU, paid by every process that
imports an engine, though only a process that compiles needs it.  The functions that carry
these decorators live here, and the code ``torch.compile`` traces imports this module only on
its compiling branch (``torch.compiler.is_compiling()``), when ``torch._dynamo`` is loaded
already: the tracer imports it (once) and sees the decorated functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .memory import get_memory_limit

__all__ = ["call_eagerly", "limit_while_compiling"]


@torch.compiler.assume_constant_result
def limit_while_compiling() -> int | None:
    """The memory limit, taken as a constant of the graph that ``torch.compile`` is building."""
    return get_memory_limit()


@torch.compiler.disable
def call_eagerly(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in eager mode, never traced (nor anything it calls): the autograd bridge
    (:func:`meshprop.protocol.apply`; the engines use NumPy, caches and data-dependent control
    flow) and the memory guard's refusal (its suggestion runs every engine's estimate)."""
    return fn(*args)
