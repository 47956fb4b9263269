"""Baselines: CCA finds a planted shared subspace; raw inputs are flattened by one rule per kind."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multiview.eval.baselines import AUDIO_MELS, CCA, CCARetrieval, RawFeaturizer, raw_features, raw_input
from multiview.eval.retrieval import instance_metrics


def two_views(n: int, shared: int = 3, seed: int = 0, noise: float = 0.1):
    """x [n, 40] and y [n, 60]: a shared latent z [n, shared] mixed into each, plus view-private signal."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, shared, generator=gen)
    mix_x, mix_y = torch.randn(shared, 40, generator=gen), torch.randn(shared, 60, generator=gen)
    private_x = torch.randn(n, 5, generator=gen) @ torch.randn(5, 40, generator=gen) * 2
    private_y = torch.randn(n, 5, generator=gen) @ torch.randn(5, 60, generator=gen) * 2
    x = z @ mix_x + private_x + noise * torch.randn(n, 40, generator=gen)
    y = z @ mix_y + private_y + noise * torch.randn(n, 60, generator=gen)
    return x, y, z


def test_cca_finds_the_planted_shared_subspace():
    x, y, z = two_views(2000)
    cca = CCA(n_components=5).fit(x, y)
    corr = cca.correlations_
    assert (corr[:3] > 0.95).all(), corr
    assert (corr[3:] < 0.3).all(), corr  # the private parts are independent across views
    zx, zy = cca.transform(x, y)
    # the first three canonical variates span the planted latent: regressing z on them explains almost all of it
    coef = torch.linalg.lstsq(zx[:, :3].double(), (z - z.mean(0)).double()).solution
    resid = (z - z.mean(0)).double() - zx[:, :3].double() @ coef
    assert resid.square().sum() / (z - z.mean(0)).double().square().sum() < 0.02


def test_cca_correlations_match_the_variates():
    x, y, _ = two_views(500, seed=1)
    cca = CCA(n_components=3, reg=0.0).fit(x, y)
    zx, zy = cca.transform(x, y)
    for i in range(3):
        r = np.corrcoef(zx[:, i].numpy(), zy[:, i].numpy())[0, 1]
        assert r == pytest.approx(cca.correlations_[i].item(), abs=1e-3)


def test_cca_retrieval_beats_chance_and_a_mismatched_fit():
    x, y, _ = two_views(1200, shared=6, noise=0.3)
    model = CCARetrieval(n_components=6, pca_dim=30).fit(x[:800], y[:800])
    assert model.pcas_[0] is not None  # both views wider than 30: reduced
    zq, zg = model.transform(x[800:], y[800:])
    r1 = instance_metrics(zq, zg, ks=(1,))["R@1"]
    shuffled = CCARetrieval(n_components=6, pca_dim=30).fit(x[:800], y[torch.randperm(800)])
    zq2, zg2 = shuffled.transform(x[800:], y[800:])
    assert r1 > 0.5 and r1 > 5 * instance_metrics(zq2, zg2, ks=(1,))["R@1"]


def test_pca_only_when_both_views_are_wider():
    x, y, _ = two_views(300)
    assert CCARetrieval(pca_dim=50).fit(x, y).pcas_ == (None, None)  # x has 40 dims
    assert CCARetrieval(pca_dim=30).fit(x, y).pcas_[1][1].shape == (60, 30)


def test_cca_rejects_unpaired_rows():
    with pytest.raises(ValueError, match=r"paired \[N, Dx\] and \[N, Dy\] rows, got \(5, 2\) and \(4, 2\)"):
        CCA().fit(torch.zeros(5, 2), torch.zeros(4, 2))


def test_raw_input_rules():
    img = torch.full((1, 4, 5), 255, dtype=torch.uint8)
    assert torch.equal(raw_input({"image": img}, "image"), torch.ones(1, 4, 5))
    assert raw_input({"x": 3}, "x").tolist() == [3.0]
    assert raw_input({"v": np.arange(4, dtype=np.float32)}, "v").tolist() == [0, 1, 2, 3]
    wave = torch.sin(torch.arange(8000) / 8000 * 2 * math.pi * 440)[None]
    spec = raw_input({"audio": wave, "audio.sample_rate": 8000}, "audio")
    assert spec.shape[0] == AUDIO_MELS and spec.shape[1] == 8000 // 80 + 1  # 10 ms hop, centred frames
    assert torch.isfinite(spec).all()


@pytest.mark.parametrize(
    ("sample", "field", "match"),
    [
        ({"__key__": "k1", "t": "text"}, "t", "field 't' of sample 'k1' is str"),
        ({"__key__": "k2"}, "x", "sample 'k2' has no field 'x'"),
    ],
)
def test_raw_input_names_the_sample_and_field(sample, field, match):
    with pytest.raises(ValueError, match=match):
        raw_input(sample, field)


def test_raw_featurizer_resizes_to_the_train_shape():
    train = [{"s": torch.ones(2, 10)}, {"s": torch.ones(2, 10)}, {"s": torch.ones(2, 7)}]
    test = [{"s": torch.arange(20.0).reshape(2, 10)}, {"s": torch.ones(2, 13)}]
    xtr, xte = raw_features(train, test, "s")
    assert xtr.shape == (3, 20) and xte.shape == (2, 20)
    assert torch.equal(xte[0], torch.arange(20.0))  # already the right shape: untouched
    assert torch.allclose(xte[1], torch.ones(20))  # a constant trace stays constant after interpolation
    with pytest.raises(ValueError, match=r"cannot resize a raw input of shape \(3, 10\) to \(2, 10\)"):
        RawFeaturizer("s").fit([torch.ones(2, 10)]).transform([torch.ones(3, 10)])


def test_randomised_pca_finds_the_exact_top_subspace(monkeypatch):
    from multiview.eval import baselines

    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([10.0, 8, 6, 4, 3])
    x = (torch.randn(400, 5, generator=gen) * scales) @ torch.linalg.qr(torch.randn(80, 5, generator=gen))[0].T
    x = x + 0.05 * torch.randn(400, 80, generator=gen)
    _, exact = baselines.principal_axes(x, 5)
    monkeypatch.setattr(baselines, "EXACT_SVD_FLOPS", 0)  # force the randomised path
    _, approx = baselines.principal_axes(x, 5)
    _, again = baselines.principal_axes(x, 5)
    assert torch.equal(approx, again)  # seeded: deterministic
    # same subspace: the projector onto one equals the projector onto the other
    assert torch.allclose(exact @ exact.T, approx @ approx.T, atol=1e-3)
