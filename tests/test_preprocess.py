"""course_lib.preprocess against scikit-learn and the seed's NumPy recipe, on every device."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from course_lib import preprocess as P


def _data(n=2000, d=6, seed=0, device="cpu", dtype=torch.float64):
    """Correlated data with different scales and offsets per feature (full rank)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, d, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + torch.arange(d, dtype=torch.float64) * 5
    return x.to(device, dtype)


def _np(t):
    return t.detach().cpu().double().numpy()


def test_zero_center_and_standardize_match_sklearn(device):
    x = _data(device=device)
    centred = P.zero_center(x)
    assert centred.device.type == device.type
    np.testing.assert_allclose(_np(centred), _np(x) - _np(x).mean(0), atol=1e-10)
    np.testing.assert_allclose(_np(P.standardize(x)), StandardScaler().fit_transform(_np(x)), atol=1e-10)


def test_minmax_scale_matches_sklearn(device):
    x = _data(device=device)
    out = P.minmax_scale(x)
    np.testing.assert_allclose(_np(out), MinMaxScaler(feature_range=(-1, 1)).fit_transform(_np(x)), atol=1e-10)
    assert out.min() == -1 and out.max() == 1


def test_statistics_fitted_on_one_split_apply_to_another(device):
    train, test = _data(seed=1, device=device), _data(n=300, seed=2, device=device)
    scaler = StandardScaler().fit(_np(train))
    out = P.standardize(test, train.mean(0), train.std(0, unbiased=False))
    np.testing.assert_allclose(_np(out), scaler.transform(_np(test)), atol=1e-10)
    mm = MinMaxScaler(feature_range=(-1, 1)).fit(_np(train))
    np.testing.assert_allclose(_np(P.minmax_scale(test, train.amin(0), train.amax(0))), mm.transform(_np(test)), atol=1e-10)
    np.testing.assert_allclose(_np(P.zero_center(test, train.mean(0))), _np(test) - _np(train).mean(0), atol=1e-10)


def test_pca_matches_the_seed_recipe_and_sklearn(device):
    x = _data(device=device)
    eigvals, eigvecs = P.pca(x)
    # seed 000: cov = X.T X / N of the centred data, U, S, V = svd(cov)
    xc = _np(x) - _np(x).mean(0)
    u, s, _ = np.linalg.svd(xc.T @ xc / xc.shape[0])
    np.testing.assert_allclose(_np(eigvals), s, rtol=1e-9)
    np.testing.assert_allclose(np.abs(_np(eigvecs).T @ u), np.eye(6), atol=1e-8)  # same axes, up to sign
    sk = PCA().fit(_np(x))
    n = x.shape[0]
    np.testing.assert_allclose(_np(eigvals), sk.explained_variance_ * (n - 1) / n, rtol=1e-9)  # sklearn uses N - 1
    np.testing.assert_allclose(np.abs(np.sum(_np(eigvecs) * sk.components_.T, 0)), np.ones(6), atol=1e-8)
    v = _np(eigvecs)
    assert np.all(np.take_along_axis(v, np.abs(v).argmax(0)[None], 0) > 0), "largest entry of each component positive"


@pytest.mark.parametrize("kind", ["pca", "zca"])
def test_whitened_training_data_has_identity_covariance(device, kind):
    x = _data(device=device, dtype=torch.float32)
    white = P.Whitening(kind, eps=1e-8).fit(x).transform(x)
    assert white.device.type == device.type and white.dtype == torch.float32
    cov = P.covariance(white.double())
    assert (cov - torch.eye(6, dtype=torch.float64, device=device)).abs().max() < 1e-3
    assert white.mean(0).abs().max() < 1e-3


def test_pca_whiten_matches_the_seed_and_sklearn(device):
    x = _data(device=device)
    out = P.pca_whiten(x, eps=1e-5)
    xc = _np(x) - _np(x).mean(0)
    u, s, _ = np.linalg.svd(xc.T @ xc / xc.shape[0])
    seed = xc @ u / np.sqrt(s + 1e-5)  # seed 000, verbatim
    np.testing.assert_allclose(np.abs(_np(out)), np.abs(seed), atol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(_np(out) * seed, 0)), np.sum(seed ** 2, 0), rtol=1e-8)  # per-column sign
    n = x.shape[0]
    sk = PCA(whiten=True).fit_transform(_np(x)) * np.sqrt(n / (n - 1))  # sklearn: ddof=1, no eps
    np.testing.assert_allclose(np.abs(_np(P.pca_whiten(x, eps=0.0))), np.abs(sk), atol=1e-8)


def test_zca_whiten_is_the_symmetric_whitening(device):
    x = _data(device=device)
    w = P.Whitening("zca", eps=1e-5).fit(x)
    W = _np(w.W)
    np.testing.assert_allclose(W, W.T, atol=1e-10)
    cov = _np(P.covariance(x))
    vals, vecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(W, vecs @ np.diag(1 / np.sqrt(vals + 1e-5)) @ vecs.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(_np(P.zca_whiten(x, 1e-5)), (_np(x) - _np(x).mean(0)) @ W, atol=1e-9)
    # ZCA is PCA whitening rotated back: the same distances to the origin
    np.testing.assert_allclose(np.linalg.norm(_np(P.zca_whiten(x)), axis=1),
                               np.linalg.norm(_np(P.pca_whiten(x)), axis=1), rtol=1e-8)


def test_whitening_applies_train_statistics(device):
    train, test = _data(seed=3, device=device), _data(n=200, seed=4, device=device)
    w = P.Whitening("pca", eps=1e-3).fit(train)
    assert w.fit(train) is w, "fit returns self"
    expected = (_np(test) - _np(train).mean(0)) @ _np(w.eigvecs) / np.sqrt(_np(w.eigvals) + 1e-3)
    np.testing.assert_allclose(_np(w.transform(test)), expected, atol=1e-9)
    assert P.Whitening("pca", n_components=2).fit(train).transform(test).shape == (200, 2)


def test_eps_limits_noise_amplification():
    g = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randn(3000, 3, generator=g, dtype=torch.float64),
                   1e-3 * torch.randn(3000, 2, generator=g, dtype=torch.float64)], 1)  # two near-silent features
    noise = 1e-3 * torch.randn(3000, 5, generator=g, dtype=torch.float64)
    gains = []
    for eps in [1e-1, 1e-3, 1e-5, 1e-8]:
        w = P.Whitening("zca", eps).fit(x)
        gains.append(float((w.transform(x + noise) - w.transform(x)).norm() / noise.norm()))
    assert all(a < b for a, b in zip(gains, gains[1:])), f"smaller eps must amplify noise more: {gains}"
    assert gains[-1] > 100 * gains[0]


@pytest.mark.parametrize("fn", [P.zero_center, P.standardize, P.minmax_scale, P.pca, P.pca_whiten, P.zca_whiten,
                                lambda x: P.Whitening().fit(x)])
def test_wrong_shape_and_nan_raise_value_error(fn):
    with pytest.raises(ValueError, match=r"shape \(N, D\).*flatten"):
        fn(torch.rand(4, 1, 5, 5))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        fn(torch.rand(7))
    x = torch.rand(10, 3)
    x[4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN \(first at row 4, feature 1\)"):
        fn(x)


@pytest.mark.parametrize("fn", [P.standardize, P.minmax_scale])
def test_constant_feature_raises_value_error(fn):
    x = torch.rand(10, 4)
    x[:, 2] = 0.5
    with pytest.raises(ValueError, match="constant.*feature index 2"):
        fn(x)


def test_whitening_arguments():
    with pytest.raises(ValueError, match="'pca' or 'zca'"):
        P.Whitening("svd")
    with pytest.raises(RuntimeError, match="fit"):
        P.Whitening().transform(torch.rand(3, 2))
    with pytest.raises(ValueError, match="3 features"):
        P.Whitening().fit(torch.rand(10, 3)).transform(torch.rand(4, 2))
    x = torch.rand(10, 3, dtype=torch.float64)
    x[:, 2] = 1.0
    with pytest.raises(ValueError, match="eps > 0"):
        P.Whitening("pca", eps=0.0).fit(x)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    x = _data(dtype=torch.float32)
    for kind in ("pca", "zca"):
        a = P.Whitening(kind, 1e-4).fit(x.cuda()).transform(x.cuda()).cpu()
        b = P.Whitening(kind, 1e-4).fit(x).transform(x)
        torch.testing.assert_close(a.abs(), b.abs(), rtol=1e-4, atol=1e-4)
