"""The convolutional autoencoder (CAE) that compresses a 28×28 image into 32 values, as in the
real-world experiment of paper 001 (images → CAE code → MNN or MLP).

The authors' script used a different, smaller CAE (two strided convolutions with max pooling,
an 8×2×2 = 32-value code, 10 epochs); this one is ours, chosen to train in a few minutes on two
CPU cores and to give a linearly more useful code:

    encoder: 1×28×28 → Conv(1→16, 3×3, stride 2, pad 1) → ReLU → 16×14×14
                     → Conv(16→32, 3×3, stride 2, pad 1) → ReLU → 32×7×7 → Linear(1568 → 32)
    decoder: 32 → Linear(32 → 256) → ReLU → Linear(256 → 784) → sigmoid → 1×28×28

The decoder is dense, not transposed convolutions: on two CPU cores a convolutional decoder at
28×28 made a training step about five times slower, and only the encoder's code is used.

Inputs are flat rows of 784 pixels in [0, 1]; the output has the same shape, so the CAE trains
through the one training loop (``meshprop.training.fit``) with the ``"mse"`` loss against its
own input.  :data:`CAE_ARCHITECTURE` is the text above in one line: it enters the feature-cache
key (:mod:`meshprop.data.features`), so changing the architecture invalidates cached features.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CAE_ARCHITECTURE", "CODE_SIZE", "ConvAutoencoder"]

#: the size of the code (the experiment's inputs).
CODE_SIZE = 32
#: the architecture, as it enters the feature-cache key.
CAE_ARCHITECTURE = (
    "cae-v1: conv(1,16,3,s2,p1) relu conv(16,32,3,s2,p1) relu linear(1568,{code}) | "
    "linear({code},256) relu linear(256,side*side) sigmoid"
)


class ConvAutoencoder(nn.Module):
    """The CAE of the module docstring; ``cae(x)`` reconstructs, ``cae.encode(x)`` codes.

    Args:
        side: image side (28 for MNIST/Fashion-MNIST; must be a multiple of 4).
        code: the code size (default 32).
        seed: seeds the initial weights (default: torch's global generator).
    """

    def __init__(self, side: int = 28, code: int = CODE_SIZE, seed: int | None = None) -> None:
        super().__init__()
        if side < 4 or side % 4:
            raise ValueError(f"side must be a positive multiple of 4, got {side}")
        if code < 1:
            raise ValueError(f"code must be >= 1, got {code}")
        self.side, self.code = side, code
        inner = side // 4
        flat = 32 * inner * inner
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.encoder = nn.Sequential(
                nn.Unflatten(1, (1, side, side)),
                nn.Conv2d(1, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(flat, code),
            )
            self.decoder = nn.Sequential(
                nn.Linear(code, 256),
                nn.ReLU(),
                nn.Linear(256, side * side),
                nn.Sigmoid(),
            )

    @property
    def architecture(self) -> str:
        return CAE_ARCHITECTURE.format(code=self.code) + f" side={self.side}"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of flat images x (B, side²) → (B, code)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of flat images x (B, side²) → (B, side²)."""
        return self.decoder(self.encoder(x))
