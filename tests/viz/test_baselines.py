"""The labelled stand-ins: per-tissue least-squares intensity map and the demo's oracle pair field."""

from __future__ import annotations

import numpy as np
import pytest

from medi2i.spatial import warp
from medi2i.viz.baselines import TissueIntensityMap, demo_pair_ddf, invert_ddf


def test_tissue_map_recovers_per_label_lines(rng):
    labels = [rng.integers(0, 3, (6, 7, 5)) for _ in range(2)]
    sources = [rng.normal(500, 100, (6, 7, 5)) for _ in range(2)]
    truth = {0: (0.0, -1000.0), 1: (2.0, 10.0), 2: (-0.5, 300.0)}
    targets = [
        np.choose(lab, [truth[k][0] * s + truth[k][1] for k in range(3)]) + rng.normal(0, 1, s.shape)
        for s, lab in zip(sources, labels, strict=True)
    ]
    tmap = TissueIntensityMap.fit(sources, targets, labels)
    for k, (a, b) in truth.items():
        assert tmap.coefficients[k][0] == pytest.approx(a, abs=0.01)
        assert tmap.coefficients[k][1] == pytest.approx(b, abs=6.0)
    pred = tmap.predict(sources[0], labels[0])
    assert np.abs(pred - targets[0]).mean() < 2.0  # noise sigma 1 -> mean |error| ~ 0.8
    unseen = tmap.predict(np.zeros((2, 2)), np.full((2, 2), 9))
    np.testing.assert_allclose(unseen, np.concatenate([np.ravel(t) for t in targets]).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="equal"):
        TissueIntensityMap.fit(sources, targets[:1], labels)
    with pytest.raises(ValueError, match="shapes"):
        TissueIntensityMap.fit([sources[0]], [targets[0][:-1]], [labels[0]])


def test_invert_ddf_undoes_a_smooth_field():
    x = np.linspace(0, 2 * np.pi, 32)
    u = np.stack([1.5 * np.sin(x)[:, None] * np.ones((32, 32)), np.cos(x)[None, :] * np.ones((32, 32))])
    v = invert_ddf(u.astype(np.float32))
    # u(x + v(x)) + v(x) = 0 away from the border
    residual = warp(torch_t(u), torch_t(v))[0].numpy() + v
    assert np.abs(residual[:, 4:-4, 4:-4]).max() < 0.02
    with pytest.raises(ValueError, match="iterations"):
        invert_ddf(u, iterations=0)


def torch_t(a):
    import torch

    return torch.as_tensor(np.asarray(a, np.float32))[None]


def test_demo_pair_field_aligns_generated_tissue_maps():
    from medi2i.data.demo import subject_ddf

    # a synthetic "template" seen through the demo's 2D generating fields of subjects 0 and 1
    h, w = subject_ddf(0, 0, spatial_dims=2).shape[1:]
    yy, xx = np.mgrid[:h, :w]
    # smooth, so interpolation error stays far below the error of a wrongly ordered composition
    template = (np.sin(xx / 5.0) + np.cos(yy / 7.0)).astype(np.float32)
    subj = [warp(torch_t(template)[None], torch_t(subject_ddf(0, k, spatial_dims=2)))[0, 0].numpy() for k in (0, 1)]
    d = demo_pair_ddf(0, 1, spatial_dims=2)
    warped = warp(torch_t(subj[1])[None], torch_t(d))[0, 0].numpy()
    inner = (slice(8, -8), slice(8, -8))
    before = np.abs(subj[1] - subj[0])[inner].mean()
    after = np.abs(warped - subj[0])[inner].mean()
    # measured: after / before = 0.007; compose(v_j, u_i) (wrong order) gives 0.07, u_i + v_j 0.05
    assert after < 0.02 * before, (before, after)
