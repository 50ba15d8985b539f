"""What meshprop does while ``torch.compile`` traces it, kept out of the import of meshprop.

``torch.compiler.disable`` and ``torch.compiler.assume_constant_result`` import
``torch._dynamo`` when they decorate a function: about 1.3 s of CPU, paid by every process that
imports an engine, though only a process that compiles needs it.  The functions that carry
these decorators live here, and the code ``torch.compile`` traces imports this module only on
its compiling branch (``torch.compiler.is_compiling()``), when ``torch._dynamo`` is loaded
already: the tracer imports it (once) and sees the decorated functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import torch

if TYPE_CHECKING:
    from .dynamics import Dynamics
    from .protocol import VJPFunction

__all__ = ["eager_apply", "limit_while_compiling", "refuse_eagerly"]


@torch.compiler.assume_constant_result
def limit_while_compiling() -> int | None:
    """The memory limit, taken as a constant of the graph that ``torch.compile`` is building."""
    from .memory import get_memory_limit

    return get_memory_limit()


@torch.compiler.disable
def refuse_eagerly(
    engine: str, dyn: Dynamics, batch: int, itemsize: int, estimate: int, limit: int, layout: str
) -> NoReturn:
    """The memory guard's refusal (:func:`meshprop.engines.guard.refuse_below_transforms`),
    never traced: its suggestion runs every engine's estimate, with the plans they cache."""
    from .engines.guard import refuse_below_transforms

    refuse_below_transforms(engine, dyn, batch, itemsize, estimate, limit, layout)


@torch.compiler.disable
def eager_apply(
    fn: VJPFunction, names: tuple[str, ...], x: torch.Tensor, *values: torch.Tensor
) -> torch.Tensor:
    """The autograd bridge (:func:`meshprop.protocol.apply`) called from code that
    ``torch.compile`` traces: run in eager mode."""
    from .protocol import bridge_apply

    return bridge_apply(fn, names, x, *values)
