"""Datasets: built-in loaders, CSV parsing and its error messages, splits and standardisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from meshprop.data import (
    DATASETS,
    TOY_DATASETS,
    Dataset,
    Standardizer,
    load_csv,
    load_dataset,
    split_dataset,
    split_indices,
)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_sets_are_2d_seeded_and_balanced(name):
    a = load_dataset(name, n_samples=200, seed=3)
    b = load_dataset(name, n_samples=200, seed=3)
    c = load_dataset(name, n_samples=200, seed=4)
    assert a.X.shape == (200, 2) and a.y.shape == (200,)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    counts = np.bincount(a.y)
    assert len(counts) == a.n_classes == (3 if name.startswith("blobs") else 2)
    assert counts.min() >= 200 // a.n_classes - 1


def test_blobs2_classes_are_made_of_two_clusters():
    ds = load_dataset("blobs2", n_samples=1000, seed=0)
    # each class is the union of two independently placed blobs: its spread is far larger
    # than one blob's (std 1 per axis)
    for k in range(3):
        assert ds.X[ds.y == k].std(axis=0).max() > 2.0


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [
        ("iris", (150, 4), 3),
        ("wine", (178, 13), 3),
        ("breast_cancer", (569, 30), 2),
        ("digits", (1797, 64), 10),
    ],
)
def test_sklearn_sets(name, shape, classes):
    ds = load_dataset(name)
    assert ds.X.shape == shape and ds.n_classes == classes and ds.task == "classification"
    assert set(np.unique(ds.y)) == set(range(classes))


@pytest.mark.slow
def test_mnist1d_uses_the_local_generator_and_its_test_split():
    ds = load_dataset("mnist1d")
    assert ds.X.shape == (5000, 40) and ds.n_classes == 10
    split = split_dataset(ds, seed=0)
    assert len(split.test[0]) == 1000
    np.testing.assert_array_equal(split.indices["test"], np.arange(4000, 5000))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*moons"):
        load_dataset("mnist")
    assert "mnist1d" in DATASETS


def test_split_is_seeded_disjoint_and_standardised_with_training_statistics_only():
    ds = load_dataset("wine")
    s = split_dataset(ds, test_size=0.3, val_size=0.2, seed=1)
    parts = [set(s.indices[k].tolist()) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(ds.y) and not (parts[0] & parts[1] or parts[0] & parts[2])
    Xtr = s.train[0].numpy()
    np.testing.assert_allclose(Xtr.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Xtr.std(axis=0), 1.0, rtol=1e-12)
    raw_train = ds.X[s.indices["train"]]
    expected_test = (ds.X[s.indices["test"]] - raw_train.mean(0)) / raw_train.std(0)
    np.testing.assert_allclose(s.test[0].numpy(), expected_test, rtol=1e-12)
    # the test split's own statistics were not used
    assert np.abs(s.test[0].numpy().mean(axis=0)).max() > 1e-3
    again = split_dataset(ds, test_size=0.3, val_size=0.2, seed=1)
    assert torch.equal(again.test[0], s.test[0])


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_classification_with_string_labels(tmp_path):
    path = write(tmp_path, "a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,emu\n")
    ds = load_csv(path, "kind")
    assert ds.task == "classification" and ds.class_names == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(ds.y, [0, 1, 0, 2])
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4], [5, 6], [7, 8]])
    assert ds.feature_names == ["a", "b"]


def test_csv_integer_target_is_classification_real_target_regression(tmp_path):
    ds = load_csv(write(tmp_path, "x,y\n1,3\n2,5\n3,3\n"), "y")
    assert ds.task == "classification" and ds.class_names == ["3", "5"]
    ds = load_csv(write(tmp_path, "x,y\n1,0.5\n2,1.5\n3,2.25\n"), "y")
    assert ds.task == "regression"
    np.testing.assert_array_equal(ds.y, [0.5, 1.5, 2.25])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,t\n1,2,0\n3,nan,1\n", r"data\.csv: column 'b', row 2 holds 'nan'"),
        ("a,b,t\n1,2,0\n3,,1\n", r"data\.csv: column 'b', row 2 is empty"),
        ("a,b,t\n1,2,0\n3,4,1\n5,six,0\n", r"data\.csv: column 'b', row 3 holds 'six', not a num"),
        ("a,b,t\n1,2,1\n3,4,1\n", r"data\.csv: target column 't' holds a single class"),
        ("a,b,t\n1,2,1\n3,4\n", r"data\.csv: row 2 has 2 cells but the header has 3"),
        ("a,b,t\n", r"data\.csv: the file has a header but no data rows"),
        ("a,b,t\n1,2,\n3,4,1\n", r"data\.csv: column 't', row 1 has no target value"),
    ],
)
def test_csv_errors_name_file_column_and_row(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_csv(write(tmp_path, text), "t")


def test_csv_missing_file_and_missing_column(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_csv(tmp_path / "nope.csv", "t")
    with pytest.raises(ValueError, match=r"no column 'label'; the columns are a, b"):
        load_csv(write(tmp_path, "a,b\n1,2\n"), "label")


def test_regression_targets_are_standardised_with_training_statistics(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    ds = Dataset("r", X, 10 + 3 * X[:, 0], task="regression")
    s = split_dataset(ds, seed=0)
    assert s.train[1].shape == (35, 1)
    np.testing.assert_allclose(float(s.train[1].mean()), 0.0, atol=1e-12)
    back = s.standardizer.inverse_y(s.test[1].numpy()[:, 0])
    np.testing.assert_allclose(back, ds.y[s.indices["test"]], rtol=1e-12)


def test_dataset_validates_shapes():
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        Dataset("bad", np.zeros((3, 2)), np.zeros(4))


@pytest.mark.parametrize("name", ["blobs", "blobs2"])
def test_bayes_accuracy_of_the_blob_sets_agrees_with_a_fitted_model(name):
    """The Bayes rule from the true centres against class densities estimated from the sample
    (QDA for one Gaussian per class; a two-component mixture per class for blobs2)."""
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.mixture import GaussianMixture

    from meshprop.data import bayes_correct

    ds = load_dataset(name, n_samples=1000, seed=0)
    bayes = bayes_correct(name, 1000, 0).mean()
    if name == "blobs":
        fitted = QuadraticDiscriminantAnalysis().fit(ds.X, ds.y).score(ds.X, ds.y)
    else:
        scores = np.stack(
            [
                GaussianMixture(2, covariance_type="spherical", random_state=0)
                .fit(ds.X[ds.y == k])
                .score_samples(ds.X)
                for k in range(3)
            ],
            axis=1,
        )
        fitted = (scores.argmax(axis=1) == ds.y).mean()
    assert 0.8 < bayes < 1.0
    assert abs(fitted - bayes) < 0.015


def old_split_indices(n, test_size, val_size, seed, fixed_test=None):
    """meshprop 0.1's split, written out with numpy's default generator: saved runs rebuild
    their test split with it, so the scikit-learn split must give the same indices."""
    rng = np.random.default_rng(seed)
    if fixed_test is not None:
        test = np.sort(fixed_test)
        rest = rng.permutation(np.setdiff1d(np.arange(n), test))
    else:
        order = rng.permutation(n)
        n_test = round(test_size * n)
        test, rest = np.sort(order[:n_test]), order[n_test:]
    n_val = round(val_size * n)
    return {"train": np.sort(rest[n_val:]), "val": np.sort(rest[:n_val]), "test": test}


@pytest.mark.parametrize("n", [7, 150, 178, 1000])
@pytest.mark.parametrize(("test_size", "val_size"), [(0.3, 0.0), (0.3, 0.2), (0.25, 0.1)])
def test_split_indices_are_those_meshprop_always_drew(n, test_size, val_size):
    for seed in range(8):
        got = split_indices(n, test_size, val_size, seed)
        expected = old_split_indices(n, test_size, val_size, seed)
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(got[part], expected[part])


@pytest.mark.parametrize("val_size", [0.0, 0.1, 0.35])
def test_split_indices_with_a_fixed_test_part(val_size):
    fixed = np.arange(30, 40)
    for seed in range(5):
        got = split_indices(40, 0.3, val_size, seed, fixed)
        expected = old_split_indices(40, 0.3, val_size, seed, fixed)
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(got[part], expected[part])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 1.0, 0.0, 0), r"test_size must be in \[0, 1\)"),
        ((10, 0.3, -0.1, 0), r"val_size must be in \[0, 1\)"),
        ((4, 0.1, 0.0, 0), r"no test samples \(n=4"),
        ((10, 0.5, 0.5, 0), r"no training samples \(n=10\)"),
        ((5, 0.95, 0.0, 0), r"no training samples \(n=5\)"),
    ],
)
def test_split_indices_refuse_empty_parts(args, message):
    with pytest.raises(ValueError, match=message):
        split_indices(*args)


def test_standardizer_is_population_statistics_and_survives_a_checkpoint():
    rng = np.random.default_rng(3)
    X = rng.normal(5.0, 3.0, size=(40, 3))
    X[:, 2] = 7.0  # a constant column keeps scale 1
    y = rng.normal(50.0, 4.0, size=40)
    s = Standardizer.fit(X, y)
    np.testing.assert_array_equal(s.mean, X.mean(axis=0))
    np.testing.assert_array_equal(s.std[:2], X[:, :2].std(axis=0))
    assert s.std[2] == 1.0
    np.testing.assert_allclose(s.transform(X)[:, :2], (X[:, :2] - s.mean[:2]) / s.std[:2], rtol=0)
    np.testing.assert_array_equal(s.transform(X)[:, 2], 0.0)
    assert (s.y_mean, s.y_std) == (y.mean(), y.std())
    back = Standardizer.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(back.transform(X), s.transform(X))
    np.testing.assert_array_equal(back.transform_y(y), s.transform_y(y))
    np.testing.assert_array_equal(back.inverse_y(s.transform_y(y)), s.inverse_y(s.transform_y(y)))
    np.testing.assert_allclose(s.inverse_y(s.transform_y(y)), y, rtol=1e-15)
    with pytest.raises(ValueError, match="expected data with 3 features, got shape"):
        s.transform(X[:, :2])


def test_standardizer_reads_the_dictionaries_of_earlier_checkpoints():
    """The ``standardizer`` of a checkpoint written before scikit-learn did the scaling."""
    stored = {"mean": [1.0, -2.0], "std": [2.0, 0.5], "y_mean": None, "y_std": None}
    s = Standardizer.from_dict(stored)
    X = np.array([[3.0, -1.0], [1.0, -2.5]])
    np.testing.assert_array_equal(s.transform(X), [[1.0, 2.0], [0.0, -1.0]])
    assert s.to_dict() == stored
    labels = np.array([0, 2, 1])
    assert s.transform_y(labels) is labels and s.inverse_y(labels) is labels


def test_a_split_without_standardisation_leaves_the_features():
    ds = load_dataset("iris")
    s = split_dataset(ds, seed=2, standardize=False)
    np.testing.assert_array_equal(s.test[0].numpy(), ds.X[s.indices["test"]])
    assert s.standardizer.to_dict()["mean"] == [0.0] * 4
