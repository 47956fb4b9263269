"""Baselines that learned features must beat: raw inputs (flattened, standardised) and CCA for retrieval.

Raw inputs (:func:`raw_input`, :class:`RawFeaturizer`): a decoded field becomes one float vector.
- images ``uint8 [C, H, W]`` -> values / 255; sensors and vectors as they are; ints and floats -> ``[1]``;
- audio (a field with ``"<field>.sample_rate"`` in the sample): a waveform has no fixed length and no aligned
  samples, so its raw form is a log-mel spectrogram ``[n_mels, frames]`` (64 mels, 25 ms windows, 10 ms hop);
- tensors whose shape differs from the most common shape of the fitting split are resized to it by linear
  interpolation over their trailing axes (variable-length sensor traces, clips, images of mixed sizes).

CCA retrieval (:class:`CCARetrieval`), as ../shared/DATA.md measured it: standardise each view; when BOTH views
are wider than 50, reduce each to 50 dims by PCA; fit CCA with 10 components on the train split; score test
pairs by cosine similarity of their canonical variates.

Examples:
    >>> import torch
    >>> z = torch.randn(300, 2)
    >>> x = torch.cat([z, torch.randn(300, 3)], 1); y = torch.cat([torch.randn(300, 4), -z], 1)
    >>> cca = CCA(n_components=2).fit(x, y)
    >>> bool((cca.correlations_ > 0.95).all())
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from multiview.eval.probes import Standardizer, small_problem_threads

AUDIO_MELS = 64
AUDIO_WINDOW_S = 0.025
AUDIO_HOP_S = 0.010


@lru_cache(maxsize=8)
def _mel_transform(sample_rate: int):
    """One MelSpectrogram per sample rate (building its filter bank costs more than applying it to a clip)."""
    import torchaudio

    n_fft = max(16, int(round(AUDIO_WINDOW_S * sample_rate)))
    hop = max(1, int(round(AUDIO_HOP_S * sample_rate)))
    return torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=AUDIO_MELS)


def _log_mel(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[C, T]`` waveform -> ``[n_mels, frames]`` log-mel power (channels averaged)."""
    with torch.no_grad():
        return torch.log(_mel_transform(sample_rate)(waveform.float().mean(0)) + 1e-6)


def raw_input(sample: dict, field: str) -> torch.Tensor:
    """The raw float tensor of ``sample[field]`` (see the module docstring for the rule per kind)."""
    if field not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r} has no field {field!r}; fields: {sorted(sample)}")
    value = sample[field]
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor, np.ndarray, list)):
        raise ValueError(
            f"field {field!r} of sample {sample.get('__key__')!r} is {type(value).__name__}; "
            "expected a tensor, array or number for a raw-input baseline"
        )
    if isinstance(value, (int, float)):
        return torch.tensor([float(value)])
    x = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
    rate = sample.get(f"{field}.sample_rate")
    if rate is not None:
        return _log_mel(x.reshape(-1, x.shape[-1]), int(rate))
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _resize(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Interpolate the trailing axes of ``x`` ``[C, *S]`` (or ``[T]``) to ``shape``."""
    if tuple(x.shape) == shape:
        return x
    if x.ndim != len(shape) or x.ndim == 0 or (x.ndim > 1 and x.shape[0] != shape[0]):
        raise ValueError(f"cannot resize a raw input of shape {tuple(x.shape)} to {shape}; expected {shape}")
    if x.ndim == 1:  # [T] -> treat as one channel
        return F.interpolate(x[None, None], size=shape, mode="linear", align_corners=False)[0, 0]
    spatial = shape[1:]
    if len(spatial) > 3:
        raise ValueError(f"cannot resize a raw input of shape {tuple(x.shape)}; at most 3 trailing axes")
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
    return F.interpolate(x[None], size=spatial, mode=mode, align_corners=False)[0]


class RawFeaturizer:
    """Turns raw inputs of one field into ``[N, F]`` rows of one fixed shape (the most common in the fitting split)."""

    def __init__(self, field: str):
        self.field = field
        self.shape: tuple[int, ...] | None = None

    def fit(self, inputs: Sequence[torch.Tensor]) -> RawFeaturizer:
        """inputs: the raw tensors (:func:`raw_input`) of the fitting split."""
        shapes = Counter(tuple(x.shape) for x in inputs)
        if not shapes:
            raise ValueError(f"no samples to fit the raw featurizer of field {self.field!r}")
        self.shape = shapes.most_common(1)[0][0]
        return self

    def transform(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[N, F]`` with ``F = prod(shape)``."""
        if self.shape is None:
            raise ValueError(f"RawFeaturizer({self.field!r}) is not fitted; call fit(train_inputs) first")
        if not inputs:
            raise ValueError(f"no samples to featurize for field {self.field!r}")
        return torch.stack([_resize(x, self.shape).reshape(-1) for x in inputs])


def raw_features(train: Iterable[dict], test: Iterable[dict], field: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N_train, F], [N_test, F])`` raw inputs of ``field`` of two lists of samples, shaped by the train split."""
    train_in = [raw_input(s, field) for s in train]
    test_in = [raw_input(s, field) for s in test]
    feat = RawFeaturizer(field).fit(train_in)
    return feat.transform(train_in), feat.transform(test_in)


def _inv_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """``cov^{-1/2}`` of a symmetric positive definite ``[D, D]`` matrix."""
    vals, vecs = torch.linalg.eigh(cov)
    return vecs @ torch.diag(vals.clamp(min=1e-12).rsqrt()) @ vecs.T


@dataclass
class CCA:
    """Canonical correlation analysis in closed form (Hotelling 1936), with a small ridge for stability.

    With centred ``x [N, Dx]``, ``y [N, Dy]``: ``Cxx^{-1/2} Cxy Cyy^{-1/2} = U S V^T``; the canonical directions
    are ``Wx = Cxx^{-1/2} U_k``, ``Wy = Cyy^{-1/2} V_k`` and ``S_k`` the canonical correlations. ``reg`` adds
    ``reg * mean(diag C)`` to each covariance's diagonal.
    """

    n_components: int = 10
    reg: float = 1e-4

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> CCA:
        x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"CCA needs paired [N, Dx] and [N, Dy] rows, got {tuple(x.shape)} and {tuple(y.shape)}")
        k = min(self.n_components, x.shape[1], y.shape[1], x.shape[0] - 1)
        if k < 1:
            raise ValueError(f"CCA needs at least 2 rows and 1 dim per view, got {tuple(x.shape)}, {tuple(y.shape)}")
        self.mean_x_, self.mean_y_ = x.mean(0), y.mean(0)
        xc, yc = x - self.mean_x_, y - self.mean_y_
        n = x.shape[0] - 1

        def cov(a: torch.Tensor) -> torch.Tensor:
            c = a.T @ a / n
            return c + self.reg * c.diagonal().mean().clamp(min=1e-12) * torch.eye(c.shape[0], dtype=c.dtype)

        with small_problem_threads(xc.numel() + yc.numel()):
            wx, wy = _inv_sqrt(cov(xc)), _inv_sqrt(cov(yc))
            u, s, vh = torch.linalg.svd(wx @ (xc.T @ yc / n) @ wy)
        self.x_weights_, self.y_weights_ = wx @ u[:, :k], wy @ vh[:k].T
        self.correlations_ = s[:k].float()
        return self

    def transform(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical variates ``([N, k], [M, k])``."""
        zx = (torch.as_tensor(x).double() - self.mean_x_) @ self.x_weights_
        zy = (torch.as_tensor(y).double() - self.mean_y_) @ self.y_weights_
        return zx.float(), zy.float()


EXACT_SVD_FLOPS = 3e9  # above about N * D * min(N, D) of this, PCA switches to a seeded randomised SVD


def principal_axes(x: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [D], components [D, n])``: the top-n principal axes of ``x [N, D]``.

    Small problems use an exact SVD. Large ones (4,000 log-mel clips of 6,400 values: 40 s per exact SVD here)
    use a randomised SVD (Halko et al. 2011; 10 extra directions, 4 power iterations) under a fixed seed, so the
    result is deterministic; it finds the top subspace, which is all that PCA before CCA or a 2-D map needs.
    """
    mean = x.mean(0)
    xc = (x - mean).double()
    n = min(n, *xc.shape)
    with small_problem_threads(x.numel()):
        if xc.shape[0] * xc.shape[1] * min(xc.shape) <= EXACT_SVD_FLOPS:
            comps = torch.linalg.svd(xc, full_matrices=False)[2][:n].T
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                comps = torch.svd_lowrank(xc, q=min(n + 10, *xc.shape), niter=4)[2][:, :n]
    return mean, comps.float()


class CCARetrieval:
    """Standardise -> PCA to ``pca_dim`` (only when both views are wider) -> CCA(``n_components``).

    Fit on the train split's paired rows; :meth:`transform` maps test rows of each view into the shared space.
    """

    def __init__(self, n_components: int = 10, pca_dim: int = 50, reg: float = 1e-4):
        self.n_components, self.pca_dim, self.reg = n_components, pca_dim, reg

    def _prepare(self, side: int, x: torch.Tensor) -> torch.Tensor:
        x = self.scalers_[side](x)
        if self.pcas_[side] is not None:
            mean, comps = self.pcas_[side]
            x = (x - mean) @ comps
        return x

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> CCARetrieval:
        """x: ``[N, Dx]``, y: ``[N, Dy]`` raw train rows, paired (row i of x goes with row i of y)."""
        x, y = torch.as_tensor(x).float(), torch.as_tensor(y).float()
        self.scalers_ = (Standardizer.fit(x), Standardizer.fit(y))
        reduce = min(x.shape[1], y.shape[1]) > self.pca_dim
        xs, ys = self.scalers_[0](x), self.scalers_[1](y)
        self.pcas_ = (principal_axes(xs, self.pca_dim), principal_axes(ys, self.pca_dim)) if reduce else (None, None)
        self.cca_ = CCA(self.n_components, self.reg).fit(self._prepare(0, x), self._prepare(1, y))
        return self

    def transform(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([N, k], [M, k])`` canonical variates of raw rows of each view."""
        return self.cca_.transform(
            self._prepare(0, torch.as_tensor(x).float()), self._prepare(1, torch.as_tensor(y).float())
        )
