"""Training any meshprop model: ``fit`` (one loop; data parallelism is an option of it),
per-epoch metrics, early stopping, optimisers by name.

- :mod:`.batches`: NumPy/tensor data checked and converted, seeded mini-batches;
- :mod:`.optim`: ``torch.optim`` optimisers by name;
- :mod:`.history`: :class:`History` and :class:`EarlyStopping`;
- :mod:`.loop`: :func:`train_step`, :func:`evaluate`, :func:`fit`;
- :mod:`.resume`: :class:`TrainingCheckpoint`, the whole training state saved atomically every
  epoch, so an interrupted run resumes bit-identical;
- :mod:`.jacobian`: :func:`jacobian` (every output w.r.t. every parameter, one forward run);
- :mod:`.levenberg_marquardt`: full-batch Levenberg–Marquardt on that Jacobian (mse only).

Losses and their metrics live in :mod:`meshprop.losses`.  With a fixed ``seed`` (and a model
built with a fixed seed) two runs give identical weights.
"""

from ..losses import metrics
from .batches import make_loader
from .history import EarlyStopping, History
from .jacobian import jacobian
from .levenberg_marquardt import levenberg_marquardt
from .loop import DivergenceError, evaluate, fit, train_step
from .optim import OPTIMIZERS, build_optimizer
from .resume import TrainingCheckpoint, TrainingInterruptedError, load_training_state

__all__ = [
    "OPTIMIZERS",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "TrainingCheckpoint",
    "TrainingInterruptedError",
    "build_optimizer",
    "evaluate",
    "fit",
    "jacobian",
    "levenberg_marquardt",
    "load_training_state",
    "make_loader",
    "metrics",
    "train_step",
]
