"""The synthetic 2D registration task of digest section 8.2 (learning checks without data).

Each pair: a random template (background 0, a disc of intensity 0.5 with radius 9-12 px, an inner ellipse
of intensity 1.0 with random axes and angle; labels 0/1/2), the fixed image; the moving image is the
template warped by a smooth random field (Gaussian noise on a 4x4 control grid, bilinearly up-sampled and
rescaled so that max |u| is 3-4 px), bilinear for the image and nearest for the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medi2i.spatial import warp


@dataclass
class SyntheticPairs:
    """A batch of pairs: images ``(N, 1, S, S)`` in [0, 1], int64 labels ``(N, 1, S, S)``, the true ddf."""

    fixed: torch.Tensor
    moving: torch.Tensor
    fixed_label: torch.Tensor
    moving_label: torch.Tensor
    ddf: torch.Tensor


def synthetic_pairs(count: int, size: int = 32, seed: int = 0, max_displacement: tuple[float, float] = (3.0, 4.0)):
    """Generate ``count`` seeded pairs of the section 8.2 task.

    Example:
        >>> pairs = synthetic_pairs(2, seed=1)
        >>> tuple(pairs.fixed.shape), sorted(pairs.fixed_label.unique().tolist())
        ((2, 1, 32, 32), [0, 1, 2])
    """
    if count < 1 or size < 16:
        raise ValueError(f"count must be >= 1 and size >= 16, got {count}, {size}")
    g = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(count, 1, 1, generator=g)

    scale = size / 32.0
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    centre = (size - 1) / 2.0
    cy, cx = centre + uniform(-1.5, 1.5) * scale, centre + uniform(-1.5, 1.5) * scale
    radius = uniform(9.0, 12.0) * scale
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    angle = uniform(0.0, torch.pi)
    a, b = uniform(0.35, 0.7) * radius, uniform(0.2, 0.45) * radius
    dy, dx = yy - cy, xx - cx
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    ellipse = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    label = disc.long() + (ellipse & disc).long()
    image = 0.5 * disc.float() + 0.5 * (ellipse & disc).float()
    fixed, fixed_label = image[:, None], label[:, None]

    coarse = 2.0 * torch.randn(count, 2, 4, 4, generator=g)
    ddf = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)
    peak = ddf.flatten(1).abs().max(dim=1).values.clamp_min(1e-6).reshape(-1, 1, 1, 1)
    target = max_displacement[0] + (max_displacement[1] - max_displacement[0]) * torch.rand(count, generator=g)
    ddf = ddf / peak * target.reshape(-1, 1, 1, 1) * scale
    moving = warp(fixed, ddf, padding_mode="zeros")
    moving_label = warp(fixed_label, ddf, mode="nearest", padding_mode="zeros")
    return SyntheticPairs(fixed, moving, fixed_label, moving_label, ddf)
