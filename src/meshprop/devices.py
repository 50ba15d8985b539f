"""Where tensors live: the device names the commands take (``--device cpu|cuda``) and the one
check, made before any work, that the device asked for exists.

Every engine, layout and training loop runs on the device of the tensors it is given (the
weights of a MeshNet, the batch); this module only names and checks devices.
"""

from __future__ import annotations

import torch

__all__ = ["DEVICES", "require_device"]

#: the devices ``meshprop train`` and ``meshprop bench`` accept
DEVICES = ("cpu", "cuda")


def require_device(name: str, flag: str = "--device") -> torch.device:
    """The torch device called ``name`` (one of :data:`DEVICES`), or a one-line ValueError
    naming ``flag`` when it is unknown or, for ``cuda``, when torch sees no CUDA device."""
    if name not in DEVICES:
        raise ValueError(f"{flag}: unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{flag} cuda: no CUDA device is available (torch.cuda.is_available() is False); "
            f"use {flag} cpu"
        )
    return torch.device(name)
