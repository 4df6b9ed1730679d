"""Environment: warp sign, composition order (D1), bookkeeping, rewards, K-means labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medi2i.registration.config import smoke_config
from medi2i.registration.env import RegistrationEnv, kmeans_labels, label_dice
from medi2i.registration.synthetic import synthetic_pairs
from medi2i.spatial import warp


def _smooth_field(seed: int, size: int = 48, amplitude: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 2, 4, 4, generator=g)
    u = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    return u / u.abs().max() * amplitude


def _smooth_image(size: int = 48) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return (0.5 + 0.25 * torch.sin(3 * x + 1) * torch.cos(2 * y))[None, None]


def test_warp_identity_and_sign():
    img = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(warp(img, torch.zeros(1, 2, 8, 8)), img, atol=1e-6, rtol=0)
    ddf = torch.zeros(1, 2, 8, 8)
    ddf[:, 0] = 1.0
    out = warp(img, ddf, padding_mode="zeros")
    torch.testing.assert_close(out[0, 0, :-1], img[0, 0, 1:])  # output[i] = input[i + 1]


def test_composition_code_order_matches_sequential_warps_and_paper_order_does_not():
    moving = _smooth_image()
    b, a = _smooth_field(1), _smooth_field(2)  # U_{t-1} = b, then the step a
    sequential = warp(warp(moving, b), a)
    env_code, env_paper = RegistrationEnv(smoke_config()), RegistrationEnv(smoke_config(composition="paper"))
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    err_code = (warp(moving, env_code.compose(a, b)) - sequential)[inner].abs().mean()
    err_paper = (warp(moving, env_paper.compose(a, b)) - sequential)[inner].abs().mean()
    assert err_code < 1e-2
    assert err_paper > 2 * err_code


def test_state_warps_the_original_moving_image_and_labels_with_nearest():
    pairs = synthetic_pairs(2, seed=3)
    env = RegistrationEnv(smoke_config(reward_labels="gt", reward_label_ids=(1, 2)))
    state = env.reset(pairs.fixed, pairs.moving, pairs.fixed_label, pairs.moving_label)
    assert torch.equal(state, torch.cat([pairs.fixed, pairs.moving], 1))
    for seed in (4, 5, 6):
        result = env.step(0.5 * _smooth_field(seed, 32).expand(2, -1, -1, -1))
    assert torch.equal(result.state[:, 1:], warp(pairs.moving, env.field, padding_mode="zeros"))
    moved = warp(pairs.moving_label, env.field, mode="nearest", padding_mode="zeros")
    assert set(moved.unique().tolist()) <= {0, 1, 2}
    torch.testing.assert_close(result.score, label_dice(moved, pairs.fixed_label, (1, 2)))


def test_rewards_telescope_and_done_stops_the_episode():
    pairs = synthetic_pairs(3, seed=7)
    cfg = smoke_config(reward_labels="gt", reward_label_ids=(1, 2), bonus=0.0, done_threshold=2.0)
    env = RegistrationEnv(cfg)
    env.reset(pairs.fixed, pairs.moving, pairs.fixed_label, pairs.moving_label)
    start, total = env.score.clone(), torch.zeros(3)
    for seed in range(5):
        total += env.step(-0.7 * pairs.ddf.clamp(-1, 1) + 0.1 * _smooth_field(seed, 32)).reward
    torch.testing.assert_close(total, 100.0 * (env.score - start), atol=1e-4, rtol=0)
    # with a reachable threshold: bonus once, zero rewards and a frozen field afterwards
    env = RegistrationEnv(smoke_config(reward_labels="gt", reward_label_ids=(1, 2), bonus=10.0, done_threshold=0.0))
    env.reset(pairs.fixed, pairs.moving, pairs.fixed_label, pairs.moving_label)
    first = env.step(torch.zeros(3, 2, 32, 32))
    assert first.done.all() and torch.allclose(first.reward, torch.full((3,), 10.0))
    second = env.step(torch.ones(3, 2, 32, 32))
    assert not second.done.any() and torch.equal(second.reward, torch.zeros(3))
    assert torch.equal(env.field, torch.zeros_like(env.field))


def test_kmeans_labels_are_sorted_by_intensity_and_pairwise_consistent():
    pairs = synthetic_pairs(2, seed=11)
    labels = kmeans_labels(pairs.fixed)
    # the template has three intensities 0 / 0.5 / 1.0 -> K-means recovers the ground truth exactly
    assert torch.equal(labels, pairs.fixed_label)
    inverted = kmeans_labels(1.0 - pairs.fixed)
    assert torch.equal(inverted, 2 - pairs.fixed_label)


def test_ssim_reward_is_a_gain():
    pairs = synthetic_pairs(1, seed=2)
    env = RegistrationEnv(smoke_config(reward="ssim", bonus=0.0))
    env.reset(pairs.fixed, pairs.moving)
    start = env.score.clone()
    result = env.step(torch.zeros(1, 2, 32, 32))
    assert torch.allclose(result.reward, torch.zeros(1))  # no motion, no gain
    assert 0.0 < float(start) < 1.0
