"""Preprocessing of a data matrix: centring, scaling, PCA and whitening (chapter 02).

Every function takes ``x`` of shape ``(N, D)``: N samples (rows) of D features (columns), a float
tensor on any device, and computes its statistics over the rows, as the seeds' NumPy lines do
(``X -= np.mean(X, axis=0)``; ``X /= np.std(X, axis=0)``). Images are flattened first
(``x.flatten(1)``). Statistics fitted on one split are applied to another by passing them in
(``standardize(x_test, mean, std)``) or through :class:`Whitening`'s ``fit`` / ``transform``.

Bad input raises a ``ValueError`` that says what was expected: a tensor that is not ``(N, D)``,
NaN or infinite values, or a constant feature where the function divides by its spread.

Sources: seed 000 ("data preprocessing": zero-centre, normalize, min-max to [-1, 1], PCA whitening
with 1e-5 and its noise amplification; "CNNs usually only centre and scale"), seeds 001 and 003;
Bell & Sejnowski (1997) and Krizhevsky (2009, "Learning Multiple Layers of Features from Tiny
Images", appendix) for ZCA.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .release import reference


def check_features(x: Tensor, name: str = "x", min_rows: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite float tensor of shape ``(N, D)`` with ``N >= min_rows``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2:
        hint = f"; flatten images first with {name}.flatten(1)" if x.dim() > 2 else ""
        raise ValueError(f"{name} must have shape (N, D) (samples x features), got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples (rows), got shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        what = "NaN" if torch.isnan(x[row, col]) else "an infinite value"
        raise ValueError(f"{name} contains {what} (first at row {row}, feature {col}): "
                         "remove or impute missing values before preprocessing")


def _check_spread(spread: Tensor, what: str) -> None:
    """Raise ``ValueError`` naming the features whose ``spread`` (std or range) is zero."""
    constant = (spread == 0).nonzero().flatten()
    if len(constant):
        shown = ", ".join(str(int(i)) for i in constant[:10]) + (", ..." if len(constant) > 10 else "")
        raise ValueError(f"cannot {what}: {len(constant)} feature(s) are constant (zero spread), "
                         f"feature index {shown}; drop them, or add a small epsilon to the divisor")


def _stat(value, x: Tensor, fallback) -> Tensor:
    """A given statistic moved to ``x``'s device and dtype, or ``fallback(x)`` when it is ``None``."""
    return fallback(x) if value is None else torch.as_tensor(value).to(x.device, x.dtype)


@reference("02_preprocessing", "zero_center")
def zero_center(x: Tensor, mean: Tensor | None = None) -> Tensor:
    """``x - mean``, with ``mean`` the per-feature mean of ``x`` unless given: ``X -= np.mean(X, axis=0)``."""
    check_features(x)
    return x - _stat(mean, x, lambda t: t.mean(0))


@reference("02_preprocessing", "standardize")
def standardize(x: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
    """``(x - mean) / std`` per feature (population std, ``ddof=0``, as ``np.std``), fitted on ``x`` unless given.

    Raises ``ValueError`` when a feature is constant (its std is 0).
    """
    check_features(x)
    std = _stat(std, x, lambda t: t.std(0, unbiased=False))
    _check_spread(std, "standardize")
    return (x - _stat(mean, x, lambda t: t.mean(0))) / std


def minmax_scale(x: Tensor, low: Tensor | None = None, high: Tensor | None = None) -> Tensor:
    """Scale every feature to [-1, 1]: ``2 (x - low) / (high - low) - 1``, ``low``/``high`` the per-feature min/max.

    Raises ``ValueError`` when a feature is constant (``high == low``).
    """
    check_features(x)
    low = _stat(low, x, lambda t: t.amin(0))
    span = _stat(high, x, lambda t: t.amax(0)) - low
    _check_spread(span, "min-max scale")
    return 2 * (x - low) / span - 1


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 for the eigen-decomposition, except on devices without it (MPS)."""
    return torch.float32 if x.device.type == "mps" else torch.float64


@reference("02_preprocessing", "pca")
def covariance(x: Tensor) -> Tensor:
    """The ``(D, D)`` covariance of the centred data, ``Xᵀ X / N`` (seed 000: ``np.dot(X.T, X) / X.shape[0]``)."""
    check_features(x)
    centred = x - x.mean(0)
    return centred.T @ centred / x.shape[0]


@reference("02_preprocessing", "pca")
def pca(x: Tensor) -> tuple[Tensor, Tensor]:
    """Principal components of ``x``: ``(eigvals, eigvecs)`` of its covariance.

    ``eigvals`` ``(D,)`` in decreasing order (the variance along each component) and ``eigvecs`` ``(D, D)``
    with the unit components as *columns*, each signed so that its largest entry is positive (an
    eigenvector is only defined up to sign). The seed's ``U, S, V = np.linalg.svd(cov)`` gives the same
    ``S`` and ``U`` (up to signs). Computed in float64, returned in ``x``'s dtype.
    """
    check_features(x, min_rows=2)
    eigvals, eigvecs = torch.linalg.eigh(covariance(x.to(_compute_dtype(x))))
    eigvals, eigvecs = eigvals.flip(0).clamp(min=0), eigvecs.flip(1)  # clamp: round-off below 0
    signs = torch.sign(eigvecs.gather(0, eigvecs.abs().argmax(0, keepdim=True)))
    return eigvals.to(x.dtype), (eigvecs * signs).to(x.dtype)


@reference("02_preprocessing", "pca_whiten")
def pca_whiten(x: Tensor, eps: float = 1e-5) -> Tensor:
    """PCA whitening fitted on ``x``: ``x_white = (x - mean) U / sqrt(S + eps)`` (seed 000).

    Rotates the centred data onto its principal axes (``U``, from :func:`pca`) and divides each axis by
    its standard deviation, so the result has covariance ``S / (S + eps) ≈ I``. ``eps`` keeps the
    near-zero-variance axes (mostly noise) from being blown up by ``1/sqrt(S)``.
    """
    return Whitening("pca", eps).fit(x).transform(x)


@reference("02_preprocessing", "zca_whiten")
def zca_whiten(x: Tensor, eps: float = 1e-5) -> Tensor:
    """ZCA whitening fitted on ``x``: PCA whitening rotated back, ``(x - mean) U diag(1/sqrt(S + eps)) Uᵀ``.

    Of all whitening matrices, ZCA's keeps the result closest to the input (Bell & Sejnowski 1997), so
    whitened images still look like images, with edges enhanced.
    """
    return Whitening("zca", eps).fit(x).transform(x)


@reference("02_preprocessing", "pca_whiten", "zca_whiten")
class Whitening:
    """PCA or ZCA whitening as a fit/transform object: fit on the training split, apply to any split.

    ``Whitening(kind="pca" | "zca", eps=1e-5).fit(x_train)`` stores ``mean``, ``eigvals``, ``eigvecs`` and
    the ``(D, K)`` matrix ``W`` (``K = D``); ``transform(x) = (x - mean) @ W``. ``n_components`` keeps
    only the first components (PCA whitening only). Fitting on the test split too is the leakage bug.
    """

    KINDS = ("pca", "zca")

    def __init__(self, kind: str = "zca", eps: float = 1e-5, n_components: int | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be 'pca' or 'zca', got {kind!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if n_components is not None and kind != "pca":
            raise ValueError("n_components only applies to kind='pca'")
        self.kind, self.eps, self.n_components = kind, float(eps), n_components
        self.mean = self.eigvals = self.eigvecs = self.W = None

    def fit(self, x: Tensor) -> "Whitening":
        """Fit mean and whitening matrix on ``x`` ``(N, D)``; returns ``self``."""
        self.eigvals, self.eigvecs = pca(x)
        self.mean = x.mean(0)
        dtype = _compute_dtype(x)
        k = self.n_components or x.shape[1]
        u = self.eigvecs[:, :k].to(dtype)
        scale = 1 / torch.sqrt(self.eigvals[:k].to(dtype) + self.eps)
        w = u * scale if self.kind == "pca" else (u * scale) @ u.T
        if not bool(torch.isfinite(w).all()):
            raise ValueError("the whitening matrix is not finite: some variances are 0, use eps > 0")
        self.W = w.to(x.dtype)
        return self

    def transform(self, x: Tensor) -> Tensor:
        """``(x - mean) @ W`` with the fitted statistics."""
        if self.W is None:
            raise RuntimeError("call fit(x_train) before transform")
        check_features(x)
        if x.shape[1] != self.W.shape[0]:
            raise ValueError(f"x must have {self.W.shape[0]} features like the data it was fitted on, "
                             f"got shape {tuple(x.shape)}")
        return (x - self.mean.to(x.device, x.dtype)) @ self.W.to(x.device, x.dtype)

    def fit_transform(self, x: Tensor) -> Tensor:
        """``fit(x).transform(x)``."""
        return self.fit(x).transform(x)

    def __repr__(self) -> str:
        fitted = "fitted" if self.W is not None else "not fitted"
        return f"Whitening(kind={self.kind!r}, eps={self.eps:g}, {fitted})"
