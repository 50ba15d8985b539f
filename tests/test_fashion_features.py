"""meshprop.data.features: CAE codes cached on disk under a key that changes with the data,
the architecture, the seed and the training budget; a cache hit trains nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meshprop.data import autoencoder, features
from meshprop.data.features import CAEBudget, cae_features, feature_key

BUDGET = CAEBudget(epochs=1, batch_size=16, lr=1e-3)


@pytest.fixture
def tiny():
    g = np.random.default_rng(0)
    train = (g.integers(0, 256, (40, 8, 8), dtype=np.uint8), g.integers(0, 10, 40))
    test = (g.integers(0, 256, (12, 8, 8), dtype=np.uint8), g.integers(0, 10, 12))
    return train, test


def test_features_are_cached_and_reused_without_training(tiny, tmp_path, monkeypatch):
    train, test = tiny
    first = cae_features(train, test, seed=0, budget=BUDGET, cache_dir=tmp_path)
    assert not first.from_cache
    assert first.X_train.shape == (40, 32) and first.X_test.shape == (12, 32)
    assert first.path.parent == tmp_path and first.path.is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train the CAE")

    monkeypatch.setattr(features, "fit", no_training)
    second = cae_features(train, test, seed=0, budget=BUDGET, cache_dir=tmp_path)
    assert second.from_cache and second.key == first.key
    np.testing.assert_array_equal(second.X_train, first.X_train)
    np.testing.assert_array_equal(second.X_test, first.X_test)
    np.testing.assert_array_equal(second.y_test, test[1])


def test_cached_codes_are_the_trained_encoder_applied_to_the_images(tiny, tmp_path):
    train, test = tiny
    got = cae_features(train, test, seed=3, budget=BUDGET, cache_dir=tmp_path)
    # retrain the same CAE independently through fit and encode: the same codes
    from meshprop.training import fit

    cae = autoencoder.ConvAutoencoder(side=8, seed=3)
    X = torch.from_numpy(train[0].reshape(40, -1).astype(np.float32) / 255)
    fit(
        cae,
        (X, X),
        loss="mse",
        lr=BUDGET.lr,
        epochs=1,
        batch_size=16,
        seed=3,
        progress=False,
        evaluate_train=False,
    )
    with torch.no_grad():
        Xt = torch.from_numpy(test[0].reshape(12, -1).astype(np.float32) / 255)
        expected = cae.encode(Xt).numpy()
    np.testing.assert_allclose(got.X_test, expected, rtol=0, atol=1e-6)


def test_key_changes_with_data_architecture_seed_and_budget(tiny):
    (tr, _), (te, _) = tiny
    arch = autoencoder.ConvAutoencoder(side=8).architecture
    base = feature_key(tr, te, arch, 0, BUDGET)
    assert feature_key(tr.copy(), te.copy(), arch, 0, BUDGET) == base
    changed = tr.copy()
    changed[7, 3, 2] ^= 1  # one bit of one pixel
    assert feature_key(changed, te, arch, 0, BUDGET) != base
    changed_test = te.copy()
    changed_test[0, 0, 0] ^= 1
    assert feature_key(tr, changed_test, arch, 0, BUDGET) != base
    assert feature_key(tr[:-1], te, arch, 0, BUDGET) != base
    assert feature_key(tr, te, arch + " ", 0, BUDGET) != base
    assert (
        feature_key(tr, te, autoencoder.ConvAutoencoder(side=8, code=16).architecture, 0, BUDGET)
        != base
    )
    assert feature_key(tr, te, arch, 1, BUDGET) != base
    assert feature_key(tr, te, arch, 0, CAEBudget(epochs=2, batch_size=16, lr=1e-3)) != base
    assert (
        feature_key(tr, te, arch, 0, CAEBudget(epochs=1, batch_size=16, lr=1e-3, subset=20)) != base
    )


def test_changed_inputs_miss_the_cache_and_train_again(tiny, tmp_path, monkeypatch):
    train, test = tiny
    first = cae_features(train, test, seed=0, budget=BUDGET, cache_dir=tmp_path)
    other_seed = cae_features(train, test, seed=1, budget=BUDGET, cache_dir=tmp_path)
    assert not other_seed.from_cache and other_seed.key != first.key
    assert not np.array_equal(other_seed.X_train, first.X_train)
    images = train[0].copy()
    images[0, 0, 0] ^= 1
    other_data = cae_features((images, train[1]), test, 0, BUDGET, tmp_path)
    assert not other_data.from_cache and other_data.key != first.key
    # a new architecture string (as a change of the CAE's layers would bring) misses too
    monkeypatch.setattr(autoencoder, "CAE_ARCHITECTURE", autoencoder.CAE_ARCHITECTURE + " v2")
    other_arch = cae_features(train, test, seed=0, budget=BUDGET, cache_dir=tmp_path)
    assert not other_arch.from_cache and other_arch.key != first.key
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_bad_images_are_rejected(tmp_path):
    bad = (np.zeros((4, 8, 6), dtype=np.uint8), np.zeros(4))
    with pytest.raises(ValueError, match=r"train images must be \(n, side, side\)"):
        cae_features(bad, bad, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="multiple of 4"):
        autoencoder.ConvAutoencoder(side=10)
