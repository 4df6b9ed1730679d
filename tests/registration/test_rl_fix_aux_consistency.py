"""Pins the train/env consistency behind the demo overlay's ``aux_target="accumulated"`` (helper H-RL report).

On the noisy 2D demo slices the per-step ("step", D7 code form) auxiliary loss scores ``warp(M o U_{t-1}, u)``,
an image resampled twice, while the environment (and test-time inference) resamples the *original* moving
image once with ``compose(u, U_{t-1})``. Bilinear resampling low-pass filters the Rician noise, and a blurred
moving image has a higher local NCC with an independent noisy fixed image, so the step form scores states
the agent never visits. The accumulated form (paper) scores exactly the image the environment produces.
"""

from __future__ import annotations

import torch

from medi2i.registration.config import smoke_config
from medi2i.registration.env import RegistrationEnv
from medi2i.registration.sac import SimilarityLoss
from medi2i.spatial import compose, warp


def _noisy_pair(size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    axis = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    base = 0.5 + 0.25 * torch.sin(yy / 5.0) * torch.cos(xx / 7.0)  # smooth anatomy, independent noise
    fixed = (base + 0.08 * torch.randn(size, size, generator=g)).clamp(0, 1)
    moving = (base + 0.08 * torch.randn(size, size, generator=g)).clamp(0, 1)
    return fixed[None, None], moving[None, None]


def test_accumulated_aux_image_is_the_env_next_state_and_step_form_is_not():
    fixed, moving = _noisy_pair()
    env = RegistrationEnv(smoke_config(reward_labels="kmeans"))
    env.reset(fixed, moving)
    first = torch.zeros(1, 2, 32, 32)
    first[:, 0] = 0.5  # half-pixel step: a replayed state M o U_1 that has been resampled once
    env.step(first)
    replayed_state, previous_field = env.state(), env.field
    u = torch.zeros(1, 2, 32, 32)
    u[:, 0] = 0.5  # same axis: the environment ends at an integer shift (no blur), the step form blurs twice
    result = env.step(u)  # what the environment (and inference) produces from that state
    accumulated = warp(moving, compose(u, previous_field, padding_mode="border"), padding_mode="zeros")
    step_form = warp(replayed_state[:, 1:], u, padding_mode="zeros")
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert torch.allclose(accumulated[inner], result.state[:, 1:][inner], atol=1e-5)
    # the step form double-resamples: a visibly smoother image than the one the agent will actually observe
    assert (step_form[inner] - result.state[:, 1:][inner]).abs().mean() > 1e-2


def test_resampling_blur_alone_lowers_the_ncc_loss_on_noisy_images():
    # the exploit behind the state-independent half-pixel field: no alignment change, yet a lower NCC loss
    fixed, moving = _noisy_pair(seed=1)
    sim = SimilarityLoss(2, (5,), (1.0,))
    shift = torch.zeros(1, 2, 32, 32)
    shift[:] = 0.5
    identity = float(sim(fixed, moving))
    half_pixel = float(sim(fixed, warp(moving, shift, padding_mode="border")))
    assert half_pixel < identity - 0.01, (identity, half_pixel)
