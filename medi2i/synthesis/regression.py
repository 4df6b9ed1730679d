"""Supervised regression control: the same velocity UNet used as a plain image-to-image regressor.

The network is called at a fixed time that only flags the direction (``t = 0`` for A -> B, ``t = 1`` for
B -> A, the times Bi-DPM's N = 1 chains use), and its output *is* the translation (``residual=False``,
pix2pix-style direct prediction) or is added to the input (``residual=True``; with ``loss="l1"`` this is
Bi-DPM N = 1 with the L1 metric, so it is only useful to isolate the weighting). Trained on paired rows
only, both directions in one fused network call. Loss (bidpm.md section 10.2): ``"l1"`` or
``"l1_lpips"`` = ``L1 + lpips_weight * LPIPS`` (LPIPS-VGG from local weights).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.base import Direction, SynthesisMethod, check_image_pair, check_paired_mask, graph_zero
from medi2i.synthesis.losses import paired_metric

__all__ = ["RegressionControl", "RegressionLoss"]


class RegressionLoss(str, Enum):
    """Loss of the regression control: ``l1`` or ``l1_lpips``."""

    L1 = "l1"
    L1_LPIPS = "l1_lpips"


class RegressionControl(SynthesisMethod):
    """One network regressing B from A (at ``t = 0``) and A from B (at ``t = 1``), L1 or L1 + LPIPS.

    Args:
        network: velocity network ``network(x, timesteps)`` (used as a regressor).
        loss: ``"l1"`` or ``"l1_lpips"``.
        lpips_weight: weight of LPIPS in ``"l1_lpips"`` (> 0).
        residual: predict ``x + network(x)`` instead of ``network(x)``.
        lpips_pretrained: ``False`` = random LPIPS weights (tests only).
        time_scale: network timestep = ``time_scale * t``.
        checkpoint_activations: recompute the network call in the backward pass.

    Example:
        >>> from medi2i.synthesis.networks import VelocityUNet, TINY_UNET
        >>> control = RegressionControl(VelocityUNet(**TINY_UNET))
        >>> x = torch.rand(2, 1, 16, 16)
        >>> float(control.sample(x, "a2b").abs().max())  # zero-initialised output layer: predicts 0
        0.0
    """

    name = "regression"

    def __init__(
        self,
        network: nn.Module,
        *,
        loss: RegressionLoss | str = RegressionLoss.L1,
        lpips_weight: float = 1.0,
        residual: bool = False,
        lpips_pretrained: bool = True,
        time_scale: float = 1000.0,
        checkpoint_activations: bool = False,
    ) -> None:
        try:
            kind = RegressionLoss(loss)
        except ValueError:
            raise ValueError(f"loss must be one of {[k.value for k in RegressionLoss]}, got {loss!r}") from None
        if not lpips_weight > 0:
            raise ValueError(f"lpips_weight must be > 0, got {lpips_weight!r}")
        super().__init__(network, time_scale=time_scale, checkpoint_activations=checkpoint_activations)
        self.loss = kind
        self.lpips_weight = float(lpips_weight)
        self.residual = bool(residual)
        self.lpips_pretrained = bool(lpips_pretrained)
        self.lpips = (
            paired_metric("lpips", lpips_pretrained=lpips_pretrained) if kind is RegressionLoss.L1_LPIPS else None
        )
        self.exclude_from_checkpoint("lpips")

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regressor at direction times ``t`` ``(B,)``: ``network(x)`` or ``x + network(x)``."""
        out = self.velocity(x, t)
        return x + out if self.residual else out

    def training_loss(
        self, a: torch.Tensor, b: torch.Tensor, *, paired: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``mean d(f(a, 0), b) + mean d(f(b, 1), a)`` over the paired rows.

        Args:
            a: ``(B, C, H, W)`` modality A in [-1, 1].
            b: same shape, modality B.
            paired: ``(B,)`` bool pairing mask (``None`` = all paired); unpaired rows are ignored.

        Returns:
            ``{"loss", "l1"}`` plus ``"lpips"`` for ``"l1_lpips"`` (parts detached).
        """
        check_image_pair(a, b)
        mask = check_paired_mask(paired, a.shape[0], a.device)
        if not bool(mask.any()):
            zero = graph_zero(torch.stack([p.sum() for p in self.network.parameters()]))
            parts = {"loss": zero, "l1": zero.detach()}
            if self.lpips is not None:
                parts["lpips"] = zero.detach()
            return parts
        a, b = a[mask], b[mask]
        rows = a.shape[0]
        t = torch.cat([a.new_zeros(rows), a.new_ones(rows)])
        pred = self.predict(torch.cat([a, b]), t)  # both directions in one call
        target = torch.cat([b, a])
        l1 = (pred - target).abs().mean()
        parts = {"l1": l1.detach()}
        loss = l1
        if self.lpips is not None:
            perceptual = self.lpips(pred, target).mean()
            loss = loss + self.lpips_weight * perceptual
            parts["lpips"] = perceptual.detach()
        return {"loss": loss, **parts}

    @torch.no_grad()
    def sample(self, x: torch.Tensor, direction: Direction | str, *, num_steps: int | None = None) -> torch.Tensor:
        """One network call. ``num_steps`` must be ``None`` or 1 (a regressor has no steps).

        Args:
            x: ``(B, C, H, W)`` source images.
            direction: ``"a2b"`` or ``"b2a"``.
            num_steps: ``None`` or 1.

        Returns:
            ``(B, C, H, W)``.
        """
        direction = self._direction(x, direction)
        if num_steps not in (None, 1):
            raise Medi2iInputError("the regression control takes exactly one step", field="num_steps", found=num_steps)
        t = x.new_full((x.shape[0],), 0.0 if direction is Direction.A2B else 1.0)
        return self.predict(x, t)

    def method_config(self) -> dict[str, Any]:
        return {
            "loss": self.loss.value,
            "lpips_weight": self.lpips_weight,
            "residual": self.residual,
            "lpips_pretrained": self.lpips_pretrained,
        }
