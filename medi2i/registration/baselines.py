"""Baselines in the RL-I2IT harness: identity and a one-shot VoxelMorph (MONAI ``VoxelMorph``).

VoxelMorph is trained with the *same* similarity and smoothness as RL-I2IT's auxiliary loss
(:class:`~medi2i.registration.sac.AuxLoss` with the plan KL switched off) on the same pairs, and its
output is a :class:`~medi2i.registration.inference.RegistrationResult` with a two-point Dice trajectory
(identity, registered), so benchmark code treats all methods alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from medi2i.registration.config import RLI2ITConfig
from medi2i.registration.env import label_dice
from medi2i.registration.inference import RegistrationResult
from medi2i.registration.sac import AuxLoss
from medi2i.spatial import warp


class VoxelMorphBaseline(nn.Module):
    """MONAI ``VoxelMorph`` with a ``VoxelMorphUNet`` backbone (VM-2 widths); forward returns the ddf.

    Args:
        spatial_dims: 2 or 3.
        channels: ``VoxelMorphUNet`` widths (default VM-2 style, 105 K parameters in 2D).
        final_conv_channels: widths of the final convs.
        integration_steps: 0 = plain displacement (VM); > 0 = diffeomorphic (VM-diff).

    Example:
        >>> vm = VoxelMorphBaseline(2)
        >>> tuple(vm(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).shape)
        (1, 2, 32, 32)
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: Sequence[int] = (16, 32, 32, 32, 32, 32),
        final_conv_channels: Sequence[int] = (16, 16),
        integration_steps: int = 0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if integration_steps < 0:
            raise ValueError(f"integration_steps must be >= 0, got {integration_steps}")
        from monai.networks.nets import VoxelMorph, VoxelMorphUNet

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*grid_sample.*")
            backbone = VoxelMorphUNet(
                spatial_dims=spatial_dims,
                in_channels=2,
                unet_out_channels=int(channels[-1]),
                channels=tuple(channels),
                final_conv_channels=tuple(final_conv_channels),
            )
            self.net = VoxelMorph(backbone, integration_steps=integration_steps, spatial_dims=spatial_dims)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.net(moving, fixed)[1]


def train_voxelmorph(
    model: VoxelMorphBaseline,
    fixed: torch.Tensor,
    moving: torch.Tensor,
    config: RLI2ITConfig,
    *,
    iterations: int = 1000,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train on pairs ``(N, 1, *spatial)`` with RLI2IT's similarity + smoothness; return the loss curve."""
    if iterations < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"iterations, batch_size must be >= 1 and lr > 0, got {iterations}, {batch_size}, {lr}")
    device = next(model.parameters()).device
    loss_fn = AuxLoss(config.replace(kl_weight=0.0)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    zeros = torch.zeros(1, 1, device=device)
    curve = []
    model.train()
    for _ in range(iterations):
        index = torch.randint(0, fixed.shape[0], (min(batch_size, fixed.shape[0]),), generator=g)
        f, m = fixed[index].to(device), moving[index].to(device)
        ddf = model(m, f)
        warped = warp(m, ddf, padding_mode=config.image_padding)
        loss = loss_fn(f, warped, ddf, zeros, zeros)["losses/aux_loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        curve.append(loss.detach())
    return [float(v) for v in torch.stack(curve)]


def result_from_ddf(
    ddf: torch.Tensor,
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fixed_label: torch.Tensor | None,
    moving_label: torch.Tensor | None,
    label_ids: tuple[int, ...],
    padding: str,
) -> RegistrationResult:
    """A baseline's :class:`RegistrationResult` from its ddf ``(B, ndim, *spatial)``: the warped image, and with
    labels the nearest-warped moving label and the Dice trajectory ``(B, 2)`` = (identity, registered)."""
    warped = warp(moving, ddf, padding_mode=padding)
    empty = fixed.new_zeros(fixed.shape[0], 0)
    if fixed_label is None:
        return RegistrationResult(ddf, warped, empty, empty, empty)
    moved = warp(moving_label.long(), ddf, mode="nearest", padding_mode="zeros")
    before = label_dice(moving_label.long(), fixed_label.long(), label_ids)
    after = label_dice(moved, fixed_label.long(), label_ids)
    return RegistrationResult(ddf, warped, torch.stack([before, after], 1), empty, moved)


@torch.no_grad()
def register_voxelmorph(
    model: VoxelMorphBaseline,
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fixed_label: torch.Tensor | None = None,
    moving_label: torch.Tensor | None = None,
    label_ids: tuple[int, ...] = (1, 2, 3),
    image_padding: str = "zeros",
) -> RegistrationResult:
    """One forward pass; Dice trajectory ``(B, 2)`` = (identity, registered) when labels are given."""
    model.eval()
    device = next(model.parameters()).device
    fixed, moving = fixed.to(device).float(), moving.to(device).float()
    ddf = model(moving, fixed)
    fl = None if fixed_label is None else fixed_label.to(device)
    ml = None if moving_label is None else moving_label.to(device)
    return result_from_ddf(ddf, fixed, moving, fl, ml, label_ids, image_padding)


def register_identity(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fixed_label: torch.Tensor | None = None,
    moving_label: torch.Tensor | None = None,
    label_ids: tuple[int, ...] = (1, 2, 3),
) -> RegistrationResult:
    """The identity baseline (zero ddf).

    Example:
        >>> lab = torch.ones(1, 1, 8, 8, dtype=torch.long)
        >>> register_identity(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), lab, lab).dice.tolist()
        [[1.0, 1.0]]
    """
    ddf = torch.zeros(fixed.shape[0], fixed.ndim - 2, *fixed.shape[2:], device=fixed.device)
    return result_from_ddf(ddf, fixed.float(), moving.float(), fixed_label, moving_label, label_ids, "zeros")
