"""meshprop.sklearn: scikit-learn's own estimator checks (no expected failures), and the
estimators inside Pipeline, cross_val_score, GridSearchCV, clone, pickle and partial_fit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from meshprop.sklearn import MeshClassifier, MeshRegressor


@pytest.mark.slow
# 15 epochs instead of the default 50: every contract check is the same, and the fitted
# models still pass scikit-learn's own accuracy thresholds (check_classifiers_train,
# check_regressors_train) at a third of the cost
@parametrize_with_checks([MeshClassifier(epochs=15), MeshRegressor(epochs=15)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_classifier_in_pipeline_cross_val_and_grid_search():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(MinMaxScaler(), MeshClassifier(epochs=20, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    search = GridSearchCV(
        MeshClassifier(epochs=10, random_state=0), {"hidden": [2, 8], "ticks": [1, 2]}, cv=2
    )
    search.fit(X, y)
    assert search.best_params_["hidden"] in (2, 8)
    assert search.best_estimator_.network_.topology.n_hidden == search.best_params_["hidden"]
    assert search.best_estimator_.network_.ticks == search.best_params_["ticks"]


def test_predict_proba_classes_and_string_labels():
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MeshClassifier(epochs=20, random_state=1).fit(X, labels)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, labels) > 0.8


def test_same_random_state_same_model_and_clone_is_unfitted():
    X, y = load_iris(return_X_y=True)
    a = MeshClassifier(epochs=3, random_state=5).fit(X, y)
    b = MeshClassifier(epochs=3, random_state=5).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = clone(a)
    assert c.get_params() == a.get_params() and not hasattr(c, "network_")
    c.set_params(hidden=4, grad="bptt")
    assert c.fit(X, y).network_.grad == "bptt"


def test_pickle_round_trip_predicts_identically():
    X, y = make_regression(n_samples=60, n_features=4, noise=0.1, random_state=0)
    reg = MeshRegressor(epochs=5, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))


def test_partial_fit_continues_training():
    X, y = load_iris(return_X_y=True)
    clf = MeshClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    losses = []
    for _ in range(15):
        clf.partial_fit(X, y, classes=[0, 1, 2])
        proba = clf.predict_proba(X)
        losses.append(-np.log(proba[np.arange(len(y)), y]).mean())
    assert clf.n_iter_ == 15
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y + 5)


def test_regressor_two_targets_and_partial_fit():
    X, y = make_regression(n_samples=80, n_features=3, n_targets=2, random_state=0)
    reg = MeshRegressor(epochs=40, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (80, 2)
    assert reg.score(X, y) > 0.8
    online = MeshRegressor(random_state=0)
    for _ in range(3):
        online.partial_fit(X, y)
    assert online.n_iter_ == 3 and online.predict(X).shape == (80, 2)


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("hidden", -1, "hidden"),
        ("ticks", 0, "ticks"),
        ("density", 1.5, "density"),
        ("epochs", 0, "epochs"),
        ("lr", -1.0, "lr"),
        ("activation", "cube", "activation"),
        ("grad", "magic", "magic"),
    ],
)
def test_bad_parameters_raise_at_fit(param, value, match):
    X, y = load_iris(return_X_y=True)
    clf = MeshClassifier(**{param: value})  # scikit-learn's rule: no validation in __init__
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)
