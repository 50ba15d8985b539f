"""Where tensors live: the device names the commands take (``--device cpu|cuda``) and the one
check, made before any work, that the device asked for exists.

Every engine, layout and training loop runs on the device of the tensors it is given (the
weights of a MeshNet, the batch); this module only names and checks devices.
"""

from __future__ import annotations

import torch

__all__ = ["DEVICES", "require_device", "resumed_device"]

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


def resumed_device(saved: str, typed: bool, flag: str = "--device") -> tuple[str, str | None]:
    """The device a resumed run continues on, and a one-line note when it is not the saved one.

    A run saved on ``cuda`` and resumed where torch sees no CUDA device continues on the CPU
    (its saved tensors are read onto the CPU: ``map_location="cpu"``) unless ``flag`` was typed
    (``typed``): then the device asked for is checked as usual (:func:`require_device`)."""
    if saved == "cuda" and not typed and not torch.cuda.is_available():
        return "cpu", (
            f"the run was saved on cuda; no CUDA device is available here, so it continues on "
            f"cpu (give {flag} cuda on a machine with one)"
        )
    return saved, None
