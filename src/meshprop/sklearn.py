"""scikit-learn estimators over a mesh neural network: :class:`MeshClassifier` and
:class:`MeshRegressor`.

Each estimator builds a random mesh (``Topology.random``: ``hidden`` neurons, a ``density``
fraction of the allowed edges kept), a :class:`meshprop.MeshNet` running ``ticks`` ticks of
S_n = φ̂(S_{n-1}A) (paper 000 Eq. 3) with linear output neurons, and trains it through the one
training loop :func:`meshprop.training.fit` (its gradient engine ``grad``, paper 000 Eq. 13 for
"fop"; Adam from ``torch.optim``; the thread policy of :mod:`meshprop.threads`).

Inputs are standardised with the training mean and standard deviation (``standardize=True``)
and a regressor's target too, so the defaults work on raw tabular data.  Everything runs in
float64, so predictions do not depend on how a data set is split into batches.

    from sklearn.model_selection import cross_val_score
    from meshprop.sklearn import MeshClassifier
    cross_val_score(MeshClassifier(random_state=0), X, y, cv=5)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .layout import layout_of
from .mesh import LAYOUTS, MeshNet
from .topology import Topology
from .training import fit as fit_model
from .training.inference import outputs
from .training.optim import build_optimizer

__all__ = ["MeshClassifier", "MeshRegressor"]

_SEED_BOUND = 2**31 - 1


def _check_params(est: _MeshEstimator) -> None:
    """Validate the hyper-parameters at fit time (scikit-learn's rule: never in __init__)."""

    def positive_int(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

    positive_int("ticks", est.ticks)
    positive_int("epochs", est.epochs)
    positive_int("batch_size", est.batch_size)
    if isinstance(est.hidden, bool) or not isinstance(est.hidden, int | np.integer):
        raise ValueError(f"hidden must be an integer >= 0, got {est.hidden!r}")
    if est.hidden < 0:
        raise ValueError(f"hidden must be an integer >= 0, got {est.hidden!r}")
    if not isinstance(est.density, float | int) or not 0.0 < float(est.density) <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {est.density!r}")
    if not isinstance(est.lr, float | int) or not float(est.lr) > 0.0:
        raise ValueError(f"lr must be a positive number, got {est.lr!r}")
    if not isinstance(est.weight_decay, float | int) or float(est.weight_decay) < 0.0:
        raise ValueError(f"weight_decay must be a number >= 0, got {est.weight_decay!r}")
    if est.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {est.layout!r}")


class _MeshEstimator(BaseEstimator):
    """What both estimators share: the network, its training, standardisation, pickling."""

    _loss: str

    def __init__(
        self,
        hidden: int = 16,
        ticks: int = 3,
        density: float = 0.5,
        activation: str = "tanh",
        grad: str = "fop",
        epochs: int = 50,
        lr: float = 0.01,
        batch_size: int = 32,
        weight_decay: float = 0.01,
        optimizer: str = "adam",
        standardize: bool = True,
        threads: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        layout: str = "dense",
    ) -> None:
        self.hidden = hidden
        self.ticks = ticks
        self.density = density
        self.activation = activation
        self.grad = grad
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.standardize = standardize
        self.threads = threads
        self.random_state = random_state
        self.layout = layout

    # ------------------------------------------------------------ the network
    def _build(self, n_features: int, n_outputs: int, rng: np.random.RandomState) -> None:
        """A fresh topology and MeshNet (linear outputs: logits or regression values)."""
        _check_params(self)
        topology = Topology.random(
            inputs=n_features,
            hidden=int(self.hidden),
            outputs=n_outputs,
            density=float(self.density),
            seed=int(rng.randint(_SEED_BOUND)),
        )
        self.network_ = MeshNet(
            topology,
            ticks=int(self.ticks),
            activation=self.activation,
            output_activation="identity",
            grad=self.grad,
            dtype=torch.float64,
            seed=int(rng.randint(_SEED_BOUND)),
            layout=self.layout,
        )
        self._optimizer: torch.optim.Optimizer | None = None
        self._rng = rng
        self.n_iter_ = 0

    def _set_scaling(self, X: np.ndarray) -> None:
        if self.standardize:
            scale = X.std(axis=0)
            self.x_mean_ = X.mean(axis=0)
            self.x_scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.x_mean_ = np.zeros(X.shape[1])
            self.x_scale_ = np.ones(X.shape[1])

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        return torch.tensor((np.asarray(X, dtype=np.float64) - self.x_mean_) / self.x_scale_)

    def _train(self, X: np.ndarray, target: np.ndarray, epochs: int, seed: int) -> None:
        """``epochs`` epochs of :func:`meshprop.training.fit`, continuing the optimiser state."""
        if self._optimizer is None:
            self._optimizer = build_optimizer(
                self.optimizer, self.network_.parameters(), float(self.lr), 0.0, self.weight_decay
            )
        fit_model(
            self.network_,
            (self._inputs(X), torch.tensor(target)),
            loss=self._loss,
            optimizer=self._optimizer,
            epochs=epochs,
            batch_size=int(self.batch_size),
            seed=seed,
            progress=False,
            threads=self.threads,
            evaluate_train=False,
        )
        self.n_iter_ += epochs

    @torch.no_grad()
    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        self.network_.eval()
        return outputs(self.network_, self._inputs(X)).numpy()

    # ---------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        """The network travels as its configuration and weights — its edge vector, whatever the
        layout (its gradient hook does not pickle); the optimiser state of ``partial_fit`` is
        not kept."""
        state = dict(self.__dict__)
        net = state.pop("network_", None)
        state.pop("_optimizer", None)
        if net is not None:
            state["_network_state"] = {
                "topology": net.topology.to_dict(),
                "weights": net.edge_weights().clone(),
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_network_state", None)
        self.__dict__.update(state)
        self._optimizer = None
        if saved is not None:
            topology = Topology.from_dict(saved["topology"])
            weights = saved.get("weights")
            if weights is None:  # pickled before the layouts: the N×N matrix "A"
                weights = layout_of("dense", topology).edge_values(saved["A"])
            self.network_ = MeshNet(
                topology,
                ticks=int(self.ticks),
                activation=self.activation,
                output_activation="identity",
                grad=self.grad,
                dtype=torch.float64,
                layout=getattr(self, "layout", "dense"),
            )
            storage = self.network_.storage
            with torch.no_grad():
                self.network_.parameter.copy_(storage.from_edge_values(weights))


class MeshClassifier(ClassifierMixin, _MeshEstimator):
    """A mesh neural network classifier (cross-entropy on the output neurons' logits).

    Parameters:
        hidden: hidden neurons of the random mesh.
        ticks: T, ticks of S_n = φ̂(S_{n-1}A) per sample (paper 000 Eq. 3).
        density: fraction of the allowed edges kept (``Topology.random``).
        activation: φ of the hidden neurons (a name of ``meshprop.ACTIVATIONS``); outputs are
            linear (logits).
        grad: the gradient engine (a name of ``meshprop.GRADIENT_METHODS``).
        epochs, lr, batch_size, weight_decay, optimizer: of :func:`meshprop.fit`
            (``partial_fit`` runs one epoch).
        standardize: scale the inputs with the training mean and standard deviation.
        threads: torch threads while training (``None``: meshprop's default, 1).
        random_state: seeds the topology, the initial weights and the mini-batches.
        layout: how the network stores its weights: ``"dense"`` (an N×N matrix) or
            ``"sparse"`` (one weight per edge; for large, sparse meshes).  Both compute the
            same function and gradients.

    Attributes: ``classes_``, ``n_features_in_``, ``network_`` (the trained MeshNet),
    ``n_iter_`` (epochs trained).
    """

    _loss = "cross_entropy"

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def fit(self, X: Any, y: Any) -> MeshClassifier:
        """Train a new network on (X, y) for ``epochs`` epochs; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"MeshClassifier needs samples of at least 2 classes; got only one class "
                f"({self.classes_[0]!r})"
            )
        rng = check_random_state(self.random_state)
        self._set_scaling(X)
        self._build(X.shape[1], len(self.classes_), rng)
        self._train(X, self._encode(y), int(self.epochs), int(rng.randint(_SEED_BOUND)))
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MeshClassifier:
        """One epoch on (X, y); the first call needs ``classes`` (every label that will ever
        occur) and fixes the standardisation to this first batch's statistics."""
        first = not hasattr(self, "network_")
        X, y = validate_data(self, X, y, dtype=np.float64, reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("the first call to partial_fit needs classes=(every label)")
            self.classes_ = np.unique(np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError("MeshClassifier needs at least 2 classes, got one class")
            self._set_scaling(X)
            self._build(X.shape[1], len(self.classes_), check_random_state(self.random_state))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the first call's {self.classes_}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown} not in classes {self.classes_}")
        self._train(X, self._encode(y), 1, int(self._rng.randint(_SEED_BOUND)))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities: the softmax of the output neurons, columns in ``classes_``."""
        logits = torch.from_numpy(self._outputs(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of every sample."""
        outputs = self._outputs(X)  # checks first that the model is fitted
        return self.classes_[np.argmax(outputs, axis=1)]


class MeshRegressor(RegressorMixin, _MeshEstimator):
    """A mesh neural network regressor (mean squared error on linear output neurons).

    Parameters as :class:`MeshClassifier`; the target is standardised too (with
    ``standardize=True``) and predictions are mapped back.  A 2-D ``y`` trains one output neuron
    per column.  Attributes: ``n_features_in_``, ``network_``, ``n_iter_``.
    """

    _loss = "mse"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _target(self, y: np.ndarray) -> np.ndarray:
        y2 = y.reshape(len(y), -1)
        return (y2 - self.y_mean_) / self.y_scale_

    def _prepare(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, reset=reset)
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self._y_ndim = y.ndim
            y2 = y.reshape(len(y), -1)
            scale = y2.std(axis=0) if self.standardize else np.ones(y2.shape[1])
            self.y_mean_ = y2.mean(axis=0) if self.standardize else np.zeros(y2.shape[1])
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        elif y.reshape(len(y), -1).shape[1] != len(self.y_mean_):
            raise ValueError(
                f"y has {y.reshape(len(y), -1).shape[1]} targets per sample, the model "
                f"was fitted with {len(self.y_mean_)}"
            )
        return X, y

    def fit(self, X: Any, y: Any) -> MeshRegressor:
        """Train a new network on (X, y) for ``epochs`` epochs; returns self."""
        X, y = self._prepare(X, y, reset=True)
        rng = check_random_state(self.random_state)
        self._set_scaling(X)
        self._build(X.shape[1], len(self.y_mean_), rng)
        self._train(X, self._target(y), int(self.epochs), int(rng.randint(_SEED_BOUND)))
        return self

    def partial_fit(self, X: Any, y: Any) -> MeshRegressor:
        """One epoch on (X, y); the first call fixes the standardisation to its statistics."""
        first = not hasattr(self, "network_")
        X, y = self._prepare(X, y, reset=first)
        if first:
            self._set_scaling(X)
            self._build(X.shape[1], len(self.y_mean_), check_random_state(self.random_state))
        self._train(X, self._target(y), 1, int(self._rng.randint(_SEED_BOUND)))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, shaped like the ``y`` the model was fitted with."""
        y = self._outputs(X) * self.y_scale_ + self.y_mean_
        return y[:, 0] if self._y_ndim == 1 else y
