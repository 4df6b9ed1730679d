"""Test-time registration with a trained RL-I2IT agent (digest section 3.4 ``test``; D17).

A fixed number of steps with the **mean** plan and the test clamp, no early stopping (unless
``config.test_stop="similarity"``: a pair stops at its first step that does not lower the auxiliary
similarity loss); the accumulated field, the warped moving image and the per-step Dice / SSIM trajectories
(index 0 = identity; a stopped pair repeats its last value) come back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.metrics.regression import SSIMMetric

from medi2i.registration.config import TestStop
from medi2i.registration.env import RegistrationEnv, label_dice
from medi2i.registration.sac import AuxLoss, RLI2ITAgent
from medi2i.spatial import warp


@dataclass
class RegistrationResult:
    """``ddf`` ``(B, ndim, *spatial)`` (voxels, pull), ``warped`` ``(B, 1, *spatial)``,
    ``dice`` ``(B, steps + 1)`` (NaN-free; empty ``(B, 0)`` without labels), ``ssim`` ``(B, steps + 1)``,
    ``warped_label`` ``(B, 1, *spatial)`` (the moving label, or an empty tensor without labels)."""

    ddf: torch.Tensor
    warped: torch.Tensor
    dice: torch.Tensor
    ssim: torch.Tensor
    warped_label: torch.Tensor


@torch.no_grad()
def register(
    agent: RLI2ITAgent,
    fixed: torch.Tensor,
    moving: torch.Tensor,
    *,
    steps: int | None = None,
    clamp: float | None = None,
    fixed_label: torch.Tensor | None = None,
    moving_label: torch.Tensor | None = None,
    label_ids: tuple[int, ...] | None = None,
    track_ssim: bool = True,
    stop: str | None = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` (``(B, 1, *spatial)`` in [0, 1]) in ``steps`` mean-plan steps.

    Args:
        agent: a trained :class:`~medi2i.registration.sac.RLI2ITAgent` (its device is used).
        fixed: fixed images.
        moving: moving images.
        steps: number of steps (default ``config.test_steps``, 20).
        clamp: per-step clamp in voxels (default ``config.test_clamp``, 3).
        fixed_label: optional integer labels for the Dice trajectory.
        moving_label: optional integer labels (warped with nearest).
        label_ids: labels scored (default ``config.reward_label_ids``); absent ones skipped (D15).
        track_ssim: compute the SSIM trajectory (else an empty ``(B, 0)`` tensor).
        stop: ``"none"`` or ``"similarity"`` (default ``config.test_stop``), see
            :attr:`~medi2i.registration.config.RLI2ITConfig.test_stop`.

    Example:
        >>> from medi2i.registration.config import smoke_config
        >>> agent = RLI2ITAgent(smoke_config(), (32, 32))
        >>> res = register(agent, torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), steps=3)
        >>> tuple(res.ddf.shape), tuple(res.ssim.shape), tuple(res.dice.shape)
        ((1, 2, 32, 32), (1, 4), (1, 0))
    """
    cfg = agent.config
    steps = cfg.test_steps if steps is None else int(steps)
    clamp = cfg.test_clamp if clamp is None else float(clamp)
    if steps < 0 or clamp <= 0:
        raise ValueError(f"steps must be >= 0 and clamp > 0, got {steps}, {clamp}")
    stop = str(cfg.test_stop if stop is None else stop)
    if stop not in (TestStop.NONE, TestStop.SIMILARITY):
        raise ValueError(f"stop must be 'none' or 'similarity', got {stop!r}")
    if (fixed_label is None) != (moving_label is None):
        raise ValueError("give both fixed_label and moving_label, or neither")
    device = agent.log_alpha.device
    fixed, moving = fixed.to(device).float(), moving.to(device).float()
    env = RegistrationEnv(cfg)  # used for its composition rule and state layout only
    env.fixed, env.moving, env.warped = fixed, moving, moving
    env.field = torch.zeros(fixed.shape[0], cfg.spatial_dims, *fixed.shape[2:], device=device)
    ids = tuple(label_ids) if label_ids is not None else tuple(cfg.reward_label_ids)
    ssim_metric = SSIMMetric(cfg.spatial_dims, data_range=1.0, win_size=7) if track_ssim else None
    dice, ssim = [], []
    labels = None if fixed_label is None else (fixed_label.to(device).long(), moving_label.to(device).long())

    def record() -> None:
        if labels is not None:
            moved = warp(labels[1], env.field, mode="nearest", padding_mode="zeros")
            dice.append(label_dice(moved, labels[0], ids))
        if ssim_metric is not None:
            ssim.append(ssim_metric._compute_tensor(env.warped, fixed).reshape(-1))

    guard = None
    if stop == TestStop.SIMILARITY:
        aux = AuxLoss(cfg).to(device)
        smooth_fixed, smooth_moving = aux.presmooth(fixed), aux.presmooth(moving)

        def similarity(field: torch.Tensor) -> torch.Tensor:  # per pair, (B,)
            warped = warp(smooth_moving, field, padding_mode=cfg.image_padding)
            return torch.stack([aux.similarity(smooth_fixed[i : i + 1], warped[i : i + 1]) for i in range(len(field))])

        guard = (similarity, similarity(env.field), torch.ones(fixed.shape[0], dtype=torch.bool, device=device))

    agent.eval()
    record()
    for _ in range(steps):
        action, _ = agent.act(env.state(), deterministic=True, clamp=clamp)
        field = env.compose(action, env.field)
        if guard is not None:  # keep a pair's step only while it lowers its similarity loss; then stop it
            similarity, current, active = guard
            candidate = similarity(field)
            active = active & (candidate < current)
            keep = active.reshape(-1, *([1] * (field.ndim - 1)))
            field = torch.where(keep, field, env.field)
            guard = (similarity, torch.where(active, candidate, current), active)
        env.field = field
        env.warped = warp(moving, env.field, padding_mode=cfg.image_padding)
        record()
    empty = fixed.new_zeros(fixed.shape[0], 0)
    warped_label = warp(labels[1], env.field, mode="nearest", padding_mode="zeros") if labels is not None else empty
    return RegistrationResult(
        env.field,
        env.warped,
        torch.stack(dice, 1) if dice else empty,
        torch.stack(ssim, 1) if ssim else empty,
        warped_label,
    )
